package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/auth"
	"github.com/sluicehq/sluice/wire"
)

// announceNS sends engine::workers::register with a namespace, as the 0.25
// SDKs do after their registrations.
func (w *rawWorker) announceNS(name, ns string) {
	w.sendJSON(`{"type":"invokefunction","function_id":"engine::workers::register","data":{"runtime":"test","version":"1","name":"` +
		name + `","namespace":"` + ns + `","pid":42},"action":{"type":"void"}}`)
}

// callNS makes a synchronous call in namespace ns.
func (w *rawWorker) callNS(id, fn, ns, data string) wire.Message {
	w.t.Helper()
	w.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: id, FunctionID: fn, Data: jsontext.Value(data), Namespace: &ns})
	return w.expectSkipping(wire.TypeInvocationResult)
}

// expectSkipping returns the next message of type typ, skipping others.
func (w *rawWorker) expectSkipping(typ string) wire.Message {
	w.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m, ok := <-w.in:
			if !ok {
				w.t.Fatalf("socket closed while waiting for %s", typ)
			}
			if m.Type == typ {
				return m
			}
		case <-deadline:
			w.t.Fatalf("timed out waiting for %s", typ)
		}
	}
}

// TestNamespaceDeclaredAfterRegistrations: registrations sent before
// engine::workers::register land in the declared namespace; calls resolve
// strictly; a miss names where the id exists; the engine tells the worker
// which namespace a call addressed.
func TestNamespaceDeclaredAfterRegistrations(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	caller := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"svc::get"}`)
	w.announceNS("state", "orders")
	w.call("sync", wire.FnFunctionsList, `{}`) // same socket: the announce was handled

	if _, ok := e.reg.FunctionIn("orders", "svc::get"); !ok {
		t.Fatal("svc::get not registered in orders")
	}
	if _, ok := e.reg.Function("svc::get"); ok {
		t.Fatal("svc::get left behind in default")
	}
	res := caller.call("c1", "svc::get", `{}`)
	if res.Error == nil || res.Error.Code != wire.CodeFunctionNotFound ||
		!strings.Contains(res.Error.Message, "not found in namespace default") || !strings.Contains(res.Error.Message, "orders") {
		t.Fatalf("call in default = %+v, want function_not_found naming orders", res)
	}
	ns := "orders"
	caller.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: "c2", FunctionID: "svc::get", Data: jsontext.Value(`{}`), Namespace: &ns})
	inv := w.expectSkipping(wire.TypeInvokeFunction)
	if inv.Namespace == nil || *inv.Namespace != "orders" {
		t.Fatalf("invokefunction to the worker = %+v, want namespace orders", inv)
	}
	w.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: "svc::get", Result: jsontext.Value(`1`)})
	if r := caller.expect(wire.TypeInvocationResult); r.Error != nil || string(r.Result) != "1" {
		t.Fatalf("namespaced call = %+v", r)
	}
	if r := caller.callNS("c3", "svc::get", "billing", `{}`); r.Error == nil || r.Error.Code != wire.CodeFunctionNotFound {
		t.Fatalf("call in billing = %+v, want function_not_found", r)
	}
}

// TestNamespaceHeldConflict: while its namespace is unknown, a connection's
// registration that conflicts in default is held, not refused; declared
// elsewhere it registers there without a refusal; a connection that never
// declares one is refused after registration_namespace_grace.
func TestNamespaceHeldConflict(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.RegistrationNamespaceGrace = 200 * time.Millisecond })
	a := dialRaw(t, e)
	a.sendJSON(`{"type":"registerfunction","id":"svc::get"}`)
	a.announce("a")
	a.call("sync", wire.FnFunctionsList, `{}`)

	b := dialRaw(t, e)
	b.sendJSON(`{"type":"registerfunction","id":"svc::get"}`)
	b.announceNS("b", "orders")
	if r := b.call("sync", wire.FnFunctionsList, `{}`); r.Error != nil {
		t.Fatal(r.Error)
	}
	if f, ok := e.reg.FunctionIn("orders", "svc::get"); !ok || f.Owner.OwnerID() != b.id {
		t.Fatal("b's svc::get not registered in orders")
	}
	if f, ok := e.reg.Function("svc::get"); !ok || f.Owner.OwnerID() != a.id {
		t.Fatal("a lost svc::get in default")
	}

	c := dialRaw(t, e)
	start := time.Now()
	c.sendJSON(`{"type":"registerfunction","id":"svc::get"}`)
	rej := c.expect(wire.TypeRegistrationRejected)
	if time.Since(start) < 150*time.Millisecond {
		t.Errorf("refused after %v, before the grace", time.Since(start))
	}
	_ = rej
	if f, _ := e.reg.Function("svc::get"); f.Owner.OwnerID() != a.id {
		t.Fatal("c took svc::get over")
	}
	// b never got a refusal: the next thing it sees is a call's answer.
	if r := b.call("after", wire.FnFunctionsList, `{}`); r.Error != nil {
		t.Fatal(r.Error)
	}
}

// TestWorkerNamespaceConflict: a second live worker declaring the same name
// in the same namespace is refused and disconnected; workers that declare
// no namespace never conflict by name.
func TestWorkerNamespaceConflict(t *testing.T) {
	e := startEngine(t)
	a := dialRaw(t, e)
	a.announceNS("state", "orders")
	a.call("sync", wire.FnFunctionsList, `{}`)
	b := dialRaw(t, e)
	b.announceNS("state", "orders")
	m := b.expect(wire.TypeRegistrationRejected)
	_ = m
	select {
	case <-b.end:
	case <-time.After(5 * time.Second):
		t.Fatal("the refused worker's socket stayed open")
	}
	c := dialRaw(t, e)
	c.announceNS("state", "billing")
	d1, d2 := dialRaw(t, e), dialRaw(t, e)
	d1.announce("host:1")
	d2.announce("host:1")
	for _, w := range []*rawWorker{a, c, d1, d2} {
		if r := w.call("alive", wire.FnFunctionsList, `{}`); r.Error != nil {
			t.Fatal(r.Error)
		}
	}
	for ns, want := range map[string]string{"orders": a.id, "billing": c.id} {
		r := d1.call("info-"+ns, wire.FnWorkersInfo, `{"name":"state","namespace":"`+ns+`"}`)
		if r.Error != nil || !strings.Contains(string(r.Result), want) || !strings.Contains(string(r.Result), `"namespace":"`+ns+`"`) {
			t.Fatalf("workers::info state in %s = %s, %v; want worker %s", ns, r.Result, r.Error, want)
		}
	}
	if r := d1.call("info-any", wire.FnWorkersInfo, `{"name":"state"}`); r.Error == nil || !strings.Contains(r.Error.Message, "billing, orders") {
		t.Fatalf("workers::info state without a namespace = %s, %+v; want ambiguous naming billing, orders", r.Result, r.Error)
	}
}

// TestInvalidNamespace: a namespace field named and left blank is answered
// INVALID_NAMESPACE, not read as default.
func TestInvalidNamespace(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	if r := w.callNS("c1", wire.FnFunctionsList, " ", `{}`); r.Error == nil || r.Error.Code != wire.CodeInvalidNamespace {
		t.Fatalf("blank invoke namespace = %+v", r)
	}
	w.sendJSON(`{"type":"registertrigger","id":"t1","trigger_type":"engine::workers-available","function_id":"f","config":{},"namespace":""}`)
	if r := w.expect(wire.TypeTriggerRegistrationResult); r.Error == nil || r.Error.Code != wire.CodeInvalidNamespace {
		t.Fatalf("blank trigger namespace = %+v", r)
	}
	w.sendJSON(`{"type":"invokefunction","invocation_id":"c2","function_id":"engine::workers::register","data":{"name":"x","namespace":"  "}}`)
	if r := w.expect(wire.TypeInvocationResult); r.Error == nil || r.Error.Code != wire.CodeInvalidNamespace {
		t.Fatalf("blank worker namespace = %+v", r)
	}
}

// TestNamespaceTriggerTypeProviders: providers are per namespace. A
// provider declaring another namespace does not replace the default one
// (its registertriggertype waits for the declaration instead of taking the
// type over), and a binding goes to the provider of its connection's
// namespace, else the default one.
func TestNamespaceTriggerTypeProviders(t *testing.T) {
	e := startEngine(t)
	pd := dialRaw(t, e)
	pd.sendJSON(`{"type":"registertriggertype","id":"hook","description":"default"}`)
	pd.announce("pd")
	pd.call("sync", wire.FnFunctionsList, `{}`)

	po := dialRaw(t, e)
	po.sendJSON(`{"type":"registertriggertype","id":"hook","description":"orders"}`)
	po.announceNS("po", "orders")
	po.call("sync", wire.FnFunctionsList, `{}`)
	if tt, ok := e.reg.TriggerType("hook"); !ok || tt.Provider.OwnerID() != pd.id {
		t.Fatal("the default provider of hook was replaced")
	}
	if tt, ok := e.reg.TriggerTypeIn("orders", "hook"); !ok || tt.Provider.OwnerID() != po.id {
		t.Fatal("hook not provided in orders")
	}

	wo := dialRaw(t, e)
	wo.announceNS("wo", "orders")
	wo.call("sync", wire.FnFunctionsList, `{}`)
	wo.sendJSON(`{"type":"registertrigger","id":"t-orders","trigger_type":"hook","function_id":"f","config":{},"namespace":"orders"}`)
	if m := po.expectSkipping(wire.TypeRegisterTrigger); m.ID != "t-orders" {
		t.Fatalf("orders provider got %+v", m)
	}
	wd := dialRaw(t, e)
	wd.sendJSON(`{"type":"registertrigger","id":"t-default","trigger_type":"hook","function_id":"f","config":{}}`)
	if m := pd.expectSkipping(wire.TypeRegisterTrigger); m.ID != "t-default" {
		t.Fatalf("default provider got %+v", m)
	}
	// A strict trigger_namespace reaches the default provider from orders.
	wo.sendJSON(`{"type":"registertrigger","id":"t-strict","trigger_type":"hook","function_id":"f","config":{},"trigger_namespace":"default"}`)
	if m := pd.expectSkipping(wire.TypeRegisterTrigger); m.ID != "t-strict" {
		t.Fatalf("default provider got %+v", m)
	}
}

// TestNamespaceEnqueueRefused: queue jobs carry no namespace, so an enqueue
// for another namespace is refused at once rather than parked forever.
func TestNamespaceEnqueueRefused(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"invokefunction","invocation_id":"q1","function_id":"svc::job","data":{},"action":{"type":"enqueue","queue":"default"},"namespace":"orders"}`)
	r := w.expectSkipping(wire.TypeInvocationResult)
	if r.Error == nil || r.Error.Code != wire.CodeEnqueueError || !strings.Contains(r.Error.Message, "orders") {
		t.Fatalf("namespaced enqueue = %+v; want enqueue_error naming the namespace", r)
	}
}

