package channels

import "syscall"

// Buffers bigger than bufCap are mapped from the kernel and unmapped as soon
// as their frame is released, so that the memory of a burst of big frames
// goes back to the system at once instead of waiting for a garbage
// collection and the runtime's scavenger (an idle engine may not collect for
// minutes), and the byte budget (mem.go) matches the engine's resident
// memory rather than a multiple of it.

// bigBuf returns a zero-length buffer of capacity at least n (n > bufCap).
func bigBuf(n int) []byte {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]byte, 0, n) // out of mappings: the heap will do
	}
	return b[:0]
}

// freeBig gives a bigBuf back to the system. A buffer that is not a mapping
// (the heap fallback), or one already freed, is left to the GC: Munmap
// only unmaps what syscall.Mmap mapped and has not unmapped yet.
func freeBig(b []byte) {
	if cap(b) > 0 {
		_ = syscall.Munmap(b[:cap(b)])
	}
}
