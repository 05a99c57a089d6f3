package interop

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sluice "github.com/sluicehq/sluice"
)

// httpFuncTarget is a loopback HTTP server counting the requests it gets.
type httpFuncTarget struct {
	*httptest.Server
	hits     atomic.Int32
	arrived  chan string // path of each request, as it arrives
	stopSlow chan struct{}
}

func startHTTPFuncTarget(t *testing.T) *httpFuncTarget {
	tg := &httpFuncTarget{arrived: make(chan string, 16), stopSlow: make(chan struct{})}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.hits.Add(1)
		tg.arrived <- r.URL.Path
		switch r.URL.Path {
		case "/huge": // endless: only the engine's bound ends it
			chunk := []byte(`"` + strings.Repeat("x", 64<<10))
			for {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		case "/slow": // never answers on its own
			select {
			case <-r.Context().Done():
			case <-tg.stopSlow:
			}
		default:
			w.Write([]byte(`{"served":true}`))
		}
	}))
	t.Cleanup(func() { close(tg.stopSlow); tg.Close() })
	return tg
}

// httpFuncRegister registers an HTTP-invoked function from a raw worker
// socket (the Go SDK has no API for it) and waits until the engine has
// handled it.
func httpFuncRegister(ctx context.Context, r *regRaw, id string, invocation map[string]any) {
	r.send(map[string]any{"type": "registerfunction", "id": id, "invocation": invocation})
	r.sync(ctx)
}

// TestAttackHTTPFuncPrivateTargets: on an engine with the default config, a
// worker registers HTTP-invoked functions aimed at the engine host's
// loopback and at the cloud metadata address. Each registration is refused
// with a log line saying why, no request reaches the loopback server, calls
// get function_not_found, and the engine keeps serving other workers.
// On b8b8b29 every HTTP-invoked registration was ignored as unsupported (no
// refusal line: the test timed out waiting for it); with
// block_private_ips defaulting to false the loopback server got the call.
func TestAttackHTTPFuncPrivateTargets(t *testing.T) {
	tg := startHTTPFuncTarget(t)
	e := startPlainEngine(t)
	ctx := ctxFor(t, time.Minute)
	attacker := regDial(ctx, t, e)
	https := strings.Replace(tg.URL, "http://", "https://", 1)
	targets := map[string]string{
		"attack::loopback":      tg.URL + "/steal",
		"attack::loopback-tls":  https + "/steal",
		"attack::localhost-tls": strings.Replace(https, "127.0.0.1", "localhost", 1) + "/steal",
		"attack::metadata":      "https://169.254.169.254/latest/meta-data/iam/",
		"attack::mapped":        "https://[::ffff:127.0.0.1]:" + tg.URL[strings.LastIndex(tg.URL, ":")+1:] + "/steal",
	}
	for id, url := range targets {
		httpFuncRegister(ctx, attacker, id, map[string]any{"url": url, "method": "POST"})
		if _, err := e.stderr.wait(ctx, func(s string) bool {
			return strings.Contains(s, "HTTP-invoked function refused") && strings.Contains(s, id+" ")
		}); err != nil {
			t.Fatalf("no refusal logged for %s (%s): %v", id, url, err)
		}
	}
	c := connectGo(t, e, "httpfunc-bystander")
	if err := sluice.Register(c, "bystander::echo", func(_ context.Context, in map[string]any) (map[string]any, error) { return in, nil }); err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctx, t, c, "bystander::echo")
	for id := range targets {
		_, err := c.Trigger(ctx, id, map[string]any{"x": 1})
		if err == nil {
			t.Fatalf("%s: the call succeeded", id)
		}
		if se := asError(t, err); se.Code != "function_not_found" {
			t.Fatalf("%s: error %s %s, want function_not_found", id, se.Code, se.Message)
		}
	}
	if n := tg.hits.Load(); n != 0 {
		t.Fatalf("the loopback server received %d requests from the engine", n)
	}
	out, err := c.Trigger(ctx, "bystander::echo", map[string]any{"still": "served"})
	if err != nil || !strings.Contains(string(out), "served") {
		t.Fatalf("bystander call after the attack: %s, %v", out, err)
	}
}

// TestAttackHTTPFuncHugeSlowAndMany: an HTTP-invoked function whose server
// streams an endless body, one that never answers, and more concurrent
// calls than allowed. The engine stops reading at max_response_bytes,
// gives up at max_timeout (the registration asked for 10 minutes), answers
// beyond max_concurrent at once, and serves others throughout.
// On b8b8b29 the registrations were ignored as unsupported: the functions
// never appeared (waitFunctions timed out).
func TestAttackHTTPFuncHugeSlowAndMany(t *testing.T) {
	tg := startHTTPFuncTarget(t)
	cfg := regConfig(t, "http_functions:\n  url_allowlist: [\"127.0.0.1\"]\n  block_private_ips: false\n  require_https: false\n"+
		"  max_response_bytes: 64KiB\n  default_timeout: 1s\n  max_timeout: 2s\n  max_concurrent: 2\n")
	e := startEngine(t, "127.0.0.1:0", "--config", cfg)
	ctx := ctxFor(t, time.Minute)
	attacker := regDial(ctx, t, e)
	httpFuncRegister(ctx, attacker, "attack::huge", map[string]any{"url": tg.URL + "/huge"})
	httpFuncRegister(ctx, attacker, "attack::slow", map[string]any{"url": tg.URL + "/slow", "timeout_ms": 600_000})
	httpFuncRegister(ctx, attacker, "attack::ok", map[string]any{"url": tg.URL + "/ok"})
	c := connectGo(t, e, "httpfunc-caller")
	if err := sluice.Register(c, "bystander::echo", func(_ context.Context, in map[string]any) (map[string]any, error) { return in, nil }); err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctx, t, c, "attack::huge", "attack::slow", "attack::ok", "bystander::echo")

	wantCode := func(id, code, inMessage string) {
		t.Helper()
		_, err := c.Trigger(ctx, id, map[string]any{})
		if err == nil {
			t.Fatalf("%s: call succeeded, want %s", id, code)
		}
		if se := asError(t, err); se.Code != code || !strings.Contains(se.Message, inMessage) {
			t.Fatalf("%s: error %s %q, want %s containing %q", id, se.Code, se.Message, code, inMessage)
		}
	}
	wantCode("attack::huge", "http_response_too_large", "max_response_bytes")
	<-tg.arrived

	start := time.Now()
	wantCode("attack::slow", "http_request_failed", "timed out after 2s")
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("the slow call took %s with max_timeout 2s", d)
	}
	<-tg.arrived

	// Fill both slots with slow calls; the third is refused at once while
	// the bystander is served.
	var wg sync.WaitGroup
	slowErrs := make(chan error, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Trigger(ctx, "attack::slow", map[string]any{})
			slowErrs <- err
		}()
	}
	<-tg.arrived
	<-tg.arrived
	wantCode("attack::ok", "http_functions_busy", "max_concurrent")
	if out, err := c.Trigger(ctx, "bystander::echo", map[string]any{"still": "served"}); err != nil || !strings.Contains(string(out), "served") {
		t.Fatalf("bystander call while the slots are full: %s, %v", out, err)
	}
	wg.Wait()
	close(slowErrs)
	for err := range slowErrs {
		if err == nil || asError(t, err).Code != "http_request_failed" {
			t.Fatalf("slow call in a slot: %v, want a timeout", err)
		}
	}
	out, err := c.Trigger(ctx, "attack::ok", map[string]any{})
	if err != nil || string(out) != `{"served":true}` {
		t.Fatalf("call after the slots freed: %s, %v", out, err)
	}
}
