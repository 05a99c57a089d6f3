package interop

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// Attacks on the HTTP trigger listener (issue 9, defects 3, 10 and 11):
// path traversal through decoded parameters, in-flight requests dropped at
// shutdown, idle keep-alive connections held forever, unbounded concurrent
// requests and buffered JSON bodies.

// httpAttackClient is a net/http client whose connections end with the test.
func httpAttackClient(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: callTimeout}
}

// httpAttackError is the engine's JSON error envelope.
type httpAttackError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// httpAttackGet GETs url and returns the status, headers and body.
func httpAttackGet(t testing.TB, c *http.Client, url string) (int, http.Header, string) {
	t.Helper()
	res, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return res.StatusCode, res.Header, string(b)
}

// TestAttackHTTPPathTraversal sends encoded separators and dot segments in
// a :param. The seed's Node download function (seed_download.mjs, iii-sdk
// 0.22.1, which opens `${DATA_DIR}/${filename}`) must not serve a file
// outside DATA_DIR, and a Go function must receive '/', '\' and NUL still
// percent-encoded and ".." segments as sent; a normal download still works.
// On 8b50cfc: /node22/files/..%2Fsecret.txt served the file next to
// DATA_DIR, and the Go function got filename "../../etc/passwd".
func TestAttackHTTPPathTraversal(t *testing.T) {
	node22 := flavourNamed("node-0.22.1")
	node22.require(t)
	root := t.TempDir()
	dataDir := filepath.Join(root, "data")
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	const secret = "the engine must never serve this"
	if err := os.WriteFile(filepath.Join(root, "secret.txt"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "report.txt"), []byte("report"), 0o600); err != nil {
		t.Fatal(err)
	}

	e := startEngine(t, "127.0.0.1:0")
	c := connectGo(t, e, "go-traversal")
	// The Go function echoes what it received.
	for route, fn := range map[string]string{"GET /go/files/:filename": "go.echo::filename", "GET /go/tree/*rest": "go.echo::rest"} {
		err := c.HandleHTTPFunc(route, fn, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{"filename": r.PathValue("filename"), "rest": r.PathValue("rest")})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	startWorker(t, node22, e, "seed_download.mjs", node22.Prefix, "DATA_DIR="+dataDir)
	ctx := ctxFor(t, startTimeout)
	waitHTTPTrigger(ctx, t, c, "go.echo::filename")
	waitHTTPTrigger(ctx, t, c, "go.echo::rest")
	waitHTTPTrigger(ctx, t, c, node22.Prefix+".files::download")
	hc := httpAttackClient(t)

	// The Node seed: the secret next to DATA_DIR is out of reach, whatever
	// the function then answers (it fails to open a file of that name).
	for _, p := range []string{"..%2Fsecret.txt", "%2E%2E%2Fsecret.txt", "..%5Csecret.txt", "%2E%2E"} {
		st, _, body := httpAttackGet(t, hc, e.HTTPURL+"/"+node22.Prefix+"/files/"+p)
		if strings.Contains(body, secret) {
			t.Errorf("GET /%s/files/%s = %d: the function served the file outside DATA_DIR", node22.Prefix, p, st)
		}
	}
	if st, _, body := httpAttackGet(t, hc, e.HTTPURL+"/"+node22.Prefix+"/files/report.txt"); st != 200 || body != "report" {
		t.Errorf("a normal download: %d %q", st, body)
	}

	// The Go function sees exactly what the engine passes in path_params.
	for _, c := range []struct{ path, key, want string }{
		{"/go/files/..%2F..%2Fetc%2Fpasswd", "filename", "..%2F..%2Fetc%2Fpasswd"},
		{"/go/files/..%5C..%5Cwin.ini", "filename", "..%5C..%5Cwin.ini"},
		{"/go/files/a%00b", "filename", "a%00b"},
		{"/go/files/%2E%2E", "filename", "%2E%2E"},
		{"/go/files/.%2e", "filename", ".%2e"},
		{"/go/files/a%20b.txt", "filename", "a b.txt"}, // everything else is decoded
		{"/go/tree/a/%2E%2E/%2E%2E/etc/passwd", "rest", "a/%2E%2E/%2E%2E/etc/passwd"},
		{"/go/tree/a/b%2Fc", "rest", "a/b%2Fc"},
	} {
		st, _, body := httpAttackGet(t, hc, e.HTTPURL+c.path)
		var got map[string]string
		if st != 200 || json.Unmarshal([]byte(body), &got) != nil {
			t.Errorf("GET %s = %d %q", c.path, st, body)
			continue
		}
		if got[c.key] != c.want {
			t.Errorf("GET %s: the function got %s %q, want %q", c.path, c.key, got[c.key], c.want)
		}
	}
}

// httpAttackReply is one HTTP exchange's outcome, for requests sent on
// goroutines.
type httpAttackReply struct {
	status int
	header http.Header
	body   string
	err    error
	at     time.Time
}

// httpAttackDo sends req on a goroutine; the reply arrives on the channel.
func httpAttackDo(c *http.Client, req *http.Request) <-chan httpAttackReply {
	out := make(chan httpAttackReply, 1)
	go func() {
		res, err := c.Do(req)
		if err != nil {
			out <- httpAttackReply{err: err, at: time.Now()}
			return
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		out <- httpAttackReply{res.StatusCode, res.Header, string(b), err, time.Now()}
	}()
	return out
}

func httpAttackRequest(t testing.TB, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// errorCode is the "code" of the engine's JSON error body, or "".
func (r httpAttackReply) errorCode() string {
	var e httpAttackError
	if json.Unmarshal([]byte(r.body), &e) != nil {
		return ""
	}
	return e.Error.Code
}

func (r httpAttackReply) String() string {
	if r.err != nil {
		return "error: " + r.err.Error()
	}
	return fmt.Sprintf("%d %q", r.status, r.body)
}

// httpAttackHold registers GET and POST /go/<name> on c: each call is
// reported on arrived (buffered for 64), then answered "done" once release
// is closed (or the test ends), after delay.
func httpAttackHold(t testing.TB, c *sluice.Client, name string, release <-chan struct{}, delay time.Duration) <-chan struct{} {
	t.Helper()
	arrived := make(chan struct{}, 64)
	end := make(chan struct{})
	t.Cleanup(func() { close(end) }) // before the client closes
	for _, m := range []string{"GET", "POST"} {
		err := c.HandleHTTPFunc(m+" /go/"+name, "go."+name+"::"+strings.ToLower(m), func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			select {
			case <-release:
			case <-end:
				return
			}
			time.Sleep(delay) // the function's own work
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "done")
		})
		if err != nil {
			t.Fatal(err)
		}
		waitHTTPTrigger(ctxFor(t, startTimeout), t, c, "go."+name+"::"+strings.ToLower(m))
	}
	return arrived
}

func httpAttackArrivals(t testing.TB, arrived <-chan struct{}, n int) {
	t.Helper()
	timeout := time.After(callTimeout)
	for i := range n {
		select {
		case <-arrived:
		case <-timeout:
			t.Fatalf("%d of %d requests reached the function", i, n)
		}
	}
}

// TestAttackHTTPShutdownInFlight sends SIGTERM while two HTTP requests are
// in flight (shutdown timeout 3 s): the one whose function answers ~300 ms
// later must get that answer, the one whose function never answers a 503
// engine_shutting_down JSON error before the timeout, and the engine must
// exit. On 8b50cfc: both requests got an empty reply (EOF) at once, and
// the engine logged status 499.
func TestAttackHTTPShutdownInFlight(t *testing.T) {
	const shutdownTimeout = 3 * time.Second
	e := startEngine(t, "127.0.0.1:0", "--shutdown-timeout", shutdownTimeout.String())
	c := connectGo(t, e, "go-shutdown")
	releaseSlow := make(chan struct{})
	slowArrived := httpAttackHold(t, c, "slow", releaseSlow, 300*time.Millisecond)
	neverArrived := httpAttackHold(t, c, "never", nil, 0)
	hc := httpAttackClient(t)

	slow := httpAttackDo(hc, httpAttackRequest(t, "GET", e.HTTPURL+"/go/slow", nil))
	never := httpAttackDo(hc, httpAttackRequest(t, "GET", e.HTTPURL+"/go/never", nil))
	httpAttackArrivals(t, slowArrived, 1)
	httpAttackArrivals(t, neverArrived, 1)

	sigterm := time.Now()
	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, callTimeout)
	if _, err := e.stderr.wait(ctx, func(s string) bool { return strings.Contains(s, `msg="shutting down"`) }); err != nil {
		t.Fatalf("the engine did not start shutting down: %v", err)
	}
	close(releaseSlow) // the function answers 300 ms into the shutdown

	if r := <-slow; r.err != nil || r.status != 200 || r.body != "done" {
		t.Errorf("request whose function answers during the shutdown: %v", r)
	}
	r := <-never
	if r.err != nil || r.status != 503 || r.errorCode() != "engine_shutting_down" || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("request whose function never answers: %v, want 503 engine_shutting_down", r)
	} else if d := r.at.Sub(sigterm); d > shutdownTimeout {
		t.Errorf("the 503 came %v after SIGTERM, beyond the %v shutdown timeout", d, shutdownTimeout)
	}
	select {
	case <-e.exited:
	case <-time.After(shutdownTimeout + stopTimeout):
		t.Fatal("the engine did not exit")
	}
	if _, err := e.stderr.wait(ctx, func(s string) bool { return strings.Contains(s, "status=499") }); err == nil {
		t.Error("the engine logged a request as 499 (nothing sent)")
	}
}

