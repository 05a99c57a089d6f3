package channels

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/wire"
)

// mixedFrames is an interleaving of messages and data of awkward sizes:
// empty, tiny, exactly one SDK frame, and bigger than the pooled buffers.
func mixedFrames() []msg {
	rng := rand.New(rand.NewPCG(1, 2))
	var out []msg
	for i, n := range []int{0, 1, 100, wire.FrameSize, wire.FrameSize + 1, 200 << 10, 3, 0} {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		out = append(out, msg{websocket.BinaryMessage, b}, msg{websocket.TextMessage, []byte(fmt.Sprintf("progress %d", i))})
	}
	return out
}

func sendAll(t testing.TB, c *websocket.Conn, frames []msg) {
	t.Helper()
	for _, f := range frames {
		if err := c.WriteMessage(f.kind, f.data); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
}

func checkFrames(t testing.TB, got, want []msg) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].kind != want[i].kind || !bytes.Equal(got[i].data, want[i].data) {
			t.Fatalf("frame %d: got kind %d len %d, want kind %d len %d", i, got[i].kind, len(got[i].data), want[i].kind, len(want[i].data))
		}
	}
}

func TestOrderWriterFirst(t *testing.T) {
	th := newTestHub(t, Config{})
	res, err := th.Create(0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Writer.ChannelID != res.Reader.ChannelID || res.Writer.AccessKey != res.Reader.AccessKey ||
		res.Writer.Direction != wire.DirWrite || res.Reader.Direction != wire.DirRead {
		t.Fatalf("refs: %+v", res)
	}
	want := mixedFrames()
	w := th.dial(t, res.Writer, wire.DirWrite)
	sendAll(t, w, want) // fits in the default 64-frame buffer: nobody reads yet
	closeWith(t, w, websocket.CloseNormalClosure, "stream_complete")

	r := th.dial(t, res.Reader, wire.DirRead)
	got, ce := readAll(t, r)
	checkFrames(t, got, want)
	if ce.Code != wire.CloseNormal {
		t.Fatalf("reader ended with %d %q, want 1000", ce.Code, ce.Text)
	}
	r.Close()
	th.waitLen(t, 0)
}

func TestOrderReaderFirst(t *testing.T) {
	th := newTestHub(t, Config{})
	res, _ := th.Create(2) // tiny buffer: the writer is held back while frames flow
	r := th.dial(t, res.Reader, wire.DirRead)
	w := th.dial(t, res.Writer, wire.DirWrite)
	want := mixedFrames()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sendAll(t, w, want)
		closeWith(t, w, websocket.CloseNoStatusReceived, "") // Rust SDK style: no status
	}()
	got, ce := readAll(t, r)
	<-done
	checkFrames(t, got, want)
	if ce.Code != wire.CloseNormal {
		t.Fatalf("reader ended with %d %q, want 1000", ce.Code, ce.Text)
	}
	r.Close()
	th.waitLen(t, 0)
}

// TestWriterCloseCodes: a close frame ends the stream cleanly unless its
// code is an error code, which the reader gets as 1011 with the reason.
func TestWriterCloseCodes(t *testing.T) {
	th := newTestHub(t, Config{})
	for _, tc := range []struct {
		code       int
		reason     string
		wantCode   int
		wantReason string
	}{
		{1000, "stream_complete", 1000, ""},
		{1001, "", 1000, ""},
		{4000, "app", 1000, ""},
		{1011, "disk full", 1011, "disk full"},
		{1008, "", 1011, "writer closed with code 1008"},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			res, _ := th.Create(0)
			w := th.dial(t, res.Writer, wire.DirWrite)
			if err := w.WriteMessage(websocket.BinaryMessage, []byte("data")); err != nil {
				t.Fatal(err)
			}
			closeWith(t, w, tc.code, tc.reason)
			r := th.dial(t, res.Reader, wire.DirRead)
			got, ce := readAll(t, r)
			if ce.Code != tc.wantCode || !strings.Contains(ce.Text, tc.wantReason) {
				t.Fatalf("reader ended with %d %q, want %d %q", ce.Code, ce.Text, tc.wantCode, tc.wantReason)
			}
			if tc.wantCode == 1000 && (len(got) != 1 || string(got[0].data) != "data") {
				t.Fatalf("frames: %v", got)
			}
		})
	}
	th.waitLen(t, 0)
}

