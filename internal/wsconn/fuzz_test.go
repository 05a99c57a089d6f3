package wsconn

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/internal/ws/wsframe"
	"github.com/sluicehq/sluice/internal/ws/wstest"
)

// fuzzConn reads a fixed input and keeps what is written.
type fuzzConn struct {
	r   *bytes.Reader
	out bytes.Buffer
}

func (c *fuzzConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *fuzzConn) Close() error                     { return nil }
func (c *fuzzConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// hijackRecorder is a ResponseWriter whose connection is conn.
type hijackRecorder struct {
	*httptest.ResponseRecorder
	conn net.Conn
}

func (h hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.conn, bufio.NewReadWriter(bufio.NewReader(h.conn), bufio.NewWriter(h.conn)), nil
}

// upgradeFuzz upgrades a handshake request over a fuzzConn reading in,
// with upgrade (Upgrade, or ws.Upgrader's own).
func upgradeFuzz(t *testing.T, in []byte, upgrade func(http.ResponseWriter, *http.Request) (*websocket.Conn, error)) (*websocket.Conn, *fuzzConn) {
	fc := &fuzzConn{r: bytes.NewReader(in)}
	return upgradeOver(t, fc, upgrade), fc
}

// upgradeOver upgrades a handshake request over conn with upgrade.
func upgradeOver(t testing.TB, conn net.Conn, upgrade func(http.ResponseWriter, *http.Request) (*websocket.Conn, error)) *websocket.Conn {
	req := httptest.NewRequest(http.MethodGet, "http://engine/", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	ws, err := upgrade(hijackRecorder{httptest.NewRecorder(), conn}, req)
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

// readOutcome is what a server-side reader made of a client's bytes.
type readOutcome = wstest.Outcome

// replies parses what our side wrote after the 101: pongs, and the code
// of its close frame (0: none). Server frames are never masked.
func replies(t *testing.T, out []byte) (pongs []string, closeCode int) {
	out = out[bytes.Index(out, []byte("\r\n\r\n"))+4:]
	for len(out) > 0 {
		if closeCode != 0 {
			t.Fatalf("a frame after our close frame: %x", out)
		}
		if len(out) < 2 || len(out) < wsframe.HeaderLen(out[0], out[1]) {
			t.Fatalf("truncated frame header %x", out)
		}
		hl := wsframe.HeaderLen(out[0], out[1])
		h, err := wsframe.ParseHeader(out[:hl])
		if err != nil || h.Masked || uint64(len(out)-hl) < h.Len {
			t.Fatalf("a bad frame of ours %x: %+v %v", out, h, err)
		}
		p := out[hl : hl+int(h.Len)]
		switch h.Op {
		case websocket.PongMessage:
			pongs = append(pongs, string(p))
		case websocket.CloseMessage:
			closeCode = websocket.CloseNoStatusReceived
			if len(p) >= 2 {
				closeCode = int(binary.BigEndian.Uint16(p))
			}
		default:
			t.Fatalf("a reply of opcode %d", h.Op)
		}
		out = out[hl+int(h.Len):]
	}
	return pongs, closeCode
}

// engineReaderOutcome reads in with ReadFrame on a socket Upgrade made:
// the engine's worker-socket reader. A message over limit (when > 0) is
// recorded as "too large", as the engine skips it.
func engineReaderOutcome(t *testing.T, in []byte, limit int64) readOutcome {
	ws, fc := upgradeFuzz(t, in, func(w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
		return Upgrade(&websocket.Upgrader{}, w, r, nil)
	})
	var o readOutcome
	var buf []byte
	for {
		kind, data, err := ReadFrame(ws, buf[:0], limit)
		if errors.Is(err, ErrFrameTooLarge) {
			if int64(len(data)) <= limit || len(data) > OversizedPrefix+OversizedTail {
				t.Fatalf("an oversized message returned as %d bytes (limit %d)", len(data), limit)
			}
			o.Msgs = append(o.Msgs, "too large")
			continue
		}
		if err != nil {
			var ce *websocket.CloseError
			var pe *websocket.ProtocolError
			switch {
			case errors.As(err, &ce) && ce.Code == websocket.CloseAbnormalClosure: // the input ended
				o.End = "eof"
			case errors.As(err, &ce):
				o.End = fmt.Sprint("close ", ce.Code)
			case errors.As(err, &pe):
				o.End = fmt.Sprint("fail ", pe.CloseCode())
			default:
				t.Fatalf("unexpected error %v", err)
			}
			break
		}
		if limit > 0 && int64(len(data)) > limit {
			t.Fatalf("a message of %d bytes over the limit %d", len(data), limit)
		}
		o.Msgs = append(o.Msgs, wstest.Delivered(kind == websocket.TextMessage, data))
		buf = data
	}
	pongs, closeCode := replies(t, fc.out.Bytes())
	o.Pongs = pongs
	switch {
	case strings.HasPrefix(o.End, "close "):
		if closeCode == 0 {
			t.Fatal("the peer's close frame was not echoed")
		}
	case strings.HasPrefix(o.End, "fail "):
		if want := strings.TrimPrefix(o.End, "fail "); fmt.Sprint(closeCode) != want {
			t.Fatalf("failed with %s but sent close %d", want, closeCode)
		}
	}
	return o
}

// connReaderOutcome reads in with ws.Conn's server reader, no limit: the
// reader every other server side is held to.
func connReaderOutcome(t *testing.T, in []byte) readOutcome {
	ws, fc := upgradeFuzz(t, in, func(w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
		return (&websocket.Upgrader{}).Upgrade(w, r, nil)
	})
	var o readOutcome
	var readErr error
	for {
		op, data, err := ws.ReadMessage()
		if err != nil {
			readErr = err
			break
		}
		o.Msgs = append(o.Msgs, wstest.Delivered(op == websocket.TextMessage, data))
	}
	pongs, closeCode := replies(t, fc.out.Bytes())
	o.Pongs = pongs
	peer := 0
	if ce := (*websocket.CloseError)(nil); errors.As(readErr, &ce) && ce.Code != websocket.CloseAbnormalClosure {
		peer = ce.Code
	}
	o.End = wstest.EndOf(peer, closeCode)
	return o
}

// FuzzEngineReaderMatchesConn reads the same client bytes with the
// engine's worker-socket reader (ReadFrame on a socket Upgrade made) and
// with ws.Conn's server reader: their outcomes must agree (wstest.Agree).
// With a limit, ReadFrame skips each message over it (its prefix and tail
// bounded) and reads on, as the engine does. The seeds (the conformance
// cases) run with every `go test`; `go test -fuzz
// FuzzEngineReaderMatchesConn ./internal/wsconn/` explores.
func FuzzEngineReaderMatchesConn(f *testing.F) {
	for _, tc := range wstest.Cases {
		f.Add(tc.Wire(true))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		engine := engineReaderOutcome(t, in, 0)
		conn := connReaderOutcome(t, in)
		if !wstest.Agree(engine, conn) {
			t.Fatalf("ReadFrame: %.200q, pongs %.200q, %s\nws.Conn: %.200q, pongs %.200q, %s",
				engine.Msgs, engine.Pongs, engine.End, conn.Msgs, conn.Pongs, conn.End)
		}
		// With a limit: the messages within it are the same, each one over
		// it is skipped, and the reading goes on. (An oversized text
		// message is not checked for UTF-8: where the run without a limit
		// failed on one with 1007, this one reads on.)
		limited := engineReaderOutcome(t, in, wstest.Limit)
		if len(limited.Msgs) < len(engine.Msgs) {
			t.Fatalf("with a limit, %d messages; without, %d", len(limited.Msgs), len(engine.Msgs))
		}
		for i, m := range engine.Msgs {
			if over := len(m)-2 > wstest.Limit; limited.Msgs[i] != m && !(over && limited.Msgs[i] == "too large") {
				t.Fatalf("message %d with a limit: %.100q, without: %.100q", i, limited.Msgs[i], m)
			}
		}
		if engine.End != "fail 1007" && (limited.End != engine.End || len(limited.Msgs) != len(engine.Msgs)) {
			t.Fatalf("with a limit, %d messages and %s; without, %d and %s", len(limited.Msgs), limited.End, len(engine.Msgs), engine.End)
		}
	})
}
