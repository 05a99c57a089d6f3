package channels

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// TestLocalWriterFrames: WriteFrame takes a frame of exactly MaxFrameSize
// and refuses one byte more (kills local.go:33 CONDITIONALS_BOUNDARY); up
// to a pooled buffer's size, a frame is copied into a pooled buffer,
// beyond it into a big buffer of its own, charged its size (kills local.go:61
// CONDITIONALS_NEGATION and CONDITIONALS_BOUNDARY: small frames were each
// mapped from the kernel, big ones grown on the heap).
func TestLocalWriterFrames(t *testing.T) {
	const max = 3 * bufCap
	th := newTestHub(t, Config{MaxFrameSize: max})
	ref, lw, err := th.CreateWithLocalWriter(16)
	if err != nil {
		t.Fatal(err)
	}
	defer lw.Abort("test over")
	ctx := context.Background()
	if err := lw.WriteFrame(ctx, false, make([]byte, max+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("a frame of MaxFrameSize+1: %v", err)
	}
	p := th.pipeFor(th.channel(ref.ChannelID)) // made on demand for a local end
	for _, tc := range []struct {
		n    int
		big  bool
		cost int64
	}{{100, false, bufCap}, {bufCap, false, bufCap}, {bufCap + 1, true, bufCap + 1}, {max, true, max}} {
		data := bytes.Repeat([]byte{byte(tc.n)}, tc.n)
		if err := lw.WriteFrame(ctx, tc.n == 100, data); err != nil {
			t.Fatalf("%d bytes: %v", tc.n, err)
		}
		f, err := p.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f.Data, data) || f.Text != (tc.n == 100) {
			t.Fatalf("%d bytes: got %d bytes, text %v", tc.n, len(f.Data), f.Text)
		}
		if f.big != tc.big || (f.buf != nil) == tc.big || f.cost != tc.cost {
			t.Errorf("%d bytes: big buffer %v, pooled %v, cost %d; want big %v, cost %d", tc.n, f.big, f.buf != nil, f.cost, tc.big, tc.cost)
		}
		f.Release()
	}
}
