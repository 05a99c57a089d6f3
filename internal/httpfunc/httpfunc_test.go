package httpfunc

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/wire"
)

func loopbackConfig() Config {
	return Config{Enabled: true, DefaultTimeout: 5 * time.Second, MaxTimeout: 10 * time.Second,
		MaxResponseBytes: 1 << 10, MaxConcurrent: 4, SecretEnvs: []string{"TOK"}}
}

func noEnv(string) (string, bool) { return "", false }

func register(t *testing.T, x *Executor, inv string, env func(string) (string, bool)) *Spec {
	t.Helper()
	s, err := x.Register(context.Background(), "ext::fn", jsontext.Value(inv), env)
	if err != nil {
		t.Fatalf("Register(%s): %v", inv, err)
	}
	return s
}

func TestRegisterRefusals(t *testing.T) {
	safe := Config{Enabled: true, BlockPrivateIPs: true, RequireHTTPS: true, DefaultTimeout: time.Second,
		MaxTimeout: time.Second, MaxResponseBytes: 1, MaxConcurrent: 1, URLAllowlist: nil}
	allow := safe
	allow.RequireHTTPS = false
	allow.URLAllowlist = []string{"*.example.com"}
	allow.BlockPrivateIPs = false // no DNS here
	off := safe
	off.Enabled = false
	cases := []struct {
		name string
		cfg  Config
		inv  string
		want string
	}{
		{"disabled", off, `{"url":"https://example.com/"}`, "disabled"},
		{"plain http", safe, `{"url":"http://example.com/"}`, "https is required"},
		{"loopback literal", safe, `{"url":"https://127.0.0.1/"}`, "private"},
		{"ipv6 loopback", safe, `{"url":"https://[::1]/"}`, "private"},
		{"mapped loopback", safe, `{"url":"https://[::ffff:127.0.0.1]/"}`, "private"},
		{"cloud metadata", safe, `{"url":"https://169.254.169.254/latest/meta-data/"}`, "private"},
		{"private range", safe, `{"url":"https://10.1.2.3/"}`, "private"},
		{"localhost name", safe, `{"url":"https://localhost/"}`, "private"},
		{"not in allowlist", allow, `{"url":"http://other.org/"}`, "url_allowlist"},
		{"not a URL", safe, `{"url":"/relative"}`, "absolute http(s) URL"},
		{"other scheme", safe, `{"url":"file:///etc/passwd"}`, "absolute http(s) URL"},
		{"credentials", safe, `{"url":"https://u:p@example.com/"}`, "credentials"},
		{"method", safe, `{"url":"https://example.com/","method":"TRACE"}`, "method"},
		{"timeout", safe, `{"url":"https://example.com/","timeout_ms":0}`, "timeout_ms"},
		{"header name", safe, `{"url":"https://example.com/","headers":{"Bad Name":"x"}}`, "invalid header"},
		{"header injection", safe, `{"url":"https://example.com/","headers":{"X-A":"a\r\nX-B: b"}}`, "invalid header"},
		{"host header", safe, `{"url":"https://example.com/","headers":{"Host":"internal"}}`, "invalid header"},
		{"env not allowed", safe, `{"url":"https://93.184.216.34/","auth":{"type":"bearer","token_key":"AWS_SECRET_ACCESS_KEY"}}`, "secret_envs"},
		{"auth type", safe, `{"url":"https://93.184.216.34/","auth":{"type":"basic"}}`, "auth.type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg).Register(context.Background(), "f", jsontext.Value(tc.inv), noEnv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Register(%s) = %v, want an error containing %q", tc.inv, err, tc.want)
			}
		})
	}
	// Allowed: a glob match, and a listed but unset secret is still refused.
	x := New(allow)
	if _, err := x.Register(context.Background(), "f", jsontext.Value(`{"url":"http://api.example.com/x"}`), noEnv); err != nil {
		t.Fatalf("allowlisted host refused: %v", err)
	}
	c := safe
	c.SecretEnvs = []string{"TOK"}
	if _, err := New(c).Register(context.Background(), "f", jsontext.Value(`{"url":"https://93.184.216.34/","auth":{"type":"bearer","token_key":"TOK"}}`), noEnv); err == nil || !strings.Contains(err.Error(), "not set") {
		t.Fatalf("unset secret: %v", err)
	}
}

func TestPrivate(t *testing.T) {
	for _, s := range []string{"127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
		"0.0.0.0", "::1", "fe80::1", "fd00::1", "::ffff:10.0.0.1", "64:ff9b::7f00:1", "224.0.0.1", "::"} {
		if !Private(netip.MustParseAddr(s)) {
			t.Errorf("Private(%s) = false", s)
		}
	}
	for _, s := range []string{"1.1.1.1", "93.184.216.34", "2606:4700::1111"} {
		if Private(netip.MustParseAddr(s)) {
			t.Errorf("Private(%s) = true", s)
		}
	}
}

