package interop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice"
)

// clusterCronFires collects the runs of an every-second cron binding held
// by a Go client on each node: scheduled time → names of the nodes it ran on.
type clusterCronFires struct {
	mu   sync.Mutex
	runs map[string][]string
	new  chan struct{}
}

func (f *clusterCronFires) snapshot() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string][]string, len(f.runs))
	for k, v := range f.runs {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// TestClusterCronOncePerTime: three engine processes, each with a worker
// holding the same every-second cron schedule (own binding ids, as
// identical SDK workers on every node have). Over ~5 s each scheduled
// time runs exactly once in the cluster; after node 1 is SIGKILLed the
// schedule keeps running on the two others, still once per time.
// On 04c1a7a every scheduled time ran once per node (three times).
func TestClusterCronOncePerTime(t *testing.T) {
	nodes := startClusterEngines(t, 3)
	ctx := ctxFor(t, 90*time.Second)
	f := &clusterCronFires{runs: map[string][]string{}, new: make(chan struct{}, 1)}
	for i, n := range nodes {
		name := []string{"node-0", "node-1", "node-2"}[i]
		c := connectGo(t, n, "cron-on-"+name)
		if err := sluice.Register(c, "cluster::tick", func(ctx context.Context, in struct {
			ScheduledTime string `json:"scheduled_time"`
		}) (any, error) {
			f.mu.Lock()
			f.runs[in.ScheduledTime] = append(f.runs[in.ScheduledTime], name)
			f.mu.Unlock()
			select {
			case f.new <- struct{}{}:
			default:
			}
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.RegisterTrigger(sluice.TriggerSpec{Type: "cron", FunctionID: "cluster::tick", Config: map[string]any{"expression": "* * * * * *"}}); err != nil {
			t.Fatal(err)
		}
		waitFunctions(ctx, t, c, "cluster::tick")
	}
	// About five seconds of runs with all three nodes.
	window := time.After(5 * time.Second)
	<-window
	before := f.snapshot()
	if len(before) < 4 {
		t.Fatalf("%d scheduled times ran in 5 s with three nodes, want at least 4: %v", len(before), before)
	}
	nodes[1].kill()
	// Runs after the kill: at least three more scheduled times on the
	// surviving nodes (JetStream may pause for a leader election first).
	survivorRuns := func(all map[string][]string) int {
		n := 0
		for at, ran := range all {
			if _, old := before[at]; !old && len(ran) > 0 && ran[0] != "node-1" {
				n++
			}
		}
		return n
	}
	for survivorRuns(f.snapshot()) < 3 {
		select {
		case <-f.new:
		case <-ctx.Done():
			t.Fatalf("after node 1 was killed fewer than 3 scheduled times ran on nodes 0 and 2: %v", f.snapshot())
		}
	}
	all := f.snapshot()
	times := make([]string, 0, len(all))
	for at := range all {
		times = append(times, at)
	}
	sort.Strings(times)
	for _, at := range times {
		if len(all[at]) != 1 {
			t.Errorf("scheduled time %s ran on %v, want exactly one node", at, all[at])
		}
	}
	t.Logf("runs by scheduled time: %v", all)
}

// clusterStreamsConfig is a config file giving every node a stream client
// listener on a free port.
func clusterStreamsConfig(t *testing.T) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("streams:\n  addr: 127.0.0.1:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// clusterStreamsAddr is the stream client listener a node logged.
func clusterStreamsAddr(ctx context.Context, t *testing.T, n *engineProc) string {
	t.Helper()
	line, err := n.stderr.wait(ctx, func(s string) bool { return strings.Contains(s, "stream clients served") })
	if err != nil {
		t.Fatal(err)
	}
	return regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)[1]
}

// TestClusterStateAndStreamEvents: three engine processes. A state
// binding registered by a worker on node 0 fires for a state::set made
// through node 2; a stream client connected to node 1 gets the sync and
// then the create of a stream::set made through node 0, and a stream
// binding on node 2 fires for it.
// On c954792 the binding and the client saw nothing (events stayed on the
// writing node).
func TestClusterStateAndStreamEvents(t *testing.T) {
	nodes := startClusterEngines(t, 3, "--config", clusterStreamsConfig(t))
	ctx := ctxFor(t, 60*time.Second)

	onA := connectGo(t, nodes[0], "state-binding-on-node-0")
	stateEvents := bindEventSink(ctx, t, onA, "cluster::on_state", "state", map[string]any{"scope": "clev"})

	onC := connectGo(t, nodes[2], "writer-on-node-2")
	streamEvents := bindEventSink(ctx, t, onC, "cluster::on_stream", "stream", map[string]any{"stream_name": "clboard"})

	if _, err := onC.Trigger(ctx, "state::set", map[string]any{"scope": "clev", "key": "k", "value": map[string]string{"from": "node-2"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-stateEvents:
		if ev["event_type"] != "state:created" || ev["key"] != "k" || fmt.Sprint(ev["new_value"]) != "map[from:node-2]" {
			t.Fatalf("node 0's state binding got %v", ev)
		}
	case <-ctx.Done():
		t.Fatal("a state::set through node 2 never fired the state binding registered on node 0")
	}

	ws, _, err := websocket.DefaultDialer.DialContext(ctx, "ws://"+clusterStreamsAddr(ctx, t, nodes[1])+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	var m struct {
		ID    *string `json:"id"`
		Event struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		} `json:"event"`
	}
	if err := ws.WriteJSON(map[string]any{"type": "join", "data": map[string]any{"subscriptionId": "s1", "streamName": "clboard", "groupId": "g"}}); err != nil {
		t.Fatal(err)
	}
	if err := ws.ReadJSON(&m); err != nil || m.Event.Type != "sync" {
		t.Fatalf("sync on node 1: %+v %v", m, err)
	}
	if _, err := onA.Trigger(ctx, "stream::set", map[string]any{"stream_name": "clboard", "group_id": "g", "item_id": "i1", "data": map[string]string{"from": "node-0"}}); err != nil {
		t.Fatal(err)
	}
	if err := ws.ReadJSON(&m); err != nil || m.Event.Type != "create" || m.ID == nil || *m.ID != "i1" || string(m.Event.Data) != `{"from":"node-0"}` {
		t.Fatalf("the stream client on node 1 got %+v (%v), want the create of node 0's stream::set", m, err)
	}
	select {
	case ev := <-streamEvents:
		if !strings.Contains(fmt.Sprint(ev["event"]), "node-0") {
			t.Fatalf("node 2's stream binding got %v", ev)
		}
	case <-ctx.Done():
		t.Fatal("a stream::set through node 0 never fired the stream binding registered on node 2")
	}
}

// clusterHTTPUntil sends req (made afresh by mk) until done accepts the
// answer or ctx ends; it returns the last status and body. The other
// nodes learn of a route with its node's next heartbeat (written at once
// on a change, then carried by JetStream): there is no event to await
// from outside, so the request is repeated.
func clusterHTTPUntil(ctx context.Context, t *testing.T, mk func() *http.Request, done func(int, string) bool) (int, string) {
	t.Helper()
	for {
		res, err := http.DefaultClient.Do(mk().WithContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("no satisfying answer before the deadline: %v", err)
			}
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if done(res.StatusCode, string(b)) || ctx.Err() != nil {
			return res.StatusCode, string(b)
		}
	}
}

// TestClusterHTTPRoutes: three engine processes. A route registered by a
// Go worker on node 0 (JSON request, JSON response) answers through nodes
// 1 and 2, its handler running on node 0; once that worker leaves, node 1
// answers 404 as for an unknown route. A route of a worker on node 2 is
// served by node 1 until node 2 is SIGKILLed, then 404 once node 1
// declared node 2 gone.
// On e98dd6d nodes 1 and 2 answered 404 for node 0's route.
func TestClusterHTTPRoutes(t *testing.T) {
	nodes := startClusterEngines(t, 3, "--cluster-node-timeout", "2s")
	ctx := ctxFor(t, 90*time.Second)
	onA := connectGo(t, nodes[0], "http-on-node-0")
	if err := onA.HandleHTTPFunc("POST /cl/echo/{name}", "cluster::http_echo", func(w http.ResponseWriter, r *http.Request) {
		var in map[string]any
		_ = json.NewDecoder(r.Body).Decode(&in)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"served_by": "node-0", "name": r.PathValue("name"), "got": in})
	}); err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctx, t, onA, "cluster::http_echo")
	for _, i := range []int{1, 2} {
		mk := func() *http.Request {
			req, _ := http.NewRequest("POST", nodes[i].HTTPURL+"/cl/echo/bob", strings.NewReader(`{"n":`+fmt.Sprint(i)+`}`))
			req.Header.Set("Content-Type", "application/json")
			return req
		}
		code, body := clusterHTTPUntil(ctx, t, mk, func(code int, _ string) bool { return code != http.StatusNotFound })
		want := fmt.Sprintf(`{"got":{"n":%d},"name":"bob","served_by":"node-0"}`, i)
		var got map[string]any
		_ = json.Unmarshal([]byte(body), &got)
		norm, _ := json.Marshal(got)
		if code != http.StatusOK || string(norm) != want {
			t.Fatalf("POST through node %d: %d %s, want 200 %s", i, code, body, want)
		}
	}
	// The worker leaves: node 1 drops the route.
	if err := onA.Close(); err != nil {
		t.Fatal(err)
	}
	mkEcho := func() *http.Request {
		req, _ := http.NewRequest("POST", nodes[1].HTTPURL+"/cl/echo/bob", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		return req
	}
	if code, body := clusterHTTPUntil(ctx, t, mkEcho, func(code int, _ string) bool { return code == http.StatusNotFound }); code != http.StatusNotFound || !strings.Contains(body, "NOT_FOUND") {
		t.Fatalf("node 1 after node 0's worker left: %d %s, want 404", code, body)
	}

	// A route of node 2's worker, then node 2 dies.
	onC := connectGo(t, nodes[2], "http-on-node-2")
	if err := onC.HandleHTTPFunc("GET /cl/gone", "cluster::http_gone", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"served_by":"node-2"}`)
	}); err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctx, t, onC, "cluster::http_gone")
	mkGone := func() *http.Request { req, _ := http.NewRequest("GET", nodes[1].HTTPURL+"/cl/gone", nil); return req }
	if code, body := clusterHTTPUntil(ctx, t, mkGone, func(code int, _ string) bool { return code != http.StatusNotFound }); code != http.StatusOK || !strings.Contains(body, "node-2") {
		t.Fatalf("GET /cl/gone through node 1: %d %s, want node 2's answer", code, body)
	}
	nodes[2].kill()
	if _, err := nodes[1].stderr.wait(ctx, func(s string) bool {
		return strings.Contains(s, `msg="cluster node left" node=node-2`)
	}); err != nil {
		t.Fatalf("node 1 never declared node 2 gone: %v", err)
	}
	res, err := http.DefaultClient.Do(mkGone().WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /cl/gone through node 1 after node 2 left: %d %s, want 404", res.StatusCode, b)
	}
}

// TestClusterOfficialSDKRoutesAndCron: for the Node (0.22.1), Python
// (0.25.0) and Rust (0.25.0) SDKs, the worker cluster_modules.mjs / .py /
// rust cluster_modules runs on nodes 0 and 2 with the same prefix. A POST
// with a JSON body through node 1, which has no worker, is answered by one
// of them (buffered result across nodes); their identical every-second
// cron bindings run each scheduled time once in the cluster; a state::set,
// a publish and a stream::set through node 1 fire the state, subscribe
// and stream bindings of each of them (once per binding, as on one engine).
// With the route sharing and the cron claims disabled (the behaviour of
// 04c1a7a) node 1 answered 404 until the deadline.
func TestClusterOfficialSDKRoutesAndCron(t *testing.T) {
	for _, name := range []string{"node-0.22.1", "python-0.25.0", "rust-0.25.0"} {
		t.Run(name, func(t *testing.T) { f := flavourNamed(name); clusterOfficialSDK(t, f, f.script("cluster_modules")) })
	}
}

func clusterOfficialSDK(t *testing.T, f *flavour, script string) {
	f.require(t)
	nodes := startClusterEngines(t, 3)
	ctx := ctxFor(t, 90*time.Second)
	var mu sync.Mutex
	runs := map[string][]string{}
	tick := make(chan struct{}, 64)
	var workers []*worker
	for _, i := range []int{0, 2} {
		label := fmt.Sprintf("node-%d", i)
		w := startWorker(t, f, nodes[i], script, "clsdk", "NODE_LABEL="+label)
		workers = append(workers, w)
		go func() {
			_, _ = w.stdout.wait(ctx, func(s string) bool {
				if at, ok := strings.CutPrefix(s, "CRON "); ok {
					mu.Lock()
					runs[at] = append(runs[at], label)
					mu.Unlock()
					select {
					case tick <- struct{}{}:
					default:
					}
				}
				return false
			})
		}()
	}
	mk := func() *http.Request {
		req, _ := http.NewRequest("POST", nodes[1].HTTPURL+"/clsdk/cl/ann", strings.NewReader(`{"n":1}`))
		req.Header.Set("Content-Type", "application/json")
		return req
	}
	code, body := clusterHTTPUntil(ctx, t, mk, func(code int, _ string) bool { return code != http.StatusNotFound })
	var got struct {
		ServedBy string         `json:"served_by"`
		Name     string         `json:"name"`
		Got      map[string]int `json:"got"`
	}
	if err := json.Unmarshal([]byte(body), &got); code != http.StatusOK || err != nil || got.Name != "ann" || got.Got["n"] != 1 ||
		(got.ServedBy != "node-0" && got.ServedBy != "node-2") {
		t.Fatalf("POST through node 1: %d %s, want 200 from a %s worker on node 0 or 2", code, body, f.Name)
	}
	for {
		mu.Lock()
		n := len(runs)
		mu.Unlock()
		if n >= 4 {
			break
		}
		select {
		case <-tick:
		case <-ctx.Done():
			t.Fatalf("the %s workers' cron ran %d scheduled times", f.Name, n)
		}
	}
	mu.Lock()
	for at, on := range runs {
		if len(on) != 1 {
			t.Errorf("scheduled time %s ran on %v, want once", at, on)
		}
	}
	mu.Unlock()

	// A write through node 1 reaches the state bindings on nodes 0 and 2.
	writer := connectGo(t, nodes[1], "state-writer-on-node-1")
	if _, err := writer.Trigger(ctx, "state::set", map[string]any{"scope": "clsdk", "key": "k1", "value": 1}); err != nil {
		t.Fatal(err)
	}
	// A publish and a stream item through node 1 reach their bindings on
	// nodes 0 and 2 too.
	if _, err := writer.Trigger(ctx, "publish", map[string]any{"topic": "clsdk-topic", "data": map[string]any{"n": 7}}); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Trigger(ctx, "stream::set", map[string]any{"stream_name": "clsdk-board", "group_id": "g", "item_id": "i1", "data": map[string]any{"n": 1}}); err != nil {
		t.Fatal(err)
	}
	for i, w := range workers {
		for _, line := range []string{"STATE state:created k1", "TOPIC 7", "STREAM create i1"} {
			if _, err := w.stdout.wait(ctx, func(s string) bool { return s == line }); err != nil {
				t.Fatalf("the %s worker on node %d never printed %q for node 1's write: %v", f.Name, 2*i, line, w.exitNote(err))
			}
		}
	}
}

// TestClusterHTTPStreamedBodies: a Go worker on node 0 serves a route
// that reads a streamed (non-JSON) request body and streams a response
// bigger than a result; a client posts 1 MiB through node 1. The request
// body and the response travel through node 1's channels, which the worker
// on node 0 reaches across nodes: the worker sees the exact body and the
// client gets the exact 2 MiB response.
func TestClusterHTTPStreamedBodies(t *testing.T) {
	nodes := startClusterEngines(t, 3)
	ctx := ctxFor(t, 90*time.Second)
	onA := connectGo(t, nodes[0], "stream-http-on-node-0")
	resp := bytes.Repeat([]byte("0123456789abcdef"), 128<<10) // 2 MiB
	if err := onA.HandleHTTPFunc("POST /cl/upload", "cluster::upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("X-Body-Sha256", hex.EncodeToString(h.Sum(nil)))
		w.Header().Set("X-Body-Bytes", fmt.Sprint(n))
		_, _ = w.Write(resp)
	}); err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctx, t, onA, "cluster::upload")
	body := make([]byte, 1<<20)
	for i := range body {
		body[i] = byte(i * 7)
	}
	sum := sha256.Sum256(body)
	var res *http.Response
	for {
		req, _ := http.NewRequestWithContext(ctx, "POST", nodes[1].HTTPURL+"/cl/upload", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/octet-stream")
		var err error
		if res, err = http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusNotFound {
			break
		}
		res.Body.Close() // node 1 has not heard of the route yet
	}
	defer res.Body.Close()
	got, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading the streamed response through node 1: %v", err)
	}
	if res.StatusCode != http.StatusOK || res.Header.Get("X-Body-Sha256") != hex.EncodeToString(sum[:]) || res.Header.Get("X-Body-Bytes") != "1048576" {
		t.Fatalf("POST 1 MiB through node 1: %d %v %.200s", res.StatusCode, res.Header, got)
	}
	if !bytes.Equal(got, resp) {
		t.Fatalf("streamed response through node 1: %d bytes, want the 2 MiB the worker on node 0 wrote", len(got))
	}
}

// bindEventSink registers fn on c, handing each call's payload to the
// channel it returns, and binds it with a trigger of type typ. It returns
// once the binding is in place: the engine handles a connection's messages
// in order, so a later call answered means the binding was handled.
func bindEventSink(ctx context.Context, t *testing.T, c *sluice.Client, fn, typ string, config map[string]any) <-chan map[string]any {
	t.Helper()
	events := make(chan map[string]any, 4)
	if err := sluice.Register(c, fn, func(ctx context.Context, in map[string]any) (any, error) {
		events <- in
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterTrigger(sluice.TriggerSpec{Type: typ, FunctionID: fn, Config: config}); err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctx, t, c, fn)
	return events
}
