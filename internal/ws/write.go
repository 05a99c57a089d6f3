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
		return errDataOp
	}
	c.wmu <- struct{}{}
	defer func() { <-c.wmu }()
	if err := c.startData(); err != nil {
		return err
	}
	if tcp := c.vectored(); tcp != nil && len(data) > keepWriteBuffer-wsframe.MaxHeader {
		return c.writev(tcp, op, data, nil)
	}
	return c.writeMessage(op, data)
}

// Message is one data message of WriteMessages.
type Message struct {
	Op   int // TextMessage or BinaryMessage
	Data []byte
}

// WriteMessages writes msgs in order, as WriteMessage would one by one,
// but, as a server on a TCP connection, in one writev: every frame's
// header and payload without copying, in one system call, packed into
// full segments. It is how the channel hub hands a reader the frames that
// queued up while it was writing. Other writes never come between them.
func (c *Conn) WriteMessages(msgs []Message) error {
	for i := range msgs {
		if msgs[i].Op != TextMessage && msgs[i].Op != BinaryMessage {
			return errDataOp
		}
	}
	c.wmu <- struct{}{}
	defer func() { <-c.wmu }()
	if err := c.startData(); err != nil {
		return err
	}
	if tcp := c.vectored(); tcp != nil {
		return c.writev(tcp, 0, nil, msgs)
	}
	for i := range msgs {
		if err := c.writeMessage(msgs[i].Op, msgs[i].Data); err != nil {
			return err
		}
	}
	return nil
}

var errDataOp = errors.New("websocket: WriteMessage takes a text or binary message")

// startData readies a data write; the caller holds wmu.
func (c *Conn) startData() error {
	if c.closeSent.Load() {
		return ErrCloseSent
	}
	return c.conn.SetWriteDeadline(c.wdeadline)
}

// vectored returns the TCP connection a server writes frames to with
// writev (its payloads are not masked, so they need no copy), or nil.
func (c *Conn) vectored() *net.TCPConn {
	if !c.server {
		return nil
	}
	tcp, _ := c.conn.(*net.TCPConn)
	return tcp
}

// maxFrag is the largest frame payload WriteMessage writes.
func (c *Conn) maxFrag() int {
	if c.fragment <= 0 {
		return maxFragment
	}
	return c.fragment
}

// writeMessage writes one message, each frame copied behind its header
// and written with one Write; the caller holds wmu.
func (c *Conn) writeMessage(op int, data []byte) error {
	frag := c.maxFrag()
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

// writev writes the message op/data, or else msgs, with one writev of
// their frames' headers and payloads (fragmented as writeMessage does);
// the caller holds wmu. The net package holds the socket's write lock for
// the whole writev, so no other Write lands inside it.
func (c *Conn) writev(tcp *net.TCPConn, op int, data []byte, msgs []Message) error {
	frag := c.maxFrag()
	vec := c.vec[:0]
	nh := 0
	frames := func(op int, data []byte) {
		for {
			n := min(len(data), frag)
			fin := n == len(data)
			if nh == len(c.hdrs) {
				c.hdrs = append(c.hdrs, [wsframe.MaxHeader]byte{})
			}
			h := wsframe.PutHeader(c.hdrs[nh][:], fin, op, n, false, [4]byte{})
			vec = append(vec, c.hdrs[nh][:h])
			nh++
			if n > 0 {
				vec = append(vec, data[:n])
			}
			if fin {
				return
			}
			data, op = data[n:], wsframe.OpContinuation
		}
	}
	if msgs == nil {
		frames(op, data)
	}
	for i := range msgs {
		frames(msgs[i].Op, msgs[i].Data)
	}
	c.vec = vec
	c.bufs = vec // a field: WriteTo's receiver would escape
	_, err := c.bufs.WriteTo(tcp)
	c.bufs = nil
	clear(vec) // no references to the caller's payloads
	return err
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
