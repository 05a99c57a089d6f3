package httptrigger

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/registry"
)

func TestRouting(t *testing.T) {
	e := newEnv(t, Config{})
	for _, f := range []string{"users", "create", "files", "root", "slash", "lit", "a", "b"} {
		e.inv.set(f, echo(f))
	}
	e.mustRoute("t-users", "users", "", "users/:id")             // no leading slash, default GET
	e.mustRoute("t-create", "create", "post", "/users")          // lower-case method
	e.mustRoute("t-files", "files", "GET", "/files/*rest")       // catch-all
	e.mustRoute("t-root", "root", "GET", "/")                    // root
	e.mustRoute("t-slash", "slash", "GET", "/dir/")              // trailing slash is exact
	e.mustRoute("t-lit", "lit", "GET", "/users/me")              // literal beats parameter
	e.mustRoute("t-a", "a", "DELETE", "/users/:id")              // same path, other method
	e.mustRoute("t-b", "b", "GET", "/orgs/:org/members/:member") // two params

	cases := []struct {
		method, path string
		status       int
		body         string
		allow        string
	}{
		{"GET", "/users/42", 200, `{"fn":"users","params":{"id":"42"}}`, ""},
		{"GET", "/users/a%20b", 200, `{"fn":"users","params":{"id":"a b"}}`, ""},
		{"GET", "/users/me", 200, `{"fn":"lit","params":{}}`, ""},
		{"DELETE", "/users/42", 200, `{"fn":"a","params":{"id":"42"}}`, ""},
		{"POST", "/users", 200, `{"fn":"create","params":{}}`, ""},
		{"GET", "/files/a/b/c.txt", 200, `{"fn":"files","params":{"rest":"a/b/c.txt"}}`, ""},
		{"GET", "/files/a/%2E%2E/%2e/c%2Fd%5Ce%00", 200, `{"fn":"files","params":{"rest":"a/%2E%2E/%2e/c%2Fd%5Ce%00"}}`, ""},
		{"GET", "/users/..%2F..%2Fetc%2Fpasswd", 200, `{"fn":"users","params":{"id":"..%2F..%2Fetc%2Fpasswd"}}`, ""},
		{"GET", "/users/a\\b", 200, `{"fn":"users","params":{"id":"a%5Cb"}}`, ""}, // a raw backslash arrives escaped
		{"GET", "/users/.%2E", 200, `{"fn":"users","params":{"id":".%2E"}}`, ""},
		{"GET", "/", 200, `{"fn":"root","params":{}}`, ""},
		{"GET", "/dir/", 200, `{"fn":"slash","params":{}}`, ""},
		{"GET", "/orgs/acme/members/bob", 200, `{"fn":"b","params":{"member":"bob","org":"acme"}}`, ""},
		{"HEAD", "/users/42", 200, ``, ""}, // a GET route serves HEAD
		{"GET", "/nope", 404, `{"error":{"code":"NOT_FOUND","message":"Not Found"}}`, ""},
		{"GET", "/users/42/x", 404, `{"error":{"code":"NOT_FOUND","message":"Not Found"}}`, ""},
		{"PUT", "/users/42", 405, `{"error":{"code":"METHOD_NOT_ALLOWED","message":"Method Not Allowed"}}`, "DELETE, GET, HEAD"},
		{"GET", "/users", 405, `{"error":{"code":"METHOD_NOT_ALLOWED","message":"Method Not Allowed"}}`, "POST"},
	}
	for _, c := range cases {
		st, h, body := e.do(c.method, c.path, nil)
		if st != c.status || body != c.body {
			t.Errorf("%s %s = %d %s; want %d %s", c.method, c.path, st, body, c.status, c.body)
		}
		if c.status >= 400 && h.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: content-type %q", c.method, c.path, h.Get("Content-Type"))
		}
		if c.allow != "" && h.Get("Allow") != c.allow {
			t.Errorf("%s %s: Allow = %q, want %q", c.method, c.path, h.Get("Allow"), c.allow)
		}
	}
}

func TestDecodeParam(t *testing.T) {
	for raw, want := range map[string]string{
		"plain":                  "plain",
		"a%20b":                  "a b",
		"caf%C3%A9":              "café",
		"a%2Fb":                  "a%2Fb",
		"a%2fb":                  "a%2fb",
		"..%2F..%2Fetc%2Fpasswd": "..%2F..%2Fetc%2Fpasswd",
		"..%5C..%5Cwin.ini":      "..%5C..%5Cwin.ini",
		"a%00b":                  "a%00b",
		"%2E%2E":                 "%2E%2E",
		".%2e":                   ".%2e",
		"%2E":                    "%2E",
		"%2E%2E%2E":              "...",
		"..a":                    "..a",
		"a/%2E%2E/b":             "a/%2E%2E/b", // *rest: per segment
		"a/b%20c/d":              "a/b c/d",
		"bad%zz":                 "bad%zz",
		"bad%2":                  "bad%2",
		"%":                      "%",
		"100%25":                 "100%25", // '%' too: unescaping the value once gives the exact text
		"%252F":                  "%252F",
	} {
		if got := decodeParam(raw); got != want {
			t.Errorf("decodeParam(%q) = %q, want %q", raw, got, want)
		}
	}
}

