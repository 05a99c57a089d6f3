package interop

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/ws/wsframe"
	"github.com/sluicehq/sluice/wire"
)

// Attacks on the worker port's WebSocket layer (issue 9, defects 8 and 9):
// messages in tiny fragments, oversized frames, browser origins.

// wireRaw is a bare worker socket that writes frames byte by byte as the
// test builds them (gorilla would not send a 1 GiB announcement with a few
// bytes behind it) and reads the engine's messages with gorilla.
type wireRaw struct {
	t    testing.TB
	ws   *websocket.Conn
	wmu  sync.Mutex // raw writes and pong replies
	msgs chan wire.Message
}

func dialWireRaw(t testing.TB, e *engineProc) *wireRaw {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(e.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &wireRaw{t: t, ws: ws, msgs: make(chan wire.Message, 16)}
	ws.SetPingHandler(func(p string) error {
		r.write(wireFrames(wsframe.OpPong, []byte(p), 0))
		return nil
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(r.msgs)
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var m wire.Message
			if wire.Decode(b, &m) == nil {
				r.msgs <- m
			}
		}
	}()
	t.Cleanup(func() { ws.Close(); <-done })
	return r
}

// write writes raw bytes on the socket, whole.
func (r *wireRaw) write(b []byte) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	_, err := r.ws.NetConn().Write(b)
	return err
}

// result waits until d for the invocationresult of id.
func (r *wireRaw) result(id string, d time.Duration) (wire.Message, bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		select {
		case m, ok := <-r.msgs:
			if !ok {
				r.t.Fatalf("the engine closed the socket while %s was pending", id)
			}
			if m.Type == wire.TypeInvocationResult && m.InvocationID == id {
				return m, true
			}
		case <-deadline.C:
			return wire.Message{}, false
		}
	}
}

// wireFrames encodes p as one client message with opcode op: masked
// frames of at most frag payload bytes (one frame if frag is 0).
func wireFrames(op int, p []byte, frag int) []byte {
	if frag <= 0 {
		frag = max(len(p), 1)
	}
	out := make([]byte, 0, len(p)+(len(p)/frag+1)*wsframe.MaxHeader)
	var hdr [wsframe.MaxHeader]byte
	for off := 0; ; {
		part := p[off:min(off+frag, len(p))]
		off += len(part)
		k := rand.Uint32()
		key := [4]byte{byte(k), byte(k >> 8), byte(k >> 16), byte(k >> 24)}
		n := wsframe.PutHeader(hdr[:], off == len(p), op, len(part), true, key)
		out = append(out, hdr[:n]...)
		start := len(out)
		out = append(out, part...)
		wsframe.Mask(key, 0, out[start:])
		op = wsframe.OpContinuation
		if off == len(p) {
			return out
		}
	}
}

// wireInvoke is an invokefunction of fn whose data is a JSON string of n
// bytes.
func wireInvoke(id, fn string, n int) []byte {
	head := `{"type":"invokefunction","invocation_id":"` + id + `","function_id":"` + fn + `","data":"`
	b := make([]byte, 0, len(head)+n+2)
	b = append(b, head...)
	b = append(b, strings.Repeat("a", n)...)
	return append(b, `"}`...)
}

// TestAttackWireFragmentedInvoke: a raw worker sends a 16 MiB invokefunction
// in 4 KiB fragments to an echo function of a Go SDK worker (whose 16 MiB
// result goes back through its own writer). It must complete within 10x
// (+2 s) the time of the same size in one frame, measured just before on
// the same engine; the engine keeps serving others.
// On 8b50cfc: one frame took 0.24 s, the fragments got no result within
// the 4.4 s bound (the engine re-copied the whole message per 4 KiB
// fragment, and the Go SDK sent its 16 MiB result in 4 KiB fragments too).
func TestAttackWireFragmentedInvoke(t *testing.T) {
	e := startEngine(t, "127.0.0.1:0")
	svc := connectGo(t, e, "wirefrag-svc")
	echo := func(_ context.Context, inv *sluice.Invocation) (json.RawMessage, error) { return inv.Data, nil }
	size := func(_ context.Context, inv *sluice.Invocation) (json.RawMessage, error) {
		return json.RawMessage(strconv.Itoa(len(inv.Data))), nil
	}
	if err := svc.RegisterRaw("wirefrag::echo", echo); err != nil {
		t.Fatal(err)
	}
	if err := svc.RegisterRaw("wirefrag::size", size); err != nil {
		t.Fatal(err)
	}
	other := connectGo(t, e, "wirefrag-other")
	ctx := ctxFor(t, 3*callTimeout)
	waitFunctions(ctx, t, other, "wirefrag::echo", "wirefrag::size")
	raw := dialWireRaw(t, e)

	const n = 16 << 20
	one := wireFrames(wsframe.OpText, wireInvoke("one", "wirefrag::size", n), 0)
	frag := wireFrames(wsframe.OpText, wireInvoke("frag", "wirefrag::echo", n), 4096)

	start := time.Now()
	if err := raw.write(one); err != nil {
		t.Fatal(err)
	}
	r, ok := raw.result("one", callTimeout)
	base := time.Since(start)
	if !ok || r.Error != nil || string(r.Result) != strconv.Itoa(n+2) {
		t.Fatalf("16 MiB in one frame: ok %v, result %.40s, error %+v", ok, r.Result, r.Error)
	}

	bound := 10*base + 2*time.Second
	start = time.Now()
	if err := raw.write(frag); err != nil {
		t.Fatal(err)
	}
	r, ok = raw.result("frag", bound)
	took := time.Since(start)
	if !ok {
		t.Fatalf("16 MiB in 4 KiB fragments: no result within %v (one frame took %v)", bound, base)
	}
	if r.Error != nil || len(r.Result) != n+2 || string(r.Result[:4]) != `"aaa` {
		t.Fatalf("echo of 16 MiB: %d bytes, error %+v", len(r.Result), r.Error)
	}
	t.Logf("16 MiB: one frame %v, 4096 fragments and echoed back %v", base, took)

	if got, err := sluice.Call[string](ctx, other, "wirefrag::echo", "still there"); err != nil || got != "still there" {
		t.Fatalf("another caller after the attack: %q, %v", got, err)
	}
}

