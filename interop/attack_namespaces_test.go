package interop

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice"
)

// TestAttackNamespacesFunctionHijack: an official Node 0.22.1 worker serves
// node22::echo; a raw client registers the same id (and announces itself
// like an SDK). It is refused with FUNCTION_NAMESPACE_CONFLICT naming the
// owner, calls keep reaching the Node worker, and the client gets none.
// On 25c1da9: no registrationrejected ever came (the wait timed out): last
// registration won and the client had taken node22::echo over.
func TestAttackNamespacesFunctionHijack(t *testing.T) {
	f := flavourNamed("node-0.22.1")
	f.require(t)
	e := startEngine(t, "127.0.0.1:0")
	c := connectGo(t, e, "go-ns-hijack")
	ctx := ctxFor(t, 2*callTimeout)
	startWorker(t, f, e, "worker.mjs", f.Prefix, "SEEDS=0")
	waitFunctions(ctx, t, c, f.Prefix+"::echo")

	raw := regDial(ctx, t, e)
	raw.send(map[string]any{"type": "registerfunction", "id": f.Prefix + "::echo"})
	raw.send(map[string]any{"type": "invokefunction", "function_id": "engine::workers::register",
		"data": map[string]any{"name": "impostor", "runtime": "raw"}, "action": map[string]any{"type": "void"}})
	rej := raw.next(ctx, func(m map[string]any) bool { return m["type"] == "registrationrejected" })
	if rej["code"] != "FUNCTION_NAMESPACE_CONFLICT" || rej["function_id"] != f.Prefix+"::echo" || rej["namespace"] != "default" ||
		rej["owner_worker_id"] == "" {
		t.Fatalf("registrationrejected = %v", rej)
	}
	for i := range 5 {
		out, err := sluice.Call[map[string]any](ctx, c, f.Prefix+"::echo", map[string]any{"i": i})
		if err != nil || out["i"] != float64(i) {
			t.Fatalf("call %d after the hijack attempt: %v, %v; want the Node worker's echo", i, out, err)
		}
	}
	raw.sync(ctx)
	if raw.seen(func(m map[string]any) bool { return m["type"] == "invokefunction" }) {
		t.Fatalf("the impostor received calls: %v", raw.types())
	}
}

// TestAttackNamespacesEngineIDElsewhere: a raw client declares its own
// namespace and registers an engine:: id there (upstream reserves engine::
// to the default namespace, where the builtins live). It is refused with
// FUNCTION_NAMESPACE_CONFLICT in that namespace and owner "", nothing is
// listed, and a blank namespace is answered INVALID_NAMESPACE rather than
// read as default.
// On 25c1da9: the namespace was ignored (the engine:: refusal happened in
// default) and the blank namespace call was served as a default one.
func TestAttackNamespacesEngineIDElsewhere(t *testing.T) {
	e := startEngine(t, "127.0.0.1:0")
	c := connectGo(t, e, "go-ns-engine")
	ctx := ctxFor(t, 2*callTimeout)
	raw := regDial(ctx, t, e)
	raw.send(map[string]any{"type": "invokefunction", "function_id": "engine::workers::register",
		"data": map[string]any{"name": "shadow", "namespace": "evil"}, "action": map[string]any{"type": "void"}})
	raw.send(map[string]any{"type": "registerfunction", "id": "engine::functions::list"})
	rej := raw.next(ctx, func(m map[string]any) bool { return m["type"] == "registrationrejected" })
	if rej["code"] != "FUNCTION_NAMESPACE_CONFLICT" || rej["namespace"] != "evil" || rej["owner_worker_id"] != "" {
		t.Fatalf("registrationrejected = %v; want FUNCTION_NAMESPACE_CONFLICT in evil, owner \"\"", rej)
	}
	raw.send(map[string]any{"type": "invokefunction", "invocation_id": "blank", "function_id": "engine::functions::list",
		"data": map[string]any{}, "namespace": " "})
	res := raw.next(ctx, func(m map[string]any) bool { return m["type"] == "invocationresult" && m["invocation_id"] == "blank" })
	if errBody, _ := res["error"].(map[string]any); errBody == nil || errBody["code"] != "INVALID_NAMESPACE" {
		t.Fatalf("blank namespace call = %v; want INVALID_NAMESPACE", res)
	}
	rows, err := listFunctions(ctx, c, map[string]any{"include_internal": true})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range rows {
		if r.FunctionID == "engine::functions::list" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("engine::functions::list listed %d times", n)
	}
	if _, err := e.stderr.wait(ctx, func(s string) bool {
		return strings.Contains(s, "registerfunction refused") && strings.Contains(s, "namespace=evil")
	}); err != nil {
		t.Fatal(err)
	}
}