func TestRouteOwnershipAndLastWins(t *testing.T) {
	e := newEnv(t, Config{})
	e.inv.set("one", echo("one"))
	e.inv.set("two", echo("two"))
	get := func() (int, string) { st, _, b := e.do("GET", "/x/1", nil); return st, b }

	e.mustRoute("t1", "one", "GET", "/x/:id")
	if _, b := get(); !strings.Contains(b, `"one"`) {
		t.Fatalf("got %s", b)
	}
	e.mustRoute("t2", "two", "GET", "x/:id") // same route, other trigger: last wins
	if _, b := get(); !strings.Contains(b, `"two"`) {
		t.Fatalf("after takeover got %s", b)
	}
	e.unroute("t1") // t1 no longer owns the route: nothing changes
	if _, b := get(); !strings.Contains(b, `"two"`) {
		t.Fatalf("after unregistering the old owner got %s", b)
	}
	e.unroute("t2")
	if st, _ := get(); st != 404 {
		t.Fatalf("after unregistering the owner: %d", st)
	}
	if n := e.srv.Routes(); n != 0 {
		t.Fatalf("%d routes left", n)
	}

	// Re-registering a trigger id with another path moves it.
	e.mustRoute("t3", "one", "GET", "/old")
	e.mustRoute("t3", "one", "GET", "/new")
	if st, _, _ := e.do("GET", "/old", nil); st != 404 {
		t.Fatalf("/old still served: %d", st)
	}
	if st, _, _ := e.do("GET", "/new", nil); st != 200 {
		t.Fatalf("/new: %d", st)
	}

	// Removing a specific route lets the less specific one match again,
	// even before the background rebuild.
	e.mustRoute("gen", "one", "GET", "/p/:id")
	e.mustRoute("spec", "two", "GET", "/p/special")
	if _, _, b := e.do("GET", "/p/special", nil); !strings.Contains(b, `"two"`) {
		t.Fatalf("specific: %s", b)
	}
	e.unroute("spec")
	if _, _, b := e.do("GET", "/p/special", nil); !strings.Contains(b, `"one"`) {
		t.Fatalf("after removing the specific route: %s", b)
	}
}

// A route of one worker cannot be taken over by another worker's trigger;
// the same worker may (last wins), and the route frees up when the holder
// unregisters it.
func TestRouteHeldByAnotherWorker(t *testing.T) {
	e := newEnv(t, Config{})
	e.inv.set("victim", echo("victim"))
	e.inv.set("attacker", echo("attacker"))
	put := func(id, fn, holder string) error {
		return e.srv.RegisterTrigger(&registry.Trigger{ID: id, Type: "http", FunctionID: fn, Owner: holder,
			Config: []byte(`{"api_path":"/pay/:id","http_method":"POST"}`)})
	}
	if err := put("v1", "victim", "worker-a"); err != nil {
		t.Fatal(err)
	}
	err := put("a1", "attacker", "worker-b")
	if !errors.Is(err, ErrRouteTaken) || !strings.Contains(err.Error(), "POST /pay/:id") || !strings.Contains(err.Error(), "v1") {
		t.Fatalf("another worker's takeover: %v", err)
	}
	if _, _, b := e.do("POST", "/pay/1", nil); !strings.Contains(b, `"victim"`) {
		t.Fatalf("route after a refused takeover: %s", b)
	}
	if err := put("v2", "attacker", "worker-a"); err != nil { // same worker: last wins
		t.Fatalf("the holder's own replacement: %v", err)
	}
	if _, _, b := e.do("POST", "/pay/1", nil); !strings.Contains(b, `"attacker"`) {
		t.Fatalf("route after the holder replaced it: %s", b)
	}
	e.unroute("v2")
	if err := put("a1", "attacker", "worker-b"); err != nil {
		t.Fatalf("a free route: %v", err)
	}
}