func TestWriterTCPDrop(t *testing.T) {
	th := newTestHub(t, Config{})
	res, _ := th.Create(0)
	r := th.dial(t, res.Reader, wire.DirRead)
	w := th.dial(t, res.Writer, wire.DirWrite)
	if err := w.WriteMessage(websocket.BinaryMessage, []byte("partial")); err != nil {
		t.Fatal(err)
	}
	if _, b, err := r.ReadMessage(); err != nil || string(b) != "partial" {
		t.Fatalf("first frame: %q %v", b, err)
	}
	w.NetConn().Close() // no close frame: the writer crashed
	expectClose(t, r, wire.CloseInternal, "writer connection lost")
	r.Close()
	th.waitLen(t, 0)
}

// TestWriterFailureDeliversBuffered: frames the engine had read before the
// writer failed still reach the reader, then 1011 with the reason, for
// every kind of writer failure.
func TestWriterFailureDeliversBuffered(t *testing.T) {
	th := newTestHub(t, Config{})
	for _, tc := range []struct {
		name   string
		fail   func(t *testing.T, w *websocket.Conn)
		reason string
	}{
		{"tcp-drop", func(t *testing.T, w *websocket.Conn) { w.NetConn().Close() }, "writer connection lost"},
		{"close-1011", func(t *testing.T, w *websocket.Conn) { closeWith(t, w, 1011, "disk full") }, "disk full"},
		{"protocol-error", func(t *testing.T, w *websocket.Conn) {
			if _, err := w.NetConn().Write(rawFrame(0x83, true, []byte("x"))); err != nil {
				t.Fatal(err)
			}
		}, "writer broke the WebSocket protocol"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, _ := th.Create(0)
			w := th.dial(t, res.Writer, wire.DirWrite)
			frames := mixedFrames()
			sendAll(t, w, frames)
			// Wait until the engine holds them all, so that the failure
			// comes after they reached it.
			pipe := th.channel(res.Writer.ChannelID).pipe
			deadline := time.After(testWait)
			for pipe.Len() < len(frames) {
				select {
				case <-th.changed: // pulsed for every queued frame
				case <-deadline:
					t.Fatalf("engine holds %d of %d frames", pipe.Len(), len(frames))
				}
			}
			tc.fail(t, w)
			th.waitWriterDone(t, res.Writer.ChannelID)
			r := th.dial(t, res.Reader, wire.DirRead)
			got, ce := readAll(t, r)
			checkFrames(t, got, frames)
			if ce.Code != wire.CloseInternal || !strings.Contains(ce.Text, tc.reason) {
				t.Fatalf("reader ended with %d %q, want 1011 %q", ce.Code, ce.Text, tc.reason)
			}
		})
	}
	th.waitLen(t, 0)
}

func TestReaderGoneClosesWriter(t *testing.T) {
	for _, how := range []string{"close-frame", "tcp-drop"} {
		t.Run(how, func(t *testing.T) {
			th := newTestHub(t, Config{})
			res, _ := th.Create(0)
			w := th.dial(t, res.Writer, wire.DirWrite)
			r := th.dial(t, res.Reader, wire.DirRead)
			if err := w.WriteMessage(websocket.BinaryMessage, []byte("x")); err != nil {
				t.Fatal(err)
			}
			if _, _, err := r.ReadMessage(); err != nil {
				t.Fatal(err)
			}
			if how == "close-frame" {
				closeWith(t, r, websocket.CloseNormalClosure, "channel_close")
			} else {
				r.NetConn().Close()
			}
			// The writer is idle, yet hears about it at once.
			expectClose(t, w, wire.CloseInternal, "reader closed")
			w.Close()
			th.waitLen(t, 0)
		})
	}
}

