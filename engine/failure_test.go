package engine

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice/wire"
)

// Failure paths the docs promise. Each test names the one-line fault it
// catches ("fault:"); each was checked by injecting that fault.

// fault: the reattach token check in workerConn.reattach disabled.
// A reattach with a wrong token must leave the other connection alone:
// worker ids are public (engine::workers::list), so anyone could evict
// anyone otherwise.
func TestReattachWrongTokenRefused(t *testing.T) {
	e := startEngine(t)
	victim := dialRaw(t, e)
	victim.sendJSON(`{"type":"registerfunction","id":"f::victim"}`)
	attacker := dialRaw(t, e)
	waitFunction(t, attacker, "f::victim")
	attacker.sendJSON(`{"type":"reattach","previous_worker_id":"` + victim.id + `","reattach_token":"` + strings.Repeat("0", 36) + `"}`)
	// One socket's messages are handled in order: once this call is
	// answered, the reattach has been processed.
	attacker.call("sync", wire.FnFunctionsList, `{}`)
	select {
	case err := <-victim.end:
		t.Fatalf("a reattach with a wrong token evicted the victim: %v", err)
	default:
	}
	attacker.sendJSON(`{"type":"invokefunction","invocation_id":"v1","function_id":"f::victim","data":{}}`)
	inv := victim.expect(wire.TypeInvokeFunction)
	victim.sendJSON(`{"type":"invocationresult","invocation_id":"` + inv.InvocationID + `","function_id":"f::victim","result":"still here"}`)
	if res := attacker.expect(wire.TypeInvocationResult); string(res.Result) != `"still here"` {
		t.Fatalf("victim's function after a refused reattach: %+v", res)
	}
}

// fault: rejectMalformed's invocationresult branch removed. A malformed
// result fails the caller at once with invocation_error instead of leaving
// it to its own timeout.
func TestMalformedResultFailsCallerAtOnce(t *testing.T) {
	e := startEngine(t)
	callee := dialRaw(t, e)
	caller := dialRaw(t, e)
	callee.sendJSON(`{"type":"registerfunction","id":"f::garbled"}`)
	waitFunction(t, caller, "f::garbled")
	caller.sendJSON(`{"type":"invokefunction","invocation_id":"g1","function_id":"f::garbled","data":{}}`)
	inv := callee.expect(wire.TypeInvokeFunction)
	callee.sendJSON(`{"type":"invocationresult","invocation_id":"` + inv.InvocationID + `","function_id":"f::garbled","result":{"a":}`)
	res := caller.expect(wire.TypeInvocationResult) // expect bounds the wait (5 s)
	if res.InvocationID != "g1" || res.Error == nil || res.Error.Code != wire.CodeInvocationError || !strings.Contains(res.Error.Message, "malformed") {
		t.Fatalf("caller after a malformed result: %+v", res)
	}
	// The executor's socket keeps working.
	if r := callee.call("after", wire.FnFunctionsList, `{}`); r.Error != nil {
		t.Fatal(r.Error)
	}
}

// fault: rejectOversized's invocationresult branch removed. An oversized
// result fails the caller at once, naming the limit.
func TestOversizedResultFailsCallerAtOnce(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.MaxMessageSize = 4096 })
	callee := dialRaw(t, e)
	caller := dialRaw(t, e)
	callee.sendJSON(`{"type":"registerfunction","id":"f::huge"}`)
	waitFunction(t, caller, "f::huge")
	caller.sendJSON(`{"type":"invokefunction","invocation_id":"h1","function_id":"f::huge","data":{}}`)
	inv := callee.expect(wire.TypeInvokeFunction)
	callee.sendJSON(`{"type":"invocationresult","invocation_id":"` + inv.InvocationID + `","function_id":"f::huge","result":"` + strings.Repeat("x", 8000) + `"}`)
	res := caller.expect(wire.TypeInvocationResult)
	if res.InvocationID != "h1" || res.Error == nil || res.Error.Code != wire.CodeInvocationError || !strings.Contains(res.Error.Message, "max_message_size") {
		t.Fatalf("caller after an oversized result: %+v", res)
	}
	// Only the executor that was asked may answer: a third party's
	// oversized "result" for the same id changes nothing for a new call.
	caller.sendJSON(`{"type":"invokefunction","invocation_id":"h2","function_id":"f::huge","data":{}}`)
	inv = callee.expect(wire.TypeInvokeFunction)
	other := dialRaw(t, e)
	other.sendJSON(`{"type":"invocationresult","invocation_id":"` + inv.InvocationID + `","function_id":"f::huge","result":"` + strings.Repeat("x", 8000) + `"}`)
	other.call("sync", wire.FnFunctionsList, `{}`)
	callee.sendJSON(`{"type":"invocationresult","invocation_id":"` + inv.InvocationID + `","function_id":"f::huge","result":"small"}`)
	if res := caller.expect(wire.TypeInvocationResult); res.InvocationID != "h2" || string(res.Result) != `"small"` {
		t.Fatalf("a stranger's oversized result decided another worker's invocation: %+v", res)
	}
}

