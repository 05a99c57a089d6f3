package wsconn

import (
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
		// A first message, read with c.in in the same read.
		ws := readerOver(t, append(clientFrames(websocket.TextMessage, []byte("first"), 0), c.in...))
		if _, m, err := ReadFrame(ws, nil, 0); err != nil || string(m) != "first" {
			t.Fatalf("%s: first message %q, %v", c.name, m, err)
		}
		if got := NextFrameBuffered(ws); got != c.want {
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

// A direct batch corks nothing: a frame sent in it to a connection the
// batch has not corked goes out at once, while one to a connection it
// corked before joins that connection's cork buffer (after what it holds,
// written with it at Flush); SetDirect(false) defers again. In the
// blocking mode a direct send flushes the batch first (it may block).
func TestBatchDirect(t *testing.T) {
	ctx := context.Background()
	corked := func(s *Conn) int {
		cc := s.WS().NetConn().(*corkConn)
		cc.mu.Lock()
		defer cc.mu.Unlock()
		return len(cc.buf)
	}
	read := func(c *websocket.Conn, want string) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, m, err := c.ReadMessage(); err != nil || string(m) != want {
			t.Fatalf("got %q %v, want %q", m, err, want)
		}
	}
	send := func(s *Conn, b *Batch, msg string) {
		t.Helper()
		if err := s.SendIn(ctx, b, Text, []byte(msg), nil); err != nil {
			t.Fatal(err)
		}
	}
	s1, c1 := nbPair(t, 1<<20)
	s2, c2 := nbPair(t, 1<<20)
	var b Batch
	send(s1, &b, "held")
	held := corked(s1)
	if held == 0 || len(b.conns) != 1 {
		t.Fatalf("frame not held by a deferring batch")
	}
	b.SetDirect(true)
	send(s2, &b, "direct")
	if corked(s2) != 0 || len(b.conns) != 1 {
		t.Fatalf("a direct batch corked a frame")
	}
	read(c2, "direct")
	send(s1, &b, "after")
	if corked(s1) <= held {
		t.Fatalf("a frame to a corked connection went around its cork buffer (%d bytes held, %d before)", corked(s1), held)
	}
	b.Flush()
	read(c1, "held")
	read(c1, "after")
	b.SetDirect(false)
	send(s2, &b, "again")
	if corked(s2) == 0 {
		t.Fatalf("frame not held after SetDirect(false)")
	}
	b.Flush()
	read(c2, "again")

	// Blocking mode: a direct send releases what the batch holds first.
	s3, c3 := upgradedPair(t)
	s4, c4 := upgradedPair(t)
	var bb Batch
	send(s3, &bb, "held")
	bb.SetDirect(true)
	send(s4, &bb, "direct")
	if len(bb.conns) != 0 || corked(s3) != 0 {
		t.Fatalf("blocking mode: a direct send left frames held")
	}
	read(c3, "held")
	read(c4, "direct")
}

type countFlusher struct {
	n     int
	order *[]string
	name  string
}

func (f *countFlusher) FlushBatch() { f.n++; *f.order = append(*f.order, f.name) }

// TestBatchDeferredWork: work given Defer runs once, in order, at the next
// Flush and not before; Deferred lists it until then; Deferring follows
// SetDirect (and is false for a nil batch).
func TestBatchDeferredWork(t *testing.T) {
	var nilBatch *Batch
	if nilBatch.Deferring() {
		t.Fatal("a nil batch defers")
	}
	var b Batch
	if !b.Deferring() {
		t.Fatal("a new batch does not defer")
	}
	b.SetDirect(true)
	if b.Deferring() {
		t.Fatal("a direct batch defers")
	}
	b.SetDirect(false)
	var order []string
	f1, f2 := &countFlusher{order: &order, name: "1"}, &countFlusher{order: &order, name: "2"}
	b.Defer(f1)
	b.Defer(f2)
	if d := b.Deferred(); len(d) != 2 || d[0] != Flusher(f1) || d[1] != Flusher(f2) || f1.n+f2.n != 0 {
		t.Fatalf("deferred %v, ran %d %d", d, f1.n, f2.n)
	}
	b.Flush()
	if f1.n != 1 || f2.n != 1 || len(order) != 2 || order[0] != "1" || len(b.Deferred()) != 0 {
		t.Fatalf("after Flush: ran %d %d in order %v, %d still deferred", f1.n, f2.n, order, len(b.Deferred()))
	}
	b.Flush()
	if f1.n != 1 {
		t.Fatal("deferred work ran twice")
	}
}
