package httptrigger

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

func TestPayload(t *testing.T) {
	e := newEnv(t, Config{})
	got := make(chan *call, 1)
	e.inv.set("f", func(c *call) invocation.Result { got <- c; return value(`{"status_code":204}`) })
	err := e.srv.RegisterTrigger(&registry.Trigger{ID: "t", Type: "http", FunctionID: "f",
		Config:   jsontext.Value(`{"api_path":"/items/:id","http_method":"post"}`),
		Metadata: jsontext.Value(`{"team":"x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	st, _, _ := e.do("POST", "/items/a%2Fb?q=hello+world&n=1&n=2", strings.NewReader(`{"name": "x"}`),
		"Content-Type", "application/json; charset=utf-8", "X-Custom", "v", "Traceparent", "00-abc-def-01",
		"X-Forwarded-For", "10.0.0.1")
	if st != 204 {
		t.Fatalf("status %d", st)
	}
	c := <-got
	in := c.in
	if in.QueryParams["q"] != "hello world" || in.QueryParams["n"] != "2" {
		t.Errorf("query_params %v", in.QueryParams)
	}
	if in.PathParams["id"] != "a%2Fb" { // an encoded '/' stays encoded
		t.Errorf("path_params %v", in.PathParams)
	}
	if in.Headers["x-custom"] != "v" || in.Headers["host"] == "" || in.Headers["content-type"] != "application/json; charset=utf-8" ||
		in.Headers["x-forwarded-for"] != "10.0.0.1, 127.0.0.1" {
		t.Errorf("headers %v", in.Headers)
	}
	if in.Path != "/items/:id" || in.Method != "POST" {
		t.Errorf("path %q method %q", in.Path, in.Method)
	}
	if string(in.Body) != `{"name": "x"}` {
		t.Errorf("body %s", in.Body)
	}
	if in.Trigger != (wire.HTTPTriggerInfo{Type: "http", Path: "/items/:id", Method: "POST"}) {
		t.Errorf("trigger %+v", in.Trigger)
	}
	if in.RequestBody == nil || in.RequestBody.Direction != "read" || in.Response == nil || in.Response.Direction != "write" {
		t.Errorf("refs %+v %+v", in.RequestBody, in.Response)
	}
	if string(c.req.Metadata) != `{"team":"x"}` || c.req.Traceparent != "00-abc-def-01" {
		t.Errorf("metadata %s traceparent %q", c.req.Metadata, c.req.Traceparent)
	}
	// Key order of the reference engine.
	var keys []string
	dec := jsontext.NewDecoder(bytes.NewReader(c.req.Data))
	dec.ReadToken()
	for dec.PeekKind() != '}' {
		k, _ := dec.ReadToken()
		keys = append(keys, k.String())
		dec.SkipValue()
	}
	if want := "query_params path_params headers path method body trigger request_body response"; strings.Join(keys, " ") != want {
		t.Errorf("keys %v", keys)
	}
	// The raw JSON body is in request_body too.
	if b, _, err := c.readBody(); err != nil || string(b) != `{"name": "x"}` {
		t.Errorf("request_body %q %v", b, err)
	}

	// Not JSON, invalid JSON, empty: body is null.
	for _, h := range [][2]string{{"text/plain", "hi"}, {"application/json", "{bad"}, {"application/json", ""}} {
		e.do("POST", "/items/1", strings.NewReader(h[1]), "Content-Type", h[0])
		if c := <-got; string(c.in.Body) != "null" {
			t.Errorf("%s %q: body %s", h[0], h[1], c.in.Body)
		}
	}
}

func TestRequestBodyStreams(t *testing.T) {
	e := newEnv(t, Config{MaxJSONBody: 1 << 20})
	type sum struct {
		n, frames int
		hash      [32]byte
	}
	sums := make(chan sum, 1)
	calls := make(chan *call, 1)
	e.inv.set("hash", func(c *call) invocation.Result {
		select {
		case calls <- c:
		default:
		}
		b, frames, err := c.readBody()
		if err != nil {
			return failure("read", err.Error())
		}
		sums <- sum{len(b), frames, sha256.Sum256(b)}
		return value(`{"body":"ok"}`)
	})
	e.mustRoute("t", "hash", "POST", "/upload")

	data := make([]byte, 5<<20+123)
	rand.Read(data)
	// An io.Reader that is not a bytes.Reader forces a chunked upload of
	// unknown length.
	st, _, body := e.do("POST", "/upload", io.MultiReader(bytes.NewReader(data)), "Content-Type", "text/csv")
	if st != 200 || body != `"ok"` {
		t.Fatalf("%d %s", st, body)
	}
	s := <-sums
	if s.n != len(data) || s.hash != sha256.Sum256(data) {
		t.Fatalf("function saw %d bytes", s.n)
	}
	if s.frames < len(data)/wire.FrameSize {
		t.Fatalf("%d frames", s.frames)
	}
	if c := <-calls; c.in.Headers["transfer-encoding"] != "chunked" || c.in.Headers["content-type"] != "text/csv" {
		t.Fatalf("headers %v", c.in.Headers)
	}
	// Both channels of the (finished) exchange were retired.
	if n := e.hub.retired.Load(); n != 2 {
		t.Fatalf("%d ends retired", n)
	}

	// JSON bodies are bounded: 413 with an envelope, from Content-Length
	// or while reading.
	big := bytes.Repeat([]byte(" "), 1<<20+1)
	big[0] = '1'
	for _, r := range []io.Reader{bytes.NewReader(big), io.MultiReader(bytes.NewReader(big))} {
		st, _, body = e.do("POST", "/upload", r, "Content-Type", "application/json")
		if st != 413 || !strings.Contains(body, `"code":"PAYLOAD_TOO_LARGE"`) {
			t.Fatalf("%d %s", st, body)
		}
	}
}

func TestBufferedMapping(t *testing.T) {
	e := newEnv(t, Config{})
	result := make(chan string, 1)
	e.inv.set("f", func(c *call) invocation.Result { return value(<-result) })
	e.mustRoute("t", "f", "GET", "/r")
	cases := []struct {
		result string
		status int
		ct     string
		body   string
		header [2]string
	}{
		{`{"status_code":201,"body":{"created":true}}`, 201, "application/json", `{"created":true}`, [2]string{}},
		{`{"body":"hi"}`, 200, "application/json", `"hi"`, [2]string{}},
		{`{}`, 200, "application/json", `{}`, [2]string{}},
		{`"bare"`, 200, "application/json", `{}`, [2]string{}},
		{`42`, 200, "application/json", `{}`, [2]string{}},
		{`{"status_code":-1,"body":1}`, 200, "application/json", `1`, [2]string{}},
		{`{"status_code":1000,"body":1}`, 200, "application/json", `1`, [2]string{}},
		{`{"status_code":"201","body":1}`, 200, "application/json", `1`, [2]string{}},
		{`{"status_code":418.0,"body":null}`, 418, "application/json", `null`, [2]string{}},
		{`{"headers":{"content-type":"text/plain"},"body":"raw"}`, 200, "text/plain", `raw`, [2]string{}},
		{`{"headers":{"Content-Type":"text/plain"},"body":null}`, 200, "text/plain", ``, [2]string{}},
		{`{"headers":{"content-type":"text/plain"},"body":{"a":1}}`, 200, "text/plain", `{"a":1}`, [2]string{}},
		{`{"headers":{"content-type":"application/json"},"body":[1,2]}`, 200, "application/json", `[1,2]`, [2]string{}},
		{`{"headers":{"content-type":"application/json"},"body":"{\"s\":1}"}`, 200, "application/json", `{"s":1}`, [2]string{}},
		{`{"headers":["X-A: b","bad","Content-Type: text/csv",5,"Set-Cookie: a=1","Set-Cookie: b=2"],"body":"a,b"}`, 200, "text/csv", `a,b`, [2]string{"X-A", "b"}},
		{`{"headers":{"x-n":5,"x-s":"s","bad name":"v","x-crlf":"a\r\nb"},"body":1}`, 200, "application/json", `1`, [2]string{"X-S", "s"}},
		{`{"status_code":302,"headers":{"location":"/elsewhere"}}`, 302, "application/json", `{}`, [2]string{"Location", "/elsewhere"}},
	}
	noRedirect := *e.ts.Client()
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, c := range cases {
		result <- c.result
		res, err := noRedirect.Get(e.url + "/r")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != c.status || res.Header.Get("Content-Type") != c.ct || string(b) != c.body {
			t.Errorf("%s → %d %q %s; want %d %q %s", c.result, res.StatusCode, res.Header.Get("Content-Type"), b, c.status, c.ct, c.body)
		}
		if c.header[0] != "" && res.Header.Get(c.header[0]) != c.header[1] {
			t.Errorf("%s: header %s = %q", c.result, c.header[0], res.Header.Get(c.header[0]))
		}
		if strings.Contains(c.result, "Set-Cookie") && strings.Join(res.Header.Values("Set-Cookie"), ";") != "a=1;b=2" {
			t.Errorf("%s: Set-Cookie %v", c.result, res.Header.Values("Set-Cookie"))
		}
		if res.Header.Get("X-N") != "" || res.Header.Get("X-Crlf") != "" {
			t.Errorf("%s: invalid header sent", c.result)
		}
	}
}

func TestStreamedResponse(t *testing.T) {
	e := newEnv(t, Config{})
	// Controls, then body frames, then a close: the helper's exact sequence.
	e.inv.set("stream", func(c *call) invocation.Result {
		c.status(201)
		c.headers(map[string]string{"content-type": "text/plain", "x-a": "b"})
		c.send(true, []byte(`not json`)) // ignored
		c.headers(map[string]string{"x-a": "c"})
		c.send(true, []byte(`{"type":"set_headers","headers":{"set-cookie":["a=1","b=2"],"x-n":5}}`))
		c.write("hello ")
		c.status(500) // after the first body frame: ignored
		c.write("world")
		c.end()
		return invocation.Result{}
	})
	e.mustRoute("t", "stream", "GET", "/s")
	st, h, body := e.do("GET", "/s", nil)
	if st != 201 || h.Get("Content-Type") != "text/plain" || h.Get("X-A") != "c" || body != "hello world" ||
		strings.Join(h.Values("Set-Cookie"), ";") != "a=1;b=2" || h.Get("X-N") != "" {
		t.Fatalf("%d %v %q", st, h, body)
	}

	// The first binary frame wins over a non-null result that comes later.
	e.inv.set("stream", func(c *call) invocation.Result {
		c.write("streamed")
		c.end()
		<-c.resp.gone // the engine is done with the channel
		return value(`{"body":"buffered"}`)
	})
	if _, _, body := e.do("GET", "/s", nil); body != "streamed" {
		t.Fatalf("got %q", body)
	}

	// A close without body frames: streamed mode, empty body, controls applied.
	e.inv.set("stream", func(c *call) invocation.Result {
		c.status(202)
		c.end()
		return invocation.Result{}
	})
	if st, h, body := e.do("GET", "/s", nil); st != 202 || body != "" || h.Get("Content-Length") != "0" {
		t.Fatalf("%d %q %v", st, body, h)
	}

	// A non-null result before any body frame: buffered, controls discarded.
	e.inv.set("stream", func(c *call) invocation.Result {
		c.status(500)
		return value(`{"status_code":200,"body":"r"}`)
	})
	if st, _, body := e.do("GET", "/s", nil); st != 200 || body != `"r"` {
		t.Fatalf("%d %q", st, body)
	}
}

// headerArrival starts a GET and returns when the response headers have
// arrived (the client's Do returns at that point). The callers' functions
// block until the test releases them after this returns, so headers that
// arrive at all arrived before the body: the order is causal, not timed.
func headerArrival(t *testing.T, e *env, path string) *http.Response {
	t.Helper()
	res, err := e.ts.Client().Get(e.url + path)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestHeadersFlushRules(t *testing.T) {
	e := newEnv(t, Config{HeaderSettle: 10 * time.Millisecond})
	release := make(chan struct{})

	// 1. set_headers with text/event-stream: headers go out at once, while
	// the function is still running and no event was written yet.
	e.inv.set("sse", func(c *call) invocation.Result {
		c.headers(map[string]string{"content-type": "text/event-stream", "cache-control": "no-cache"})
		<-release
		c.write("data: 1\n\n")
		c.end()
		return invocation.Result{}
	})
	e.mustRoute("sse", "sse", "GET", "/sse")
	res := headerArrival(t, e, "/sse")
	if res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("headers %v", res.Header)
	}
	close(release)
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "data: 1\n\n" {
		t.Fatalf("body %q", b)
	}

	// 2. The function returned no result, has set headers and still writes
	// later: headers go out after the settle window.
	release = make(chan struct{})
	e.inv.set("later", func(c *call) invocation.Result {
		c.status(207)
		c.headers(map[string]string{"content-type": "application/x-ndjson"})
		go func() {
			<-release
			c.write("{}\n")
			c.end()
		}()
		return invocation.Result{}
	})
	e.mustRoute("later", "later", "GET", "/later")
	res = headerArrival(t, e, "/later")
	if res.StatusCode != 207 {
		t.Fatalf("status %d", res.StatusCode)
	}
	close(release)
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "{}\n" {
		t.Fatalf("body %q", b)
	}

	// 3. An empty binary frame starts the response (the Go adapter's Flush
	// after WriteHeader) even while the function runs.
	release = make(chan struct{})
	e.inv.set("flush", func(c *call) invocation.Result {
		c.status(203)
		c.write("")
		<-release
		c.write("x")
		c.end()
		return invocation.Result{}
	})
	e.mustRoute("flush", "flush", "GET", "/flush")
	res = headerArrival(t, e, "/flush")
	close(release)
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 203 || string(b) != "x" {
		t.Fatalf("%d %q", res.StatusCode, b)
	}
}

func TestSSEEventsArriveOneByOne(t *testing.T) {
	e := newEnv(t, Config{})
	next := make(chan struct{})
	e.inv.set("sse", func(c *call) invocation.Result {
		c.status(200)
		c.headers(map[string]string{"content-type": "text/event-stream"})
		for range 3 {
			<-next
			c.write("data: tick\n\n")
		}
		c.end()
		return invocation.Result{}
	})
	e.mustRoute("sse", "sse", "GET", "/sse")
	res, err := e.ts.Client().Get(e.url + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	rd := bufio.NewReader(res.Body)
	// Each event must be readable before the next one is written: the
	// function only writes event i+1 after the client has read event i.
	for i := range 3 {
		next <- struct{}{}
		line, err := rd.ReadString('\n')
		if err != nil || line != "data: tick\n" {
			t.Fatalf("event %d: %q %v", i, line, err)
		}
		rd.ReadString('\n')
	}
	if _, err := rd.ReadByte(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

// TestErrors: every error a request can meet, as status and JSON body. The
// routes that must time out live on a server with a short timeout of their
// own; the others get a generous one, so that a loaded machine cannot turn
// their answers into timeouts.
func TestErrors(t *testing.T) {
	e := newEnv(t, Config{Timeout: 10 * time.Second})
	short := newEnv(t, Config{Timeout: 150 * time.Millisecond})
	e.mustRoute("gone", "missing", "GET", "/gone")
	e.inv.set("boom", func(c *call) invocation.Result { return failure("bad_input", "name is required") })
	e.mustRoute("boom", "boom", "GET", "/boom")
	e.inv.set("stopped", func(c *call) invocation.Result { return failure(wire.CodeInvocationStopped, "Invocation stopped") })
	e.mustRoute("stopped", "stopped", "GET", "/stopped")
	e.inv.set("congested", func(c *call) invocation.Result {
		if c.req.MinTimeout != 10*time.Second { // the engine deadline must not cut before http.timeout
			return failure("bad_min_timeout", c.req.MinTimeout.String())
		}
		return failure(wire.CodeWorkerCongested, "not reading")
	})
	e.mustRoute("congested", "congested", "GET", "/congested")
	e.inv.set("deadline", func(c *call) invocation.Result { return failure(wire.CodeTimeout, "invocation timed out after 1ms") })
	e.mustRoute("deadline", "deadline", "GET", "/deadline")
	// Returns nothing and never touches the response channel.
	short.inv.set("silent", func(c *call) invocation.Result { return invocation.Result{} })
	short.mustRoute("silent", "silent", "GET", "/silent")
	// Still running when the timeout strikes.
	short.inv.set("slow", func(c *call) invocation.Result { <-c.resp.gone; return invocation.Result{} })
	short.mustRoute("slow", "slow", "GET", "/slow")
	// The response channel breaks before anything was sent.
	e.inv.set("broken", func(c *call) invocation.Result { c.resp.end(errors.New("writer vanished")); return invocation.Result{} })
	e.mustRoute("broken", "broken", "GET", "/broken")

	cases := []struct {
		path, code, msg string
		status          int
	}{
		{"/gone", "function_not_found", "function missing of route GET /gone is not available", 503},
		{"/boom", "bad_input", "name is required", 500},
		{"/stopped", "invocation_stopped", "Invocation stopped", 500},
		{"/congested", "worker_congested", "not reading", 503},
		{"/deadline", "TIMEOUT", "invocation timed out after 1ms", 504},
		{"/silent", "TIMEOUT", "function silent did not start a response within 150ms", 504},
		{"/slow", "TIMEOUT", "function slow did not start a response within 150ms", 504},
		{"/broken", "RESPONSE_STREAM_BROKEN", "writer vanished", 502},
	}
	for _, c := range cases {
		srv := e
		if c.path == "/silent" || c.path == "/slow" {
			srv = short
		}
		st, h, body := srv.do("GET", c.path, nil)
		var env struct {
			Error struct{ Code, Message, ErrorID string }
		}
		if err := json.Unmarshal([]byte(body), &env, json.MatchCaseInsensitiveNames(true)); err != nil {
			t.Errorf("%s: %d %q: %v", c.path, st, body, err)
			continue
		}
		if st != c.status || env.Error.Code != c.code || !strings.Contains(env.Error.Message, c.msg) || h.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %s; want %d %s %q", c.path, st, body, c.status, c.code, c.msg)
		}
		if !strings.Contains(body, `"error_id":"`) {
			t.Errorf("%s: no error_id in %s", c.path, body)
		}
	}

	// Channels cannot be created.
	e.hub.fail.Store(true)
	if st, _, body := e.do("GET", "/boom", nil); st != 503 || !strings.Contains(body, "CHANNELS_UNAVAILABLE") {
		t.Errorf("no channels: %d %s", st, body)
	}
	e.hub.fail.Store(false)
}

func TestStreamBrokenAfterStartIsAnError(t *testing.T) {
	e := newEnv(t, Config{})
	e.inv.set("f", func(c *call) invocation.Result {
		c.write("partial")
		c.resp.end(errors.New("worker vanished"))
		return invocation.Result{}
	})
	e.mustRoute("t", "f", "GET", "/f")
	res, err := e.ts.Client().Get(e.url + "/f")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err == nil {
		t.Fatalf("a broken stream ended cleanly with %q", b)
	}
}

func TestClientDisconnectFailsWriter(t *testing.T) {
	e := newEnv(t, Config{})
	writerErr := make(chan error, 1)
	e.inv.set("f", func(c *call) invocation.Result {
		c.headers(map[string]string{"content-type": "text/event-stream"})
		for {
			if err := c.write("data: x\n\n"); err != nil {
				writerErr <- err
				return invocation.Result{}
			}
		}
	})
	e.mustRoute("t", "f", "GET", "/f")
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/f", nil)
	res, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(res.Body, make([]byte, 100))
	cancel()
	res.Body.Close()
	select {
	case err := <-writerErr:
		if !errors.Is(err, errReaderGone) {
			t.Fatalf("writer error %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the function's writer never failed")
	}

	// The same while the function has sent nothing yet: the request
	// context ends the wait and closes the response channel.
	started := make(chan struct{})
	e.inv.set("f", func(c *call) invocation.Result {
		close(started)
		<-c.resp.gone
		writerErr <- c.write("late")
		return invocation.Result{}
	})
	ctx, cancel = context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx, "GET", e.url+"/f", nil)
	go func() { <-started; cancel() }()
	if _, err := e.ts.Client().Do(req); err == nil {
		t.Fatal("request succeeded")
	}
	select {
	case err := <-writerErr:
		if !errors.Is(err, errReaderGone) {
			t.Fatalf("writer error %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the response channel was not closed")
	}
}

func TestCORS(t *testing.T) {
	t.Run("permissive", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.inv.set("f", echo("f"))
		e.mustRoute("t", "f", "PUT", "/x")
		st, h, _ := e.do("OPTIONS", "/x", nil, "Origin", "https://a.example", "Access-Control-Request-Method", "PUT",
			"Access-Control-Request-Headers", "x-token")
		if st != 204 || h.Get("Access-Control-Allow-Origin") != "*" || h.Get("Access-Control-Allow-Methods") != "PUT" ||
			h.Get("Access-Control-Allow-Headers") != "x-token" {
			t.Fatalf("preflight %d %v", st, h)
		}
		st, h, _ = e.do("PUT", "/x", nil, "Origin", "https://a.example")
		if st != 200 || h.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("simple %d %v", st, h)
		}
		// Errors carry CORS headers too, so the page can read them.
		if st, h, _ = e.do("GET", "/nope", nil, "Origin", "https://a.example"); st != 404 || h.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("404 %d %v", st, h)
		}
	})
	t.Run("restricted", func(t *testing.T) {
		e := newEnv(t, Config{CORS: &CORS{AllowedOrigins: []string{"https://app.example"}, AllowedMethods: []string{"get", "post"}}})
		e.inv.set("f", echo("f"))
		e.mustRoute("t", "f", "POST", "/x")
		st, h, _ := e.do("OPTIONS", "/x", nil, "Origin", "https://app.example", "Access-Control-Request-Method", "POST")
		if st != 204 || h.Get("Access-Control-Allow-Origin") != "https://app.example" || h.Get("Access-Control-Allow-Methods") != "GET, POST" ||
			!strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
			t.Fatalf("preflight %d %v", st, h)
		}
		st, _, body := e.do("OPTIONS", "/x", nil, "Origin", "https://evil.example", "Access-Control-Request-Method", "POST")
		if st != 403 || !strings.Contains(body, "FORBIDDEN") {
			t.Fatalf("foreign preflight %d %s", st, body)
		}
		st, h, _ = e.do("POST", "/x", nil, "Origin", "https://evil.example")
		if st != 200 || h.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("foreign simple %d %v", st, h)
		}
	})
	// An empty list leaves that dimension open (killed the ">= 0" mutants of
	// newCORSPolicy's length checks).
	t.Run("only methods restricted", func(t *testing.T) {
		e := newEnv(t, Config{CORS: &CORS{AllowedOrigins: []string{}, AllowedMethods: []string{"post"}}})
		e.inv.set("f", echo("f"))
		e.mustRoute("t", "f", "POST", "/x")
		st, h, _ := e.do("OPTIONS", "/x", nil, "Origin", "https://any.example", "Access-Control-Request-Method", "POST")
		if st != 204 || h.Get("Access-Control-Allow-Origin") != "*" || h.Get("Access-Control-Allow-Methods") != "POST" {
			t.Fatalf("preflight %d %v", st, h)
		}
	})
	t.Run("only origins restricted", func(t *testing.T) {
		e := newEnv(t, Config{CORS: &CORS{AllowedOrigins: []string{"https://app.example"}, AllowedMethods: []string{}}})
		e.inv.set("f", echo("f"))
		e.mustRoute("t", "f", "PUT", "/x")
		st, h, _ := e.do("OPTIONS", "/x", nil, "Origin", "https://app.example", "Access-Control-Request-Method", "PUT")
		if st != 204 || h.Get("Access-Control-Allow-Origin") != "https://app.example" || h.Get("Access-Control-Allow-Methods") != "PUT" {
			t.Fatalf("preflight %d %v", st, h)
		}
	})
}

