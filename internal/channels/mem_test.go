package channels

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"runtime"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/wire"
)

// reserveAsync runs m.reserve on a goroutine of its own (as a writer
// would) and returns its outcome; stop ends the wait.
func reserveAsync(m *chanMem, n, held int64, stop chan struct{}) <-chan bool {
	done := make(chan bool, 1)
	go func() { done <- m.reserve(n, held, stop, nil) }()
	return done
}

// waitSignal waits for one pulse of c, failing the test after testWait.
func waitSignal(t testing.TB, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(testWait):
		t.Fatalf("%s: timed out", what)
	}
}

// waitUntil waits for pulses of c until cond holds, failing the test after
// testWait.
func waitUntil(t testing.TB, c <-chan struct{}, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(testWait)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-c:
		case <-deadline.C:
			t.Fatalf("%s: timed out", what)
		}
	}
}

func expectGranted(t testing.TB, done <-chan bool, what string) {
	t.Helper()
	select {
	case ok := <-done:
		if !ok {
			t.Fatalf("%s: reservation stopped", what)
		}
	case <-time.After(testWait):
		t.Fatalf("%s: reservation never granted", what)
	}
}

func expectWaiting(t testing.TB, done <-chan bool, waited <-chan struct{}, what string) {
	t.Helper()
	waitSignal(t, waited, what+": no wait")
	select {
	case <-done:
		t.Fatalf("%s: granted although the bounds are spent", what)
	default:
	}
}

// newWaitBudget returns a budget whose waits pulse the returned channel.
func newWaitBudget(max int64) (*budget, chan struct{}) {
	g := newBudget(max)
	waited := make(chan struct{}, 16)
	g.onWait = func() { waited <- struct{}{} }
	return g, waited
}

// TestMemChannelBound: a channel holds at most its byte bound, except one
// frame of any size when it holds nothing else; a waiting writer goes on
// when its reader releases a frame, or stops when told to.
func TestMemChannelBound(t *testing.T) {
	g, waited := newWaitBudget(1 << 30)
	m := newChanMem(g, 3*bufCap)
	for range 3 {
		if !m.reserve(bufCap, 0, nil, nil) {
			t.Fatal("reserve within the bound failed")
		}
	}
	done := reserveAsync(m, bufCap, 0, nil)
	expectWaiting(t, done, waited, "fourth frame")
	m.release(bufCap)
	expectGranted(t, done, "fourth frame after a release")

	for range 3 {
		m.release(bufCap)
	}
	if m.used.Load() != 0 || g.Used() != 0 {
		t.Fatalf("after every release: channel %d, budget %d bytes", m.used.Load(), g.Used())
	}

	// Bigger than the bound: passes alone, and then holds the channel.
	if !m.reserve(16<<20, 0, nil, nil) {
		t.Fatal("a frame bigger than the bound did not pass an empty channel")
	}
	done = reserveAsync(m, bufCap, 0, nil)
	expectWaiting(t, done, waited, "a frame behind a big one")
	m.release(16 << 20)
	expectGranted(t, done, "a frame behind a big one, once released")
	m.release(bufCap)

	// A message in progress may grow past the bound while it is alone.
	if !m.reserve(bufCap, 0, nil, nil) || !m.reserve(10<<20, bufCap, nil, nil) {
		t.Fatal("a lone message could not grow past the channel bound")
	}
	m.endMessage()
	m.release(bufCap + 10<<20)

	// A stopped wait gives nothing.
	if !m.reserve(3*bufCap, 0, nil, nil) {
		t.Fatal("reserve within the bound failed")
	}
	stop := make(chan struct{})
	done = reserveAsync(m, bufCap, 0, stop)
	expectWaiting(t, done, waited, "stoppable wait")
	close(stop)
	if ok := <-done; ok {
		t.Fatal("a stopped reservation was granted")
	}
	m.release(3 * bufCap)
	if m.used.Load() != 0 || g.Used() != 0 {
		t.Fatalf("after a stopped wait: channel %d, budget %d bytes", m.used.Load(), g.Used())
	}
}

