package wsconn

import (
	"context"

	"github.com/sluicehq/sluice/internal/ws/wsframe"
)

// SendEncodedWithin is SendInWithin for a frame that enc appends to the
// buffer it is given (and returns, grown if need be). In non-blocking mode
// the frame is encoded under the write lock straight into the Conn's frame
// buffer, after room for its header, and written from there: no encode
// buffer taken from and given back to the shared free list (two channel
// operations) and no copy of the payload into a frame, per message. enc
// must not keep its buffer; an error from enc is returned as is and
// nothing is sent. In the other modes the frame is encoded into a Buffer
// and sent with SendInWithin. The encoders given for one Conn never run
// concurrently, so they may share scratch space kept with the Conn.
func (c *Conn) SendEncodedWithin(ctx context.Context, b *Batch, kind int, enc func(dst []byte) ([]byte, error), budget int64) error {
	if c.maxQueued == 0 {
		c.encMu.Lock()
		data, err := enc(Buffer())
		c.encMu.Unlock()
		if err != nil {
			Recycle(data)
			return err
		}
		return c.SendInWithin(ctx, b, kind, data, Recycle, budget)
	}
	if c.isClosing() {
		return c.closedErr()
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.isClosing() {
		return c.closedErr()
	}
	buf := c.wbuf
	if cap(buf) < 512 {
		buf = make([]byte, 0, 512)
	}
	p, err := enc(buf[:wsframe.MaxHeader])
	if cap(p) <= keepWriteBuffer {
		c.wbuf = p[:0]
	} else {
		c.wbuf = nil // a rare big frame must not pin its buffer to every idle socket
	}
	if err != nil {
		return err
	}
	// As sendNBWithin: one frame is always accepted by an idle socket.
	n := int64(len(p) - wsframe.MaxHeader)
	if q := c.cc.nb.queued.Load(); q > 0 && q+n > budget {
		return ErrCongested
	}
	if b.deferring() && c.cc.corkIfOpen() {
		b.conns = append(b.conns, c)
	}
	if !c.write(frame{kind: kind, data: p, prefixed: true}) {
		return c.closedErr()
	}
	return nil
}

// rawWritePrefixed is rawWrite for a frame whose payload follows
// wsframe.MaxHeader reserved bytes in p: the header goes right before the
// payload (masked in place on the client side), so nothing is copied. The
// caller holds wmu.
func (c *Conn) rawWritePrefixed(cc *corkConn, kind int, p []byte) error {
	payload := p[wsframe.MaxHeader:]
	if len(payload) > rawMax {
		return c.rawWriteLarge(cc, kind, payload)
	}
	key := frameKey(cc.client)
	hl := headerLen(len(payload), cc.client)
	start := wsframe.MaxHeader - hl
	wsframe.PutHeader(p[start:], true, kind, len(payload), cc.client, key)
	if cc.client {
		wsframe.Mask(key, 0, payload)
	}
	_, err := cc.writeRaw(p[start:])
	return err
}

// headerLen is the length of the header of a final frame of n payload bytes.
func headerLen(n int, masked bool) int {
	hl := 2
	switch {
	case n > 0xffff:
		hl += 8
	case n > 125:
		hl += 2
	}
	if masked {
		hl += 4
	}
	return hl
}