// TestAttackWireOversizedFrame: frames over max_message_size (64 MiB) must
// be refused without the engine buffering them. Four sockets announce a
// 1 GiB frame and send its first 16 MiB, then stall; another sends a whole
// 80 MiB invokefunction and gets a clear invocation error. The engine's
// peak RSS stays within 16 MiB of what it was before, and it keeps serving.
// On 8b50cfc: the engine read each oversized frame into a limit+1 (64 MiB)
// buffer; its peak RSS grew by 63 MiB with the stalled sockets, 129 MiB
// after the 80 MiB message.
func TestAttackWireOversizedFrame(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc to read the engine's memory")
	}
	e := startEngine(t, "127.0.0.1:0")
	c := connectGo(t, e, "wireover")
	if err := c.RegisterRaw("wireover::echo", func(_ context.Context, inv *sluice.Invocation) (json.RawMessage, error) { return inv.Data, nil }); err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 3*callTimeout)
	waitFunctions(ctx, t, c, "wireover::echo")
	before := engineMemory(t, e.pid())
	const maxGrowth = 16 << 20

	// Announced 1 GiB, 16 MiB sent, then nothing.
	head := []byte(`{"type":"invokefunction","invocation_id":"huge","function_id":"wireover::echo","data":"`)
	part := append(head, strings.Repeat("a", 16<<20-len(head))...)
	var hdr [wsframe.MaxHeader]byte
	key := [4]byte{1, 2, 3, 4}
	hn := wsframe.PutHeader(hdr[:], true, wsframe.OpText, 1<<30, true, key)
	wsframe.Mask(key, 0, part)
	announce := append(hdr[:hn:hn], part...)
	var stalled []*wireRaw
	for range 4 {
		r := dialWireRaw(t, e)
		if err := r.write(announce); err != nil { // returns once the engine has read all but the socket buffers
			t.Fatal(err)
		}
		stalled = append(stalled, r)
	}
	if m := engineMemory(t, e.pid()); m.hwm > before.rss+maxGrowth {
		t.Errorf("four stalled 1 GiB announcements (16 MiB sent each): the engine's RSS peaked at %d MiB, %d MiB over its %d MiB before",
			m.hwm>>20, (m.hwm-before.rss)>>20, before.rss>>20)
	}
	for _, r := range stalled {
		r.ws.Close()
	}

	// A complete 80 MiB message: refused with a clear error.
	over := dialWireRaw(t, e)
	if err := over.write(wireFrames(wsframe.OpText, wireInvoke("over", "wireover::echo", 80<<20), 0)); err != nil {
		t.Fatal(err)
	}
	r, ok := over.result("over", callTimeout)
	if !ok || r.Error == nil || r.Error.Code != wire.CodeInvocationError || !strings.Contains(r.Error.Message, "max_message_size") {
		t.Fatalf("80 MiB invokefunction: ok %v, error %+v; want invocation_error naming max_message_size", ok, r.Error)
	}
	m := engineMemory(t, e.pid())
	if m.hwm > before.rss+maxGrowth {
		t.Errorf("after an 80 MiB message: the engine's RSS peaked at %d MiB, %d MiB over its %d MiB before",
			m.hwm>>20, (m.hwm-before.rss)>>20, before.rss>>20)
	}
	t.Logf("engine RSS %d MiB before, peak %d MiB", before.rss>>20, m.hwm>>20)

	// The same socket and others keep working.
	if err := over.write(wireFrames(wsframe.OpText, wireInvoke("small", "wireover::echo", 10), 0)); err != nil {
		t.Fatal(err)
	}
	if r, ok := over.result("small", callTimeout); !ok || r.Error != nil || string(r.Result) != `"aaaaaaaaaa"` {
		t.Fatalf("small call after the refusal: ok %v, %s, %+v", ok, r.Result, r.Error)
	}
	if got, err := sluice.Call[string](ctx, c, "wireover::echo", "still there"); err != nil || got != "still there" {
		t.Fatalf("another caller after the attack: %q, %v", got, err)
	}
}

