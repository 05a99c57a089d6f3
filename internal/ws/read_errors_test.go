package ws

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/ws/wstest"
)

// scriptConn is a net.Conn that reads a fixed byte sequence (then EOF)
// and records what is written to it, or fails every write with werr.
type scriptConn struct {
	fuzzConn
	werr error
}

func (s *scriptConn) Write(p []byte) (int, error) {
	if s.werr != nil {
		return 0, s.werr
	}
	return s.out.Write(p)
}

// scripted is a Conn (a server iff server) whose peer sent frames (masked
// iff the peer is the client) and then hung up.
func scripted(server bool, frames ...wstest.Frame) (*Conn, *scriptConn) {
	var in []byte
	for _, f := range frames {
		in = append(in, f.Encode(server)...)
	}
	sc := &scriptConn{fuzzConn: fuzzConn{r: bytes.NewReader(in)}}
	return newConn(sc, server, sc, "", 0), sc
}

// wireFrame is a frame our side wrote, unmasked.
type wireFrame struct {
	fin     bool
	op      int
	masked  bool
	payload []byte
}

// parseWire splits what our side wrote into frames.
func parseWire(t *testing.T, b []byte) []wireFrame {
	t.Helper()
	var out []wireFrame
	for len(b) > 0 {
		if len(b) < 2 {
			t.Fatalf("truncated header % x", b)
		}
		f := wireFrame{fin: b[0]&0x80 != 0, op: int(b[0] & 0x0f), masked: b[1]&0x80 != 0}
		n, hl := uint64(b[1]&0x7f), 2
		switch n {
		case 126:
			n, hl = uint64(binary.BigEndian.Uint16(b[2:])), 4
		case 127:
			n, hl = binary.BigEndian.Uint64(b[2:]), 10
		}
		var key []byte
		if f.masked {
			key = b[hl : hl+4]
			hl += 4
		}
		if uint64(len(b)-hl) < n {
			t.Fatalf("truncated frame: %d of %d payload bytes", len(b)-hl, n)
		}
		f.payload = bytes.Clone(b[hl : hl+int(n)])
		for i := range f.payload {
			if key != nil {
				f.payload[i] ^= key[i&3]
			}
		}
		out = append(out, f)
		b = b[hl+int(n):]
	}
	return out
}

// closeCode is a close frame's code (1005 when it has none).
func closeCode(t *testing.T, f wireFrame) int {
	t.Helper()
	if f.op != CloseMessage {
		t.Fatalf("frame op %d, want a close frame", f.op)
	}
	if len(f.payload) == 0 {
		return CloseNoStatusReceived
	}
	return int(binary.BigEndian.Uint16(f.payload))
}

func closeFr(code int, reason string) wstest.Frame {
	return wstest.Frame{Fin: true, Op: CloseMessage, Payload: append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)}
}

func dataFr(fin bool, op int, p string) wstest.Frame {
	return wstest.Frame{Fin: fin, Op: op, Payload: []byte(p)}
}

