package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// fixture is one engine with a Go client and one SDK worker (the flavour's
// worker script, seed examples included) connected to it.
type fixture struct {
	f    *flavour
	e    *engineProc
	c    *sluice.Client
	w    *worker
	sink chan *sluice.Invocation // calls of go::sink
}

// script names a script of f's language: "worker" -> "worker.mjs" /
// "worker.py" / "worker" (Rust: the compiled binary, see startWorker).
func (f *flavour) script(base string) string {
	switch f.Runtime {
	case "node":
		return base + ".mjs"
	case "rust":
		return base
	}
	return base + ".py"
}

// failMessage is the wire message of <prefix>::fail's error. The Rust SDK
// sends a handler's Error::Handler(msg) as its Display text, "handler
// error: <msg>" (SDK_NOTES.md §2.5); Node and Python send the exception's
// message as is.
func (f *flavour) failMessage(prefix string) string {
	if f.Runtime == "rust" {
		return "handler error: boom from " + prefix
	}
	return "boom from " + prefix
}

// newFixture starts an engine, connects a Go client serving the go::*
// functions, starts f's worker and waits until the engine lists its
// functions.
func newFixture(t *testing.T, f *flavour, workerEnv ...string) *fixture {
	t.Helper()
	return newFixtureOn(t, f, startPlainEngine, workerEnv...)
}

// newFixtureOn is newFixture on an engine started by start.
func newFixtureOn(t *testing.T, f *flavour, start func(testing.TB) *engineProc, workerEnv ...string) *fixture {
	t.Helper()
	f.require(t)
	fx := &fixture{f: f, sink: make(chan *sluice.Invocation, 16)}
	fx.e = start(t)
	fx.c = connectGo(t, fx.e, "go-interop")
	registerGoFunctions(t, fx.c, fx.sink)
	fx.w = startWorker(t, f, fx.e, f.script("worker"), f.Prefix, workerEnv...)
	waitOwned(ctxFor(t, startTimeout), t, fx.c, f.Prefix, testFunctions(f.Prefix)...)
	return fx
}

// goFunctions are the functions registerGoFunctions registers.
var goFunctions = []string{"go::add", "go::keys", "go::sink", "go::refuse"}

type addIn struct {
	A float64 `json:"a"`
	B float64 `json:"b"`
}

type addOut struct {
	Sum    float64 `json:"sum"`
	Caller string  `json:"caller"`
}

