package channels

import (
	"sync"

	"github.com/sluicehq/sluice/wire"
)

// bufCap is the capacity of a pooled frame buffer: a full 64 KiB SDK frame
// with room to spare, rounded to whole 8 KiB pages. Bigger messages get a
// buffer of their own.
const bufCap = wire.FrameSize + 8<<10

// maxPooledCap keeps the rare huge frame's buffer out of the pool, so that a
// burst of big frames does not leave big buffers behind.
const maxPooledCap = 1 << 20

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, bufCap)
	return &b
}}

// getBuf returns an empty pooled buffer. Pointers to slices go through the
// pool so that Put does not allocate.
func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > maxPooledCap {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}
