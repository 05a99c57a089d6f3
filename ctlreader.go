// The reader of a control socket: what the holder of the reader role
// (reader.go) reads with, over ws:// and wss:// alike.

package sluice

import (
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"time"
	"unicode/utf8"

	websocket "github.com/sluicehq/sluice/internal/ws"

	"github.com/sluicehq/sluice/internal/ws/wsframe"
	"github.com/sluicehq/sluice/internal/wsconn"
)

// ctlReader reads a control socket's data messages with wsframe.Reader,
// handling control frames on the way. Everything it is in the middle of
// survives a read interrupted by a deadline (interrupt), so the next holder
// of the role goes on where it stopped; TLS connections allow that too (a
// read deadline does not break a tls.Conn). Only the holder of the reader
// role uses it.
type ctlReader struct {
	ws   *websocket.Conn // for control replies; safe beside the writer
	conn net.Conn        // where the deadlines are set
	fr   *wsframe.Reader
	idle time.Duration
	// seen is when the last frame arrived; the deadline is seen+idle.
	// fresh says a data frame arrived since arm last looked (arm's now is
	// then its time: one clock read per message, not per frame).
	seen  time.Time
	fresh bool
	armed time.Time // when the deadline was last set; zero: set it now

	msg   []byte // the data message being read
	kind  int    // its opcode (text or binary)
	inMsg bool   // a frame of it has been read
	fin   bool   // the current frame is its last
	skip  bool   // it is over the size limit

	ctlOp  int // a control frame being read, 0 if none
	ctlLen int
	ctlGot int
	ctl    [125]byte
}

// controlReader is the reader of the control socket ws (dial's).
func controlReader(ws *websocket.Conn, idle time.Duration) *ctlReader {
	return newCtlReader(ws, ws.FrameSource(), ws.NetConn(), idle)
}

// newCtlReader reads frames from src, setting its deadlines on conn (the
// connection src reads), and answers control frames on ws.
func newCtlReader(ws *websocket.Conn, src io.Reader, conn net.Conn, idle time.Duration) *ctlReader {
	return &ctlReader{ws: ws, conn: conn, fr: wsframe.NewReader(src, 4096), idle: idle, seen: time.Now()}
}

// arm pushes the idle deadline out, now and then: only when a quarter of
// it has passed, since re-arming on every frame costs a runtime timer
// update per frame. The engine therefore counts as dead after 3/4 to 4/4
// of the idle timeout.
func (r *ctlReader) arm(now time.Time) {
	if r.fresh {
		r.seen, r.fresh = now, false
	}
	if r.armed.IsZero() || now.Sub(r.armed) > r.idle/4 {
		_ = r.conn.SetReadDeadline(r.seen.Add(r.idle))
		r.armed = now
	}
}

// buffered reports whether the next data frame is already buffered whole
// (more input of the same burst).
func (r *ctlReader) buffered() bool { return r.ctlOp == 0 && !r.inMsg && r.fr.FrameBuffered() }

// interrupted reports whether err is a deadline that passed before the
// idle timeout (someone called interrupt), and if so readies r to go on.
func (r *ctlReader) interrupted(err error) bool {
	if r.fresh {
		r.seen, r.fresh = time.Now(), false
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(r.seen) >= r.idle {
		return false
	}
	r.fr.ClearTimeout()
	r.armed = time.Time{}
	return true
}

// interrupt makes a blocked read return at once with a deadline error.
func (r *ctlReader) interrupt() { _ = r.conn.SetReadDeadline(time.Unix(1, 0)) }

// next returns the next data message, valid until the next call; an
// oversized message is skipped with wsconn.ErrFrameTooLarge.
func (r *ctlReader) next() ([]byte, error) {
	for {
		if r.ctlOp != 0 { // the rest of a control frame
			for r.ctlGot < r.ctlLen {
				n, err := r.fr.Read(r.ctl[r.ctlGot:r.ctlLen])
				r.ctlGot += n
				if err != nil && r.ctlGot < r.ctlLen {
					return nil, r.readErr(err)
				}
			}
			op := r.ctlOp
			r.ctlOp = 0
			if err := r.control(op, r.ctl[:r.ctlLen]); err != nil {
				return nil, err
			}
			continue
		}
		if rem := r.fr.Remaining(); rem > 0 { // the rest of a data frame
			if r.skip {
				if err := r.fr.Discard(); err != nil {
					return nil, r.readErr(err)
				}
				continue
			}
			// Room for the next frame's header too: wsframe then reads it
			// with the same system call.
			n := len(r.msg)
			r.msg = slices.Grow(r.msg, int(rem)+wsframe.MaxHeader)
			got, err := r.fr.Read(r.msg[n : n+int(rem)+wsframe.MaxHeader])
			r.msg = r.msg[:n+got]
			if err != nil && err != io.EOF {
				return nil, r.readErr(err)
			}
			continue
		}
		if r.inMsg && r.fin {
			r.inMsg = false
			data := r.msg
			r.msg = r.msg[:0]
			if cap(r.msg) > keepReadBuffer {
				r.msg = nil // do not pin one huge message's buffer
			}
			if r.skip {
				r.skip = false
				return nil, wsconn.ErrFrameTooLarge
			}
			if r.kind == wsframe.OpText && !utf8.Valid(data) {
				return nil, r.ws.FailProtocol(websocket.ErrTextUTF8)
			}
			return data, nil
		}
		h, err := r.fr.Next()
		if err != nil {
			return nil, r.readErr(err)
		}
		switch {
		case h.Masked:
			return nil, r.fail("masked server frame")
		case wsframe.IsControl(h.Op):
			r.seen = time.Now() // rare, and nothing else may follow for long
			r.ctlOp, r.ctlLen, r.ctlGot = h.Op, int(h.Len), 0
			continue
		case h.Op == wsframe.OpContinuation && !r.inMsg:
			return nil, r.fail("continuation frame outside a message")
		case h.Op != wsframe.OpContinuation && r.inMsg:
			return nil, r.fail("new message inside a fragmented one")
		}
		r.fresh = true
		if !r.inMsg {
			r.kind = h.Op
		}
		r.inMsg, r.fin = true, h.Fin
		if uint64(len(r.msg))+h.Len > maxFrameSize {
			r.skip = true
		}
	}
}

// control answers a control frame (a pong only proves the engine alive:
// seen).
func (r *ctlReader) control(op int, p []byte) error {
	return wsconn.AnswerControl(r.ws, op, p, time.Second)
}

// readErr answers a header wsframe refused and maps an EOF.
func (r *ctlReader) readErr(err error) error {
	var pe *websocket.ProtocolError
	if errors.As(err, &pe) {
		return r.ws.FailProtocol(pe)
	}
	if err == io.EOF {
		return io.ErrUnexpectedEOF // no close frame
	}
	return err
}

// fail answers a frame that breaks RFC 6455 with close 1002.
func (r *ctlReader) fail(reason string) error {
	return r.ws.FailProtocol(&websocket.ProtocolError{Reason: reason})
}
