package sluice

import (
	"testing"
	"time"
)

// The run time average weighs the newest run 1/8, and a function is quick
// while its average is under inlineLimit. Kills reader.go:221
// ARITHMETIC_BASE (each of `+`, `-`, `/`: any other weighting) and :217
// CONDITIONALS_BOUNDARY (`<` → `<=`: an average of exactly the limit
// counted as quick).
func TestRunAverage(t *testing.T) {
	var a runAverage
	for i, want := range []time.Duration{100 * time.Microsecond, 187500 * time.Nanosecond} {
		a.add(800 * time.Microsecond)
		if got := time.Duration(a.ns.Load()); got != want {
			t.Fatalf("average after %d runs of 800µs = %v, want %v", i+1, got, want)
		}
	}
	if a.quick() {
		t.Fatal("an average of 187.5µs counts as quick")
	}
	a.ns.Store(int64(inlineLimit))
	if a.quick() {
		t.Fatalf("an average of exactly %v counts as quick", inlineLimit)
	}
	a.ns.Store(int64(inlineLimit) - 1)
	if !a.quick() {
		t.Fatalf("an average just under %v does not count as quick", inlineLimit)
	}
}