// fault: the TypeUnregisterFunction case in handle dropped, or
// UnregisterFunction ignoring its owner. Wire-level unregisterfunction
// removes the sender's function, and only its own.
func TestUnregisterFunctionOverWire(t *testing.T) {
	e := startEngine(t)
	owner := dialRaw(t, e)
	other := dialRaw(t, e)
	owner.sendJSON(`{"type":"registerfunction","id":"f::mine"}`)
	owner.sendJSON(`{"type":"registerfunction","id":"f::gone"}`)
	waitFunction(t, other, "f::gone")
	other.sendJSON(`{"type":"unregisterfunction","id":"f::mine"}`) // not its own: ignored
	other.call("sync", wire.FnFunctionsList, `{}`)
	if _, ok := e.reg.Function("f::mine"); !ok {
		t.Fatal("another connection's unregisterfunction removed f::mine")
	}
	owner.sendJSON(`{"type":"unregisterfunction","id":"f::gone"}`)
	owner.call("sync", wire.FnFunctionsList, `{}`)
	if res := other.call("c1", "f::gone", `{}`); res.Error == nil || res.Error.Code != wire.CodeFunctionNotFound {
		t.Fatalf("call to an unregistered function: %+v", res)
	}
}

// fault: the TypeUnregisterTriggerType case in handle dropped, or
// UnregisterTriggerType ignoring its owner.
func TestUnregisterTriggerTypeOverWire(t *testing.T) {
	e := startEngine(t)
	provider := dialRaw(t, e)
	other := dialRaw(t, e)
	provider.sendJSON(`{"type":"registertriggertype","id":"cron-ish","description":"ticks"}`)
	provider.call("sync", wire.FnFunctionsList, `{}`)
	other.sendJSON(`{"type":"unregistertriggertype","id":"cron-ish"}`)
	other.call("sync", wire.FnFunctionsList, `{}`)
	if res := other.call("i1", wire.FnTriggersInfo, `{"id":"cron-ish"}`); res.Error != nil {
		t.Fatalf("another connection's unregistertriggertype removed the type: %+v", res)
	}
	provider.sendJSON(`{"type":"unregistertriggertype","id":"cron-ish"}`)
	provider.call("sync2", wire.FnFunctionsList, `{}`)
	if res := other.call("i2", wire.FnTriggersInfo, `{"id":"cron-ish"}`); res.Error == nil || res.Error.Code != wire.CodeNotFound {
		t.Fatalf("triggers::info after unregistertriggertype: %+v", res)
	}
}

// fault: the isShuttingDown check in serveWorker removed. An engine
// mounted in another server (WorkerHandler) answers workers that arrive
// after Shutdown with 503 instead of upgrading them.
func TestNewWorkerRefusedAfterShutdown(t *testing.T) {
	e := startEngine(t)
	srv := httptest.NewServer(e.WorkerHandler())
	defer srv.Close()
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/", nil)
	if err == nil {
		t.Fatal("a new worker was accepted after shutdown")
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("want 503, got %v (%v)", resp, err)
	}
}

