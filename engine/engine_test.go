package engine

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice/wire"
)

// testLogger logs to the test output when -v is given, else discards.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startEngine(t testing.TB, mutate ...func(*Config)) *Engine {
	t.Helper()
	return startEngineWithLogger(t, testLogger(t), mutate...)
}

// startEngineWithLogger starts an in-memory engine on loopback ports,
// logging to log, and shuts it down when the test ends.
func startEngineWithLogger(t testing.TB, log *slog.Logger, mutate ...func(*Config)) *Engine {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Addr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.ConsoleAddr, cfg.Streams.Addr = "", "" // no admin or stream-client listener: their default ports would be shared by every test engine
	cfg.DataDir = DataDirMemory
	for _, m := range mutate {
		m(&cfg)
	}
	e, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
	})
	return e
}

// rawWorker is a bare protocol client: the tests see exactly what the
// engine sends.
type rawWorker struct {
	t   testing.TB
	ws  *websocket.Conn
	id  string
	tok string
	in  chan wire.Message
	end chan error
}

func dialRaw(t testing.TB, e *Engine) *rawWorker {
	t.Helper()
	return dialRawAt(t, e.WorkerURL(), nil)
}

// dialRawAt is dialRaw to any worker listener, with handshake headers.
func dialRawAt(t testing.TB, url string, h http.Header) *rawWorker {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, h)
	if err != nil {
		t.Fatal(err)
	}
	w := &rawWorker{t: t, ws: ws, in: make(chan wire.Message, 256), end: make(chan error, 1)}
	go func() {
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				w.end <- err
				close(w.in)
				return
			}
			var m wire.Message
			if err := wire.Decode(b, &m); err != nil {
				t.Errorf("engine sent undecodable frame %q: %v", b, err)
				continue
			}
			w.in <- m
		}
	}()
	t.Cleanup(func() { ws.Close() })
	m := w.expect(wire.TypeWorkerRegistered)
	if len(m.WorkerID) != 36 || len(m.ReattachToken) != 36 {
		t.Fatalf("workerregistered ids are not UUIDs: %+v", m)
	}
	w.id, w.tok = m.WorkerID, m.ReattachToken
	return w
}

func (w *rawWorker) sendJSON(s string) {
	w.t.Helper()
	if err := w.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		w.t.Fatal(err)
	}
}

func (w *rawWorker) send(m wire.Message) {
	w.t.Helper()
	b, err := wire.Marshal(&m)
	if err != nil {
		w.t.Fatal(err)
	}
	w.sendJSON(string(b))
}

// expect returns the next message, which must be of type typ.
func (w *rawWorker) expect(typ string) wire.Message {
	w.t.Helper()
	select {
	case m, ok := <-w.in:
		if !ok {
			w.t.Fatalf("socket closed while waiting for %s", typ)
		}
		if m.Type != typ {
			w.t.Fatalf("got %s, want %s: %+v", m.Type, typ, m)
		}
		return m
	case <-time.After(expectWithin):
		w.t.Fatalf("timed out waiting for %s", typ)
	}
	return wire.Message{}
}

// expectWithin bounds a wait for an expected message: it only turns a hang
// into a failure. 5 s was too short under go test -race -count=5 beside
// other load (a first stream::set, which opens the store, took longer).
const expectWithin = 30 * time.Second

// call makes a synchronous call and returns the result message.
func (w *rawWorker) call(id, fn, data string) wire.Message {
	w.t.Helper()
	w.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: id, FunctionID: fn, Data: jsontext.Value(data)})
	m := w.expect(wire.TypeInvocationResult)
	if m.InvocationID != id || m.FunctionID != fn {
		w.t.Fatalf("result for %s/%s, want %s/%s", m.InvocationID, m.FunctionID, id, fn)
	}
	return m
}

// announce sends engine::workers::register the way the SDKs do (void).
func (w *rawWorker) announce(name string) {
	w.sendJSON(`{"type":"invokefunction","function_id":"engine::workers::register","data":{"runtime":"test","version":"1","name":"` + name + `","os":"linux","pid":42,"isolation":null,"telemetry":{}},"action":{"type":"void"}}`)
}

