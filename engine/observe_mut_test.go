package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/invocation"
)

// Mutation tests for observe.go (issue 17): each kills the survivors named
// in its comment (line numbers of observe.go as of the run in
// docs/testing.md); each was checked to fail with its mutant applied.

// sizedJSON is an object {"k":"xxx…"} of exactly n bytes.
func sizedJSON(n int) string {
	return `{"k":"` + strings.Repeat("x", n-8) + `"}`
}

// The bounds of observe are inclusive: an id of 256 bytes, args and
// metadata of exactly 64 KiB and max_in_flight 1048576 are accepted, one
// more is refused. Kills observe.go:313 (`len(id) > 256` → `>=`), :461 and
// :468 (the 64 KiB args and metadata, `>` → `>=`), :484 (`> 1<<20` → `>=`).
func TestObserveMutBoundsInclusive(t *testing.T) {
	e := startEngine(t)
	w := obsDial(t, e)
	long := strings.Repeat("i", 256)
	for _, c := range []struct{ id, frame, state string }{
		{long, `"source":{"function_id":"b::s"},"target":{"function_id":"b::t"}`, "pending"},
		{"args", `"source":{"function_id":"b::s","args":` + sizedJSON(64<<10) + `},"target":{"function_id":"b::t"}`, "pending"},
		{"args+1", `"source":{"function_id":"b::s","args":` + sizedJSON(64<<10+1) + `},"target":{"function_id":"b::t"}`, "error"},
		{"meta", `"source":{"function_id":"b::s"},"target":{"function_id":"b::t"},"metadata":` + sizedJSON(64<<10), "pending"},
		{"meta+1", `"source":{"function_id":"b::s"},"target":{"function_id":"b::t"},"metadata":` + sizedJSON(64<<10+1), "error"},
		{"mif", `"source":{"function_id":"b::s"},"target":{"function_id":"b::t"},"max_in_flight":1048576`, "pending"},
		{"mif+1", `"source":{"function_id":"b::s"},"target":{"function_id":"b::t"},"max_in_flight":1048577`, "error"},
	} {
		w.send(`{"type":"observe","id":"` + c.id + `",` + c.frame + `}`)
		r := w.await("observeresult", withID(c.id))
		if r["state"] != c.state || c.state == "error" && obsErrCode(r) != "INVALID_ARGS" {
			t.Errorf("%.10s: %v, want %s", c.id, r, c.state)
		}
	}
}

// observe.max_observers counts every worker's observers: at the limit the
// next one is refused even for a worker under its own limit. Kills
// observe.go:352 (`len(h.byID) >= lim.Max` → `>`).
func TestObserveMutGlobalLimit(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.Observe.Max, c.Observe.MaxPerWorker = 2, 2 })
	w1, w2 := obsDial(t, e), obsDial(t, e)
	for _, c := range []struct {
		w         *obsClient
		id, state string
	}{{w1, "g1", "pending"}, {w2, "g2", "pending"}, {w2, "g3", "error"}} {
		c.w.send(`{"type":"observe","id":"` + c.id + `","source":{"function_id":"g::s"},"target":{"function_id":"g::t"}}`)
		r := c.w.await("observeresult", withID(c.id))
		if r["state"] != c.state || c.state == "error" && obsErrCode(r) != "LIMIT_EXCEEDED" {
			t.Fatalf("%s: %v, want %s", c.id, r, c.state)
		}
	}
}

// The revisions an owner is sent for one function only grow:
// functionregistered, observeradded, observerremoved, functionregistered
// again. Kills observe.go:540 (observerremoved's `h.revs[..]++` → `--`),
// :584 (functionregistered's) and :691 (observeradded's).
func TestObserveMutRevisionsGrow(t *testing.T) {
	e := startEngine(t)
	owner := obsDial(t, e)
	owner.announce("owner", true)
	owner.send(`{"type":"registerfunction","id":"rv::s"}`)
	revs := []float64{owner.await("functionregistered", withID("rv::s"))["revision"].(float64)}
	w := obsDial(t, e)
	w.send(`{"type":"registerfunction","id":"rv::t"}`)
	w.send(`{"type":"observe","id":"rv","source":{"function_id":"rv::s"},"target":{"function_id":"rv::t"}}`)
	w.await("observeresult", withID("rv"))
	added := owner.await("observeradded", nil)
	revs = append(revs, added["revision"].(float64))
	owner.send(`{"type":"observerack","function_id":"rv::s","id":"rv","revision":` + jsonNum(added["revision"]) + `}`)
	w.await("observerstatechanged", withID("rv"))
	w.send(`{"type":"unobserve","id":"rv"}`)
	revs = append(revs, owner.await("observerremoved", withID("rv"))["revision"].(float64))
	owner.send(`{"type":"registerfunction","id":"rv::s"}`)
	revs = append(revs, owner.await("functionregistered", withID("rv::s"))["revision"].(float64))
	for i := 1; i < len(revs); i++ {
		if revs[i] <= revs[i-1] {
			t.Fatalf("revisions %v: not increasing", revs)
		}
	}
}

