package httptrigger

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/wire"
)

// holdEnv is an env whose function "f" (POST /f) reports each call on
// arrived and answers once release is closed.
func holdEnv(t *testing.T, cfg Config) (e *env, arrived chan *call, release chan struct{}) {
	e = newEnv(t, cfg)
	arrived, release = make(chan *call, 16), make(chan struct{})
	e.inv.set("f", func(c *call) invocation.Result {
		arrived <- c
		<-release
		return value(`{"body":"ok"}`)
	})
	e.mustRoute("t", "f", "POST", "/f")
	return e, arrived, release
}

// doAsync runs e.do on a goroutine; the result arrives on the channel.
func doAsync(e *env, body func() io.Reader, hdr ...string) <-chan string {
	out := make(chan string, 1)
	go func() {
		var b io.Reader
		if body != nil {
			b = body()
		}
		st, _, s := e.do("POST", "/f", b, hdr...)
		out <- http.StatusText(st) + " " + s
	}()
	return out
}

func waitArrived(t *testing.T, arrived <-chan *call, n int) {
	t.Helper()
	for range n {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the function was not called")
		}
	}
}

func waitIdle(t *testing.T, s *Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Active() != 0 || s.BufferedJSON() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still %d requests active, %d JSON bytes held", s.Active(), s.BufferedJSON())
		}
		time.Sleep(time.Millisecond) // the handlers' deferred releases run after the reply
	}
}

func TestMaxConcurrentRequests(t *testing.T) {
	e, arrived, release := holdEnv(t, Config{MaxConcurrent: 2})
	a, b := doAsync(e, nil), doAsync(e, nil)
	waitArrived(t, arrived, 2)
	st, h, body := e.do("POST", "/f", nil)
	if st != 503 || !strings.Contains(body, CodeTooManyRequests) || h.Get("Retry-After") != "1" || h.Get("Content-Type") != "application/json" {
		t.Fatalf("over the cap: %d %v %s", st, h, body)
	}
	if st, _, _ := e.do("GET", "/nope", nil); st != 503 { // every request counts, routed or not
		t.Fatalf("over the cap, unrouted: %d", st)
	}
	close(release)
	for _, r := range []<-chan string{a, b} {
		if got := <-r; got != `OK "ok"` {
			t.Fatalf("held request: %s", got)
		}
	}
	waitIdle(t, e.srv)
	if st, _, body := e.do("POST", "/f", nil); st != 200 {
		t.Fatalf("after the burst: %d %s", st, body)
	}
}

func TestJSONBodyBudget(t *testing.T) {
	e, arrived, release := holdEnv(t, Config{MaxJSONBody: 1000, MaxBufferedJSON: 2000})
	doc := `{"v":"` + strings.Repeat("x", 890) + `"}` // 898 bytes
	jsonCT := []string{"Content-Type", "application/json"}
	sized := func() io.Reader { return strings.NewReader(doc) }
	chunked := func() io.Reader { return io.MultiReader(strings.NewReader(doc)) } // length unknown

	a, b := doAsync(e, sized, jsonCT...), doAsync(e, sized, jsonCT...)
	waitArrived(t, arrived, 2)
	if got := e.srv.BufferedJSON(); got != 2*int64(len(doc)) {
		t.Fatalf("held %d bytes, want %d", got, 2*len(doc))
	}
	for name, body := range map[string]func() io.Reader{"sized": sized, "chunked": chunked} {
		st, h, s := e.do("POST", "/f", body(), jsonCT...)
		if st != 503 || !strings.Contains(s, CodeBodyBudgetExhausted) || h.Get("Retry-After") != "1" {
			t.Fatalf("%s body over the budget: %d %v %s", name, st, h, s)
		}
	}
	// Bodies that are not JSON are streamed, not buffered: not refused.
	c := doAsync(e, sized, "Content-Type", "text/plain")
	waitArrived(t, arrived, 1)
	close(release)
	for _, r := range []<-chan string{a, b, c} {
		if got := <-r; got != `OK "ok"` {
			t.Fatalf("held request: %s", got)
		}
	}
	waitIdle(t, e.srv)

	// With the budget free again: a chunked body is read and parsed, one
	// over MaxJSONBody is 413, and every path gives its bytes back.
	got := doAsync(e, chunked, jsonCT...)
	in := <-arrived
	if string(in.in.Body) != doc {
		t.Fatalf("chunked JSON body: %q", in.in.Body)
	}
	if r := <-got; r != `OK "ok"` {
		t.Fatalf("chunked: %s", r)
	}
	big := func() io.Reader { return io.MultiReader(strings.NewReader(`"` + strings.Repeat("y", 1500) + `"`)) }
	if st, _, s := e.do("POST", "/f", big(), jsonCT...); st != 413 {
		t.Fatalf("chunked body over max_json_body: %d %s", st, s)
	}
	waitIdle(t, e.srv)
}

