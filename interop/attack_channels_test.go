package interop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/wire"
)

// Attacks on channels (issue 9, defects 4 and 7): a writer that floods big
// frames into a channel whose reader never reads, and a worker that creates
// channels until it is refused.

const chAtkBigFrame = 16 << 20 // the engine's default max_frame_size

// chAtkDial connects one end of a channel with a plain gorilla client,
// closed when the test ends.
func chAtkDial(t testing.TB, e *engineProc, ref sluice.ChannelRef, dir string) *websocket.Conn {
	t.Helper()
	u := e.URL + "/ws/channels/" + url.PathEscape(ref.ChannelID) + "?key=" + url.QueryEscape(ref.AccessKey) + "&dir=" + dir
	d := websocket.Dialer{HandshakeTimeout: startTimeout}
	ws, resp, err := d.Dial(u, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial the %s end: %v (HTTP %d)", dir, err, status)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// chAtkFrame is one unfragmented, masked binary frame of n bytes (as a
// client sends it); its payload, unmasked, is chAtkPattern.
func chAtkFrame(n int) []byte {
	key := [4]byte{0x5a, 0x17, 0xc3, 0x81}
	f := []byte{0x82, 0x80 | 127}
	f = binary.BigEndian.AppendUint64(f, uint64(n))
	f = append(f, key[:]...)
	start := len(f)
	f = append(f, make([]byte, n)...)
	for i := range n {
		f[start+i] = chAtkPattern(i) ^ key[i%4]
	}
	return f
}

func chAtkPattern(i int) byte { return byte(i*31 + i>>12) }

// chAtkFlood writes frames copies of frame (a raw frame from chAtkFrame)
// on ws, or, with frame nil, frames messages of chAtkBigFrame bytes
// through gorilla's writer, which sends each in 4 KiB fragments. It counts
// the frames the kernel took and reports the end on done.
func chAtkFlood(ws *websocket.Conn, frame []byte, frames int) (sent *atomic.Int64, done chan error) {
	sent, done = new(atomic.Int64), make(chan error, 1)
	var payload []byte
	if frame == nil {
		payload = make([]byte, chAtkBigFrame)
		for i := range payload {
			payload[i] = chAtkPattern(i)
		}
	}
	go func() {
		for range frames {
			var err error
			if frame != nil {
				_, err = ws.NetConn().Write(frame)
			} else {
				err = ws.WriteMessage(websocket.BinaryMessage, payload)
			}
			if err != nil {
				done <- err
				return
			}
			sent.Add(1)
		}
		done <- nil
	}()
	return sent, done
}

// chAtkWaitStall returns once no frame has gone out for quiet (the writer
// is held back); it fails the test if the writer got every frame out.
func chAtkWaitStall(ctx context.Context, t testing.TB, what string, sent *atomic.Int64, done chan error, frames int) {
	t.Helper()
	const quiet = 500 * time.Millisecond
	last, since := int64(-1), time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for time.Since(since) < quiet {
		select {
		case err := <-done:
			t.Fatalf("%s: the engine took all %d frames of %d MiB (%v) although nobody reads them", what, frames, chAtkBigFrame>>20, err)
		case <-ctx.Done():
			t.Fatalf("%s: the writer was never held back", what)
		case <-tick.C:
		}
		if n := sent.Load(); n != last {
			last, since = n, time.Now()
		}
	}
	t.Logf("%s: held back after %d of %d frames", what, last, frames)
}

// chAtkStream sends size bytes through a fresh channel, Go SDK writer to Go
// SDK reader, and checks them; it fails the test if that takes longer than
// within.
func chAtkStream(ctx context.Context, t testing.TB, c *sluice.Client, size int, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	ch, err := c.CreateChannel(ctx)
	if err != nil {
		t.Fatalf("another channel: %v", err)
	}
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	want := sha256.Sum256(data)
	wrote := make(chan error, 1)
	go func() {
		if _, err := ch.Writer.Write(data); err != nil {
			wrote <- err
			return
		}
		wrote <- ch.Writer.Close()
	}()
	got := make(chan []byte, 1)
	go func() {
		b, _ := ch.Reader.ReadAll()
		got <- b
	}()
	select {
	case b := <-got:
		if err := <-wrote; err != nil {
			t.Fatalf("another channel's writer: %v", err)
		}
		if sha256.Sum256(b) != want {
			t.Fatalf("another channel delivered %d bytes, not the %d written", len(b), size)
		}
	case <-ctx.Done():
		ch.Reader.Close()
		ch.Writer.Close()
		t.Fatalf("another channel did not deliver %d MiB within %v", size>>20, within)
	}
}

// chAtkReadBig reads one message from ws and checks it is an intact
// chAtkBigFrame.
func chAtkReadBig(t testing.TB, ws *websocket.Conn) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(callTimeout))
	typ, r, err := ws.NextReader()
	if err != nil {
		t.Fatalf("read a big frame: %v", err)
	}
	b, err := io.ReadAll(r)
	if err != nil || typ != websocket.BinaryMessage || len(b) != chAtkBigFrame {
		t.Fatalf("read a big frame: type %d, %d bytes, %v", typ, len(b), err)
	}
	for _, i := range []int{0, 1, 4095, 4096, 1 << 20, chAtkBigFrame - 1} {
		if b[i] != chAtkPattern(i) {
			t.Fatalf("big frame byte %d is %#x, want %#x", i, b[i], chAtkPattern(i))
		}
	}
}