// An observer's args reach the owner as given, and an observer without
// args is described with {} (observeradded and functionregistered). Kills
// observe.go:569 (`args == nil` → `!=`: the given args replaced by {}, none
// sent as null).
func TestObserveMutInfoArgs(t *testing.T) {
	e := startEngine(t)
	owner := obsDial(t, e)
	owner.announce("owner", true)
	owner.send(`{"type":"registerfunction","id":"ia::s","observe":{"delivery":"owner"}}`)
	owner.await("functionregistered", withID("ia::s"))
	w := obsDial(t, e)
	w.send(`{"type":"registerfunction","id":"ia::t"}`)
	for _, c := range []struct{ id, args, want string }{{"with", `{"table":"users"}`, `{"table":"users"}`}, {"without", `{}`, `{}`}} {
		w.send(`{"type":"observe","id":"` + c.id + `","source":{"function_id":"ia::s","args":` + c.args + `},"target":{"function_id":"ia::t"}}`)
		w.await("observeresult", withID(c.id))
		added := owner.await("observeradded", func(m map[string]any) bool { return m["observer"].(map[string]any)["id"] == c.id })
		if got := jsonNum(added["observer"].(map[string]any)["args"]); got != c.want {
			t.Errorf("%s: observeradded args %s, want %s", c.id, got, c.want)
		}
	}
}

// An owner's error ack of an observer with no expiry (no timer) turns it
// to error. Kills observe.go:619 (`o.timer != nil` → `==`: a nil timer
// stopped, the engine panicked).
func TestObserveMutAckErrorWithoutExpiry(t *testing.T) {
	e := startEngine(t)
	owner := obsDial(t, e)
	owner.announce("owner", true)
	owner.send(`{"type":"registerfunction","id":"ae::s"}`)
	owner.await("functionregistered", withID("ae::s"))
	w := obsDial(t, e)
	w.send(`{"type":"registerfunction","id":"ae::t"}`)
	w.send(`{"type":"observe","id":"ae","source":{"function_id":"ae::s"},"target":{"function_id":"ae::t"}}`)
	w.await("observeresult", withID("ae"))
	added := owner.await("observeradded", nil)
	owner.send(`{"type":"observerack","function_id":"ae::s","id":"ae","revision":` + jsonNum(added["revision"]) + `,"error":{"code":"NOPE","message":"no"}}`)
	if d := w.await("observerstatechanged", withID("ae")); d["state"] != "error" {
		t.Fatalf("error ack: %v", d)
	}
	if g := w.obsGet("ae"); obsErrCode(g) != "OBSERVER_NOT_FOUND" {
		t.Fatalf("refused observer kept: %v", g)
	}
}

// An observer whose target is in another namespace activates the target
// there. Kills observe.go:494 (nsReq's `ns == "default"` → `!=`: the
// activation was sent to the default namespace's function).
func TestObserveMutTargetInNamespace(t *testing.T) {
	e := startEngine(t)
	tenant := obsDial(t, e)
	tenant.send(`{"type":"invokefunction","function_id":"engine::workers::register","data":{"runtime":"test","name":"tenant","namespace":"other"},"action":{"type":"void"}}`)
	tenant.send(`{"type":"registerfunction","id":"tn::t"}`)
	tenant.noFrame("observeresult")
	w := obsDial(t, e)
	w.send(`{"type":"registerfunction","id":"tn::s"}`)
	w.send(`{"type":"registerfunction","id":"tn::t"}`) // default's tn::t: not the target
	w.send(`{"type":"observe","id":"tn","source":{"function_id":"tn::s"},"target":{"function_id":"tn::t","namespace":"other"}}`)
	if r := w.await("observeresult", withID("tn")); r["state"] != "active" {
		t.Fatalf("%v", r)
	}
	w.send(`{"type":"invokefunction","invocation_id":"c1","function_id":"tn::s","data":{"n":1}}`)
	w.answer(w.await("invokefunction", invokeOf("tn::s")), `1`)
	w.await("invocationresult", func(m map[string]any) bool { return m["invocation_id"] == "c1" })
	act := tenant.await("invokefunction", invokeOf("tn::t"))
	if env, _ := act["data"].(map[string]any); env["observer_id"] != "tn" {
		t.Fatalf("activation %v", act)
	}
	w.noFrame("invokefunction")
}

