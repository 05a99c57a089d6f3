package engine

import (
	"strings"
	"testing"
	"time"
)

// obsCall invokes fn from c and returns the invocationresult.
func (c *obsClient) obsCall(id, fn, data string) map[string]any {
	c.t.Helper()
	c.send(`{"type":"invokefunction","invocation_id":"` + id + `","function_id":"` + fn + `","data":` + data + `}`)
	return c.await("invocationresult", func(m map[string]any) bool { return m["invocation_id"] == id })
}

// awaitInvokes returns the next n invokefunction frames by function id
// (activations of one invocation arrive in no fixed order).
func (c *obsClient) awaitInvokes(n int) map[string]map[string]any {
	c.t.Helper()
	out := map[string]map[string]any{}
	for len(out) < n {
		m := c.await("invokefunction", nil)
		out[m["function_id"].(string)] = m
	}
	return out
}

// obsGet is engine::observers::get of id, from c.
func (c *obsClient) obsGet(id string) map[string]any {
	c.t.Helper()
	return c.obsCall("get-"+id+"-"+time.Now().Format("150405.000000000"), "engine::observers::get", `{"id":"`+id+`"}`)
}

func obsErrCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func obsState(m map[string]any) string {
	r, _ := m["result"].(map[string]any)
	o, _ := r["observer"].(map[string]any)
	s, _ := o["state"].(string)
	return s
}

// obsActivate has owner (observe.v1, owning src) ack the observeradded for
// id so the observer turns active.
func obsAck(t *testing.T, owner, watcher *obsClient, src, id string) {
	t.Helper()
	added := owner.await("observeradded", func(m map[string]any) bool {
		o, _ := m["observer"].(map[string]any)
		return o["id"] == id
	})
	owner.send(`{"type":"observerack","function_id":"` + src + `","id":"` + id + `","revision":` + jsonNum(added["revision"]) + `}`)
	if r := watcher.await("observerstatechanged", withID(id)); r["state"] != "active" {
		t.Fatalf("%s after ack: %v", id, r)
	}
}

// The parse refusals the existing table does not reach: blank namespaces
// (source or target), deliver, expires_in_ms, max_fires, args shape and
// size, metadata size, id length; a malformed observe whose id is readable
// is answered INVALID_ARGS; the default namespace spelled out is accepted.
func TestObserveParseRefusalsMore(t *testing.T) {
	e := startEngine(t)
	w := obsDial(t, e)
	big := `"` + strings.Repeat("x", 64<<10) + `"`
	for _, c := range []struct{ id, frame, code string }{
		{"n1", `"source":{"function_id":"a::s","namespace":" "},"target":{"function_id":"a::t"}`, "INVALID_NAMESPACE"},
		{"n2", `"source":{"function_id":"a::s"},"target":{"function_id":"a::t","namespace":"\t"}`, "INVALID_NAMESPACE"},
		{"d1", `"source":{"function_id":"a::s","deliver":"sideways"},"target":{"function_id":"a::t"}`, "INVALID_ARGS"},
		{"x1", `"source":{"function_id":"a::s"},"target":{"function_id":"a::t"},"expires_in_ms":0`, "INVALID_ARGS"},
		{"x2", `"source":{"function_id":"a::s"},"target":{"function_id":"a::t"},"expires_in_ms":-5`, "INVALID_ARGS"},
		{"f1", `"source":{"function_id":"a::s"},"target":{"function_id":"a::t"},"max_fires":-1`, "INVALID_ARGS"},
		{"a1", `"source":{"function_id":"a::s","args":[1]},"target":{"function_id":"a::t"}`, "INVALID_ARGS"},
		{"a2", `"source":{"function_id":"a::s","args":{"k":` + big + `}},"target":{"function_id":"a::t"}`, "INVALID_ARGS"},
		{"m1", `"source":{"function_id":"a::s"},"target":{"function_id":"a::t"},"metadata":{"k":` + big + `}`, "INVALID_ARGS"},
		{"t1", `"source":{"function_id":"a::s"},"target":{"function_id":""}`, "INVALID_ARGS"},
		{"bad", `"source":"not an object","target":{"function_id":"a::t"}`, "INVALID_ARGS"},
		{strings.Repeat("i", 257), `"source":{"function_id":"a::s"},"target":{"function_id":"a::t"}`, "INVALID_ARGS"},
	} {
		w.send(`{"type":"observe","id":"` + c.id + `",` + c.frame + `}`)
		r := w.await("observeresult", withID(c.id))
		if r["state"] != "error" || obsErrCode(r) != c.code {
			t.Errorf("%.10s: %v, want %s", c.id, r, c.code)
		}
		if got := w.obsGet(c.id); obsErrCode(got) != "OBSERVER_NOT_FOUND" {
			t.Errorf("%.10s: refused observer kept: %v", c.id, got)
		}
	}
	w.send(`{"type":"observe","id":"ok","source":{"function_id":"a::s","namespace":"default","args":{}},"target":{"function_id":"a::t","namespace":"default"}}`)
	if r := w.await("observeresult", withID("ok")); r["state"] != "pending" {
		t.Fatalf("default namespace spelled out: %v", r)
	}
}