// TestMemBudget: the hub's budget holds big frames back across channels,
// but a channel that holds nothing can always take one pooled-size frame,
// so that it keeps moving however many others are stalled.
func TestMemBudget(t *testing.T) {
	const max = 1 << 20
	g, waited := newWaitBudget(max)
	a, b, c := newChanMem(g, 4<<20), newChanMem(g, 4<<20), newChanMem(g, 4<<20)
	if !a.reserve(max, 0, nil, nil) {
		t.Fatal("a frame of the whole budget did not pass")
	}
	bigB := reserveAsync(b, 512<<10, 0, nil)
	expectWaiting(t, bigB, waited, "a big frame with the budget spent")
	if !c.reserve(bufCap, 0, nil, nil) {
		t.Fatal("a pooled-size frame of an empty channel did not pass the spent budget")
	}
	second := reserveAsync(c, bufCap, 0, nil)
	expectWaiting(t, second, waited, "a second small frame with the budget spent")
	c.release(bufCap) // the reader took the first one
	expectGranted(t, second, "the second small frame once the first is released")
	a.release(max)
	expectGranted(t, bigB, "the big frame once the budget came back")
	b.release(512 << 10)
	c.release(bufCap)
	if g.Used() != 0 {
		t.Fatalf("budget: %d bytes charged after every release", g.Used())
	}
}

// TestMemOverdraft: two messages arriving in fragments, each half read,
// together hold the whole budget and each needs more. One of them (the
// overdraft holder) may go past the budget, so that they do not wait for
// each other forever; the other waits until memory comes back.
func TestMemOverdraft(t *testing.T) {
	const max = 1 << 20
	g, waited := newWaitBudget(max)
	a, b := newChanMem(g, 4<<20), newChanMem(g, 4<<20)
	if !a.reserve(bufCap, 0, nil, nil) || !a.reserve(max/2-bufCap, bufCap, nil, nil) {
		t.Fatal("a's first half")
	}
	if !b.reserve(bufCap, 0, nil, nil) || !b.reserve(max/2-bufCap, bufCap, nil, nil) {
		t.Fatal("b's first half")
	}
	if g.Used() != max {
		t.Fatalf("budget: %d bytes charged, want %d", g.Used(), max)
	}
	// a takes the overdraft; b must wait (the budget is overdrawn now).
	if !a.reserve(max/2, max/2, nil, nil) {
		t.Fatal("the half-read message did not get the overdraft")
	}
	bMore := reserveAsync(b, max/2, max/2, nil)
	expectWaiting(t, bMore, waited, "a second message wanting the overdraft")
	a.endMessage() // a's message is complete: the overdraft is free again...
	waitSignal(t, waited, "b woken by the freed overdraft, waiting again")
	select {
	case <-bMore:
		t.Fatal("b went past the budget while it was still overdrawn")
	default:
	}
	a.release(max) // ...and a's reader took the message
	expectGranted(t, bMore, "b once a's message was released")
	b.endMessage()
	b.release(max)
	if g.Used() != 0 || g.over.Load() != nil {
		t.Fatalf("budget: %d bytes charged, overdraft %p, after every release", g.Used(), g.over.Load())
	}
}

// TestMemReserveAllocs: reserving and releasing a frame allocates nothing.
func TestMemReserveAllocs(t *testing.T) {
	g := newBudget(1 << 30)
	m := newChanMem(g, 4<<20)
	if n := testing.AllocsPerRun(1000, func() {
		m.reserve(bufCap, 0, nil, nil)
		m.endMessage()
		m.release(bufCap)
	}); n != 0 {
		t.Fatalf("%v allocations per frame", n)
	}
}

// TestPoolKeepsOnlyPooledSize: only buffers of exactly bufCap go back to
// the pool.
func TestPoolKeepsOnlyPooledSize(t *testing.T) {
	big := make([]byte, 0, 2*bufCap)
	putBuf(&big) // must not be pooled
	for range 100 {
		if b := getBuf(); cap(*b) != bufCap {
			t.Fatalf("the pool handed out a buffer of %d bytes", cap(*b))
		}
	}
	f := Frame{Data: bigBuf(1 << 20)[:10], big: true}
	f.Release()
	f.Release() // twice is harmless
	if f.Data != nil || f.big {
		t.Fatalf("released frame: %+v", f)
	}
}