// TestPeerClose: the peer's close frame ends reading with a *CloseError
// carrying its code and reason (1005 for an empty one, 1006 for a hang-up
// without one); the code is echoed once, the error stays, and writes
// after the echo fail with ErrCloseSent.
func TestPeerClose(t *testing.T) {
	t.Run("code and reason", func(t *testing.T) {
		c, sc := scripted(false, closeFr(CloseGoingAway, "bye"))
		_, _, err := c.ReadMessage()
		var ce *CloseError
		if !errors.As(err, &ce) || ce.Code != CloseGoingAway || ce.Text != "bye" {
			t.Fatalf("err %v, want close 1001 bye", err)
		}
		if err.Error() != "websocket: close 1001: bye" {
			t.Fatalf("message %q", err)
		}
		if !IsCloseError(err, CloseNormalClosure, CloseGoingAway) || !IsCloseError(fmt.Errorf("read: %w", err), CloseGoingAway) {
			t.Fatal("IsCloseError does not find 1001")
		}
		if IsCloseError(err, CloseNormalClosure) || IsCloseError(errors.New("close 1001"), CloseGoingAway) || IsCloseError(err) {
			t.Fatal("IsCloseError matched what it should not")
		}
		if _, _, again := c.ReadMessage(); again != err {
			t.Fatalf("second read %v, want the same close error", again)
		}
		w := parseWire(t, sc.out.Bytes())
		if len(w) != 1 || closeCode(t, w[0]) != CloseGoingAway || len(w[0].payload) != 2 || !w[0].masked {
			t.Fatalf("echo %+v, want one masked close 1001 without reason", w)
		}
		if err := c.WriteMessage(TextMessage, []byte("x")); err != ErrCloseSent {
			t.Fatalf("write after the close: %v", err)
		}
	})
	t.Run("no status", func(t *testing.T) {
		c, sc := scripted(true, wstest.Frame{Fin: true, Op: CloseMessage})
		_, _, err := c.ReadMessage()
		if !IsCloseError(err, CloseNoStatusReceived) || err.Error() != "websocket: close 1005" {
			t.Fatalf("err %v, want close 1005", err)
		}
		w := parseWire(t, sc.out.Bytes())
		if len(w) != 1 || w[0].op != CloseMessage || len(w[0].payload) != 0 || w[0].masked {
			t.Fatalf("echo %+v, want one unmasked empty close frame", w)
		}
	})
	t.Run("hang-up", func(t *testing.T) {
		c, sc := scripted(false, dataFr(true, TextMessage, "last"))
		if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "last" {
			t.Fatalf("%q %v", msg, err)
		}
		_, _, err := c.ReadMessage()
		var ce *CloseError
		if !errors.As(err, &ce) || ce.Code != CloseAbnormalClosure || ce.Text != io.ErrUnexpectedEOF.Error() {
			t.Fatalf("err %v, want close 1006", err)
		}
		if sc.out.Len() != 0 {
			t.Fatalf("wrote % x to a peer that hung up", sc.out.Bytes())
		}
	})
}

// TestControlHandlers: ping, pong and close handlers see the frames'
// payloads; a ping handler replaces the automatic pong, a close handler
// the echo; an error from a handler ends reading and stays.
func TestControlHandlers(t *testing.T) {
	ping := wstest.Frame{Fin: true, Op: PingMessage, Payload: []byte("p1")}
	pong := wstest.Frame{Fin: true, Op: PongMessage, Payload: []byte("p2")}
	t.Run("ping and pong", func(t *testing.T) {
		c, sc := scripted(false, ping, pong, dataFr(true, TextMessage, "hi"))
		var got []string
		c.SetPingHandler(func(s string) error { got = append(got, "ping "+s); return nil })
		c.SetPongHandler(func(s string) error { got = append(got, "pong "+s); return nil })
		if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "hi" {
			t.Fatalf("%q %v", msg, err)
		}
		if fmt.Sprint(got) != "[ping p1 pong p2]" {
			t.Fatalf("handlers saw %v", got)
		}
		if sc.out.Len() != 0 {
			t.Fatalf("a pong was written beside the ping handler: % x", sc.out.Bytes())
		}
	})
	t.Run("handler errors", func(t *testing.T) {
		stop := errors.New("stop")
		for _, set := range []func(*Conn){
			func(c *Conn) { c.SetPingHandler(func(string) error { return stop }) },
			func(c *Conn) { c.SetPongHandler(func(string) error { return stop }) },
			func(c *Conn) { c.SetCloseHandler(func(int, string) error { return stop }) },
		} {
			c, _ := scripted(false, ping, pong, closeFr(CloseNormalClosure, ""), dataFr(true, TextMessage, "never"))
			set(c)
			for range 2 {
				if _, _, err := c.ReadMessage(); err != stop {
					t.Fatalf("read %v, want the handler's error (sticky)", err)
				}
			}
		}
	})
	t.Run("close handler", func(t *testing.T) {
		c, sc := scripted(true, closeFr(CloseNormalClosure, "done"))
		var code int
		var text string
		c.SetCloseHandler(func(c int, s string) error { code, text = c, s; return nil })
		_, _, err := c.ReadMessage()
		if !IsCloseError(err, CloseNormalClosure) || code != CloseNormalClosure || text != "done" {
			t.Fatalf("err %v, handler saw %d %q", err, code, text)
		}
		if sc.out.Len() != 0 {
			t.Fatalf("the close was echoed beside the handler: % x", sc.out.Bytes())
		}
	})
}