// unobserve of an unknown id, or of another worker's observer, changes
// nothing and answers nothing; localinvocationstats is accepted silently;
// a repeated observe (same id, spec, worker) answers the current state.
func TestObserveUnobserveUnknownAndForeign(t *testing.T) {
	e := startEngine(t)
	w := obsDial(t, e)
	w.send(`{"type":"registerfunction","id":"u::s"}`)
	w.send(`{"type":"registerfunction","id":"u::t"}`)
	w.send(`{"type":"observe","id":"u1","source":{"function_id":"u::s"},"target":{"function_id":"u::t"}}`)
	if r := w.await("observeresult", withID("u1")); r["state"] != "active" {
		t.Fatalf("%v", r)
	}
	other := obsDial(t, e)
	other.send(`{"type":"unobserve","id":"nope"}`)
	other.send(`{"type":"unobserve","id":"u1"}`)
	other.send(`{"type":"localinvocationstats","counts":{"u::s":3}}`)
	other.noFrame("observerstatechanged")
	w.noFrame("observerstatechanged")
	if s := obsState(w.obsGet("u1")); s != "active" {
		t.Fatalf("foreign unobserve touched u1: %s", s)
	}
	w.send(`{"type":"observe","id":"u1","source":{"function_id":"u::s"},"target":{"function_id":"u::t"}}`)
	if r := w.await("observeresult", withID("u1")); r["state"] != "active" {
		t.Fatalf("repeat: %v", r)
	}
	w.send(`{"type":"observe","id":"u1","source":{"function_id":"u::s"},"target":{"function_id":"other::t"}}`)
	if r := w.await("observeresult", withID("u1")); obsErrCode(r) != "OBSERVER_ID_CONFLICT" {
		t.Fatalf("same id, other target: %v", r)
	}
}

// expires_in_ms disposes the observer (EXPIRED) and tells its worker and
// the source's owner (observerremoved).
func TestObserveExpires(t *testing.T) {
	e := startEngine(t)
	owner := obsDial(t, e)
	owner.announce("owner", true)
	owner.send(`{"type":"registerfunction","id":"x::s"}`)
	owner.await("functionregistered", withID("x::s"))
	w := obsDial(t, e)
	w.send(`{"type":"registerfunction","id":"x::t"}`)
	w.send(`{"type":"observe","id":"ex","source":{"function_id":"x::s"},"target":{"function_id":"x::t"},"expires_in_ms":100}`)
	if r := w.await("observeresult", withID("ex")); r["state"] != "pending" {
		t.Fatalf("%v", r)
	}
	obsAck(t, owner, w, "x::s", "ex")
	d := w.await("observerstatechanged", withID("ex"))
	if r, _ := d["reason"].(map[string]any); d["state"] != "disposed" || r["code"] != "EXPIRED" || d["fires"] != 0.0 {
		t.Fatalf("expiry: %v", d)
	}
	if rm := owner.await("observerremoved", withID("ex")); rm["function_id"] != "x::s" {
		t.Fatalf("observerremoved: %v", rm)
	}
	if g := w.obsGet("ex"); obsErrCode(g) != "OBSERVER_NOT_FOUND" {
		t.Fatalf("expired observer still listed: %v", g)
	}
}

