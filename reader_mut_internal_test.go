package sluice

import (
	"testing"
	"time"
)

// The run time average weighs the newest run 1/8. Kills reader.go:221
// ARITHMETIC_BASE (each of `+`, `-`, `/`: any other weighting).
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
}
