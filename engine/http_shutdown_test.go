package engine

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/wire"
)

// Shutdown lets an HTTP request in flight get its function's answer, and
// answers one whose function does not answer in time 503, before the
// workers' invocations are halted.
func TestShutdownDrainsHTTP(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	for _, f := range []string{"slow", "never"} {
		w.sendJSON(`{"type":"registerfunction","id":"f::` + f + `"}`)
		w.sendJSON(`{"type":"registertrigger","id":"t-` + f + `","trigger_type":"http","function_id":"f::` + f + `","config":{"api_path":"/` + f + `"}}`)
	}
	waitFunction(t, w, "f::never") // processed in order: the routes are in

	type reply struct {
		status int
		body   string
		err    error
		at     time.Time
	}
	get := func(path string) <-chan reply {
		out := make(chan reply, 1)
		go func() {
			res, err := http.Get(e.HTTPURL() + path)
			if err != nil {
				out <- reply{err: err, at: time.Now()}
				return
			}
			b, err := io.ReadAll(res.Body)
			res.Body.Close()
			out <- reply{res.StatusCode, string(b), err, time.Now()}
		}()
		return out
	}
	slow, never := get("/slow"), get("/never")
	invs := map[string]wire.Message{}
	for range 2 {
		m := w.expect(wire.TypeInvokeFunction)
		invs[m.FunctionID] = m
	}

	// 10 s, the default shutdown_timeout: the grace to write the 503s is
	// then its maximum, 1 s. With 2 s (200 ms) a race-built engine at load
	// 16 failed 3 in 20 runs (the 503 late or cut off at the deadline);
	// with 5 s (500 ms) 1 in 20 (the process stalled 900 ms past the drain
	// deadline).
	const timeout = 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- e.Shutdown(ctx) }()
	// Once the listener refuses connections, the shutdown is under way.
	addr := strings.TrimPrefix(e.HTTPURL(), "http://")
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Since(start) > timeout {
			t.Fatal("the HTTP listener still accepts connections")
		}
		time.Sleep(time.Millisecond)
	}
	m := invs["f::slow"]
	w.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: m.InvocationID, FunctionID: m.FunctionID,
		Result: jsontext.Value(`{"status_code":201,"body":"slow done"}`)})

	r := <-slow
	if r.err != nil || r.status != 201 || r.body != `"slow done"` {
		t.Fatalf("in-flight request answered in time: %d %q %v", r.status, r.body, r.err)
	}
	r = <-never
	if r.err != nil || r.status != 503 || !strings.Contains(r.body, `"code":"`+wire.CodeEngineShuttingDown+`"`) {
		t.Fatalf("in-flight request never answered: %d %q %v", r.status, r.body, r.err)
	}
	// A 503 (not a cut connection) shows it was written before the
	// deadline; when the client saw it also depends on the client's
	// scheduling, hence the upper bound's second of slack.
	if d := r.at.Sub(start); d > timeout+time.Second || d < timeout/2 {
		t.Fatalf("503 after %v, want shortly before the %v deadline", d, timeout)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// A connection that never sends a request (a browser's preconnect) does
// not hold the shutdown up; net/http alone would wait 5 s for it.
func TestShutdownIgnoresSilentHTTPConnections(t *testing.T) {
	e := startEngine(t)
	c, err := net.Dial("tcp", strings.TrimPrefix(e.HTTPURL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The connection is accepted once a request on another one is served.
	if res, err := http.Get(e.HTTPURL() + "/nothing"); err != nil {
		t.Fatal(err)
	} else {
		res.Body.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the silent connection is still open: %v", err)
	}
}

// TestShutdown503NotCutOff: a request still in flight at the shutdown
// deadline gets its 503 even when its handler has written it and returned
// before the engine looks at the requests again (as a loaded machine's
// scheduling can order it). net/http sends a response only after the
// handler returns, so "no request active" is not "nothing owed": here the
// handler is held in its request log line, after it stopped counting as
// active and before net/http sends the 503, while the engine decides. On
// c966fe4 the engine closed the connection at once: the client got EOF, no
// answer (TestShutdownGraceIsATenth got EOF 1 in 20 runs at load 16).
func TestShutdown503NotCutOff(t *testing.T) {
	hold := &logHold{msg: "http request", in: make(chan struct{}), release: make(chan struct{})}
	e := startEngineWithLogger(t, slog.New(holdingHandler{slog.NewTextHandler(io.Discard, nil), hold}))
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"f::never"}`)
	w.sendJSON(`{"type":"registertrigger","id":"t-never","trigger_type":"http","function_id":"f::never","config":{"api_path":"/never"}}`)
	waitFunction(t, w, "f::never")
	held := make(chan bool, 1)
	e.testHookHTTPClosed = func() {
		select {
		case <-hold.in: // the 503 is written, the handler no longer active
			held <- true
		case <-time.After(10 * time.Second):
			held <- false
		}
		// The engine acts on what it sees right after this returns; that
		// cannot be observed, so the handler is let go 50 ms later (the
		// old code closed the connections on its next statement). The
		// fixed engine waits for the 503 meanwhile, whatever the delay.
		time.AfterFunc(50*time.Millisecond, func() { close(hold.release) })
	}
	type reply struct {
		status int
		body   string
		err    error
	}
	got := make(chan reply, 1)
	go func() {
		res, err := http.Get(e.HTTPURL() + "/never")
		if err != nil {
			got <- reply{err: err}
			return
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		got <- reply{res.StatusCode, string(b), err}
	}()
	w.expect(wire.TypeInvokeFunction)
	// 10 s, as TestShutdownDrainsHTTP: 1 s to write the 503, for a loaded
	// machine's stalls.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- e.Shutdown(ctx) }()
	var r reply
	select {
	case r = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("the request in flight was never answered")
	}
	if !<-held {
		t.Fatal("the handler in flight logged no request after the engine told it to answer 503: the test tested nothing")
	}
	if r.err != nil || r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, `"code":"`+wire.CodeEngineShuttingDown+`"`) {
		t.Fatalf("request in flight at the deadline: %d %q %v, want its 503", r.status, r.body, r.err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// logHold holds the first Warn record with message msg: in is closed when
// it arrives, and its Handle returns once release is closed.
type logHold struct {
	msg         string
	once        sync.Once
	in, release chan struct{}
}

// holdingHandler is a slog.Handler that holds hold's record.
type holdingHandler struct {
	slog.Handler
	hold *logHold
}

func (h holdingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.hold.msg && r.Level == slog.LevelWarn {
		first := false
		h.hold.once.Do(func() { first = true; close(h.hold.in) })
		if first {
			<-h.hold.release
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h holdingHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return holdingHandler{h.Handler.WithAttrs(a), h.hold}
}

func (h holdingHandler) WithGroup(name string) slog.Handler {
	return holdingHandler{h.Handler.WithGroup(name), h.hold}
}