// registerGoFunctions registers the functions the SDK workers call:
//
//	go::add    {a, b} -> {sum, caller}     (caller: the caller's worker id)
//	go::keys   an object, decoded into map[string]any -> its sorted keys
//	go::sink   anything -> null, and the invocation is sent on sink
//	go::refuse fails with E_GO "go says no"
func registerGoFunctions(t testing.TB, c *sluice.Client, sink chan<- *sluice.Invocation) {
	t.Helper()
	err := sluice.Register(c, "go::add", func(ctx context.Context, in addIn) (addOut, error) {
		out := addOut{Sum: in.A + in.B}
		if inv := sluice.InvocationFrom(ctx); inv != nil {
			out.Caller = inv.CallerWorkerID
		}
		return out, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = sluice.Register(c, "go::keys", func(ctx context.Context, in map[string]any) ([]string, error) {
		return slices.Sorted(maps.Keys(in)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = c.RegisterRaw("go::sink", func(ctx context.Context, inv *sluice.Invocation) (json.RawMessage, error) {
		select {
		case sink <- inv:
		default:
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = c.RegisterRaw("go::refuse", func(ctx context.Context, inv *sluice.Invocation) (json.RawMessage, error) {
		return nil, &sluice.Error{Code: "E_GO", Message: "go says no"}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// callOut is what <prefix>::call returns: the SDK's trigger() result, or
// the error it raised as {code, message}.
type callOut struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    *string `json:"code"`
		Message string  `json:"message"`
	} `json:"error"`
}

func (o callOut) String() string {
	if o.Error != nil {
		code := "<nil>"
		if o.Error.Code != nil {
			code = *o.Error.Code
		}
		return fmt.Sprintf("error{code:%s message:%q}", code, o.Error.Message)
	}
	return "result " + string(o.Result)
}

// sdkCall makes the worker call function_id through its SDK's trigger().
func (fx *fixture) sdkCall(ctx context.Context, t testing.TB, in map[string]any) callOut {
	t.Helper()
	out, err := sluice.Call[callOut](ctx, fx.c, fx.f.Prefix+"::call", in)
	if err != nil {
		t.Fatalf("%s::call %v: %v", fx.f.Prefix, in, err)
	}
	return out
}

// workerRowNamed polls engine::workers::list until a worker named name is
// listed (the SDK sends its metadata after its registrations).
func workerRowNamed(ctx context.Context, t testing.TB, c *sluice.Client, name string) workerRow {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last []workerRow
	for {
		rows, err := listWorkers(ctx, c)
		if err != nil {
			t.Fatalf("engine::workers::list: %v", err)
		}
		for _, r := range rows {
			if r.Name != nil && *r.Name == name && r.Runtime != nil {
				return r
			}
		}
		last = rows
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("no worker %q in engine::workers::list: %v; last list: %s", name, ctx.Err(), mustJSON(last))
		}
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return string(b)
}

func str(p *string) string {
	if p == nil {
		return "<null>"
	}
	return *p
}

// normalise round-trips v through encoding/json so that values decoded
// from different sources compare with reflect.DeepEqual.
func normalise(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSDK proves, for every SDK flavour, that functions registered on
// either side are callable from the other, that void calls run, that
// errors keep their code and message across languages, that a killed
// worker stops its invocations at once, that a worker reconnects with all
// its registrations after an engine restart, and that the discovery
// functions show what is connected.
func TestSDK(t *testing.T) {
	for _, f := range flavours {
		t.Run(f.Name, func(t *testing.T) {
			t.Parallel()
			f.require(t)
			fx := newFixture(t, f)
			t.Run("Discovery", fx.testDiscovery)
			if f.OTel {
				t.Run("Telemetry", fx.testTelemetry)
			}
			t.Run("GoCallsSDK", fx.testGoCallsSDK)
			t.Run("SDKCallsGo", fx.testSDKCallsGo)
			t.Run("VoidGoToSDK", fx.testVoidGoToSDK)
			t.Run("VoidSDKToGo", fx.testVoidSDKToGo)
			t.Run("NotFound", fx.testNotFound)
			t.Run("HandlerError", fx.testHandlerError)
			t.Run("KilledMidInvocation", fx.testKilledMidInvocation)
			t.Run("ReconnectAfterEngineCrash", func(t *testing.T) { testReconnect(t, f, true) })
			// A graceful shutdown must close worker sockets with a code
			// that is not "OK" (the engine uses 1012): PyPI iii-sdk 0.11.6
			// never reconnects after 1000/1001/1005 (SDK_NOTES.md §2.3).
			t.Run("ReconnectAfterEngineRestart", func(t *testing.T) { testReconnect(t, f, false) })
		})
	}
}

// testTelemetry: a worker with the SDK's OpenTelemetry on (its default)
// reaches the engine's telemetry endpoint (/otel or telemetry frames on the
// worker socket) and everything else in TestSDK still works beside it.
func (fx *fixture) testTelemetry(t *testing.T) {
	ctx := ctxFor(t, callTimeout)
	if _, err := fx.e.stderr.wait(ctx, func(s string) bool {
		return strings.Contains(s, "telemetry socket connected") || strings.Contains(s, "worker sends telemetry")
	}); err != nil {
		t.Fatalf("%s runs with OpenTelemetry on, but the engine saw no telemetry: %v", fx.f.Name, err)
	}
}

// testDiscovery: engine::functions::list shows the worker's functions under
// its worker name; engine::workers::list shows the worker with its runtime
// and SDK version, and the Go client too.
func (fx *fixture) testDiscovery(t *testing.T) {
	ctx := ctxFor(t, callTimeout)
	ids := testFunctions(fx.f.Prefix)
	rows := waitOwned(ctx, t, fx.c, fx.f.Prefix, ids...)
	for _, id := range ids {
		if got := rows[id].WorkerName; got != fx.f.Prefix {
			t.Errorf("engine::functions::list: %s has worker_name %q, want %q", id, got, fx.f.Prefix)
		}
	}
	for _, id := range goFunctions {
		if got := rows[id].WorkerName; got != "go-interop" {
			t.Errorf("engine::functions::list: %s has worker_name %q, want go-interop (row present: %v)", id, got, rows[id].FunctionID != "")
		}
	}

	w := workerRowNamed(ctx, t, fx.c, fx.f.Prefix)
	if str(w.Runtime) != fx.f.Runtime {
		t.Errorf("engine::workers::list: worker %s runtime %q, want %q (row %s)", fx.f.Prefix, str(w.Runtime), fx.f.Runtime, mustJSON(w))
	}
	if str(w.Version) != fx.f.Version {
		t.Errorf("engine::workers::list: worker %s version %q, want the SDK version %q (row %s)", fx.f.Prefix, str(w.Version), fx.f.Version, mustJSON(w))
	}
	if w.FunctionCount != len(ids) {
		t.Errorf("engine::workers::list: worker %s function_count %d, want %d (row %s)", fx.f.Prefix, w.FunctionCount, len(ids), mustJSON(w))
	}
	if w.ID == "" {
		t.Errorf("engine::workers::list: worker %s has no id (row %s)", fx.f.Prefix, mustJSON(w))
	}
	g := workerRowNamed(ctx, t, fx.c, "go-interop")
	if g.ID != fx.c.WorkerID() {
		t.Errorf("engine::workers::list: go-interop id %q, want the Go client's worker id %q", g.ID, fx.c.WorkerID())
	}
	if g.FunctionCount != len(goFunctions) {
		t.Errorf("engine::workers::list: go-interop function_count %d, want %d (row %s)", g.FunctionCount, len(goFunctions), mustJSON(g))
	}
}

// testGoCallsSDK: Go calls <prefix>::echo; the payload round-trips, with
// the engine's _caller_worker_id added.
func (fx *fixture) testGoCallsSDK(t *testing.T) {
	ctx := ctxFor(t, callTimeout)
	payload := map[string]any{
		"text":   "héllo, wörld ✓ \u2028 \"quoted\" \\ back",
		"int":    42,
		"float":  -1.25,
		"big":    float64(1 << 52),
		"bool":   true,
		"null":   nil,
		"list":   []any{1, "two", nil, false, []any{}, map[string]any{}},
		"nested": map[string]any{"a": map[string]any{"b": []any{"c"}}},
		// Well above a WebSocket frame, well below Python's 1 MiB message limit.
		"blob": strings.Repeat("0123456789abcdef", 16*1024),
	}
	raw, err := fx.c.Trigger(ctx, fx.f.Prefix+"::echo", payload)
	if err != nil {
		t.Fatalf("%s::echo: %v", fx.f.Prefix, err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("%s::echo returned %.200s: %v", fx.f.Prefix, raw, err)
	}
	caller, _ := got["_caller_worker_id"].(string)
	if caller == "" || caller != fx.c.WorkerID() {
		t.Errorf("_caller_worker_id = %v, want the Go client's worker id %q", got["_caller_worker_id"], fx.c.WorkerID())
	}
	delete(got, "_caller_worker_id")
	if want := normalise(t, payload); !reflect.DeepEqual(normalise(t, got), want) {
		t.Errorf("echo changed the payload:\n got %.500s\nwant %.500s", mustJSON(got), mustJSON(want))
	}

	// A scalar payload has no room for _caller_worker_id and comes back as is.
	raw, err = fx.c.Trigger(ctx, fx.f.Prefix+"::echo", "just a string")
	if err != nil {
		t.Fatalf("%s::echo (string): %v", fx.f.Prefix, err)
	}
	if string(raw) != `"just a string"` {
		t.Errorf("%s::echo (string) = %s, want \"just a string\"", fx.f.Prefix, raw)
	}
}

// testSDKCallsGo: the SDK's trigger() reaches a function registered in Go
// and gets its result; the Go handler sees the SDK worker as the caller.
func (fx *fixture) testSDKCallsGo(t *testing.T) {
	ctx := ctxFor(t, callTimeout)
	out := fx.sdkCall(ctx, t, map[string]any{"function_id": "go::add", "payload": map[string]any{"a": 40, "b": 2.5}})
	if out.Error != nil {
		t.Fatalf("SDK call of go::add failed: %v", out)
	}
	var res addOut
	if err := json.Unmarshal(out.Result, &res); err != nil {
		t.Fatalf("go::add result %s: %v", out.Result, err)
	}
	if res.Sum != 42.5 {
		t.Errorf("go::add via %s: sum %v, want 42.5", fx.f.Name, res.Sum)
	}
	w := workerRowNamed(ctx, t, fx.c, fx.f.Prefix)
	if res.Caller != w.ID {
		t.Errorf("go::add saw caller worker id %q, want the %s worker's id %q", res.Caller, fx.f.Prefix, w.ID)
	}

	// A Go handler taking untyped JSON (map[string]any).
	out = fx.sdkCall(ctx, t, map[string]any{"function_id": "go::keys", "payload": map[string]any{"b": []any{1}, "a": map[string]any{"x": nil}}})
	if out.Error != nil {
		t.Fatalf("SDK call of go::keys (input map[string]any) failed: %v", out)
	}
	// Compared as JSON: the engine forwards values byte for byte, and the
	// SDKs format them differently (Python's json.dumps adds spaces).
	var keys []string
	if err := json.Unmarshal(out.Result, &keys); err != nil || !slices.Equal(keys, []string{"_caller_worker_id", "a", "b"}) {
		t.Errorf("go::keys via %s = %s (%v), want [\"_caller_worker_id\",\"a\",\"b\"]", fx.f.Name, out.Result, err)
	}
}

// testVoidGoToSDK: Go's TriggerVoid runs the SDK's function.
func (fx *fixture) testVoidGoToSDK(t *testing.T) {
	ctx := ctxFor(t, callTimeout)
	value := fmt.Sprintf("void-%s-%d", fx.f.Prefix, time.Now().UnixNano())
	if err := fx.c.TriggerVoid(ctx, fx.f.Prefix+"::mark", map[string]any{"value": value}); err != nil {
		t.Fatalf("TriggerVoid %s::mark: %v", fx.f.Prefix, err)
	}
	fx.w.waitLine(ctx, t, "MARK "+mustJSON(value))
}

// testVoidSDKToGo: the SDK's void trigger() runs the Go function.
func (fx *fixture) testVoidSDKToGo(t *testing.T) {
	ctx := ctxFor(t, callTimeout)
	value := fmt.Sprintf("void-to-go-%s-%d", fx.f.Prefix, time.Now().UnixNano())
	out := fx.sdkCall(ctx, t, map[string]any{"function_id": "go::sink", "payload": map[string]any{"value": value}, "action": "void"})
	if out.Error != nil {
		t.Fatalf("SDK void call of go::sink failed: %v", out)
	}
	for {
		select {
		case inv := <-fx.sink:
			var in struct {
				Value  string `json:"value"`
				Caller string `json:"_caller_worker_id"`
			}
			if err := json.Unmarshal(inv.Data, &in); err != nil {
				t.Fatalf("go::sink payload %s: %v", inv.Data, err)
			}
			if in.Value != value {
				t.Logf("go::sink: skipping an older call %s", inv.Data)
				continue
			}
			if in.Caller == "" || in.Caller != inv.CallerWorkerID {
				t.Errorf("go::sink: _caller_worker_id %q, Invocation.CallerWorkerID %q; want both set and equal", in.Caller, inv.CallerWorkerID)
			}
			return
		case <-ctx.Done():
			t.Fatalf("go::sink never ran after the %s void call: %v", fx.f.Name, ctx.Err())
		}
	}
}

// testNotFound: an unknown function is function_not_found, from Go and
// from the SDK.
func (fx *fixture) testNotFound(t *testing.T) {
	ctx := ctxFor(t, callTimeout)
	_, err := fx.c.Trigger(ctx, "nope::missing", map[string]any{"x": 1})
	if err == nil {
		t.Fatal("Go: calling nope::missing succeeded")
	}
	if se := asError(t, err); se.Code != sluice.CodeFunctionNotFound {
		t.Errorf("Go: nope::missing: code %q (%v), want %q", se.Code, err, sluice.CodeFunctionNotFound)
	}
	out := fx.sdkCall(ctx, t, map[string]any{"function_id": "nope::missing", "payload": map[string]any{"x": 1}})
	if out.Error == nil || str(out.Error.Code) != sluice.CodeFunctionNotFound {
		t.Errorf("%s: nope::missing: %v, want code %q", fx.f.Name, out, sluice.CodeFunctionNotFound)
	}
}

// testHandlerError: a handler's exception reaches the Go caller as
// invocation_failed with its message; a Go handler's *sluice.Error reaches
// the SDK caller with its code and message.
func (fx *fixture) testHandlerError(t *testing.T) {
	ctx := ctxFor(t, callTimeout)
	_, err := fx.c.Trigger(ctx, fx.f.Prefix+"::fail", map[string]any{})
	if err == nil {
		t.Fatalf("%s::fail succeeded", fx.f.Prefix)
	}
	se := asError(t, err)
	if want := fx.f.failMessage(fx.f.Prefix); se.Code != sluice.CodeInvocationFailed || se.Message != want {
		t.Errorf("%s::fail: code %q message %q, want %q %q", fx.f.Prefix, se.Code, se.Message, sluice.CodeInvocationFailed, want)
	}
	if se.Stacktrace == "" {
		t.Logf("%s::fail: no stacktrace", fx.f.Prefix)
	}

	out := fx.sdkCall(ctx, t, map[string]any{"function_id": "go::refuse", "payload": map[string]any{}})
	if out.Error == nil || str(out.Error.Code) != "E_GO" || out.Error.Message != "go says no" {
		t.Errorf("%s calling go::refuse: %v, want error{code:E_GO message:\"go says no\"}", fx.f.Name, out)
	}
}

// testKilledMidInvocation: SIGKILL of the worker running a call ends the
// Go caller's wait with invocation_stopped at once (not by a timeout), and
// the engine drops the worker's functions.
func (fx *fixture) testKilledMidInvocation(t *testing.T) {
	prefix := fx.f.Prefix + "k"
	w := startWorker(t, fx.f, fx.e, fx.f.script("worker"), prefix, "SEEDS=0")
	ctx := ctxFor(t, callTimeout)
	waitFunctions(ctx, t, fx.c, testFunctions(prefix)...)
	pid, err := sluice.Call[struct{ PID int }](ctx, fx.c, prefix+"::pid", nil)
	if err != nil {
		t.Fatalf("%s::pid: %v", prefix, err)
	}
	if pid.PID != w.pid() {
		t.Fatalf("%s::pid = %d, but the process started is %d", prefix, pid.PID, w.pid())
	}

	tag := fmt.Sprintf("hang-%d", time.Now().UnixNano())
	type result struct {
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		// The client's bound is callTimeout: far beyond the 2 s asserted.
		_, err := fx.c.Trigger(context.Background(), prefix+"::hang", map[string]any{"tag": tag})
		done <- result{err, time.Now()}
	}()
	w.waitLine(ctx, t, "HANG "+tag)
	killed := time.Now()
	w.kill()

	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatalf("%s::hang still waiting %v after SIGKILL", prefix, time.Since(killed))
	}
	if r.err == nil {
		t.Fatalf("%s::hang returned a result after its worker was killed", prefix)
	}
	se := asError(t, r.err)
	if se.Code != sluice.CodeInvocationStopped {
		t.Errorf("%s::hang after SIGKILL: code %q (%v), want %q", prefix, se.Code, r.err, sluice.CodeInvocationStopped)
	}
	if d := r.at.Sub(killed); d >= 2*time.Second {
		t.Errorf("invocation_stopped arrived %v after SIGKILL, want < 2s", d)
	} else {
		t.Logf("invocation_stopped %v after SIGKILL", d.Round(time.Millisecond))
	}

	// The dead worker's functions go away (ownership-aware cleanup).
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		rows, err := listFunctions(ctx, fx.c, map[string]any{"prefix": prefix + "::"})
		if err != nil {
			t.Fatalf("engine::functions::list: %v", err)
		}
		left := slices.DeleteFunc(rows, func(r functionRow) bool { return !strings.HasPrefix(r.FunctionID, prefix+"::") })
		if len(left) == 0 {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("the killed worker's functions are still listed: %s", mustJSON(left))
		}
	}
	_, err = fx.c.Trigger(ctx, prefix+"::echo", map[string]any{})
	if se := asError(t, err); se.Code != sluice.CodeFunctionNotFound {
		t.Errorf("calling the killed worker's echo: %v, want %s", err, sluice.CodeFunctionNotFound)
	}
}

// testReconnect: the engine stops (crash: SIGKILL, the sockets drop
// without a close frame; else SIGTERM, a graceful shutdown that closes
// them with 1001) and a new one starts on the same port; the SDK
// reconnects by itself and replays every registration (the worker's own
// and those of the seed examples' connections), so each function is listed
// and callable again, from both sides.
func testReconnect(t *testing.T, f *flavour, crash bool) {
	e1 := startEngine(t, "127.0.0.1:0")
	c := connectGo(t, e1, "go-reconnect")
	w := startWorker(t, f, e1, f.script("worker"), f.Prefix)
	ctx := ctxFor(t, 2*callTimeout)
	own := testFunctions(f.Prefix)
	waitOwned(ctx, t, c, f.Prefix, own...)
	// The seed examples' functions are on connections of their own.
	all := append(slices.Clone(own), seedFunctions(f, f.Prefix)...)
	waitFunctions(ctx, t, c, all...)
	if raw, err := c.Trigger(ctx, f.Prefix+"::echo", map[string]any{"round": 1}); err != nil {
		t.Fatalf("echo before the restart: %v (%s)", err, raw)
	}

	if crash {
		e1.kill()
		<-e1.exited
	} else {
		e1.stop(t)
	}
	stopped := time.Now()
	e2 := startEngine(t, e1.Addr)
	if e2.URL != e1.URL {
		t.Fatalf("restarted engine listens on %s, want %s", e2.URL, e1.URL)
	}

	waitFunctions(ctx, t, c, all...)
	t.Logf("%d functions registered again %v after the engine stopped", len(all), time.Since(stopped).Round(time.Millisecond))
	waitOwned(ctx, t, c, f.Prefix, own...)
	raw, err := c.Trigger(ctx, f.Prefix+"::echo", map[string]any{"round": 2})
	if err != nil {
		t.Fatalf("echo after the restart: %v", err)
	}
	var echoed struct {
		Round  int    `json:"round"`
		Caller string `json:"_caller_worker_id"`
	}
	if err := json.Unmarshal(raw, &echoed); err != nil || echoed.Round != 2 || echoed.Caller != c.WorkerID() {
		t.Errorf("echo after the restart = %s (%v), want round 2 from %s", raw, err, c.WorkerID())
	}
	// The worker is the same process, and its metadata was sent again.
	row := workerRowNamed(ctx, t, c, f.Prefix)
	if str(row.Runtime) != f.Runtime {
		t.Errorf("after reconnect worker %s has runtime %q, want %q", f.Prefix, str(row.Runtime), f.Runtime)
	}
	pid, err := sluice.Call[struct{ PID int }](ctx, c, f.Prefix+"::pid", nil)
	if err != nil || pid.PID != w.pid() {
		t.Errorf("%s::pid after reconnect = %d, %v; want %d", f.Prefix, pid.PID, err, w.pid())
	}
	// The SDK can call Go again too (its own socket is the new one).
	if err := sluice.Register(c, "go::after", func(ctx context.Context, in struct{}) (string, error) { return "ok", nil }); err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctx, t, c, "go::after")
	out, err := sluice.Call[callOut](ctx, c, f.Prefix+"::call", map[string]any{"function_id": "go::after", "payload": map[string]any{}})
	if err != nil || out.Error != nil || string(out.Result) != `"ok"` {
		t.Errorf("SDK calling Go after reconnect: %v, %v; want result \"ok\"", out, err)
	}
}