// The loop guard's warning is logged once per observer, at its first
// refused activation (the count goes on in dropped.LOOP_GUARD). Kills
// observe.go:883 (`loopDrops.Add(1) == 1` → `!=`: every refusal but the
// first logged).
func TestObserveMutLoopGuardLoggedOnce(t *testing.T) {
	e, logs := startEngineLogged(t)
	w := obsDial(t, e)
	w.send(`{"type":"registerfunction","id":"lw::f"}`)
	w.send(`{"type":"registerfunction","id":"lw::g"}`)
	w.send(`{"type":"observe","id":"lw","source":{"function_id":"lw::f"},"target":{"function_id":"lw::g"}}`)
	if r := w.await("observeresult", withID("lw")); r["state"] != "active" {
		t.Fatalf("%v", r)
	}
	const warning = "observer activation refused by the loop guard"
	for i, want := range []int{1, 1} {
		id := "deep" + string(rune('0'+i))
		w.send(`{"type":"invokefunction","invocation_id":"` + id + `","function_id":"lw::f","data":{},"observe_depth":8}`)
		w.answer(w.await("invokefunction", invokeOf("lw::f")), `null`)
		w.await("invocationresult", func(m map[string]any) bool { return m["invocation_id"] == id })
		w.noFrame("invokefunction") // the refusal was made on w's reader, before this round trip
		if n := logs.count(warning); n != want {
			t.Fatalf("after %d refusals: %d warnings, want %d", i+1, n, want)
		}
	}
}

// An activation's envelope carries the observed call's duration in
// milliseconds (within the time the test saw the call take) and, for a
// target that declared observe.v1, a caller naming the observed invocation.
// Kills observe.go:929 (`Microseconds() / 1000` → `* 1000`) and :962
// (`ev.invocationID != ""` → `==`: the caller's invocation_id left out).
func TestObserveMutEnvelopeDurationAndCaller(t *testing.T) {
	e := startEngine(t)
	src := obsDial(t, e)
	src.send(`{"type":"registerfunction","id":"ed::s"}`)
	src.noFrame("observeresult")
	w := obsDial(t, e)
	w.announce("w", true)
	w.send(`{"type":"registerfunction","id":"ed::t"}`)
	w.await("functionregistered", withID("ed::t"))
	w.send(`{"type":"observe","id":"ed","source":{"function_id":"ed::s"},"target":{"function_id":"ed::t"}}`)
	if r := w.await("observeresult", withID("ed")); r["state"] != "active" {
		t.Fatalf("%v", r)
	}
	start := time.Now()
	src.send(`{"type":"invokefunction","invocation_id":"c1","function_id":"ed::s","data":{}}`)
	src.answer(src.await("invokefunction", invokeOf("ed::s")), `1`)
	src.await("invocationresult", func(m map[string]any) bool { return m["invocation_id"] == "c1" })
	act := w.await("invokefunction", invokeOf("ed::t"))
	took := float64(time.Since(start).Microseconds()) / 1000 // the activation is sent after the duration is taken
	env, _ := act["data"].(map[string]any)
	if d, _ := env["duration_ms"].(float64); d <= 0 || d > took {
		t.Fatalf("duration_ms %v, the call took %.3f ms as the test saw it", env["duration_ms"], took)
	}
	c, _ := act["caller"].(map[string]any)
	if id, _ := env["invocation_id"].(string); id == "" || c["invocation_id"] != id || c["function_id"] != "ed::s" {
		t.Fatalf("activation caller %v, envelope %v", act["caller"], env)
	}
}

