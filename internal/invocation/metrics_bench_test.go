package invocation

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/metrics"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

// answeringExecutor completes every invocation as it is delivered.
type answeringExecutor struct{ l *Local }

func (a *answeringExecutor) OwnerID() string { return "w" }
func (a *answeringExecutor) Deliver(req *Request) error {
	a.l.Pending().Complete(req.InvocationID, "w", Result{})
	return nil
}

// BenchmarkRouteWithMetrics measures what counting adds to routing one
// worker invocation (pending table, delivery, completion): compare the
// two sub-benchmarks.
func BenchmarkRouteWithMetrics(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			reg := registry.New()
			l := NewLocal(context.Background(), reg)
			if on {
				l.SetMetrics(metrics.New())
			}
			ex := &answeringExecutor{l}
			if err := reg.RegisterFunction(&registry.Function{ID: "f", Owner: ex}); err != nil {
				b.Fatal(err)
			}
			done := func(Result) {}
			b.ReportAllocs()
			for b.Loop() {
				l.Invoke(&Request{FunctionID: "f"}, done)
			}
		})
	}
}

// heldExecutor keeps every invocation: the test answers them.
type heldExecutor struct{}

func (heldExecutor) OwnerID() string            { return "h" }
func (heldExecutor) Deliver(req *Request) error { return nil }

// Each way an invocation ends is counted once, with its outcome.
func TestMetricsOutcomes(t *testing.T) {
	reg := registry.New()
	l := NewLocal(context.Background(), reg)
	m := metrics.New()
	l.SetMetrics(m)
	if err := reg.RegisterFunction(&registry.Function{ID: "f", Owner: heldExecutor{}}); err != nil {
		t.Fatal(err)
	}
	l.Pending().SetTimeout(time.Hour)
	ids := make([]string, 3)
	for i := range ids {
		req := &Request{FunctionID: "f"}
		l.Invoke(req, func(Result) {})
		ids[i] = req.InvocationID
	}
	l.Invoke(&Request{FunctionID: "f", Void: true}, nil)
	l.Invoke(&Request{FunctionID: "nope"}, func(Result) {})
	if m.InFlight() != 3 {
		t.Fatalf("in flight %d, want 3", m.InFlight())
	}
	l.Pending().Complete(ids[0], "h", Result{})
	l.Pending().Complete(ids[1], "h", Result{Err: &wire.ErrorBody{Code: "x"}})
	l.Pending().HaltExecutor("h", wire.ErrInvocationStopped())
	var b strings.Builder
	if err := m.Write(&b, metrics.Gauges{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`{function="f",outcome="ok"} 1`, `{function="f",outcome="error"} 1`, `{function="f",outcome="stopped"} 1`,
		`{function="f",outcome="void"} 1`, `{function="_unknown",outcome="error"} 1`, "sluice_invocations_in_flight 0\n",
		`sluice_invocation_duration_seconds_count{function="f"} 3`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %q", want)
		}
	}
	// The sweeper's TIMEOUT.
	l.Pending().SetTimeout(time.Millisecond)
	l.Invoke(&Request{FunctionID: "f"}, func(Result) {})
	for range 1000 {
		if l.Pending().Sweep() > 0 {
			break
		}
	}
	b.Reset()
	_ = m.Write(&b, metrics.Gauges{})
	if !strings.Contains(b.String(), `{function="f",outcome="timeout"} 1`) {
		t.Errorf("timeout not counted")
	}
}

