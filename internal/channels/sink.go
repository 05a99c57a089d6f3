package channels

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/internal/channels/wsframe"
)

// readerSink lets the goroutine that sends a channel's frames (memPipe.Send)
// write a frame to the reader socket itself while the read end is idle, as
// a relay writes each buffer from the thread that read it: without it every
// frame is handed from the goroutine reading the writer's socket to the one
// writing the reader's, a futex wake-up and a context switch per frame.
//
// A direct write never waits: it is one writev on the non-blocking socket
// (rawVec). If the socket takes none of the frame, the frame is queued as
// usual; if it takes part of it, the frame is queued with Frame.sent set
// and the reader goroutine writes the rest. So the sender never blocks on
// the reader's socket (backpressure, Abort and CloseRecv work on the queue
// exactly as without direct writes), and order holds because the sender
// writes directly only when no frame is queued or being written
// (memPipe.pending).
//
// mu keeps control frames (pongs, close frames) out of data frames: a
// whole write is atomic on the socket, but a frame left half-written by a
// direct write is finished by another goroutine later, so mu stays locked
// from that direct write until the reader goroutine has written the rest
// (finish) or the frame was dropped unwritten (abandon). Control frames
// take mu.
type readerSink struct {
	conn net.Conn
	rc   syscall.RawConn
	ctl  func(op int, data []byte, deadline time.Time) error // ws.Conn's WriteControl
	wfn  func(fd uintptr) bool                               // v.write, bound once
	mu   sync.Mutex
	shut bool // no more data: the close frame is out or the socket failed
	cut  bool // a frame was left half-written: nothing may follow it
	hdr  [wsframe.MaxHeader]byte
	v    rawVec

	onCtlWait func() // test hook: a control frame waits for a half-written frame
}

// errSinkShut: the reader socket takes no more data frames.
var errSinkShut = errors.New("channels: reader socket closed")

// newReaderSink returns a sink for a reader socket, or nil where direct
// writes are not supported (not TCP: TLS; not Linux).
func newReaderSink(conn net.Conn, ctl func(int, []byte, time.Time) error) *readerSink {
	tcp, ok := conn.(*net.TCPConn)
	if !ok || !haveRawVec {
		return nil
	}
	rc, err := tcp.SyscallConn()
	if err != nil {
		return nil
	}
	s := &readerSink{conn: conn, rc: rc, ctl: ctl}
	s.wfn = s.v.write
	return s
}

// tryWrite writes as much of f as the socket takes at once. all: f is
// out. Otherwise f.sent says how much went out: 0, or part of f, and then
// s.mu stays locked until finish or abandon. An error means the socket is
// gone (nothing was written).
func (s *readerSink) tryWrite(f *Frame) (all bool, err error) {
	s.mu.Lock()
	if s.shut {
		s.mu.Unlock()
		return false, errSinkShut
	}
	op := opBinary
	if f.Text {
		op = opText
	}
	h := wsframe.PutHeader(s.hdr[:], true, op, len(f.Data), false, [4]byte{})
	s.v.set(s.hdr[:h], f.Data)
	if err := s.rc.Write(s.wfn); err != nil && s.v.err == nil {
		s.v.err = err
	}
	n, err := s.v.n, s.v.err
	s.v.clear()
	switch {
	case err != nil:
		s.shut = true
		s.mu.Unlock()
		return false, err
	case n == h+len(f.Data):
		s.mu.Unlock()
		return true, nil
	case n == 0:
		s.mu.Unlock()
		return false, nil
	}
	f.sent = n // s.mu stays locked: the frame is half on the wire
	return false, nil
}

// finish is called by the reader goroutine once it has written the rest of
// a frame that tryWrite left half-written (err: that write's error).
func (s *readerSink) finish(err error) {
	if err != nil {
		s.shut, s.cut = true, true
	}
	s.mu.Unlock()
}

// abandon is called when a frame that tryWrite left half-written is dropped
// unwritten (the stream broke): the socket can carry nothing more.
func (s *readerSink) abandon() {
	s.shut, s.cut = true, true
	s.mu.Unlock()
}

// control writes a control frame between data frames; a close frame ends
// the data. Behind a half-written frame it waits for the reader goroutine
// to finish it; with a deadline it sets it on the socket first, as
// WriteControl would, so that a reader that stopped reading cannot hold a
// close frame (and the end of the channel) forever: the rest of the frame
// then fails at the deadline and no close frame follows it.
func (s *readerSink) control(op int, data []byte, deadline time.Time) error {
	if !s.mu.TryLock() {
		if !deadline.IsZero() {
			_ = s.conn.SetWriteDeadline(deadline)
		}
		if s.onCtlWait != nil {
			s.onCtlWait()
		}
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	if s.cut {
		return errSinkShut
	}
	if op == opClose {
		s.shut = true
	}
	return s.ctl(op, data, deadline)
}

// close says no more data frames may be written (the reader goroutine is
// done).
func (s *readerSink) close() {
	s.mu.Lock()
	s.shut = true
	s.mu.Unlock()
}