// An owner's observerack with an error turns the observer to error with
// that code and removes it; an ack for another function or from a
// connection that was not told is ignored.
func TestObserveAckError(t *testing.T) {
	e := startEngine(t)
	owner := obsDial(t, e)
	owner.announce("owner", true)
	owner.send(`{"type":"registerfunction","id":"k::s"}`)
	owner.await("functionregistered", withID("k::s"))
	w := obsDial(t, e)
	w.send(`{"type":"registerfunction","id":"k::t"}`)
	w.send(`{"type":"observe","id":"ke","source":{"function_id":"k::s"},"target":{"function_id":"k::t"},"expires_in_ms":600000}`)
	w.await("observeresult", withID("ke"))
	added := owner.await("observeradded", nil)
	rev := jsonNum(added["revision"])
	w.send(`{"type":"observerack","function_id":"k::s","id":"ke","revision":` + rev + `}`)          // not the owner
	owner.send(`{"type":"observerack","function_id":"k::t","id":"ke","revision":` + rev + `}`)      // wrong function
	owner.send(`{"type":"observerack","function_id":"k::s","id":"unknown","revision":` + rev + `}`) // unknown id
	w.noFrame("observerstatechanged")
	if s := obsState(w.obsGet("ke")); s != "pending" {
		t.Fatalf("ignored acks changed the state: %s", s)
	}
	owner.send(`{"type":"observerack","function_id":"k::s","id":"ke","revision":` + rev + `,"error":{"code":"OWNER_TIMEOUT","message":"no answer"}}`)
	d := w.await("observerstatechanged", withID("ke"))
	if r, _ := d["reason"].(map[string]any); d["state"] != "error" || r["code"] != "OWNER_TIMEOUT" {
		t.Fatalf("ack error: %v", d)
	}
	if g := w.obsGet("ke"); obsErrCode(g) != "OBSERVER_NOT_FOUND" {
		t.Fatalf("refused observer kept: %v", g)
	}
}

