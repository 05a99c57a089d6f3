package wsconn

import (
	"math/rand/v2"

	"github.com/sluicehq/sluice/internal/channels/wsframe"
)

// rawMax is the largest data frame written by rawWrite; bigger ones go
// through gorilla, which does not copy the payload.
const rawMax = 64 << 10

// rawWrite writes one data frame on a corkConn itself: header and payload
// (masked on the client side) in one buffer and one Write. gorilla's write
// path costs a messageWriter allocation on the client side, a write
// deadline update per frame and a lock of its own, which is a measurable
// share of a small message's round trip. One Write per frame also keeps
// gorilla's control frames (WriteControl, one Write each) from landing
// inside it. The caller holds wmu.
func (c *Conn) rawWrite(cc *corkConn, kind int, p []byte) error {
	need := wsframe.MaxHeader + len(p)
	if cap(c.wbuf) < need {
		c.wbuf = make([]byte, max(need, 512))
	}
	b := c.wbuf[:need]
	var key [4]byte
	if cc.client {
		// A fresh unpredictable key per frame (RFC 6455 §5.3): math/rand/v2
		// is ChaCha8 seeded by the runtime, as gorilla's choice is.
		k := rand.Uint32()
		key = [4]byte{byte(k), byte(k >> 8), byte(k >> 16), byte(k >> 24)}
	}
	h := wsframe.PutHeader(b, true, kind, len(p), cc.client, key)
	if cc.client {
		wsframe.MaskCopy(b[h:], p, key)
	} else {
		copy(b[h:], p)
	}
	_, err := cc.writeRaw(b[:h+len(p)])
	if cap(c.wbuf) > keepWriteBuffer {
		c.wbuf = nil // a rare big frame must not pin its buffer to every idle socket
	}
	return err
}

// keepWriteBuffer is the largest frame buffer a Conn keeps between writes.
const keepWriteBuffer = 8 << 10