func TestRouteErrors(t *testing.T) {
	e := newEnv(t, Config{})
	e.mustRoute("t1", "f", "GET", "/a/:x")
	if err := e.route("t2", "f", "GET", "/a/:y"); err == nil ||
		!strings.Contains(err.Error(), "route 'GET /a/:y' conflicts with already-registered route 'GET /a/:x'") {
		t.Fatalf("conflict: %v", err)
	}
	// A rejected route leaves the table as it was.
	if st, _, _ := e.do("GET", "/a/1", nil); st == 404 {
		t.Fatal("existing route lost")
	}
	// After removal the shape is free again.
	e.unroute("t1")
	if err := e.route("t2", "f", "GET", "/a/:y"); err != nil {
		t.Fatalf("after removal: %v", err)
	}
	for _, c := range []struct{ cfg, want string }{
		{`{"http_method":"GET"}`, "api_path is required for http triggers"},
		{`{}`, "api_path is required for http triggers"},
		{`null`, "api_path is required for http triggers"},
		{`{"api_path":5}`, "invalid http trigger config"},
		{`{"api_path":"/a/:b-c"}`, "parameter"},
		{`{"api_path":"/a/{b}"}`, "not allowed"},
		{`{"api_path":"/a b"}`, "not allowed"},
		{`{"api_path":"/a/*r/x"}`, "must be the last segment"},
		{`{"api_path":"/a/:x/:x"}`, "appears twice"},
		{`{"api_path":"/a","http_method":"GE T"}`, "invalid http_method"},
	} {
		err := e.srv.RegisterTrigger(&registry.Trigger{ID: "bad", Type: "http", FunctionID: "f", Config: jsontext.Value(c.cfg)})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %s: err %v, want %q", c.cfg, err, c.want)
		}
	}
}

func TestManyRoutes(t *testing.T) {
	e := newEnv(t, Config{})
	for i := range 1000 {
		e.mustRoute(fmt.Sprint("t", i), "f", "GET", fmt.Sprintf("/svc%d/items/:id", i))
	}
	e.inv.set("f", echo("f"))
	if st, _, b := e.do("GET", "/svc999/items/7", nil); st != 200 || !strings.Contains(b, `"7"`) {
		t.Fatalf("%d %s", st, b)
	}
	for i := range 1000 {
		e.unroute(fmt.Sprint("t", i))
	}
	if st, _, _ := e.do("GET", "/svc999/items/7", nil); st != 404 {
		t.Fatalf("after removing all: %d", st)
	}
}

// BenchmarkRouteLookup shows that lookup cost does not depend on the
// number of routes.
// BenchmarkRouteLookup compares a lookup among 1 route with one among
// 1,000, in the same run: batches alternate between the two routers so
// that machine noise hits both alike. Paths have the same length (the
// mux's cost grows with the path, not with the number of routes).
//
//	go test -run '^$' -bench RouteLookup -benchtime 2000000x ./internal/httptrigger/
func BenchmarkRouteLookup(b *testing.B) {
	build := func(n int) (*router, *http.Request) {
		r := newRouter()
		for i := range n {
			rt, err := parseTrigger(&registry.Trigger{ID: fmt.Sprint(i), FunctionID: "f",
				Config: jsontext.Value(fmt.Sprintf(`{"api_path":"/svc%04d/files/:name"}`, i))})
			if err != nil {
				b.Fatal(err)
			}
			if err := r.add(rt); err != nil {
				b.Fatal(err)
			}
		}
		return r, httptest.NewRequest(http.MethodGet, fmt.Sprintf("/svc%04d/files/report.pdf", n-1), nil)
	}
	r1, req1 := build(1)
	r1000, req1000 := build(1000)
	lookups := func(r *router, req *http.Request, n int) time.Duration {
		t0 := time.Now()
		for range n {
			rt, _ := r.lookup(req)
			if rt == nil {
				b.Fatal("miss")
			}
			_ = rt.pathParams(req.URL.EscapedPath())
		}
		return time.Since(t0)
	}
	const batch = 1000
	var d1, d1000 time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	done := 0
	for done < b.N {
		n := min(batch, b.N-done)
		d1 += lookups(r1, req1, n)
		d1000 += lookups(r1000, req1000, n)
		done += n
	}
	b.StopTimer()
	b.ReportMetric(float64(d1.Nanoseconds())/float64(b.N), "ns/lookup-1-route")
	b.ReportMetric(float64(d1000.Nanoseconds())/float64(b.N), "ns/lookup-1000-routes")
	b.ReportMetric(float64(d1000)/float64(d1), "ratio")
}

// Routes change while requests are served: a stable route never misses,
// and the race detector watches the live-mux additions and the swaps.
func TestRoutesChangeUnderLoad(t *testing.T) {
	r := newRouter()
	add := func(id, path string) {
		rt, err := parseTrigger(&registry.Trigger{ID: id, FunctionID: "f", Config: jsontext.Value(`{"api_path":"` + path + `"}`)})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.add(rt); err != nil {
			t.Fatal(err)
		}
	}
	add("stable", "/stable/:id")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 300 {
			id := fmt.Sprint("t", i%20)
			add(id, fmt.Sprintf("/churn%d/:x", i))
			if i%3 == 0 {
				r.remove(id)
			}
		}
	}()
	req := httptest.NewRequest(http.MethodGet, "/stable/7", nil)
	for {
		select {
		case <-done:
			if n := r.len(); n > 21 {
				t.Fatalf("%d routes", n)
			}
			return
		default:
		}
		if rt, _ := r.lookup(req); rt == nil || rt.triggerID != "stable" {
			t.Fatal("stable route missed")
		}
	}
}