// The live feed reports each finished invocation with its function, caller,
// duration and outcome; with no subscriber, routing allocates nothing more.
func TestFeedFromInvoke(t *testing.T) {
	reg := registry.New()
	l := NewLocal(context.Background(), reg)
	m := metrics.New()
	l.SetMetrics(m)
	ex := &answeringExecutor{l}
	for _, ns := range []string{"", "orders"} {
		if err := reg.RegisterFunction(&registry.Function{ID: "f", Namespace: ns, Owner: ex}); err != nil {
			t.Fatal(err)
		}
	}
	done := func(Result) {}
	before := testing.AllocsPerRun(200, func() { l.Invoke(&Request{FunctionID: "f", CallerWorkerID: "w1"}, done) })

	sub := m.Feed.Subscribe(16)
	defer sub.Close()
	l.Invoke(&Request{FunctionID: "f", CallerWorkerID: "w1"}, done)
	l.Invoke(&Request{FunctionID: "f", CallerWorkerID: "w2", Void: true}, nil)
	l.Invoke(&Request{FunctionID: "nope", CallerWorkerID: "w3"}, done)
	l.Invoke(&Request{FunctionID: "f", Namespace: "orders", CallerWorkerID: "w4"}, done)
	want := []struct {
		fn, ns, caller, outcome, code string
	}{{"f", "", "w1", "ok", ""}, {"f", "", "w2", "void", ""}, {"nope", "", "w3", "error", wire.CodeFunctionNotFound}, {"f", "orders", "w4", "ok", ""}}
	for _, w := range want {
		ev := <-sub.C
		if ev.FunctionID != w.fn || ev.Namespace != w.ns || ev.CallerWorkerID != w.caller || metrics.OutcomeName(ev.Outcome) != w.outcome || ev.ErrorCode != w.code || ev.Time.IsZero() {
			t.Fatalf("got %+v, want %+v", ev, w)
		}
	}
	sub.Close()
	after := testing.AllocsPerRun(200, func() { l.Invoke(&Request{FunctionID: "f", CallerWorkerID: "w1"}, done) })
	if after > before {
		t.Fatalf("routing allocates %.1f per call after the feed's last subscriber left, %.1f before", after, before)
	}
}

// Routing a counted invocation to a worker and completing it allocates
// nothing in this package when the caller names the invocation (as every
// SDK does): the pending entry must stay small enough for the map to hold
// it in place (over 128 bytes, each insert allocated it).
func TestRouteCompleteAllocs(t *testing.T) {
	reg := registry.New()
	l := NewLocal(context.Background(), reg)
	l.SetMetrics(metrics.New())
	l.Pending().SetTimeout(time.Minute)
	ex := &answeringExecutor{l}
	if err := reg.RegisterFunction(&registry.Function{ID: "f", Owner: ex}); err != nil {
		t.Fatal(err)
	}
	n := 0
	done := func(Result) { n++ }
	req := &Request{}
	allocs := testing.AllocsPerRun(200, func() {
		*req = Request{InvocationID: "call-1", FunctionID: "f", CallerWorkerID: "w1"}
		l.Invoke(req, done)
	})
	if n == 0 || l.Pending().Len() != 0 {
		t.Fatalf("%d completions, %d pending", n, l.Pending().Len())
	}
	if allocs != 0 {
		t.Fatalf("%v allocations per invocation, want 0", allocs)
	}
}

// The latency recorded is the time from Invoke to the result: at least
// the time the test held the result back, at most the time around both.
func TestMetricsLatency(t *testing.T) {
	reg := registry.New()
	l := NewLocal(context.Background(), reg)
	m := metrics.New()
	l.SetMetrics(m)
	if err := reg.RegisterFunction(&registry.Function{ID: "f", Owner: heldExecutor{}}); err != nil {
		t.Fatal(err)
	}
	outer := time.Now()
	req := &Request{FunctionID: "f"}
	l.Invoke(req, func(Result) {})
	held := time.Now()
	for time.Since(held) < 3*time.Millisecond { // the duration itself is what is awaited
	}
	inner := time.Since(held)
	l.Pending().Complete(req.InvocationID, "h", Result{})
	total := time.Since(outer)
	st := m.FunctionStats()["f"]
	if mean := time.Duration(st.MeanSeconds * float64(time.Second)); st.Count != 1 || mean < inner || mean > total {
		t.Fatalf("recorded %v over %d calls, want within [%v, %v]", mean, st.Count, inner, total)
	}
}
