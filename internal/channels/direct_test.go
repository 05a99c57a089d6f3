package channels

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/channels/wsframe"
	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/wire"
)

// Direct writes (sink.go): the pipe's sender writes a frame to an idle
// reader socket itself. These tests drive memPipe and readerSink over a
// real loopback TCP connection, acting as runReader's loop by hand, then
// through the hub.

// directPair returns the engine's side of a loopback TCP connection (what
// a reader socket's sink writes to) and the peer's side.
func directPair(t *testing.T) (srv, peer *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	p, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-acc
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { s.Close(); p.Close() })
	return s.(*net.TCPConn), p.(*net.TCPConn)
}

// rawCtl writes a control frame the way ws.WriteControl does: one Write.
func rawCtl(c net.Conn) func(int, []byte, time.Time) error {
	return func(op int, data []byte, deadline time.Time) error {
		var b [wsframe.MaxHeader + 125]byte
		n := wsframe.PutHeader(b[:], true, op, len(data), false, [4]byte{})
		n += copy(b[n:], data)
		_ = c.SetWriteDeadline(deadline)
		_, err := c.Write(b[:n])
		return err
	}
}

type wireFrame struct {
	op   int
	data []byte
}

// readWire reads n frames (data and control) the engine wrote to peer.
func readWire(peer net.Conn, n int) ([]wireFrame, error) {
	_ = peer.SetReadDeadline(time.Now().Add(testWait))
	r := wsframe.NewReader(peer, 4096)
	var out []wireFrame
	for len(out) < n {
		h, err := r.Next()
		if err != nil {
			return out, fmt.Errorf("after %d frames: %w", len(out), err)
		}
		if !h.Fin || h.Masked || h.Len > 1<<20 {
			return out, fmt.Errorf("frame %d: bad header %+v (a frame was interleaved with another)", len(out), h)
		}
		b := make([]byte, h.Len)
		if err := r.ReadPayload(b); err != nil {
			return out, fmt.Errorf("frame %d payload: %w", len(out), err)
		}
		out = append(out, wireFrame{h.Op, b})
	}
	return out, nil
}

func directFrame(i, size int) Frame {
	b := make([]byte, size)
	for j := range b {
		b[j] = byte(i*31 + j*7)
	}
	return Frame{Data: b}
}

// deliver does what runReader does with a frame Recv returned.
func deliver(t *testing.T, p *memPipe, s *readerSink, fw *frameWriter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	f, err := p.Recv(ctx)
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	err = fw.writeRest(f.Text, f.Data, f.sent)
	if f.sent > 0 {
		s.finish(err)
	}
	f.Release()
	p.delivered()
	if err != nil {
		t.Fatalf("write: %v", err)
	}
}

// TestDirectWriteWaitsForFrameInReaderHands: a frame the reader goroutine
// has taken from the queue but not yet written is not overtaken by a
// direct write (memPipe.pending); once it is written, the next frame goes
// out directly. Without the pending check, frame 1 goes out before 0.
func TestDirectWriteWaitsForFrameInReaderHands(t *testing.T) {
	srv, peer := directPair(t)
	p := newMemPipe(4, nil, nil)
	var direct atomic.Int32
	p.onDirect = func() { direct.Add(1) }
	if err := p.Send(context.Background(), directFrame(0, 100)); err != nil { // no sink yet: queued
		t.Fatal(err)
	}
	s := newReaderSink(srv, rawCtl(srv))
	if s == nil {
		t.Skip("no direct writes on this platform")
	}
	p.setSink(s)
	fw := newFrameWriter(srv)

	f0, err := p.Recv(context.Background()) // the reader goroutine holds frame 0 (queued: no wait)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Send(context.Background(), directFrame(1, 100)); err != nil {
		t.Fatal(err)
	}
	if p.Len() != 1 || direct.Load() != 0 {
		t.Fatalf("frame 1 with frame 0 unwritten: %d queued, %d direct; want queued", p.Len(), direct.Load())
	}
	if err := fw.write(false, f0.Data); err != nil {
		t.Fatal(err)
	}
	p.delivered()
	deliver(t, p, s, fw) // frame 1
	if err := p.Send(context.Background(), directFrame(2, 100)); err != nil {
		t.Fatal(err)
	}
	if p.Len() != 0 || direct.Load() != 1 {
		t.Fatalf("frame 2 on an idle reader: %d queued, %d direct; want direct", p.Len(), direct.Load())
	}
	got, err := readWire(peer, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range got {
		if want := directFrame(i, 100).Data; f.op != opBinary || !bytes.Equal(f.data, want) {
			t.Fatalf("frame %d on the wire is not frame %d", i, i)
		}
	}
}

