package invocation

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/uuid"

	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

// fakeExecutor is a worker connection: it records what is delivered to it
// and fails delivery with err when set.
type fakeExecutor struct {
	id  string
	err error

	mu        sync.Mutex
	delivered []Request
}

func (f *fakeExecutor) OwnerID() string { return f.id }

func (f *fakeExecutor) Deliver(req *Request) error {
	f.mu.Lock()
	f.delivered = append(f.delivered, *req)
	f.mu.Unlock()
	return f.err
}

func (f *fakeExecutor) requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Request(nil), f.delivered...)
}

// plainOwner owns a function but cannot execute it.
type plainOwner struct{}

func (plainOwner) OwnerID() string { return "plain" }

// recorder is a Completion that records every call.
type recorder struct {
	mu      sync.Mutex
	results []Result
	ch      chan Result
}

func newRecorder() *recorder { return &recorder{ch: make(chan Result, 64)} }

func (r *recorder) done(res Result) {
	r.mu.Lock()
	r.results = append(r.results, res)
	r.mu.Unlock()
	r.ch <- res
}

func (r *recorder) calls() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Result(nil), r.results...)
}

// wait returns the next result; the timeout only guards against a hang.
func (r *recorder) wait(t *testing.T) Result {
	t.Helper()
	select {
	case res := <-r.ch:
		return res
	case <-time.After(10 * time.Second):
		t.Fatal("completion never called")
		return Result{}
	}
}

// only asserts that done was called exactly once so far and returns that call.
func (r *recorder) only(t *testing.T) Result {
	t.Helper()
	calls := r.calls()
	if len(calls) != 1 {
		t.Fatalf("completion called %d times, want once", len(calls))
	}
	return calls[0]
}

func errCode(res Result) string {
	if res.Err == nil {
		return ""
	}
	return res.Err.Code
}

func newTable() *Table {
	t := &Table{}
	t.init()
	return t
}

func isUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil
}

// --- Table ---

func TestTableAddIDs(t *testing.T) {
	tests := []struct {
		name     string
		existing string // already pending, "" for none
		id       string
		wantKept bool
	}{
		{name: "empty id gets a fresh one", id: ""},
		{name: "free id is kept", id: "inv-1", wantKept: true},
		{name: "taken id gets a fresh one", existing: "inv-1", id: "inv-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTable()
			first := newRecorder()
			if tc.existing != "" {
				tb.Add(tc.existing, "w0", first.done)
			}
			got := tb.Add(tc.id, "w1", newRecorder().done)
			if tc.wantKept {
				if got != tc.id {
					t.Errorf("Add(%q) = %q, want the id kept", tc.id, got)
				}
			} else if got == tc.id || !isUUID(got) {
				t.Errorf("Add(%q) = %q, want a fresh UUID", tc.id, got)
			}
			if tc.existing != "" {
				// The earlier invocation is still owed by its own executor.
				if !tb.Complete(tc.existing, "w0", Result{Value: jsontext.Value(`1`)}) {
					t.Error("the earlier invocation under the taken id was lost")
				}
				first.only(t)
			}
			if !tb.Complete(got, "w1", Result{}) {
				t.Errorf("invocation %q not pending under w1", got)
			}
		})
	}
}

func TestTableFreshIDsAreDistinct(t *testing.T) {
	tb := newTable()
	seen := map[string]bool{}
	for range 100 {
		id := tb.Add("", "w", func(Result) {})
		if seen[id] {
			t.Fatalf("id %q handed out twice", id)
		}
		seen[id] = true
	}
	if tb.Len() != 100 || tb.CountFor("w") != 100 {
		t.Errorf("Len = %d, CountFor = %d, want 100", tb.Len(), tb.CountFor("w"))
	}
}