// TestNamespaceProviderMovesOut: a provider whose type was applied in
// default before it declared another namespace stops serving default's
// bindings (unregistertrigger) and they are parked again.
func TestNamespaceProviderMovesOut(t *testing.T) {
	e := startEngine(t)
	wd := dialRaw(t, e)
	wd.sendJSON(`{"type":"registertrigger","id":"t-x","trigger_type":"hook2","function_id":"f","config":{}}`)
	wd.announce("wd")
	wd.call("sync", wire.FnFunctionsList, `{}`)
	p := dialRaw(t, e)
	p.sendJSON(`{"type":"registertriggertype","id":"hook2","description":"x"}`)
	if m := p.expectSkipping(wire.TypeRegisterTrigger); m.ID != "t-x" {
		t.Fatalf("got %+v", m)
	}
	p.announceNS("p", "orders")
	if m := p.expectSkipping(wire.TypeUnregisterTrigger); m.ID != "t-x" {
		t.Fatalf("got %+v", m)
	}
	p.callSkipping("sync", wire.FnFunctionsList, `{}`) // the announce was handled in full
	if tr, ok := e.reg.TriggerSnapshot("t-x"); !ok || tr.Active {
		t.Fatalf("t-x after its provider moved to orders: %+v, %v; want parked", tr, ok)
	}
	if _, ok := e.reg.TriggerTypeIn("orders", "hook2"); !ok {
		t.Fatal("hook2 not provided in orders")
	}
}

