package httptrigger

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/registry"
)

// Route conditions and middleware (§6.6): each branch of preHandlers and
// of call. Each case names the fault it catches (scripts/faults.py).

// guardedRoute registers "/g" → handler "h" with the given condition and
// middleware, and counts the handler's runs.
func guardedRoute(t *testing.T, cfg Config, condition string, middleware ...string) (*env, chan struct{}) {
	t.Helper()
	e := newEnv(t, cfg)
	ran := make(chan struct{}, 8)
	e.inv.set("h", func(c *call) invocation.Result {
		ran <- struct{}{}
		return value(`{"status_code":200,"body":{"handler":true}}`)
	})
	rc := map[string]any{"api_path": "/g", "http_method": "POST"}
	if condition != "" {
		rc["condition_function_id"] = condition
	}
	if len(middleware) > 0 {
		rc["middleware_function_ids"] = middleware
	}
	b, _ := json.Marshal(rc)
	if err := e.srv.RegisterTrigger(&registry.Trigger{ID: "g", Type: "http", FunctionID: "h", Config: b}); err != nil {
		t.Fatal(err)
	}
	return e, ran
}

func handlerRuns(ran chan struct{}) int {
	n := 0
	for {
		select {
		case <-ran:
			n++
		default:
			return n
		}
	}
}

// faults: the condition's "false" check removed; its error branch removed.
func TestRouteCondition(t *testing.T) {
	for _, c := range []struct {
		name     string
		answer   invocation.Result
		status   int
		contains string
		handler  int
	}{
		{"false", value(`false`), http.StatusUnprocessableEntity, `"CONDITION_NOT_MET"`, 0},
		{"false-spaced", value(" false\n"), http.StatusUnprocessableEntity, `"skipped":true`, 0},
		{"true", value(`true`), http.StatusOK, `"handler":true`, 1},
		{"other-value", value(`{"ok":1}`), http.StatusOK, `"handler":true`, 1},
		{"error", failure("boom", "condition broke"), http.StatusInternalServerError, "condition broke", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, ran := guardedRoute(t, Config{}, "cond")
			var got *call
			e.inv.set("cond", func(cl *call) invocation.Result { got = cl; return c.answer })
			st, _, body := e.do("POST", "/g?x=1", strings.NewReader(`{"v":2}`), "Content-Type", "application/json")
			if st != c.status || !strings.Contains(body, c.contains) {
				t.Fatalf("status %d body %s; want %d containing %s", st, body, c.status, c.contains)
			}
			if n := handlerRuns(ran); n != c.handler {
				t.Fatalf("handler ran %d times, want %d", n, c.handler)
			}
			// The condition sees the request (no channel refs: it cannot
			// consume the body).
			if got == nil || got.in.QueryParams["x"] != "1" || string(got.in.Body) != `{"v":2}` || got.in.RequestBody != nil || got.in.Response != nil {
				t.Fatalf("condition input: %+v", got)
			}
		})
	}
}

// faults: middleware "respond" ignored; a middleware error ignored.
func TestRouteMiddleware(t *testing.T) {
	t.Run("respond", func(t *testing.T) {
		e, ran := guardedRoute(t, Config{}, "", "mw1", "mw2")
		var second int
		e.inv.set("mw1", func(c *call) invocation.Result { return value(`{"action":"continue"}`) })
		e.inv.set("mw2", func(c *call) invocation.Result {
			second++
			return value(`{"action":"respond","response":{"status_code":401,"headers":{"X-Why":"no token","Content-Type":"text/html"},"body":{"error":"unauthorized"}}}`)
		})
		st, hdr, body := e.do("POST", "/g", nil)
		if st != http.StatusUnauthorized || body != `{"error":"unauthorized"}` || hdr.Get("X-Why") != "no token" || hdr.Get("Content-Type") != "application/json" {
			t.Fatalf("middleware response: %d %v %s", st, hdr, body)
		}
		if second != 1 || handlerRuns(ran) != 0 {
			t.Fatalf("second middleware ran %d times, handler %d; want 1, 0", second, handlerRuns(ran))
		}
	})
	t.Run("continue", func(t *testing.T) {
		e, ran := guardedRoute(t, Config{}, "", "mw")
		var in map[string]any
		e.inv.set("mw", func(c *call) invocation.Result {
			_ = json.Unmarshal(c.req.Data, &in)
			return value(`null`)
		})
		st, _, body := e.do("POST", "/g?q=7", nil, "X-Token", "abc")
		if st != 200 || !strings.Contains(body, `"handler":true`) || handlerRuns(ran) != 1 {
			t.Fatalf("after a continuing middleware: %d %s", st, body)
		}
		req, _ := in["request"].(map[string]any)
		if in["phase"] != "preHandler" || req == nil || req["method"] != "POST" ||
			req["query_params"].(map[string]any)["q"] != "7" || req["headers"].(map[string]any)["x-token"] != "abc" {
			t.Fatalf("middleware input: %v", in)
		}
	})
	t.Run("error", func(t *testing.T) {
		e, ran := guardedRoute(t, Config{}, "", "mw")
		e.inv.set("mw", func(c *call) invocation.Result { return failure("denied", "middleware said no") })
		st, _, body := e.do("POST", "/g", nil)
		if st != http.StatusInternalServerError || !strings.Contains(body, "middleware said no") || handlerRuns(ran) != 0 {
			t.Fatalf("failing middleware: %d %s", st, body)
		}
	})
}