func TestTableComplete(t *testing.T) {
	tests := []struct {
		name     string
		id       string
		executor string
		want     bool
	}{
		{name: "executor that owes it", id: "inv", executor: "w1", want: true},
		{name: "another executor", id: "inv", executor: "w2", want: false},
		{name: "the engine", id: "inv", executor: "", want: false},
		{name: "unknown id", id: "other", executor: "w1", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTable()
			rec := newRecorder()
			tb.Add("inv", "w1", rec.done)
			res := Result{Value: jsontext.Value(`{"ok":true}`), Traceparent: "tp"}
			if got := tb.Complete(tc.id, tc.executor, res); got != tc.want {
				t.Errorf("Complete(%q, %q) = %v, want %v", tc.id, tc.executor, got, tc.want)
			}
			if !tc.want {
				if n := len(rec.calls()); n != 0 {
					t.Errorf("completion called %d times by a refused Complete", n)
				}
				if tb.CountFor("w1") != 1 || tb.Len() != 1 {
					t.Errorf("refused Complete changed the table: CountFor(w1) = %d, Len = %d", tb.CountFor("w1"), tb.Len())
				}
				return
			}
			got := rec.only(t)
			if string(got.Value) != `{"ok":true}` || got.Traceparent != "tp" || got.Err != nil {
				t.Errorf("completion got %+v, want the result passed to Complete", got)
			}
			if tb.CountFor("w1") != 0 || tb.Len() != 0 {
				t.Errorf("after Complete: CountFor(w1) = %d, Len = %d; want 0", tb.CountFor("w1"), tb.Len())
			}
			// Exactly once: a second result for the same id is refused.
			if tb.Complete("inv", "w1", res) {
				t.Error("second Complete of the same invocation = true")
			}
			rec.only(t)
		})
	}
}

func TestTableHaltExecutor(t *testing.T) {
	tb := newTable()
	a, b := newRecorder(), newRecorder()
	var aIDs []string
	for range 3 {
		aIDs = append(aIDs, tb.Add("", "a", a.done))
	}
	bID := tb.Add("", "b", b.done)
	if tb.CountFor("a") != 3 || tb.CountFor("b") != 1 || tb.CountFor("c") != 0 || tb.Len() != 4 {
		t.Fatalf("CountFor a/b/c = %d/%d/%d, Len = %d; want 3/1/0, 4", tb.CountFor("a"), tb.CountFor("b"), tb.CountFor("c"), tb.Len())
	}
	// One of a's invocations is answered before a goes away.
	if !tb.Complete(aIDs[0], "a", Result{Value: jsontext.Value(`1`)}) {
		t.Fatal("Complete before halt refused")
	}

	stopped := wire.ErrInvocationStopped()
	if n := tb.HaltExecutor("a", stopped); n != 2 {
		t.Errorf("HaltExecutor(a) = %d, want 2", n)
	}
	calls := a.calls()
	if len(calls) != 3 {
		t.Fatalf("a's completions called %d times, want 3 (one result, two halted)", len(calls))
	}
	for _, res := range calls[1:] {
		if res.Err != stopped || res.Value != nil {
			t.Errorf("halted invocation completed with %+v, want the halt error", res)
		}
	}
	for _, id := range aIDs {
		if tb.Complete(id, "a", Result{}) {
			t.Errorf("invocation %s completed after its executor was halted", id)
		}
	}
	if n := len(a.calls()); n != 3 {
		t.Errorf("a's completions called %d times after late results, want 3", n)
	}
	if tb.CountFor("a") != 0 || tb.Len() != 1 {
		t.Errorf("after halt: CountFor(a) = %d, Len = %d; want 0, 1", tb.CountFor("a"), tb.Len())
	}
	if n := tb.HaltExecutor("a", stopped); n != 0 {
		t.Errorf("second HaltExecutor(a) = %d, want 0", n)
	}
	if n := tb.HaltExecutor("nobody", stopped); n != 0 {
		t.Errorf("HaltExecutor of an unknown executor = %d, want 0", n)
	}

	// b was not touched.
	if n := len(b.calls()); n != 0 {
		t.Errorf("b's completion called %d times by halting a", n)
	}
	if !tb.Complete(bID, "b", Result{}) {
		t.Error("b's invocation lost when a was halted")
	}
}

