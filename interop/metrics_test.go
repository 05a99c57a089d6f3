package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice"
)

// promSamples is a scrape: "name{k="v",...}" (labels sorted) -> value.
type promSamples map[string]float64

var promLineRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$`)
var promLabelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// parseProm parses the Prometheus text format (0.0.4) strictly enough for
// a test: every non-comment line must be a sample, every metric must have
// a TYPE line before its samples.
func parseProm(t *testing.T, r io.Reader) promSamples {
	t.Helper()
	out := promSamples{}
	typed := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			typed[f[2]] = f[3]
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := promLineRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("not a sample line: %q", line)
		}
		base := m[1]
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(base, suf); ok && typed[b] == "histogram" {
				base = b
			}
		}
		if typed[base] == "" {
			t.Fatalf("sample before its TYPE line: %q", line)
		}
		var labels []string
		for _, l := range promLabelRE.FindAllStringSubmatch(m[3], -1) {
			labels = append(labels, l[1]+"="+strconv.Quote(l[2]))
		}
		sort.Strings(labels)
		v, err := strconv.ParseFloat(m[4], 64)
		if err != nil {
			t.Fatalf("bad value in %q: %v", line, err)
		}
		key := m[1]
		if len(labels) > 0 {
			key += "{" + strings.Join(labels, ",") + "}"
		}
		if _, dup := out[key]; dup {
			t.Fatalf("duplicate sample %s", key)
		}
		out[key] = v
	}
	must(t, sc.Err())
	return out
}

func scrape(t *testing.T, url string) promSamples {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	must(t, err)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("/metrics: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	return parseProm(t, resp.Body)
}

// scrapeUntil scrapes until cond holds (the engine finishes the work it
// counts after the client has its answer, e.g. a dead-lettered job).
func scrapeUntil(ctx context.Context, t *testing.T, url, what string, cond func(promSamples) bool) promSamples {
	t.Helper()
	for {
		s := scrape(t, url)
		if cond(s) {
			return s
		}
		select {
		case <-ctx.Done():
			t.Fatalf("metrics never showed %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// promKey is a sample's key as parseProm makes it: labels sorted.
func promKey(name, labels string) string {
	l := strings.Split(labels, ",")
	sort.Strings(l)
	return name + "{" + strings.Join(l, ",") + "}"
}

// checkHistogram: cumulative buckets, +Inf equal to _count equal to want,
// a positive sum.
func checkHistogram(t *testing.T, s promSamples, name, labels string, want float64) {
	t.Helper()
	les := []string{"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "+Inf"}
	prev := 0.0
	for _, le := range les {
		k := promKey(name+"_bucket", labels+",le="+strconv.Quote(le))
		v, ok := s[k]
		if !ok {
			t.Fatalf("missing %s", k)
		}
		if v < prev {
			t.Errorf("%s = %v below the previous bucket's %v", k, v, prev)
		}
		prev = v
	}
	if prev != want || s[name+"_count{"+labels+"}"] != want {
		t.Errorf("%s{%s}: +Inf %v, count %v, want %v", name, labels, prev, s[name+"_count{"+labels+"}"], want)
	}
	if s[promKey(name+"_bucket", labels+`,le="60"`)] != want {
		t.Errorf("%s{%s}: not every observation under 60s", name, labels)
	}
	if sum := s[name+"_sum{"+labels+"}"]; !(sum > 0) {
		t.Errorf("%s_sum{%s} = %v", name, labels, sum)
	}
}

var consoleRE = regexp.MustCompile(`console_url=(http://\S+)`)

// TestMetrics runs a known workload (Go and Node 0.22.1 workers, HTTP
// requests, channel writers, a dead-lettered queue job, a hanging call)
// and checks that /metrics counts exactly that. On f9f823a there was no
// console listener: the engine refused --console-addr.
func TestMetrics(t *testing.T) {
	e := startEngine(t, "127.0.0.1:0", "--data-dir", "memory") // console on a free port
	ctx := ctxFor(t, 60*time.Second)
	line, err := e.stderr.wait(ctx, consoleRE.MatchString)
	must(t, err)
	console := consoleRE.FindStringSubmatch(line)[1]

	gw := connectGo(t, e, "met-go")
	failed := make(chan struct{}, 8)
	must(t, gw.RegisterRaw("met::ok", func(context.Context, *sluice.Invocation) (json.RawMessage, error) {
		return json.RawMessage(`{"ok":true}`), nil
	}))
	must(t, gw.RegisterRaw("met::fail", func(context.Context, *sluice.Invocation) (json.RawMessage, error) {
		failed <- struct{}{}
		return nil, fmt.Errorf("no")
	}))
	_, err = gw.RegisterTrigger(sluice.TriggerSpec{Type: "http", FunctionID: "met::ok", Config: map[string]any{"api_path": "/met/ok", "http_method": "GET"}})
	must(t, err)
	nw := startWorker(t, flavourNamed("node-0.22.1"), e, "worker.mjs", "metnode", "SEEDS=0")
	waitFunctions(ctx, t, gw, "met::ok", "met::fail", "metnode::echo", "metnode::hang")
	// The log tells who connected and what they registered.
	for _, want := range [][]string{
		{`msg="worker registered"`, "name=metnode", "runtime=node", "version=0.22.1"},
		{`msg="function registered"`, "function_id=metnode::echo"},
		{`msg="function registered"`, "function_id=met::ok"},
		{`msg="trigger registered"`, "trigger_type=http", "function_id=met::ok", "/met/ok"},
	} {
		metWaitLog(ctx, t, e, want...)
	}

	// Invocations.
	for range 5 {
		_, err := gw.Trigger(ctx, "met::ok", nil)
		must(t, err)
	}
	for range 3 {
		if _, err := gw.Trigger(ctx, "met::fail", nil); err == nil {
			t.Fatal("met::fail succeeded")
		}
		<-failed
	}
	for range 4 {
		_, err := gw.Trigger(ctx, "metnode::echo", map[string]int{"a": 1})
		must(t, err)
	}
	for range 2 {
		if _, err := gw.Trigger(ctx, "metnode::fail", nil); err == nil {
			t.Fatal("metnode::fail succeeded")
		}
	}
	if _, err := gw.Trigger(ctx, "met::none", nil); err == nil {
		t.Fatal("met::none succeeded")
	}
	for i := range 2 {
		must(t, gw.TriggerVoid(ctx, "metnode::mark", map[string]any{"value": i}))
		nw.waitLine(ctx, t, fmt.Sprintf("MARK %d", i))
	}

	// HTTP: three through the route, one that matches none.
	for _, p := range []string{"/met/ok", "/met/ok", "/met/ok", "/met/none"} {
		resp, err := http.Get(e.HTTPURL + p)
		must(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	// Channels: 3 frames of 1000 bytes through the Go SDK, then a writer
	// that sends 10 bytes and drops its TCP connection (aborted).
	ch, err := gw.CreateChannel(ctx)
	must(t, err)
	go func() {
		for range 3 {
			_, _ = ch.Writer.Write(make([]byte, 1000))
		}
		_ = ch.Writer.Close()
	}()
	got, err := ch.Reader.ReadAll()
	must(t, err)
	if len(got) != 3000 {
		t.Fatalf("channel carried %d bytes", len(got))
	}
	ch2, err := gw.CreateChannel(ctx)
	must(t, err)
	ref := ch2.WriterRef
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, e.URL+"/ws/channels/"+ref.ChannelID+"?key="+ref.AccessKey+"&dir=write", nil)
	must(t, err)
	must(t, ws.WriteMessage(websocket.BinaryMessage, make([]byte, 10)))

	// Queue: a job that fails its only delivery lands in the DLQ.
	_, err = gw.Trigger(ctx, "queue::define", map[string]any{"name": "metdlq", "max_retries": 1, "backoff_ms": 1})
	must(t, err)
	_, err = gw.Enqueue(ctx, "metdlq", "met::fail", map[string]int{"n": 1})
	must(t, err)
	<-failed

	// The raw writer's frame must be in before the drop to count it.
	scrapeUntil(ctx, t, console, "the raw writer's frame", func(s promSamples) bool { return s["sluice_channel_frames_total"] == 4 })
	ws.NetConn().Close()
	s := scrapeUntil(ctx, t, console, "the aborted channel and the dead letter", func(s promSamples) bool {
		return s["sluice_channels_aborted_total"] == 1 && s[`sluice_queue_dlq_depth{queue="metdlq"}`] == 1
	})

	fns, err := listFunctions(ctx, gw, map[string]any{"include_internal": true})
	must(t, err)
	want := map[string]float64{
		"sluice_workers_connected":                                           2,
		"sluice_functions_registered":                                        float64(len(fns)),
		`sluice_invocations_total{function="met::ok",outcome="ok"}`:          5,
		`sluice_invocations_total{function="met::fail",outcome="error"}`:     4,
		`sluice_invocations_total{function="metnode::echo",outcome="ok"}`:    4,
		`sluice_invocations_total{function="metnode::fail",outcome="error"}`: 2,
		`sluice_invocations_total{function="metnode::mark",outcome="void"}`:  2,
		`sluice_invocations_total{function="_unknown",outcome="error"}`:      1,
		`sluice_http_requests_total{route="GET /met/ok",status="200"}`:       3,
		`sluice_http_requests_total{route="_none",status="404"}`:             1,
		"sluice_channel_frames_total":                                        4,
		"sluice_channel_bytes_total":                                         3010,
		"sluice_channels_aborted_total":                                      1,
		`sluice_queue_depth{queue="metdlq"}`:                                 0,
		`sluice_queue_in_flight{queue="metdlq"}`:                             0,
		`sluice_queue_dlq_depth{queue="metdlq"}`:                             1,
		"sluice_invocations_in_flight":                                       0,
	}
	// met::ok also served the three HTTP requests.
	want[`sluice_invocations_total{function="met::ok",outcome="ok"}`] += 3
	for k, v := range want {
		if got, ok := s[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	for k := range s {
		if strings.HasPrefix(k, `sluice_invocations_total{function="met`) {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected series %s = %v", k, s[k])
			}
		}
	}
	checkHistogram(t, s, "sluice_invocation_duration_seconds", `function="met::ok"`, 8)
	checkHistogram(t, s, "sluice_invocation_duration_seconds", `function="met::fail"`, 4)
	checkHistogram(t, s, "sluice_invocation_duration_seconds", `function="metnode::echo"`, 4)
	checkHistogram(t, s, "sluice_http_request_duration_seconds", `route="GET /met/ok",status="200"`, 3)
	for _, k := range []string{"go_goroutines", "process_resident_memory_bytes", "process_open_fds"} {
		if !(s[k] > 0) {
			t.Errorf("%s = %v", k, s[k])
		}
	}
	if _, ok := s["process_cpu_seconds_total"]; !ok { // may still be 0: clock ticks are 10 ms
		t.Errorf("no process_cpu_seconds_total")
	}

	// engine::log::*: a Node worker writes to the engine's log; a huge
	// message is cut.
	_, err = gw.Trigger(ctx, "metnode::call", map[string]any{"function_id": "engine::log::warn",
		"payload": map[string]any{"message": "hello from node", "data": map[string]int{"k": 1}, "service_name": "metnode"}})
	must(t, err)
	metWaitLog(ctx, t, e, "level=WARN", `msg="hello from node"`, "source=worker", "service_name=metnode", `data="{\"k\":1}"`)
	_, err = gw.Trigger(ctx, "metnode::call", map[string]any{"function_id": "engine::log::error",
		"payload": map[string]any{"message": "big" + strings.Repeat("x", 100000)}})
	must(t, err)
	big := metWaitLog(ctx, t, e, "level=ERROR", "msg=bigxxx")
	if len(big) > 5000 || !strings.Contains(big, "…") {
		t.Errorf("a 100 kB log message made a %d-byte line", len(big))
	}

	// A call in flight, then its worker leaves: outcome stopped.
	hung := make(chan error, 1)
	go func() { _, err := gw.Trigger(ctx, "metnode::hang", map[string]string{"tag": "met"}); hung <- err }()
	nw.waitLine(ctx, t, "HANG met")
	if s := scrape(t, console); s["sluice_invocations_in_flight"] != 1 {
		t.Errorf("in flight during the hang: %v", s["sluice_invocations_in_flight"])
	}
	nw.stop(t)
	metWaitLog(ctx, t, e, `msg="worker disconnected"`, "name=metnode", "runtime=node", "functions_released=6")
	if err := <-hung; err == nil {
		t.Errorf("hang returned no error")
	}
	s = scrapeUntil(ctx, t, console, "the stopped call", func(s promSamples) bool { return s["sluice_workers_connected"] == 1 })
	if s[`sluice_invocations_total{function="metnode::hang",outcome="stopped"}`] != 1 || s["sluice_invocations_in_flight"] != 0 {
		t.Errorf("after the worker left: stopped %v, in flight %v", s[`sluice_invocations_total{function="metnode::hang",outcome="stopped"}`], s["sluice_invocations_in_flight"])
	}

	// engine::health::check, upstream's shape.
	h, err := sluice.Call[struct {
		Status     string
		Version    string
		Timestamp  int64
		Components map[string]struct {
			Status  string
			Details map[string]any
		}
	}](ctx, gw, "engine::health::check", nil)
	must(t, err)
	if h.Status != "healthy" || h.Version == "" || h.Timestamp < time.Now().Add(-time.Minute).UnixMilli() ||
		h.Components["metrics"].Status != "healthy" || h.Components["metrics"].Details["prometheus_url"] != console+"/metrics" ||
		h.Components["otel"].Status != "disabled" {
		t.Errorf("health: %+v", h)
	}
}

// metWaitLog waits for an engine log line holding every part.
func metWaitLog(ctx context.Context, t *testing.T, e *engineProc, parts ...string) string {
	t.Helper()
	line, err := e.stderr.wait(ctx, func(l string) bool {
		for _, p := range parts {
			if !strings.Contains(l, p) {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("no engine log line with %q: %v", parts, err)
	}
	return line
}
