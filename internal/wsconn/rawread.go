package wsconn

import (
	"bufio"
	"errors"
	"io"
	"time"
	"unicode/utf8"

	websocket "github.com/sluicehq/sluice/internal/ws"

	"github.com/sluicehq/sluice/internal/ws/wsframe"
)

// serverReader reads a client's frames from the read buffer that Upgrade
// supplied, itself rather than through ws.Conn: it keeps an oversized
// message's prefix and tail for the engine's error reply, reads into a
// buffer that doubles as bytes arrive, and can tell the read loop whether
// more input is buffered (NextFrameBuffered). It is used by ReadFrame for sockets that Upgrade
// made, and only by their single reader goroutine. Errors are final: the
// caller stops reading; a frame that breaks RFC 6455 is a
// *websocket.ProtocolError, answered with its close code.
type serverReader struct {
	inMsg bool   // a fragmented message is being read
	skip  bool   // the rest of the current message is over the limit: drop it
	tail  []byte // the last bytes of a message being dropped
	err   error
	ctl   [125]byte
}

// readFrame is ReadFrame for cc (see there): control frames are answered
// as ws.Conn's default handlers do (a ping with a pong, a close frame with
// a close frame and a *websocket.CloseError).
func (cc *corkConn) readFrame(ws *websocket.Conn, buf []byte, limit int64) (int, []byte, error) {
	r := &cc.rd
	if r.err != nil {
		return 0, buf[:0], r.err
	}
	kind, data, err := r.read(cc.br, ws, buf[:0], limit)
	if err != nil && !errors.Is(err, ErrFrameTooLarge) {
		r.err = err
	}
	return kind, data, err
}

func (r *serverReader) read(br *bufio.Reader, ws *websocket.Conn, b []byte, limit int64) (int, []byte, error) {
	kind := 0
	for {
		h, err := r.header(br, ws)
		if err != nil {
			return 0, b, err
		}
		switch {
		case wsframe.IsControl(h.Op):
			if err := r.control(br, ws, h); err != nil {
				return 0, b, err
			}
			continue
		case h.Op == wsframe.OpContinuation && !r.inMsg:
			return 0, b, r.fail(ws, "continuation frame outside a message")
		case h.Op != wsframe.OpContinuation && r.inMsg:
			return 0, b, r.fail(ws, "new message inside a fragmented one")
		case h.Op != wsframe.OpContinuation:
			kind = h.Op
		}
		r.inMsg = !h.Fin
		if r.skip || limit > 0 && int64(len(b))+int64(h.Len) > limit {
			// Keep a prefix for the caller's report, drop the rest of the
			// message as it arrives: an announced length costs nothing.
			keep := uint64(0)
			if !r.skip {
				keep = min(h.Len, uint64(max(0, OversizedPrefix-len(b))))
				if limit > 0 {
					keep = min(keep, uint64(limit+1-int64(len(b))))
				}
			}
			if !r.skip {
				r.tail = r.tail[:0]
			}
			if b, err = r.payload(br, b, keep, h.Key, 0, true); err != nil {
				return 0, b, err
			}
			if err := r.discardToTail(br, h.Len-keep, h.Key, keep); err != nil {
				return 0, b, err
			}
			r.skip = r.inMsg
			if r.inMsg {
				continue
			}
			b = append(b[:min(len(b), OversizedPrefix)], r.tail...)
			r.tail = nil
			return kind, b, ErrFrameTooLarge
		}
		if b, err = r.payload(br, b, h.Len, h.Key, limit, h.Fin); err != nil {
			return 0, b, err
		}
		if h.Fin {
			if kind == wsframe.OpText && !utf8.Valid(b) {
				return 0, b, ws.FailProtocol(websocket.ErrTextUTF8)
			}
			return kind, b, nil
		}
	}
}

// A message over the limit is returned with ErrFrameTooLarge as its first
// OversizedPrefix bytes (at most limit+1) followed by its last
// OversizedTail bytes: room for the envelope fields senders put before the
// payload (the Node, Rust and Go SDKs) or after it (the Python SDK). The
// rest of a frame known to be too long is discarded as it arrives, never
// buffered (the fragments of a message that was within the limit so far
// were).
const (
	OversizedPrefix = 64 << 10
	OversizedTail   = 4 << 10
)

// discardToTail drops the n payload bytes of the current frame (masked
// with key, starting pos bytes into it) that follow what was kept, but
// keeps the message's last OversizedTail bytes in r.tail.
func (r *serverReader) discardToTail(br *bufio.Reader, n uint64, key [4]byte, pos uint64) error {
	skip := n - min(n, OversizedTail)
	for left := skip; left > 0; {
		k := int(min(left, 1<<30))
		if _, err := br.Discard(k); err != nil {
			return noEOF(err)
		}
		left -= uint64(k)
	}
	if r.tail == nil {
		r.tail = make([]byte, 0, 2*OversizedTail)
	}
	m := len(r.tail)
	r.tail = r.tail[:m+int(n-skip)]
	if _, err := io.ReadFull(br, r.tail[m:]); err != nil {
		r.tail = r.tail[:m]
		return noEOF(err)
	}
	wsframe.Mask(key, int(pos+skip), r.tail[m:])
	if extra := len(r.tail) - OversizedTail; extra > 0 {
		r.tail = r.tail[:copy(r.tail, r.tail[extra:])]
	}
	return nil
}