func TestCallBetweenWorkers(t *testing.T) {
	e := startEngine(t)
	callee := dialRaw(t, e)
	caller := dialRaw(t, e)
	callee.sendJSON(`{"type":"registerfunction","id":"math::add","description":"adds"}`)
	// The registration is processed before the call: both go through the
	// engine in order only per connection, so wait for it via discovery.
	waitFunction(t, caller, "math::add")

	caller.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: "11111111-1111-1111-1111-111111111111",
		FunctionID: "math::add", Data: jsontext.Value(`{"a":1,"b":2}`), Metadata: jsontext.Value(`{"m":1}`), Traceparent: "00-abc-def-01"})
	inv := callee.expect(wire.TypeInvokeFunction)
	if inv.InvocationID == "" || inv.FunctionID != "math::add" {
		t.Fatalf("bad invoke: %+v", inv)
	}
	var data map[string]any
	if err := json.Unmarshal(inv.Data, &data); err != nil {
		t.Fatal(err)
	}
	if data["_caller_worker_id"] != caller.id || data["a"] != 1.0 {
		t.Fatalf("data not forwarded with caller id: %s", inv.Data)
	}
	if string(inv.Metadata) != `{"m":1}` || inv.Traceparent != "00-abc-def-01" {
		t.Fatalf("metadata/traceparent not passed through: %+v", inv)
	}
	callee.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: "math::add", Result: jsontext.Value(`{"sum":3}`)})
	res := caller.expect(wire.TypeInvocationResult)
	if res.InvocationID != "11111111-1111-1111-1111-111111111111" || string(res.Result) != `{"sum":3}` || res.Error != nil {
		t.Fatalf("bad result: %+v", res)
	}
}

func waitFunction(t testing.TB, w *rawWorker, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		m := w.call("wait-"+itoa(int64(i)), wire.FnFunctionsInfo, `{"function_id":"`+id+`"}`)
		if m.Error == nil {
			return
		}
	}
	t.Fatalf("function %s never appeared", id)
}

func TestErrorsPassThroughAndNotFound(t *testing.T) {
	e := startEngine(t)
	callee := dialRaw(t, e)
	caller := dialRaw(t, e)
	res := caller.call("c1", "nope::missing", `{}`)
	if res.Error == nil || res.Error.Code != wire.CodeFunctionNotFound || !strings.Contains(res.Error.Message, "nope::missing") {
		t.Fatalf("want function_not_found, got %+v", res)
	}
	callee.sendJSON(`{"type":"registerfunction","id":"f::throws"}`)
	waitFunction(t, caller, "f::throws")
	caller.sendJSON(`{"type":"invokefunction","invocation_id":"c2","function_id":"f::throws"}`) // no data: null
	inv := callee.expect(wire.TypeInvokeFunction)
	if string(inv.Data) != "null" {
		t.Fatalf("missing data must arrive as null, got %q", inv.Data)
	}
	callee.sendJSON(`{"type":"invocationresult","invocation_id":"` + inv.InvocationID + `","function_id":"f::throws","error":{"code":"invocation_failed","message":"boom","stacktrace":"at x"}}`)
	res = caller.expect(wire.TypeInvocationResult)
	if res.Error == nil || *res.Error != (wire.ErrorBody{Code: "invocation_failed", Message: "boom", Stacktrace: "at x"}) || res.Result != nil {
		t.Fatalf("error not passed through unchanged: %+v", res)
	}
}

func TestVoidExecutedWithoutReply(t *testing.T) {
	e := startEngine(t)
	callee := dialRaw(t, e)
	caller := dialRaw(t, e)
	callee.sendJSON(`{"type":"registerfunction","id":"f::mark"}`)
	waitFunction(t, caller, "f::mark")
	caller.sendJSON(`{"type":"invokefunction","function_id":"f::mark","data":{"v":7},"action":{"type":"void"}}`)
	inv := callee.expect(wire.TypeInvokeFunction)
	if len(inv.InvocationID) != 36 {
		t.Fatalf("engine must give void invocations a UUID, got %q", inv.InvocationID)
	}
	callee.sendJSON(`{"type":"invocationresult","invocation_id":"` + inv.InvocationID + `","function_id":"f::mark"}`)
	// The caller must get nothing for the void call: the next thing it sees
	// is the answer to a later synchronous call.
	res := caller.call("after", wire.FnFunctionsList, `{}`)
	if res.Error != nil {
		t.Fatal(res.Error)
	}
}