func TestCloseEndsWaitingRequests(t *testing.T) {
	e := newEnv(t, Config{})
	started := make(chan struct{})
	e.inv.set("f", func(c *call) invocation.Result { close(started); <-c.resp.gone; return invocation.Result{} })
	e.mustRoute("t", "f", "GET", "/f")
	go func() { <-started; e.srv.Close() }()
	st, _, body := e.do("GET", "/f", nil)
	if st != 503 || !strings.Contains(body, wire.CodeEngineShuttingDown) {
		t.Fatalf("%d %s", st, body)
	}
}

// A body the function never reads must not break the connection for the
// requests that follow on it (net/http reads a keep-alive connection in the
// background once a body is consumed).
func TestKeepAliveAfterUnreadBodies(t *testing.T) {
	e := newEnv(t, Config{})
	e.inv.set("f", func(c *call) invocation.Result { return value(`{"body":"ok"}`) })
	e.mustRoute("t", "f", "POST", "/f")
	for i := range 200 {
		ct := "application/json"
		if i%2 == 1 {
			ct = "text/plain"
		}
		st, _, body := e.do("POST", "/f", strings.NewReader(`{"n":1}`), "Content-Type", ct)
		if st != 200 || body != `"ok"` {
			t.Fatalf("request %d: %d %q", i, st, body)
		}
	}
}

// A client that stalls mid-upload gets its answer, and then its connection
// is closed rather than held forever.
func TestStalledUploadIsCutOff(t *testing.T) {
	e := newEnv(t, Config{})
	e.inv.set("f", func(c *call) invocation.Result { return value(`{"status_code":400,"body":"too slow"}`) })
	e.mustRoute("t", "f", "POST", "/f")
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /f HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 1000000\r\n\r\nfirst,row\n")
	rd := bufio.NewReader(conn)
	res, err := http.ReadResponse(rd, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 400 || string(b) != `"too slow"` {
		t.Fatalf("%d %q", res.StatusCode, b)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := rd.ReadByte(); err != io.EOF {
		t.Fatalf("connection not closed: %v", err)
	}
}
