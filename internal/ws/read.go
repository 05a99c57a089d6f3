package ws

import (
	"errors"
	"io"
	"net"
	"os"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/internal/ws/wsframe"
)

// readSource is what a Conn reads frames from: the connection, or a
// buffered reader over it holding bytes that arrived with the handshake.
type readSource = io.Reader

// controlWait bounds the replies the reader writes (pong, close echo,
// protocol-error close).
const controlWait = time.Second

// readState is the reading side of a Conn; only the reading goroutine
// touches it.
type readState struct {
	c     *Conn
	fr    *wsframe.Reader
	limit int64
	err   error // sticky: the connection cannot be read further

	inMsg bool  // a message is being read (NextReader returned it)
	fin   bool  // the current frame is its last
	text  bool  // it is a text message: its bytes are checked as UTF-8
	size  int64 // its bytes so far, for the limit
	utf8  utf8Check

	ctlOp, ctlLen, ctlGot int // a control frame whose payload is being read
	ctl                   [125]byte

	ping, pong func(string) error
	close      func(int, string) error
}

// init readies r to read frames from src through a bufSize buffer (0:
// 4 KiB; big payloads bypass it).
func (r *readState) init(c *Conn, src readSource, bufSize int) {
	r.c = c
	if bufSize <= 0 {
		bufSize = 4096
	}
	r.fr = wsframe.NewReader(src, bufSize)
}

// SetReadLimit bounds the size of a message; a longer one is refused with
// close 1009 and ErrReadLimit. Zero or negative: no limit.
func (c *Conn) SetReadLimit(limit int64) { c.rd.limit = limit }

// SetPingHandler sets what runs for a ping (nil: answer with a pong).
func (c *Conn) SetPingHandler(h func(appData string) error) { c.rd.ping = h }

// SetPongHandler sets what runs for a pong (nil: nothing).
func (c *Conn) SetPongHandler(h func(appData string) error) { c.rd.pong = h }

// SetCloseHandler sets what runs for the peer's close frame before the
// read returns its *CloseError (nil: echo the close code). A non-nil error
// from h is returned instead.
func (c *Conn) SetCloseHandler(h func(code int, text string) error) { c.rd.close = h }

// NextReader returns the next data message's type and a reader of its
// payload, valid until the next call. What the previous message's reader
// left unread is skipped. Control frames are handled on the way. Errors
// are final, except a read deadline passing: then the read can be
// retried after a new deadline is set.
func (c *Conn) NextReader() (int, io.Reader, error) {
	r := &c.rd
	if r.err != nil {
		return 0, nil, r.err
	}
	r.fr.ClearTimeout()
	for r.inMsg { // skip the rest of the previous message
		if r.ctlOp == 0 && r.fr.Remaining() > 0 {
			if err := r.fr.Discard(); err != nil {
				return 0, nil, r.readErr(err)
			}
		}
		r.text = false // not read, not checked
		if r.fin {
			r.inMsg = false
			break
		}
		if err := r.continuation(); err != nil {
			return 0, nil, err
		}
	}
	h, err := r.dataHeader()
	if err != nil {
		return 0, nil, err
	}
	if h.Op == wsframe.OpContinuation {
		return 0, nil, r.fail(&ProtocolError{Reason: "continuation frame outside a message"})
	}
	r.inMsg, r.fin, r.text, r.size = true, h.Fin, h.Op == TextMessage, 0
	r.utf8 = utf8Check{}
	if err := r.account(h.Len); err != nil {
		return 0, nil, err
	}
	return h.Op, (*messageReader)(c), nil
}

// ReadMessage reads the next data message into a new slice.
func (c *Conn) ReadMessage() (int, []byte, error) {
	op, rd, err := c.NextReader()
	if err != nil {
		return 0, nil, err
	}
	b, err := io.ReadAll(rd)
	return op, b, err
}

// messageReader reads the current message's payload.
type messageReader Conn

func (m *messageReader) Read(p []byte) (int, error) {
	r := &m.rd
	if r.err != nil {
		return 0, r.err
	}
	if !r.inMsg {
		return 0, io.EOF
	}
	r.fr.ClearTimeout()
	for {
		if r.ctlOp == 0 && r.fr.Remaining() > 0 {
			n, err := r.fr.Read(p)
			if r.text && !r.utf8.write(p[:n]) {
				return 0, r.fail(ErrTextUTF8)
			}
			if err != nil && err != io.EOF {
				return n, r.readErr(err)
			}
			if r.fr.Remaining() == 0 && r.fin {
				return n, r.end()
			}
			return n, nil
		}
		if r.fin {
			if err := r.end(); err != nil {
				return 0, err
			}
			return 0, io.EOF
		}
		if err := r.continuation(); err != nil {
			return 0, err
		}
	}
}

// end finishes the current message.
func (r *readState) end() error {
	r.inMsg = false
	if r.text && !r.utf8.complete() {
		return r.fail(ErrTextUTF8)
	}
	return nil
}

