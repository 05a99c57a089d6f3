package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/auth"
	"github.com/sluicehq/sluice/internal/testhttp"
)

// consoleReq sends one request to the console.
var consoleReq = testhttp.Do

var jsonCT = map[string]string{"Content-Type": "application/json"}

// The feed over SSE: a call made after subscribing arrives with its
// function, caller, duration and outcome; ?function= filters.
func TestConsoleInvocationFeed(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.ConsoleAddr = "127.0.0.1:0" })
	w := dialRaw(t, e)
	w.announce("feeder")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.ConsoleURL()+"/api/invocations?function=engine::health::check", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	// Subscribed once the stream's first line arrived; the filtered-out
	// call first.
	sc := bufio.NewScanner(res.Body)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "retry:") {
		t.Fatalf("first line %q", sc.Text())
	}
	w.call("1", "engine::functions::list", `{}`)
	w.call("2", "engine::health::check", `{}`)
	var event string
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			event = v
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok && event == "invocation" {
			var ev FeedEvent
			if err := json.Unmarshal([]byte(v), &ev); err != nil {
				t.Fatal(err)
			}
			if ev.FunctionID != "engine::health::check" || ev.Caller != w.id || ev.CallerName != "feeder" || ev.Outcome != "ok" || ev.DurationMS < 0 || ev.Time.IsZero() {
				t.Fatalf("event %+v (worker %s)", ev, w.id)
			}
			return
		}
	}
	t.Fatalf("no invocation event: %v", sc.Err())
}

// /api/call runs a function as the engine; errors come back as
// {error:{code,message}}.
func TestConsoleCall(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.ConsoleAddr = "127.0.0.1:0" })
	res, body := consoleReq(t, "POST", e.ConsoleURL()+"/api/call", `{"function_id":"state::set","payload":{"scope":"s","key":"k","value":7}}`, jsonCT)
	if res.StatusCode != 200 || !strings.Contains(body, `"new_value":7`) {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	_, body = consoleReq(t, "POST", e.ConsoleURL()+"/api/call", `{"function_id":"no::such"}`, jsonCT)
	if !strings.Contains(body, `"code":"function_not_found"`) {
		t.Fatal(body)
	}
	res, body = consoleReq(t, "GET", e.ConsoleURL()+"/api/overview", "", nil)
	var snap consoleSnapshot
	if err := json.Unmarshal([]byte(body), &snap); err != nil || res.StatusCode != 200 {
		t.Fatalf("%d %s %v", res.StatusCode, body, err)
	}
	if st := snap.FunctionStats["state::set"]; st.Count != 1 || !strings.Contains(string(snap.Functions), `"engine::health::check"`) {
		t.Fatalf("snapshot %+v", snap)
	}
	res, body = consoleReq(t, "GET", e.ConsoleURL()+"/", "", nil)
	if res.StatusCode != 200 || !strings.Contains(body, "/console/app.js") || res.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("index: %d %s", res.StatusCode, body)
	}
}

// Browser-borne attacks on a loopback console: a DNS-rebinding page (its
// own Host), a cross-origin form or fetch (Origin, or no JSON content
// type) are refused.
func TestConsoleRefusesCrossSite(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.ConsoleAddr = "127.0.0.1:0" })
	u := e.ConsoleURL()
	call := `{"function_id":"state::set","payload":{"scope":"s","key":"k","value":1}}`
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      map[string]string
		want                     int
	}{
		{"rebinding GET", "GET", "/api/overview", "", map[string]string{"Host": "evil.example:3113"}, 403},
		{"rebinding page", "GET", "/", "", map[string]string{"Host": "evil.example"}, 403},
		{"cross-origin POST", "POST", "/api/call", call, map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example"}, 403},
		{"form POST", "POST", "/api/call", call, map[string]string{"Content-Type": "text/plain"}, 415},
		{"same origin", "POST", "/api/call", call, map[string]string{"Content-Type": "application/json", "Origin": u}, 200},
		{"localhost", "GET", "/api/overview", "", map[string]string{"Host": "localhost:1"}, 200},
	} {
		res, body := consoleReq(t, tc.method, u+tc.path, tc.body, tc.hdr)
		if res.StatusCode != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, res.StatusCode, body, tc.want)
		}
	}
}