// TestAttackHTTPIdleKeepAlive leaves a keep-alive connection idle after a
// request: the engine must close it after http.idle_timeout (300 ms here)
// and keep serving new connections. On 8b50cfc: the idle connection stayed
// open for as long as the client liked (the read hit the test's 5 s bound).
func TestAttackHTTPIdleKeepAlive(t *testing.T) {
	const idle = 300 * time.Millisecond
	e := startEngine(t, "127.0.0.1:0", "--http-idle-timeout", idle.String())
	addr := strings.TrimPrefix(e.HTTPURL, "http://")
	for i := range 2 { // the second connection shows the engine still serves
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		rd := bufio.NewReader(conn)
		res, err := http.ReadResponse(rd, nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 404 || res.Close {
			t.Fatalf("connection %d: status %d, close %v; want a kept-alive 404", i, res.StatusCode, res.Close)
		}
		answered := time.Now()
		_ = conn.SetReadDeadline(answered.Add(5 * time.Second))
		_, err = rd.ReadByte()
		if !errors.Is(err, io.EOF) {
			t.Fatalf("connection %d: idle connection not closed by the engine: %v after %v", i, err, time.Since(answered).Round(time.Millisecond))
		}
		if d := time.Since(answered); d < idle/2 {
			t.Fatalf("connection %d: closed after %v, before the %v idle timeout", i, d, idle)
		}
	}
}

// TestAttackHTTPConcurrencyCap holds http.max_concurrent_requests (4)
// requests in a function and sends three more: those must get 503
// TOO_MANY_REQUESTS with Retry-After at once, without reaching the
// function; the held ones then complete and new requests are served. On
// 8b50cfc: request 5 reached the function and waited there until the
// client's 20 s timeout (no cap).
func TestAttackHTTPConcurrencyCap(t *testing.T) {
	const limit = 4
	e := startEngine(t, "127.0.0.1:0", "--http-max-concurrent-requests", fmt.Sprint(limit))
	c := connectGo(t, e, "go-cap")
	release := make(chan struct{})
	arrived := httpAttackHold(t, c, "hold", release, 0)
	hc := httpAttackClient(t)

	var held []<-chan httpAttackReply
	for range limit {
		held = append(held, httpAttackDo(hc, httpAttackRequest(t, "GET", e.HTTPURL+"/go/hold", nil)))
	}
	httpAttackArrivals(t, arrived, limit)
	for i := range 3 {
		r := <-httpAttackDo(hc, httpAttackRequest(t, "GET", e.HTTPURL+"/go/hold", nil))
		if r.err != nil || r.status != 503 || r.errorCode() != "TOO_MANY_REQUESTS" || r.header.Get("Retry-After") == "" {
			t.Fatalf("request %d over the cap: %v (Retry-After %q), want 503 TOO_MANY_REQUESTS", limit+i+1, r, r.header.Get("Retry-After"))
		}
	}
	select {
	case <-arrived:
		t.Fatal("a request over the cap reached the function")
	default:
	}
	close(release)
	for i, ch := range held {
		if r := <-ch; r.err != nil || r.status != 200 || r.body != "done" {
			t.Errorf("held request %d: %v", i, r)
		}
	}
	// The slots are free again (each is released as its handler returns,
	// just after its reply: allow a few tries).
	ok := 0
	for range 50 {
		if r := <-httpAttackDo(hc, httpAttackRequest(t, "GET", e.HTTPURL+"/go/hold", nil)); r.status == 200 {
			if ok++; ok == limit {
				break
			}
		}
	}
	if ok < limit {
		t.Fatalf("after the burst only %d requests were served", ok)
	}
}

// TestAttackHTTPJSONBodyBudget posts 24 concurrent 6 MiB JSON bodies to a
// function that holds each request, with http.max_buffered_json_bytes at
// 16 MiB: the engine may read only two at a time, must answer the others
// 503 BODY_BUDGET_EXHAUSTED with Retry-After, must not grow by more than
// jsonBudgetGrowth, and serves the held requests and new ones afterwards.
// On 8b50cfc: all 24 bodies were read and held (none refused) and the
// engine's RSS peaked 652 MiB over its start (here: 2 read, 22 refused,
// 47 MiB).
func TestAttackHTTPJSONBodyBudget(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc to read the engine's memory")
	}
	const (
		posts            = 24
		bodySize         = 6 << 20
		budget           = 16 << 20
		jsonBudgetGrowth = 96 << 20 // two bodies, their payloads and channel frames, GC headroom
	)
	e := startEngine(t, "127.0.0.1:0", "--http-max-buffered-json-bytes", fmt.Sprint(budget))
	c := connectGo(t, e, "go-json")
	release := make(chan struct{})
	arrived := httpAttackHold(t, c, "json", release, 0)
	hc := httpAttackClient(t)
	doc := []byte(`{"pad":"` + strings.Repeat("x", bodySize-10) + `"}`)
	post := func() <-chan httpAttackReply {
		req := httpAttackRequest(t, "POST", e.HTTPURL+"/go/json", bytes.NewReader(doc))
		req.Header.Set("Content-Type", "application/json")
		return httpAttackDo(hc, req)
	}
	before := engineMemory(t, e.pid())

	replies := make(chan httpAttackReply, posts)
	for range posts {
		ch := post()
		go func() { replies <- <-ch }()
	}
	// Every post either reaches the function or is refused.
	in, refused := 0, 0
	var others []httpAttackReply
	timeout := time.After(callTimeout)
	for in+refused+len(others) < posts {
		select {
		case <-arrived:
			in++
		case r := <-replies:
			if r.err == nil && r.status == 503 && r.errorCode() == "BODY_BUDGET_EXHAUSTED" && r.header.Get("Retry-After") != "" {
				refused++
			} else {
				others = append(others, r)
			}
		case <-timeout:
			t.Fatalf("after %v: %d posts reached the function, %d were refused, %d other replies", callTimeout, in, refused, len(others))
		}
	}
	peak := engineMemory(t, e.pid())
	t.Logf("%d posts of %d MiB: %d reached the function, %d refused; engine RSS %d MiB before, peak %d MiB",
		posts, bodySize>>20, in, refused, before.rss>>20, peak.hwm>>20)
	if len(others) > 0 {
		t.Errorf("unexpected replies while holding: %v", others)
	}
	if in > budget/bodySize || refused == 0 {
		t.Errorf("%d bodies were read at once with a budget for %d; %d refused", in, budget/bodySize, refused)
	}
	bound := int64(jsonBudgetGrowth)
	if os.Getenv("SLUICE_ENGINE_RACE") == "1" {
		bound *= 3 // the race detector's shadow memory
	}
	if grown := peak.hwm - before.rss; grown > bound {
		t.Errorf("the engine's RSS peaked %d MiB over its %d MiB before (bound %d MiB)", grown>>20, before.rss>>20, bound>>20)
	}
	close(release)
	for range in {
		if r := <-replies; r.err != nil || r.status != 200 || r.body != "done" {
			t.Errorf("a held post: %v", r)
		}
	}
	// The budget is free again: a new post is read and served.
	served := false
	for range 20 {
		if r := <-post(); r.status == 200 && r.body == "done" {
			served = true
			break
		}
	}
	if !served {
		t.Fatal("the engine no longer serves JSON posts after the burst")
	}
}