// continuation reads the header of the current message's next frame.
func (r *readState) continuation() error {
	h, err := r.dataHeader()
	if err != nil {
		return err
	}
	if h.Op != wsframe.OpContinuation {
		return r.fail(&ProtocolError{Reason: "new message inside a fragmented one"})
	}
	r.fin = h.Fin
	return r.account(h.Len)
}

// account counts a frame of n bytes against the read limit.
func (r *readState) account(n uint64) error {
	if r.limit > 0 && (n > uint64(r.limit) || r.size+int64(n) > r.limit) {
		_ = r.c.WriteControl(CloseMessage, FormatCloseMessage(CloseMessageTooBig, ""), time.Now().Add(controlWait))
		r.err = ErrReadLimit
		return r.err
	}
	r.size += int64(n)
	return nil
}

// dataHeader reads frames up to the next data frame's header, handling
// control frames (between the fragments of a message too).
func (r *readState) dataHeader() (wsframe.Header, error) {
	for {
		if r.ctlOp != 0 {
			for r.ctlGot < r.ctlLen {
				n, err := r.fr.Read(r.ctl[r.ctlGot:r.ctlLen])
				r.ctlGot += n
				if err != nil && err != io.EOF {
					return wsframe.Header{}, r.readErr(err)
				}
			}
			op, p := r.ctlOp, r.ctl[:r.ctlLen]
			r.ctlOp = 0
			if err := r.control(op, p); err != nil {
				return wsframe.Header{}, err
			}
			continue
		}
		h, err := r.fr.Next()
		if err != nil {
			var pe *ProtocolError
			if errors.As(err, &pe) {
				return h, r.fail(pe)
			}
			return h, r.readErr(err)
		}
		switch {
		case r.c.server && !h.Masked:
			return h, r.fail(&ProtocolError{Reason: "unmasked client frame"})
		case !r.c.server && h.Masked:
			return h, r.fail(&ProtocolError{Reason: "masked server frame"})
		case wsframe.IsControl(h.Op):
			r.ctlOp, r.ctlLen, r.ctlGot = h.Op, int(h.Len), 0
			continue
		}
		return h, nil
	}
}

// control handles a control frame's payload p.
func (r *readState) control(op int, p []byte) error {
	switch op {
	case PingMessage:
		if r.ping != nil {
			return r.keep(r.ping(string(p)))
		}
		err := r.c.WriteControl(PongMessage, p, time.Now().Add(controlWait))
		var ne net.Error
		if err != nil && err != ErrCloseSent && !(errors.As(err, &ne) && ne.Timeout()) {
			return r.keep(err)
		}
	case PongMessage:
		if r.pong != nil {
			return r.keep(r.pong(string(p)))
		}
	case CloseMessage:
		code, text, perr := parseClose(p)
		if perr != nil {
			return r.fail(perr)
		}
		if r.close != nil {
			if err := r.close(code, text); err != nil {
				return r.keep(err)
			}
		} else {
			_ = r.c.WriteControl(CloseMessage, FormatCloseMessage(code, ""), time.Now().Add(controlWait))
		}
		return r.keep(&CloseError{Code: code, Text: text})
	}
	return nil
}

func (r *readState) keep(err error) error {
	if err != nil && r.err == nil {
		r.err = err
	}
	return err
}

// fail answers a frame that breaks RFC 6455 with a close frame of pe's
// close code and reason, waiting at most a second for other writes, and
// returns pe; the connection cannot be read further.
func (r *readState) fail(pe *ProtocolError) error {
	_ = r.c.WriteControl(CloseMessage, FormatCloseMessage(pe.CloseCode(), pe.Reason), time.Now().Add(controlWait))
	return r.keep(pe)
}

// readErr maps a read error: a deadline passing is returned as it is and
// may be retried; the peer hanging up without a close frame is close 1006;
// anything else is final.
func (r *readState) readErr(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = &CloseError{Code: CloseAbnormalClosure, Text: io.ErrUnexpectedEOF.Error()}
	}
	return r.keep(err)
}

// utf8Check validates a text message as its bytes arrive: a rune split
// between two reads (or frames) is held until it completes.
type utf8Check struct {
	part [utf8.UTFMax]byte
	n    int
}

func (u *utf8Check) write(p []byte) bool {
	for u.n > 0 && len(p) > 0 { // complete the held rune
		u.part[u.n] = p[0]
		u.n++
		p = p[1:]
		if utf8.FullRune(u.part[:u.n]) {
			if r, size := utf8.DecodeRune(u.part[:u.n]); r == utf8.RuneError && size <= 1 || size != u.n {
				return false
			}
			u.n = 0
		}
	}
	if len(p) == 0 {
		return true
	}
	// Hold an incomplete rune at the end (at most 3 bytes).
	i := len(p) - 1
	for i > 0 && len(p)-i < utf8.UTFMax && !utf8.RuneStart(p[i]) {
		i--
	}
	if !utf8.FullRune(p[i:]) {
		u.n = copy(u.part[:], p[i:])
		p = p[:i]
	}
	return utf8.Valid(p)
}

// complete reports whether the message ended on a rune boundary.
func (u *utf8Check) complete() bool { return u.n == 0 }
