package sluice

import (
	"testing"
	"time"
)

// Expired calls are swept every twentieth of the invocation timeout,
// within [5 ms, 1 s]. Kills call.go:342 ARITHMETIC_BASE (`/ 20` → `* 20`;
// `5 * time.Millisecond` → `5 / time.Millisecond`, a floor of 0).
func TestSweepInterval(t *testing.T) {
	for _, tc := range []struct{ timeout, want time.Duration }{
		{time.Second, 50 * time.Millisecond},
		{20 * time.Millisecond, 5 * time.Millisecond},
		{time.Minute, time.Second},
	} {
		c := &Client{cfg: config{invocationTimeout: tc.timeout}}
		if got := c.sweepInterval(); got != tc.want {
			t.Errorf("sweepInterval for a %v timeout = %v, want %v", tc.timeout, got, tc.want)
		}
	}
}