// deliver input / output send the bare value; on error and on complete
// see failed calls, with capture error and metadata in the envelope and
// no output; an on-success observer ignores a failure.
func TestObserveDeliverAndOn(t *testing.T) {
	e := startEngine(t)
	src := obsDial(t, e)
	src.send(`{"type":"registerfunction","id":"v::s"}`)
	src.noFrame("observeresult") // v::s registered before the observers
	w := obsDial(t, e)
	for _, fn := range []string{"v::in", "v::out", "v::err", "v::all"} {
		w.send(`{"type":"registerfunction","id":"` + fn + `"}`)
	}
	for _, o := range []string{
		`"id":"oin","source":{"function_id":"v::s","deliver":"input"},"target":{"function_id":"v::in"}`,
		`"id":"oout","source":{"function_id":"v::s","deliver":"output","on":"complete"},"target":{"function_id":"v::out"}`,
		`"id":"oerr","source":{"function_id":"v::s","on":"error","capture":["input","output","error","metadata"],"filters":{"error.code":{"$eq":"E_BAD"}}},"target":{"function_id":"v::err"}`,
	} {
		w.send(`{"type":"observe",` + o + `}`)
		id := strings.Split(o, `"`)[3]
		if r := w.await("observeresult", withID(id)); r["state"] != "active" {
			t.Fatalf("%s: %v", id, r)
		}
	}
	caller := obsDial(t, e)
	// success
	caller.send(`{"type":"invokefunction","invocation_id":"ok","function_id":"v::s","data":{"q":1}}`)
	src.answer(src.await("invokefunction", invokeOf("v::s")), `{"r":2}`)
	caller.await("invocationresult", func(m map[string]any) bool { return m["invocation_id"] == "ok" })
	acts := w.awaitInvokes(2)
	if a := acts["v::in"]; jsonNum(a["data"]) != `{"q":1}` {
		t.Fatalf("deliver input: %v", acts)
	}
	if a := acts["v::out"]; jsonNum(a["data"]) != `{"r":2}` {
		t.Fatalf("deliver output: %v", acts)
	}
	// failure
	caller.send(`{"type":"invokefunction","invocation_id":"bad","function_id":"v::s","data":{"q":3},"metadata":{"trace":"t1"}}`)
	inv := src.await("invokefunction", invokeOf("v::s"))
	src.send(`{"type":"invocationresult","invocation_id":"` + inv["invocation_id"].(string) + `","function_id":"v::s","error":{"code":"E_BAD","message":"boom"}}`)
	caller.await("invocationresult", func(m map[string]any) bool { return m["invocation_id"] == "bad" })
	acts = w.awaitInvokes(2)
	if a, ok := acts["v::out"]; !ok || a["data"] != nil {
		t.Fatalf("deliver output of a failure: %v", acts)
	}
	a := acts["v::err"]
	env, _ := a["data"].(map[string]any)
	er, _ := env["error"].(map[string]any)
	md, _ := env["metadata"].(map[string]any)
	if env["status"] != "error" || er["code"] != "E_BAD" || md["trace"] != "t1" || jsonNum(env["input"]) != `{"q":3}` {
		t.Fatalf("on error envelope: %v", env)
	}
	if _, ok := env["output"]; ok {
		t.Fatalf("output in a failure envelope: %v", env)
	}
	if _, ok := env["caller"]; ok {
		t.Fatalf("caller not captured but sent: %v", env)
	}
	w.noFrame("invokefunction") // oin (on success) saw no failure
	if g := w.obsGet("oin"); !strings.Contains(jsonNum(g["result"]), `"fires":1`) {
		t.Fatalf("oin fires: %v", g)
	}
}

