package wsconn

import (
	"bufio"
	"bytes"
	"context"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
)

func frameHeader(fin bool, op byte, masked bool, n int) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	var m byte
	if masked {
		m = 0x80
	}
	var h []byte
	switch {
	case n < 126:
		h = []byte{b0, m | byte(n)}
	case n < 1<<16:
		h = []byte{b0, m | 126, byte(n >> 8), byte(n)}
	default:
		h = []byte{b0, m | 127, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
	if masked {
		h = append(h, 1, 2, 3, 4)
	}
	return h
}

func TestFrameBuffered(t *testing.T) {
	whole := func(fin bool, op byte, masked bool, n int) []byte {
		return append(frameHeader(fin, op, masked, n), make([]byte, n)...)
	}
	cases := []struct {
		name string
		in   []byte
		want bool
	}{
		{"empty", nil, false},
		{"one byte", []byte{0x81}, false},
		{"small text", whole(true, websocket.TextMessage, true, 10), true},
		{"small text, last byte missing", whole(true, websocket.TextMessage, true, 10)[:15], false},
		{"binary 16-bit length", whole(true, websocket.BinaryMessage, true, 300), true},
		{"16-bit length, header cut", frameHeader(true, websocket.TextMessage, true, 300)[:3], false},
		{"64-bit length, payload missing", frameHeader(true, websocket.TextMessage, false, 70000), false},
		{"unmasked", whole(true, websocket.TextMessage, false, 5), true},
		{"fragment", whole(false, websocket.TextMessage, true, 5), false},
		{"ping", whole(true, websocket.PingMessage, true, 0), false},
	}
	for _, c := range cases {
		br := bufio.NewReaderSize(bytes.NewReader(c.in), 4096)
		if len(c.in) > 0 {
			br.Peek(1) // fill
		}
		if got := frameBuffered(br); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

// Frames sent in a batch reach the peer only when the batch is flushed,
// in order, and a reader sees buffered frames through NextFrameBuffered.
func TestBatchDefersUntilFlush(t *testing.T) {
	s, c := upgradedPair(t)
	ctx := context.Background()
	var b Batch
	for i := range 3 {
		if err := s.SendIn(ctx, &b, Text, []byte{'a' + byte(i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	cc := s.WS().NetConn().(*corkConn)
	cc.mu.Lock()
	held := len(cc.buf)
	cc.mu.Unlock()
	if held == 0 || len(b.conns) != 1 {
		t.Fatalf("frames not held: %d bytes corked, %d conns in batch", held, len(b.conns))
	}
	b.Flush()
	for i := range 3 {
		_, m, err := c.ReadMessage()
		if err != nil || string(m) != string(rune('a'+i)) {
			t.Fatalf("frame %d: %q %v", i, m, err)
		}
	}
	// The client writes two frames at once: after the first is read, the
	// second is reported buffered; after the second, nothing is.
	if err := c.WriteMessage(websocket.TextMessage, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("y")); err != nil {
		t.Fatal(err)
	}
	ws := s.WS()
	if _, m, err := ReadFrame(ws, nil, 0); err != nil || string(m) != "x" {
		t.Fatalf("%q %v", m, err)
	}
	// "y" may still be in flight; once read, nothing more is buffered.
	if _, m, err := ReadFrame(ws, nil, 0); err != nil || string(m) != "y" {
		t.Fatalf("%q %v", m, err)
	}
	if NextFrameBuffered(ws) {
		t.Fatal("NextFrameBuffered true with nothing buffered")
	}
}

// A connection closed while a batch holds its frames still sends them,
// before the close frame.
func TestCloseFlushesHeldFrames(t *testing.T) {
	s, c := upgradedPair(t)
	var b Batch
	if err := s.SendIn(context.Background(), &b, Text, []byte("held"), nil); err != nil {
		t.Fatal(err)
	}
	s.Close(websocket.CloseNormalClosure, "")
	if _, m, err := c.ReadMessage(); err != nil || string(m) != "held" {
		t.Fatalf("%q %v", m, err)
	}
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("want close 1000, got %v", err)
	}
	<-s.Done()
	b.Flush() // harmless after close
}

// A direct batch defers nothing: SetDirect(true) first writes out what the
// batch held (so a direct write cannot overtake it), and frames sent in it
// then reach the peer at once, in both the blocking and the non-blocking
// mode; SetDirect(false) defers again.
func TestBatchDirect(t *testing.T) {
	for _, nb := range []bool{false, true} {
		var s *Conn
		var c *websocket.Conn
		if nb {
			s, c = nbPair(t, 1<<20)
		} else {
			s, c = upgradedPair(t)
		}
		ctx := context.Background()
		cc := s.WS().NetConn().(*corkConn)
		corked := func() int {
			cc.mu.Lock()
			defer cc.mu.Unlock()
			return len(cc.buf)
		}
		read := func(want string) {
			t.Helper()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, m, err := c.ReadMessage(); err != nil || string(m) != want {
				t.Fatalf("non-blocking %v: got %q %v, want %q", nb, m, err, want)
			}
		}
		var b Batch
		if err := s.SendIn(ctx, &b, Text, []byte("held"), nil); err != nil {
			t.Fatal(err)
		}
		if corked() == 0 {
			t.Fatalf("non-blocking %v: frame not held by a deferring batch", nb)
		}
		b.SetDirect(true)
		if corked() != 0 || len(b.conns) != 0 {
			t.Fatalf("non-blocking %v: SetDirect(true) left %d bytes corked", nb, corked())
		}
		if err := s.SendIn(ctx, &b, Text, []byte("direct"), nil); err != nil {
			t.Fatal(err)
		}
		if corked() != 0 || len(b.conns) != 0 {
			t.Fatalf("non-blocking %v: a direct batch corked its frame", nb)
		}
		read("held")
		read("direct")
		b.SetDirect(false)
		if err := s.SendIn(ctx, &b, Text, []byte("again"), nil); err != nil {
			t.Fatal(err)
		}
		if corked() == 0 {
			t.Fatalf("non-blocking %v: frame not held after SetDirect(false)", nb)
		}
		b.Flush()
		read("again")
	}
}
