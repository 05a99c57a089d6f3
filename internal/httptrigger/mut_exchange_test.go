package httptrigger

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/wire"
)

// Tests for the mutation survivors of exchange.go (docs/testing.md,
// "Mutation testing").

// The request body channel gets as many frames of buffer as a JSON body
// needs (it is allocated up front), at most ChannelBuffer; no body gets one
// frame, a streamed body ChannelBuffer (exchange.go:66–70). A JSON body
// that does not fit is pushed concurrently with the invocation: pushed in
// line it would block before the function is even called (exchange.go:96,
// the frame count's "+" → "-").
func TestRequestBodyChannelSize(t *testing.T) {
	e := newEnv(t, Config{ChannelBuffer: 3})
	got := make(chan int, 1)
	e.inv.set("f", func(c *call) invocation.Result {
		got <- cap(c.body.q)
		_, _, _ = c.readBody()
		return value(`{"body":1}`)
	})
	e.mustRoute("t", "f", "POST", "/b")
	json := func(n int) io.Reader {
		return bytes.NewReader(append(append([]byte(`"`), bytes.Repeat([]byte("a"), n-2)...), '"'))
	}
	for _, c := range []struct {
		name string
		body io.Reader
		ct   string
		want int
	}{
		{"json 2 bytes", json(2), "application/json", 1},
		{"json one frame", json(wire.FrameSize), "application/json", 1},
		{"json one frame and a byte", json(wire.FrameSize + 1), "application/json", 2},
		{"json two frames", json(2 * wire.FrameSize), "application/json", 2},
		{"json three frames and a byte", json(3*wire.FrameSize + 1), "application/json", 3}, // one more than fits: pushed concurrently
		{"json ten frames", json(10 * wire.FrameSize), "application/json", 3},
		{"no body", nil, "text/plain", 1},
		{"empty body", strings.NewReader(""), "text/plain", 1},
		{"streamed", strings.NewReader("abc"), "text/plain", 3},
	} {
		status := make(chan int, 1)
		go func() { st, _, _ := e.do("POST", "/b", c.body, "Content-Type", c.ct); status <- st }()
		var n int
		select {
		case n = <-got:
		case <-time.After(10 * time.Second): // a buffer too small for a body pushed in line hangs the request
			t.Fatalf("%s: the function was not called", c.name)
		}
		if st := <-status; st != 200 || n != c.want {
			t.Errorf("%s: status %d, request body buffer %d frames, want %d", c.name, st, n, c.want)
		}
	}
}

// The Observe and Trace hooks (metrics and tracing in the engine) get the
// route's display form and the status, and "" for a request no route
// served (exchange.go:504, :511, x.rt != nil negated).
func TestObserveAndTraceHooks(t *testing.T) {
	type seen struct {
		route  string
		status int
	}
	observed := make(chan seen, 4)
	traced := make(chan seen, 4)
	e := newEnv(t, Config{
		Observe: func(route string, status int, _ time.Duration) { observed <- seen{route, status} },
		Trace: func(*http.Request) func(string, int) {
			return func(route string, status int) { traced <- seen{route, status} }
		},
	})
	e.inv.set("f", echo("f"))
	e.mustRoute("t", "f", "GET", "/users/:id")
	for _, c := range []struct {
		path string
		want seen
	}{
		{"/users/1", seen{"GET /users/:id", 200}},
		{"/nope", seen{"", 404}},
	} {
		if st, _, _ := e.do("GET", c.path, nil); st != c.want.status {
			t.Fatalf("%s: %d", c.path, st)
		}
		// The hooks run as the handler returns, which may be just after the
		// client has its answer.
		for name, ch := range map[string]chan seen{"Observe": observed, "Trace": traced} {
			select {
			case got := <-ch:
				if got != c.want {
					t.Errorf("%s %s: %+v, want %+v", name, c.path, got, c.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s %s: hook not called", name, c.path)
			}
		}
	}
}