func TestHTTPRefusals(t *testing.T) {
	th := newTestHub(t, Config{})
	res, _ := th.Create(0)
	other, _ := th.Create(0)
	httpURL := "http" + strings.TrimPrefix(th.base, "ws") + "/ws/channels/"
	get := func(t *testing.T, path string) (int, string) {
		t.Helper()
		resp, err := http.Get(httpURL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(body))
	}
	id, key := res.Writer.ChannelID, res.Writer.AccessKey
	for _, tc := range []struct {
		name, path string
		status     int
		body       string
	}{
		{"unknown id", "nope?key=" + key + "&dir=read", 404, "Channel not found"},
		{"wrong key", id + "?key=" + other.Writer.AccessKey + "&dir=read", 404, "Channel not found"},
		{"missing key", id + "?dir=read", 400, "key"},
		{"bad dir", id + "?key=" + key + "&dir=both", 400, "dir"},
		{"missing dir", id + "?key=" + key, 400, "dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := get(t, tc.path)
			if status != tc.status || !strings.Contains(body, tc.body) {
				t.Fatalf("got %d %q, want %d %q", status, body, tc.status, tc.body)
			}
		})
	}
	t.Run("second connection", func(t *testing.T) {
		th.dial(t, res.Writer, wire.DirWrite)
		th.dial(t, res.Reader, wire.DirRead)
		for _, dir := range []string{wire.DirWrite, wire.DirRead} {
			_, resp, err := testDialer.Dial(th.url(res.Reader, dir), nil)
			if err == nil || resp == nil || resp.StatusCode != http.StatusConflict {
				t.Fatalf("second %s: %v %v", dir, resp, err)
			}
			body, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(body), dir+" end") {
				t.Fatalf("409 body %q does not name the %s end", body, dir)
			}
		}
	})
	if th.channel(other.Writer.ChannelID) == nil {
		t.Fatal("refused requests touched another channel")
	}
}

func TestTTLExpiry(t *testing.T) {
	for _, connected := range []string{wire.DirRead, wire.DirWrite} {
		t.Run(connected+" connected", func(t *testing.T) {
			fire := make(chan func(), 1)
			th := newTestHub(t, Config{}, func(h *Hub) {
				h.afterFunc = func(d time.Duration, f func()) func() bool {
					if d != defaultTTL {
						t.Errorf("TTL %v", d)
					}
					fire <- f
					return func() bool { return true }
				}
			})
			res, _ := th.Create(0)
			expire := <-fire
			c := th.dial(t, res.Reader, connected)
			expire() // five minutes later
			never, neverDir := "writer", wire.DirWrite
			if connected == wire.DirWrite {
				never, neverDir = "reader", wire.DirRead
			}
			expectClose(t, c, wire.CloseInternal, "channel expired: the "+never+" never connected")
			th.waitLen(t, 0)
			_, resp, err := testDialer.Dial(th.url(res.Writer, neverDir), nil)
			if err == nil || resp.StatusCode != http.StatusNotFound {
				t.Fatalf("late %s: %v %v", never, resp, err)
			}
		})
	}
	t.Run("both connected", func(t *testing.T) {
		fire := make(chan func(), 1)
		th := newTestHub(t, Config{}, func(h *Hub) {
			h.afterFunc = func(_ time.Duration, f func()) func() bool { fire <- f; return func() bool { return true } }
		})
		res, _ := th.Create(0)
		expire := <-fire
		w := th.dial(t, res.Writer, wire.DirWrite)
		r := th.dial(t, res.Reader, wire.DirRead)
		expire() // too late to matter
		if th.Len() != 1 {
			t.Fatal("a channel with both ends connected expired")
		}
		closeWith(t, w, 1000, "")
		expectClose(t, r, wire.CloseNormal, "")
	})
}

// TestTTLLocalEndSynctest runs the real 5-minute timer on a fake clock.
func TestTTLLocalEndSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(Config{}, nil)
		_, lr, err := h.CreateWithLocalReader(0)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = lr.Next(context.Background())
		var ae *AbortError
		if !errors.As(err, &ae) || !strings.Contains(ae.Reason, "writer never connected") {
			t.Fatalf("Next: %v", err)
		}
		if d := time.Since(start); d != defaultTTL {
			t.Fatalf("expired after %v", d)
		}
		if h.Len() != 0 {
			t.Fatal("expired channel still registered")
		}
		if err := h.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestFrameTooLarge(t *testing.T) {
	th := newTestHub(t, Config{MaxFrameSize: 1000})
	res, _ := th.Create(0)
	r := th.dial(t, res.Reader, wire.DirRead)
	w := th.dial(t, res.Writer, wire.DirWrite)
	if err := w.WriteMessage(websocket.BinaryMessage, make([]byte, 1000)); err != nil { // at the limit: fine
		t.Fatal(err)
	}
	if err := w.WriteMessage(websocket.BinaryMessage, make([]byte, 1001)); err != nil {
		t.Fatal(err)
	}
	expectClose(t, w, websocket.CloseMessageTooBig, "frame exceeds 1000 bytes")
	expectClose(t, r, wire.CloseInternal, "larger than 1000 bytes")
	th.waitLen(t, 0)
}

