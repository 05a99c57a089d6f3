// Package wsconn wraps an internal/ws connection with the write discipline
// both the engine and the Go SDK need: one writer at a time, frames in the
// order each producer sent them, a bounded queue (a slow peer therefore
// blocks its producers, which is the backpressure; in non-blocking mode,
// used by the engine, sends fail with ErrCongested instead, nonblock.go),
// and reads that reuse buffers instead of allocating a message per frame.
//
// When nothing is queued, Send writes on the caller's goroutine: handing
// every frame to a writer goroutine costs a wake-up per frame, which on a
// small machine dominates the latency of a request/response round trip.
// When the socket is busy, frames queue for the writer goroutine, which
// writes them in one system call (cork.go). A reader with more input
// buffered can defer the writes that input causes to the end of its burst
// (batch.go). Stalled writes are cut by one watchdog per process
// (watchdog.go) rather than a socket deadline per frame.
package wsconn

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
)

// Frame types, re-exported so callers need not import internal/ws.
const (
	Text   = websocket.TextMessage
	Binary = websocket.BinaryMessage

	closeMessage = websocket.CloseMessage
)

// ErrClosed is returned by Send after the connection has closed.
var ErrClosed = errors.New("wsconn: connection closed")

// DefaultBufferSize is the read/write buffer size for sockets that carry
// 64 KiB channel frames.
const DefaultBufferSize = 64 * 1024

type frame struct {
	kind int
	data []byte
	done func([]byte) // called with data after the frame was written (or dropped)
	// prefixed: the payload follows wsframe.MaxHeader bytes of room for
	// the header (SendEncodedWithin; written at once, never queued).
	prefixed bool
}

// Conn is a WebSocket connection with a dedicated writer goroutine.
type Conn struct {
	wmu       sync.Mutex    // held while writing to ws
	queued    atomic.Int64  // frames queued or being written by the writer goroutine
	wseq      atomic.Uint64 // odd while a write is in progress (see watchdog.go)
	ws        *websocket.Conn
	out       chan frame
	closing   chan struct{} // closed when Close is called or the writer fails
	done      chan struct{} // closed when the writer goroutine has exited
	closeOnce sync.Once
	closeMsg  []byte
	errMu     sync.Mutex
	err       error
	writeWait time.Duration
	cc        *corkConn     // ws's connection when it is ours (cork.go), else nil
	wbuf      []byte        // rawWrite's frame buffer; guarded by wmu
	encMu     sync.Mutex    // serialises SendEncodedWithin's encoders in blocking mode
	maxQueued int64         // non-blocking mode's budget (nonblock.go); 0: blocking mode
	wake      chan struct{} // non-blocking mode: pending bytes to drain
	// deferred: frames SendDeferred left in cc's buffer (corked); the next
	// write on c, or FlushDeferred, sends them. Changed under wmu.
	deferred atomic.Bool
}

// Options tune a Conn.
type Options struct {
	// Queue is the number of frames that may wait for the writer. Default 256.
	Queue int
	// WriteTimeout bounds a write that makes no progress; 0 means 30 s. A
	// peer that accepts no data for that long is considered dead and the
	// connection is aborted (checked about once a second).
	WriteTimeout time.Duration
	// MaxQueuedBytes, when positive, puts the Conn in non-blocking mode
	// (nonblock.go): sends never wait for the peer; they fail with
	// ErrCongested while this many bytes already wait to be written. Queue
	// is then unused. It needs a socket made by Upgrade or Dialer.
	MaxQueuedBytes int64
}