// halfWritten fills srv until a direct write leaves a frame half-written
// (queued with Frame.sent > 0, the sink's lock held) and returns how many
// frames went out before it, which is frame number n.
func halfWritten(t *testing.T, p *memPipe, s *readerSink, size int) int {
	t.Helper()
	for i := range 4096 {
		if err := p.Send(context.Background(), directFrame(i, size)); err != nil {
			t.Fatal(err)
		}
		if p.Len() == 0 {
			continue
		}
		if s.mu.TryLock() {
			t.Fatalf("frame %d queued whole: the socket took none of it (expected part)", i)
		}
		return i
	}
	t.Fatal("the socket never filled")
	return 0
}

// TestDirectWriteHalfWrittenFrame: when the socket takes only part of a
// frame, the reader goroutine writes the rest, no control frame gets
// inside it (it waits on the sink), later frames queue behind it, and the
// stream on the wire stays whole and ordered.
func TestDirectWriteHalfWrittenFrame(t *testing.T) {
	srv, peer := directPair(t)
	_ = srv.SetWriteBuffer(16 << 10)
	_ = peer.SetReadBuffer(16 << 10)
	p := newMemPipe(4, nil, nil)
	s := newReaderSink(srv, rawCtl(srv))
	if s == nil {
		t.Skip("no direct writes on this platform")
	}
	waiting := make(chan struct{}, 1)
	s.onCtlWait = func() { waiting <- struct{}{} }
	p.setSink(s)
	fw := newFrameWriter(srv)
	const size = wire.FrameSize
	half := halfWritten(t, p, s, size)

	pong := make(chan error, 1)
	go func() { pong <- s.control(opPong, []byte("pong"), time.Time{}) }()
	select {
	case <-waiting:
	case err := <-pong:
		t.Fatalf("a pong went out (%v) while frame %d was half-written", err, half)
	case <-time.After(testWait):
		t.Fatal("the pong neither waited nor went out")
	}
	if err := p.Send(context.Background(), directFrame(half+1, size)); err != nil {
		t.Fatal(err)
	}
	if p.Len() != 2 {
		t.Fatalf("frame after a half-written one: %d queued, want 2", p.Len())
	}

	type result struct {
		frames []wireFrame
		err    error
	}
	onWire := make(chan result, 1)
	go func() {
		f, err := readWire(peer, half+3)
		onWire <- result{f, err}
	}()
	deliver(t, p, s, fw) // the rest of the half-written frame
	deliver(t, p, s, fw)
	select {
	case err := <-pong:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(testWait):
		t.Fatal("the pong never went out")
	}
	res := <-onWire
	if res.err != nil {
		t.Fatal(res.err)
	}
	got := res.frames
	next := 0
	for i, f := range got {
		if f.op == opPong {
			if next <= half {
				t.Fatalf("the pong came at %d, before frame %d was whole", i, half)
			}
			continue
		}
		if !bytes.Equal(f.data, directFrame(next, size).Data) {
			t.Fatalf("wire frame %d is not frame %d", i, next)
		}
		next++
	}
	if next != half+2 {
		t.Fatalf("%d data frames on the wire, want %d", next, half+2)
	}
}

// TestDirectWriteAbortDropsHalfWrittenFrame: an abort that drops a
// half-written frame from the queue releases its memory and the sink's
// lock, and the socket takes nothing more (a close frame after half a frame
// would be garbage to the reader).
func TestDirectWriteAbortDropsHalfWrittenFrame(t *testing.T) {
	srv, peer := directPair(t)
	_ = srv.SetWriteBuffer(16 << 10)
	_ = peer.SetReadBuffer(16 << 10)
	p := newMemPipe(4, nil, nil)
	s := newReaderSink(srv, rawCtl(srv))
	if s == nil {
		t.Skip("no direct writes on this platform")
	}
	p.setSink(s)
	m := newChanMem(newBudget(1<<30), 1<<30)
	// Charge every frame so that the test sees what is released.
	for i := 0; ; i++ {
		if i == 4096 {
			t.Fatal("the socket never filled")
		}
		f := directFrame(i, wire.FrameSize)
		if !m.reserve(int64(len(f.Data)), 0, nil, nil) {
			t.Fatal("reserve")
		}
		m.endMessage()
		f.mem, f.cost = m, int64(len(f.Data))
		if err := p.Send(context.Background(), f); err != nil {
			t.Fatal(err)
		}
		if p.Len() > 0 {
			break
		}
	}
	if used := m.used.Load(); used != wire.FrameSize {
		t.Fatalf("%d bytes charged with one frame queued, want %d (direct writes release theirs)", used, wire.FrameSize)
	}
	p.Abort(&AbortError{Reason: "test"})
	if used := m.used.Load(); used != 0 {
		t.Fatalf("%d bytes still charged after the abort", used)
	}
	done := make(chan error, 1)
	go func() { done <- s.control(opClose, closeMessage(1011, "test"), time.Now().Add(testWait)) }()
	select {
	case err := <-done:
		if !errors.Is(err, errSinkShut) {
			t.Fatalf("close frame after a half-written frame: %v, want errSinkShut", err)
		}
	case <-time.After(testWait):
		t.Fatal("the dropped frame kept the sink locked")
	}
	if _, err := s.tryWrite(&Frame{Data: []byte("x")}); !errors.Is(err, errSinkShut) {
		t.Fatalf("direct write after a cut frame: %v", err)
	}
}

