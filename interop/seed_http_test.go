package interop

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// Seed 000 "Use Channels", Examples 1 (file download via an HTTP endpoint)
// and 2 (server-sent events), served by each SDK flavour's seed script (and
// by the Go adapter, seed_http_go_test.go) from the built engine's HTTP
// listener and fetched with net/http.

const (
	// seedFileName is the file Example 1 serves: the name in the seed's
	// curl example.
	seedFileName = "quarterly-report.pdf"
	// seedFileSize is its size: 64 MiB of random bytes.
	seedFileSize = 64 << 20
	// sseGap is the pause the SSE function makes between events
	// (SSE_DELAY_MS; the seed's is 1 s) where the test does not gate them
	// (checkSSE without a gate: the examples/seeds programs). Long enough
	// that an event held back until the next one is written, or until the
	// end, shows, and a stall of the loaded machine merges at most a
	// couple of gaps (checkSSE's timed checks allow for that).
	sseGap = 500 * time.Millisecond
	// sseEventTimeout bounds the wait for each event: on loopback one
	// takes milliseconds; the bound (one call's, callTimeout) only turns a
	// stream that never comes into a failure, also on a loaded machine.
	sseEventTimeout = callTimeout
)

// seedFile is Example 1's file, written once per test run.
type seedFile struct {
	dir    string // DATA_DIR
	size   int64
	sha256 string
}

// writeSeedFile writes seedFileSize random bytes to <t.TempDir()>/seedFileName.
func writeSeedFile(t *testing.T) seedFile {
	t.Helper()
	dir := t.TempDir()
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	f, err := os.Create(filepath.Join(dir, seedFileName))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rand.NewChaCha8(seed), seedFileSize))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return seedFile{dir: dir, size: n, sha256: hex.EncodeToString(h.Sum(nil))}
}

// httpSeed is one implementation of one of the two examples.
type httpSeed struct {
	name   string   // subtest name
	f      *flavour // nil: the Go adapter (seed_http_go_test.go)
	script string   // the flavour's script (in f.Dir)
	// headers the example sets, checked on the response (canonical names).
	headers map[string]string
}

// prefix is the WORKER_PREFIX the seed runs with: its function ids are
// <prefix>.files::download / <prefix>.events::stream, its routes
// /<prefix>/files/:filename and /<prefix>/events/stream.
func (s httpSeed) prefix() string {
	if s.f == nil {
		return goHTTPPrefix
	}
	return s.f.Prefix
}

// start starts an engine and the worker serving the example (env: extra
// worker environment), and waits until the engine serves the route bound
// to functionID (<prefix>.<fn>).
func (s httpSeed) start(t *testing.T, startEngine func(testing.TB) *engineProc, fn string, env ...string) *engineProc {
	t.Helper()
	if s.f != nil {
		s.f.require(t)
	} else if buildErr != nil {
		t.Fatalf("building the engine: %v", buildErr)
	}
	e := startEngine(t)
	c := connectGo(t, e, "go-seed-http")
	if s.f == nil {
		registerGoHTTPSeeds(t, c, env...)
	} else {
		startWorker(t, s.f, e, s.script, s.f.Prefix, env...)
	}
	waitHTTPTrigger(ctxFor(t, startTimeout), t, c, s.prefix()+"."+fn)
	return e
}

// waitHTTPTrigger polls engine::registered-triggers::list (bounded by ctx)
// until an http trigger bound to functionID is active: the engine lists a
// binding as soon as it stores it, and marks it active once the route
// serves.
func waitHTTPTrigger(ctx context.Context, t testing.TB, c *sluice.Client, functionID string) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		out, err := sluice.Call[struct {
			Triggers []struct {
				ID     string `json:"id"`
				Active bool   `json:"active"`
			} `json:"registered_triggers"`
		}](ctx, c, "engine::registered-triggers::list", map[string]any{"trigger_type": "http", "function_id": functionID})
		if err == nil && len(out.Triggers) > 0 && out.Triggers[0].Active {
			return
		}
		lastErr = err
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("no http trigger for %s: %v (last error %v)", functionID, ctx.Err(), lastErr)
		}
	}
}

