package ws

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/ws/wsframe"
)

// maxFragment is the largest frame WriteMessage writes; a longer message
// goes out in fragments of this size, each one Write of its own (frames
// from other writers, control frames included, may go between fragments,
// never inside one).
const maxFragment = 64 << 10

// keepWriteBuffer is the largest frame buffer a Conn keeps between
// writes; bigger ones come from a pool, so an idle socket pins little.
const keepWriteBuffer = 4 << 10

var bigBuffers = sync.Pool{New: func() any { return new([wsframe.MaxHeader + maxFragment]byte) }}

// errWriteTimeout is returned by WriteControl when another write held the
// connection past its deadline.
var errWriteTimeout = &net.OpError{Op: "write", Net: "websocket", Err: os.ErrDeadlineExceeded}

// WriteMessage writes a text or binary message.
func (c *Conn) WriteMessage(op int, data []byte) error {
	if op != TextMessage && op != BinaryMessage {
		return errors.New("websocket: WriteMessage takes a text or binary message")
	}
	c.wmu <- struct{}{}
	defer func() { <-c.wmu }()
	if c.closeSent.Load() {
		return ErrCloseSent
	}
	if err := c.conn.SetWriteDeadline(c.wdeadline); err != nil {
		return err
	}
	frag := c.fragment
	if frag <= 0 {
		frag = maxFragment
	}
	for {
		n := min(len(data), frag)
		fin := n == len(data)
		if err := c.writeFrame(fin, op, data[:n]); err != nil {
			return err
		}
		if fin {
			return nil
		}
		data, op = data[n:], wsframe.OpContinuation
	}
}

// WriteControl writes a close, ping or pong frame (at most 125 bytes),
// waiting for other writes at most until deadline (zero: no bound). After
// a close frame, every write fails with ErrCloseSent.
func (c *Conn) WriteControl(op int, data []byte, deadline time.Time) error {
	if err := checkControl(op, data); err != nil {
		return err
	}
	select {
	case c.wmu <- struct{}{}: // free: no timer
	default:
		if deadline.IsZero() {
			c.wmu <- struct{}{}
			break
		}
		t := time.NewTimer(time.Until(deadline))
		select {
		case c.wmu <- struct{}{}:
			t.Stop()
		case <-t.C:
			return errWriteTimeout
		}
	}
	return c.writeControlLocked(op, data, deadline)
}

// ErrWriteBusy is returned by TryWriteControl when another write holds the
// connection.
var ErrWriteBusy = errors.New("websocket: connection busy with another write")

// TryWriteControl is WriteControl that does not wait for other writes: if
// one holds the connection (a data write blocked by a peer that does not
// read), it returns ErrWriteBusy at once. The frame's own write is bounded
// by deadline. It is for replies from the reading goroutine, which must
// not wait behind a write that only its hanging up would end.
func (c *Conn) TryWriteControl(op int, data []byte, deadline time.Time) error {
	if err := checkControl(op, data); err != nil {
		return err
	}
	select {
	case c.wmu <- struct{}{}:
	default:
		return ErrWriteBusy
	}
	return c.writeControlLocked(op, data, deadline)
}

func checkControl(op int, data []byte) error {
	if !wsframe.IsControl(op) || op > PongMessage {
		return errors.New("websocket: WriteControl takes a close, ping or pong frame")
	}
	if len(data) > 125 {
		return errors.New("websocket: control frame payload over 125 bytes")
	}
	return nil
}

// writeControlLocked writes a control frame; the caller took wmu, which
// it releases.
func (c *Conn) writeControlLocked(op int, data []byte, deadline time.Time) error {
	defer func() { <-c.wmu }()
	if c.closeSent.Load() {
		return ErrCloseSent
	}
	if op == CloseMessage {
		c.closeSent.Store(true)
	}
	if err := c.conn.SetWriteDeadline(deadline); err != nil {
		return err
	}
	return c.writeFrame(true, op, data)
}

// writeFrame writes one frame in one Write; the caller holds wmu.
func (c *Conn) writeFrame(fin bool, op int, p []byte) error {
	need := wsframe.MaxHeader + len(p)
	var b []byte
	var big *[wsframe.MaxHeader + maxFragment]byte
	if need <= keepWriteBuffer {
		if c.wbuf == nil {
			c.wbuf = make([]byte, keepWriteBuffer)
		}
		b = c.wbuf
	} else if need <= wsframe.MaxHeader+maxFragment {
		big = bigBuffers.Get().(*[wsframe.MaxHeader + maxFragment]byte)
		defer bigBuffers.Put(big)
		b = big[:]
	} else {
		b = make([]byte, need) // a WriteBufferSize over maxFragment
	}
	var key [4]byte
	client := !c.server
	if client {
		k := rand.Uint32() // ChaCha8: unpredictable per frame, as §5.3 asks
		key = [4]byte{byte(k), byte(k >> 8), byte(k >> 16), byte(k >> 24)}
	}
	h := wsframe.PutHeader(b, fin, op, len(p), client, key)
	if client {
		wsframe.MaskCopy(b[h:], p, key)
	} else {
		copy(b[h:], p)
	}
	_, err := c.conn.Write(b[:h+len(p)])
	return err
}