// With auth.tokens the console's API needs one of them (header, or the
// cookie /api/login sets); the static page and /api/session stay open so
// that the login form can load. RBAC without tokens shuts the API.
func TestConsoleAuth(t *testing.T) {
	const tok = "console-token-0123456789"
	e := startEngine(t, func(c *Config) { c.ConsoleAddr = "127.0.0.1:0"; c.Auth.Tokens = []string{tok} })
	u := e.ConsoleURL()
	for _, p := range []string{"/api/overview", "/api/live", "/api/invocations"} {
		if res, body := consoleReq(t, "GET", u+p, "", nil); res.StatusCode != 401 || !strings.Contains(body, "AUTH_ERROR") {
			t.Errorf("GET %s without token: %d %s", p, res.StatusCode, body)
		}
	}
	if res, _ := consoleReq(t, "POST", u+"/api/call", `{"function_id":"engine::health::check"}`, jsonCT); res.StatusCode != 401 {
		t.Errorf("POST /api/call without token: %d", res.StatusCode)
	}
	if res, _ := consoleReq(t, "GET", u+"/api/overview", "", map[string]string{"Authorization": "Bearer wrong-token-0123456789"}); res.StatusCode != 401 {
		t.Errorf("wrong token: %d", res.StatusCode)
	}
	if res, _ := consoleReq(t, "GET", u+"/api/overview", "", map[string]string{"Authorization": "Bearer " + tok}); res.StatusCode != 200 {
		t.Errorf("bearer token: %d", res.StatusCode)
	}
	if res, body := consoleReq(t, "GET", u+"/api/session", "", nil); res.StatusCode != 200 || !strings.Contains(body, `"auth":true`) || !strings.Contains(body, `"authorized":false`) {
		t.Errorf("session: %d %s", res.StatusCode, body)
	}
	if res, _ := consoleReq(t, "POST", u+"/api/login", `{"token":"nope"}`, jsonCT); res.StatusCode != 401 {
		t.Errorf("login with a wrong token: %d", res.StatusCode)
	}
	res, _ := consoleReq(t, "POST", u+"/api/login", `{"token":"`+tok+`"}`, jsonCT)
	var cookie *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == consoleCookie {
			cookie = c
		}
	}
	if res.StatusCode != 200 || cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("login: %d %+v", res.StatusCode, cookie)
	}
	if res, _ := consoleReq(t, "GET", u+"/api/overview", "", map[string]string{"Cookie": consoleCookie + "=" + cookie.Value}); res.StatusCode != 200 {
		t.Errorf("cookie: %d", res.StatusCode)
	}

	r := startEngine(t, func(c *Config) { c.ConsoleAddr = "127.0.0.1:0"; c.Auth.RBAC = &auth.RBAC{} })
	if res, body := consoleReq(t, "GET", r.ConsoleURL()+"/api/overview", "", nil); res.StatusCode != 403 || !strings.Contains(body, "auth.tokens") {
		t.Errorf("RBAC without tokens: %d %s", res.StatusCode, body)
	}
}

// At most maxConsoleStreams event streams at once; the next gets 503, and
// a closed one frees its slot.
func TestConsoleStreamLimit(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.ConsoleAddr = "127.0.0.1:0" })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func() *http.Response {
		req, _ := http.NewRequestWithContext(ctx, "GET", e.ConsoleURL()+"/api/invocations", nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	var streams []*http.Response
	for range maxConsoleStreams {
		res := open()
		if res.StatusCode != 200 {
			t.Fatalf("stream %d: %d", len(streams), res.StatusCode)
		}
		streams = append(streams, res)
	}
	res := open()
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 503 || !strings.Contains(string(b), "TOO_MANY_STREAMS") {
		t.Fatalf("stream over the limit: %d %s", res.StatusCode, b)
	}
	streams[0].Body.Close()
	for e.consoleStreams.Load() >= maxConsoleStreams { // the handler notices the close
		runtime.Gosched()
	}
	if res := open(); res.StatusCode != 200 {
		t.Fatalf("after a close: %d", res.StatusCode)
	} else {
		res.Body.Close()
	}
	for _, s := range streams[1:] {
		s.Body.Close()
	}
}