// stalledReader opens a channel whose reader socket is connected but never
// reads, and a writer that writes until the hub's pipe is full (the writer
// goroutine waits in Send, not in a write to the reader socket). It
// returns the writer socket, the pipe and how many frames went out
// directly.
func stalledReader(t *testing.T) (*testHub, *websocket.Conn, *websocket.Conn, *memPipe, *atomic.Int32) {
	t.Helper()
	blocked := make(chan struct{}, 1)
	th := newTestHub(t, Config{}, func(h *Hub) {
		h.onSendBlocked = func() {
			select {
			case blocked <- struct{}{}:
			default:
			}
		}
	})
	res, _ := th.Create(4)
	p := th.channel(res.Writer.ChannelID).pipe.(*memPipe)
	var direct atomic.Int32
	p.onDirect = func() { direct.Add(1) } // before the writer goroutine starts
	r := th.dial(t, res.Reader, wire.DirRead)
	w := th.dial(t, res.Writer, wire.DirWrite)
	go func() {
		frame := make([]byte, wire.FrameSize)
		for range 1 << 14 { // 1 GiB at most; the test ends it long before
			if w.WriteMessage(websocket.BinaryMessage, frame) != nil {
				return
			}
		}
	}()
	select {
	case <-blocked:
	case <-time.After(testWait):
		t.Fatalf("the writer never found the pipe full (%d frames went out directly)", direct.Load())
	}
	if direct.Load() == 0 {
		t.Fatal("no frame went out directly")
	}
	return th, w, r, p, &direct
}

// TestDirectWriteStalledReaderAbort: with a reader that stopped reading,
// the writer's goroutine waits on the pipe, never in a write to the reader
// socket, so an abort reaches the writer at once and releases what the
// pipe held; the reader, once it reads again, gets every frame the engine
// wrote whole, then 1011.
func TestDirectWriteStalledReaderAbort(t *testing.T) {
	th, w, r, p, _ := stalledReader(t)
	p.Abort(&AbortError{Reason: "test abort"})
	expectClose(t, w, wire.CloseInternal, "test abort")
	// The reader goroutine may still hold the frame it is writing.
	if used := th.BufferedBytes(); used > maxPooledCap {
		t.Fatalf("%d bytes held after the abort, want at most one frame", used)
	}
	_ = r.SetReadDeadline(time.Now().Add(testWait))
	for {
		_, data, err := r.ReadMessage()
		if err != nil {
			code, reason, _ := closeCode(err)
			if code != wire.CloseInternal || reason != "test abort" {
				t.Fatalf("reader ended with %v", err)
			}
			break
		}
		if len(data) != wire.FrameSize {
			t.Fatalf("a frame of %d bytes", len(data))
		}
	}
	th.waitLen(t, 0)
	if used := th.BufferedBytes(); used != 0 {
		t.Fatalf("%d bytes held after the channel ended", used)
	}
}

// TestDirectWriteStalledReaderCloses: a reader that stopped reading and
// then sends its close frame ends the channel promptly although a frame is
// stuck half-written to it: the close echo sets the write deadline, as
// ws.WriteControl does, instead of waiting behind the frame forever. The
// writer gets 1011 "reader closed".
func TestDirectWriteStalledReaderCloses(t *testing.T) {
	th, w, r, _, _ := stalledReader(t)
	if err := r.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(testWait)); err != nil {
		t.Fatal(err)
	}
	expectClose(t, w, wire.CloseInternal, "reader closed")
	r.NetConn().Close()
	th.waitLen(t, 0)
	if used := th.BufferedBytes(); used != 0 {
		t.Fatalf("%d bytes held after the channel ended", used)
	}
}