func TestInvocationStoppedWhenExecutorVanishes(t *testing.T) {
	e := startEngine(t)
	callee := dialRaw(t, e)
	caller := dialRaw(t, e)
	callee.sendJSON(`{"type":"registerfunction","id":"f::hang"}`)
	waitFunction(t, caller, "f::hang")
	caller.sendJSON(`{"type":"invokefunction","invocation_id":"h1","function_id":"f::hang","data":{}}`)
	callee.expect(wire.TypeInvokeFunction)
	start := time.Now()
	callee.ws.NetConn().Close() // TCP drop, no close frame
	res := caller.expect(wire.TypeInvocationResult)
	if res.Error == nil || res.Error.Code != wire.CodeInvocationStopped {
		t.Fatalf("want invocation_stopped, got %+v", res)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("invocation_stopped took %v", d)
	}
	res = caller.call("h2", "f::hang", `{}`)
	if res.Error == nil || res.Error.Code != wire.CodeFunctionNotFound {
		t.Fatalf("function of a vanished worker must be gone, got %+v", res)
	}
}

func TestReconnectKeepsRegistrations(t *testing.T) {
	e := startEngine(t)
	old := dialRaw(t, e)
	old.sendJSON(`{"type":"registerfunction","id":"f::kept"}`)
	old.sendJSON(`{"type":"registertrigger","id":"t-1","trigger_type":"engine::workers-available","function_id":"f::kept","config":{}}`)
	probe := dialRaw(t, e)
	waitFunction(t, probe, "f::kept")

	// A new connection re-registers before the old one is known dead.
	fresh := dialRaw(t, e)
	fresh.sendJSON(`{"type":"registerfunction","id":"f::kept"}`)
	fresh.sendJSON(`{"type":"registertrigger","id":"t-1","trigger_type":"engine::workers-available","function_id":"f::kept","config":{}}`)
	// One socket's messages are handled in order: once this call on fresh
	// is answered, its registrations have been processed.
	fresh.callSkipping("sync", wire.FnFunctionsList, `{}`)
	// The live owner keeps the id (upstream's rule); fresh is its standby.
	if f, ok := e.reg.Function("f::kept"); !ok || f.Owner.OwnerID() != old.id {
		t.Fatal("a second live worker took f::kept over")
	}
	old.ws.Close()
	<-old.end
	// The engine fires engine::workers-available (fresh's trigger t-1)
	// after it has cleaned up the old connection: then check nothing was
	// lost.
	fresh.awaitInvoke("f::kept", func(m wire.Message) bool {
		return strings.Contains(string(m.Data), old.id) && strings.Contains(string(m.Data), "worker_disconnected")
	})
	if f, ok := e.reg.Function("f::kept"); !ok || f.Owner.OwnerID() != fresh.id {
		t.Fatal("the standby did not take f::kept over when the old connection ended")
	}
	if tr, ok := e.reg.Trigger("t-1"); !ok || tr.Owner != fresh.id {
		t.Fatal("old connection's cleanup removed the re-registered trigger")
	}
}

func TestReattachEvictsOldConnection(t *testing.T) {
	e := startEngine(t)
	old := dialRaw(t, e)
	old.sendJSON(`{"type":"registerfunction","id":"f::r"}`)
	fresh := dialRaw(t, e)
	fresh.sendJSON(`{"type":"reattach","previous_worker_id":"` + old.id + `","reattach_token":"wrong"}`)
	fresh.sendJSON(`{"type":"reattach","previous_worker_id":"` + old.id + `","reattach_token":"` + old.tok + `"}`)
	fresh.sendJSON(`{"type":"registerfunction","id":"f::r"}`)
	select {
	case <-old.end:
	case <-time.After(5 * time.Second):
		t.Fatal("old connection not evicted by reattach")
	}
	waitFunction(t, fresh, "f::r")
	if f, _ := e.reg.Function("f::r"); f.Owner.OwnerID() != fresh.id {
		t.Fatal("function not owned by the reattached connection")
	}
}

// callSkipping is call on a socket that may also receive invocations
// (skipped) before the result.
func (w *rawWorker) callSkipping(id, fn, data string) wire.Message {
	w.t.Helper()
	w.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: id, FunctionID: fn, Data: jsontext.Value(data)})
	return w.await(func(m wire.Message) bool { return m.Type == wire.TypeInvocationResult && m.InvocationID == id })
}

// awaitInvoke waits for an invocation of fn that match accepts, skipping
// other messages.
func (w *rawWorker) awaitInvoke(fn string, match func(wire.Message) bool) wire.Message {
	w.t.Helper()
	return w.await(func(m wire.Message) bool {
		return m.Type == wire.TypeInvokeFunction && m.FunctionID == fn && match(m)
	})
}

