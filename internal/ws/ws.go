// Package ws is Sluice's one WebSocket implementation (RFC 6455), used by
// the engine's server side and the Go SDK's client side: the opening
// handshake (Upgrader, Dialer), framing and masking (the wsframe package),
// fragmentation with control frames between fragments, UTF-8 validation of
// text messages and close reasons, the close handshake and size limits.
//
// Conn follows the shape of gorilla/websocket's Conn, which the project
// used before, so that its callers did not change: one goroutine may read
// (NextReader, ReadMessage) while one other writes (WriteMessage);
// WriteControl and Close are safe beside both. Unlike gorilla, a read
// interrupted by a read deadline can be resumed: a deadline error is not
// sticky, and the frame being read stays in place.
//
// Every frame is read here: besides messages (NextReader), a Conn hands
// out data frames one by one (Frames, FrameReader) to the readers that keep
// a message policy of their own (the engine's worker read loop, the
// channel hub, the SDK's control socket), with the protocol handled as for
// NextReader. The one writer beside Conn, internal/wsconn's, frames the
// engine's hot path itself; each of our writes is one Write call (or one
// writev) of whole frames, so its frames and ours never interleave.
package ws

import (
	"encoding/binary"
	"errors"
	"net"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/internal/ws/wsframe"
)

// Message types (the frame opcodes of RFC 6455 §5.2).
const (
	TextMessage   = wsframe.OpText
	BinaryMessage = wsframe.OpBinary
	CloseMessage  = wsframe.OpClose
	PingMessage   = wsframe.OpPing
	PongMessage   = wsframe.OpPong
)

// Close codes (RFC 6455 §7.4.1).
const (
	CloseNormalClosure           = 1000
	CloseGoingAway               = 1001
	CloseProtocolError           = 1002
	CloseUnsupportedData         = 1003
	CloseNoStatusReceived        = 1005
	CloseAbnormalClosure         = 1006
	CloseInvalidFramePayloadData = 1007
	ClosePolicyViolation         = 1008
	CloseMessageTooBig           = 1009
	CloseMandatoryExtension      = 1010
	CloseInternalServerErr       = 1011
	CloseServiceRestart          = 1012
	CloseTryAgainLater           = 1013
)

// MaxCloseReason is the longest close reason a close frame carries (a
// control frame's 125 bytes minus the code).
const MaxCloseReason = 123

var (
	// ErrCloseSent is returned by writes after a close frame was sent.
	ErrCloseSent = errors.New("websocket: close sent")
	// ErrReadLimit is returned when a message exceeds the read limit; the
	// peer was sent close 1009.
	ErrReadLimit = errors.New("websocket: read limit exceeded")
	// ErrBadHandshake is returned by Dial when the server does not upgrade.
	ErrBadHandshake = errors.New("websocket: bad handshake")
)

// CloseError is a close frame the peer sent (or 1006 when it hung up
// without one).
type CloseError struct {
	Code int
	Text string
}

func (e *CloseError) Error() string {
	s := "websocket: close " + strconv.Itoa(e.Code)
	if e.Text != "" {
		s += ": " + e.Text
	}
	return s
}

// IsCloseError reports whether err is a *CloseError with one of codes.
func IsCloseError(err error, codes ...int) bool {
	var ce *CloseError
	if errors.As(err, &ce) {
		for _, c := range codes {
			if ce.Code == c {
				return true
			}
		}
	}
	return false
}

// ProtocolError is a frame that breaks RFC 6455; the peer was sent close
// 1002 (or 1007 for invalid UTF-8: its CloseCode).
type ProtocolError = wsframe.ProtocolError

// ErrTextUTF8 is a text message that is not UTF-8 (RFC 6455 §8.1), answered
// with close 1007.
var ErrTextUTF8 = &ProtocolError{Reason: "invalid UTF-8 in text message", Code: CloseInvalidFramePayloadData}

// parseClose parses the payload of a close frame a peer sent (RFC 6455
// §5.5.1, §7.4): its status code (1005, no status, for an empty payload)
// and reason. A payload a peer may not send is a protocol error: one byte,
// a code §7.4 does not let a peer send (1002), or a reason that is not
// UTF-8 (1007).
func parseClose(p []byte) (code int, reason string, perr *ProtocolError) {
	switch {
	case len(p) == 0:
		return CloseNoStatusReceived, "", nil
	case len(p) == 1:
		return 0, "", &ProtocolError{Reason: "invalid close frame"}
	}
	code = int(binary.BigEndian.Uint16(p))
	if !wsframe.ValidCloseCode(code) {
		return 0, "", &ProtocolError{Reason: "invalid close code"}
	}
	if !utf8.Valid(p[2:]) {
		return 0, "", &ProtocolError{Reason: "invalid UTF-8 in close reason", Code: CloseInvalidFramePayloadData}
	}
	return code, string(p[2:]), nil
}

// FormatCloseMessage is a close frame's payload: code and reason, the
// reason cut to MaxCloseReason bytes on a rune boundary (and made valid
// UTF-8). Code 1005 (no status) is the empty payload.
func FormatCloseMessage(code int, reason string) []byte {
	if code == CloseNoStatusReceived {
		return []byte{}
	}
	reason = TruncateReason(reason)
	b := make([]byte, 2+len(reason))
	binary.BigEndian.PutUint16(b, uint16(code))
	copy(b[2:], reason)
	return b
}

// TruncateReason cuts reason to at most MaxCloseReason bytes without
// splitting a rune, and replaces invalid UTF-8, so that the peer does not
// fail the close frame with 1007.
func TruncateReason(reason string) string {
	if len(reason) <= MaxCloseReason && utf8.ValidString(reason) {
		return reason
	}
	out := make([]byte, 0, min(len(reason), MaxCloseReason))
	for _, r := range reason { // invalid bytes decode as RuneError (3 bytes): replaced
		if len(out)+utf8.RuneLen(r) > MaxCloseReason {
			break
		}
		out = utf8.AppendRune(out, r)
	}
	return string(out)
}

// Conn is a WebSocket connection.
type Conn struct {
	conn     net.Conn
	server   bool
	subproto string

	// Write side: wmu (a one-slot semaphore, so that WriteControl can give
	// up at its deadline) serialises our writes.
	wmu       chan struct{}
	wbuf      []byte
	wdeadline time.Time                 // SetWriteDeadline's, for data frames
	fragment  int                       // WriteMessage's largest frame payload; 0: maxFragment
	hdrs      [][wsframe.MaxHeader]byte // writev's frame headers, kept between writes
	vec       [][]byte                  // writev's iovecs, kept between writes
	bufs      net.Buffers               // what writev is writing
	closeSent atomic.Bool

	// Read side: only the reading goroutine touches these.
	rd readState
}

func newConn(conn net.Conn, server bool, src readSource, subproto string, bufSize int) *Conn {
	c := &Conn{conn: conn, server: server, subproto: subproto, wmu: make(chan struct{}, 1)}
	c.rd.init(c, src, bufSize)
	return c
}

// CloseSent reports whether a close frame was written (or its write
// attempted): no data frame may follow it.
func (c *Conn) CloseSent() bool { return c.closeSent.Load() }

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.conn }

// Subprotocol returns the negotiated subprotocol.
func (c *Conn) Subprotocol() string { return c.subproto }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// LocalAddr returns the local address.
func (c *Conn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// Close closes the underlying connection without a close frame.
func (c *Conn) Close() error { return c.conn.Close() }

// SetReadDeadline sets the underlying connection's read deadline. A read
// that fails at the deadline can be retried after a new one is set.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline of WriteMessage's writes.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wdeadline = t
	return nil
}