// Completions run outside the table's lock, so they may use the table (an
// engine completion that starts the next invocation does).
func TestTableCompletionMayReenter(t *testing.T) {
	tb := newTable()
	var seen []int
	reenter := func(Result) {
		seen = append(seen, tb.Len())
		tb.Add("", "next", func(Result) {})
	}
	id := tb.Add("", "w", reenter)
	tb.Add("", "w", reenter)
	tb.Complete(id, "w", Result{})
	tb.HaltExecutor("w", wire.ErrInvocationStopped())
	if len(seen) != 2 {
		t.Fatalf("completions ran %d times, want 2", len(seen))
	}
	if got := tb.CountFor("next"); got != 2 {
		t.Errorf("CountFor(next) = %d, want 2", got)
	}
}

// Results and a halt racing for the same invocations: each completion runs
// exactly once. Run with -race.
func TestTableCompleteRacesHalt(t *testing.T) {
	const n = 200
	tb := newTable()
	var mu sync.Mutex
	count := make(map[string]int)
	ids := make([]string, n)
	for i := range n {
		id := fmt.Sprintf("inv-%d", i)
		ids[i] = tb.Add(id, "w", func(Result) {
			mu.Lock()
			count[id]++
			mu.Unlock()
		})
	}
	var wg sync.WaitGroup
	completed := make([]bool, n)
	halted := 0
	wg.Go(func() {
		for i, id := range ids {
			completed[i] = tb.Complete(id, "w", Result{})
		}
	})
	wg.Go(func() { halted = tb.HaltExecutor("w", wire.ErrInvocationStopped()) })
	wg.Wait()

	nCompleted := 0
	for _, c := range completed {
		if c {
			nCompleted++
		}
	}
	if nCompleted+halted != n {
		t.Errorf("%d completed + %d halted, want %d in all", nCompleted, halted, n)
	}
	for _, id := range ids {
		if count[id] != 1 {
			t.Errorf("completion of %s ran %d times, want once", id, count[id])
		}
	}
	if tb.Len() != 0 {
		t.Errorf("Len = %d after all were answered", tb.Len())
	}
}

// --- Local.Invoke ---

type ctxKey struct{}

func newLocal(t *testing.T) (*Local, *registry.Registry, *EngineExecutor) {
	t.Helper()
	reg := registry.New()
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "engine-ctx"))
	t.Cleanup(cancel)
	ee := &EngineExecutor{}
	return NewLocal(ctx, reg), reg, ee
}

func TestInvokeFunctionNotFound(t *testing.T) {
	l, reg, ee := newLocal(t)
	// A function owned by the engine executor with no builtin behind it is
	// not found either.
	reg.RegisterFunction(&registry.Function{ID: "engine::ghost", Owner: ee})
	for _, id := range []string{"nope", "engine::ghost"} {
		t.Run(id, func(t *testing.T) {
			rec := newRecorder()
			l.Invoke(&Request{FunctionID: id}, rec.done)
			got := rec.only(t)
			if errCode(got) != wire.CodeFunctionNotFound || got.Value != nil {
				t.Errorf("sync invoke of %s = %+v, want %s", id, got, wire.CodeFunctionNotFound)
			}
			// Void: nothing to answer; a nil completion must not be called.
			l.Invoke(&Request{FunctionID: id, Void: true}, nil)
		})
	}
}

func TestInvokeNotInvokable(t *testing.T) {
	tests := []struct {
		name  string
		owner registry.Owner
	}{
		{name: "owner that is not an executor", owner: plainOwner{}},
		{name: "no owner", owner: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, reg, _ := newLocal(t)
			reg.RegisterFunction(&registry.Function{ID: "f", Owner: tc.owner})
			rec := newRecorder()
			l.Invoke(&Request{FunctionID: "f"}, rec.done)
			if got := rec.only(t); errCode(got) != wire.CodeFunctionNotInvokable {
				t.Errorf("invoke = %+v, want %s", got, wire.CodeFunctionNotInvokable)
			}
			l.Invoke(&Request{FunctionID: "f", Void: true}, nil)
			if l.Pending().Len() != 0 {
				t.Errorf("%d invocations pending", l.Pending().Len())
			}
		})
	}
}

