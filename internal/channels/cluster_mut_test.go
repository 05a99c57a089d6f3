package channels

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/internal/natsnode/natstest"
)

// TestEnableClusterTiming: a node timeout of 0 means 10 s; the keepalive
// tick is a quarter of the timeout, at least 50 ms and at most 1 s (kills
// cluster.go:132 CONDITIONALS_BOUNDARY: a timeout of 0 stayed 0; :133, not
// covered: 10 s; :135 ARITHMETIC_BASE ×2: timeout×4, 50 ms → 50 ns).
func TestEnableClusterTiming(t *testing.T) {
	srv := natstest.Start(t)
	for _, tc := range []struct{ timeout, wantTimeout, wantTick time.Duration }{
		{0, 10 * time.Second, time.Second},
		{-time.Second, 10 * time.Second, time.Second},
		{100 * time.Millisecond, 100 * time.Millisecond, 50 * time.Millisecond},
		{time.Second, time.Second, 250 * time.Millisecond},
		{2 * time.Second, 2 * time.Second, 500 * time.Millisecond},
		{time.Minute, time.Minute, time.Second},
	} {
		nc, err := nats.Connect("", nats.InProcessServer(srv.Server))
		if err != nil {
			t.Fatal(err)
		}
		h := NewHub(Config{}, nil)
		if err := h.EnableCluster(ClusterConfig{Conn: nc, Node: "n", NodeTimeout: tc.timeout}); err != nil {
			t.Fatal(err)
		}
		got, tick := h.cluster.timeout, h.cluster.tick
		h.CloseCluster()
		nc.Close()
		if got != tc.wantTimeout || tick != tc.wantTick {
			t.Errorf("NodeTimeout %v: timeout %v tick %v, want %v and %v", tc.timeout, got, tick, tc.wantTimeout, tc.wantTick)
		}
	}
}

// TestEnableClusterNodeNameLength: a node name whose tag (base64url) is
// exactly maxTagLen long is accepted, one byte more is refused (kills
// cluster.go:136 CONDITIONALS_BOUNDARY).
func TestEnableClusterNodeNameLength(t *testing.T) {
	srv := natstest.Start(t)
	nc, err := nats.Connect("", nats.InProcessServer(srv.Server))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	longest := strings.Repeat("n", maxTagLen/4*3) // 150 bytes: a 200-character tag
	h := NewHub(Config{}, nil)
	if err := h.EnableCluster(ClusterConfig{Conn: nc, Node: longest, NodeTimeout: time.Second}); err != nil {
		t.Fatalf("a %d-byte node name: %v", len(longest), err)
	}
	if len(h.cluster.tag) != maxTagLen {
		t.Fatalf("tag of %d characters", len(h.cluster.tag))
	}
	h.CloseCluster()
	h = NewHub(Config{}, nil)
	err = h.EnableCluster(ClusterConfig{Conn: nc, Node: longest + "n", NodeTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "node name too long") {
		t.Fatalf("a %d-byte node name: %v", len(longest)+1, err)
	}
	if h.cluster != nil {
		t.Fatal("the refused cluster mode was enabled")
	}
}
