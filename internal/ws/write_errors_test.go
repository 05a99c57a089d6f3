package ws

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestWriteArguments: WriteMessage takes only text and binary messages,
// WriteControl only close, ping and pong frames of at most 125 bytes;
// nothing is written for a refused call.
func TestWriteArguments(t *testing.T) {
	c, sc := scripted(true)
	for _, op := range []int{PingMessage, CloseMessage, 0, 3} {
		if err := c.WriteMessage(op, []byte("x")); err == nil || !strings.Contains(err.Error(), "text or binary") {
			t.Errorf("WriteMessage(%d): %v", op, err)
		}
	}
	for _, op := range []int{TextMessage, BinaryMessage, 0, 0xb, 0xf} {
		if err := c.WriteControl(op, nil, time.Time{}); err == nil || !strings.Contains(err.Error(), "close, ping or pong") {
			t.Errorf("WriteControl(%d): %v", op, err)
		}
	}
	if err := c.WriteControl(PingMessage, make([]byte, 126), time.Time{}); err == nil || !strings.Contains(err.Error(), "over 125 bytes") {
		t.Errorf("WriteControl of 126 bytes: %v", err)
	}
	if err := c.WriteControl(PingMessage, make([]byte, 125), time.Time{}); err != nil {
		t.Errorf("WriteControl of 125 bytes: %v", err)
	}
	if w := parseWire(t, sc.out.Bytes()); len(w) != 1 || w[0].op != PingMessage || len(w[0].payload) != 125 {
		t.Fatalf("wrote %+v, want only the 125-byte ping", w)
	}
}

