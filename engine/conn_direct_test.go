package engine

import (
	"testing"

	"github.com/sluicehq/sluice/internal/invocation"
)

// holdWatcher wraps the completion of calls to fn: it records the bytes
// held for the caller right after the result was handed on, then waits
// for release (as observers run after the result, observe.go's Watch).
type holdWatcher struct {
	fn      string
	caller  func() *workerConn
	held    chan int
	release chan struct{}
}

func (h *holdWatcher) Watch(req *invocation.Request, done invocation.Completion) invocation.Completion {
	if req.FunctionID != h.fn || done == nil {
		return done
	}
	return func(res invocation.Result) {
		done(res)
		h.held <- h.caller().conn.Pending()
		<-h.release
	}
}

// While anything is observed, a caller's result is not written inline
// (Batch.SetDirect) but held until the completion chain that produced it
// has ended: observers run after the result is handed on, and a caller
// that has its result must find them done (TestObserveFilterRootsAndCaller
// reads an observer's counters right after its result). On 37b9d2b (direct
// writes whenever nothing more was buffered) the result was already
// written: 0 bytes held.
func TestObservedResultHeldUntilCompletionEnds(t *testing.T) {
	e := startEngine(t)
	src := obsDial(t, e)
	src.send(`{"type":"registerfunction","id":"hold::s"}`)
	src.noFrame("invokefunction") // registered
	caller := obsDial(t, e)
	h := &holdWatcher{fn: "hold::s", held: make(chan int, 1), release: make(chan struct{})}
	h.caller = func() *workerConn {
		e.mu.RLock()
		defer e.mu.RUnlock()
		return e.conns[caller.id]
	}
	released := false
	release := func() {
		if !released {
			released = true
			close(h.release)
		}
	}
	defer release()
	e.inv.SetWatcher(h)
	defer e.inv.SetWatcher(nil)

	caller.send(`{"type":"invokefunction","invocation_id":"h1","function_id":"hold::s","data":{}}`)
	src.answer(src.await("invokefunction", invokeOf("hold::s")), `{"ok":true}`)
	if n := <-h.held; n == 0 {
		t.Fatal("the result was written before the completion chain ended")
	}
	release()
	if r := caller.await("invocationresult", func(m map[string]any) bool { return m["invocation_id"] == "h1" }); r["result"] == nil {
		t.Fatalf("result: %v", r)
	}
}