// TestHubByteBound: a channel with a large frame buffer and no reader yet
// holds at most MaxBufferBytes; every frame arrives once the
// reader reads, and the budget is back to zero at the end.
func TestHubByteBound(t *testing.T) {
	waited := make(chan struct{}, 1)
	th := newTestHub(t, Config{MaxBufferBytes: 4 * bufCap}, func(h *Hub) {
		h.budget.onWait = func() {
			select {
			case waited <- struct{}{}:
			default:
			}
		}
	})
	res, _ := th.Create(1024)
	w := th.dial(t, res.Writer, wire.DirWrite) // the reader connects later
	ch := th.channel(res.Writer.ChannelID)
	const frames = 64
	payload := make([]byte, wire.FrameSize)
	for i := range payload {
		payload[i] = byte(i * 3)
	}
	wrote := make(chan error, 1)
	go func() {
		for range frames {
			if err := w.WriteMessage(websocket.BinaryMessage, payload); err != nil {
				wrote <- err
				return
			}
		}
		closeWith(t, w, websocket.CloseNormalClosure, "")
		wrote <- nil
	}()
	waitUntil(t, waited, "the writer held back by the byte bound", func() bool { return ch.mem.waiting.Load() })
	if used := ch.mem.used.Load(); used > 4*bufCap {
		t.Fatalf("the channel holds %d bytes, bound %d", used, 4*bufCap)
	}
	if n := ch.pipe.Len(); n > 4 {
		t.Fatalf("the channel holds %d frames of 64 KiB under a %d-byte bound", n, 4*bufCap)
	}
	r := th.dial(t, res.Reader, wire.DirRead)
	got, ce := readAll(t, r)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if ce.Code != wire.CloseNormal || len(got) != frames {
		t.Fatalf("the reader got %d frames, then %d %q", len(got), ce.Code, ce.Text)
	}
	for i, m := range got {
		if !bytes.Equal(m.data, payload) {
			t.Fatalf("frame %d differs", i)
		}
	}
	th.waitLen(t, 0)
	if n := th.BufferedBytes(); n != 0 {
		t.Fatalf("%d bytes still charged after the stream", n)
	}
}

// TestHubBigFramesAndBudget: frames bigger than a channel's byte bound pass
// one at a time, sent whole or in small fragments; a hub budget spent by a
// channel whose reader does not come holds back another channel's big
// frames but not a third channel's 64 KiB frames; when that reader comes
// and leaves, its bytes come back.
func TestHubBigFramesAndBudget(t *testing.T) {
	const big = 1 << 20
	waited := make(chan struct{}, 1)
	th := newTestHub(t, Config{MaxBufferBytes: 2 * bufCap, MaxTotalBufferBytes: 3 * big / 2}, func(h *Hub) {
		h.budget.onWait = func() {
			select {
			case waited <- struct{}{}:
			default:
			}
		}
	})
	payload := make([]byte, big)
	for i := range payload {
		payload[i] = byte(i>>8 + i)
	}
	whole := &websocket.Dialer{WriteBufferSize: big + 16, HandshakeTimeout: testWait}
	fragmented := &websocket.Dialer{WriteBufferSize: 4096, HandshakeTimeout: testWait}
	dial := func(ref wire.ChannelRef) *websocket.Conn {
		t.Helper()
		w, _, err := whole.Dial(th.url(ref, wire.DirWrite), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		return w
	}

	// Big frames through a channel bounded far below them, whole and in
	// 4 KiB fragments.
	for _, d := range []*websocket.Dialer{whole, fragmented} {
		res, _ := th.Create(0)
		r := th.dial(t, res.Reader, wire.DirRead)
		w, _, err := d.Dial(th.url(res.Writer, wire.DirWrite), nil)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for range 3 {
				if err := w.WriteMessage(websocket.BinaryMessage, payload); err != nil {
					return
				}
			}
			_ = w.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(testWait))
		}()
		got, ce := readAll(t, r)
		w.Close()
		if ce.Code != wire.CloseNormal || len(got) != 3 {
			t.Fatalf("%d frames of 1 MiB arrived, then %d %q", len(got), ce.Code, ce.Text)
		}
		for _, m := range got {
			if !bytes.Equal(m.data, payload) {
				t.Fatal("a big frame differs")
			}
		}
	}
	th.waitLen(t, 0)

	// A channel whose reader does not come spends the budget.
	stalledRes, _ := th.Create(0)
	stalledW := dial(stalledRes.Writer)
	go func() {
		for range 4 {
			if stalledW.WriteMessage(websocket.BinaryMessage, payload) != nil {
				return
			}
		}
	}()
	stalled := th.channel(stalledRes.Writer.ChannelID)
	waitUntil(t, waited, "the stalled writer held back", func() bool {
		return stalled.mem.used.Load() >= big && stalled.mem.waiting.Load()
	})
	// Another channel's big frame waits for the budget.
	bigRes, _ := th.Create(0)
	bigW := dial(bigRes.Writer)
	bigSent := make(chan error, 1)
	go func() { bigSent <- bigW.WriteMessage(websocket.BinaryMessage, payload) }()
	bigCh := th.channel(bigRes.Writer.ChannelID)
	waitUntil(t, waited, "a big frame held back by the spent budget", func() bool {
		return bigCh.mem.waiting.Load()
	})
	if used := th.BufferedBytes(); used > 3*big/2 {
		t.Fatalf("%d bytes charged, budget %d", used, 3*big/2)
	}

	// 64 KiB frames still flow.
	smallRes, _ := th.Create(0)
	smallR := th.dial(t, smallRes.Reader, wire.DirRead)
	smallW := th.dial(t, smallRes.Writer, wire.DirWrite)
	go func() {
		for off := 0; off < big; off += wire.FrameSize {
			if smallW.WriteMessage(websocket.BinaryMessage, payload[off:off+wire.FrameSize]) != nil {
				return
			}
		}
		_ = smallW.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(testWait))
	}()
	got, ce := readAll(t, smallR)
	if ce.Code != wire.CloseNormal || len(got) != big/wire.FrameSize {
		t.Fatalf("small frames with the budget spent: %d arrived, then %d %q", len(got), ce.Code, ce.Text)
	}

	// The stalled reader comes and leaves at once: the big frame goes
	// through.
	th.dial(t, stalledRes.Reader, wire.DirRead).Close()
	bigR := th.dial(t, bigRes.Reader, wire.DirRead)
	_ = bigR.SetReadDeadline(time.Now().Add(testWait))
	_, data, err := bigR.ReadMessage()
	if err != nil || !bytes.Equal(data, payload) {
		t.Fatalf("the held-back big frame: %d bytes, %v", len(data), err)
	}
	if err := <-bigSent; err != nil {
		t.Fatal(err)
	}
	stalledW.Close()
	bigR.Close()
	th.waitLen(t, 0)
	if n := th.BufferedBytes(); n != 0 {
		t.Fatalf("%d bytes still charged after every channel ended", n)
	}
}