// An activation dropped past max_in_flight's queue is logged once per
// observer (counted in dropped.OVERFLOW). Kills observe.go:978
// (`overflows.Add(1) == 1` → `!=`: every drop but the first logged).
func TestObserveMutOverflowLoggedOnce(t *testing.T) {
	e, logs := startEngineLogged(t)
	src := obsDial(t, e)
	src.send(`{"type":"registerfunction","id":"ov::s"}`)
	src.noFrame("observeresult")
	w := obsDial(t, e)
	w.send(`{"type":"registerfunction","id":"ov::t"}`)
	w.send(`{"type":"observe","id":"ov","source":{"function_id":"ov::s","deliver":"input"},"target":{"function_id":"ov::t"},"max_in_flight":1}`)
	if r := w.await("observeresult", withID("ov")); r["state"] != "active" {
		t.Fatalf("%v", r)
	}
	n := maxQueuedActivations + 4 // 1 running, the queue full, 3 dropped
	for i := 0; i < n; i++ {
		src.send(`{"type":"invokefunction","function_id":"ov::s","data":null,"action":{"type":"void"}}`)
	}
	for i := 0; i < n; i++ {
		src.answer(src.await("invokefunction", invokeOf("ov::s")), `null`)
	}
	src.noFrame("none") // the activations were made or dropped on src's reader
	if res := jsonNum(w.obsGet("ov")["result"]); !strings.Contains(res, `"OVERFLOW":3`) {
		t.Fatalf("dropped: %s", res)
	}
	if c := logs.count("observer activation dropped: max_in_flight reached"); c != 1 {
		t.Fatalf("3 drops logged %d times, want once", c)
	}
}

// A reported invocation (invocationsobserved) activates with the input,
// start and duration it reports, and with input null when it reports none.
// Kills observe.go:1045 (`ev.input == nil` → `!=`: the reported input
// replaced by null, a missing one left out) and :1043 (`DurationMs *
// float64(time.Millisecond)` → `/`: the duration lost).
func TestObserveMutReportedInput(t *testing.T) {
	e := startEngine(t)
	owner := obsDial(t, e)
	owner.announce("owner", true)
	owner.send(`{"type":"registerfunction","id":"ri::s"}`)
	owner.await("functionregistered", withID("ri::s"))
	w := obsDial(t, e)
	w.send(`{"type":"registerfunction","id":"ri::t"}`)
	w.send(`{"type":"observe","id":"ri","source":{"function_id":"ri::s","capture":["input"]},"target":{"function_id":"ri::t"}}`)
	w.await("observeresult", withID("ri"))
	obsAck(t, owner, w, "ri::s", "ri")
	for _, c := range []struct{ id, input, want string }{{"given", `,"input":{"x":1}`, `{"x":1}`}, {"none", ``, `null`}} {
		owner.send(`{"type":"invocationsobserved","items":[{"function_id":"ri::s","invocation_id":"` + c.id + `","matched":["ri"],"status":"success","started_at_ms":1700000000123,"duration_ms":12.5` + c.input + `}]}`)
		env, _ := w.await("invokefunction", invokeOf("ri::t"))["data"].(map[string]any)
		in, ok := env["input"]
		if env["invocation_id"] != c.id || !ok || jsonNum(in) != c.want {
			t.Fatalf("%s: envelope %v, want input %s", c.id, env, c.want)
		}
		if jsonNum(env["started_at_ms"]) != "1700000000123" || jsonNum(env["duration_ms"]) != "12.5" {
			t.Fatalf("%s: envelope %v, want started_at_ms 1700000000123 and duration_ms 12.5", c.id, env)
		}
	}
}

// An owner's obs.call names the target's namespace or none: the default
// namespace spelled out is the observer's default target, another
// namespace is TARGET_MISMATCH. Kills observe.go:1079:52 (`req.Namespace
// != ""` → `==`: another namespace accepted) and :1079:86
// (`orDefault(req.Namespace) != o.tgtNS` → `==`: "default" refused).
func TestObserveMutOwnerCallNamespace(t *testing.T) {
	e := startEngine(t)
	owner := obsDial(t, e)
	owner.announce("owner", true)
	owner.send(`{"type":"registerfunction","id":"on::s","observe":{"delivery":"owner"}}`)
	owner.await("functionregistered", withID("on::s"))
	w := obsDial(t, e)
	w.send(`{"type":"registerfunction","id":"on::t"}`)
	w.send(`{"type":"observe","id":"on","source":{"function_id":"on::s"},"target":{"function_id":"on::t"}}`)
	w.await("observeresult", withID("on"))
	obsAck(t, owner, w, "on::s", "on")
	owner.send(`{"type":"invokefunction","invocation_id":"other","function_id":"on::t","namespace":"other","data":{},"activation":{"observer_id":"on"}}`)
	if r := owner.await("invocationresult", func(m map[string]any) bool { return m["invocation_id"] == "other" }); obsErrCode(r) != "TARGET_MISMATCH" {
		t.Fatalf("obs.call into another namespace: %v", r)
	}
	owner.send(`{"type":"invokefunction","invocation_id":"dflt","function_id":"on::t","namespace":"default","data":{},"activation":{"observer_id":"on"}}`)
	w.answer(w.await("invokefunction", invokeOf("on::t")), `"ok"`)
	if r := owner.await("invocationresult", func(m map[string]any) bool { return m["invocation_id"] == "dflt" }); r["result"] != "ok" {
		t.Fatalf("obs.call naming the default namespace: %v", r)
	}
}