// Owner delivery: routed calls activate nothing; the owner's obs.call
// (invokefunction with activation) is checked (INVALID_ARGS,
// OBSERVER_NOT_FOUND, NOT_FUNCTION_OWNER, TARGET_MISMATCH,
// OBSERVER_NOT_ACTIVE), counted against max_fires and forwarded with the
// observer's metadata and a fresh activation_id; obs.emit
// (invocationsobserved) activates the matched observers only. args are
// checked against args_format; allow:false refuses observers.
func TestObserveOwnerDelivery(t *testing.T) {
	e := startEngine(t)
	owner := obsDial(t, e)
	owner.announce("owner", true)
	owner.send(`{"type":"registerfunction","id":"od::s","observe":{"delivery":"owner","args_format":{"type":"object","properties":{"table":{"type":"string"}}}}}`)
	owner.send(`{"type":"registerfunction","id":"od::closed","observe":{"allow":false}}`)
	owner.await("functionregistered", withID("od::closed"))
	w := obsDial(t, e)
	w.announce("w", true)
	w.send(`{"type":"registerfunction","id":"od::t"}`)
	w.send(`{"type":"registerfunction","id":"od::t2"}`)
	w.await("functionregistered", withID("od::t2"))

	w.send(`{"type":"observe","id":"na","source":{"function_id":"od::closed"},"target":{"function_id":"od::t"}}`)
	if r := w.await("observeresult", withID("na")); obsErrCode(r) != "NOT_OBSERVABLE" {
		t.Fatalf("allow false: %v", r)
	}
	w.send(`{"type":"observe","id":"bad","source":{"function_id":"od::s","args":{"table":7}},"target":{"function_id":"od::t"}}`)
	if r := w.await("observeresult", withID("bad")); obsErrCode(r) != "INVALID_ARGS" || !strings.Contains(jsonNum(r["error"]), "table") {
		t.Fatalf("args_format: %v", r)
	}
	w.send(`{"type":"observe","id":"oc","source":{"function_id":"od::s","args":{"table":"users"}},"target":{"function_id":"od::t"},"metadata":{"m":"x"},"max_fires":1}`)
	w.await("observeresult", withID("oc"))
	obsAck(t, owner, w, "od::s", "oc")
	w.send(`{"type":"observe","id":"oe","source":{"function_id":"od::s"},"target":{"function_id":"od::t2"}}`)
	w.await("observeresult", withID("oe"))
	obsAck(t, owner, w, "od::s", "oe")
	w.send(`{"type":"observe","id":"oe2","source":{"function_id":"od::s"},"target":{"function_id":"od::t2"}}`)
	w.await("observeresult", withID("oe2"))
	obsAck(t, owner, w, "od::s", "oe2")

	// a routed call activates nothing
	w.send(`{"type":"invokefunction","invocation_id":"r1","function_id":"od::s","data":{}}`)
	owner.answer(owner.await("invokefunction", invokeOf("od::s")), `1`)
	w.await("invocationresult", func(m map[string]any) bool { return m["invocation_id"] == "r1" })
	w.noFrame("invokefunction")

	for _, c := range []struct {
		from          *obsClient
		fn, act, code string
	}{
		{owner, "od::t", `{}`, "INVALID_ARGS"},
		{owner, "od::t", `{"observer_id":"ghost"}`, "OBSERVER_NOT_FOUND"},
		{w, "od::t", `{"observer_id":"oc"}`, "NOT_FUNCTION_OWNER"},
		{owner, "od::t2", `{"observer_id":"oc"}`, "TARGET_MISMATCH"},
	} {
		id := "bad-" + c.code
		c.from.send(`{"type":"invokefunction","invocation_id":"` + id + `","function_id":"` + c.fn + `","data":{},"activation":` + c.act + `}`)
		r := c.from.await("invocationresult", func(m map[string]any) bool { return m["invocation_id"] == id })
		if obsErrCode(r) != c.code {
			t.Errorf("%s: %v", c.code, r)
		}
	}
	owner.send(`{"type":"invokefunction","invocation_id":"call1","function_id":"od::t","data":{"row":1},"activation":{"observer_id":"oc"},"observe_depth":2}`)
	// the disposal (max_fires 1) and the forwarded call race to w
	var act, disp map[string]any
	for act == nil || disp == nil {
		m := w.await("", nil)
		switch {
		case m["type"] == "invokefunction" && m["function_id"] == "od::t":
			act = m
		case m["type"] == "observerstatechanged" && m["id"] == "oc":
			disp = m
		}
	}
	if disp["state"] != "disposed" {
		t.Fatalf("max_fires 1: %v", disp)
	}
	a, _ := act["activation"].(map[string]any)
	if m, _ := act["metadata"].(map[string]any); m["m"] != "x" || a["observer_id"] != "oc" || a["activation_id"] == nil || jsonNum(act["observe_depth"]) != "3" {
		t.Fatalf("obs.call forwarded as %v", act)
	}
	w.answer(act, `"done"`)
	if r := owner.await("invocationresult", func(m map[string]any) bool { return m["invocation_id"] == "call1" }); r["result"] != "done" {
		t.Fatalf("target result to the owner: %v", r)
	}
	owner.send(`{"type":"invokefunction","invocation_id":"call2","function_id":"od::t","data":{},"activation":{"observer_id":"oc"}}`)
	if r := owner.await("invocationresult", func(m map[string]any) bool { return m["invocation_id"] == "call2" }); obsErrCode(r) != "OBSERVER_NOT_FOUND" && obsErrCode(r) != "OBSERVER_NOT_ACTIVE" {
		t.Fatalf("after max_fires: %v", r)
	}

	// obs.emit: only the matched observer fires; items for a function the
	// reporter does not own are dropped.
	w.send(`{"type":"invocationsobserved","items":[{"function_id":"od::s","invocation_id":"fake","matched":["oe"],"status":"success","input":{"x":1}}]}`)
	owner.send(`{"type":"invocationsobserved","items":[{"function_id":"od::unknown","matched":["oe"]},{"function_id":"od::s","invocation_id":"i1","matched":["oe"],"status":"success","output":{"y":2},"caller":{"function_id":"up::f"},"observe_depth":1}]}`)
	act = w.await("invokefunction", invokeOf("od::t2"))
	env, _ := act["data"].(map[string]any)
	c, _ := env["caller"].(map[string]any)
	if env["observer_id"] != "oe" || env["invocation_id"] != "i1" || jsonNum(env["output"]) != `{"y":2}` || env["input"] != nil ||
		c["worker_id"] != owner.id || c["function_id"] != "up::f" || jsonNum(act["observe_depth"]) != "2" {
		t.Fatalf("emitted activation %v", act)
	}
	w.noFrame("invokefunction") // oe2 not matched; the non-owner's report dropped
}