func TestCallRequestAndResult(t *testing.T) {
	var got *http.Request
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, body = r, must(io.ReadAll(r.Body))
		w.Write([]byte(` {"ok":true} `))
	}))
	defer srv.Close()
	x := New(loopbackConfig())
	x.now = func() time.Time { return time.Unix(1700000000, 0) }
	env := func(k string) (string, bool) { return "s3cret", k == "TOK" }
	cases := []struct{ auth, header, want string }{
		{`{"type":"bearer","token_key":"TOK"}`, "Authorization", "Bearer s3cret"},
		{`{"type":"api_key","header":"X-Api-Key","value_key":"TOK"}`, "X-Api-Key", "s3cret"},
		{`{"type":"hmac","secret_key":"TOK"}`, "X-Iii-Signature", Sign([]byte(`{"a":1}`), "s3cret", "1700000000")},
	}
	for _, tc := range cases {
		s := register(t, x, `{"url":"`+srv.URL+`/hook?q=1","method":"put","headers":{"X-Custom":"v"},"auth":`+tc.auth+`}`, env)
		v, e := s.Call(context.Background(), &invocation.Request{InvocationID: "inv-1", Data: jsontext.Value(`{"a":1}`), Traceparent: "00-abc-def-01"})
		if e != nil || string(v) != `{"ok":true}` {
			t.Fatalf("Call = %s, %v", v, e)
		}
		if got.Method != "PUT" || got.URL.Path != "/hook" || got.URL.RawQuery != "q=1" || string(body) != `{"a":1}` {
			t.Fatalf("request %s %s body %s", got.Method, got.URL, body)
		}
		h := got.Header
		for k, want := range map[string]string{"Content-Type": "application/json", "X-Custom": "v", "X-Iii-Function-Path": "ext::fn",
			"X-Iii-Invocation-Id": "inv-1", "X-Iii-Timestamp": "1700000000", "Traceparent": "00-abc-def-01", tc.header: tc.want} {
			if h.Get(k) != want {
				t.Errorf("header %s = %q, want %q", k, h.Get(k), want)
			}
		}
	}
	if !strings.HasPrefix(Sign(nil, "k", "1"), "sha256=") {
		t.Fatal("signature prefix")
	}
}

func TestCallOutcomes(t *testing.T) {
	other := int32(0)
	elsewhere := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { atomic.AddInt32(&other, 1) }))
	defer elsewhere.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/text":
			w.Write([]byte("not json"))
		case "/coded":
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte(`{"error":{"code":"UPSTREAM","message":"upstream failed"}}`))
		case "/plain500":
			w.WriteHeader(500)
			w.Write([]byte("boom"))
		case "/huge":
			w.Write([]byte(`"` + strings.Repeat("x", 4<<10) + `"`))
		case "/redirect":
			http.Redirect(w, r, elsewhere.URL, http.StatusFound)
		}
	}))
	defer srv.Close()
	x := New(loopbackConfig())
	cases := []struct{ path, value, code string }{
		{"/empty", "", ""},
		{"/text", "", "invalid_response"},
		{"/coded", "", "UPSTREAM"},
		{"/plain500", "", "http_error"},
		{"/huge", "", CodeResponseTooLarge},
		{"/redirect", "", ""},
	}
	for _, tc := range cases {
		s := register(t, x, `{"url":"`+srv.URL+tc.path+`"}`, noEnv)
		v, e := s.Call(context.Background(), &invocation.Request{})
		code := ""
		if e != nil {
			code = e.Code
		}
		if string(v) != tc.value || code != tc.code {
			t.Errorf("%s: Call = %s, %v; want %q, code %q", tc.path, v, e, tc.value, tc.code)
		}
	}
	if n := atomic.LoadInt32(&other); n != 0 {
		t.Fatalf("a redirect was followed (%d requests to its target)", n)
	}
}

// TestTimeoutAndConcurrency: a server that never answers costs the call its
// timeout, and holds one of the max_concurrent slots until then.
func TestTimeoutAndConcurrency(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fast" {
			return
		}
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release) // before Close: a handler still waiting returns
	cfg := loopbackConfig()
	cfg.MaxConcurrent = 1
	x := New(cfg)
	slow := register(t, x, `{"url":"`+srv.URL+`","timeout_ms":300}`, noEnv)
	start := time.Now()
	done := make(chan *wire.ErrorBody, 1)
	slow.Run(context.Background(), &invocation.Request{}, func(_ jsontext.Value, e *wire.ErrorBody) { done <- e })
	<-arrived
	busy := make(chan *wire.ErrorBody, 1)
	slow.Run(context.Background(), &invocation.Request{}, func(_ jsontext.Value, e *wire.ErrorBody) { busy <- e })
	if e := <-busy; e == nil || e.Code != CodeBusy {
		t.Fatalf("second call with max_concurrent 1 = %v, want %s", e, CodeBusy)
	}
	e := <-done
	if e == nil || e.Code != "http_request_failed" || !strings.Contains(e.Message, "timed out") {
		t.Fatalf("slow call = %v, want a timeout", e)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timeout of 300ms took %s", d)
	}
	// The slot is free again.
	fast := register(t, x, `{"url":"`+srv.URL+`/fast"}`, noEnv)
	again := make(chan *wire.ErrorBody, 1)
	fast.Run(context.Background(), &invocation.Request{}, func(_ jsontext.Value, e *wire.ErrorBody) { again <- e })
	if e := <-again; e != nil {
		t.Fatalf("call after the slot freed: %v", e)
	}
}

// TestDialTimeCheck: with block_private_ips, a spec whose host passed the
// registration check (as a name that later resolves elsewhere would) still
// cannot connect to a loopback address.
func TestDialTimeCheck(t *testing.T) {
	hits := int32(0)
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { atomic.AddInt32(&hits, 1) }))
	defer srv.Close()
	cfg := loopbackConfig()
	cfg.BlockPrivateIPs = true
	x := New(cfg)
	s := &Spec{FunctionID: "f", URL: srv.URL, Method: "POST", Timeout: 5 * time.Second, x: x}
	_, e := s.Call(context.Background(), &invocation.Request{})
	if e == nil || e.Code != "http_request_failed" || !strings.Contains(e.Message, "private") {
		t.Fatalf("Call to loopback = %v, want refused at dial", e)
	}
	if atomic.LoadInt32(&hits) != 0 {
		t.Fatal("the loopback server was reached")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