// An owner's obs.call past max_fires, while the observer is still active
// (its disposal runs on another goroutine), is refused OBSERVER_NOT_ACTIVE
// and gives back the max_in_flight slot it took. The race is set up by
// hand: the fire count is put at max_fires and ownerCall called directly.
// Kills observe.go:1098 (`release != nil` → `==`: the slot kept for ever
// with max_in_flight, a nil release called without), not reached by the
// wire tests.
func TestObserveMutOwnerCallPastMaxFires(t *testing.T) {
	e := startEngine(t)
	owner := obsDial(t, e)
	owner.announce("owner", true)
	owner.send(`{"type":"registerfunction","id":"pm::s","observe":{"delivery":"owner"}}`)
	owner.await("functionregistered", withID("pm::s"))
	w := obsDial(t, e)
	w.send(`{"type":"registerfunction","id":"pm::t"}`)
	for _, o := range []string{`"id":"slot","max_in_flight":1`, `"id":"free"`} {
		id := strings.Split(o, `"`)[3]
		w.send(`{"type":"observe",` + o + `,"source":{"function_id":"pm::s"},"target":{"function_id":"pm::t"},"max_fires":1}`)
		w.await("observeresult", withID(id))
		obsAck(t, owner, w, "pm::s", id)
	}
	e.mu.RLock()
	ow := e.conns[owner.id]
	e.mu.RUnlock()
	h := e.obs
	for _, id := range []string{"slot", "free"} {
		h.mu.Lock()
		o := h.byID[id]
		h.mu.Unlock()
		o.fires.Store(o.maxFires)
		req := &invocation.Request{FunctionID: "pm::t", Data: jsontext.Value(`{}`), Activation: jsontext.Value(`{"observer_id":"` + id + `"}`)}
		release, fail := h.ownerCall(ow, req)
		if fail == nil || fail.Code != "OBSERVER_NOT_ACTIVE" || release != nil {
			t.Fatalf("%s: past max_fires: %v", id, fail)
		}
		o.flight.Lock()
		running := o.flight.running
		o.flight.Unlock()
		if running != 0 {
			t.Fatalf("%s: %d max_in_flight slots held after the refusal", id, running)
		}
	}
}

// engine::observers::get names the observing worker and shows no dropped
// counts when nothing was dropped. Kills observe.go:1265 (`o.conn != nil`
// → `==`: worker_id left out), :1268 and :1271 (`n > 0` → `>= 0`: dropped
// LOOP_GUARD 0 and OVERFLOW 0 shown).
func TestObserveMutViewWorkerAndNoDrops(t *testing.T) {
	e := startEngine(t)
	w := obsDial(t, e)
	w.send(`{"type":"registerfunction","id":"vw::s"}`)
	w.send(`{"type":"registerfunction","id":"vw::t"}`)
	w.send(`{"type":"observe","id":"vw","source":{"function_id":"vw::s"},"target":{"function_id":"vw::t"},"max_in_flight":1}`)
	if r := w.await("observeresult", withID("vw")); r["state"] != "active" {
		t.Fatalf("%v", r)
	}
	v, _ := w.obsGet("vw")["result"].(map[string]any)["observer"].(map[string]any)
	if _, dropped := v["dropped"]; v["worker_id"] != w.id || dropped {
		t.Fatalf("observer %v: want worker_id %s and no dropped", v, w.id)
	}
}

