package engine

import (
	"strings"
	"testing"

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
