package engine

import "testing"

// An observer of a function in another namespace: the owner there is told
// with that namespace (observeradded, observerremoved), only calls of the
// source in its namespace activate it (the same id in default is another
// function), the envelope names the observed call's namespace, and the
// target resolves in its own namespace. Blank namespaces and a source that
// is its own target in one namespace are refused.
// On b8b8b29: the observe was refused INVALID_ARGS (namespace "other" not
// served) and no observeradded reached the owner.
func TestObserveAcrossNamespaces(t *testing.T) {
	e := startEngine(t)
	tenant := obsDial(t, e)
	tenant.send(`{"type":"invokefunction","function_id":"engine::workers::register","data":{"runtime":"test","name":"tenant","namespace":"other","features":["observe.v1"]},"action":{"type":"void"}}`)
	tenant.send(`{"type":"registerfunction","id":"xn::f"}`)
	if fr := tenant.await("functionregistered", withID("xn::f")); fr["namespace"] != "other" {
		t.Fatalf("functionregistered: %v", fr)
	}
	w := obsDial(t, e)
	w.send(`{"type":"registerfunction","id":"xn::f"}`) // default's xn::f
	w.send(`{"type":"registerfunction","id":"xn::t"}`)
	w.send(`{"type":"observe","id":"self","source":{"function_id":"xn::f","namespace":"other"},"target":{"function_id":"xn::f","namespace":"other"}}`)
	if r := w.await("observeresult", withID("self")); obsErrCode(r) != "SELF_TARGET" {
		t.Fatalf("self target in one namespace: %v", r)
	}
	w.send(`{"type":"observe","id":"xn","source":{"function_id":"xn::f","namespace":"other"},"target":{"function_id":"xn::t"}}`)
	w.await("observeresult", withID("xn"))
	added := tenant.await("observeradded", nil)
	if added["namespace"] != "other" || added["function_id"] != "xn::f" {
		t.Fatalf("observeradded: %v", added)
	}
	tenant.send(`{"type":"observerack","function_id":"xn::f","id":"xn","revision":` + jsonNum(added["revision"]) + `}`)
	if r := w.await("observerstatechanged", withID("xn")); r["state"] != "active" {
		t.Fatalf("after ack: %v", r)
	}
	// default's xn::f: not observed
	w.send(`{"type":"invokefunction","invocation_id":"d1","function_id":"xn::f","data":{"n":1}}`)
	w.answer(w.await("invokefunction", invokeOf("xn::f")), `{"ns":"default"}`)
	w.await("invocationresult", func(m map[string]any) bool { return m["invocation_id"] == "d1" })
	// other's xn::f: observed
	w.send(`{"type":"invokefunction","invocation_id":"o1","function_id":"xn::f","namespace":"other","data":{"n":2}}`)
	tenant.answer(tenant.await("invokefunction", invokeOf("xn::f")), `{"ns":"other"}`)
	act := w.await("invokefunction", invokeOf("xn::t"))
	d, _ := act["data"].(map[string]any)
	in, _ := d["input"].(map[string]any)
	if d["namespace"] != "other" || in["n"] != 2.0 || act["namespace"] != nil {
		t.Fatalf("activation: %v", act)
	}
	if v := w.obsGet("xn")["result"].(map[string]any)["observer"].(map[string]any); v["namespace"] != "other" || v["target_namespace"] != "default" || v["fires"] != 1.0 {
		t.Fatalf("observer: %v", v)
	}
	for ns, want := range map[string]int{"other": 1, "default": 0, "": 1} {
		r := w.obsCall("l-"+ns, "engine::observers::list", `{"function_id":"xn::f","namespace":"`+ns+`"}`)
		if l, _ := r["result"].(map[string]any)["observers"].([]any); len(l) != want {
			t.Fatalf("list in %q: %v", ns, r)
		}
	}
	w.send(`{"type":"unobserve","id":"xn"}`)
	if r := tenant.await("observerremoved", withID("xn")); r["namespace"] != "other" {
		t.Fatalf("observerremoved: %v", r)
	}
	for id, ns := range map[string]string{"b1": `" "`, "b2": `"\t"`} {
		w.send(`{"type":"observe","id":"` + id + `","source":{"function_id":"xn::f","namespace":` + ns + `},"target":{"function_id":"xn::t"}}`)
		if r := w.await("observeresult", withID(id)); obsErrCode(r) != "INVALID_NAMESPACE" {
			t.Fatalf("blank namespace: %v", r)
		}
	}
}