func TestCreateLimitsAndClamp(t *testing.T) {
	h := NewHub(Config{MaxChannels: 2, MaxBuffer: 100}, nil)
	defer h.Shutdown(context.Background())
	a, err := h.Create(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if got := cap(h.chans[a.Writer.ChannelID].pipe.(*memPipe).q); got != 100 {
		t.Fatalf("buffer clamped to %d, want 100", got)
	}
	b, _ := h.Create(-5)
	if got := cap(h.chans[b.Writer.ChannelID].pipe.(*memPipe).q); got != defaultBuffer {
		t.Fatalf("default buffer %d, want %d", got, defaultBuffer)
	}
	if _, err := h.Create(0); !errors.Is(err, ErrChannelLimit) {
		t.Fatalf("third channel: %v", err)
	}
	if a.Writer.ChannelID == b.Writer.ChannelID || a.Writer.AccessKey == b.Writer.AccessKey || len(a.Writer.AccessKey) != 36 {
		t.Fatalf("ids/keys not unique uuids: %+v %+v", a, b)
	}
}

func TestLocalWriterToSocketReader(t *testing.T) {
	th := newTestHub(t, Config{})
	ref, lw, err := th.CreateWithLocalWriter(4)
	if err != nil {
		t.Fatal(err)
	}
	r := th.dial(t, ref, wire.DirRead)
	ctx := context.Background()
	src := bytes.Repeat([]byte("0123456789abcdef"), 20_000) // 320 000 B
	go func() {
		if err := lw.WriteFrame(ctx, true, []byte(`{"type":"set_status","status_code":200}`)); err != nil {
			t.Error(err)
		}
		if _, err := lw.CopyFrom(ctx, bytes.NewReader(src)); err != nil {
			t.Error(err)
		}
		lw.Close()
	}()
	got, ce := readAll(t, r)
	if ce.Code != wire.CloseNormal || len(got) < 2 || got[0].kind != websocket.TextMessage {
		t.Fatalf("close %v, %d frames", ce, len(got))
	}
	var data []byte
	for _, m := range got[1:] {
		if len(m.data) > wire.FrameSize {
			t.Fatalf("frame of %d bytes", len(m.data))
		}
		data = append(data, m.data...)
	}
	if !bytes.Equal(data, src) {
		t.Fatal("data differs")
	}
	r.Close()
	th.waitLen(t, 0)

	// Abort reaches a socket reader as 1011 with the reason.
	ref, lw, _ = th.CreateWithLocalWriter(0)
	r = th.dial(t, ref, wire.DirRead)
	lw.Abort("upstream request cancelled")
	expectClose(t, r, wire.CloseInternal, "upstream request cancelled")
	if err := lw.WriteFrame(ctx, false, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after abort: %v", err)
	}
}

func TestSocketWriterToLocalReader(t *testing.T) {
	th := newTestHub(t, Config{})
	ref, lr, err := th.CreateWithLocalReader(0)
	if err != nil {
		t.Fatal(err)
	}
	w := th.dial(t, ref, wire.DirWrite)
	want := mixedFrames()
	go func() {
		sendAll(t, w, want)
		closeWith(t, w, 1000, "")
	}()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	var got []msg
	for {
		f, err := lr.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		kind := websocket.BinaryMessage
		if f.Text {
			kind = websocket.TextMessage
		}
		got = append(got, msg{kind, bytes.Clone(f.Data)})
		f.Release()
	}
	checkFrames(t, got, want)
	th.waitLen(t, 0)

	// A writer that drops yields ErrAborted, not io.EOF.
	ref, lr, _ = th.CreateWithLocalReader(0)
	w = th.dial(t, ref, wire.DirWrite)
	w.NetConn().Close()
	if _, err := lr.Next(ctx); !errors.Is(err, ErrAborted) {
		t.Fatalf("Next after writer drop: %v", err)
	}

	// Closing the local reader closes the writer socket with 1011.
	ref, lr, _ = th.CreateWithLocalReader(0)
	w = th.dial(t, ref, wire.DirWrite)
	lr.Close()
	expectClose(t, w, wire.CloseInternal, "reader closed")
	th.waitLen(t, 0)
}

func TestShutdown(t *testing.T) {
	th := newTestHub(t, Config{})
	a, _ := th.Create(0)
	r := th.dial(t, a.Reader, wire.DirRead)
	b, _ := th.Create(0)
	w := th.dial(t, b.Writer, wire.DirWrite)
	_, lr, _ := th.CreateWithLocalReader(0)
	rdone, wdone := make(chan struct{}), make(chan struct{})
	go func() { defer close(rdone); expectClose(t, r, wire.CloseInternal, "engine shutting down") }()
	go func() { defer close(wdone); expectClose(t, w, wire.CloseGoingAway, "engine shutting down") }()

	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := th.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	<-rdone
	<-wdone
	if _, err := lr.Next(ctx); !errors.Is(err, ErrAborted) {
		t.Fatalf("local reader: %v", err)
	}
	if th.Len() != 0 {
		t.Fatalf("Len %d after shutdown", th.Len())
	}
	if _, err := th.Create(0); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("Create after shutdown: %v", err)
	}
	_, resp, err := testDialer.Dial(th.url(a.Reader, wire.DirRead), nil)
	if err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after shutdown: %v", err)
	}
}

