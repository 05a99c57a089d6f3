package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/wire"
)

// A call of an engine function without a data field runs it with no
// input, both for a builtin and for a deferred builtin: no decoding error.
// Mutations: builtins.go:33 and :55 (`len(d) > 0` → `>= 0`: empty input
// was decoded and refused deserialization_error).
func TestBuiltinCallWithoutData(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"invokefunction","invocation_id":"l","function_id":"` + wire.FnFunctionsList + `"}`)
	if m := w.expect(wire.TypeInvocationResult); m.Error != nil || !strings.Contains(string(m.Result), `"functions"`) {
		t.Fatalf("functions::list without data: %+v %s", m.Error, m.Result)
	}
	w.sendJSON(`{"type":"invokefunction","invocation_id":"p","function_id":"publish"}`) // deferred
	if m := w.expect(wire.TypeInvocationResult); m.Error == nil || m.Error.Code != "topic_not_set" {
		t.Fatalf("publish without data: %+v, want topic_not_set", m.Error)
	}
}

// engine::workers::register after the grace has settled the connection in
// default cannot move it: it is logged and the worker's name is claimed
// in default, not in the declared namespace.
// Mutations: builtins.go:177 (`conn != nil` negated) and :178
// (`fixed != ns` negated): the declared namespace was used.
func TestLateWorkersRegisterKeepsFixedNamespace(t *testing.T) {
	e, logs := startEngineLogged(t, func(c *Config) { c.RegistrationNamespaceGrace = 50 * time.Millisecond })
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"late::f"}`)
	w.call("sync", wire.FnFunctionsList, `{}`)
	e.mu.RLock()
	wc := e.conns[w.id]
	e.mu.RUnlock()
	deadline := time.Now().Add(5 * time.Second)
	for _, known := wc.fixedNamespace(); !known; _, known = wc.fixedNamespace() { // no event marks the grace's end
		if time.Now().After(deadline) {
			t.Fatal("the namespace was never settled")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := callOK(t, w, wire.FnWorkersRegister, `{"runtime":"test","name":"late","namespace":"other","pid":1}`); got != `{"success":true}` {
		t.Fatalf("late register: %s", got)
	}
	if logs.count("late engine::workers::register") != 1 {
		t.Fatalf("no late-register warning in %s", logs)
	}
	if rw, ok := e.reg.Worker(w.id); !ok || orDefault(rw.Namespace) != wire.DefaultNamespace || rw.Name != "late" {
		t.Fatalf("worker after a late register: %+v", rw)
	}
	if _, ok := e.reg.FunctionIn(wire.DefaultNamespace, "late::f"); !ok {
		t.Fatal("late::f left default")
	}
}

// A worker announcing pid 0 is listed (pid 0 is a pid; only a negative one
// is ignored).
// Mutation: builtins.go:207 (`*in.PID >= 0` → `> 0`: pid 0 left the worker
// unannounced, so engine::workers::list did not show it).
func TestWorkerPIDZero(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	callOK(t, w, wire.FnWorkersRegister, `{"runtime":"test","name":"pid-zero","pid":0}`)
	if got := callOK(t, w, wire.FnWorkersList, `{"search":"pid-zero"}`); !strings.Contains(got, `"pid-zero"`) {
		t.Fatalf("workers::list: %s", got)
	}
	if got := callOK(t, w, wire.FnWorkersInfo, `{"name":"pid-zero"}`); !strings.Contains(got, `"pid":0`) {
		t.Fatalf("workers::info: %s", got)
	}
	n := dialRaw(t, e)
	callOK(t, n, wire.FnWorkersRegister, `{"runtime":"test","name":"pid-negative","pid":-1}`)
	if got := callOK(t, n, wire.FnWorkersList, `{"search":"pid-negative"}`); strings.Contains(got, `"pid-negative"`) {
		t.Fatalf("a negative pid announced the worker: %s", got)
	}
}

// engine::functions::list's search order (id hits first) keeps one id's
// namespaces in the registry's order (default before other).
// Mutation: builtins.go:328 (sortedBy's `<` → `<=`: equal keys were
// swapped).
func TestFunctionsListSearchStableOrder(t *testing.T) {
	e := startEngine(t)
	a := dialRaw(t, e)
	a.announce("a")
	a.sendJSON(`{"type":"registerfunction","id":"dup::f"}`)
	a.sendJSON(`{"type":"registerfunction","id":"dup::g"}`)
	b := dialRaw(t, e)
	b.announceNS("b", "other")
	b.sendJSON(`{"type":"registerfunction","id":"dup::f"}`)
	b.call("sync", wire.FnFunctionsList, `{}`)
	a.call("sync", wire.FnFunctionsList, `{}`)
	var out struct {
		Functions []functionSummary `json:"functions"`
	}
	mustResult(t, a.call("s", wire.FnFunctionsList, `{"search":"DUP"}`), &out)
	var got []string
	for _, f := range out.Functions {
		got = append(got, f.FunctionID+"@"+orDefault(f.Namespace))
	}
	if strings.Join(got, ",") != "dup::f@default,dup::f@other,dup::g@default" {
		t.Fatalf("functions::list search DUP: %v", got)
	}
}

// engine::register_trigger refused before its worker provider is asked (a
// function id over max_id_length) leaves no verdict wait behind.
// Mutation: builtins.go:277 (`ack != nil` negated: the wait for the
// provider's verdict stayed in regWaits for ever).
func TestRegisterTriggerRefusedForgetsWait(t *testing.T) {
	e := startEngine(t)
	provider := dialRaw(t, e)
	provider.sendJSON(`{"type":"registertriggertype","id":"picky","description":"worker-provided"}`)
	provider.call("sync", wire.FnFunctionsList, `{}`)
	caller := dialRaw(t, e)
	long := strings.Repeat("f", e.cfg.MaxIDLength+1)
	m := caller.call("r", wire.FnRegisterTrigger, `{"trigger_type":"picky","function_id":"`+long+`"}`)
	if m.Error == nil || m.Error.Code != wire.CodeTriggerRegistration {
		t.Fatalf("register_trigger with a too long function id: %+v", m.Error)
	}
	e.regWaitMu.Lock()
	n := len(e.regWaits)
	e.regWaitMu.Unlock()
	if n != 0 {
		t.Fatalf("%d verdict waits left after a refusal", n)
	}
}
