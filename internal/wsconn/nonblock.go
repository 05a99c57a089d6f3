package wsconn

import (
	"context"
	"errors"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrCongested is returned by a Conn with Options.MaxQueuedBytes when the
// frames waiting to be written to its peer already fill that budget.
var ErrCongested = errors.New("wsconn: peer congested: too many bytes waiting to be written")

// Non-blocking mode (Options.MaxQueuedBytes > 0) is for sockets written by
// goroutines that serve other sockets (the engine: a caller's reader
// delivers to an executor's socket). No write on such a socket may block
// its producer, or one peer that stops reading stalls every peer whose
// traffic passes through the producer. So every write is one non-blocking
// write system call; what the kernel does not take is appended to a
// pending buffer that the Conn's writer goroutine drains with blocking
// writes (watched by the write timeout), and later frames queue behind it.
// The pending bytes are bounded: Send answers ErrCongested instead of
// waiting for room. The inline write keeps the fast path of an idle socket
// (no goroutine hand-off); sockets without a file descriptor (TLS) always
// hand their bytes to the writer goroutine.

// nbState is corkConn's non-blocking mode; guarded by corkConn.mu.
type nbState struct {
	on       bool
	pend     []byte       // accepted, not yet handed to the kernel
	spare    []byte       // a drained pend kept for reuse
	inflight int          // bytes the writer goroutine is writing now
	queued   atomic.Int64 // len(pend) + inflight, for Send's budget check without mu
	wake     chan struct{}
	raw      syscall.RawConn // nil: no inline writes
	rawFn    func(fd uintptr) bool
	rp       []byte // tryWrite's argument and results, for rawFn
	rn       int
	rerr     error
}

// keepPending is the largest drained pending buffer kept for reuse: a
// burst's buffer must not stay pinned to a mostly idle socket.
const keepPending = 64 << 10

// setNonBlocking switches c to non-blocking mode; wake is signalled when
// there are pending bytes to drain.
func (c *corkConn) setNonBlocking(wake chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nb.on = true
	c.nb.wake = wake
	// ws.Conn's deadlines are not applied in this mode: nothing blocks but
	// the drain, whose stalls the watchdog cuts.
	_ = c.deadline(time.Time{})
	if sc, ok := c.Conn.(syscall.Conn); ok && canTryWrite {
		if raw, err := sc.SyscallConn(); err == nil {
			c.nb.raw = raw
			c.nb.rawFn = c.rawWriteFn // bound once: a method value per write would allocate
		}
	}
}

// rawWriteFn is the syscall.RawConn.Write callback: one attempt, never a
// wait for writability.
func (c *corkConn) rawWriteFn(fd uintptr) bool {
	c.nb.rn, c.nb.rerr = tryWriteFD(fd, c.nb.rp)
	return true
}

// nbWrite accepts p without blocking; the caller holds mu.
func (c *corkConn) nbWrite(p []byte) error {
	s := &c.nb
	if len(s.pend) > 0 || s.inflight > 0 || s.raw == nil {
		c.pendLocked(p)
		return nil
	}
	s.rp = p
	err := s.raw.Write(s.rawFn)
	n, werr := s.rn, s.rerr
	s.rp = nil
	if err == nil {
		err = werr
	}
	if err != nil {
		return err
	}
	if n < len(p) {
		c.pendLocked(p[n:])
	}
	return nil
}

func (c *corkConn) pendLocked(p []byte) {
	s := &c.nb
	if s.pend == nil && s.spare != nil {
		s.pend, s.spare = s.spare[:0], nil
	}
	s.pend = append(s.pend, p...)
	s.queued.Add(int64(len(p)))
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// pendingLocked is the number of bytes accepted but not yet taken by the
// kernel (including a cork buffer's); the caller holds mu.
func (c *corkConn) pendingLocked() int {
	return len(c.buf) + len(c.nb.pend) + c.nb.inflight
}

// drain writes the pending bytes, blocking, until there are none; seq is
// bumped around each write for the watchdog. It returns the first error.
func (c *corkConn) drain(seq *atomic.Uint64) error {
	for {
		c.mu.Lock()
		s := &c.nb
		if len(s.pend) == 0 {
			s.inflight = 0
			c.mu.Unlock()
			return nil
		}
		p := s.pend
		s.pend = nil
		s.inflight = len(p)
		c.mu.Unlock()

		seq.Add(1)
		_, err := c.Conn.Write(p)
		seq.Add(1)

		c.mu.Lock()
		s.inflight = 0
		s.queued.Add(-int64(len(p)))
		if cap(p) <= keepPending {
			s.spare = p[:0]
		}
		c.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// Read counts the bytes received, for liveness checks (BytesRead).
func (c *corkConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.rx.Add(uint64(n))
	}
	return n, err
}

// BytesRead returns how many bytes were received on the socket so far
// (0 for a socket not made by Upgrade or Dialer). A value that does not
// change over a period means the peer sent nothing, not even a pong.
func (c *Conn) BytesRead() uint64 {
	if c.cc == nil {
		return 0
	}
	return c.cc.rx.Load()
}

// Pending returns the bytes accepted for the peer that the kernel has not
// taken yet (non-blocking mode; 0 otherwise).
func (c *Conn) Pending() int {
	if c.cc == nil || c.maxQueued == 0 {
		return 0
	}
	c.cc.mu.Lock()
	defer c.cc.mu.Unlock()
	return c.cc.pendingLocked()
}

// sendNB is Send and SendIn in non-blocking mode.
func (c *Conn) sendNB(b *Batch, kind int, data []byte, onWritten func([]byte)) error {
	return c.sendNBWithin(b, kind, data, onWritten, c.maxQueued)
}

// SendInWithin is SendIn with a budget of its own instead of
// MaxQueuedBytes (non-blocking mode; otherwise it is SendIn): a caller can
// let some frames, say small ones that must not be lost, use more.
func (c *Conn) SendInWithin(ctx context.Context, b *Batch, kind int, data []byte, onWritten func([]byte), budget int64) error {
	if c.maxQueued == 0 {
		return c.SendIn(ctx, b, kind, data, onWritten)
	}
	return c.sendNBWithin(b, kind, data, onWritten, budget)
}

func (c *Conn) sendNBWithin(b *Batch, kind int, data []byte, onWritten func([]byte), budget int64) error {
	if c.isClosing() {
		return c.closedErr()
	}
	c.wmu.Lock()
	if c.isClosing() {
		c.wmu.Unlock()
		return c.closedErr()
	}
	// One frame is always accepted by an idle socket, whatever its size
	// (the message size limit bounds it). A Batch's cork buffer is not
	// counted: it is at most maxCork and handed on at the batch's end.
	if p := c.cc.nb.queued.Load(); p > 0 && p+int64(len(data)) > budget {
		c.wmu.Unlock()
		return ErrCongested
	}
	if b.deferring() && c.cc.corkIfOpen() {
		b.conns = append(b.conns, c)
	}
	ok := c.write(frame{kind: kind, data: data, done: onWritten})
	c.wmu.Unlock()
	if !ok {
		return c.closedErr()
	}
	return nil
}

// writeLoopNB is the writer goroutine in non-blocking mode: it drains the
// pending bytes and, at Close, writes the close frame after them.
func (c *Conn) writeLoopNB() {
	defer close(c.done)
	defer c.ws.Close()
	defer unwatch(c)
	for {
		select {
		case <-c.wake:
			if err := c.cc.drain(&c.wseq); err != nil {
				c.setErr(err)
				c.closeOnce.Do(func() { close(c.closing) })
				return
			}
		case <-c.closing:
			c.wmu.Lock()
			_ = c.cc.uncork()
			if c.closeMsg != nil {
				_ = c.ws.WriteControl(closeMessage, c.closeMsg, time.Now().Add(time.Second))
			}
			c.wmu.Unlock()
			_ = c.cc.drain(&c.wseq)
			return
		}
	}
}
