package interop

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// The nats-server the external-NATS test runs: built once from the module
// cache (the engine embeds the same version), as an operator would
// install it.
var (
	externalNATSOnce sync.Once
	externalNATSBin  string
	externalNATSErr  error
)

func buildExternalNATS(t *testing.T) string {
	t.Helper()
	externalNATSOnce.Do(func() {
		dir := filepath.Dir(engineBin)
		externalNATSBin = filepath.Join(dir, "nats-server")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", externalNATSBin, "github.com/nats-io/nats-server/v2")
		cmd.Dir = moduleRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			externalNATSErr = err
			t.Logf("go build nats-server: %s", out)
		}
	})
	if externalNATSErr != nil {
		t.Fatalf("building nats-server from the module cache: %v", externalNATSErr)
	}
	return externalNATSBin
}

// startExternalNATSNodes starts engine nodes "a" and "b" with the flags
// args gives each and waits until each logs its cluster on the external
// NATS (no embedded server).
func startExternalNATSNodes(ctx context.Context, t *testing.T, args func(name string) []string) []*engineProc {
	var nodes []*engineProc
	for _, name := range []string{"a", "b"} {
		e := startEngine(t, "127.0.0.1:0", args(name)...)
		if _, err := e.stderr.wait(ctx, func(s string) bool {
			return strings.Contains(s, `msg="cluster node ready" node=`+name) && strings.Contains(s, "embedded_nats=false")
		}); err != nil {
			t.Fatalf("engine %s did not log its cluster on the external NATS: %v", name, err)
		}
		nodes = append(nodes, e)
	}
	return nodes
}

// TestClusterExternalNATS: a nats-server process with JetStream and two
// engine processes pointed at it with --nats-url (no embedded server).
// A call from node b to a function served on node a, a state value
// written on a read on b, a state binding on a fired by a write on b, an
// HTTP route of a's worker answered through b, a job enqueued on b
// delivered on a, and a cron schedule held on both nodes run once per
// time. Its state-binding, route and cron parts need this branch's
// changes (each shown failing without them by the tests of
// cluster_modules_test.go); before, only the engine's in-process tests ran
// against an external server.
func TestClusterExternalNATS(t *testing.T) {
	bin := buildExternalNATS(t)
	ctx := ctxFor(t, 90*time.Second)
	port := clusterFreePorts(t, 1)[0]
	host, p, _ := strings.Cut(port, ":")
	ns := startProc(t, "nats-server", exec.Command(bin, "-js", "-sd", t.TempDir(), "-a", host, "-p", p, "-n", "external-nats"))
	if _, err := ns.stderr.wait(ctx, func(s string) bool { return strings.Contains(s, "Server is ready") }); err != nil {
		t.Fatalf("nats-server did not start: %v", ns.exitNote(err))
	}
	cfg := clusterStreamsConfig(t)
	dir := t.TempDir()
	nodes := startExternalNATSNodes(ctx, t, func(name string) []string {
		return []string{"--config", cfg, "--data-dir", filepath.Join(dir, name), "--node-name", name, "--nats-url", "nats://" + port}
	})
	onA := connectGo(t, nodes[0], "worker-on-a")
	onB := connectGo(t, nodes[1], "worker-on-b")

	// A call from b to a's function (retried until a's offer reached b).
	if err := sluice.Register(onA, "ext::echo", func(ctx context.Context, in struct {
		V int `json:"v"`
	}) (any, error) {
		return map[string]any{"v": in.V, "on": "a"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	raw, err := triggerServed(ctx, onB, "ext::echo", map[string]int{"v": 1})
	if err != nil || string(raw) != `{"on":"a","v":1}` {
		t.Fatalf("call b → a: %s %v", raw, err)
	}

	// State: written on a, read on b; a binding on a fires for b's write.
	stateEvents := bindEventSink(ctx, t, onA, "ext::on_state", "state", map[string]any{"scope": "ext"})
	if _, err := onA.Trigger(ctx, "state::set", map[string]any{"scope": "other", "key": "k", "value": "from-a"}); err != nil {
		t.Fatal(err)
	}
	if raw, err := onB.Trigger(ctx, "state::get", map[string]any{"scope": "other", "key": "k"}); err != nil || string(raw) != `"from-a"` {
		t.Fatalf("state::get on b: %s %v", raw, err)
	}
	if _, err := onB.Trigger(ctx, "state::set", map[string]any{"scope": "ext", "key": "k", "value": 2}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-stateEvents:
		if ev["event_type"] != "state:created" || ev["new_value"] != float64(2) {
			t.Fatalf("a's state binding got %v", ev)
		}
	case <-ctx.Done():
		t.Fatal("a write on b never fired the state binding on a")
	}

	// HTTP: a's route answered through b.
	if err := onA.HandleHTTPFunc("GET /ext/hello", "ext::hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"served_by":"a"}`)
	}); err != nil {
		t.Fatal(err)
	}
	mk := func() *http.Request { req, _ := http.NewRequest("GET", nodes[1].HTTPURL+"/ext/hello", nil); return req }
	if code, body := clusterHTTPUntil(ctx, t, mk, func(code int, _ string) bool { return code != http.StatusNotFound }); code != http.StatusOK || body != `{"served_by":"a"}` {
		t.Fatalf("GET /ext/hello through b: %d %s", code, body)
	}

	// A job enqueued on b, delivered on a.
	jobs := make(chan int, 2)
	if err := sluice.Register(onA, "ext::job", func(ctx context.Context, in struct{ N int }) (any, error) {
		jobs <- in.N
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctx, t, onA, "ext::job")
	if _, err := onB.Enqueue(ctx, "default", "ext::job", map[string]int{"n": 9}); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-jobs:
		if n != 9 {
			t.Fatalf("job carried %d", n)
		}
	case <-ctx.Done():
		t.Fatal("a job enqueued on b never reached a")
	}

	// Cron held on both nodes: three scheduled times, once each.
	var mu sync.Mutex
	runs := map[string]int{}
	tick := make(chan struct{}, 16)
	for _, c := range []*sluice.Client{onA, onB} {
		if err := sluice.Register(c, "ext::tick", func(ctx context.Context, in struct {
			ScheduledTime string `json:"scheduled_time"`
		}) (any, error) {
			mu.Lock()
			runs[in.ScheduledTime]++
			mu.Unlock()
			tick <- struct{}{}
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.RegisterTrigger(sluice.TriggerSpec{Type: "cron", FunctionID: "ext::tick", Config: map[string]any{"expression": "* * * * * *"}}); err != nil {
			t.Fatal(err)
		}
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
			t.Fatalf("cron on both nodes ran %d scheduled times", n)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for at, n := range runs {
		if n != 1 {
			t.Errorf("scheduled time %s ran %d times, want once", at, n)
		}
	}
}