func TestInvokeSyncBuiltinRunsInline(t *testing.T) {
	tests := []struct {
		name      string
		value     jsontext.Value
		err       *wire.ErrorBody
		wantValue string
		wantCode  string
	}{
		{name: "value", value: jsontext.Value(`{"n":1}`), wantValue: `{"n":1}`},
		{name: "error", err: &wire.ErrorBody{Code: "boom", Message: "no"}, wantCode: "boom"},
		{name: "no value", wantValue: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, reg, ee := newLocal(t)
			var gotReq *Request
			var gotCtx any
			ee.Add("engine::echo", func(ctx context.Context, req *Request) (jsontext.Value, *wire.ErrorBody) {
				gotReq, gotCtx = req, ctx.Value(ctxKey{})
				return tc.value, tc.err
			}, false)
			reg.RegisterFunction(&registry.Function{ID: "engine::echo", Owner: ee})

			rec := newRecorder()
			req := &Request{FunctionID: "engine::echo", Data: jsontext.Value(`"in"`), Traceparent: "tp", Baggage: "bg"}
			l.Invoke(req, rec.done)
			// Inline: the completion has run by the time Invoke returns.
			got := rec.only(t)
			if gotReq != req || gotCtx != "engine-ctx" {
				t.Errorf("builtin got request %p (want %p) and ctx value %v (want the Local's ctx)", gotReq, req, gotCtx)
			}
			if string(got.Value) != tc.wantValue || errCode(got) != tc.wantCode {
				t.Errorf("result = value %s, code %q; want %s, %q", got.Value, errCode(got), tc.wantValue, tc.wantCode)
			}
			if got.Traceparent != "tp" || got.Baggage != "bg" {
				t.Errorf("result trace context = %q/%q, want the request's tp/bg", got.Traceparent, got.Baggage)
			}
			if l.Pending().Len() != 0 {
				t.Error("a builtin invocation was recorded as pending")
			}
		})
	}
}

func TestInvokeVoidSyncBuiltin(t *testing.T) {
	l, reg, ee := newLocal(t)
	ran := 0
	ee.Add("engine::tick", func(context.Context, *Request) (jsontext.Value, *wire.ErrorBody) {
		ran++
		return jsontext.Value(`1`), nil
	}, false)
	reg.RegisterFunction(&registry.Function{ID: "engine::tick", Owner: ee})
	l.Invoke(&Request{FunctionID: "engine::tick", Void: true}, nil) // nil: must not be called
	if ran != 1 {
		t.Errorf("void builtin ran %d times, want 1", ran)
	}
}

func TestInvokeAsyncBuiltinRunsOnItsOwnGoroutine(t *testing.T) {
	l, reg, ee := newLocal(t)
	release := make(chan struct{})
	started := make(chan *Request, 1)
	ee.Add("engine::slow", func(ctx context.Context, req *Request) (jsontext.Value, *wire.ErrorBody) {
		started <- req
		<-release
		if ctx.Value(ctxKey{}) != "engine-ctx" {
			return nil, &wire.ErrorBody{Code: "wrong_ctx"}
		}
		return jsontext.Value(`"done"`), nil
	}, true)
	reg.RegisterFunction(&registry.Function{ID: "engine::slow", Owner: ee})

	rec := newRecorder()
	returned := make(chan struct{})
	go func() {
		l.Invoke(&Request{FunctionID: "engine::slow", Traceparent: "tp"}, rec.done)
		close(returned)
	}()
	// Invoke returns while the builtin is still blocked.
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("Invoke blocked until the async builtin finished")
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("async builtin never started")
	}
	if n := len(rec.calls()); n != 0 {
		t.Fatalf("completion called %d times before the builtin finished", n)
	}
	close(release)
	got := rec.wait(t)
	if string(got.Value) != `"done"` || got.Err != nil || got.Traceparent != "tp" || got.Batch != nil {
		t.Errorf("async result = %+v", got)
	}

	// Void async: the builtin runs, nobody is answered.
	voidRan := make(chan struct{})
	ee.Add("engine::bg", func(context.Context, *Request) (jsontext.Value, *wire.ErrorBody) {
		close(voidRan)
		return nil, nil
	}, true)
	reg.RegisterFunction(&registry.Function{ID: "engine::bg", Owner: ee})
	l.Invoke(&Request{FunctionID: "engine::bg", Void: true}, nil)
	select {
	case <-voidRan:
	case <-time.After(10 * time.Second):
		t.Fatal("void async builtin never ran")
	}
}