// seedHTTPClient is a plain net/http client for e's HTTP listener (trusting
// its CA when it serves TLS) whose connections end with the test.
func seedHTTPClient(t testing.TB, e *engineProc) *http.Client {
	tr := &http.Transport{}
	if e.tls != nil {
		tr.TLSClientConfig = e.tls.ClientConfig()
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}
}

// TestSeedHTTP runs the seed's HTTP examples in every flavour that has
// them, each against its own engine, the flavours in parallel:
//
//   - Example2SSE (Node 0.11.6 and 0.22.1, Go): the event stream read with
//     net/http; every event must arrive on its own while the function
//     waits to write the next one: its pause after event k lasts until the
//     test has read event k (sseGate), so a stream held back until the next
//     write or the end never gets there, and fails the test.
//   - Example1Download (Node 0.11.6 and 0.22.1, Python as written on PyPI
//     0.11.6 and adapted to 0.25.0, Go): a 64 MiB random file; status,
//     the headers the seed sets, byte count and SHA-256.
//
// SSE runs first and on its own.
func TestSeedHTTP(t *testing.T) { runSeedHTTP(t, startPlainEngine, nil) }

// runSeedHTTP runs TestSeedHTTP's examples on engines started by start, in
// Go and in the flavours only accepts (all when nil).
func runSeedHTTP(t *testing.T, start func(testing.TB) *engineProc, only func(*flavour) bool) {
	keep := func(s httpSeed) bool { return s.f == nil || only == nil || only(s.f) }
	node11, node22 := flavourNamed("node-0.11.6"), flavourNamed("node-0.22.1")
	py25, pyseed := flavourNamed("python-0.25.0"), flavourNamed("python-seed-0.11.6")

	sseHeaders := map[string]string{
		"Content-Type":  "text/event-stream",
		"Cache-Control": "no-cache",
		"Connection":    "keep-alive",
	}
	t.Run("Example2SSE", func(t *testing.T) {
		for _, s := range []httpSeed{
			{name: "go", headers: sseHeaders},
			{name: node11.Name, f: node11, script: "seed_sse.mjs", headers: sseHeaders},
			{name: node22.Name, f: node22, script: "seed_sse.mjs", headers: sseHeaders},
		} {
			if !keep(s) {
				continue
			}
			t.Run(s.name, func(t *testing.T) {
				t.Parallel()
				gate := newSSEGate(t, len(seedSSEEvents())-1)
				e := s.start(t, start, "events::stream", gate.env()...)
				checkSSE(t, e, e.HTTPURL+"/"+s.prefix()+"/events/stream", s.headers, gate)
			})
		}
	})

	file := writeSeedFile(t)
	dl := map[string]string{
		"Content-Type":        "application/octet-stream",
		"Content-Disposition": `attachment; filename="` + seedFileName + `"`,
	}
	pdf := map[string]string{"Content-Type": "application/pdf"} // the Python seed's
	t.Run("Example1Download", func(t *testing.T) {
		for _, s := range []httpSeed{
			{name: "go", headers: dl},
			{name: node11.Name, f: node11, script: "seed_download.mjs", headers: dl},
			{name: node22.Name, f: node22, script: "seed_download.mjs", headers: dl},
			{name: pyseed.Name, f: pyseed, script: "seed_download.py", headers: pdf},
			{name: py25.Name, f: py25, script: "seed_download_0_25.py", headers: pdf},
		} {
			if !keep(s) {
				continue
			}
			t.Run(s.name, func(t *testing.T) {
				t.Parallel()
				e := s.start(t, start, "files::download", "DATA_DIR="+file.dir)
				checkDownload(t, e, e.HTTPURL+"/"+s.prefix()+"/files/"+seedFileName, s.headers, file)
			})
		}
	})
}

// checkHeaders compares the response headers with want.
func checkHeaders(t *testing.T, res *http.Response, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := res.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("header %s = %q, want %q (all headers: %v)", k, got, v, res.Header)
		}
	}
}