// TestWriteAfterClose: after our close frame every write fails with
// ErrCloseSent, a second close included; one close frame is on the wire.
func TestWriteAfterClose(t *testing.T) {
	c, sc := scripted(false)
	if err := c.WriteControl(CloseMessage, FormatCloseMessage(CloseGoingAway, "bye"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(BinaryMessage, []byte("x")); err != ErrCloseSent {
		t.Errorf("WriteMessage: %v", err)
	}
	for _, op := range []int{PingMessage, PongMessage, CloseMessage} {
		if err := c.WriteControl(op, nil, time.Now().Add(time.Second)); err != ErrCloseSent {
			t.Errorf("WriteControl(%d): %v", op, err)
		}
	}
	w := parseWire(t, sc.out.Bytes())
	if len(w) != 1 || closeCode(t, w[0]) != CloseGoingAway || string(w[0].payload[2:]) != "bye" {
		t.Fatalf("wrote %+v, want one close 1001 bye", w)
	}
}

// TestWriteFragments: a message longer than the connection's fragment
// size goes out as a first frame and continuations, only the last with
// FIN; an empty message is one empty frame. Masked from a client, not from
// a server; the payload arrives whole either way.
func TestWriteFragments(t *testing.T) {
	for _, server := range []bool{true, false} {
		c, sc := scripted(server)
		c.fragment = 10
		msg := []byte("0123456789abcdefghijKLMNO")
		if err := c.WriteMessage(TextMessage, msg); err != nil {
			t.Fatal(err)
		}
		if err := c.WriteMessage(BinaryMessage, nil); err != nil {
			t.Fatal(err)
		}
		w := parseWire(t, sc.out.Bytes())
		if len(w) != 4 {
			t.Fatalf("server %v: %d frames, want 3 + 1", server, len(w))
		}
		var got []byte
		for i, f := range w[:3] {
			wantOp := 0
			if i == 0 {
				wantOp = TextMessage
			}
			if f.op != wantOp || f.fin != (i == 2) || f.masked == server || len(f.payload) != []int{10, 10, 5}[i] {
				t.Fatalf("server %v: frame %d: op %d fin %v masked %v len %d", server, i, f.op, f.fin, f.masked, len(f.payload))
			}
			got = append(got, f.payload...)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("payload %q", got)
		}
		if f := w[3]; f.op != BinaryMessage || !f.fin || len(f.payload) != 0 {
			t.Fatalf("empty message: %+v", f)
		}
	}
}

// TestWriteBigFrames: by default a 100 KiB message goes out as 64 KiB and
// 36 KiB frames; with a fragment size over 64 KiB (WriteBufferSize) as one
// frame. The bytes are intact through every buffer size.
func TestWriteBigFrames(t *testing.T) {
	msg := make([]byte, 100<<10)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	for _, tc := range []struct {
		fragment int
		sizes    []int
	}{{0, []int{64 << 10, 36 << 10}}, {100 << 10, []int{100 << 10}}} {
		for _, server := range []bool{true, false} {
			c, sc := scripted(server)
			c.fragment = tc.fragment
			if err := c.WriteMessage(BinaryMessage, msg); err != nil {
				t.Fatal(err)
			}
			w := parseWire(t, sc.out.Bytes())
			var got []byte
			var sizes []int
			for _, f := range w {
				sizes = append(sizes, len(f.payload))
				got = append(got, f.payload...)
			}
			if !equalInts(sizes, tc.sizes) || !bytes.Equal(got, msg) {
				t.Fatalf("fragment %d server %v: frames %v, bytes equal %v", tc.fragment, server, sizes, bytes.Equal(got, msg))
			}
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestWriteErrors: a write the connection refuses returns its error, a
// closed connection's too (from setting the deadline).
func TestWriteErrors(t *testing.T) {
	c, sc := scripted(true)
	sc.werr = errors.New("reset")
	if err := c.WriteMessage(BinaryMessage, []byte("x")); err != sc.werr {
		t.Fatalf("WriteMessage: %v", err)
	}
	if err := c.WriteControl(PingMessage, nil, time.Time{}); err != sc.werr {
		t.Fatalf("WriteControl: %v", err)
	}
	a, b := net.Pipe()
	b.Close()
	pc := newConn(a, true, a, "", 0)
	if err := pc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pc.WriteMessage(BinaryMessage, []byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("WriteMessage on a closed connection: %v", err)
	}
	if err := pc.WriteControl(PingMessage, nil, time.Now().Add(time.Second)); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("WriteControl on a closed connection: %v", err)
	}
}

// TestWriteDeadlines: SetWriteDeadline bounds WriteMessage to a peer that
// does not read; WriteControl gives up at its deadline while another write
// holds the connection, with a timeout error, and writes once it is free.
func TestWriteDeadlines(t *testing.T) {
	a, b := net.Pipe() // synchronous: a write blocks until b reads
	defer b.Close()
	c := newConn(a, true, a, "", 0)
	defer c.Close()
	if err := c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := c.WriteMessage(BinaryMessage, []byte("nobody reads"))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WriteMessage past its deadline: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}

	// Another write holds the connection (as a WriteMessage blocked on a
	// slow peer does).
	c.wmu <- struct{}{}
	err = c.WriteControl(PingMessage, []byte("p"), time.Now().Add(50*time.Millisecond))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("WriteControl behind a held write: %v, want a timeout", err)
	}
	<-c.wmu
	go func() { _ = c.WriteControl(PingMessage, []byte("p"), time.Now().Add(5*time.Second)) }()
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(b, buf, 3)
	if err != nil {
		t.Fatal(err)
	}
	if w := parseWire(t, buf[:n]); len(w) != 1 || w[0].op != PingMessage || string(w[0].payload) != "p" {
		t.Fatalf("read %+v, want the ping once the connection is free", w)
	}
}

// TestTryWriteControl: behind a write that holds the connection it gives
// up at once with ErrWriteBusy, writing nothing, whatever its deadline;
// once the connection is free it writes the frame.
func TestTryWriteControl(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := newConn(a, true, a, "", 0)
	defer c.Close()
	c.wmu <- struct{}{} // a blocked data write holds the connection
	if err := c.TryWriteControl(CloseMessage, FormatCloseMessage(CloseNormalClosure, ""), time.Now().Add(time.Hour)); err != ErrWriteBusy {
		t.Fatalf("TryWriteControl behind a held write: %v, want ErrWriteBusy", err)
	}
	if c.closeSent.Load() {
		t.Fatal("a close frame that was not written counts as sent")
	}
	<-c.wmu
	go func() { _ = c.TryWriteControl(PongMessage, []byte("q"), time.Now().Add(5*time.Second)) }()
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(b, buf, 3)
	if err != nil {
		t.Fatal(err)
	}
	if w := parseWire(t, buf[:n]); len(w) != 1 || w[0].op != PongMessage || string(w[0].payload) != "q" {
		t.Fatalf("read %+v, want the pong", w)
	}
	if err := c.TryWriteControl(BinaryMessage, nil, time.Time{}); err == nil {
		t.Fatal("TryWriteControl took a data opcode")
	}
}