func TestInvokeWorker(t *testing.T) {
	tests := []struct {
		name     string
		id       string // InvocationID given by the caller
		taken    bool   // id already pending
		wantKept bool
	}{
		{name: "id filled in", id: ""},
		{name: "caller's id kept", id: "inv-7", wantKept: true},
		{name: "taken id replaced", id: "inv-7", taken: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, reg, _ := newLocal(t)
			w := &fakeExecutor{id: "w1"}
			reg.RegisterFunction(&registry.Function{ID: "svc::f", Owner: w})
			if tc.taken {
				l.Pending().Add(tc.id, "w0", func(Result) {})
			}
			rec := newRecorder()
			req := &Request{InvocationID: tc.id, FunctionID: "svc::f", Data: jsontext.Value(`[1]`), CallerWorkerID: "caller"}
			l.Invoke(req, rec.done)

			got := w.requests()
			if len(got) != 1 {
				t.Fatalf("%d deliveries, want 1", len(got))
			}
			id := got[0].InvocationID
			if tc.wantKept && id != tc.id {
				t.Errorf("delivered invocation id %q, want %q", id, tc.id)
			}
			if !tc.wantKept && (id == tc.id || !isUUID(id)) {
				t.Errorf("delivered invocation id %q, want a fresh UUID", id)
			}
			if req.InvocationID != id || string(got[0].Data) != `[1]` || got[0].CallerWorkerID != "caller" {
				t.Errorf("delivered %+v; request id %q", got[0], req.InvocationID)
			}
			if n := len(rec.calls()); n != 0 {
				t.Fatalf("completion called %d times before the worker answered", n)
			}
			if l.Pending().CountFor("w1") != 1 {
				t.Fatalf("CountFor(w1) = %d, want 1", l.Pending().CountFor("w1"))
			}
			// Only the executor that was asked may answer.
			if l.Pending().Complete(id, "w2", Result{Value: jsontext.Value(`"forged"`)}) {
				t.Error("another executor completed the invocation")
			}
			if !l.Pending().Complete(id, "w1", Result{Value: jsontext.Value(`"ok"`)}) {
				t.Fatal("the executor's result was refused")
			}
			if res := rec.only(t); string(res.Value) != `"ok"` {
				t.Errorf("result = %+v, want the worker's", res)
			}
		})
	}
}

func TestInvokeWorkerDeliverFails(t *testing.T) {
	l, reg, _ := newLocal(t)
	w := &fakeExecutor{id: "w1", err: errors.New("socket closed")}
	reg.RegisterFunction(&registry.Function{ID: "svc::f", Owner: w})

	rec := newRecorder()
	l.Invoke(&Request{FunctionID: "svc::f"}, rec.done)
	if got := rec.only(t); errCode(got) != wire.CodeInvocationStopped {
		t.Errorf("result = %+v, want %s", got, wire.CodeInvocationStopped)
	}
	if l.Pending().Len() != 0 {
		t.Errorf("%d invocations pending after a failed delivery", l.Pending().Len())
	}
	// Void: the failure is nobody's business.
	l.Invoke(&Request{FunctionID: "svc::f", Void: true}, nil)
	if n := len(w.requests()); n != 2 {
		t.Errorf("%d delivery attempts, want 2", n)
	}
}

