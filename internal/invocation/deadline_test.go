package invocation

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

func TestSetTimeoutInterval(t *testing.T) {
	for _, tc := range []struct {
		d, interval time.Duration
		ticks       uint64
	}{
		{30 * time.Second, time.Second, 30},
		{time.Second, 50 * time.Millisecond, 20},
		{20 * time.Millisecond, 5 * time.Millisecond, 4},
		{7 * time.Millisecond, 5 * time.Millisecond, 2}, // rounded up: never early
		{0, 0, 0},
	} {
		tb := newTable()
		if got := tb.SetTimeout(tc.d); got != tc.interval || tb.ticks != tc.ticks {
			t.Errorf("SetTimeout(%v) = %v, %d ticks; want %v, %d", tc.d, got, tb.ticks, tc.interval, tc.ticks)
		}
	}
}

// An invocation is answered TIMEOUT at the first sweep at least the timeout
// after it was added, exactly once; one answered before is left alone, and
// the executor's late result is ignored.
func TestSweepExpiresLateInvocations(t *testing.T) {
	tb := newTable()
	tb.SetTimeout(time.Second) // 20 sweeps of 50 ms
	early, late, answered := newRecorder(), newRecorder(), newRecorder()
	earlyID := tb.Add("", "w", early.done)
	ansID := tb.Add("", "w", answered.done)
	tb.Sweep() // sweep 1: late is added after it
	lateID := tb.Add("", "w", late.done)
	if !tb.Complete(ansID, "w", Result{Value: []byte("1")}) {
		t.Fatal("answer not accepted")
	}
	for i := 2; i <= 22; i++ {
		if n := tb.Sweep(); n != 0 {
			t.Fatalf("sweep %d expired %d invocations before the timeout", i, n)
		}
	}
	if n := tb.Sweep(); n != 1 { // sweep 23: early has lived 20 whole intervals since the tick of sweep 2, whenever sweeps 1 and 2 ran
		t.Fatalf("sweep 23 expired %d, want 1 (early)", n)
	}
	res := early.only(t)
	if res.Err == nil || res.Err.Code != wire.CodeTimeout || !strings.Contains(res.Err.Message, "1000ms") {
		t.Fatalf("early got %+v", res.Err)
	}
	if len(late.calls()) != 0 {
		t.Fatal("late expired too early")
	}
	if n := tb.Sweep(); n != 1 || errCode(late.only(t)) != wire.CodeTimeout {
		t.Fatalf("sweep 24 expired %d; late got %v", n, late.calls())
	}
	if tb.Complete(earlyID, "w", Result{}) || tb.Complete(lateID, "w", Result{}) {
		t.Fatal("a result after the timeout completed the invocation again")
	}
	if len(answered.calls()) != 1 || tb.Len() != 0 || tb.CountFor("w") != 0 {
		t.Fatalf("answered %d times, %d left, %d for w", len(answered.calls()), tb.Len(), tb.CountFor("w"))
	}
}

func TestSweepWithoutTimeout(t *testing.T) {
	tb := newTable()
	r := newRecorder()
	tb.Add("", "w", r.done)
	for range 1000 {
		tb.Sweep()
	}
	if len(r.calls()) != 0 || tb.Len() != 1 {
		t.Fatal("an invocation expired with no timeout set")
	}
}

// RunSweeper enforces the deadline in real time.
func TestRunSweeper(t *testing.T) {
	tb := newTable()
	interval := tb.SetTimeout(40 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { tb.RunSweeper(ctx, interval); close(stopped) }()
	defer func() { cancel(); <-stopped }()
	r := newRecorder()
	start := time.Now()
	tb.Add("", "w", r.done)
	res := r.wait(t)
	if el := time.Since(start); errCode(res) != wire.CodeTimeout || el < 40*time.Millisecond {
		t.Fatalf("got %v after %v", res.Err, el)
	}
}

// An executor that cannot take more fails the invocation at once with
// worker_congested; the table does not keep it.
func TestInvokeCongestedExecutor(t *testing.T) {
	reg := registry.New()
	ex := &fakeExecutor{id: "w1", err: ErrExecutorCongested}
	reg.RegisterFunction(&registry.Function{ID: "f", Owner: ex})
	l := NewLocal(context.Background(), reg)
	r := newRecorder()
	l.Invoke(&Request{FunctionID: "f"}, r.done)
	res := r.only(t)
	if errCode(res) != wire.CodeWorkerCongested || !strings.Contains(res.Err.Message, "f") {
		t.Fatalf("got %+v", res.Err)
	}
	if l.Pending().Len() != 0 {
		t.Fatal("congested invocation left pending")
	}
	ex.err = errString("gone")
	r2 := newRecorder()
	l.Invoke(&Request{FunctionID: "f"}, r2.done)
	if errCode(r2.only(t)) != wire.CodeInvocationStopped {
		t.Fatal("a gone executor is not invocation_stopped")
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// AddAtLeast raises an invocation's deadline (HTTP triggers: http.timeout)
// but never lowers it, and does nothing while deadlines are off.
func TestAddAtLeast(t *testing.T) {
	tb := newTable()
	tb.SetTimeout(time.Second) // 20 sweeps of 50 ms
	long, short := newRecorder(), newRecorder()
	tb.AddAtLeast("", "w", long.done, 2*time.Second)
	tb.AddAtLeast("", "w", short.done, 100*time.Millisecond)
	for i := 1; i <= 22; i++ {
		tb.Sweep()
	}
	if n := tb.Sweep(); n != 1 || errCode(short.only(t)) != wire.CodeTimeout {
		t.Fatalf("sweep 23 expired %d; the shorter minimum must keep the default deadline", n)
	}
	for i := 24; i <= 42; i++ {
		if tb.Sweep() != 0 {
			t.Fatalf("sweep %d expired the 2 s invocation", i)
		}
	}
	if n := tb.Sweep(); n != 1 {
		t.Fatalf("sweep 43 expired %d, want the 2 s invocation", n)
	}
	if res := long.only(t); errCode(res) != wire.CodeTimeout || !strings.Contains(res.Err.Message, "2000ms") {
		t.Fatalf("got %+v", res.Err)
	}

	off := newTable()
	r := newRecorder()
	off.AddAtLeast("", "w", r.done, time.Millisecond)
	for range 100 {
		off.Sweep()
	}
	if len(r.calls()) != 0 {
		t.Fatal("a minimum timeout expired with deadlines off")
	}
}