// await returns the first message want accepts, skipping the others.
func (w *rawWorker) await(want func(wire.Message) bool) wire.Message {
	w.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m, ok := <-w.in:
			if !ok {
				w.t.Fatal("socket closed while waiting for a message")
			}
			if want(m) {
				return m
			}
		case <-timeout:
			w.t.Fatal("timed out waiting for a message")
		}
	}
}

func TestBadInputKeepsServing(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.MaxMessageSize = 4096 })
	bad := dialRaw(t, e)
	good := dialRaw(t, e)
	bad.sendJSON(`this is not json`)
	bad.sendJSON(`{"type":"invokefunction","invocation_id":"m1","function_id":"x","data":{"a":}`)
	res := bad.expect(wire.TypeInvocationResult)
	if res.InvocationID != "m1" || res.Error == nil {
		t.Fatalf("malformed invoke with an id must get an error reply: %+v", res)
	}
	bad.sendJSON(`{"type":"brand-new-type","x":1}`)
	bad.sendJSON(`   `)
	bad.sendJSON(`{"type":"invokefunction","invocation_id":"big","function_id":"x","data":"` + strings.Repeat("a", 10000) + `"}`)
	res = bad.expect(wire.TypeInvocationResult)
	if res.InvocationID != "big" || res.Error == nil || !strings.Contains(res.Error.Message, "max_message_size") {
		t.Fatalf("oversized invoke must get a clear error: %+v", res)
	}
	// The same connection and everyone else keep working.
	if r := bad.call("ok1", wire.FnFunctionsList, `{}`); r.Error != nil {
		t.Fatal(r.Error)
	}
	if r := good.call("ok2", wire.FnFunctionsList, `{}`); r.Error != nil {
		t.Fatal(r.Error)
	}
}

func TestDiscovery(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	w.announce("probe-worker")
	w.sendJSON(`{"type":"registerfunction","id":"demo::a","description":"first","request_format":{"type":"object"}}`)
	w.sendJSON(`{"type":"registerfunction","id":"demo::hidden","metadata":{"internal":true}}`)
	w.sendJSON(`{"type":"registertrigger","id":"tr-1","trigger_type":"engine::workers-available","function_id":"demo::a","config":{"k":"v"}}`)
	waitFunction(t, w, "demo::hidden")

	var fl struct {
		Functions []functionSummary `json:"functions"`
	}
	// The queue module's functions (engine::queue::*, iii::queue::*) are
	// listed too, as upstream lists them: look at this worker's only.
	mustResult(t, w.call("l1", wire.FnFunctionsList, `{"prefix":"demo::"}`), &fl)
	if len(fl.Functions) != 1 || fl.Functions[0].FunctionID != "demo::a" || fl.Functions[0].WorkerName != "probe-worker" || fl.Functions[0].Description != "first" {
		t.Fatalf("functions::list = %+v", fl)
	}
	var fd functionDetail
	mustResult(t, w.call("l2", wire.FnFunctionsInfo, `{"function_id":"demo::a"}`), &fd)
	if string(fd.RequestSchema) != `{"type":"object"}` || len(fd.RegisteredTriggers) != 1 || fd.RegisteredTriggers[0].ID != "tr-1" {
		t.Fatalf("functions::info = %+v", fd)
	}
	var wl struct {
		Workers []map[string]any `json:"workers"`
	}
	mustResult(t, w.call("l3", wire.FnWorkersList, `{}`), &wl)
	var found map[string]any
	for _, row := range wl.Workers {
		if row["id"] == w.id {
			found = row
		}
	}
	if found == nil || found["name"] != "probe-worker" || found["runtime"] != "test" || found["function_count"] != 2.0 || found["status"] != "connected" {
		t.Fatalf("workers::list = %+v", wl)
	}
	if _, ok := found["ip_address"]; !ok {
		t.Fatal("workers::list rows must carry every key (null when unknown)")
	}
	var rt struct {
		RegisteredTriggers []registeredTrigger `json:"registered_triggers"`
	}
	mustResult(t, w.call("l4", wire.FnRegisteredTriggersList, `{}`), &rt)
	if len(rt.RegisteredTriggers) != 1 || rt.RegisteredTriggers[0].ConfigSummary != `{"k":"v"}` {
		t.Fatalf("registered-triggers::list = %+v", rt)
	}
	res := w.call("l5", wire.FnFunctionsInfo, `{"function_id":"nope"}`)
	if res.Error == nil || res.Error.Code != wire.CodeNotFound {
		t.Fatalf("want NOT_FOUND: %+v", res)
	}
	res = w.call("l6", wire.FnWorkersInfo, `{"name":"probe-worker"}`)
	if res.Error != nil || !strings.Contains(string(res.Result), `"demo::a"`) {
		t.Fatalf("workers::info = %+v", res)
	}
}

