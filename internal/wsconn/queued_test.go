package wsconn

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
)

// readFrames reads n frames from c and checks they are the bytes 0..n-1 in
// order.
func readFrames(t *testing.T, c interface {
	ReadMessage() (int, []byte, error)
}, n int) {
	t.Helper()
	for i := range n {
		_, b, err := c.ReadMessage()
		if err != nil || len(b) != 1 || b[0] != byte(i) {
			t.Fatalf("frame %d: %v %v", i, b, err)
		}
	}
}

// TestQueuedFramesBatched: frames that queue up while a write is in
// progress are written behind it in one corked batch, in order, each
// reported written once.
func TestQueuedFramesBatched(t *testing.T) {
	s, c := upgradedPair(t)
	if s.cc == nil {
		t.Fatal("Upgrade did not give a corkable socket")
	}
	written := make(chan byte, 16)
	s.wmu.Lock() // a write "in progress": Send must queue
	for i := range 8 {
		if err := s.Send(context.Background(), Binary, []byte{byte(i)}, func(b []byte) { written <- b[0] }); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.queued.Load(); n != 8 {
		t.Fatalf("%d frames queued, want 8", n)
	}
	s.wmu.Unlock()
	readFrames(t, c, 8)
	for i := range 8 {
		if b := <-written; b != byte(i) {
			t.Fatalf("onWritten %d for frame %d", b, i)
		}
	}
}

// TestTrySend: TrySend queues without waiting, refuses when the queue is
// full or the connection closed, and what it queued is sent in order.
func TestTrySend(t *testing.T) {
	s, c := newPair(t, func(u *websocket.Upgrader, w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
		return u.Upgrade(w, r, nil)
	}, Options{Queue: 1})
	s.wmu.Lock()
	ok := 0
	for range 3 { // at most one in the writer's hands and one in the queue
		if s.TrySend(Binary, []byte{byte(ok)}) {
			ok++
		}
	}
	if ok == 0 || ok == 3 {
		t.Fatalf("%d of 3 TrySends into a queue of 1 behind a stuck write succeeded", ok)
	}
	s.wmu.Unlock()
	readFrames(t, c, ok)
	s.Close(1000, "")
	<-s.Done()
	if s.TrySend(Binary, []byte{0}) {
		t.Fatal("TrySend after close succeeded")
	}
}

// TestTrySendNonBlocking: in non-blocking mode TrySend is a send within
// MaxQueuedBytes.
func TestTrySendNonBlocking(t *testing.T) {
	s, c := newPair(t, func(u *websocket.Upgrader, w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
		return Upgrade(u, w, r, nil)
	}, Options{MaxQueuedBytes: 1 << 20})
	if s.maxQueued == 0 {
		t.Fatal("not in non-blocking mode")
	}
	for i := range 4 {
		if !s.TrySend(Binary, []byte{byte(i)}) {
			t.Fatalf("TrySend %d refused", i)
		}
	}
	readFrames(t, c, 4)
}

// TestBuffersRecycled: Buffer hands out recycled buffers, emptied; large
// ones are not kept.
func TestBuffersRecycled(t *testing.T) {
	small := make([]byte, 5, 3000)
	large := make([]byte, 5, 128<<10)
	Recycle(large)
	Recycle(small)
	found := false
	for range cap(freeBuffers) + 1 {
		b := Buffer()
		if len(b) != 0 {
			t.Fatalf("Buffer returned %d bytes of content", len(b))
		}
		switch cap(b) {
		case 3000:
			found = true
		case 128 << 10:
			t.Fatal("a 128 KiB buffer was kept")
		}
		if cap(b) == 1024 && len(freeBuffers) == 0 {
			break
		}
	}
	if !found {
		t.Fatal("the recycled buffer was not handed out again")
	}
}

// TestSendDeferred: deferred frames wait in the write buffer, with no
// system call, until FlushDeferred or the next frame anyone writes (inline
// or by the writer goroutine); a deferred frame behind a write in progress
// queues for the writer. Order is kept throughout.
func TestSendDeferred(t *testing.T) {
	s, c := upgradedPair(t)
	ctx := context.Background()
	buffered := func() int {
		s.cc.mu.Lock()
		defer s.cc.mu.Unlock()
		return len(s.cc.buf)
	}
	for i := range 3 {
		if err := s.SendDeferred(ctx, Binary, []byte{byte(i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := buffered(); n != 3*3 || !s.deferred.Load() {
		t.Fatalf("%d bytes buffered (deferred %v), want 3 frames of 3 bytes held", n, s.deferred.Load())
	}
	s.FlushDeferred()
	if n := buffered(); n != 0 || s.deferred.Load() {
		t.Fatalf("after FlushDeferred: %d bytes still buffered", n)
	}
	// An inline Send takes the deferred frames with it.
	_ = s.SendDeferred(ctx, Binary, []byte{3}, nil)
	if err := s.Send(ctx, Binary, []byte{4}, nil); err != nil {
		t.Fatal(err)
	}
	if n := buffered(); n != 0 {
		t.Fatalf("after Send: %d bytes still buffered", n)
	}
	// So does the writer goroutine.
	_ = s.SendDeferred(ctx, Binary, []byte{5}, nil)
	if err := s.SendLater(ctx, Binary, []byte{6}, nil); err != nil {
		t.Fatal(err)
	}
	// Behind a write in progress, a deferred frame queues.
	s.wmu.Lock()
	_ = s.SendDeferred(ctx, Binary, []byte{7}, nil)
	if n := s.queued.Load(); n == 0 {
		t.Fatal("a deferred frame behind a busy socket did not queue")
	}
	s.wmu.Unlock()
	readFrames(t, c, 8)
	s.FlushDeferred() // nothing deferred: no effect
}

// TestNothingAfterOurClose: frames still queued for a peer when the reader
// answers its protocol error with a close frame are dropped (and released),
// not written after it: RFC 6455 allows nothing after a close frame, and
// the engine has answered the calls they carry as stopped, so the peer
// must not get them. On eb0a583 the three frames followed the close.
func TestNothingAfterOurClose(t *testing.T) {
	s, c := upgradedPair(t)
	released := make(chan struct{}, 3)
	s.wmu.Lock() // a write in progress: the frames queue
	for i := range 3 {
		if err := s.Send(t.Context(), Binary, []byte{byte(i)}, func([]byte) { released <- struct{}{} }); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.NetConn().Write([]byte{0xC2, 0x81, 0, 0, 0, 0, 'x'}); err != nil { // reserved bit set
		t.Fatal(err)
	}
	if _, _, err := ReadFrame(s.WS(), nil, 0); err == nil {
		t.Fatal("the read did not fail")
	}
	s.HangupWithin(5 * time.Second)
	s.wmu.Unlock()
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the socket was not closed")
	}
	for range 3 {
		<-released
	}
	_ = c.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(c.NetConn())
	if len(got) < 2 || got[0] != 0x88 || int(got[1]) != len(got)-2 {
		t.Fatalf("the peer got % x, want one close frame and nothing after it", got)
	}
	if code := int(got[2])<<8 | int(got[3]); code != websocket.CloseProtocolError {
		t.Fatalf("close code %d, want 1002", code)
	}
}