// TestBackpressureStalledReader: a reader that does not read holds the
// writer back, and the engine holds at most buffer frames meanwhile. 32 MiB
// by default (SLUICE_BIG_TESTS=1: 1 GiB, slow under -race because the
// gorilla test clients mask and copy in instrumented code); the default
// suite pushes 1 GiB through the built engine in
// interop.TestChannelMemoryStalledReader, which reports the engine
// process's memory.
func TestBackpressureStalledReader(t *testing.T) {
	const buffer = 8
	total := 32 << 20
	if os.Getenv("SLUICE_BIG_TESTS") != "" {
		total = 1 << 30
	}
	blocked := make(chan struct{}, 1)
	th := newTestHub(t, Config{}, func(h *Hub) {
		h.onSendBlocked = func() {
			select {
			case blocked <- struct{}{}:
			default:
			}
		}
	})
	res, _ := th.Create(buffer)
	r := th.dial(t, res.Reader, wire.DirRead) // connected, but not reading yet
	w := th.dial(t, res.Writer, wire.DirWrite)
	pipe := th.channel(res.Writer.ChannelID).pipe
	before := heap()

	block := make([]byte, 1<<20)
	for i := range block {
		block[i] = byte(i * 7)
	}
	var written atomic.Int64
	wantSum := make(chan [32]byte, 1)
	go func() {
		h := sha256.New()
		for off := 0; off < total; off += wire.FrameSize {
			frame := block[(off/wire.FrameSize*4099)%(len(block)-wire.FrameSize):][:wire.FrameSize]
			if err := w.WriteMessage(websocket.BinaryMessage, frame); err != nil {
				t.Error(err)
				return
			}
			h.Write(frame)
			written.Add(wire.FrameSize)
		}
		closeWith(t, w, 1000, "")
		wantSum <- [32]byte(h.Sum(nil))
	}()

	select {
	case <-blocked:
	case <-time.After(testWait):
		t.Fatal("the writer never met backpressure")
	}
	stalled := heap()
	if n := pipe.Len(); n > buffer {
		t.Fatalf("engine holds %d frames, buffer %d", n, buffer)
	}
	if written.Load() >= int64(total) {
		t.Fatal("writer finished although nobody read")
	}
	t.Logf("stalled: writer got %d MiB into sockets and the hub's %d-frame pipe", written.Load()>>20, buffer)

	h := sha256.New()
	var got int64
	peak := stalled
	_ = r.SetReadDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, wire.FrameSize)
	for frames := 0; ; frames++ {
		_, rd, err := r.NextReader()
		if err != nil {
			if code, _, _ := closeCode(err); code != wire.CloseNormal {
				t.Fatalf("reader ended with %v", err)
			}
			break
		}
		n, _ := io.ReadFull(rd, buf)
		h.Write(buf[:n])
		got += int64(n)
		if frames%512 == 0 {
			peak = max(peak, heap())
			if n := pipe.Len(); n > buffer {
				t.Fatalf("engine holds %d frames, buffer %d", n, buffer)
			}
		}
	}
	if got != int64(total) || [32]byte(h.Sum(nil)) != <-wantSum {
		t.Fatalf("got %d bytes, want %d, or the hash differs", got, total)
	}
	after := heap()
	t.Logf("heap: before %d KiB, stalled %d KiB, peak while %d MiB flowed %d KiB, after %d KiB",
		before>>10, stalled>>10, total>>20, peak>>10, after>>10)
	if limit := before + 32<<20; peak > limit {
		t.Fatalf("heap peaked at %d MiB for a %d-frame channel", peak>>20, buffer)
	}
}

