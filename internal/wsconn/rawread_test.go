package wsconn

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"

	"github.com/sluicehq/sluice/internal/ws/wsframe"
)

// rawPair is upgradedPair with the client's write buffer set, so that
// gorilla fragments messages longer than it.
func rawPair(t *testing.T, clientWriteBuffer int) (*Conn, *websocket.Conn) {
	t.Helper()
	ch := make(chan *Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := Upgrade(&websocket.Upgrader{}, w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		ch <- New(ws, Options{})
	}))
	t.Cleanup(srv.Close)
	d := websocket.Dialer{WriteBufferSize: clientWriteBuffer}
	c, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := <-ch
	t.Cleanup(s.Abort)
	return s, c
}

func mustRead(t *testing.T, s *Conn, limit int64) (int, []byte, error) {
	t.Helper()
	return ReadFrame(s.WS(), nil, limit)
}

// Messages, fragments, pings and oversized messages on a socket Upgrade
// made are read without gorilla's reader.
func TestServerReadFrames(t *testing.T) {
	s, c := rawPair(t, 256)
	pong := make(chan string, 1)
	c.SetPongHandler(func(p string) error { pong <- p; return nil })
	big := bytes.Repeat([]byte("0123456789"), 100) // fragmented by the client
	over := bytes.Repeat([]byte("x"), 300)
	write := func(kind int, p []byte) {
		if err := c.WriteMessage(kind, p); err != nil {
			t.Fatal(err)
		}
	}
	write(websocket.TextMessage, []byte("hello"))
	if err := c.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	write(websocket.BinaryMessage, big)
	write(websocket.TextMessage, over)
	write(websocket.TextMessage, big) // over the limit in fragments
	write(websocket.TextMessage, nil)
	write(websocket.TextMessage, []byte("after"))

	type want struct {
		kind int
		data []byte
		err  error
	}
	for i, w := range []want{
		{websocket.TextMessage, []byte("hello"), nil},
		{websocket.BinaryMessage, big, nil},
		// limit+1 bytes, then the rest as the message's tail
		{websocket.TextMessage, over, ErrFrameTooLarge},
		{websocket.TextMessage, big, ErrFrameTooLarge},
		{websocket.TextMessage, nil, nil},
		{websocket.TextMessage, []byte("after"), nil},
	} {
		limit := int64(1 << 20)
		if i == 2 || i == 3 {
			limit = 200
		}
		kind, data, err := mustRead(t, s, limit)
		if kind != w.kind || !bytes.Equal(data, w.data) || !errors.Is(err, w.err) {
			t.Fatalf("message %d: kind %d, %d bytes %.20q, %v; want kind %d, %d bytes, %v", i, kind, len(data), data, err, w.kind, len(w.data), w.err)
		}
	}
	// The ping was answered on the way (the client reads the pong).
	go c.ReadMessage()
	if p := <-pong; p != "are you there" {
		t.Fatalf("pong %q", p)
	}
}

func TestServerReadClose(t *testing.T) {
	s, c := rawPair(t, 0)
	if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "bye"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	_, _, err := mustRead(t, s, 0)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4000 || ce.Text != "bye" {
		t.Fatalf("close: %v", err)
	}
	if _, _, err := mustRead(t, s, 0); !errors.As(err, &ce) { // errors are final
		t.Fatalf("after close: %v", err)
	}
	_, _, err = c.ReadMessage() // the close reply
	if code, _, ok := IsCloseError(err); !ok || code != 4000 {
		t.Fatalf("close reply: %v", err)
	}
}

func TestServerReadRejectsBadFrames(t *testing.T) {
	for name, frame := range map[string][]byte{
		"unmasked":      {0x81, 0x01, 'x'},
		"reserved bits": {0xC1, 0x81, 0, 0, 0, 0, 'x'},
		"continuation":  {0x80, 0x81, 0, 0, 0, 0, 'x'},
		"long ping":     append([]byte{0x89, 0xFE, 0, 126, 0, 0, 0, 0}, make([]byte, 126)...),
	} {
		t.Run(name, func(t *testing.T) {
			s, c := rawPair(t, 0)
			if _, err := c.NetConn().Write(frame); err != nil {
				t.Fatal(err)
			}
			var pe *websocket.ProtocolError
			if _, _, err := mustRead(t, s, 0); !errors.As(err, &pe) || pe.CloseCode() != websocket.CloseProtocolError {
				t.Fatalf("got %v, want a protocol error", err)
			}
			_, _, err := c.ReadMessage()
			if code, _, ok := IsCloseError(err); !ok || code != websocket.CloseProtocolError {
				t.Fatalf("client got %v, want close 1002", err)
			}
		})
	}
}

func TestServerReadPeerGone(t *testing.T) {
	s, c := rawPair(t, 0)
	// Half a masked frame, then the peer hangs up.
	b := make([]byte, wsframe.MaxHeader)
	n := wsframe.PutHeader(b, true, wsframe.OpText, 10, true, [4]byte{1, 2, 3, 4})
	c.NetConn().Write(append(b[:n], "abc"...))
	c.NetConn().Close()
	_, _, err := mustRead(t, s, 0)
	if code, _, ok := IsCloseError(err); !ok || code != websocket.CloseAbnormalClosure {
		t.Fatalf("peer gone: %v", err)
	}
}

// Reading a small data frame from the buffer costs no allocation (the
// worker read loop runs this for every message; an escaping error target
// in header once cost one per frame).
func TestServerReadFrameAllocs(t *testing.T) {
	payload := []byte(`{"type":"invocationresult","invocation_id":"x","result":{"n":1}}`)
	key := [4]byte{1, 2, 3, 4}
	var stream []byte
	for range 200 {
		f := make([]byte, wsframe.MaxHeader+len(payload))
		h := wsframe.PutHeader(f, true, wsframe.OpText, len(payload), true, key)
		wsframe.MaskCopy(f[h:], payload, key)
		stream = append(stream, f[:h+len(payload)]...)
	}
	br := bufio.NewReaderSize(bytes.NewReader(stream), 4096)
	var r serverReader
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		kind, data, err := r.read(br, nil, buf[:0], 1<<20)
		if err != nil || kind != wsframe.OpText || !bytes.Equal(data, payload) {
			t.Fatalf("read: kind %d, %q, %v", kind, data, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per frame, want 0", allocs)
	}
}