// faults: call's function-not-found, timeout, client-gone or shutdown
// branch removed.
func TestPreHandlerCallFailures(t *testing.T) {
	t.Run("missing-condition", func(t *testing.T) {
		e, ran := guardedRoute(t, Config{}, "nope")
		st, _, body := e.do("POST", "/g", nil)
		if st != http.StatusServiceUnavailable || !strings.Contains(body, "function_not_found") || !strings.Contains(body, "nope") || handlerRuns(ran) != 0 {
			t.Fatalf("missing condition function: %d %s", st, body)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		e, ran := guardedRoute(t, Config{Timeout: 50 * time.Millisecond}, "", "mw")
		hold := make(chan struct{})
		defer close(hold)
		e.inv.set("mw", func(c *call) invocation.Result { <-hold; return value(`null`) })
		st, _, body := e.do("POST", "/g", nil)
		if st != http.StatusGatewayTimeout || !strings.Contains(body, "did not answer within 50ms") || handlerRuns(ran) != 0 {
			t.Fatalf("hanging middleware: %d %s", st, body)
		}
	})
	t.Run("client-gone", func(t *testing.T) {
		lines := make(chan string, 16)
		e, ran := guardedRoute(t, Config{Logger: slog.New(slog.NewTextHandler(lineSink(lines), nil))}, "cond")
		called := make(chan struct{})
		hold := make(chan struct{})
		defer close(hold)
		e.inv.set("cond", func(c *call) invocation.Result { close(called); <-hold; return value(`true`) })
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "POST", e.url+"/g", nil)
		errc := make(chan error, 1)
		go func() {
			res, err := e.ts.Client().Do(req)
			if err == nil {
				res.Body.Close()
			}
			errc <- err
		}()
		<-called
		cancel()
		if err := <-errc; err == nil {
			t.Fatal("request completed although the client went away")
		}
		// The exchange ends at once (the condition still holds), without
		// running the handler.
		select {
		case line := <-lines:
			if !strings.Contains(line, `outcome="client gone"`) || !strings.Contains(line, "status=499") {
				t.Fatalf("request log: %s", line)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the exchange did not end when its client left")
		}
		if n := handlerRuns(ran); n != 0 {
			t.Fatalf("handler ran %d times for a client that left", n)
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		e, ran := guardedRoute(t, Config{}, "cond")
		called := make(chan struct{})
		hold := make(chan struct{})
		defer close(hold)
		e.inv.set("cond", func(c *call) invocation.Result { close(called); <-hold; return value(`true`) })
		go func() { <-called; e.srv.Close() }()
		st, _, body := e.do("POST", "/g", nil)
		if st != http.StatusServiceUnavailable || !strings.Contains(body, "engine_shutting_down") || handlerRuns(ran) != 0 {
			t.Fatalf("shutdown during the condition: %d %s", st, body)
		}
	})
}

// lineSink sends each write (one log line) to lines.
type lineSink chan string

func (l lineSink) Write(p []byte) (int, error) {
	l <- string(p)
	return len(p), nil
}

// faults: the response channel's creation error ignored or answered 200.
// The function is never called, the request body channel already opened
// is released, and the client gets 503.
func TestResponseChannelFailure(t *testing.T) {
	e := newEnv(t, Config{})
	calls := 0
	e.inv.set("f", func(c *call) invocation.Result { calls++; return value(`{"status_code":200}`) })
	e.mustRoute("r", "f", "POST", "/r")
	e.hub.failRes.Store(true)
	st, _, body := e.do("POST", "/r", strings.NewReader("payload"))
	if st != http.StatusServiceUnavailable || !strings.Contains(body, "CHANNELS_UNAVAILABLE") || !strings.Contains(body, "response channel") {
		t.Fatalf("response channel refused: %d %s", st, body)
	}
	if calls != 0 {
		t.Fatalf("the function ran %d times without a response channel", calls)
	}
	if n := e.hub.retired.Load(); n != 1 {
		t.Fatalf("%d channels retired, want the request body's", n)
	}
}
