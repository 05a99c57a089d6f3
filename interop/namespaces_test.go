package interop

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// nsFunctionRow is a row of engine::functions::list with its namespace.
type nsFunctionRow struct {
	FunctionID string `json:"function_id"`
	Namespace  string `json:"namespace"`
	WorkerName string `json:"worker_name"`
}

// nsWaitRows polls engine::functions::list until want(rows) holds.
func nsWaitRows(ctx context.Context, t *testing.T, c *sluice.Client, what string, want func(map[string]nsFunctionRow) bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last map[string]nsFunctionRow
	for {
		out, err := sluice.Call[struct {
			Functions []nsFunctionRow `json:"functions"`
		}](ctx, c, "engine::functions::list", map[string]any{})
		if err == nil {
			last = map[string]nsFunctionRow{}
			for _, r := range out.Functions {
				last[r.Namespace+"/"+r.FunctionID] = r
			}
			if want(last) {
				return
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last list %v)", what, ctx.Err(), last)
		}
	}
}

// nsWho is what namespaces.py's functions answer.
type nsWho struct {
	Worker    string  `json:"worker"`
	Namespace *string `json:"namespace"`
}

// nsCallResult is what <prefix>::call answers.
type nsCallResult struct {
	Result *nsWho `json:"result"`
	Error  *struct {
		Code    *string `json:"code"`
		Message string  `json:"message"`
	} `json:"error"`
}

// nsVia makes proxy (a default-namespace worker's <prefix>::call) trigger
// fn, in ns when ns is not "".
func nsVia(ctx context.Context, t *testing.T, c *sluice.Client, proxy, fn, ns string, payload any) nsCallResult {
	t.Helper()
	in := map[string]any{"function_id": fn, "payload": payload}
	if ns != "" {
		in["namespace"] = ns
	}
	out, err := sluice.Call[nsCallResult](ctx, c, proxy, in)
	if err != nil {
		t.Fatalf("%s(%s in %q): %v", proxy, fn, ns, err)
	}
	return out
}

// nsStarter starts one namespace worker of an SDK: the worker name (and
// function prefix) prefix, in namespace ns ("" for none), registering fns;
// it waits for READY unless noWait.
type nsStarter func(t *testing.T, e *engineProc, prefix, ns, fns string, noWait ...bool) *proc

func nsPython(t *testing.T, e *engineProc, prefix, ns, fns string, noWait ...bool) *proc {
	env := []string{"FNS=" + fns}
	if ns != "" {
		env = append(env, "NS="+ns)
	}
	f := flavourNamed("python-0.25.0")
	if len(noWait) == 0 || !noWait[0] {
		return startWorker(t, f, e, "namespaces.py", prefix, env...).proc
	}
	// A worker the engine refuses may not get as far as READY: the SDK's
	// register_worker() raises the fatal rejection when it arrives first.
	cmd := exec.Command(f.require(t), "namespaces.py")
	cmd.Dir = filepath.Join(interopDir, f.Dir)
	cmd.Env = append(os.Environ(), "III_URL="+e.URL, "WORKER_PREFIX="+prefix, "OTEL_ENABLED=false",
		"PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1")
	cmd.Env = append(cmd.Env, env...)
	return startProc(t, f.Name+"/"+prefix+"/namespaces.py", cmd)
}

// nsRustBin is the namespace worker setup.sh builds (rust/src/bin/ns_worker.rs).
func nsRustBin(t *testing.T) string {
	flavourNamed("rust-0.25.0").require(t)
	bin := filepath.Join(interopDir, "rust", "target", rustProfile, "ns_worker")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("SLUICE_INTEROP") == "1" {
			t.Fatalf("%s missing: run interop/setup.sh (%v)", bin, err)
		}
		t.Skipf("%s missing: run interop/setup.sh", bin)
	}
	return bin
}

func nsRust(t *testing.T, e *engineProc, prefix, ns, fns string, _ ...bool) *proc {
	cmd := exec.Command(nsRustBin(t))
	cmd.Env = append(os.Environ(), "III_URL="+e.URL, "WORKER_PREFIX="+prefix, "FNS="+fns, "OTEL_ENABLED=false")
	if ns != "" {
		cmd.Env = append(cmd.Env, "NS="+ns)
	}
	p := startProc(t, "rust-ns/"+prefix, cmd)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	p.waitLine(ctx, t, "READY")
	return p
}