// A lone body as big as MaxJSONBody always fits, whatever the budget says.
func TestJSONBudgetAtLeastOneBody(t *testing.T) {
	s := New(Config{MaxJSONBody: 5000, MaxBufferedJSON: 10}, &fakeInvoker{}, &fakeHub{})
	defer s.Close()
	if s.cfg.MaxBufferedJSON != 5000 {
		t.Fatalf("budget %d", s.cfg.MaxBufferedJSON)
	}
}

func TestBudgetTakeGive(t *testing.T) {
	b := budget{max: 100}
	var wg sync.WaitGroup
	var mu sync.Mutex
	taken := 0
	for range 50 {
		wg.Go(func() {
			if b.take(10) {
				mu.Lock()
				taken++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if taken != 10 || b.used.Load() != 100 {
		t.Fatalf("taken %d, used %d", taken, b.used.Load())
	}
	b.give(100)
	if !b.take(100) || b.take(1) {
		t.Fatal("the budget is not whole again")
	}
}

func TestClosedServerRefusesNewRequests(t *testing.T) {
	e := newEnv(t, Config{})
	e.inv.set("f", func(c *call) invocation.Result { return value(`{"body":"ok"}`) })
	e.mustRoute("t", "f", "GET", "/f")
	e.srv.Close()
	st, _, body := e.do("GET", "/f", nil)
	if st != 503 || !strings.Contains(body, wire.CodeEngineShuttingDown) {
		t.Fatalf("%d %s", st, body)
	}
}

// TestJSONBodyAtTheLimit: a JSON body of exactly max_json_body bytes is
// read, with a Content-Length or chunked; one byte more is 413 either way.
func TestJSONBodyAtTheLimit(t *testing.T) {
	const limit = 1000
	e := newEnv(t, Config{MaxJSONBody: limit})
	got := make(chan int, 4)
	e.inv.set("f", func(c *call) invocation.Result { got <- len(c.in.Body); return value(`"ok"`) })
	e.mustRoute("t", "f", "POST", "/f")
	doc := func(n int) string { return `"` + strings.Repeat("y", n-2) + `"` }
	for _, chunked := range []bool{false, true} {
		body := func(n int) io.Reader {
			if chunked {
				return io.MultiReader(strings.NewReader(doc(n))) // no length known
			}
			return strings.NewReader(doc(n))
		}
		if st, _, s := e.do("POST", "/f", body(limit), "Content-Type", "application/json"); st != 200 {
			t.Fatalf("chunked=%v: body of exactly max_json_body: %d %s", chunked, st, s)
		}
		if n := <-got; n != limit {
			t.Fatalf("chunked=%v: the function got %d bytes, want %d", chunked, n, limit)
		}
		if st, _, s := e.do("POST", "/f", body(limit+1), "Content-Type", "application/json"); st != 413 {
			t.Fatalf("chunked=%v: body one byte over max_json_body: %d %s", chunked, st, s)
		}
	}
}
