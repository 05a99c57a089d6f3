package channels

import (
	"context"
	"errors"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"

	"github.com/sluicehq/sluice/wire"
)

// fault: frameReader accepting a data frame inside a fragmented message
// (frames.go). RFC 6455 §5.4: until the FIN fragment, only continuation
// (and control) frames may follow; the writer broke the protocol.
func TestNewMessageInsideFragmentedOne(t *testing.T) {
	th := newTestHub(t, Config{})
	res, _ := th.Create(0)
	r := th.dial(t, res.Reader, wire.DirRead)
	w := th.dial(t, res.Writer, wire.DirWrite)
	frames := append(rawFrame(0x02, true, []byte("first half")), rawFrame(0x82, true, []byte("a new message"))...)
	if _, err := w.NetConn().Write(frames); err != nil {
		t.Fatal(err)
	}
	expectClose(t, w, websocket.CloseProtocolError, "")
	expectClose(t, r, wire.CloseInternal, "writer broke the WebSocket protocol")
	th.waitLen(t, 0)
}

// fault: Hub.Shutdown waiting for its sockets without looking at ctx. A
// reader that never reads keeps the engine's write to it blocked; Shutdown
// gives up at its deadline, closes the sockets and says so.
func TestShutdownHonoursDeadline(t *testing.T) {
	th := newTestHub(t, Config{MaxBufferBytes: 1 << 20})
	res, _ := th.Create(0)
	r := th.dial(t, res.Reader, wire.DirRead) // never reads
	w := th.dial(t, res.Writer, wire.DirWrite)
	frame := make([]byte, 256<<10)
	go func() {
		for i := 0; i < 256; i++ { // 64 MiB at most: far more than the socket buffers
			if w.WriteMessage(websocket.BinaryMessage, frame) != nil {
				return
			}
		}
	}()
	// The channel's buffer full means the engine's writer to r is stuck in
	// a kernel write (nothing else drains it).
	deadline := time.Now().Add(testWait)
	for th.BufferedBytes() < int64(1<<20-len(frame)) {
		if time.Now().After(deadline) {
			t.Fatalf("the channel never filled: %d bytes buffered", th.BufferedBytes())
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now() // before the deadline is set: measured from after it, Shutdown looked early
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- th.Shutdown(ctx) }()
	select {
	case err := <-errc:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown with a stuck reader socket = %v, want the deadline's error", err)
		}
		if d := time.Since(start); d < 100*time.Millisecond {
			t.Fatalf("Shutdown returned after %v, before its deadline", d)
		}
	case <-time.After(testWait):
		t.Fatal("Shutdown ignored its deadline")
	}
	_ = r.Close()
}

// TestShutdownLateWithNothingOpen: Shutdown called with its context already
// ended returns nil when no socket is open (a channel without any is ended,
// not cut): nothing was dropped. On c966fe4 it
// returned context.DeadlineExceeded (its wait lost the race to the ended
// context), which Engine.Shutdown passes on: after an HTTP drain that used
// the time up, `sluice serve` failed its shutdown with nothing left open
// (TestShutdownDrainsHTTP: 1 in 20 runs at load 16).
func TestShutdownLateWithNothingOpen(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 20 {
		h := NewHub(Config{}, nil)
		if i%2 == 1 {
			// A channel no socket joined: Shutdown ends it, nothing to drop.
			if _, err := h.Create(0); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown %d with nothing open, its context ended: %v", i, err)
		}
	}
}