// TestLocalWriterWaitsForMemory: an in-process writer (HTTP request
// bodies) is held to the same bounds, and a blocked write ends with its
// context.
func TestLocalWriterWaitsForMemory(t *testing.T) {
	waited := make(chan struct{}, 1)
	th := newTestHub(t, Config{MaxBufferBytes: 2 * bufCap}, func(h *Hub) {
		h.budget.onWait = func() {
			select {
			case waited <- struct{}{}:
			default:
			}
		}
	})
	ref, lw, err := th.CreateWithLocalWriter(1024)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	big := bytes.Repeat([]byte{7}, 3*bufCap)
	if err := lw.WriteFrame(ctx, false, big); err != nil { // alone: passes
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() { blocked <- lw.WriteFrame(ctx, false, []byte("next")) }()
	waitSignal(t, waited, "a local write behind a big frame")
	cancel()
	if err := <-blocked; !errors.Is(err, context.Canceled) {
		t.Fatalf("a blocked local write after its context ended: %v", err)
	}
	r := th.dial(t, ref, wire.DirRead) // the reader comes: the rest flows
	n, err := lw.CopyFrom(context.Background(), io.LimitReader(bytes.NewReader(bytes.Repeat([]byte{1}, 4*wire.FrameSize)), 4*wire.FrameSize))
	if err == nil {
		lw.Close()
	}
	_ = n
	got, ce := readAll(t, r)
	if ce.Code != wire.CloseNormal || len(got) != 5 || len(got[0].data) != 3*bufCap {
		t.Fatalf("reader: %d frames, then %d %q (copy: %d bytes, %v)", len(got), ce.Code, ce.Text, n, err)
	}
	th.waitLen(t, 0)
	if n := th.BufferedBytes(); n != 0 {
		t.Fatalf("%d bytes still charged", n)
	}
}

// TestOwnerQuota: channels created for an owner count against its quota
// while open; the engine-wide limit applies to all, local ends included;
// ReleaseOwner removes the owner's channels that no end connected to and
// stops counting the others.
func TestOwnerQuota(t *testing.T) {
	th := newTestHub(t, Config{MaxPerOwner: 3, MaxChannels: 6})
	var a []wire.CreateChannelResult
	for range 3 {
		res, err := th.CreateFor("a", 0)
		if err != nil {
			t.Fatal(err)
		}
		a = append(a, res)
	}
	if _, err := th.CreateFor("a", 0); !errors.Is(err, ErrOwnerLimit) {
		t.Fatalf("fourth channel of a: %v, want ErrOwnerLimit", err)
	}
	for range 2 {
		if _, err := th.CreateFor("b", 0); err != nil {
			t.Fatalf("b while a is at its quota: %v", err)
		}
	}
	if _, _, err := th.CreateWithLocalReader(0); err != nil {
		t.Fatalf("a local end while a is at its quota: %v", err)
	}
	if _, err := th.CreateFor("b", 0); !errors.Is(err, ErrChannelLimit) {
		t.Fatalf("b at the engine-wide limit: %v, want ErrChannelLimit", err)
	}
	if _, _, err := th.CreateWithLocalWriter(0); !errors.Is(err, ErrChannelLimit) {
		t.Fatalf("a local end at the engine-wide limit: %v, want ErrChannelLimit", err)
	}

	// A channel of a's whose reader connected, and one that finishes.
	kept := th.dial(t, a[0].Reader, wire.DirRead)
	r1 := th.dial(t, a[1].Reader, wire.DirRead)
	w1 := th.dial(t, a[1].Writer, wire.DirWrite)
	closeWith(t, w1, websocket.CloseNormalClosure, "")
	expectClose(t, r1, wire.CloseNormal, "")
	r1.Close()
	th.waitLen(t, 5)
	if n := th.Owned("a"); n != 2 {
		t.Fatalf("a owns %d open channels after one finished, want 2", n)
	}

	if n := th.ReleaseOwner("a"); n != 1 {
		t.Fatalf("ReleaseOwner removed %d channels, want 1 (the one nobody connected to)", n)
	}
	if n := th.Owned("a"); n != 0 || th.Len() != 4 {
		t.Fatalf("after ReleaseOwner: a owns %d, hub holds %d; want 0 and 4", n, th.Len())
	}
	if _, resp, err := testDialer.Dial(th.url(a[2].Writer, wire.DirWrite), nil); err == nil || resp == nil || resp.StatusCode != 404 {
		t.Fatalf("dial a released channel: %v; want 404", err)
	}
	// The connected one still works, without its creator.
	w0 := th.dial(t, a[0].Writer, wire.DirWrite)
	if err := w0.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	closeWith(t, w0, websocket.CloseNormalClosure, "")
	got, ce := readAll(t, kept)
	if len(got) != 1 || string(got[0].data) != "still here" || ce.Code != wire.CloseNormal {
		t.Fatalf("the kept channel: %v, %d %q", got, ce.Code, ce.Text)
	}
	kept.Close()
	// a's quota is free again (up to the engine-wide limit).
	for range 2 {
		if _, err := th.CreateFor("a", 0); err != nil {
			t.Fatalf("a after its channels were released: %v", err)
		}
	}
}

// TestOwnerQuotaExpiry: an expired channel no longer counts against its
// owner.
func TestOwnerQuotaExpiry(t *testing.T) {
	fire := make(chan func(), 1)
	th := newTestHub(t, Config{MaxPerOwner: 1}, func(h *Hub) {
		h.afterFunc = func(_ time.Duration, f func()) func() bool { fire <- f; return func() bool { return true } }
	})
	if _, err := th.CreateFor("a", 0); err != nil {
		t.Fatal(err)
	}
	expire := <-fire
	if _, err := th.CreateFor("a", 0); !errors.Is(err, ErrOwnerLimit) {
		t.Fatalf("second channel of a: %v, want ErrOwnerLimit", err)
	}
	expire()
	if _, err := th.CreateFor("a", 0); err != nil {
		t.Fatalf("a after its channel expired: %v", err)
	}
	<-fire
}

// TestFrameAllocs: forwarding a 64 KiB frame costs the hub no allocation
// (prebuilt client frames, reader bytes drained unparsed: the benchmark's
// "prebuilt" clients, which allocate nothing themselves).
func TestFrameAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items at random")
	}
	th := newTestHub(t, Config{})
	res, _ := th.Create(0)
	r := th.dial(t, res.Reader, wire.DirRead)
	w := th.dial(t, res.Writer, wire.DirWrite)
	frame := clientFrame(make([]byte, benchFrame))
	send := func(n int) error {
		for range n {
			if _, err := w.NetConn().Write(frame); err != nil {
				return err
			}
		}
		return nil
	}
	run := func(n int) {
		werr := make(chan error, 1)
		go func() { werr <- send(n) }()
		if err := drainConn(r.NetConn(), int64(n)*(benchFrame+10)); err != nil {
			t.Fatal(err)
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
	}
	run(64) // warm up: pools, goroutines, buffers
	// Mallocs counts the whole process (runtime, netpoller, the testing
	// package), which on a loaded machine adds a few dozen allocations to a
	// run now and then. An allocation the hub makes per frame shows in every
	// run, so the best of three runs is what is bounded.
	const frames = 2048
	best := math.Inf(1)
	for range 3 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		run(frames)
		runtime.ReadMemStats(&after)
		best = min(best, float64(after.Mallocs-before.Mallocs)/frames)
	}
	if best > 0.05 {
		t.Fatalf("%.3f allocations per forwarded frame (best of 3 runs)", best)
	}
}