// TestAttackWireOrigin: a browser page (Origin: https://evil.example) is
// refused 403 on every WebSocket endpoint of the worker port — "/",
// "/otel", a real channel's URL — while a local origin, an allow-listed
// one and no Origin at all (workers, the official Node SDK here) connect.
// On 8b50cfc: every handshake was accepted (101), whatever the Origin.
func TestAttackWireOrigin(t *testing.T) {
	f := flavourNamed("node-0.22.1")
	f.require(t)
	e := startEngine(t, "127.0.0.1:0", "--allowed-origins", "https://dash.example")
	c := connectGo(t, e, "wireorigin")
	ctx := ctxFor(t, 3*callTimeout)

	channelURL := func() string {
		ch, err := c.CreateChannel(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ref := ch.ReaderRef
		return e.URL + "/ws/channels/" + ref.ChannelID + "?key=" + url.QueryEscape(ref.AccessKey) + "&dir=read"
	}
	dial := func(u, origin string) (*http.Response, string, error) {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		ws, resp, err := websocket.DefaultDialer.DialContext(ctx, u, h)
		if ws != nil {
			ws.Close()
		}
		var body string
		if resp != nil && resp.Body != nil {
			b, _ := io.ReadAll(resp.Body)
			body = string(b)
		}
		return resp, body, err
	}
	endpoints := map[string]func() string{
		"/":       func() string { return e.URL + "/" },
		"/otel":   func() string { return e.URL + "/otel" },
		"channel": channelURL,
	}
	for name, u := range endpoints {
		for _, origin := range []string{"https://evil.example", "null", "http://localhost.evil.example"} {
			resp, body, err := dial(u(), origin)
			if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s, Origin %s: %v, %v; want 403", name, origin, resp, err)
				continue
			}
			if !strings.Contains(body, strconv.Quote(origin)+" is not allowed") || !strings.Contains(body, "allowed_origins") {
				t.Errorf("%s, Origin %s: 403 body %q does not say why", name, origin, body)
			}
		}
		for _, origin := range []string{"", "http://localhost:3000", "http://127.0.0.1:5173", "http://[::1]:8080", "https://dash.example"} {
			if resp, _, err := dial(u(), origin); err != nil {
				t.Errorf("%s, Origin %q: refused (%v, %v); want the handshake accepted", name, origin, resp, err)
			}
		}
	}
	if _, err := e.stderr.wait(ctx, func(s string) bool {
		return strings.Contains(s, "websocket handshake refused") && strings.Contains(s, "evil.example")
	}); err != nil {
		t.Error("no log line for the refused handshakes")
	}

	// The official Node SDK sends no Origin: it connects and serves.
	w := startWorker(t, f, e, f.script("worker"), "wireorigin", "SEEDS=0")
	waitFunctions(ctx, t, c, w.Prefix+"::echo")
	if got, err := sluice.Call[string](ctx, c, w.Prefix+"::echo", "hello"); err != nil || got != "hello" {
		t.Fatalf("node worker behind the origin check: %q, %v", got, err)
	}
}

// TestWireBigMessagesAcrossSDKs: the engine and the Go SDK write messages
// over 64 KiB in 1 MiB fragments; every official SDK whose message limit
// allows it echoes a 6 MiB payload back to a Go caller intact (Python
// 0.11.6 caps messages at 1 MiB). A compatibility check of the writers,
// not an attack: it passes on 8b50cfc too (single frames from the engine).
func TestWireBigMessagesAcrossSDKs(t *testing.T) {
	e := startEngine(t, "127.0.0.1:0")
	c := connectGo(t, e, "wirebig")
	payload := strings.Repeat("0123456789abcdef", 6<<20/16)
	for _, name := range []string{"node-0.22.1", "node-0.11.6", "python-0.25.0", "rust-0.25.0"} {
		t.Run(name, func(t *testing.T) {
			f := flavourNamed(name)
			f.require(t)
			w := startWorker(t, f, e, f.script("worker"), f.Prefix+"wirebig", "SEEDS=0")
			ctx := ctxFor(t, 3*callTimeout)
			waitFunctions(ctx, t, c, w.Prefix+"::echo")
			got, err := sluice.Call[string](ctx, c, w.Prefix+"::echo", payload)
			if err != nil || got != payload {
				t.Fatalf("6 MiB echo: %d bytes back, %v", len(got), err)
			}
		})
	}
}