// New wraps ws and starts its writer goroutine.
func New(ws *websocket.Conn, o Options) *Conn {
	if o.Queue <= 0 {
		o.Queue = 256
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	c := &Conn{
		ws:        ws,
		closing:   make(chan struct{}),
		done:      make(chan struct{}),
		writeWait: o.WriteTimeout,
	}
	c.cc, _ = ws.NetConn().(*corkConn)
	watch(c)
	if o.MaxQueuedBytes > 0 && c.cc != nil {
		c.maxQueued = o.MaxQueuedBytes
		c.wake = make(chan struct{}, 1)
		c.cc.setNonBlocking(c.wake)
		go c.writeLoopNB()
		return c
	}
	c.out = make(chan frame, o.Queue)
	go c.writeLoop()
	return c
}

// WS returns the underlying connection, for its reader and its settings.
// Only the read side may be used: writes must go through Send.
func (c *Conn) WS() *websocket.Conn { return c.ws }

// Send queues one frame. It blocks while the queue is full, until ctx ends
// or the connection closes. data must not be modified after Send returns
// nil; pass onWritten to learn when it may be reused: it is called with data
// once the frame was written, or dropped because the connection closed (a
// plain function such as a pool's put avoids an allocation per frame).
func (c *Conn) Send(ctx context.Context, kind int, data []byte, onWritten func([]byte)) error {
	if c.maxQueued > 0 {
		return c.sendNB(nil, kind, data, onWritten)
	}
	select {
	case <-c.closing:
		return c.closedErr()
	default:
	}
	f := frame{kind: kind, data: data, done: onWritten}
	// Fast path: nothing queued and nobody writing, so writing here keeps
	// the order and saves a goroutine hand-off.
	if c.queued.Load() == 0 && c.wmu.TryLock() {
		if c.queued.Load() == 0 && !c.isClosing() {
			ok := c.write(f) && c.undefer()
			c.wmu.Unlock()
			if !ok {
				return c.closedErr()
			}
			return nil
		}
		c.wmu.Unlock()
	}
	c.queued.Add(1)
	select {
	case c.out <- f:
		return nil
	case <-c.closing:
		c.queued.Add(-1)
		return c.closedErr()
	case <-ctx.Done():
		c.queued.Add(-1)
		return ctx.Err()
	}
}

// SendDeferred is Send for a frame that more frames of the same burst
// follow: when the socket is free it goes into the connection's write
// buffer, without a system call, and leaves with the next frame written on
// c, whoever sends it, or at FlushDeferred. The caller must call
// FlushDeferred when its burst ends. When the socket is busy the frame
// queues for the writer goroutine, as with SendLater.
func (c *Conn) SendDeferred(ctx context.Context, kind int, data []byte, onWritten func([]byte)) error {
	if c.maxQueued > 0 || c.cc == nil || len(data) > rawMax {
		return c.Send(ctx, kind, data, onWritten)
	}
	if c.isClosing() {
		return c.closedErr()
	}
	if c.queued.Load() == 0 && c.wmu.TryLock() {
		if c.queued.Load() == 0 && !c.isClosing() {
			c.cc.cork()
			c.deferred.Store(true)
			ok := c.write(frame{kind: kind, data: data, done: onWritten})
			c.wmu.Unlock()
			if !ok {
				return c.closedErr()
			}
			return nil
		}
		c.wmu.Unlock()
	}
	return c.SendLater(ctx, kind, data, onWritten)
}

// FlushDeferred writes the frames SendDeferred left in the buffer, if any.
func (c *Conn) FlushDeferred() {
	if !c.deferred.Load() {
		return
	}
	c.wmu.Lock()
	c.undefer()
	c.wmu.Unlock()
}

// undefer flushes deferred frames; the caller holds wmu. It reports false
// if the write failed (the connection is then closing).
func (c *Conn) undefer() bool {
	if !c.deferred.Load() {
		return true
	}
	c.deferred.Store(false)
	c.wseq.Add(1)
	err := c.cc.uncork()
	c.wseq.Add(1)
	if err != nil {
		c.setErr(err)
		c.closeOnce.Do(func() { close(c.closing) })
		return false
	}
	return true
}

// SendLater is Send without the inline write: the frame always goes to
// the writer goroutine, which writes every frame queued by the time it
// runs with one system call. It is for a sender that knows more frames
// follow at once (many calls in flight, a burst of results): a burst then
// costs one write, not one per frame, for a goroutine hand-off. A lone
// frame should use Send, which writes at once.
func (c *Conn) SendLater(ctx context.Context, kind int, data []byte, onWritten func([]byte)) error {
	if c.maxQueued > 0 {
		return c.sendNB(nil, kind, data, onWritten)
	}
	select {
	case <-c.closing:
		return c.closedErr()
	default:
	}
	c.queued.Add(1)
	select {
	case c.out <- frame{kind: kind, data: data, done: onWritten}:
		return nil
	case <-c.closing:
		c.queued.Add(-1)
		return c.closedErr()
	case <-ctx.Done():
		c.queued.Add(-1)
		return ctx.Err()
	}
}

func (c *Conn) isClosing() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// TrySend queues one frame without blocking; it reports false if the queue
// is full or the connection closed.
func (c *Conn) TrySend(kind int, data []byte) bool {
	if c.maxQueued > 0 {
		return c.sendNB(nil, kind, data, nil) == nil
	}
	if c.isClosing() {
		return false
	}
	c.queued.Add(1)
	select {
	case c.out <- frame{kind: kind, data: data}:
		return true
	default:
		c.queued.Add(-1)
		return false
	}
}

// Close sends a close frame with code and reason after the frames already
// queued, then closes the socket. It does not wait; use Done for that. A
// reason too long for a close frame is cut as websocket.FormatCloseMessage
// cuts it.
func (c *Conn) Close(code int, reason string) {
	c.closeOnce.Do(func() {
		c.closeMsg = websocket.FormatCloseMessage(code, reason)
		close(c.closing)
	})
}

// Hangup closes the socket once the frames already accepted are written,
// without a close frame of its own: for when the reader has answered the
// peer's close frame, or a protocol error, already.
func (c *Conn) Hangup() {
	c.closeOnce.Do(func() { close(c.closing) })
}

// HangupWithin is Hangup for a connection being torn down: what is still
// unwritten after d (the peer does not read) is dropped and the socket
// closed, as by Abort. It lets the reader's last frame (the answer to the
// peer's close frame, or the close frame of a protocol error) reach the
// peer also where nothing is written inline (TLS sockets in non-blocking
// mode), without holding the socket for the write timeout.
func (c *Conn) HangupWithin(d time.Duration) {
	c.Hangup()
	time.AfterFunc(d, func() {
		select {
		case <-c.done:
		default:
			c.Abort()
		}
	})
}

// Abort closes the socket at once, without a close frame and without
// flushing queued frames (the peer sees an abnormal closure).
func (c *Conn) Abort() {
	c.closeOnce.Do(func() { close(c.closing) })
	c.ws.NetConn().Close()
}

// Done is closed once the writer goroutine has finished and the socket is
// closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns the write error that ended the connection, if any.
func (c *Conn) Err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

func (c *Conn) closedErr() error {
	if err := c.Err(); err != nil {
		return err
	}
	return ErrClosed
}

func (c *Conn) setErr(err error) {
	c.errMu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.errMu.Unlock()
}

func (c *Conn) writeLoop() {
	defer close(c.done)
	defer c.ws.Close()
	defer unwatch(c)
	for {
		select {
		case f := <-c.out:
			if !c.writeQueued(f) {
				c.drop()
				return
			}
		case <-c.closing:
			// Flush what was queued before Close, then say goodbye.
			for {
				select {
				case f := <-c.out:
					if !c.writeQueued(f) {
						c.drop()
						return
					}
					continue
				default:
				}
				break
			}
			c.wmu.Lock()
			if cc, _ := c.ws.NetConn().(*corkConn); cc != nil {
				_ = cc.uncork() // frames a Batch still holds go before the close frame
			}
			if c.closeMsg != nil {
				_ = c.ws.WriteControl(websocket.CloseMessage, c.closeMsg, time.Now().Add(time.Second))
			}
			c.wmu.Unlock()
			return
		}
	}
}

// writeQueued writes f and, if the socket supports it, every frame queued
// behind it in one batch.
func (c *Conn) writeQueued(f frame) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	cc, _ := c.ws.NetConn().(*corkConn)
	if cc == nil || len(c.out) == 0 {
		ok := c.write(f) && c.undefer()
		c.queued.Add(-1)
		return ok
	}
	c.deferred.Store(false) // flushed below with the rest
	cc.cork()
	ok := c.write(f)
	c.queued.Add(-1)
	for ok {
		select {
		case f = <-c.out:
			ok = c.write(f)
			c.queued.Add(-1)
			continue
		default:
		}
		break
	}
	c.wseq.Add(1)
	err := cc.uncork()
	c.wseq.Add(1)
	if err != nil && ok {
		c.setErr(err)
		c.closeOnce.Do(func() { close(c.closing) })
		ok = false
	}
	return ok
}