// TestPingReply: a ping is answered with a pong of its payload; a pong
// that cannot be written ends reading, unless our close was sent already
// (the peer is going away: reading goes on to its close).
func TestPingReply(t *testing.T) {
	ping := wstest.Frame{Fin: true, Op: PingMessage, Payload: []byte("abc")}
	c, sc := scripted(false, ping, dataFr(true, BinaryMessage, "m"))
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "m" {
		t.Fatalf("%q %v", msg, err)
	}
	if w := parseWire(t, sc.out.Bytes()); len(w) != 1 || w[0].op != PongMessage || string(w[0].payload) != "abc" || !w[0].masked {
		t.Fatalf("wrote %+v, want one masked pong abc", w)
	}

	broken := errors.New("broken pipe")
	c, sc = scripted(false, ping, dataFr(true, BinaryMessage, "m"))
	sc.werr = broken
	for range 2 {
		if _, _, err := c.ReadMessage(); err != broken {
			t.Fatalf("read %v, want the pong's write error (sticky)", err)
		}
	}

	c, sc = scripted(false, ping, dataFr(true, BinaryMessage, "m"))
	if err := c.WriteControl(CloseMessage, FormatCloseMessage(CloseNormalClosure, ""), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "m" {
		t.Fatalf("after our close: %q %v, want the message", msg, err)
	}
	if w := parseWire(t, sc.out.Bytes()); len(w) != 1 || w[0].op != CloseMessage {
		t.Fatalf("wrote %+v, want only our close", w)
	}
}

// TestSkipUnread: NextReader skips what the previous message's reader
// left, its later fragments included (answering a ping between them, not
// checking the skipped text's UTF-8); a broken fragment sequence or a
// hang-up while skipping ends reading.
func TestSkipUnread(t *testing.T) {
	ping := wstest.Frame{Fin: true, Op: PingMessage, Payload: []byte("between")}
	t.Run("fragments", func(t *testing.T) {
		c, sc := scripted(false,
			dataFr(false, TextMessage, "ab\xff"), ping, dataFr(false, wsframe0, "cd"), dataFr(true, wsframe0, "ef"),
			dataFr(true, BinaryMessage, "next"))
		op, rd, err := c.NextReader()
		if err != nil || op != TextMessage {
			t.Fatalf("%d %v", op, err)
		}
		if n, err := rd.Read(make([]byte, 1)); n != 1 || err != nil {
			t.Fatalf("read %d %v", n, err)
		}
		op, msg, err := c.ReadMessage()
		if err != nil || op != BinaryMessage || string(msg) != "next" {
			t.Fatalf("after skipping: %d %q %v", op, msg, err)
		}
		if n, err := rd.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("the old reader read %d %v, want EOF", n, err)
		}
		if w := parseWire(t, sc.out.Bytes()); len(w) != 1 || w[0].op != PongMessage || string(w[0].payload) != "between" {
			t.Fatalf("wrote %+v, want the pong", w)
		}
	})
	t.Run("new message inside", func(t *testing.T) {
		c, sc := scripted(false, dataFr(false, BinaryMessage, "ab"), dataFr(true, TextMessage, "x"))
		if _, _, err := c.NextReader(); err != nil {
			t.Fatal(err)
		}
		_, _, err := c.NextReader()
		var pe *ProtocolError
		if !errors.As(err, &pe) || pe.Reason != "new message inside a fragmented one" {
			t.Fatalf("err %v", err)
		}
		if w := parseWire(t, sc.out.Bytes()); len(w) != 1 || closeCode(t, w[0]) != CloseProtocolError {
			t.Fatalf("wrote %+v, want close 1002", w)
		}
	})
	t.Run("hang-up", func(t *testing.T) {
		in := dataFr(true, BinaryMessage, "0123456789").Encode(false)
		sc := &scriptConn{fuzzConn: fuzzConn{r: bytes.NewReader(in[:6])}}
		c := newConn(sc, false, sc, "", 0)
		if _, _, err := c.NextReader(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.NextReader(); !IsCloseError(err, CloseAbnormalClosure) {
			t.Fatalf("err %v, want close 1006", err)
		}
	})
}

// wsframe0 is the continuation opcode.
const wsframe0 = 0

// TestReaderAfterFailure: a message's reader returns the connection's
// error once reading failed, also to later calls.
func TestReaderAfterFailure(t *testing.T) {
	c, _ := scripted(false, dataFr(false, BinaryMessage, "ab"), dataFr(true, BinaryMessage, "x"))
	_, rd, err := c.NextReader()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if n, err := rd.Read(buf); n != 2 || err != nil {
		t.Fatalf("read %d %v", n, err)
	}
	_, err = rd.Read(buf)
	var pe *ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("err %v, want a protocol error", err)
	}
	if n, again := rd.Read(buf); n != 0 || again != err {
		t.Fatalf("read again: %d %v, want the same error", n, again)
	}
}