// checkDownload GETs url and checks the status, headers, size and SHA-256.
func checkDownload(t *testing.T, e *engineProc, url string, headers map[string]string, file seedFile) {
	start := time.Now()
	res, err := seedHTTPClient(t, e).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		t.Fatalf("GET %s: %s %q", url, res.Status, b)
	}
	checkHeaders(t, res, headers)
	h := sha256.New()
	n, err := io.Copy(h, res.Body)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("reading the body after %d bytes: %v", n, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if n != file.size || sum != file.sha256 {
		t.Fatalf("got %d bytes with SHA-256 %s, want %d bytes with %s", n, sum, file.size, file.sha256)
	}
	t.Logf("GET %s: %d MiB in %v (%.0f MiB/s), SHA-256 ok, %s %v", "/"+strings.SplitN(url, "/", 4)[3], n>>20,
		elapsed.Round(time.Millisecond), float64(n)/(1<<20)/elapsed.Seconds(), res.Proto, res.Header)
}

// sseEvent is one event of the stream: its lines without the blank line
// that ends it.
type sseEvent string

// seedSSEEvents is what Example 2 sends: five progress events and done.
func seedSSEEvents() []sseEvent {
	var evs []sseEvent
	for i := 1; i <= 5; i++ {
		evs = append(evs, sseEvent(fmt.Sprintf("id: %d\nevent: progress\ndata: {\"step\":%d,\"total\":5}", i, i)))
	}
	return append(evs, "id: 6\nevent: done\ndata: {\"message\":\"complete\"}")
}

// sseGate holds a seed's SSE function between events. With SSE_GATE_URL
// set, the function's pause after writing event n (1 to 5) is
// GET <URL>?pause=n (node-common/harness.mjs around the seed's setTimeout;
// sseGatePause in the Go adapter), and the gate answers it only once the
// test has read event n (release). So event n+1 is written after event n
// reached the client: events that arrive at all arrive streamed, whatever
// the machine's load.
type sseGate struct {
	URL     string
	pauses  int
	asked   chan int        // pause numbers, in the order requested (-1: a bad request)
	release []chan struct{} // release[n] closed: pause n answers
	done    chan struct{}   // the test is over: every pause answers 503
}

// newSSEGate starts a gate for pauses 1..pauses on a loopback port.
func newSSEGate(t testing.TB, pauses int) *sseGate {
	g := &sseGate{pauses: pauses, asked: make(chan int, 4*pauses), done: make(chan struct{})}
	for range pauses + 1 {
		g.release = append(g.release, make(chan struct{}))
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("pause"))
		if err != nil || n < 1 || n > g.pauses {
			n = -1
		}
		select {
		case g.asked <- n:
		default: // more requests than events: already a failure
		}
		if n < 0 {
			http.Error(w, "no such pause", http.StatusBadRequest)
			return
		}
		select {
		case <-g.release[n]:
			w.WriteHeader(http.StatusNoContent)
		case <-g.done:
			http.Error(w, "the test is over", http.StatusServiceUnavailable)
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(g.done) }) // before srv.Close, which waits for the handlers
	g.URL = srv.URL
	return g
}

// env is the worker environment that makes the seed pause on g: a pause
// of a day (the harness tells it from other timers by that delay) that
// ends when g answers.
func (g *sseGate) env() []string {
	return []string{"SSE_DELAY_MS=86400000", "SSE_GATE_URL=" + g.URL}
}

// checkAsked fails unless the function asked for pause n (and nothing
// else) before event n+1 arrived: it waits on the gate, so the order the
// events arrived in proves something.
func (g *sseGate) checkAsked(t *testing.T, n int) {
	t.Helper()
	select {
	case got := <-g.asked:
		if got != n {
			t.Fatalf("event %d arrived after the function asked the gate for pause %d, want pause %d", n+1, got, n)
		}
	default:
		t.Fatalf("event %d arrived without the function asking the gate for pause %d: it does not wait for the test (SSE_GATE_URL ignored?)", n+1, n)
	}
}