// Local dispatch: an owner reports calls it ran itself; an auto-delivered
// observer fires when the report names it, and an error report reaches an
// on-error observer.
func TestObserveLocalDispatchReport(t *testing.T) {
	e := startEngine(t)
	owner := obsDial(t, e)
	owner.announce("owner", true)
	owner.send(`{"type":"registerfunction","id":"ld::s"}`)
	owner.await("functionregistered", withID("ld::s"))
	// no observers yet: a report is dropped
	owner.send(`{"type":"invocationsobserved","items":[{"function_id":"ld::s","matched":["lo"],"status":"success"}]}`)
	w := obsDial(t, e)
	w.send(`{"type":"registerfunction","id":"ld::t"}`)
	w.send(`{"type":"observe","id":"lo","source":{"function_id":"ld::s","on":"error","capture":["error"]},"target":{"function_id":"ld::t"}}`)
	w.await("observeresult", withID("lo"))
	obsAck(t, owner, w, "ld::s", "lo")
	owner.send(`{"type":"invocationsobserved","items":[{"function_id":"ld::s","invocation_id":"a","matched":["lo"],"status":"success","output":1},{"function_id":"ld::s","invocation_id":"b","matched":["lo"],"status":"error","error":{"code":"X"}}]}`)
	act := w.await("invokefunction", invokeOf("ld::t"))
	env, _ := act["data"].(map[string]any)
	if env["invocation_id"] != "b" || env["status"] != "error" || jsonNum(env["error"]) != `{"code":"X"}` {
		t.Fatalf("local report activation %v", env)
	}
	w.noFrame("invokefunction")
}

