package sluice_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// BenchmarkInvokeObserved compares the call rate of a function with 100
// observers whose filters do not match the calls (each call is still
// evaluated against all 100: the document is decoded and every filter run)
// with the rate of an unobserved function of the same worker, in the same
// run, 128 calls in flight. Acceptance: observed/unobserved >= 0.8.
//
//	go test -run '^$' -bench 'InvokeObserved' -benchtime 20000x .
func BenchmarkInvokeObserved(b *testing.B) {
	const inFlight = 128
	observers := 100
	if os.Getenv("OBS_N") != "" {
		observers, _ = strconv.Atoi(os.Getenv("OBS_N"))
	}
	rig := newInvokeRig(b)
	defer rig.close()
	ctx := context.Background()
	// Both functions on one worker, so that only the observers differ.
	w, err := sluice.Connect(ctx, rig.e.WorkerURL(), sluice.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	echo := func(_ context.Context, inv *sluice.Invocation) (json.RawMessage, error) { return inv.Data, nil }
	var fired atomic.Int64
	for _, id := range []string{"bench::plain", "bench::observed"} {
		if err := w.RegisterRaw(id, echo); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.RegisterRaw("bench::sink", func(context.Context, *sluice.Invocation) (json.RawMessage, error) {
		fired.Add(1)
		return nil, nil
	}); err != nil {
		b.Fatal(err)
	}
	for _, id := range []string{"bench::plain", "bench::observed"} {
		for {
			if _, err := rig.caller.Trigger(ctx, id, benchPayload); err == nil {
				break
			}
		}
	}
	for i := 0; i < observers; i++ {
		h, err := rig.caller.Observe(ctx, sluice.Source{
			FunctionID: "bench::observed",
			Filters:    map[string]any{"input.n": map[string]any{"$gt": 1000 + i}},
		}, "bench::sink")
		if err != nil {
			b.Fatal(err)
		}
		if err := h.Ready(ctx); err != nil {
			b.Fatal(err)
		}
	}
	rate := func(fn string, n int) time.Duration {
		t0 := time.Now()
		var wg sync.WaitGroup
		var next atomic.Int64
		for g := 0; g < inFlight; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(n) {
					if _, err := rig.caller.Trigger(ctx, fn, benchPayload); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(t0)
	}
	n := max(b.N, inFlight)
	b.ResetTimer()
	var plain, observed time.Duration
	for r := 0; r < 4; r++ { // alternate, so both see the same drift of a shared machine
		part := n/4 + min(1, max(0, n%4-r))
		plain += rate("bench::plain", part)
		observed += rate("bench::observed", part)
	}
	b.StopTimer()
	if f := fired.Load(); f != 0 {
		b.Fatalf("%d activations: the filters should match no call", f)
	}
	plainRate, obsRate := float64(n)/plain.Seconds(), float64(n)/observed.Seconds()
	b.ReportMetric(plainRate, "unobserved-calls/s")
	b.ReportMetric(obsRate, "observed-calls/s")
	b.ReportMetric(obsRate/plainRate, "ratio")
	b.ReportMetric(0, "ns/op")
	fmt.Printf("observe: %d observers, %d calls: unobserved %.0f/s, observed %.0f/s, ratio %.2f\n",
		observers, n, plainRate, obsRate, obsRate/plainRate)
}
