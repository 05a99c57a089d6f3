// The reader of a control socket: what the holder of the reader role
// (reader.go) reads with, over ws:// and wss:// alike.

package sluice

import (
	"errors"
	"io"
	"net"
	"os"
	"time"
	"unicode/utf8"

	websocket "github.com/sluicehq/sluice/internal/ws"

	"github.com/sluicehq/sluice/internal/ws/wsframe"
	"github.com/sluicehq/sluice/internal/wsconn"
)

// ctlReader reads a control socket's data messages frame by frame with
// ws.FrameReader, which handles the protocol (control frames, masking,
// message order, errors). ctlReader keeps the SDK's own policy: the idle
// deadline, the message buffer, skipping an oversized message, the UTF-8
// check of a whole text message. Everything it is in the middle of
// survives a read interrupted by a deadline (interrupt), so the next holder
// of the role goes on where it stopped; TLS connections allow that too (a
// read deadline does not break a tls.Conn). Only the holder of the reader
// role uses it.
type ctlReader struct {
	ws   *websocket.Conn
	fr   *websocket.FrameReader
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
}

// controlReader is the reader of the control socket ws (dial's). It sets
// ws's ping and pong handlers: a control frame proves the engine alive.
func controlReader(ws *websocket.Conn, idle time.Duration) *ctlReader {
	r := &ctlReader{ws: ws, fr: ws.Frames(), idle: idle, seen: time.Now()}
	// A control frame is rare and nothing else may follow for long: it
	// counts from now, not from the next arm.
	ws.SetPongHandler(func(string) error {
		r.seen = time.Now()
		return nil
	})
	ws.SetPingHandler(func(p string) error {
		r.seen = time.Now()
		// The pong ws.Conn answers without a handler, and its errors: a
		// write that timed out or came after our close frame is no
		// reason to stop reading.
		err := ws.WriteControl(websocket.PongMessage, []byte(p), time.Now().Add(time.Second))
		var ne net.Error
		if err != nil && err != websocket.ErrCloseSent && !(errors.As(err, &ne) && ne.Timeout()) {
			return err
		}
		return nil
	})
	return r
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
		_ = r.ws.SetReadDeadline(r.seen.Add(r.idle))
		r.armed = now
	}
}

// buffered reports whether the next data message is already buffered
// whole (more input of the same burst).
func (r *ctlReader) buffered() bool { return !r.inMsg && r.fr.Buffered() }

// interrupted reports whether err is a deadline that passed before the
// idle timeout (someone called interrupt), and if so readies r to go on.
func (r *ctlReader) interrupted(err error) bool {
	if r.fresh {
		r.seen, r.fresh = time.Now(), false
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(r.seen) >= r.idle {
		return false
	}
	r.armed = time.Time{}
	return true
}

// interrupt makes a blocked read return at once with a deadline error.
func (r *ctlReader) interrupt() { _ = r.ws.SetReadDeadline(time.Unix(1, 0)) }

// minReadGrow is the least a message buffer grows by.
const minReadGrow = 64 << 10

// next returns the next data message, valid until the next call; an
// oversized message is skipped with wsconn.ErrFrameTooLarge. Its errors
// are ws.FrameReader's: a deadline passing can be resumed from, anything
// else ends the socket.
func (r *ctlReader) next() ([]byte, error) {
	for {
		if rem := r.fr.Remaining(); rem > 0 { // the rest of a data frame
			if r.skip {
				if err := r.fr.Skip(rem); err != nil {
					return nil, err
				}
				continue
			}
			// The buffer grows as bytes arrive, when it is full, by
			// doubling (a message in many small fragments is copied
			// O(log n) times), never to more than the message needs once
			// this is its last frame, nor to the length a frame announced
			// before its bytes came. Room for the next frame's header
			// too: FrameReader then reads it with the same system call.
			n := len(r.msg)
			if cap(r.msg)-n <= wsframe.MaxHeader {
				c := max(n+min(int(rem), minReadGrow)+wsframe.MaxHeader, 2*cap(r.msg))
				if r.fin {
					c = min(c, n+int(rem)+wsframe.MaxHeader)
				}
				r.msg = append(make([]byte, 0, c), r.msg...)
			}
			got, err := r.fr.Read(r.msg[n:min(cap(r.msg), n+int(rem)+wsframe.MaxHeader)])
			r.msg = r.msg[:n+got]
			if err != nil && err != io.EOF {
				return nil, err
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
				return nil, r.fr.FailText()
			}
			return data, nil
		}
		h, err := r.fr.Next()
		if err != nil {
			return nil, err
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
