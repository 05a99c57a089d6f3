//go:build !linux

package channels

// bigBuf returns a zero-length buffer of capacity at least n (n > bufCap).
func bigBuf(n int) []byte { return make([]byte, 0, n) }

// freeBig leaves a bigBuf to the garbage collector.
func freeBig([]byte) {}
