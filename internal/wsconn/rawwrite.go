package wsconn

import (
	"math/rand/v2"
	"net"

	"github.com/sluicehq/sluice/internal/ws/wsframe"
)

// rawMax is the largest data frame written by rawWrite; bigger ones are
// written by rawWriteLarge, which does not copy the payload into one
// buffer.
const rawMax = 64 << 10

// rawWrite writes one data frame on a corkConn itself: header and payload
// (masked on the client side) in one buffer and one Write, under wmu and
// without a write deadline per frame (the watchdog cuts stalls): a
// deadline update and a second lock per frame are a measurable share of a
// small message's round trip. One Write per frame also keeps
// ws.Conn's control frames (WriteControl, one Write each) from landing
// inside it. The caller holds wmu.
func (c *Conn) rawWrite(cc *corkConn, kind int, p []byte) error {
	need := wsframe.MaxHeader + len(p)
	if cap(c.wbuf) < need {
		c.wbuf = make([]byte, max(need, 512))
	}
	b := c.wbuf[:need]
	key := frameKey(cc.client)
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

// frameKey is a client frame's masking key: fresh and unpredictable per
// frame (RFC 6455 §5.3); math/rand/v2 is ChaCha8 seeded by the runtime,
// as ws.Conn's is. A server's frames are not masked.
func frameKey(client bool) (key [4]byte) {
	if client {
		k := rand.Uint32()
		key = [4]byte{byte(k), byte(k >> 8), byte(k >> 16), byte(k >> 24)}
	}
	return key
}

// largeFragment is the payload of each frame rawWriteLarge writes.
// gorilla's client writer (used before internal/ws) fragmented at its
// write buffer size (4 KiB):
// a header per 4 KiB, and quadratic reassembly for a receiver that sizes
// its buffer to each fragment. One frame per message would be simplest,
// but some peers cap frames below messages (tungstenite's default frame
// limit is 16 MiB), so big messages go in 1 MiB fragments.
const largeFragment = 1 << 20

// maskChunk is how much of a client's payload is masked per Write.
const maskChunk = 64 << 10

// rawWriteLarge writes a message over rawMax on cc itself, as frames of
// largeFragment bytes. A server's payload goes out from p without a copy
// (writev); a client masks it through a maskChunk buffer. cc is held one
// fragment at a time: ws.Conn's control frames (pongs, close) may go out
// between fragments, as RFC 6455 allows, instead of waiting for the whole
// message. Other data frames wait for wmu, which the caller holds. Each
// chunk written counts as progress for the watchdog.
func (c *Conn) rawWriteLarge(cc *corkConn, kind int, p []byte) error {
	var scratch []byte
	if cc.client {
		scratch = make([]byte, wsframe.MaxHeader+maskChunk)
	}
	op := kind
	for off := 0; ; {
		frag := p[off:min(off+largeFragment, len(p))]
		off += len(frag)
		last := off == len(p)
		if err := c.writeFragment(cc, op, last, frag, scratch); err != nil {
			return err
		}
		op = wsframe.OpContinuation
		if last {
			return nil
		}
	}
}

// writeFragment writes one frame of rawWriteLarge's with cc to itself.
func (c *Conn) writeFragment(cc *corkConn, op int, fin bool, frag, scratch []byte) error {
	unlock, err := cc.lockForLarge()
	if err != nil {
		return err
	}
	defer unlock()
	var hdr [wsframe.MaxHeader]byte
	key := frameKey(cc.client)
	h := wsframe.PutHeader(hdr[:], fin, op, len(frag), cc.client, key)
	if !cc.client && cc.nb.on {
		err := cc.nbWrite(hdr[:h])
		if err == nil {
			err = cc.nbWrite(frag)
		}
		return err
	}
	if !cc.client {
		bufs := net.Buffers{hdr[:h], frag}
		_, err := bufs.WriteTo(cc.Conn)
		c.wseq.Add(2) // progress, still odd
		return err
	}
	n := copy(scratch, hdr[:h])
	for pos := 0; ; {
		k := min(maskChunk, len(frag)-pos) // a multiple of 4 but the last: the key stays aligned
		wsframe.MaskCopy(scratch[n:n+k], frag[pos:pos+k], key)
		if cc.nb.on {
			if err := cc.nbWrite(scratch[:n+k]); err != nil {
				return err
			}
		} else if _, err := cc.Conn.Write(scratch[:n+k]); err != nil {
			return err
		}
		c.wseq.Add(2)
		if pos += k; pos == len(frag) {
			return nil
		}
		n = 0
	}
}