func TestInvokeWorkerVoid(t *testing.T) {
	for _, given := range []string{"", "caller-chose"} {
		t.Run(fmt.Sprintf("id %q", given), func(t *testing.T) {
			l, reg, _ := newLocal(t)
			w := &fakeExecutor{id: "w1"}
			reg.RegisterFunction(&registry.Function{ID: "svc::f", Owner: w})
			l.Invoke(&Request{InvocationID: given, FunctionID: "svc::f", Void: true}, nil)
			got := w.requests()
			if len(got) != 1 || !got[0].Void {
				t.Fatalf("deliveries = %+v, want one void request", got)
			}
			if given != "" && got[0].InvocationID != given {
				t.Errorf("invocation id %q, want %q kept", got[0].InvocationID, given)
			}
			if given == "" && !isUUID(got[0].InvocationID) {
				t.Errorf("invocation id %q, want a fresh UUID", got[0].InvocationID)
			}
			if l.Pending().Len() != 0 {
				t.Errorf("a void invocation is pending")
			}
		})
	}
}

func TestInvokeWorkerHalted(t *testing.T) {
	l, reg, _ := newLocal(t)
	w1, w2 := &fakeExecutor{id: "w1"}, &fakeExecutor{id: "w2"}
	reg.RegisterFunction(&registry.Function{ID: "a", Owner: w1})
	reg.RegisterFunction(&registry.Function{ID: "b", Owner: w2})
	r1, r2 := newRecorder(), newRecorder()
	l.Invoke(&Request{FunctionID: "a"}, r1.done)
	l.Invoke(&Request{FunctionID: "a"}, r1.done)
	l.Invoke(&Request{FunctionID: "b"}, r2.done)

	if n := l.Pending().HaltExecutor("w1", wire.ErrInvocationStopped()); n != 2 {
		t.Errorf("HaltExecutor(w1) = %d, want 2", n)
	}
	calls := r1.calls()
	if len(calls) != 2 {
		t.Fatalf("w1's callers answered %d times, want 2", len(calls))
	}
	for _, res := range calls {
		if errCode(res) != wire.CodeInvocationStopped {
			t.Errorf("halted result = %+v", res)
		}
	}
	if len(r2.calls()) != 0 || l.Pending().CountFor("w2") != 1 {
		t.Error("halting w1 touched w2's invocation")
	}
}

// A builtin registered under an id takes over any earlier builtin of the
// same id.
func TestEngineExecutorAddReplaces(t *testing.T) {
	l, reg, ee := newLocal(t)
	for _, v := range []string{`1`, `2`} {
		ee.Add("engine::v", func(context.Context, *Request) (jsontext.Value, *wire.ErrorBody) {
			return jsontext.Value(v), nil
		}, false)
	}
	reg.RegisterFunction(&registry.Function{ID: "engine::v", Owner: ee})
	rec := newRecorder()
	l.Invoke(&Request{FunctionID: "engine::v"}, rec.done)
	if got := rec.only(t); string(got.Value) != `2` {
		t.Errorf("value = %s, want the later builtin's", got.Value)
	}
	if ee.OwnerID() != "" {
		t.Errorf("engine OwnerID = %q, want empty", ee.OwnerID())
	}
}

func TestNewID(t *testing.T) {
	a, b := NewID(), NewID()
	if a == b {
		t.Error("NewID returned the same id twice")
	}
	for _, id := range []string{a, b} {
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 4 {
			t.Errorf("NewID() = %q: not a UUIDv4 (%v)", id, err)
		}
	}
}

func TestZeroTableUsable(t *testing.T) {
	var tb Table
	got := make(chan Result, 1)
	id := tb.Add("", "w", func(r Result) { got <- r })
	if !tb.Complete(id, "w", Result{Value: []byte("1")}) {
		t.Fatal("Complete on a zero Table failed")
	}
	if r := <-got; string(r.Value) != "1" {
		t.Fatalf("result %+v", r)
	}
}