// A worker that declares observe.v1 after registering gets
// functionregistered for what it registered, with its observers; a
// function of a worker in another namespace is confirmed with none.
func TestObserveDeclareLateAndNamespace(t *testing.T) {
	e := startEngine(t)
	w := obsDial(t, e)
	w.send(`{"type":"registerfunction","id":"dl::t"}`)
	w.send(`{"type":"observe","id":"dl","source":{"function_id":"dl::s"},"target":{"function_id":"dl::t"}}`)
	w.await("observeresult", withID("dl"))
	owner := obsDial(t, e)
	owner.send(`{"type":"registerfunction","id":"dl::s"}`)
	owner.noFrame("functionregistered")
	if r := w.await("observerstatechanged", withID("dl")); r["state"] != "active" {
		t.Fatalf("%v", r)
	}
	owner.announce("late", true)
	fr := owner.await("functionregistered", withID("dl::s"))
	obs, _ := fr["observers"].([]any)
	if len(obs) != 1 || obs[0].(map[string]any)["id"] != "dl" {
		t.Fatalf("late functionregistered: %v", fr)
	}
	owner.announce("late", true) // declared already: nothing again
	owner.noFrame("functionregistered")
	// an engine function is delivered automatically: no args
	owner.send(`{"type":"observe","id":"eng","source":{"function_id":"engine::functions::list","args":{"a":1}},"target":{"function_id":"dl::t"}}`)
	if r := owner.await("observeresult", withID("eng")); obsErrCode(r) != "INVALID_ARGS" {
		t.Fatalf("args on an engine function: %v", r)
	}
	tenant := obsDial(t, e)
	tenant.send(`{"type":"invokefunction","function_id":"engine::workers::register","data":{"runtime":"test","name":"tenant","namespace":"other","features":["observe.v1"]},"action":{"type":"void"}}`)
	tenant.send(`{"type":"registerfunction","id":"ns::f"}`)
	fr = tenant.await("functionregistered", withID("ns::f"))
	if obs, _ := fr["observers"].([]any); fr["namespace"] != "other" || fr["local_dispatch"] != true || len(obs) != 0 || fr["observers"] == nil {
		t.Fatalf("other namespace: %v", fr)
	}
	r := w.obsCall("list", "engine::observers::list", `{"function_id":"dl::s"}`)
	if l, _ := r["result"].(map[string]any)["observers"].([]any); len(l) != 1 {
		t.Fatalf("list: %v", r)
	}
	r = w.obsCall("list2", "engine::observers::list", `{"function_id":"nothing"}`)
	if l, _ := r["result"].(map[string]any)["observers"].([]any); l == nil || len(l) != 0 {
		t.Fatalf("list of none: %v", r)
	}
}

// The source's owner going away suspends its observers; a new owner gets
// them in functionregistered and its ack resumes them. The observing
// worker going away for longer than observe.reconnect_grace disposes them
// (OBSERVER_DISCONNECTED) and tells the owner.
func TestObserveOwnerAndObserverDisconnect(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.Observe.ReconnectGrace = time.Second })
	owner := obsDial(t, e)
	owner.announce("owner", true)
	owner.send(`{"type":"registerfunction","id":"dc::s"}`)
	owner.await("functionregistered", withID("dc::s"))
	w := obsDial(t, e)
	w.send(`{"type":"registerfunction","id":"dc::t"}`)
	w.send(`{"type":"observe","id":"dc","source":{"function_id":"dc::s"},"target":{"function_id":"dc::t"}}`)
	w.await("observeresult", withID("dc"))
	obsAck(t, owner, w, "dc::s", "dc")
	owner.ws.Close()
	if r := w.await("observerstatechanged", withID("dc")); r["state"] != "suspended" {
		t.Fatalf("owner gone: %v", r)
	}
	owner2 := obsDial(t, e)
	owner2.announce("owner2", true)
	owner2.send(`{"type":"registerfunction","id":"dc::s"}`)
	fr := owner2.await("functionregistered", withID("dc::s"))
	obs, _ := fr["observers"].([]any)
	if len(obs) != 1 || obs[0].(map[string]any)["id"] != "dc" {
		t.Fatalf("new owner's functionregistered: %v", fr)
	}
	owner2.send(`{"type":"observerack","function_id":"dc::s","id":"dc","revision":` + jsonNum(fr["revision"]) + `}`)
	if r := w.await("observerstatechanged", withID("dc")); r["state"] != "active" {
		t.Fatalf("after the new owner's ack: %v", r)
	}
	w.ws.Close()
	if rm := owner2.await("observerremoved", withID("dc")); rm["function_id"] != "dc::s" {
		t.Fatalf("observerremoved: %v", rm)
	}
	if g := owner2.obsGet("dc"); obsErrCode(g) != "OBSERVER_NOT_FOUND" {
		t.Fatalf("disconnected observer kept: %v", g)
	}
}