// write sends one frame; the caller holds wmu. Once our close frame is
// out (the reader's answer to a protocol error or to the peer's close),
// nothing may follow it (RFC 6455 §5.5.1): the frames still queued are
// dropped, not written — the engine has already answered the calls they
// carry as stopped, and the peer must not run them.
func (c *Conn) write(f frame) bool {
	if c.ws.CloseSent() {
		if f.done != nil {
			f.done(f.data)
		}
		return true
	}
	c.wseq.Add(1)
	var err error
	if f.prefixed {
		err = c.rawWritePrefixed(c.cc, f.kind, f.data)
	} else if c.cc != nil && len(f.data) <= rawMax {
		err = c.rawWrite(c.cc, f.kind, f.data)
	} else if c.cc != nil {
		err = c.rawWriteLarge(c.cc, f.kind, f.data)
	} else {
		err = c.ws.WriteMessage(f.kind, f.data)
	}
	c.wseq.Add(1)
	if f.done != nil {
		f.done(f.data)
	}
	if err != nil {
		c.setErr(err)
		c.closeOnce.Do(func() { close(c.closing) })
		return false
	}
	return true
}

// drop releases frames that will never be written.
func (c *Conn) drop() {
	for {
		select {
		case f := <-c.out:
			c.queued.Add(-1)
			if f.done != nil {
				f.done(f.data)
			}
		default:
			return
		}
	}
}

// IsCloseError reports whether err is a close frame and returns its code and
// reason.
func IsCloseError(err error) (code int, reason string, ok bool) {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code, ce.Text, true
	}
	return 0, "", false
}