func mustResult(t testing.TB, m wire.Message, v any) {
	t.Helper()
	if m.Error != nil {
		t.Fatalf("%s failed: %v", m.FunctionID, m.Error)
	}
	if err := json.Unmarshal(m.Result, v); err != nil {
		t.Fatalf("%s result %s: %v", m.FunctionID, m.Result, err)
	}
}

func TestWorkerProvidedTriggerType(t *testing.T) {
	e := startEngine(t)
	user := dialRaw(t, e)
	// Binding first: parked until a provider appears.
	user.sendJSON(`{"type":"registertrigger","id":"b-1","trigger_type":"ticker","function_id":"job::run","config":{"every":"1s"},"metadata":{"x":1},"message_type":"registertrigger"}`)
	provider := dialRaw(t, e)
	provider.sendJSON(`{"type":"registertriggertype","id":"ticker","description":"Ticker"}`)
	rt := provider.expect(wire.TypeRegisterTrigger)
	if rt.ID != "b-1" || rt.FunctionID != "job::run" || string(rt.Config) != `{"every":"1s"}` || string(rt.Metadata) != `{"x":1}` {
		t.Fatalf("parked binding not replayed to the provider: %+v", rt)
	}
	// The provider rejects it: the registrant hears about it.
	provider.sendJSON(`{"type":"triggerregistrationresult","id":"b-1","trigger_type":"ticker","function_id":"job::run","error":{"code":"trigger_registration_failed","message":"bad schedule"}}`)
	tr := user.expect(wire.TypeTriggerRegistrationResult)
	if tr.ID != "b-1" || tr.Error == nil || tr.Error.Message != "bad schedule" {
		t.Fatalf("rejection not forwarded: %+v", tr)
	}
	// Unregistering a binding tells the provider (with trigger_type).
	user.sendJSON(`{"type":"registertrigger","id":"b-2","trigger_type":"ticker","function_id":"job::run","config":{}}`)
	provider.expect(wire.TypeRegisterTrigger)
	user.sendJSON(`{"type":"unregistertrigger","id":"b-2","message_type":"unregistertrigger"}`)
	ut := provider.expect(wire.TypeUnregisterTrigger)
	if ut.ID != "b-2" || ut.TriggerType != "ticker" {
		t.Fatalf("unregistertrigger to provider: %+v", ut)
	}
	// engine::register_trigger waits for the provider's verdict.
	done := make(chan wire.Message, 1)
	go func() {
		done <- user.call("rt1", wire.FnRegisterTrigger, `{"trigger_type":"ticker","function_id":"job::run","config":{"every":"2s"}}`)
	}()
	rt = provider.expect(wire.TypeRegisterTrigger)
	provider.sendJSON(`{"type":"triggerregistrationresult","id":"` + rt.ID + `","trigger_type":"ticker","function_id":"job::run"}`)
	res := <-done
	var out struct {
		ID string `json:"id"`
	}
	mustResult(t, res, &out)
	if out.ID != rt.ID {
		t.Fatalf("register_trigger id %q, provider saw %q", out.ID, rt.ID)
	}
	var removed struct {
		Removed bool `json:"removed"`
	}
	mustResult(t, user.call("rt2", wire.FnUnregisterTrigger, `{"id":"`+out.ID+`"}`), &removed)
	if !removed.Removed {
		t.Fatal("unregister_trigger did not remove")
	}
	provider.expect(wire.TypeUnregisterTrigger)
}

func TestWorkersAvailableFires(t *testing.T) {
	e := startEngine(t)
	watcher := dialRaw(t, e)
	watcher.sendJSON(`{"type":"registerfunction","id":"on::workers"}`)
	watcher.sendJSON(`{"type":"registertrigger","id":"wa","trigger_type":"engine::workers-available","function_id":"on::workers","config":{},"metadata":{"tag":"t"}}`)
	waitFunction(t, watcher, "on::workers")
	other := dialRaw(t, e)
	inv := watcher.expect(wire.TypeInvokeFunction)
	if inv.FunctionID != "on::workers" || !strings.Contains(string(inv.Data), `"worker_connected"`) || !strings.Contains(string(inv.Data), other.id) || string(inv.Metadata) != `{"tag":"t"}` {
		t.Fatalf("workers-available event: %+v", inv)
	}
}