// header reads one frame header: masked, as client frames must be.
func (r *serverReader) header(br *bufio.Reader, ws *websocket.Conn) (wsframe.Header, error) {
	p, err := br.Peek(2)
	if err != nil {
		return wsframe.Header{}, noEOF(err)
	}
	hl := wsframe.HeaderLen(p[0], p[1])
	if p, err = br.Peek(hl); err != nil {
		return wsframe.Header{}, noEOF(err)
	}
	h, err := wsframe.ParseHeader(p)
	if err != nil {
		return h, r.failHeader(ws, err)
	}
	if !h.Masked {
		return h, r.fail(ws, "unmasked client frame")
	}
	_, _ = br.Discard(hl)
	return h, nil
}

// failHeader answers a header ParseHeader refused. It is apart from header
// so that its errors.As target, which escapes, is allocated only on this
// path and not once per frame.
func (r *serverReader) failHeader(ws *websocket.Conn, err error) error {
	var pe *websocket.ProtocolError
	if errors.As(err, &pe) {
		return ws.FailProtocol(pe)
	}
	return r.fail(ws, err.Error())
}

// payload appends n unmasked payload bytes to b, the rest of a message
// that ends with them if last. b grows as the bytes arrive, by doubling
// (at most to limit when limit > 0): memory follows what the peer sent,
// not the length it announced, and a message in many small fragments is
// copied O(log n) times rather than once per fragment.
func (r *serverReader) payload(br *bufio.Reader, b []byte, n uint64, key [4]byte, limit int64, last bool) ([]byte, error) {
	start := len(b)
	for left := n; left > 0; {
		if len(b) == cap(b) {
			b = grow(b, len(b)+int(left), limit, last)
		}
		k := min(left, uint64(cap(b)-len(b)))
		m := len(b)
		b = b[:m+int(k)]
		if _, err := io.ReadFull(br, b[m:]); err != nil {
			return b[:start], noEOF(err)
		}
		left -= k
	}
	wsframe.Mask(key, 0, b[start:])
	return b, nil
}

// grow returns a copy of b with room for more: twice its capacity (at
// least minGrow), no more than limit (if > 0), and, when need is the final
// length of the message (last), no more than need.
func grow(b []byte, need int, limit int64, last bool) []byte {
	c := max(2*cap(b), minGrow)
	if limit > 0 && int64(c) > limit {
		c = int(limit)
	}
	if last && c > need {
		c = need
	}
	nb := make([]byte, len(b), max(c, len(b)+1))
	copy(nb, b)
	return nb
}

// minGrow is the smallest growth step of a read buffer.
const minGrow = 4 << 10

func (r *serverReader) control(br *bufio.Reader, ws *websocket.Conn, h wsframe.Header) error {
	p, err := r.payload(br, r.ctl[:0], h.Len, h.Key, 0, true)
	if err != nil {
		return err
	}
	return AnswerControl(ws, h.Op, p, time.Second)
}

// AnswerControl answers a control frame read beside ws.Conn's reader as
// that reader does: a ping with a pong, a close frame (checked by
// websocket.ParseClose) with a close frame of the same code, returned as a
// *websocket.CloseError; a pong needs nothing. An invalid close frame is
// answered with its close code (ws.FailProtocol) and returned as a
// *websocket.ProtocolError. Replies wait at most wait.
func AnswerControl(ws *websocket.Conn, op int, p []byte, wait time.Duration) error {
	switch op {
	case wsframe.OpPing:
		_ = ws.WriteControl(websocket.PongMessage, p, time.Now().Add(wait))
	case wsframe.OpClose:
		code, text, perr := websocket.ParseClose(p)
		if perr != nil {
			return ws.FailProtocol(perr)
		}
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(wait))
		return &websocket.CloseError{Code: code, Text: text}
	}
	return nil
}

// fail answers a frame that breaks RFC 6455 with close 1002.
func (r *serverReader) fail(ws *websocket.Conn, reason string) error {
	return ws.FailProtocol(&websocket.ProtocolError{Reason: reason})
}

// noEOF reports the peer hanging up without a close frame as ws.Conn does
// (close 1006, abnormal closure).
func noEOF(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return &websocket.CloseError{Code: websocket.CloseAbnormalClosure, Text: io.ErrUnexpectedEOF.Error()}
	}
	return err
}
