package engine

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

func TestLocalOrigin(t *testing.T) {
	for origin, want := range map[string]bool{
		"http://localhost":          true,
		"http://LOCALHOST:3000":     true,
		"https://localhost:8443":    true,
		"http://127.0.0.1:5173":     true,
		"http://127.8.9.10":         true,
		"http://[::1]:3000":         true,
		"http://[::ffff:127.0.0.1]": true,
		"https://evil.example":      false,
		"http://localhost.evil.com": false,
		"http://evil.localhost.com": false,
		"http://10.0.0.1":           false,
		"http://[::2]":              false,
		"http://0.0.0.0:3000":       false,
		"file://localhost":          false,
		"chrome-extension://abc":    false,
		"null":                      false,
		"http://user@localhost":     false,
		"http://[fe80::1%25eth0]":   false,
		"localhost:3000":            false,
	} {
		if got := localOrigin(origin); got != want {
			t.Errorf("localOrigin(%q) = %v, want %v", origin, got, want)
		}
	}
}

func TestOriginAllowList(t *testing.T) {
	e := &Engine{cfg: Config{AllowedOrigins: []string{"https://App.example.com", "http://tool.example:8080/", "null"}}}
	for origin, want := range map[string]bool{
		"":                              true, // workers
		"http://localhost:3000":         true,
		"https://app.example.com":       true,
		"https://APP.example.com":       true,
		"http://tool.example:8080":      true,
		"null":                          true,
		"http://app.example.com":        false, // another scheme
		"https://app.example.com:8443":  false,
		"http://tool.example":           false,
		"https://evil.example":          false,
		"https://app.example.com.evil":  false,
		"https://sub.app.example.com":   false,
		"https://app.example.com@evil":  false,
		"https://evil.example/?x=https": false,
	} {
		r, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		if got := e.originAllowed(r); got != want {
			t.Errorf("origin %q: allowed %v, want %v", origin, got, want)
		}
	}
	e.cfg.AllowedOrigins = []string{"*"}
	r, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
	r.Header.Set("Origin", "https://evil.example")
	if !e.originAllowed(r) {
		t.Error(`"*" must allow any origin`)
	}
}

func TestValidOrigin(t *testing.T) {
	for o, ok := range map[string]bool{
		"*": true, "null": true, "https://a.example": true, "http://a.example:8080": true, "https://a.example/": true,
		"a.example": false, "https://a.example/app": false, "https://a.example?x": false, "": false, "https://": false,
	} {
		if err := validOrigin(o); (err == nil) != ok {
			t.Errorf("validOrigin(%q) = %v", o, err)
		}
	}
}

// Every WebSocket endpoint of the worker port refuses a foreign Origin
// with 403 and a body that says why, before any upgrade or channel claim.
func TestWorkerPortRefusesForeignOrigin(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.AllowedOrigins = []string{"https://allowed.example"} })
	base := e.WorkerURL()
	for _, path := range []string{"/", "/otel", "/ws/channels/nope?key=k&dir=read"} {
		h := http.Header{"Origin": {"https://evil.example"}}
		_, resp, err := websocket.DefaultDialer.Dial(base+path, h)
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s with a foreign origin: %v, %v", path, resp, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), `"https://evil.example" is not allowed`) || !strings.Contains(string(body), "allowed_origins") {
			t.Errorf("%s: body %q", path, body)
		}
	}
	for _, origin := range []string{"", "http://localhost:3000", "http://127.0.0.1:8080", "https://allowed.example"} {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		for _, path := range []string{"/", "/otel"} {
			ws, _, err := websocket.DefaultDialer.Dial(base+path, h)
			if err != nil {
				t.Fatalf("%s with origin %q: %v", path, origin, err)
			}
			ws.Close()
		}
		// A channel end with an allowed origin reaches the hub (which knows
		// no such channel).
		_, resp, _ := websocket.DefaultDialer.Dial(base+"/ws/channels/nope?key=k&dir=read", h)
		if resp == nil || resp.StatusCode != http.StatusNotFound {
			t.Fatalf("channel with origin %q: %v", origin, resp)
		}
	}
}
