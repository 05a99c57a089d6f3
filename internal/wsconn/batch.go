package wsconn

import (
	"context"

	websocket "github.com/sluicehq/sluice/internal/ws"
)

// Batch defers socket writes while a reader still has whole frames
// buffered, so that a burst of input produces one write system call per
// destination instead of one per frame (the nats-server discipline: flush
// at the end of the read batch). A reader that owns a Batch passes it to
// SendIn for every frame its input causes, and calls Flush before it
// blocks for more input (NextFrameBuffered reports when that is).
//
// A connection stays corked until the batch that corked it flushes, so
// frames other goroutines write to it meanwhile wait too; that is at most
// the time the reader takes to process what was already buffered. A Batch
// belongs to one goroutine.
type Batch struct {
	conns []*Conn
	// later: other work deferred to the flush (Defer).
	later []Flusher
	// direct: writes given the batch are not deferred (SetDirect).
	direct bool
}

// SetDirect stops (on) or resumes (off) deferring the writes given b: a
// reader whose read buffer holds no further whole frame sets it before it
// handles the frame it just read, since the flush would follow at once
// anyway. Those writes then go out as SendIn without a batch would (inline
// on an idle socket), saving the cork and the flush on the path of every
// message of a lone request. A connection b corked already stays corked
// until Flush: what is written to it joins what it holds, in order and in
// the same write system call, so the last frame of a burst costs no write
// of its own.
func (b *Batch) SetDirect(on bool) { b.direct = on }

// deferring reports whether writes given b are deferred.
func (b *Batch) deferring() bool { return b != nil && !b.direct }

// Deferring reports whether writes given b are deferred now (b is not
// nil and not direct): a Flush will follow before its owner blocks.
func (b *Batch) Deferring() bool { return b.deferring() }

// Flusher is work other than socket writes that a batch's owner defers
// to its Flush (the cluster router's calls to other nodes collected
// during a read burst, sent as one NATS message).
type Flusher interface{ FlushBatch() }

// Defer runs f.FlushBatch at b's next Flush, before the sockets are
// written out. f must not call Defer on b from FlushBatch.
func (b *Batch) Defer(f Flusher) { b.later = append(b.later, f) }

// Deferred is what Defer gave b since its last Flush (do not keep it).
func (b *Batch) Deferred() []Flusher { return b.later }

// SendIn is Send, except that with a non-nil batch a frame that would be
// written inline goes to the connection's cork buffer and reaches the
// socket when b is flushed.
func (c *Conn) SendIn(ctx context.Context, b *Batch, kind int, data []byte, onWritten func([]byte)) error {
	if c.maxQueued > 0 {
		return c.sendNB(b, kind, data, onWritten)
	}
	cc, _ := c.ws.NetConn().(*corkConn)
	if b == nil || cc == nil {
		return c.Send(ctx, kind, data, onWritten)
	}
	if b.direct {
		// Send may block: what the batch holds goes out first, so no held
		// frame waits behind a slow peer.
		b.Flush()
		return c.Send(ctx, kind, data, onWritten)
	}
	if c.isClosing() {
		return c.closedErr()
	}
	if c.queued.Load() == 0 && c.wmu.TryLock() {
		if c.queued.Load() == 0 && !c.isClosing() {
			if cc.corkIfOpen() {
				b.conns = append(b.conns, c)
			}
			ok := c.write(frame{kind: kind, data: data, done: onWritten})
			c.wmu.Unlock()
			if !ok {
				return c.closedErr()
			}
			return nil
		}
		c.wmu.Unlock()
	}
	// The frame queues and Send may block: release what the batch holds
	// first, so no held frame waits behind a slow peer.
	b.Flush()
	return c.Send(ctx, kind, data, onWritten)
}

// Flush writes out every connection b corked.
func (b *Batch) Flush() {
	for i, f := range b.later {
		b.later[i] = nil
		f.FlushBatch()
	}
	b.later = b.later[:0]
	for i, c := range b.conns {
		c.flushCork()
		b.conns[i] = nil
	}
	b.conns = b.conns[:0]
}

func (c *Conn) flushCork() {
	cc := c.ws.NetConn().(*corkConn)
	c.wmu.Lock()
	c.wseq.Add(1)
	err := cc.uncork()
	c.wseq.Add(1)
	c.wmu.Unlock()
	if err != nil {
		c.setErr(err)
		c.closeOnce.Do(func() { close(c.closing) })
	}
}

// NextFrameBuffered reports whether the next message on ws is already
// buffered whole, as one unfragmented data frame, so that reading it needs
// no system call (ws.FrameReader.Buffered). A frame still inside the TLS
// record layer is not seen, which only costs batching.
func NextFrameBuffered(ws *websocket.Conn) bool { return ws.Frames().Buffered() }