// faults: any one filter in listFunctions, functionsInfo's batch form,
// triggersList or triggersInfo ignored.
func TestDiscoveryFilters(t *testing.T) {
	e := startEngine(t)
	a := dialRaw(t, e)
	a.announce("alpha")
	a.sendJSON(`{"type":"registerfunction","id":"orders::create","description":"makes an order"}`)
	a.sendJSON(`{"type":"registerfunction","id":"orders::cancel","description":"stops one"}`)
	a.sendJSON(`{"type":"registertriggertype","id":"orders-feed","description":"order events"}`)
	b := dialRaw(t, e)
	b.announce("beta")
	b.sendJSON(`{"type":"registerfunction","id":"billing::charge","description":"bills an order"}`)
	b.sendJSON(`{"type":"registertriggertype","id":"billing-feed","description":"money"}`)
	waitFunction(t, a, "billing::charge")
	waitFunction(t, b, "orders::cancel")

	ids := func(m wire.Message) string {
		t.Helper()
		var out struct {
			Functions []functionSummary `json:"functions"`
		}
		mustResult(t, m, &out)
		var s []string
		for _, f := range out.Functions {
			s = append(s, f.FunctionID)
		}
		return strings.Join(s, ",")
	}
	for _, c := range []struct{ in, want string }{
		{`{"prefix":"orders::"}`, "orders::cancel,orders::create"},
		{`{"worker":"beta"}`, "billing::charge"},
		{`{"worker":"` + b.id + `"}`, "billing::charge"},
		{`{"workers":["alpha"]}`, "orders::cancel,orders::create"},
		// id hits first, then description-only hits
		{`{"search":"ORDER"}`, "orders::cancel,orders::create,billing::charge"},
		{`{"search":"stops"}`, "orders::cancel"},
		{`{"prefix":"orders::","search":"make"}`, "orders::create"},
	} {
		if got := ids(a.call("f"+c.in, wire.FnFunctionsList, c.in)); got != c.want {
			t.Errorf("functions::list %s = %s, want %s", c.in, got, c.want)
		}
	}
	if got := ids(a.call("internal", wire.FnFunctionsList, `{"include_internal":true,"prefix":"engine::functions::"}`)); !strings.Contains(got, wire.FnFunctionsList) {
		t.Errorf("include_internal did not list engine functions: %s", got)
	}

	var batch struct {
		Functions []map[string]any `json:"functions"`
	}
	mustResult(t, a.call("batch", wire.FnFunctionsInfo, `{"function_ids":["orders::create","nope::x"]}`), &batch)
	if len(batch.Functions) != 2 || batch.Functions[0]["function_id"] != "orders::create" || batch.Functions[0]["worker_name"] != "alpha" ||
		batch.Functions[1]["function_id"] != "nope::x" || batch.Functions[1]["error"] != "not_found" {
		t.Errorf("functions::info batch = %+v", batch)
	}
	for _, in := range []string{`{}`, `{"function_id":"a","function_ids":["b"]}`} {
		if res := a.call("bad"+in, wire.FnFunctionsInfo, in); res.Error == nil || res.Error.Code != wire.CodeInvalidArguments {
			t.Errorf("functions::info %s: %+v", in, res)
		}
	}

	types := func(in string) string {
		t.Helper()
		var out struct {
			Triggers []triggerTypeSummary `json:"triggers"`
		}
		mustResult(t, a.call("t"+in, wire.FnTriggersList, in), &out)
		var s []string
		for _, tt := range out.Triggers {
			s = append(s, tt.ID)
		}
		return strings.Join(s, ",")
	}
	for _, c := range []struct{ in, want string }{
		{`{"prefix":"orders"}`, "orders-feed"},
		{`{"worker":"beta"}`, "billing-feed"},
		{`{"search":"MONEY"}`, "billing-feed"},
	} {
		if got := types(c.in); got != c.want {
			t.Errorf("triggers::list %s = %s, want %s", c.in, got, c.want)
		}
	}
	if got := types(`{}`); strings.Contains(got, "engine::") || !strings.Contains(got, "http") {
		t.Errorf("triggers::list {} = %s: engine-internal types must be hidden, http shown", got)
	}
	if got := types(`{"include_internal":true}`); !strings.Contains(got, wire.TriggerTypeWorkersAvailable) {
		t.Errorf("triggers::list include_internal = %s", got)
	}
	var info triggerTypeDetail
	mustResult(t, a.call("ti", wire.FnTriggersInfo, `{"id":"orders-feed"}`), &info)
	if info.ID != "orders-feed" || info.WorkerName != "alpha" || info.Description != "order events" {
		t.Errorf("triggers::info = %+v", info)
	}
	if res := a.call("ti2", wire.FnTriggersInfo, `{"id":"nope"}`); res.Error == nil || res.Error.Code != wire.CodeNotFound {
		t.Errorf("triggers::info of an unknown type: %+v", res)
	}
}