// checkSSE reads the event stream at url, checks the headers and events,
// and checks that the events arrive streamed. With a gate (which the
// function at url must pause on), each event must arrive while the
// function waits to write the next one: it writes event n+1 only after
// the test has read event n, so a held-back event (until the next write or
// the end) never arrives, and its read fails after sseEventTimeout.
// Without a gate, they must arrive at the pace the function writes them:
// one at once, then one every sseGap.
func checkSSE(t *testing.T, e *engineProc, url string, headers map[string]string, gate *sseGate) {
	want := seedSSEEvents()
	// A bound per event: the watchdog cancels the request when no event
	// came for sseEventTimeout.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watchdog := time.AfterFunc(sseEventTimeout, cancel)
	defer watchdog.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := seedHTTPClient(t, e).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	headersAt := time.Since(start)
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		t.Fatalf("GET %s: %s %q", url, res.Status, b)
	}
	checkHeaders(t, res, headers)
	rd := bufio.NewReader(res.Body)
	at := make([]time.Duration, 0, len(want))
	for i := range want {
		var lines []string
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				if ctx.Err() != nil {
					err = fmt.Errorf("no event for %v (%w)", sseEventTimeout, err)
					if gate != nil {
						err = fmt.Errorf("%w; the function writes no more until the test reads it: the event is held back", err)
					}
				}
				t.Fatalf("event %d: %v after %q (events so far at %v)", i+1, err, lines, at)
			}
			if line == "\n" {
				break
			}
			lines = append(lines, strings.TrimSuffix(line, "\n"))
		}
		watchdog.Reset(sseEventTimeout)
		at = append(at, time.Since(start))
		if got := sseEvent(strings.Join(lines, "\n")); got != want[i] {
			t.Fatalf("event %d = %q, want %q", i+1, got, want[i])
		}
		// Nothing of the next event may have arrived with this one (gated:
		// it is not even written yet; timed, a stall may merge two).
		if rd.Buffered() > 0 && gate != nil {
			t.Errorf("event %d arrived together with %d bytes of what follows", i+1, rd.Buffered())
		}
		if gate != nil {
			if i > 0 {
				gate.checkAsked(t, i)
			}
			if i < gate.pauses {
				close(gate.release[i+1])
			}
		}
	}
	if b, err := rd.ReadByte(); err != io.EOF {
		t.Fatalf("after the last event: %q, %v; want the end of the body", b, err)
	}

	gaps := make([]time.Duration, len(at)-1)
	for i := range gaps {
		gaps[i] = at[i+1] - at[i]
	}
	round := func(ds []time.Duration) []time.Duration {
		out := make([]time.Duration, len(ds))
		for i, d := range ds {
			out[i] = d.Round(time.Millisecond)
		}
		return out
	}
	t.Logf("GET %s: headers after %v, events after %v, gaps %v", "/"+strings.SplitN(url, "/", 4)[3],
		headersAt.Round(time.Millisecond), round(at), round(gaps))
	if gate != nil {
		select {
		case n := <-gate.asked:
			t.Errorf("the function asked for pause %d after the last event", n)
		default:
		}
		return // the order of events and pauses proved the streaming
	}
	// Paced, not bunched: events held back until the next one is written,
	// or to the end, make gaps near 0. A stall of the loaded machine
	// (seen: over a second) may delay one event onto the next, so at
	// least half of the gaps must show the pace, and the first event must
	// be out long before the last one is written.
	paced := 0
	for _, g := range gaps {
		if g >= sseGap/2 {
			paced++
		}
	}
	if paced*2 < len(gaps) {
		t.Errorf("only %d of %d gaps between events are at least %v; the function writes them %v apart: the events are held back", paced, len(gaps), sseGap/2, sseGap)
	}
	if span := at[len(at)-1] - at[0]; span < time.Duration(len(gaps))*sseGap/2 {
		t.Errorf("the first event arrived only %v before the last; the function writes them %v apart", span, time.Duration(len(gaps))*sseGap)
	}
}
