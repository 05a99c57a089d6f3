package engine

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
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

	const timeout = 2 * time.Second
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
	if d := r.at.Sub(start); d > timeout || d < timeout/2 {
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