// TestNamespacesPython25 drives the official Python SDK 0.25 with
// InitOptions.namespace: the same function id in two namespaces, strict
// resolution (a namespaced worker's calls stay in its namespace; a miss
// names where the id exists), FUNCTION_NAMESPACE_CONFLICT for a second live
// worker in the same namespace (which keeps serving its other functions and
// takes the id over when the owner leaves), and WORKER_NAMESPACE_CONFLICT
// for a duplicate worker name in a namespace.
//
// On 25c1da9 (no namespaces): the namespaced worker's shared::get replaced
// the default one (last registration wins) and namespace fields were
// ignored, so the first check already saw one row instead of two.
func TestNamespacesPython25(t *testing.T) { nsScenario(t, nsPython) }

// TestNamespacesRust25 is TestNamespacesPython25 with the namespaced
// workers on the Rust crate 0.25 (rust/src/bin/ns_worker.rs); the
// default-namespace proxy stays a Python worker. On 25c1da9 it fails at the
// same first check.
func TestNamespacesRust25(t *testing.T) {
	nsRustBin(t)
	nsScenario(t, nsRust)
}

func nsScenario(t *testing.T, start nsStarter) {
	flavourNamed("python-0.25.0").require(t)
	e := startPlainEngine(t)
	c := connectGo(t, e, "ns-go")
	ctx := ctxFor(t, 2*time.Minute)

	orders := start(t, e, "nsa", "orders", "shared::get")
	nsPython(t, e, "nsb", "", "shared::get")
	nsWaitRows(ctx, t, c, "shared::get in orders and default", func(rows map[string]nsFunctionRow) bool {
		return rows["orders/shared::get"].WorkerName == "nsa" && rows["default/shared::get"].WorkerName == "nsb" &&
			rows["orders/nsa::call"].FunctionID != "" && rows["default/nsb::call"].FunctionID != ""
	})
	// The Go SDK sends no namespace: default.
	who, err := sluice.Call[nsWho](ctx, c, "shared::get", map[string]any{})
	if err != nil || who.Worker != "nsb" {
		t.Fatalf("shared::get from the Go SDK = %+v, %v; want nsb's", who, err)
	}
	// An explicit namespace reaches orders.
	if r := nsVia(ctx, t, c, "nsb::call", "shared::get", "orders", nil); r.Result == nil || r.Result.Worker != "nsa" {
		t.Fatalf("shared::get in orders = %+v; want nsa's", r)
	}
	// A namespaced worker's call without a namespace stays in its own.
	r := nsVia(ctx, t, c, "nsb::call", "nsa::call", "orders", map[string]any{"function_id": "shared::get"})
	if r.Result == nil {
		t.Fatalf("nsa::call = %+v", r)
	}
	// nsa::call answers {result: {worker: nsa}}: decode one level down.
	inner, err := sluice.Call[struct {
		Result struct {
			Result *nsWho `json:"result"`
		} `json:"result"`
	}](ctx, c, "nsb::call", map[string]any{"function_id": "nsa::call", "namespace": "orders", "payload": map[string]any{"function_id": "shared::get"}})
	if err != nil || inner.Result.Result == nil || inner.Result.Result.Worker != "nsa" {
		t.Fatalf("nsa calling shared::get without a namespace = %+v, %v; want its own namespace's (nsa)", inner, err)
	}
	// A miss names the namespaces where the id exists.
	miss := nsVia(ctx, t, c, "nsb::call", "shared::get", "billing", nil)
	if miss.Error == nil || miss.Error.Code == nil || *miss.Error.Code != "function_not_found" ||
		!strings.Contains(miss.Error.Message, "billing") || !strings.Contains(miss.Error.Message, "default, orders") {
		t.Fatalf("shared::get in billing = %+v; want function_not_found naming default, orders", miss)
	}

	// A second live worker in orders: its shared::get is refused, its other
	// function is served, and the owner keeps answering.
	start(t, e, "nsc", "orders", "shared::get")
	if _, err := e.stderr.wait(ctx, func(s string) bool {
		return strings.Contains(s, "registerfunction refused: another live worker holds the id") && strings.Contains(s, "shared::get")
	}); err != nil {
		t.Fatalf("engine log: no FUNCTION_NAMESPACE_CONFLICT refusal: %v", err)
	}
	nsWaitRows(ctx, t, c, "nsc::call in orders", func(rows map[string]nsFunctionRow) bool {
		return rows["orders/nsc::call"].WorkerName == "nsc" && rows["orders/shared::get"].WorkerName == "nsa"
	})
	if r := nsVia(ctx, t, c, "nsb::call", "shared::get", "orders", nil); r.Result == nil || r.Result.Worker != "nsa" {
		t.Fatalf("shared::get in orders after the conflict = %+v; want the owner nsa", r)
	}
	// The owner leaves: the refused worker, still connected, takes over.
	orders.stop(t)
	nsWaitRows(ctx, t, c, "nsc owning shared::get in orders", func(rows map[string]nsFunctionRow) bool {
		return rows["orders/shared::get"].WorkerName == "nsc"
	})
	if r := nsVia(ctx, t, c, "nsb::call", "shared::get", "orders", nil); r.Result == nil || r.Result.Worker != "nsc" {
		t.Fatalf("shared::get in orders after the owner left = %+v; want nsc", r)
	}

	// The same worker name in the same namespace: fatal for the newcomer.
	dup := start(t, e, "nsc", "orders", "dup::only", true)
	sawFatal := make(chan struct{}, 2)
	for _, l := range []*lineLog{dup.stdout, dup.stderr} {
		go func() {
			if _, err := l.wait(ctx, func(s string) bool { return strings.Contains(s, "WORKER_NAMESPACE_CONFLICT") }); err == nil {
				sawFatal <- struct{}{}
			}
		}()
	}
	select {
	case <-sawFatal:
	case <-ctx.Done():
		t.Fatal("the duplicate-name worker reported no WORKER_NAMESPACE_CONFLICT")
	}
	if _, err := e.stderr.wait(ctx, func(s string) bool { return strings.Contains(s, "worker registration refused") }); err != nil {
		t.Fatalf("engine log: %v", err)
	}
	// It left nothing behind, and the first nsc still serves.
	if r := nsVia(ctx, t, c, "nsb::call", "dup::only", "orders", nil); r.Error == nil {
		t.Fatalf("dup::only of the refused worker answered: %+v", r)
	}
	if r := nsVia(ctx, t, c, "nsb::call", "shared::get", "orders", nil); r.Result == nil || r.Result.Worker != "nsc" {
		t.Fatalf("shared::get after the duplicate name = %+v; want nsc", r)
	}
}

// TestNamespacesHTTPRoutePython25: a namespaced Python 0.25 worker binds an
// HTTP route to its function (the SDK sends registertrigger.namespace); the
// route calls the function in that namespace, not a default one of the
// same id.
func TestNamespacesHTTPRoutePython25(t *testing.T) {
	py := flavourNamed("python-0.25.0")
	py.require(t)
	e := startPlainEngine(t)
	c := connectGo(t, e, "ns-http-go")
	ctx := ctxFor(t, time.Minute)
	nsPython(t, e, "nsd", "", "route::get")
	startWorker(t, py, e, "namespaces.py", "nsr", "NS=orders", "FNS=route::get", "ROUTE=/ns/route")
	nsWaitRows(ctx, t, c, "route::get in orders and default", func(rows map[string]nsFunctionRow) bool {
		return rows["orders/route::get"].WorkerName == "nsr" && rows["default/route::get"].WorkerName == "nsd"
	})
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.HTTPURL+"/ns/route", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if !strings.Contains(string(body), `"nsr"`) {
					t.Fatalf("GET /ns/route = %s; want the orders worker nsr's answer", body)
				}
				return
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("GET /ns/route never answered 200: %v", err)
		}
	}
}
