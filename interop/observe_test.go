package interop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	sluice "github.com/sluicehq/sluice"
)

// obsAct is one ACT line of interop/python/observe.py.
type obsAct struct {
	Target string
	Data   map[string]any `json:"data"`
	Meta   any            `json:"metadata"`
	Depth  int            `json:"depth"`
}

// obsNextAct waits for the n-th (1-based) ACT line for target.
func obsNextAct(ctx context.Context, t *testing.T, w *proc, target string, n int) obsAct {
	t.Helper()
	seen := 0
	line, err := w.stdout.wait(ctx, func(s string) bool {
		if strings.HasPrefix(s, "ACT "+target+" ") {
			seen++
		}
		return seen == n && strings.HasPrefix(s, "ACT "+target+" ")
	})
	if err != nil {
		t.Fatalf("activation %d of %s: %v", n, target, err)
	}
	a := obsAct{Target: target}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "ACT "+target+" ")), &a); err != nil {
		t.Fatal(err)
	}
	return a
}

func obsCount(w *proc, target string) int {
	return strings.Count(w.stdout.String(), "ACT "+target+" ")
}

// obsObserver returns engine::observers::get's view of an observer.
func obsObserver(ctx context.Context, t *testing.T, c *sluice.Client, id string) map[string]any {
	t.Helper()
	raw, err := c.Trigger(ctx, "engine::observers::get", map[string]string{"id": id})
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Observer map[string]any `json:"observer"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out.Observer
}

// The Python 0.25 SDK observes functions on Sluice: routed calls (from Go)
// filtered on input and caller, on_error with its capture, the observer's
// metadata sidecar, a call the owner ran in-process (local dispatch, reported
// in invocationsobserved) filtered on caller.function_id, a Go function
// observed from Python, the refusals (SELF_TARGET, INVALID_FILTER,
// INVALID_ARGS), and activations resuming after the watcher's and after the
// owner's socket dropped. On 25c1da9 (before observe): observe failed with
// UNSUPPORTED (no observe.v1 in the engine's features) and the script never
// printed OBSERVING.
func TestObservePython025(t *testing.T) {
	f := flavourNamed("python-0.25.0")
	e := startPlainEngine(t)
	ctx := ctxFor(t, 90*time.Second)
	gocaller := connectGo(t, e, "gocaller-1")
	other := connectGo(t, e, "other-caller")
	if err := sluice.Register(gocaller, "go-obs::ping", func(_ context.Context, in map[string]any) (map[string]any, error) {
		return in, nil
	}); err != nil {
		t.Fatal(err)
	}
	w := startWorker(t, f, e, "observe.py", "pyobs")
	line, err := w.stdout.wait(ctx, func(s string) bool { return strings.HasPrefix(s, "OBSERVING ") })
	if err != nil {
		t.Fatal(err)
	}
	var ids struct{ Alert, Go string }
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "OBSERVING ")), &ids); err != nil {
		t.Fatal(err)
	}
	for _, code := range []string{"SELF_TARGET", "INVALID_FILTER", "INVALID_ARGS"} {
		if _, err := w.stdout.wait(ctx, func(s string) bool { return s == "REFUSED "+code }); err != nil {
			t.Fatalf("refusal %s: %v\n%s", code, err, w.stdout)
		}
	}

	call := func(c *sluice.Client, fn string, payload any) (json.RawMessage, error) {
		return c.Trigger(ctx, fn, payload)
	}
	// Routed: only gocaller's call with amount >= 500 matches.
	for _, p := range []struct {
		c      *sluice.Client
		amount int
	}{{other, 950}, {gocaller, 100}, {gocaller, 900}} {
		if _, err := call(p.c, "pyobs::charge", map[string]int{"amount": p.amount}); err != nil {
			t.Fatal(err)
		}
	}
	a := obsNextAct(ctx, t, w.proc, "alert", 1)
	in, _ := a.Data["input"].(map[string]any)
	caller, _ := a.Data["caller"].(map[string]any)
	if in["amount"] != 900.0 || a.Data["observer_id"] != ids.Alert || a.Data["status"] != "success" ||
		caller["worker_name"] != "gocaller-1" || a.Depth != 1 {
		t.Fatalf("activation: %+v", a)
	}
	if out, _ := a.Data["output"].(map[string]any); out["charged"] != 900.0 {
		t.Fatalf("output: %+v", a.Data)
	}
	if m, _ := a.Meta.(map[string]any); m["team"] != "payments" {
		t.Fatalf("metadata sidecar: %+v", a.Meta)
	}
	if fires := obsObserver(ctx, t, gocaller, ids.Alert)["fires"]; fires != 1.0 {
		t.Fatalf("fires %v: the filters let another call through", fires)
	}

	// on: error, capture: error only.
	if _, err := call(gocaller, "pyobs::charge", map[string]int{"amount": -1}); err == nil {
		t.Fatal("a declined charge succeeded")
	}
	ae := obsNextAct(ctx, t, w.proc, "alert-err", 1)
	if ae.Data["status"] != "error" || ae.Data["input"] != nil || ae.Data["error"] == nil {
		t.Fatalf("error activation: %+v", ae.Data)
	}

	// Local dispatch: the owner calls charge in-process and reports it.
	if _, err := call(gocaller, "pyobs::local-call", map[string]int{"amount": 7}); err != nil {
		t.Fatal(err)
	}
	al := obsNextAct(ctx, t, w.proc, "alert-local", 1)
	if in, _ := al.Data["input"].(map[string]any); in["amount"] != 7.0 {
		t.Fatalf("local activation: %+v", al.Data)
	}

	// A Go function observed from Python.
	if _, err := call(gocaller, "go-obs::ping", map[string]string{"hello": "py"}); err != nil {
		t.Fatal(err)
	}
	ag := obsNextAct(ctx, t, w.proc, "alert-go", 1)
	if ag.Data["function_id"] != "go-obs::ping" || ag.Data["observer_id"] != ids.Go {
		t.Fatalf("go activation: %+v", ag.Data)
	}

	// Reconnects: the watcher's socket (observers and targets replayed),
	// then the owner's (the observed function comes back).
	for i, drop := range []string{"pyobs::drop-watcher", "pyobs::drop-owner"} {
		before := obsCount(w.proc, "alert")
		if err := gocaller.TriggerVoid(ctx, drop, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := e.stderr.wait(ctx, func(s string) bool {
			return strings.Contains(s, "worker disconnected") && strings.Contains(s, fmt.Sprintf("name=pyobs-%s", []string{"watcher", "owner"}[i]))
		}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for obsCount(w.proc, "alert") == before {
			if time.Now().After(deadline) {
				t.Fatalf("no activation after %s\n%s", drop, w.stdout)
			}
			_, _ = call(gocaller, "pyobs::charge", map[string]int{"amount": 1000 + i})
			select {
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			case <-time.After(200 * time.Millisecond): // retry interval while the worker reconnects
			}
		}
	}
	if st := obsObserver(ctx, t, gocaller, ids.Alert)["state"]; st != "active" {
		t.Fatalf("after the reconnects the observer is %v", st)
	}
}

// obsRustBin is the observe worker setup.sh builds (rust/src/bin/obs_worker.rs).
func obsRustBin(t *testing.T) string {
	flavourNamed("rust-0.25.0").require(t)
	bin := filepath.Join(interopDir, "rust", "target", rustProfile, "obs_worker")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("SLUICE_INTEROP") == "1" {
			t.Fatalf("%s missing: run interop/setup.sh (%v)", bin, err)
		}
		t.Skipf("%s missing: run interop/setup.sh", bin)
	}
	return bin
}

// The Rust crate 0.25 observes on Sluice: a routed call from Go filtered on
// input and caller with the observer's metadata sidecar, a call the owner
// ran in-process (local dispatch, reported in invocationsobserved) filtered
// on caller.function_id, and the refusals SELF_TARGET and INVALID_FILTER.
// Before observe (25c1da9) the crate's ready() failed with UNSUPPORTED and
// the worker panicked before printing OBSERVING.
func TestObserveRust025(t *testing.T) {
	bin := obsRustBin(t)
	e := startPlainEngine(t)
	ctx := ctxFor(t, 60*time.Second)
	gocaller := connectGo(t, e, "gocaller-r")
	other := connectGo(t, e, "other-r")
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "III_URL="+e.URL, "WORKER_PREFIX=rsobs", "OTEL_ENABLED=false")
	p := startProc(t, "rust-obs", cmd)
	p.waitLine(ctx, t, "READY")
	for _, code := range []string{"SELF_TARGET", "INVALID_FILTER"} {
		if _, err := p.stdout.wait(ctx, func(s string) bool { return s == "REFUSED "+code }); err != nil {
			t.Fatalf("refusal %s: %v\n%s", code, err, p.stdout)
		}
	}
	line, _ := p.stdout.wait(ctx, func(s string) bool { return strings.HasPrefix(s, "OBSERVING ") })
	var ids struct{ Alert string }
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "OBSERVING ")), &ids); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		c      *sluice.Client
		amount int
	}{{other, 950}, {gocaller, 100}, {gocaller, 900}} {
		if _, err := c.c.Trigger(ctx, "rsobs::charge", map[string]int{"amount": c.amount}); err != nil {
			t.Fatal(err)
		}
	}
	a := obsNextAct(ctx, t, p, "alert", 1)
	in, _ := a.Data["input"].(map[string]any)
	caller, _ := a.Data["caller"].(map[string]any)
	meta, _ := a.Meta.(map[string]any)
	if in["amount"] != 900.0 || a.Data["observer_id"] != ids.Alert || caller["worker_name"] != "gocaller-r" ||
		meta["team"] != "payments" || a.Depth != 1 {
		t.Fatalf("activation %+v", a)
	}
	if fires := obsObserver(ctx, t, gocaller, ids.Alert)["fires"]; fires != 1.0 {
		t.Fatalf("fires %v: the filters let another call through", fires)
	}
	if _, err := gocaller.Trigger(ctx, "rsobs::local-call", map[string]int{"amount": 7}); err != nil {
		t.Fatal(err)
	}
	al := obsNextAct(ctx, t, p, "alert-local", 1)
	if in, _ := al.Data["input"].(map[string]any); in["amount"] != 7.0 {
		t.Fatalf("local activation %+v", al.Data)
	}
}

// The Go SDK's Observe against a function of the Python 0.25 SDK: the Go
// target gets the envelope; a refused observer is an *Error with the code;
// cancelling the context unobserves (the engine forgets the observer).
func TestObserveGoSDK(t *testing.T) {
	f := flavourNamed("python-0.25.0")
	e := startPlainEngine(t)
	ctx := ctxFor(t, 60*time.Second)
	c := connectGo(t, e, "gocaller-2")
	got := make(chan sluice.Observed, 4)
	if err := sluice.Register(c, "go-obs::sink", func(_ context.Context, in sluice.Observed) (any, error) {
		got <- in
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	startWorker(t, f, e, "observe.py", "pyobs2")
	waitFunctions(ctx, t, c, "pyobs2::charge")

	octx, cancel := context.WithCancel(ctx)
	h, err := c.Observe(octx, sluice.Source{
		FunctionID: "pyobs2::charge",
		Filters:    map[string]any{"input.amount": map[string]any{"$gt": 10}},
	}, "go-obs::sink", sluice.MaxFires(5))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{5, 50} {
		if _, err := c.Trigger(ctx, "pyobs2::charge", map[string]int{"amount": n}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case ev := <-got:
		if ev.FunctionID != "pyobs2::charge" || string(ev.Input) != `{"amount":50}` || ev.ObserverID != h.ID() {
			t.Fatalf("envelope %+v", ev)
		}
	case <-ctx.Done():
		t.Fatal("no activation")
	}

	_, err = c.Observe(ctx, sluice.Source{FunctionID: "pyobs2::charge", Filters: map[string]any{"input.a": 1}}, "go-obs::sink")
	var se *sluice.Error
	if !errors.As(err, &se) || se.Code != "INVALID_FILTER" {
		t.Fatalf("bad filter: %v", err)
	}

	cancel()
	<-h.Done()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.Trigger(ctx, "engine::observers::get", map[string]string{"id": h.ID()})
		if errors.As(err, &se) && se.Code == "OBSERVER_NOT_FOUND" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the engine still has the observer after the context ended: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // the unobserve is fire and forget
	}
}

// A worker that did not declare observe.v1 (an older SDK) sees nothing new:
// its observed function is invoked with exactly the fields it always got
// (no caller, observe_depth or activation), and no observe frame reaches it,
// while its observer still fires. On 25c1da9 the observe failed.
func TestObserveOldSDKSeesNothingNew(t *testing.T) {
	e := startPlainEngine(t)
	ctx := ctxFor(t, 30*time.Second)
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, e.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	frames := make(chan map[string]any, 64)
	go func() {
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				close(frames)
				return
			}
			var m map[string]any
			if json.Unmarshal(b, &m) == nil {
				frames <- m
			}
		}
	}()
	send := func(s string) {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	send(`{"type":"registerfunction","id":"old::fn"}`)
	send(`{"type":"invokefunction","function_id":"engine::workers::register","data":{"runtime":"node","version":"0.22.1","name":"old"},"action":{"type":"void"}}`)

	c := connectGo(t, e, "gocaller-3")
	waitFunctions(ctx, t, c, "old::fn")
	got := make(chan sluice.Observed, 1)
	if err := sluice.Register(c, "go-obs::sink3", func(_ context.Context, in sluice.Observed) (any, error) {
		got <- in
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	h, err := c.Observe(ctx, sluice.Source{FunctionID: "old::fn"}, "go-obs::sink3")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() { _, err := c.Trigger(ctx, "old::fn", map[string]int{"n": 1}); res <- err }()
	for m := range frames {
		switch m["type"] {
		case "workerregistered":
			continue // it carries features; older SDKs ignore unknown fields
		case "invokefunction":
			for _, k := range []string{"caller", "observe_depth", "activation"} {
				if _, ok := m[k]; ok {
					t.Fatalf("an old worker got %q: %v", k, m)
				}
			}
			b, _ := json.Marshal(map[string]any{"type": "invocationresult", "invocation_id": m["invocation_id"], "function_id": "old::fn", "result": "ok"})
			send(string(b))
		default:
			t.Fatalf("an old worker got a %v frame: %v", m["type"], m)
		}
		break
	}
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		if ev.FunctionID != "old::fn" || string(ev.Output) != `"ok"` {
			t.Fatalf("envelope %+v", ev)
		}
	case <-ctx.Done():
		t.Fatal("no activation")
	}
	select {
	case m, ok := <-frames:
		if ok {
			t.Fatalf("an old worker got a %v frame after the call: %v", m["type"], m)
		}
	case <-time.After(300 * time.Millisecond): // a window for a stray frame; nothing is expected
	}
}

// Observers in and across namespaces with the Python 0.25 SDK
// (observe_ns.py): a watcher in namespace orders observes the orders
// charge unqualified (its SDK sends its own namespace), a default-namespace
// auditor observes it with namespace orders; calls of the default charge
// (same id) activate neither; a call the orders owner ran in-process (local
// dispatch, reported in invocationsobserved) activates both; envelopes and
// engine::observers::get name the namespaces. On 2ad5afe: both observers
// were refused INVALID_ARGS ("namespace \"orders\" is not served by this
// engine") and the script never printed OBSERVING.
func TestObserveNamespacesPython025(t *testing.T) {
	f := flavourNamed("python-0.25.0")
	e := startPlainEngine(t)
	ctx := ctxFor(t, 90*time.Second)
	c := connectGo(t, e, "gons")
	w := startWorker(t, f, e, "observe_ns.py", "pyns")
	line, err := w.stdout.wait(ctx, func(s string) bool { return strings.HasPrefix(s, "OBSERVING ") })
	if err != nil {
		t.Fatalf("%v\n%s", err, w.stdout)
	}
	var ids struct{ Within, Across string }
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "OBSERVING ")), &ids); err != nil {
		t.Fatal(err)
	}
	call := func(fn, ns string, amount int) map[string]any {
		t.Helper()
		raw, err := c.Trigger(ctx, "pyns::call", map[string]any{"fn": fn, "ns": ns, "payload": map[string]int{"amount": amount}})
		if err != nil {
			t.Fatalf("%s in %q: %v", fn, ns, err)
		}
		var out map[string]any
		_ = json.Unmarshal(raw, &out)
		return out
	}
	check := func(target string, n, amount int) {
		t.Helper()
		a := obsNextAct(ctx, t, w.proc, target, n)
		in, _ := a.Data["input"].(map[string]any)
		out, _ := a.Data["output"].(map[string]any)
		if in["amount"] != float64(amount) || a.Data["namespace"] != "orders" || out["ns"] != "orders" || a.Depth != 1 {
			t.Fatalf("activation %d of %s: %+v", n, target, a)
		}
	}
	if r := call("pyns::charge", "orders", 1); r["ns"] != "orders" {
		t.Fatalf("orders charge answered %v", r)
	}
	check("alert", 1, 1)
	check("audit", 1, 1)
	// The default charge (same id) is not observed: the next activations are
	// of the next orders call.
	if r := call("pyns::charge", "", 2); r["ns"] != "default" {
		t.Fatalf("default charge answered %v", r)
	}
	call("pyns::charge", "orders", 3)
	check("alert", 2, 3)
	check("audit", 2, 3)
	// Local dispatch in orders: the owner runs charge in-process and reports it.
	call("pyns::local-call", "orders", 4)
	check("alert", 3, 4)
	check("audit", 3, 4)
	if n := obsCount(w.proc, "alert") + obsCount(w.proc, "audit"); n != 6 {
		t.Fatalf("%d activations, want 6:\n%s", n, w.stdout)
	}
	within, across := obsObserver(ctx, t, c, ids.Within), obsObserver(ctx, t, c, ids.Across)
	if within["namespace"] != "orders" || within["target_namespace"] != nil || within["state"] != "active" || within["fires"] != 3.0 {
		t.Fatalf("within: %v", within)
	}
	if across["namespace"] != "orders" || across["target_namespace"] != "default" || across["fires"] != 3.0 {
		t.Fatalf("across: %v", across)
	}
}