// chAtkWaitRSS polls the engine's resident set (there is no event to wait
// for) until it is at most limit, and fails the test if that does not
// happen within within.
func chAtkWaitRSS(t testing.TB, e *engineProc, limit int64, within time.Duration, what string) procMemory {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		m := engineMemory(t, e.pid())
		if m.rss <= limit {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: engine RSS %d MiB, still over %d MiB after %v", what, m.rss>>20, limit>>20, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func chAtkNeedProc(t testing.TB) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc to read the engine's memory")
	}
}

// TestAttackChannelBigFrames: a raw client writes 16 MiB frames into a
// channel created with buffer_size 1024 whose reader is connected but never
// reads. The engine must hold back the writer after at most one such frame
// (the channel's byte bound lets a frame bigger than itself pass alone),
// keep serving calls and other channels meanwhile, deliver every frame once
// the reader reads, and give the memory back as soon as the burst is over.
//
// On 8b50cfc: the engine took all 24 frames into the channel's 1024-frame
// buffer (RSS 9 → 393 MiB), and 10 s after the burst it still held 398 MiB.
func TestAttackChannelBigFrames(t *testing.T) {
	chAtkNeedProc(t)
	const (
		frames    = 24               // 384 MiB offered
		maxGrowth = 56 << 20         // one 16 MiB frame held, plus the runtime's headroom
		settled   = 24 << 20         // over the start, once the burst is over
		bufFrames = 1024             // the largest buffer_size: 16 GiB on 8b50cfc
		other     = 8 << 20          // streamed through another channel meanwhile
		within    = 30 * time.Second // for that stream, on a loaded machine
		total     = 2 * time.Minute  // the whole test
	)
	e := startEngine(t, "127.0.0.1:0")
	c := connectGo(t, e, "go-chatk-big")
	ctx := ctxFor(t, total)
	ch, err := c.CreateChannel(ctx, sluice.WithBufferSize(bufFrames))
	if err != nil {
		t.Fatal(err)
	}
	r := chAtkDial(t, e, ch.ReaderRef, wire.DirRead) // connected, not reading
	w := chAtkDial(t, e, ch.WriterRef, wire.DirWrite)
	frame := chAtkFrame(chAtkBigFrame)
	before := engineMemory(t, e.pid())

	sent, done := chAtkFlood(w, frame, frames)
	chAtkWaitStall(ctx, t, "flood", sent, done, frames)
	stalled := engineMemory(t, e.pid())
	t.Logf("engine RSS: %d MiB before, %d MiB with the writer held back", before.rss>>20, stalled.rss>>20)
	if grown := stalled.rss - before.rss; grown > maxGrowth {
		t.Fatalf("the engine's RSS grew by %d MiB for one channel whose reader does not read (bound %d MiB)", grown>>20, maxGrowth>>20)
	}

	// Everyone else is served meanwhile.
	if _, err := listFunctions(ctx, c, map[string]any{}); err != nil {
		t.Fatalf("a call while the channel is stalled: %v", err)
	}
	chAtkStream(ctx, t, c, other, within)

	// The reader reads: every frame arrives, intact.
	for i := range frames {
		chAtkReadBig(t, r)
		if i == 0 {
			t.Logf("first frame read; the writer had sent %d", sent.Load())
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the writer did not finish after every frame was read")
	}
	after := chAtkWaitRSS(t, e, before.rss+settled, 10*time.Second, "after the burst")
	t.Logf("engine RSS %d MiB after the burst; high-water mark %d MiB", after.rss>>20, after.hwm>>20)
	if grown := after.hwm - before.rss; grown > maxGrowth {
		t.Errorf("the engine's RSS peaked %d MiB over the start (bound %d MiB)", grown>>20, maxGrowth>>20)
	}
}

// TestAttackChannelMemoryBudget: with channels.max_total_buffer_bytes 48
// MiB, six channels whose readers never read are flooded with 16 MiB
// messages, three as single frames and three in 4 KiB fragments (gorilla's
// writer). The engine must hold all six writers back within the budget
// (plus one message: the overdraft that keeps half-read messages from
// waiting for each other), while another channel with 64 KiB frames keeps
// streaming and calls keep working; once the flooders leave, the budget and
// the memory come back and a big frame passes again.
//
// On 8b50cfc: the engine took all 384 MiB of the six floods (RSS 9 → 484
// MiB).
func TestAttackChannelMemoryBudget(t *testing.T) {
	chAtkNeedProc(t)
	const (
		budget    = 48 << 20
		hogs      = 6
		frames    = 4 // per hog: 64 MiB each, 384 MiB in all
		maxGrowth = budget + chAtkBigFrame + 32<<20
		settled   = 24 << 20
		other     = 16 << 20
		within    = 60 * time.Second // 16 MiB one 64 KiB frame at a time
	)
	e := startEngine(t, "127.0.0.1:0", "--max-channel-memory", strconv.Itoa(budget))
	c := connectGo(t, e, "go-chatk-budget")
	ctx := ctxFor(t, 3*time.Minute)
	frame := chAtkFrame(chAtkBigFrame)
	before := engineMemory(t, e.pid())

	type hog struct {
		r, w *websocket.Conn
		sent *atomic.Int64
		done chan error
	}
	var hs []hog
	for i := range hogs {
		ch, err := c.CreateChannel(ctx, sluice.WithBufferSize(1024))
		if err != nil {
			t.Fatal(err)
		}
		h := hog{r: chAtkDial(t, e, ch.ReaderRef, wire.DirRead), w: chAtkDial(t, e, ch.WriterRef, wire.DirWrite)}
		if i%2 == 0 {
			h.sent, h.done = chAtkFlood(h.w, frame, frames)
		} else {
			h.sent, h.done = chAtkFlood(h.w, nil, frames)
		}
		hs = append(hs, h)
	}
	for i, h := range hs {
		chAtkWaitStall(ctx, t, fmt.Sprintf("flood %d", i), h.sent, h.done, frames)
	}
	stalled := engineMemory(t, e.pid())
	t.Logf("engine RSS: %d MiB before, %d MiB with %d flooders held back", before.rss>>20, stalled.rss>>20, hogs)
	if grown := stalled.rss - before.rss; grown > maxGrowth {
		t.Fatalf("the engine's RSS grew by %d MiB for %d channels whose readers do not read (budget %d MiB, bound %d MiB)",
			grown>>20, hogs, budget>>20, maxGrowth>>20)
	}

	// With the budget spent, a channel of 64 KiB frames still flows, and
	// calls work.
	if _, err := listFunctions(ctx, c, map[string]any{}); err != nil {
		t.Fatalf("a call while the budget is spent: %v", err)
	}
	start := time.Now()
	chAtkStream(ctx, t, c, other, within)
	t.Logf("%d MiB through another channel in %v with the budget spent", other>>20, time.Since(start).Round(time.Millisecond))

	// The flooders' readers leave: their writers are cut off (1011 "reader
	// closed") and the budget comes back.
	for _, h := range hs {
		h.r.Close()
	}
	for i, h := range hs {
		select {
		case <-h.done:
		case <-ctx.Done():
			t.Fatalf("flood %d: the writer was not cut off after its reader left", i)
		}
	}
	after := chAtkWaitRSS(t, e, before.rss+settled, 10*time.Second, "after the flooders left")
	t.Logf("engine RSS %d MiB after the flooders left; high-water mark %d MiB", after.rss>>20, after.hwm>>20)

	// A big frame passes again.
	ch, err := c.CreateChannel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := chAtkDial(t, e, ch.ReaderRef, wire.DirRead)
	w := chAtkDial(t, e, ch.WriterRef, wire.DirWrite)
	if _, err := w.NetConn().Write(frame); err != nil {
		t.Fatal(err)
	}
	chAtkReadBig(t, r)
	if grown := after.hwm - before.rss; grown > maxGrowth {
		t.Errorf("the engine's RSS peaked %d MiB over the start (bound %d MiB)", grown>>20, maxGrowth>>20)
	}
}

// chAtkCreateUntilRefused creates channels through c until the engine
// refuses one or max were created; it returns them and the refusal.
func chAtkCreateUntilRefused(ctx context.Context, t testing.TB, c *sluice.Client, max int) ([]*sluice.Channel, *sluice.Error) {
	t.Helper()
	var chans []*sluice.Channel
	for len(chans) < max {
		ch, err := c.CreateChannel(ctx)
		if err != nil {
			return chans, asError(t, err)
		}
		chans = append(chans, ch)
	}
	return chans, nil
}

// chAtkGet fetches url and returns the status and body.
func chAtkGet(ctx context.Context, t testing.TB, e *engineProc, url string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := seedHTTPClient(t, e).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return res.StatusCode, b
}

// TestAttackChannelQuota: with channels.max_per_worker 200 and
// channels.max_channels 250, a worker (the hog) creates channels until it
// is refused. It must be refused at its own quota with
// channel_limit_reached, while another worker can still create channels and
// an HTTP route served by the hog itself still streams (the channels of HTTP
// requests are the engine's, not the worker's). When the hog disconnects,
// its channels that no end connected to are released at once (not after
// the 5 min TTL), so HTTP routes and the other worker get them back; a
// channel of the hog's that another worker had connected to survives.
//
// On 8b50cfc: the hog got all 250 channels of the engine, after which the
// other worker was refused ("channels: channel limit reached"); nothing
// released them when the hog left.
func TestAttackChannelQuota(t *testing.T) {
	const (
		perWorker = 200
		global    = 250
		others    = 40
		body      = 1 << 20 // streamed, so the response takes a channel
	)
	e := startEngine(t, "127.0.0.1:0", "--max-channels-per-worker", strconv.Itoa(perWorker), "--max-channels", strconv.Itoa(global))
	hog := connectGo(t, e, "go-chatk-hog")
	b := connectGo(t, e, "go-chatk-other")
	ctx := ctxFor(t, 2*time.Minute)

	payload := bytes.Repeat([]byte("0123456789abcdef"), body/16)
	stream := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		for off := 0; off < len(payload); off += 64 << 10 {
			_, _ = w.Write(payload[off : off+64<<10])
			w.(http.Flusher).Flush()
		}
	}
	if err := hog.HandleHTTPFunc("GET /chatk/hog", "chatk.hog::stream", stream); err != nil {
		t.Fatal(err)
	}
	if err := b.HandleHTTPFunc("GET /chatk/other", "chatk.other::stream", stream); err != nil {
		t.Fatal(err)
	}
	waitHTTPTrigger(ctx, t, b, "chatk.hog::stream")
	waitHTTPTrigger(ctx, t, b, "chatk.other::stream")
	checkStream := func(route string) {
		t.Helper()
		status, got := chAtkGet(ctx, t, e, e.HTTPURL+route)
		if status != http.StatusOK || !bytes.Equal(got, payload) {
			t.Fatalf("GET %s: HTTP %d, %d bytes (want 200, %d bytes): %.200s", route, status, len(got), len(payload), got)
		}
	}

	// The hog is refused at its quota.
	hogChans, refusal := chAtkCreateUntilRefused(ctx, t, hog, global+10)
	if refusal == nil || len(hogChans) != perWorker {
		t.Fatalf("the hog created %d channels, refused with %v; want refused after %d (its quota)", len(hogChans), refusal, perWorker)
	}
	if refusal.Code != wire.CodeChannelLimit || !strings.Contains(refusal.Message, "max_per_worker") {
		t.Fatalf("the hog's refusal: %v; want %s naming channels.max_per_worker", refusal, wire.CodeChannelLimit)
	}
	t.Logf("the hog was refused after %d channels: %v", len(hogChans), refusal)

	// One of the hog's channels is handed to the other worker, which
	// connects its writer.
	kept := hogChans[0]
	handoff := sluice.NewChannelWriter(e.URL, kept.WriterRef)
	if _, err := handoff.Write([]byte("handed over")); err != nil {
		t.Fatal(err)
	}

	// Others are served.
	bChans, refusal := chAtkCreateUntilRefused(ctx, t, b, others)
	if refusal != nil {
		t.Fatalf("another worker was refused a channel: %v", refusal)
	}
	checkStream("/chatk/hog")

	// The engine-wide limit still applies to everyone, HTTP included.
	more, refusal := chAtkCreateUntilRefused(ctx, t, b, global)
	if refusal == nil || refusal.Code != wire.CodeChannelLimit || !strings.Contains(refusal.Message, "max_channels") {
		t.Fatalf("the other worker at the engine-wide limit: %d more channels, refusal %v", len(more), refusal)
	}
	bChans = append(bChans, more...)
	if status, got := chAtkGet(ctx, t, e, e.HTTPURL+"/chatk/other"); status != http.StatusServiceUnavailable {
		t.Fatalf("GET with every channel taken: HTTP %d %.200s; want 503", status, got)
	}

	// The hog leaves: its unconnected channels go at once.
	if err := hog.Close(); err != nil {
		t.Fatal(err)
	}
	released := fmt.Sprintf("channels=%d", perWorker-1)
	if _, err := e.stderr.wait(ctx, func(s string) bool {
		return strings.Contains(s, "unconnected channels of a departed creator released") && strings.Contains(s, released)
	}); err != nil {
		t.Fatalf("no log line releasing the hog's %d unconnected channels: %v", perWorker-1, err)
	}
	checkStream("/chatk/other")
	more, refusal = chAtkCreateUntilRefused(ctx, t, b, global)
	if refusal == nil || !strings.Contains(refusal.Message, "max_per_worker") || len(bChans)+len(more) != perWorker {
		t.Fatalf("after the hog left, the other worker got %d more channels (it had %d), refusal %v; want up to its own quota of %d",
			len(more), len(bChans), refusal, perWorker)
	}
	if _, err := hog.CreateChannel(ctx); !errors.Is(err, sluice.ErrClosed) {
		t.Fatalf("the closed hog created a channel: %v", err)
	}

	// The channel whose writer was connected survived its creator.
	if err := handoff.Close(); err != nil {
		t.Fatal(err)
	}
	reader := sluice.NewChannelReader(e.URL, kept.ReaderRef)
	got, err := reader.ReadAll()
	if err != nil || string(got) != "handed over" {
		t.Fatalf("the handed-over channel after its creator left: %q, %v", got, err)
	}
	// A released channel is gone.
	gone := sluice.NewChannelReader(e.URL, hogChans[1].ReaderRef)
	if _, err := gone.ReadAll(); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("a released channel's reader: %v; want HTTP 404", err)
	}
}
