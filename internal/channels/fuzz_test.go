package channels

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/internal/ws/wsframe"
	"github.com/sluicehq/sluice/internal/ws/wstest"
	"github.com/sluicehq/sluice/internal/wsconn"
)

// readOutcome is what a server-side reader made of a client's byte stream.
type readOutcome = wstest.Outcome

// hubReaderOutcome reads in with the hub's writer-socket reader; a frame
// over the limit ends it with the close code runWriter sends for it
// (writerEnded).
func hubReaderOutcome(t *testing.T, in []byte, limit int64) readOutcome {
	c, fc := serverConn(t, in)
	fr := newFrameReader(c, limit)
	var o readOutcome
	var end error
	for {
		f, err := fr.next()
		if err == nil && len(f.Data) > int(limit) {
			t.Fatalf("message of %d bytes over the %d limit", len(f.Data), limit)
		}
		if err == nil {
			o.Msgs = append(o.Msgs, wstest.Delivered(f.Text, f.Data))
			f.Release()
			continue
		}
		f.Release()
		end = err
		break
	}
	var closeCode int
	o.Pongs, closeCode = written(t, fc)
	var ce *websocket.CloseError
	var pe *websocket.ProtocolError
	peer := 0
	switch {
	case errors.As(end, &ce):
		if ce.Code != websocket.CloseAbnormalClosure { // 1006: the input ended
			peer = ce.Code
		}
	case errors.Is(end, wsconn.ErrFrameTooLarge):
		closeCode = websocket.CloseMessageTooBig
	case errors.As(end, &pe):
	default:
		t.Fatalf("unexpected error %v", end)
	}
	o.End = wstest.EndOf(peer, closeCode)
	return o
}

// hubFuzzConn reads a fixed input and keeps what is written.
type hubFuzzConn struct {
	r   *bytes.Reader
	out bytes.Buffer
}

func (c *hubFuzzConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *hubFuzzConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *hubFuzzConn) Close() error                     { return nil }
func (c *hubFuzzConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *hubFuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *hubFuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *hubFuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *hubFuzzConn) SetWriteDeadline(time.Time) error { return nil }

// hijackRecorder is a ResponseWriter whose connection is a hubFuzzConn.
type hijackRecorder struct {
	*httptest.ResponseRecorder
	conn *hubFuzzConn
}

func (h hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.conn, bufio.NewReadWriter(bufio.NewReader(h.conn), bufio.NewWriter(h.conn)), nil
}

// serverConn is the server end of a WebSocket whose client sends in,
// through a real Upgrade as the hub's; what the server writes after its
// 101 is kept in fc.
func serverConn(t testing.TB, in []byte) (c *websocket.Conn, fc *hubFuzzConn) {
	fc = &hubFuzzConn{r: bytes.NewReader(in)}
	req := httptest.NewRequest(http.MethodGet, "http://engine/ws/channels/x", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	var up websocket.Upgrader
	c, err := up.Upgrade(hijackRecorder{httptest.NewRecorder(), fc}, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := fc.out.Bytes()
	fc.out.Next(bytes.Index(out, []byte("\r\n\r\n")) + 4) // the 101
	return c, fc
}

// testConn is serverConn's connection.
func testConn(t testing.TB, in []byte) *websocket.Conn {
	c, _ := serverConn(t, in)
	return c
}

// written parses the frames a server wrote to fc: the pongs' payloads and
// the close frame's code (0: none; 1005: one without a code). A second
// close frame fails t.
func written(t testing.TB, fc *hubFuzzConn) (pongs []string, closeCode int) {
	out := fc.out.Bytes()
	for len(out) > 0 {
		hl := wsframe.HeaderLen(out[0], out[1])
		h, err := wsframe.ParseHeader(out[:hl])
		if err != nil {
			t.Fatalf("the server wrote a bad frame %x: %v", out, err)
		}
		p := out[hl : hl+int(h.Len)]
		switch h.Op {
		case websocket.PongMessage:
			pongs = append(pongs, string(p))
		case websocket.CloseMessage:
			if closeCode != 0 {
				t.Fatalf("the server wrote a second close frame (%x)", p)
			}
			closeCode = websocket.CloseNoStatusReceived
			if len(p) >= 2 {
				closeCode = int(binary.BigEndian.Uint16(p))
			}
		}
		out = out[hl+int(h.Len):]
	}
	return pongs, closeCode
}

// connReaderOutcome reads in with ws.Conn as a server (the reader every
// other server side is held to).
func connReaderOutcome(t *testing.T, in []byte, limit int64) readOutcome {
	c, fc := serverConn(t, in)
	c.SetReadLimit(limit)
	var o readOutcome
	var readErr error
	for {
		op, data, err := c.ReadMessage()
		if err != nil {
			readErr = err
			break
		}
		o.Msgs = append(o.Msgs, wstest.Delivered(op == websocket.TextMessage, data))
	}
	var closeCode int
	o.Pongs, closeCode = written(t, fc)
	peer := 0
	if ce := (*websocket.CloseError)(nil); errors.As(readErr, &ce) && ce.Code != websocket.CloseAbnormalClosure { // 1006: the input ended
		peer = ce.Code
	}
	o.End = wstest.EndOf(peer, closeCode)
	return o
}

// FuzzFrameReaderMatchesConn reads the same client bytes with the hub's
// writer-socket reader and with ws.Conn's server reader: their outcomes
// must agree (wstest.Agree). The seeds (the conformance cases) run with
// every `go test`; `go test -fuzz FuzzFrameReaderMatchesConn
// ./internal/channels/` explores.
func FuzzFrameReaderMatchesConn(f *testing.F) {
	for _, tc := range wstest.Cases {
		f.Add(tc.Wire(true))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		const limit = wstest.Limit
		hub := hubReaderOutcome(t, in, limit)
		conn := connReaderOutcome(t, in, limit)
		if !wstest.Agree(hub, conn) {
			t.Fatalf("hub: %.200q, pongs %.200q, %s\nws.Conn: %.200q, pongs %.200q, %s",
				hub.Msgs, hub.Pongs, hub.End, conn.Msgs, conn.Pongs, conn.End)
		}
	})
}
