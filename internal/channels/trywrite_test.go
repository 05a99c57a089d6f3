package channels

import (
	"context"
	"errors"
	"testing"
)

// TryWriteFrame writes what fits at once and otherwise nothing: no wait,
// and no charge left behind, whether the hub's memory or the channel's
// buffer is what is missing.
func TestTryWriteFrameNeverWaits(t *testing.T) {
	h := NewHub(Config{MaxTotalBufferBytes: 32 << 10}, nil)
	defer h.Shutdown(context.Background())
	_, w, err := h.CreateWithLocalWriter(4)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := w.TryWriteFrame(false, []byte("a")); !ok || err != nil { // a channel holding nothing takes one frame
		t.Fatalf("first frame: %v %v", ok, err)
	}
	used := h.BufferedBytes()
	if ok, err := w.TryWriteFrame(false, []byte("b")); ok || err != nil {
		t.Fatalf("with the budget spent: %v %v, want false <nil>", ok, err)
	}
	if u := h.BufferedBytes(); u != used {
		t.Fatalf("a refused frame left %d bytes charged", u-used)
	}

	h2 := NewHub(Config{}, nil)
	defer h2.Shutdown(context.Background())
	_, w2, err := h2.CreateWithLocalWriter(1)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := w2.TryWriteFrame(true, []byte("x")); !ok || err != nil {
		t.Fatalf("first frame: %v %v", ok, err)
	}
	used = h2.BufferedBytes()
	if ok, err := w2.TryWriteFrame(false, []byte("y")); ok || err != nil {
		t.Fatalf("with the buffer full: %v %v, want false <nil>", ok, err)
	}
	if u := h2.BufferedBytes(); u != used {
		t.Fatalf("a refused frame left %d bytes charged", u-used)
	}
	w2.Close()
	if ok, err := w2.TryWriteFrame(false, []byte("z")); ok || !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v %v, want ErrClosed", ok, err)
	}
}
