package channels

import (
	"sync"

	"github.com/sluicehq/sluice/wire"
)

// bufCap is the capacity of a pooled frame buffer: a full 64 KiB SDK frame
// with room to spare, rounded to whole 8 KiB pages. Bigger messages get a
// buffer of their own (bigBuf).
const bufCap = wire.FrameSize + 8<<10

// maxPooledCap bounds the buffers kept elsewhere between uses (a reader
// socket's copy buffer on non-TCP connections).
const maxPooledCap = bufCap + 16

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, bufCap)
	return &b
}}

// getBuf returns an empty pooled buffer. Pointers to slices go through the
// pool so that Put does not allocate.
func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

// putBuf gives a buffer back. Only buffers of exactly bufCap are pooled: a
// pool must not pin the memory of a burst of big frames.
func putBuf(b *[]byte) {
	if cap(*b) != bufCap {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// growCap is the capacity of the buffer that a message of need bytes moves
// to from a buffer of capacity have: at least double (fragmented messages
// are copied a logarithmic number of times), at most limit (the frame size
// limit; 0 = none) and at least need.
func growCap(have, need int, limit int64) int {
	c := max(need, 2*have)
	if limit > 0 && int64(c) > limit {
		c = max(need, int(limit))
	}
	return c
}