// A function registered again without registerfunction.observe loses the
// descriptor it had (here allow: false). Kills observe.go:1224 (`old ==
// nil` → `!=`: the old descriptor kept).
func TestObserveMutDescriptorDropped(t *testing.T) {
	e := startEngine(t)
	owner := obsDial(t, e)
	owner.send(`{"type":"registerfunction","id":"dd::s","observe":{"allow":false}}`)
	owner.send(`{"type":"registerfunction","id":"dd::t"}`)
	owner.noFrame("observeresult")
	w := obsDial(t, e)
	w.send(`{"type":"observe","id":"closed","source":{"function_id":"dd::s"},"target":{"function_id":"dd::t"}}`)
	if r := w.await("observeresult", withID("closed")); obsErrCode(r) != "NOT_OBSERVABLE" {
		t.Fatalf("allow false: %v", r)
	}
	owner.send(`{"type":"registerfunction","id":"dd::s"}`)
	owner.noFrame("observeresult") // registered again before the next observe
	w.send(`{"type":"observe","id":"open","source":{"function_id":"dd::s"},"target":{"function_id":"dd::t"}}`)
	if r := w.await("observeresult", withID("open")); r["state"] != "active" {
		t.Fatalf("after registering again without observe: %v", r)
	}
}

// stampCaller writes a JSON object whatever it is given: no identity (a
// comma only between members), a parent with no string member left out.
// Kills observe.go:1134 and :1152 (`len(dst) > 1` → `>= 1`: `{,` with no
// identity) and :1151:82 (`len(p) > 0` → `>= 0`: `"parent":{}`). The engine
// always has an identity (conn.go sets it at connect), so :1134 and :1152
// only show here.
func TestObserveMutStampCaller(t *testing.T) {
	for _, c := range []struct{ ident, asserted, want string }{
		{``, `{"function_id":"f","invocation_id":"i"}`, `{"function_id":"f","invocation_id":"i"}`},
		{``, `{"parent":{"function_id":"p"}}`, `{"parent":{"function_id":"p"}}`},
		{`"worker_id":"w"`, `{"function_id":"f","parent":{"n":5,"parent":"x"}}`, `{"worker_id":"w","function_id":"f"}`},
		{`"worker_id":"w"`, `{"parent":{"function_id":"p","n":5}}`, `{"worker_id":"w","parent":{"function_id":"p"}}`},
	} {
		var ident []byte
		if c.ident != "" {
			ident = []byte(c.ident)
		}
		if got := string(stampCaller(nil, ident, jsontext.Value(c.asserted))); got != c.want {
			t.Errorf("stampCaller(%s, %s) = %s, want %s", c.ident, c.asserted, got, c.want)
		}
	}
}

// An observer whose worker came back and left again is disposed no sooner
// than observe.reconnect_grace (less its tenth of slack) after the last
// departure: the timer of the first departure, firing meanwhile, leaves it.
// Kills observe.go:762:73 (`grace-grace/10` → `grace-grace*10`: the first
// departure's timer disposed it 1.4 s after the second departure, grace 2 s).
// The gap between the departures is a deliberate wait (time passing is what
// is tested); the check is a lower bound, which timers cannot break by
// firing late.
func TestObserveMutGraceRestartsOnReturn(t *testing.T) {
	const grace = 2 * time.Second
	e := startEngine(t, func(c *Config) { c.Observe.ReconnectGrace = grace })
	owner := obsDial(t, e)
	owner.announce("owner", true)
	owner.send(`{"type":"registerfunction","id":"gr::s"}`)
	owner.await("functionregistered", withID("gr::s"))
	const observe = `{"type":"observe","id":"gr","source":{"function_id":"gr::s"},"target":{"function_id":"gr::t"}}`
	w := obsDial(t, e)
	w.send(`{"type":"registerfunction","id":"gr::t"}`)
	w.send(observe)
	w.await("observeresult", withID("gr"))
	obsAck(t, owner, w, "gr::s", "gr")
	left := time.Now()
	w.ws.Close()
	time.Sleep(grace * 3 / 10)
	w2 := obsDial(t, e)
	w2.send(`{"type":"reattach","previous_worker_id":"` + w.id + `","reattach_token":"` + w.tok + `"}`)
	w2.send(`{"type":"registerfunction","id":"gr::t"}`)
	w2.send(observe)
	if r := w2.await("observeresult", withID("gr")); r["state"] != "active" || time.Since(left) > grace*8/10 {
		t.Skipf("the replay came too late to test the second departure on this machine (%v after the first): %v", time.Since(left), r)
	}
	left = time.Now()
	w2.ws.Close()
	owner.await("observerremoved", withID("gr"))
	if d := time.Since(left); d < grace*9/10 {
		t.Fatalf("disposed %v after the worker's last departure, reconnect_grace %v", d, grace)
	}
}
