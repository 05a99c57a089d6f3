package channels

import (
	"testing"

	"github.com/sluicehq/sluice/wire"
)

// TestGrowCap: a growing message's buffer at least doubles, never beyond
// the frame limit (unless the message needs more), and a limit of 0 is
// none (kills pool.go:42 ARITHMETIC_BASE, `2*have` → `2/have`, and :43
// CONDITIONALS_BOUNDARY/NEGATION of `limit > 0`).
func TestGrowCap(t *testing.T) {
	for _, tc := range []struct {
		have, need int
		limit      int64
		want       int
	}{
		{0, 100, 0, 100},
		{100, 150, 0, 200},
		{100, 250, 0, 250},
		{100, 150, 180, 180},
		{100, 150, 200, 200},
		{100, 250, 180, 250},
	} {
		if got := growCap(tc.have, tc.need, tc.limit); got != tc.want {
			t.Errorf("growCap(%d, %d, %d) = %d, want %d", tc.have, tc.need, tc.limit, got, tc.want)
		}
	}
}

// TestPooledBufferHoldsSDKFrame: a full frame of the SDKs fits a pooled
// buffer (kills pool.go:12 ARITHMETIC_BASE: with bufCap below the frame
// size every full frame went to a buffer of its own).
func TestPooledBufferHoldsSDKFrame(t *testing.T) {
	if bufCap < wire.FrameSize {
		t.Fatalf("pooled buffers of %d bytes, SDK frames of %d", bufCap, wire.FrameSize)
	}
	b := getBuf()
	defer putBuf(b)
	if cap(*b) != bufCap {
		t.Fatalf("a pooled buffer of %d bytes", cap(*b))
	}
}