// An RBAC session's calls are judged on the function they address, in its
// namespace: neither the exposing metadata nor the session's ownership of a
// same-named function in default lets it call one in another namespace.
// On 826637f both calls into orders were allowed (canCall looked the id up
// in default only).
func TestRBACJudgesTheAddressedNamespace(t *testing.T) {
	meta := map[string]auth.MetaValue{"public": {Exact: jsontext.Value(`true`)}}
	e := startEngine(t, func(c *Config) {
		c.WorkerListeners = []WorkerListenerConfig{{Name: "rbac", Addr: "127.0.0.1:0",
			Auth: AuthConfig{RBAC: &auth.RBAC{ExposeFunctions: []auth.Filter{{Metadata: meta}}}}}}
	})
	pub := dialRaw(t, e) // default: svc::secret, exposed by its metadata
	pub.sendJSON(`{"type":"registerfunction","id":"svc::secret","metadata":{"public":true}}`)
	pub.call("sync", wire.FnFunctionsList, `{}`)
	hidden := dialRaw(t, e) // orders: svc::secret and ext::mine, no metadata
	hidden.sendJSON(`{"type":"registerfunction","id":"svc::secret"}`)
	hidden.sendJSON(`{"type":"registerfunction","id":"ext::mine"}`)
	hidden.announceNS("hidden", "orders")
	hidden.call("sync", wire.FnFunctionsList, `{}`)
	if _, ok := e.reg.FunctionIn("orders", "ext::mine"); !ok {
		t.Fatal("ext::mine not registered in orders")
	}

	ext := dialRawAt(t, e.WorkerListenerURL("rbac"), nil)
	ext.sendJSON(`{"type":"registerfunction","id":"ext::mine"}`) // its own, in default
	ext.callSkipping("sync", wire.FnFunctionsList, `{}`)
	if f, ok := e.reg.Function("ext::mine"); !ok || ownerOf(f.Owner) != ext.id {
		t.Fatal("the session's own ext::mine was not registered in default")
	}
	for _, fn := range []string{"svc::secret", "ext::mine"} {
		if r := ext.callNS("x-"+fn, fn, "orders", `{}`); r.Error == nil || r.Error.Code != auth.CodeForbidden {
			t.Errorf("RBAC call of %s in orders = %+v, want %s", fn, r, auth.CodeForbidden)
		}
	}
	// A blank namespace is refused as such before RBAC is asked.
	if r := ext.callNS("x-blank", "svc::secret", " ", `{}`); r.Error == nil || r.Error.Code != wire.ErrInvalidNamespace("namespace").Code {
		t.Errorf("RBAC call in a blank namespace = %+v, want %s", r, wire.ErrInvalidNamespace("namespace").Code)
	}
	// The default namespace's exposed function stays callable.
	ns := "default"
	ext.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: "x-default", FunctionID: "svc::secret", Data: jsontext.Value(`{}`), Namespace: &ns})
	inv := pub.expectSkipping(wire.TypeInvokeFunction)
	pub.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID, Result: jsontext.Value(`"ok"`)})
	if r := ext.expectSkipping(wire.TypeInvocationResult); r.Error != nil || string(r.Result) != `"ok"` {
		t.Fatalf("RBAC call of the exposed svc::secret in default = %+v", r)
	}
}
