package wsconn

import (
	"errors"
	"unicode/utf8"

	websocket "github.com/sluicehq/sluice/internal/ws"

	"github.com/sluicehq/sluice/internal/ws/wsframe"
)

// ReadFrame reads the next data message on ws (any socket, whoever made
// it) into buf and returns its type and the filled slice. It is the
// engine's message policy on top of ws.FrameReader, which does the
// protocol: control frames answered by ws's handlers, masking by role,
// message order, errors answered with their close code, an EOF mapped to
// close 1006.
//
//   - buf grows by doubling as the bytes arrive, at most to limit (when
//     > 0) or to the message's length once its last frame is known:
//     memory follows what the peer sent, not the length it announced, and
//     a message in many small fragments is copied O(log n) times. A
//     payload of 1 KiB or more that did not arrive with its header is read
//     straight into it.
//   - A message over limit returns ErrFrameTooLarge with its first
//     OversizedPrefix bytes (at most limit+1) and its last OversizedTail
//     bytes; the rest is dropped as it arrives, never buffered. The next
//     call reads the message after it.
//   - A Text message returned without error is valid UTF-8 as a whole,
//     however it was fragmented; one that is not ends the connection with
//     close 1007 (FailText). wire.DecodeText relies on this, and the engine
//     forwards the payloads it vouches for without another scan
//     (TestConformanceEngineReader, interop TestAttackWireInvalidUTF8).
//     The part returned with ErrFrameTooLarge is not checked.
//
// Any other error is final, except a read deadline passing, returned as it
// is: the next call reads on, from the next message if the deadline cut
// one short (what had arrived of it is dropped).
func ReadFrame(ws *websocket.Conn, buf []byte, limit int64) (kind int, data []byte, err error) {
	f := ws.Frames()
	b := buf[:0]
	h, err := f.Next()
	for err == nil && h.Op == wsframe.OpContinuation {
		h, err = f.Next() // the rest of a message a deadline cut short
	}
	if err != nil {
		return 0, b, err
	}
	kind = h.Op
	for {
		if limit > 0 && h.Len > uint64(limit)-uint64(len(b)) {
			if b, err = oversized(f, h, b, limit); err != nil {
				return 0, b, err
			}
			return kind, b, ErrFrameTooLarge
		}
		bound := uint64(limit) // 0: none
		if h.Fin {
			bound = uint64(len(b)) + h.Len
		}
		if b, err = payload(f, b, h.Len, bound); err != nil {
			return 0, b, err
		}
		if h.Fin {
			break
		}
		if h, err = f.Next(); err != nil {
			return 0, b, err
		}
	}
	if kind == wsframe.OpText && !utf8.Valid(b) {
		return 0, b, f.FailText()
	}
	return kind, b, nil
}

// ErrFrameTooLarge is returned when a message exceeds the read limit.
var ErrFrameTooLarge = errors.New("wsconn: frame exceeds size limit")

// A message over the limit is returned with ErrFrameTooLarge as its first
// OversizedPrefix bytes (at most limit+1) followed by its last
// OversizedTail bytes: room for the envelope fields senders put before the
// payload (the Node, Rust and Go SDKs) or after it (the Python SDK).
const (
	OversizedPrefix = 64 << 10
	OversizedTail   = 4 << 10
)

// oversized reads what ReadFrame keeps of a message over the limit: b
// holds its fragments so far, all within the limit, and h is the header
// of the frame that crosses it. Its first bytes up to OversizedPrefix
// (and limit+1) are read into b, then its last OversizedTail bytes are
// kept after them (the tail of b so far, then of each frame's payload) as
// the rest is skipped.
func oversized(f *websocket.FrameReader, h wsframe.Header, b []byte, limit int64) ([]byte, error) {
	keep := min(h.Len, uint64(max(0, OversizedPrefix-len(b))), uint64(limit)+1-uint64(len(b)))
	var err error
	if b, err = payload(f, b, keep, uint64(len(b))+keep+OversizedTail); err != nil {
		return b, err
	}
	pre := min(len(b), OversizedPrefix)
	for {
		n := f.Remaining()
		if n > OversizedTail {
			if err := f.Skip(n - OversizedTail); err != nil {
				return b, err
			}
			n = OversizedTail
		}
		// b[pre:] is the tail so far: drop its oldest bytes to make room.
		if drop := len(b) - pre + int(n) - OversizedTail; drop > 0 {
			b = b[:pre+copy(b[pre:], b[pre+drop:])]
		}
		if m := len(b); cap(b) < m+int(n) {
			nb := make([]byte, m, pre+OversizedTail)
			copy(nb, b)
			b = nb
		}
		m := len(b)
		b = b[:m+int(n)]
		if err := f.ReadPayload(b[m:]); err != nil {
			return b[:m], err
		}
		if h.Fin {
			return b, nil
		}
		if h, err = f.Next(); err != nil {
			return b, err
		}
	}
}

// payload appends the next n payload bytes of the current frame to b. b
// grows as they arrive, by doubling, at most to bound (when > 0: the
// message's final length, or the limit) plus wsframe.MaxHeader: the room
// that lets FrameReader.Read pick up the next frame's header with a
// payload it reads straight into b (when n is the rest of the frame, so
// that it cannot read past it).
func payload(f *websocket.FrameReader, b []byte, n, bound uint64) ([]byte, error) {
	if bound > 0 {
		bound += wsframe.MaxHeader
	}
	scratch := uint64(0)
	if n == f.Remaining() {
		scratch = wsframe.MaxHeader
	}
	for n > 0 {
		if len(b) == cap(b) {
			b = grow(b, bound)
		}
		m := len(b)
		k, err := f.Read(b[m:min(uint64(cap(b)), uint64(m)+n+scratch)])
		b = b[:m+k]
		n -= uint64(k)
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

// grow returns a copy of b with room for more: twice its capacity (at
// least minGrow), no more than bound when bound > 0.
func grow(b []byte, bound uint64) []byte {
	c := max(2*cap(b), minGrow)
	if bound > 0 && uint64(c) > bound {
		c = int(bound)
	}
	nb := make([]byte, len(b), max(c, len(b)+1))
	copy(nb, b)
	return nb
}

// minGrow is the smallest growth step of a read buffer.
const minGrow = 4 << 10