// TestTextRuneAcrossFragments: a text message's runes may be split between
// fragments; one left incomplete at the end (an empty last fragment) or
// completed into an invalid sequence is refused with close 1007.
func TestTextRuneAcrossFragments(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parts []string
		ok    bool
	}{
		{"split euro", []string{"\xe2\x82", "\xac"}, true},
		{"split across three", []string{"\xf0", "\x9f\x98", "\x80!"}, true},
		{"ends inside a rune", []string{"a\xc3", ""}, false},
		{"completed invalid", []string{"\xe2\x82", "\x28"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var frames []wstest.Frame
			for i, p := range tc.parts {
				op := TextMessage
				if i > 0 {
					op = wsframe0
				}
				frames = append(frames, dataFr(i == len(tc.parts)-1, op, p))
			}
			c, sc := scripted(true, frames...)
			_, msg, err := c.ReadMessage()
			if tc.ok {
				if err != nil || !bytes.Equal(msg, []byte(joinParts(tc.parts))) {
					t.Fatalf("%q %v", msg, err)
				}
				return
			}
			var pe *ProtocolError
			if !errors.As(err, &pe) || pe.Reason != "invalid UTF-8 in text message" {
				t.Fatalf("err %v, want invalid UTF-8", err)
			}
			if w := parseWire(t, sc.out.Bytes()); len(w) != 1 || closeCode(t, w[0]) != CloseInvalidFramePayloadData {
				t.Fatalf("wrote %+v, want close 1007", w)
			}
		})
	}
}

func joinParts(p []string) string {
	var b bytes.Buffer
	for _, s := range p {
		b.WriteString(s)
	}
	return b.String()
}

// TestParseClose: the close payloads a peer may send, and the close code
// that answers each one it may not (the one check every reader of close
// frames uses).
func TestParseClose(t *testing.T) {
	for _, tc := range []struct {
		p      string
		code   int
		reason string
		fail   int // the close code answering it; 0: valid
	}{
		{"", CloseNoStatusReceived, "", 0},
		{"\x03\xe8", CloseNormalClosure, "", 0},
		{"\x0f\xa0bye", 4000, "bye", 0},
		{"\x03\xe8κόσμε", CloseNormalClosure, "κόσμε", 0},
		{"\x03", 0, "", CloseProtocolError},
		{"\x03\xed", 0, "", CloseProtocolError}, // 1005 on the wire
		{"\x03\xee", 0, "", CloseProtocolError}, // 1006
		{"\x13\x88", 0, "", CloseProtocolError}, // 5000
		{"\x03\xe8\xce", 0, "", CloseInvalidFramePayloadData},
	} {
		code, reason, perr := parseClose([]byte(tc.p))
		switch {
		case tc.fail == 0 && (perr != nil || code != tc.code || reason != tc.reason):
			t.Errorf("parseClose(%q) = %d %q %v, want %d %q", tc.p, code, reason, perr, tc.code, tc.reason)
		case tc.fail != 0 && (perr == nil || perr.CloseCode() != tc.fail):
			t.Errorf("parseClose(%q) = %d %q %v, want a protocol error answered with %d", tc.p, code, reason, perr, tc.fail)
		}
	}
}