// A deferred builtin answers through its callback, routed (the result
// carries no write batch: it may come from another goroutine) or called
// directly (Call, which waits for the answer); Call reports an id that is
// no builtin.
func TestEngineExecutorDeferredAndCall(t *testing.T) {
	l, reg, ee := newLocal(t)
	answers := make(chan func(jsontext.Value, *wire.ErrorBody), 1)
	ee.AddDeferred("engine::later", func(_ context.Context, _ *Request, done func(jsontext.Value, *wire.ErrorBody)) {
		answers <- done
	})
	ee.Add("engine::now", func(context.Context, *Request) (jsontext.Value, *wire.ErrorBody) {
		return jsontext.Value(`"now"`), nil
	}, false)
	reg.RegisterFunction(&registry.Function{ID: "engine::later", Owner: ee})

	rec := newRecorder()
	l.Invoke(&Request{FunctionID: "engine::later", Traceparent: "tp", Batch: testBatch{}}, rec.done)
	if n := len(rec.calls()); n != 0 {
		t.Fatalf("answered %d times before the builtin did", n)
	}
	done := <-answers
	go done(jsontext.Value(`"later"`), nil)
	if got := rec.wait(t); string(got.Value) != `"later"` || got.Traceparent != "tp" || got.Batch != nil {
		t.Errorf("deferred result = %+v", got)
	}

	go func() { (<-answers)(nil, &wire.ErrorBody{Code: "nope"}) }()
	if v, err, ok := ee.Call(context.Background(), &Request{FunctionID: "engine::later"}); !ok || v != nil || err == nil || err.Code != "nope" {
		t.Errorf("Call of a deferred builtin = %s, %+v, %v", v, err, ok)
	}
	if v, err, ok := ee.Call(context.Background(), &Request{FunctionID: "engine::now"}); !ok || string(v) != `"now"` || err != nil {
		t.Errorf("Call = %s, %+v, %v", v, err, ok)
	}
	if _, _, ok := ee.Call(context.Background(), &Request{FunctionID: "engine::none"}); ok {
		t.Error("Call of an unknown id reported a builtin")
	}
}

// testBatch is a write batch that must not reach a deferred answer.
type testBatch struct{}

func (testBatch) Flush() {}

// A map stores values of up to 128 bytes in place; a bigger pending entry
// would cost an allocation per invocation.
func TestPendingEntryFitsInMap(t *testing.T) {
	if n := unsafe.Sizeof(entry{}); n > 128 {
		t.Fatalf("pending entry is %d bytes, over 128", n)
	}
}

// HaltExecutor answers exactly the halted executor's invocations; the
// others' stay pending, counted, and complete as usual.
func TestTableHaltExecutorOnlyItsOwn(t *testing.T) {
	tb := newTable()
	halted := map[string]string{} // id -> error code it got
	for i := range 6 {
		ex := "a"
		if i%2 == 1 {
			ex = "b"
		}
		id := fmt.Sprintf("%s-%d", ex, i)
		tb.Add(id, ex, func(r Result) {
			code := ""
			if r.Err != nil {
				code = r.Err.Code
			}
			halted[id] = code
		})
	}
	if n := tb.HaltExecutor("a", wire.ErrInvocationStopped()); n != 3 {
		t.Fatalf("HaltExecutor(a) = %d, want 3", n)
	}
	for _, id := range []string{"a-0", "a-2", "a-4"} {
		if halted[id] != wire.CodeInvocationStopped {
			t.Errorf("%s answered %q, want %s", id, halted[id], wire.CodeInvocationStopped)
		}
	}
	if len(halted) != 3 || tb.Len() != 3 || tb.CountFor("a") != 0 || tb.CountFor("b") != 3 {
		t.Fatalf("after halting a: %d answered, Len %d, CountFor a %d b %d; want 3, 3, 0, 3", len(halted), tb.Len(), tb.CountFor("a"), tb.CountFor("b"))
	}
	if tb.HaltExecutor("a", wire.ErrInvocationStopped()) != 0 {
		t.Error("a second HaltExecutor(a) halted something")
	}
	if !tb.Complete("b-1", "b", Result{Value: jsontext.Value(`1`)}) || halted["b-1"] != "" {
		t.Errorf("b-1 did not complete normally: %q", halted["b-1"])
	}
	if tb.CountFor("b") != 2 || tb.Len() != 2 {
		t.Errorf("after completing b-1: CountFor b %d, Len %d; want 2, 2", tb.CountFor("b"), tb.Len())
	}
}
