package invocation

import (
	"context"
	"testing"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

type passWatcher struct{ seen []*Request }

func (w *passWatcher) Watch(req *Request, done Completion) Completion {
	w.seen = append(w.seen, req)
	return done
}

// InvokeHeld says req is free again only when an Executor got it and
// nothing else may still read it; a request reused after that changes
// nothing for the call already made.
func TestInvokeHeld(t *testing.T) {
	l, reg, ee := newLocal(t)
	ex := &fakeExecutor{id: "w1"}
	x := fakeExternal{runs: make(chan *Request, 4)}
	ee.Add("engine::b", func(context.Context, *Request) (jsontext.Value, *wire.ErrorBody) { return jsontext.Value(`1`), nil }, false)
	for _, f := range []*registry.Function{{ID: "w", Owner: ex}, {ID: "ext", Owner: ex, External: x}, {ID: "engine::b", Owner: ee}} {
		if err := reg.RegisterFunction(f); err != nil {
			t.Fatal(err)
		}
	}
	var results []Result
	done := func(r Result) { results = append(results, r) }

	req := &Request{InvocationID: "a", FunctionID: "w", Data: jsontext.Value(`{"n":1}`)}
	if l.InvokeHeld(req, done) {
		t.Fatal("a worker's invocation reported held")
	}
	*req = Request{InvocationID: "b", FunctionID: "w", Data: jsontext.Value(`{"n":2}`)} // reused at once
	if l.InvokeHeld(req, done) {
		t.Fatal("second worker invocation reported held")
	}
	if l.InvokeHeld(&Request{FunctionID: "w", Void: true}, nil) {
		t.Fatal("a void worker invocation reported held")
	}
	got := ex.requests()
	if len(got) != 3 || got[0].InvocationID != "a" || string(got[0].Data) != `{"n":1}` || got[1].InvocationID != "b" {
		t.Fatalf("delivered %+v", got)
	}
	l.Pending().Complete("a", "w1", Result{Value: jsontext.Value(`"A"`)})
	if len(results) != 1 || string(results[0].Value) != `"A"` {
		t.Fatalf("results %+v", results)
	}

	nop := func(Result) {} // answered on other goroutines from here on
	for name, r := range map[string]*Request{"external": {FunctionID: "ext"}, "builtin": {FunctionID: "engine::b"}} {
		if !l.InvokeHeld(r, nop) {
			t.Errorf("%s invocation not reported held", name)
		}
	}
	<-x.runs
	rem := &fakeRemote{take: true}
	l.SetRemote(rem)
	if !l.InvokeHeld(&Request{FunctionID: "elsewhere"}, nop) {
		t.Error("an invocation another engine took not reported held")
	}
	w := &passWatcher{}
	l.SetWatcher(w)
	if !l.InvokeHeld(&Request{InvocationID: "c", FunctionID: "w"}, nop) || len(w.seen) != 1 {
		t.Error("a watched invocation not reported held")
	}
}
