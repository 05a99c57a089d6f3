package wsconn

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"

	"github.com/sluicehq/sluice/internal/ws/wsframe"
)

// rawPair is upgradedPair with the client's write buffer set, so that
// the client fragments messages longer than it.
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
// made: ReadFrame keeps the messages within the limit whole, the prefix
// and tail of those over it, and reads on.
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
// in the header parser once cost one per frame).
func TestServerReadFrameAllocs(t *testing.T) {
	payload := []byte(`{"type":"invocationresult","invocation_id":"x","result":{"n":1}}`)
	var stream []byte
	for range 200 {
		stream = append(stream, clientFrames(wsframe.OpText, payload, 0)...)
	}
	ws := readerOver(t, stream)
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		NextFrameBuffered(ws)
		kind, data, err := ReadFrame(ws, buf[:0], 1<<20)
		if err != nil || kind != wsframe.OpText || !bytes.Equal(data, payload) {
			t.Fatalf("read: kind %d, %q, %v", kind, data, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per frame, want 0", allocs)
	}
}

// chunkConn is a fuzzConn that delivers its input in the chunks given, one
// per Read at most, and records the buffers it is asked to read into.
type chunkConn struct {
	fuzzConn
	chunks [][]byte
	reads  [][]byte
}

func (c *chunkConn) Read(p []byte) (int, error) {
	c.reads = append(c.reads, p)
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

// A payload of 1 KiB or more that is not buffered yet is read straight
// into the caller's buffer, with no copy through the reader's own. On
// 1e7a4ea the engine's reader copied payloads under 4 KiB through its
// bufio.Reader.
func TestReadFrameDirect(t *testing.T) {
	msg := bytes.Repeat([]byte("0123456789abcdef"), 1024/16)
	frame := clientFrames(wsframe.OpText, msg, 0)
	hl := len(frame) - len(msg)
	cc := &chunkConn{chunks: [][]byte{frame[:hl], frame[hl:]}}
	ws := upgradeOver(t, cc, func(w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
		return Upgrade(&websocket.Upgrader{}, w, r, nil)
	})
	_, data, err := ReadFrame(ws, make([]byte, 0, 4096), 1<<20)
	if err != nil || !bytes.Equal(data, msg) {
		t.Fatalf("%d bytes, %v", len(data), err)
	}
	for _, p := range cc.reads {
		if len(p) > 0 && &p[0] == &data[0] {
			return
		}
	}
	t.Fatalf("the payload was not read into the caller's buffer (%d reads)", len(cc.reads))
}

// A read deadline passing is not final: the next ReadFrame reads on,
// between messages as if nothing happened, and after a message the
// deadline cut short (in a frame's payload, or between its fragments)
// from the next one.
func TestReadFrameDeadlineResumes(t *testing.T) {
	s, c := rawPair(t, 0)
	ws := s.WS()
	sent := s.BytesRead()
	send := func(b []byte) {
		t.Helper()
		if _, err := c.NetConn().Write(b); err != nil {
			t.Fatal(err)
		}
		sent += uint64(len(b))
	}
	// expire lets a deadline pass once the reader has taken what was sent.
	expire := func() {
		t.Helper()
		for first := true; first || s.BytesRead() < sent; first = false {
			_ = ws.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, _, err := ReadFrame(ws, nil, 0); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("got %v, want the deadline", err)
			}
		}
		_ = ws.SetReadDeadline(time.Time{})
	}
	read := func(want string) {
		t.Helper()
		if _, data, err := ReadFrame(ws, nil, 0); err != nil || string(data) != want {
			t.Fatalf("got %q, %v; want %q", data, err, want)
		}
	}
	expire() // between messages
	send(clientFrames(wsframe.OpText, []byte("first"), 0))
	read("first")

	cut := clientFrames(wsframe.OpText, []byte("cut in its payload"), 0)
	send(cut[:10])
	expire()
	send(append(cut[10:], clientFrames(wsframe.OpText, []byte("second"), 0)...))
	read("second")

	frags := clientFrames(wsframe.OpText, []byte("cut between its fragments"), 5)
	send(frags[:len(frags)/2])
	expire()
	send(append(frags[len(frags)/2:], clientFrames(wsframe.OpText, []byte("third"), 0)...))
	read("third")
}
