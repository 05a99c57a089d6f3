//go:build !linux

package channels

const haveRawVec = false

// rawVec: direct writes are Linux only (sink.go); elsewhere every frame
// goes through the queue.
type rawVec struct {
	n   int
	err error
}

func (v *rawVec) set(hdr, data []byte) {}
func (v *rawVec) clear()               {}
func (v *rawVec) write(uintptr) bool   { return true }