func TestEnqueueAnswersClearly(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"invokefunction","invocation_id":"q1","function_id":"x","data":{},"action":{"type":"enqueue","queue":"jobs"}}`)
	res := w.expect(wire.TypeInvocationResult)
	if res.Error == nil || res.Error.Code != wire.CodeEnqueueError || !strings.Contains(res.Error.Message, "jobs") {
		t.Fatalf("enqueue: %+v", res)
	}
}

func TestShutdownStopsInFlight(t *testing.T) {
	e := startEngine(t)
	callee := dialRaw(t, e)
	caller := dialRaw(t, e)
	callee.sendJSON(`{"type":"registerfunction","id":"f::slow"}`)
	waitFunction(t, caller, "f::slow")
	caller.sendJSON(`{"type":"invokefunction","invocation_id":"s1","function_id":"f::slow","data":{}}`)
	callee.expect(wire.TypeInvokeFunction)
	go e.Shutdown(context.Background())
	res := caller.expect(wire.TypeInvocationResult)
	if res.Error == nil || res.Error.Code != wire.CodeInvocationStopped {
		t.Fatalf("want invocation_stopped on shutdown: %+v", res)
	}
	err := <-caller.end
	if code, _, ok := closeCode(err); !ok || code != websocket.CloseServiceRestart {
		t.Fatalf("want close 1012, got %v", err)
	}
}

func closeCode(err error) (int, string, bool) {
	if ce, ok := err.(*websocket.CloseError); ok {
		return ce.Code, ce.Text, true
	}
	return 0, "", false
}

func TestPingAnswered(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	got := make(chan string, 1)
	w.ws.SetPongHandler(func(s string) error { got <- s; return nil })
	if err := w.ws.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "hi" {
			t.Fatalf("pong payload %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}
	w.sendJSON(`{"type":"ping"}`)
	w.expect(wire.TypePong)
}

// clientFrame builds one masked client frame (FIN set).
func clientFrame(op byte, payload []byte) []byte {
	key := [4]byte{0x5a, 0x17, 0xc3, 0x81}
	var h []byte
	switch n := len(payload); {
	case n < 126:
		h = []byte{0x80 | op, 0x80 | byte(n)}
	case n < 1<<16:
		h = []byte{0x80 | op, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		panic("frame too large for this helper")
	}
	h = append(h, key[:]...)
	for i, b := range payload {
		h = append(h, b^key[i%4])
	}
	return h
}

// A burst of frames arriving in one TCP segment is where the engine
// batches its writes (flushing before the next read that could block):
// every invocation and every result of a pipelined burst must get through,
// in order, with a control frame in the middle of the burst.
func TestPipelinedBurst(t *testing.T) {
	e := startEngine(t)
	exec := dialRaw(t, e)
	exec.sendJSON(`{"type":"registerfunction","id":"f::burst"}`)
	caller := dialRaw(t, e)
	waitFunction(t, caller, "f::burst")

	const n = 60
	var burst []byte
	for i := range n {
		burst = append(burst, clientFrame(websocket.TextMessage,
			[]byte(`{"type":"invokefunction","invocation_id":"p`+itoa(int64(i))+`","function_id":"f::burst","data":{"i":`+itoa(int64(i))+`}}`))...)
		if i == n/2 {
			burst = append(burst, clientFrame(websocket.PingMessage, []byte("mid-burst"))...)
		}
	}
	if _, err := caller.ws.NetConn().Write(burst); err != nil {
		t.Fatal(err)
	}
	var replies []byte
	for i := range n {
		m := exec.expect(wire.TypeInvokeFunction)
		var in struct {
			I int `json:"i"`
		}
		if err := json.Unmarshal(m.Data, &in); err != nil || in.I != i {
			t.Fatalf("invocation %d arrived as %s (%v)", i, m.Data, err)
		}
		replies = append(replies, clientFrame(websocket.TextMessage,
			[]byte(`{"type":"invocationresult","invocation_id":"`+m.InvocationID+`","function_id":"f::burst","result":`+itoa(int64(i*i))+`}`))...)
	}
	if _, err := exec.ws.NetConn().Write(replies); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		m := caller.expect(wire.TypeInvocationResult)
		if m.InvocationID != "p"+itoa(int64(i)) || string(m.Result) != itoa(int64(i*i)) || m.Error != nil {
			t.Fatalf("result %d: %+v", i, m)
		}
	}
}
