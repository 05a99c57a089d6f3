package invocation

import (
	"context"
	"testing"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

// fakeExternal answers with the request's data, from another goroutine.
type fakeExternal struct{ runs chan *Request }

func (f fakeExternal) Run(_ context.Context, req *Request, done func(jsontext.Value, *wire.ErrorBody)) {
	f.runs <- req
	if done != nil {
		go done(req.Data, nil)
	}
}

// TestInvokeExternal: a function with External set is run by it, not
// delivered to its owner; a void call gets no completion.
func TestInvokeExternal(t *testing.T) {
	l, reg, _ := newLocal(t)
	owner := &fakeExecutor{id: "w1"}
	x := fakeExternal{runs: make(chan *Request, 2)}
	if err := reg.RegisterFunction(&registry.Function{ID: "ext", Owner: owner, External: x}); err != nil {
		t.Fatal(err)
	}
	got := make(chan Result, 1)
	l.Invoke(&Request{FunctionID: "ext", Data: jsontext.Value(`{"a":1}`), Traceparent: "tp"}, func(r Result) { got <- r })
	if req := <-x.runs; req.InvocationID == "" {
		t.Fatal("external run without an invocation id")
	}
	if r := <-got; r.Err != nil || string(r.Value) != `{"a":1}` || r.Traceparent != "tp" {
		t.Fatalf("result %+v", r)
	}
	l.Invoke(&Request{FunctionID: "ext", Void: true}, nil)
	<-x.runs
	if n := len(owner.requests()); n != 0 {
		t.Fatalf("the owner got %d deliveries", n)
	}
}