// fault: sanitizeLabel returning its input. Worker names and descriptions
// lose control and bidi characters and are capped at 280 runes.
func TestWorkerLabelsSanitised(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	long := strings.Repeat("é", 400)
	w.sendJSON(`{"type":"invokefunction","invocation_id":"r1","function_id":"engine::workers::register","data":{"runtime":"test","name":"  evil\u001b[2J\u202ename\n ","description":"` + long + `","pid":1}}`)
	w.expect(wire.TypeInvocationResult)
	reg, ok := e.reg.Worker(w.id)
	if !ok {
		t.Fatal("worker not registered")
	}
	if reg.Name != "evil[2Jname" {
		t.Errorf("name = %q, want control and bidi characters stripped and trimmed", reg.Name)
	}
	if n := len([]rune(reg.Description)); n != 280 {
		t.Errorf("description has %d runes, want capped at 280", n)
	}
}

// fault: registerTriggerFn's missing-field check removed, or its wait for
// a worker provider's verdict skipped (the binding would be reported
// registered although the provider refused it).
func TestRegisterTriggerValidationAndVerdict(t *testing.T) {
	e := startEngine(t)
	provider := dialRaw(t, e)
	caller := dialRaw(t, e)
	for _, in := range []string{`{}`, `{"trigger_type":"x"}`, `{"function_id":"f"}`} {
		if res := caller.call("v"+in, wire.FnRegisterTrigger, in); res.Error == nil || res.Error.Code != wire.CodeInvalidArguments {
			t.Errorf("register_trigger %s: %+v", in, res)
		}
	}
	provider.sendJSON(`{"type":"registertriggertype","id":"picky","description":"refuses"}`)
	provider.call("sync", wire.FnFunctionsList, `{}`)
	caller.sendJSON(`{"type":"invokefunction","invocation_id":"r1","function_id":"` + wire.FnRegisterTrigger + `","data":{"trigger_type":"picky","function_id":"f::x","config":{"bad":true}}}`)
	reg := provider.expect(wire.TypeRegisterTrigger)
	provider.sendJSON(`{"type":"triggerregistrationresult","id":"` + reg.ID + `","trigger_type":"picky","function_id":"f::x","error":{"code":"invalid","message":"bad config"}}`)
	res := caller.expect(wire.TypeInvocationResult)
	if res.Error == nil || res.Error.Code != wire.CodeTriggerRegistration || !strings.Contains(res.Error.Message, "bad config") {
		t.Fatalf("register_trigger refused by its provider: %+v", res)
	}
	if _, ok := e.reg.Trigger(reg.ID); ok {
		t.Fatal("a binding its provider refused stayed registered")
	}
	// An accepted one answers its id.
	caller.sendJSON(`{"type":"invokefunction","invocation_id":"r2","function_id":"` + wire.FnRegisterTrigger + `","data":{"trigger_type":"picky","function_id":"f::x","config":{}}}`)
	reg = provider.expect(wire.TypeRegisterTrigger)
	provider.sendJSON(`{"type":"triggerregistrationresult","id":"` + reg.ID + `","trigger_type":"picky","function_id":"f::x"}`)
	var out struct {
		ID string `json:"id"`
	}
	mustResult(t, caller.expect(wire.TypeInvocationResult), &out)
	if out.ID != reg.ID {
		t.Fatalf("register_trigger answered id %q, the provider was sent %q", out.ID, reg.ID)
	}
}
