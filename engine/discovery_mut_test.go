package engine

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/wire"
)

// engine::functions::info takes exactly one of function_id and
// function_ids, and at most 32 ids; a batch answers each id (not_found
// for an unknown one).
// Mutations: the argument checks of functionsInfo (negated, > → >=),
// which gremlins reports not covered: its coverage does not count the
// case expressions of a switch without a tag.
func TestFunctionsInfoArguments(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"d::f"}`)
	waitFunction(t, w, "d::f")
	ids := func(n int) string {
		l := make([]string, n)
		for i := range l {
			l[i] = `"d::f"`
		}
		l[n-1] = `"d::missing"`
		return "[" + strings.Join(l, ",") + "]"
	}
	for i, c := range []struct{ in, code, has string }{
		{`{}`, wire.CodeInvalidArguments, ""},
		{`{"function_id":"d::f","function_ids":["d::f"]}`, wire.CodeInvalidArguments, ""},
		{`{"function_ids":` + ids(33) + `}`, wire.CodeInvalidArguments, ""},
		{`{"function_id":"d::f"}`, "", `"function_id":"d::f"`},
		{`{"function_ids":` + ids(32) + `}`, "", `{"function_id":"d::missing","error":"not_found"}`},
	} {
		m := w.call("i"+itoa(int64(i)), wire.FnFunctionsInfo, c.in)
		switch {
		case c.code != "" && (m.Error == nil || m.Error.Code != c.code):
			t.Errorf("%.60s: %+v, want %s", c.in, m.Error, c.code)
		case c.code == "" && (m.Error != nil || !strings.Contains(string(m.Result), c.has)):
			t.Errorf("%.60s: %+v %.200s, want %s", c.in, m.Error, m.Result, c.has)
		}
	}
}

// engine::workers::list's runtime filter keeps the workers of that
// runtime only, and its search the workers whose name contains it.
// Mutations: the runtime comparison and the name test of the search
// negated (discovery.go workersList).
func TestWorkersListRuntimeFilter(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	w.announce("rt-worker") // runtime "test"
	for i, c := range []struct{ in, has, hasNot string }{
		{`{"runtime":"test"}`, `"rt-worker"`, `"runtime":"engine"`},
		{`{"runtime":"engine"}`, `"runtime":"engine"`, `"rt-worker"`},
		{`{"search":"RT-W"}`, `"rt-worker"`, `"runtime":"engine"`},
	} {
		m := w.callSkipping("l-"+itoa(int64(i)), wire.FnWorkersList, c.in)
		if m.Error != nil || !strings.Contains(string(m.Result), c.has) || strings.Contains(string(m.Result), c.hasNot) {
			t.Errorf("%s: %+v %s", c.in, m.Error, m.Result)
		}
	}
}

// discoveryPair connects two announced workers, alpha and beta, each with
// a function, a trigger type and a binding of its function.
func discoveryPair(t *testing.T, e *Engine) (a, b *rawWorker) {
	t.Helper()
	a, b = dialRaw(t, e), dialRaw(t, e)
	for _, c := range []struct {
		w    *rawWorker
		name string
	}{{a, "alpha"}, {b, "beta"}} {
		c.w.announce(c.name)
		c.w.sendJSON(`{"type":"registerfunction","id":"` + c.name + `::one"}`)
		c.w.sendJSON(`{"type":"registerfunction","id":"` + c.name + `::two"}`)
		c.w.sendJSON(`{"type":"registertriggertype","id":"` + c.name + `-feed","description":"feed"}`)
		for _, fn := range []string{"one", "two"} {
			c.w.sendJSON(`{"type":"registertrigger","id":"t-` + c.name + `-` + fn + `","trigger_type":"subscribe","function_id":"` + c.name + `::` + fn + `","config":{"topic":"nothing"}}`)
		}
	}
	waitFunction(t, a, "beta::two")
	waitFunction(t, b, "alpha::two")
	return a, b
}

// resultIDs returns the sorted values of key in the objects of the array
// field of a call's result.
func resultIDs(t *testing.T, m wire.Message, field, key string) string {
	t.Helper()
	var out map[string]jsontext.Value
	mustResult(t, m, &out)
	var rows []map[string]any
	if err := json.Unmarshal(out[field], &rows); err != nil {
		t.Fatalf("%s: %v", field, err)
	}
	var ids []string
	for _, row := range rows {
		s, _ := row[key].(string)
		ids = append(ids, s)
	}
	slices.Sort(ids)
	return strings.Join(ids, ",")
}

// engine::workers::list's status filter keeps the rows of that status:
// "connected" workers, the engine's own row "available".
// Mutation: discovery.go:295 (`s.Status != in.Status` negated: a status
// filter listed every other row).
func TestWorkersListStatusFilter(t *testing.T) {
	e := startEngine(t)
	a, _ := discoveryPair(t, e)
	for _, c := range []struct{ in, want string }{
		{`{"status":"connected"}`, "alpha,beta"},
		{`{"status":"available"}`, engineWorkerName},
		{`{"status":"gone"}`, ""},
	} {
		if got := resultIDs(t, a.call("s"+c.in, wire.FnWorkersList, c.in), "workers", "name"); got != c.want {
			t.Errorf("workers::list %s = %q, want %q", c.in, got, c.want)
		}
	}
}

// engine::workers::info lists the functions, trigger types and bindings of
// that worker only.
// Mutations: discovery.go:378, :384, :390 (each owner test negated: it
// listed everyone else's).
func TestWorkersInfoListsOwnOnly(t *testing.T) {
	e := startEngine(t)
	a, _ := discoveryPair(t, e)
	m := a.call("wi", wire.FnWorkersInfo, `{"name":"alpha"}`)
	for _, c := range []struct{ field, key, want string }{
		{"functions", "function_id", "alpha::one,alpha::two"},
		{"trigger_types", "id", "alpha-feed"},
		{"registered_triggers", "id", "t-alpha-one,t-alpha-two"},
	} {
		if got := resultIDs(t, m, c.field, c.key); got != c.want {
			t.Errorf("workers::info alpha: %s = %q, want %q", c.field, got, c.want)
		}
	}
}

// engine::registered-triggers::list's filters on this node's bindings:
// function_id, worker and search.
// Mutations: discovery.go:532 (`t.FunctionID != in.FunctionID` negated),
// :536 (`r.WorkerName != in.Worker` negated), :539 (`search != ""`
// negated: the search filtered nothing).
func TestRegisteredTriggersListFilters(t *testing.T) {
	e := startEngine(t)
	a, _ := discoveryPair(t, e)
	for _, c := range []struct{ in, want string }{
		{`{"function_id":"alpha::one"}`, "t-alpha-one"},
		{`{"worker":"beta"}`, "t-beta-one,t-beta-two"},
		{`{"search":"T-ALPHA-T"}`, "t-alpha-two"},
		{`{"search":"beta::one"}`, "t-beta-one"},
	} {
		if got := resultIDs(t, a.call("r"+c.in, wire.FnRegisteredTriggersList, c.in), "registered_triggers", "id"); got != c.want {
			t.Errorf("registered-triggers::list %s = %q, want %q", c.in, got, c.want)
		}
	}
}

// engine::registered-triggers::list on another node lists a node's http
// routes with no trigger_type too, and filters them by function_id,
// worker and search.
// Mutations: discovery.go:544 (`in.TriggerType == ""` negated: without a
// type no remote route was listed), :547, :548 (the function and worker
// tests negated), :549 (`search != ""` negated).
func TestRegisteredTriggersListRemoteFilters(t *testing.T) {
	nodes := startNodes(t, 2)
	w := dialRaw(t, nodes[0])
	w.announce("router")
	for _, n := range []string{"hello", "bye"} {
		w.sendJSON(`{"type":"registerfunction","id":"web::` + n + `"}`)
		w.sendJSON(`{"type":"registertrigger","id":"r-` + n + `","trigger_type":"http","function_id":"web::` + n + `","config":{"api_path":"/` + n + `","http_method":"GET"}}`)
	}
	on1 := dialRaw(t, nodes[1])
	list := func(in string) string {
		return resultIDs(t, on1.callSkipping(invocationID(), wire.FnRegisteredTriggersList, in), "registered_triggers", "id")
	}
	deadline := time.Now().Add(10 * time.Second)
	for list(`{"trigger_type":"http"}`) != "r-bye,r-hello" {
		if time.Now().After(deadline) {
			t.Fatalf("node 1 lists the http routes %q, want node 0's two", list(`{"trigger_type":"http"}`))
		}
		time.Sleep(20 * time.Millisecond) // node 0's heartbeat has not arrived yet
	}
	for _, c := range []struct{ in, want string }{
		{`{}`, "r-bye,r-hello"},
		{`{"function_id":"web::hello"}`, "r-hello"},
		{`{"worker":"router"}`, "r-bye,r-hello"},
		{`{"worker":"nobody"}`, ""},
		{`{"search":"BYE"}`, "r-bye"},
	} {
		if got := list(c.in); got != c.want {
			t.Errorf("node 1's registered-triggers::list %s = %q, want %q", c.in, got, c.want)
		}
	}
}

// A trigger's config summary is cut to 80 runes plus an ellipsis only when
// longer than 80.
// Mutation: discovery.go:511 (`> 80` → `>= 80`: an 80-rune config got an
// ellipsis).
func TestConfigSummaryCut(t *testing.T) {
	str := func(n int) jsontext.Value { return jsontext.Value(`"` + strings.Repeat("é", n-2) + `"`) }
	if got := configSummary(str(80)); got != string(str(80)) {
		t.Errorf("80 runes: %q", got)
	}
	if got, want := configSummary(str(81)), string(str(81))[:len(str(81))-1]+"…"; got != want {
		t.Errorf("81 runes: %q, want %q", got, want)
	}
	if got := configSummary(jsontext.Value("{ \"a\" : 1 }")); got != `{"a":1}` {
		t.Errorf("compacted: %q", got)
	}
}