// Filters on output, caller and metadata see the call's result, the
// stamped caller (the connection's name plus the asserted function,
// invocation and one level of string-valued parent) and its metadata; a
// function with no observer is not tracked while others are; an absurd
// observe_depth is clamped and the activation dropped by the loop guard.
// On 501b74f the {"ok":false} call activated the target (the filter's
// closure-free clauses alone decided; internal/observe fixed).
func TestObserveFilterRootsAndCaller(t *testing.T) {
	e := startEngine(t)
	src := obsDial(t, e)
	src.send(`{"type":"registerfunction","id":"fr::s"}`)
	src.send(`{"type":"registerfunction","id":"fr::other"}`)
	src.noFrame("observeresult")
	w := obsDial(t, e)
	w.send(`{"type":"registerfunction","id":"fr::t"}`)
	w.send(`{"type":"observe","id":"fc","source":{"function_id":"fr::s","capture":["caller"],"filters":{"output.ok":{"$eq":true},"caller.worker_name":{"$eq":"caller"},"metadata.tenant":{"$eq":"t1"}}},"target":{"function_id":"fr::t"}}`)
	if r := w.await("observeresult", withID("fc")); r["state"] != "active" {
		t.Fatalf("%v", r)
	}
	caller := obsDial(t, e)
	caller.send(`{"type":"invokefunction","invocation_id":"reg","function_id":"engine::workers::register","data":{"runtime":"test","name":"caller"}}`)
	caller.await("invocationresult", func(m map[string]any) bool { return m["invocation_id"] == "reg" })
	asserted := `{"function_id":"up::f","invocation_id":"i0","parent":{"function_id":"pp::f","invocation_id":"pi","parent":{"x":"y"},"n":5}}`
	for _, c := range []struct{ id, fn, meta, out, depth string }{
		{"match", "fr::s", `{"tenant":"t1"}`, `{"ok":true}`, "0"},
		{"tenant", "fr::s", `{"tenant":"t2"}`, `{"ok":true}`, "0"},
		{"notok", "fr::s", `{"tenant":"t1"}`, `{"ok":false}`, "0"},
		{"other", "fr::other", `{"tenant":"t1"}`, `{"ok":true}`, "0"},
		{"deep", "fr::s", `{"tenant":"t1"}`, `{"ok":true}`, "99999999999"},
		{"deep2", "fr::s", `{"tenant":"t1"}`, `{"ok":true}`, "8"},
	} {
		caller.send(`{"type":"invokefunction","invocation_id":"` + c.id + `","function_id":"` + c.fn + `","data":{},"metadata":` + c.meta + `,"caller":` + asserted + `,"observe_depth":` + c.depth + `}`)
		src.answer(src.await("invokefunction", invokeOf(c.fn)), c.out)
		caller.await("invocationresult", func(m map[string]any) bool { return m["invocation_id"] == c.id })
		if c.id != "match" {
			continue
		}
		act := w.await("invokefunction", invokeOf("fr::t"))
		env, _ := act["data"].(map[string]any)
		if got := jsonNum(env["caller"]); got != `{"function_id":"up::f","invocation_id":"i0","parent":{"function_id":"pp::f","invocation_id":"pi"},"worker_id":"`+caller.id+`","worker_name":"caller"}` {
			t.Fatalf("stamped caller %s", got)
		}
		if _, ok := env["input"]; ok {
			t.Fatalf("input not captured but sent: %v", env)
		}
	}
	w.noFrame("invokefunction")
	g := w.obsGet("fc")
	if res := jsonNum(g["result"]); !strings.Contains(res, `"fires":1`) || !strings.Contains(res, `"LOOP_GUARD":2`) {
		t.Fatalf("fires and drops: %s", res)
	}
}