func closeCode(err error) (int, string, bool) {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code, ce.Text, true
	}
	return 0, "", false
}

func heap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestManyShortStreams: 10,000 streams, each written and closed at once,
// all arrive complete and all leave the registry.
func TestManyShortStreams(t *testing.T) {
	n := 10_000
	if testing.Short() {
		n = 1_000
	}
	th := newTestHub(t, Config{})
	const workers = 8
	var wg sync.WaitGroup
	var failed atomic.Bool
	next := make(chan int)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := shortStream(th, i); err != nil {
					if !failed.Swap(true) {
						t.Errorf("stream %d: %v", i, err)
					}
					return
				}
			}
		}()
	}
	for i := 0; i < n && !failed.Load(); i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	t.Logf("%d streams in %v", n, time.Since(start))
	th.waitLen(t, 0)
}

// smallDialer keeps client buffers at gorilla's 4 KiB default: short
// streams do not need more, and the race detector makes big allocations dear.
var smallDialer = &websocket.Dialer{HandshakeTimeout: testWait}

func shortStream(th *testHub, i int) error {
	res, err := th.Create(0)
	if err != nil {
		return err
	}
	payload := []byte(fmt.Sprintf("stream %d payload", i))
	w, _, err := smallDialer.Dial(th.url(res.Writer, wire.DirWrite), nil)
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.WriteMessage(websocket.BinaryMessage, payload); err != nil {
		return err
	}
	if err := w.WriteMessage(websocket.TextMessage, []byte("done")); err != nil {
		return err
	}
	if err := w.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "stream_complete"), time.Now().Add(testWait)); err != nil {
		return err
	}
	r, _, err := smallDialer.Dial(th.url(res.Reader, wire.DirRead), nil)
	if err != nil {
		return err
	}
	defer r.Close()
	_ = r.SetReadDeadline(time.Now().Add(testWait))
	if k, b, err := r.ReadMessage(); err != nil || k != websocket.BinaryMessage || !bytes.Equal(b, payload) {
		return fmt.Errorf("data frame: %d %q %v", k, b, err)
	}
	if k, b, err := r.ReadMessage(); err != nil || k != websocket.TextMessage || string(b) != "done" {
		return fmt.Errorf("text frame: %d %q %v", k, b, err)
	}
	if _, _, err := r.ReadMessage(); !websocket.IsCloseError(err, 1000) {
		return fmt.Errorf("end: %v", err)
	}
	_ = w.SetReadDeadline(time.Now().Add(testWait))
	if _, _, err := w.ReadMessage(); !websocket.IsCloseError(err, 1000) { // the engine's close reply
		return fmt.Errorf("writer close reply: %v", err)
	}
	return nil
}

// TestRetire: a local end's channel whose remote end never connected leaves
// at once; one whose remote end connected is left alone.
func TestRetire(t *testing.T) {
	th := newTestHub(t, Config{})
	ctx := context.Background()

	ref, lw, _ := th.CreateWithLocalWriter(1)
	if err := lw.WriteFrame(ctx, false, []byte("a")); err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() { blocked <- lw.WriteFrame(ctx, false, []byte("b")) }() // the pipe is full
	lw.Retire()
	if err := <-blocked; err == nil {
		t.Fatal("a WriteFrame blocked on a retired channel succeeded")
	}
	if th.Len() != 0 {
		t.Fatal("retired channel still registered")
	}
	if _, resp, err := testDialer.Dial(th.url(ref, wire.DirRead), nil); err == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("late reader: %v", err)
	}
	lw.Close() // harmless

	wref, lr, _ := th.CreateWithLocalReader(0)
	lr.Retire()
	if th.Len() != 0 {
		t.Fatal("retired channel still registered")
	}
	if _, resp, err := testDialer.Dial(th.url(wref, wire.DirWrite), nil); err == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("late writer: %v", err)
	}

	// Remote end connected: Retire changes nothing.
	ref, lw, _ = th.CreateWithLocalWriter(0)
	r := th.dial(t, ref, wire.DirRead) // claimed before the handshake answer
	lw.Retire()
	if err := lw.WriteFrame(ctx, false, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	lw.Close()
	got, ce := readAll(t, r)
	if ce.Code != wire.CloseNormal || len(got) != 1 || string(got[0].data) != "still here" {
		t.Fatalf("stream after Retire: %v %v", got, ce)
	}
	r.Close()
	th.waitLen(t, 0)
}
