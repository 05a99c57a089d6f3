package invocation

import (
	"context"
	"testing"

	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

// fakeRemote takes the requests it is given when take is set.
type fakeRemote struct {
	take bool
	got  []string
}

func (r *fakeRemote) Invoke(req *Request, done Completion) bool {
	r.got = append(r.got, req.FunctionID)
	if r.take && done != nil {
		done(Result{Err: &wire.ErrorBody{Code: "remote", Message: req.FunctionID}})
	}
	return r.take
}

// TestRemoteOnlyForMissingFunctions: Remote sees only functions this
// registry lacks; InvokeLocal never forwards (a call that came from
// another node is not sent on); a Remote that declines leaves
// function_not_found.
func TestRemoteOnlyForMissingFunctions(t *testing.T) {
	reg := registry.New()
	ex := &fakeExecutor{id: "w1"}
	if err := reg.RegisterFunction(&registry.Function{ID: "here", Owner: ex}); err != nil {
		t.Fatal(err)
	}
	l := NewLocal(context.Background(), reg)
	r := &fakeRemote{take: true}
	l.SetRemote(r)
	var res Result
	done := func(x Result) { res = x }

	l.Invoke(&Request{FunctionID: "here"}, done)
	if len(r.got) != 0 || len(ex.requests()) != 1 {
		t.Fatalf("a local function went remote: %v", r.got)
	}
	l.Invoke(&Request{FunctionID: "elsewhere"}, done)
	if len(r.got) != 1 || res.Err == nil || res.Err.Code != "remote" {
		t.Fatalf("missing function: remote saw %v, result %+v", r.got, res.Err)
	}
	l.InvokeLocal(&Request{FunctionID: "elsewhere"}, done)
	if len(r.got) != 1 || res.Err == nil || res.Err.Code != wire.CodeFunctionNotFound {
		t.Fatalf("InvokeLocal: remote saw %v, result %+v", r.got, res.Err)
	}
	r.take = false
	l.Invoke(&Request{FunctionID: "elsewhere"}, done)
	if res.Err == nil || res.Err.Code != wire.CodeFunctionNotFound {
		t.Fatalf("declined by remote: %+v, want function_not_found", res.Err)
	}
}
