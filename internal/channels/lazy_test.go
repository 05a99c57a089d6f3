package channels

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/wire"
)

// pipeOf reads a channel's pipe under the hub lock.
func (th *testHub) pipeOf(ch *channel) Pipe {
	th.mu.Lock()
	defer th.mu.Unlock()
	return ch.pipe
}

// readyFlag records OnReady calls.
func readyFlag(lr *LocalReader) chan struct{} {
	c := make(chan struct{}, 4)
	lr.OnReady(func() { c <- struct{}{} })
	return c
}

func waitReady(t *testing.T, c chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(testWait):
		t.Fatalf("OnReady not called when %s", what)
	}
}

// A channel whose local reader is retired before its writer connected
// never gets a pipe (its frame buffer is what makes a channel costly) or a
// memory account, and
// its ends still behave: Next fails at once as retired, Close is harmless,
// a late writer gets 404.
func TestLocalReaderRetiredWithoutPipe(t *testing.T) {
	th := newTestHub(t, Config{})
	ref, lr, err := th.CreateWithLocalReader(64)
	if err != nil {
		t.Fatal(err)
	}
	ch := th.channel(ref.ChannelID)
	if p := th.pipeOf(ch); p != nil {
		t.Fatal("a local reader's channel got its pipe before anything used it")
	}
	ready := readyFlag(lr)
	lr.Retire()
	if p := th.pipeOf(ch); p != retiredPipe {
		t.Fatalf("retired channel's pipe = %v, want the shared retired pipe", p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	_, err = lr.Next(ctx)
	var ae *AbortError
	if !errors.As(err, &ae) || ae.Reason != "channel retired" {
		t.Fatalf("Next after Retire: %v, want the retired abort", err)
	}
	lr.Close()
	th.mu.Lock()
	mem := ch.mem
	th.mu.Unlock()
	if mem != nil {
		t.Fatal("a retired channel got a memory account")
	}
	if _, resp, err := testDialer.Dial(th.url(ref, wire.DirWrite), nil); err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("writer after Retire: %v, want 404", err)
	}
	select {
	case <-ready:
		t.Fatal("OnReady called for a channel its reader retired")
	default:
	}
	th.waitLen(t, 0)
}

// OnReady fires once when the writer connects, and the pipe exists from
// then on: frames sent before the local reader's first Next are kept.
func TestLocalReaderOnReadyAtConnect(t *testing.T) {
	th := newTestHub(t, Config{})
	ref, lr, err := th.CreateWithLocalReader(4)
	if err != nil {
		t.Fatal(err)
	}
	ready := readyFlag(lr)
	w := th.dial(t, ref, wire.DirWrite)
	waitReady(t, ready, "the writer connected")
	sendAll(t, w, []msg{{websocket.BinaryMessage, []byte("early")}})
	closeWith(t, w, 1000, "")
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	f, err := lr.Next(ctx)
	if err != nil || string(f.Data) != "early" {
		t.Fatalf("Next: %q, %v", f.Data, err)
	}
	f.Release()
	if _, err := lr.Next(ctx); err == nil {
		t.Fatal("no end after the writer closed")
	}
	select {
	case <-ready:
		t.Fatal("OnReady called twice")
	default:
	}
}

// A channel that ends before its writer connected (TTL, shutdown) wakes
// its local reader, which then reads why.
func TestLocalReaderOnReadyAtEnd(t *testing.T) {
	fire := make(chan func(), 4)
	th := newTestHub(t, Config{}, func(h *Hub) {
		h.afterFunc = func(_ time.Duration, f func()) func() bool { fire <- f; return func() bool { return true } }
	})
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()

	_, lr, _ := th.CreateWithLocalReader(0)
	ready := readyFlag(lr)
	(<-fire)()
	waitReady(t, ready, "the channel expired")
	var ae *AbortError
	if _, err := lr.Next(ctx); !errors.As(err, &ae) || ae.Reason != "channel expired: the writer never connected" {
		t.Fatalf("Next after expiry: %v", err)
	}

	_, lr, _ = th.CreateWithLocalReader(0)
	<-fire
	ready = readyFlag(lr)
	if err := th.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ready, "the engine shut down")
	if _, err := lr.Next(ctx); !errors.Is(err, ErrAborted) {
		t.Fatalf("Next after shutdown: %v", err)
	}
}

// A local writer's channel gets its pipe and memory account only when
// used; OnReady fires when the reader connects, and what is written then
// arrives. A writer closed before anything was made ends the stream
// cleanly for a reader that connects later.
func TestLocalWriterOnDemand(t *testing.T) {
	th := newTestHub(t, Config{})
	ref, lw, err := th.CreateWithLocalWriter(1)
	if err != nil {
		t.Fatal(err)
	}
	ch := th.channel(ref.ChannelID)
	th.mu.Lock()
	made := ch.pipe != nil || ch.mem != nil
	th.mu.Unlock()
	if made {
		t.Fatal("a local writer's channel got its pipe or memory account before anything used it")
	}
	ready := make(chan struct{}, 2)
	lw.OnReady(func() { ready <- struct{}{} })
	r := th.dial(t, ref, wire.DirRead)
	waitReady(t, ready, "the reader connected")
	if err := lw.WriteFrame(context.Background(), false, []byte("held back")); err != nil {
		t.Fatal(err)
	}
	lw.Close()
	got, ce := readAll(t, r)
	if len(got) != 1 || string(got[0].data) != "held back" || ce == nil || ce.Code != 1000 {
		t.Fatalf("reader got %v, close %v", got, ce)
	}

	ref, lw, _ = th.CreateWithLocalWriter(1)
	lw.Close()
	if p := th.pipeOf(th.channel(ref.ChannelID)); p != nil {
		t.Fatal("Close made a pipe")
	}
	r = th.dial(t, ref, wire.DirRead)
	if got, ce := readAll(t, r); len(got) != 0 || ce == nil || ce.Code != 1000 {
		t.Fatalf("reader of a writer closed early got %v, close %v", got, ce)
	}
	th.waitLen(t, 0)
}

// A local writer retired before it wrote refuses writes without making a
// pipe or memory account.
func TestLocalWriterRetiredRefuses(t *testing.T) {
	th := newTestHub(t, Config{})
	ref, lw, _ := th.CreateWithLocalWriter(1)
	ch := th.channel(ref.ChannelID)
	lw.Retire()
	if err := lw.WriteFrame(context.Background(), false, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("WriteFrame after Retire: %v", err)
	}
	lw.Abort("late")
	th.mu.Lock()
	p, mem := ch.pipe, ch.mem
	th.mu.Unlock()
	if p != retiredPipe || mem != nil {
		t.Fatalf("retired writer's channel: pipe %v, mem %v", p, mem)
	}
	th.waitLen(t, 0)
}
