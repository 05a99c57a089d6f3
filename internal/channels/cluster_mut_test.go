package channels

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/internal/natsnode/natstest"
	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/wire"
)

// TestEnableClusterTiming: a node timeout of 0 means 10 s; the keepalive
// tick is a quarter of the timeout, at least 50 ms and at most 1 s (kills
// cluster.go:132 CONDITIONALS_BOUNDARY: a timeout of 0 stayed 0; :133, not
// covered: 10 s; :135 ARITHMETIC_BASE ×2: timeout×4, 50 ms → 50 ns).
// CloseCluster stops the keepalive, and does nothing on a hub without
// cluster mode (kills :172, not covered, `h.cluster != nil` negated).
func TestEnableClusterTiming(t *testing.T) {
	srv := natstest.Start(t)
	NewHub(Config{}, nil).CloseCluster()
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
		c := h.cluster
		got, tick := c.timeout, c.tick
		h.CloseCluster()
		nc.Close()
		select {
		case <-c.done: // the keepalive loop ended
		default:
			t.Fatal("CloseCluster left the keepalive running")
		}
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

// TestClusterLongestNodeName: a node whose name gives the longest tag
// allowed is reachable: a channel it created is written from another node
// (kills cluster.go:196 CONDITIONALS_BOUNDARY: an id with a tag of exactly
// maxTagLen was looked up locally and refused with 404).
func TestClusterLongestNodeName(t *testing.T) {
	longest := strings.Repeat("n", maxTagLen/4*3)
	hubs := newClusterHubs(t, Config{}, 5*time.Second, longest, "b")
	home, other := hubs[0], hubs[1]
	res, err := home.Create(0)
	if err != nil {
		t.Fatal(err)
	}
	r := home.dial(t, res.Reader, wire.DirRead)
	w := other.dial(t, res.Writer, wire.DirWrite)
	want := []msg{{websocket.TextMessage, []byte("across nodes")}}
	sendAll(t, w, want)
	closeWith(t, w, websocket.CloseNormalClosure, "")
	got, ce := readAll(t, r)
	if len(got) != 1 || string(got[0].data) != "across nodes" || ce == nil || ce.Code != websocket.CloseNormalClosure {
		t.Fatalf("reader got %v, %v", got, ce)
	}
}

// TestRemoteTagCharacters: a channel id names another node when its tag
// (after the last dot) is a base64url string of at most maxTagLen
// characters other than this node's own; any other character (a NATS
// wildcard, a space, a byte past ASCII) makes it a local id (kills
// cluster.go:200's character class boundaries and negations: 'a', 'z',
// 'A', ... were refused, so a node whose tag holds them was unreachable,
// or characters around them accepted).
func TestRemoteTagCharacters(t *testing.T) {
	c := &clusterHub{tag: "bXk"}
	for r := rune(0); r < 0x80; r++ {
		want := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
		if r == '.' {
			continue // the separator
		}
		id := "uuid.x" + string(r) + "y"
		tag, ok := c.remoteTag(id)
		if ok != want || (ok && tag != "x"+string(r)+"y") {
			t.Errorf("remoteTag(%q) = %q %v, want remote %v", id, tag, ok, want)
		}
	}
	for _, tc := range []struct {
		id   string
		want string
		ok   bool
	}{
		{"uuid.bm9kZQ", "bm9kZQ", true},
		{"a.b.azAZ09-_", "azAZ09-_", true},
		{"uuid.bXk", "", false}, // this node's own
		{"uuid.", "", false},
		{"no-dot", "", false},
		{"uuid.é", "", false},
		{"uuid." + strings.Repeat("a", maxTagLen), strings.Repeat("a", maxTagLen), true},
		{"uuid." + strings.Repeat("a", maxTagLen+1), "", false},
	} {
		if tag, ok := c.remoteTag(tc.id); tag != tc.want || ok != tc.ok {
			t.Errorf("remoteTag(%.30q) = %q %v, want %q %v", tc.id, tag, ok, tc.want, tc.ok)
		}
	}
}

// TestClusterBridgeSurvivesKeepalives: a cross-node channel whose nodes
// are both alive stays up across many keepalive periods while idle (kills
// cluster.go:366 ARITHMETIC_BASE and INVERT_NEGATIVES, `now-heard` →
// `now+heard`: every bridge was failed as silent at the first tick). What
// is tested is that time passing does not break the link, so the test lets
// time pass: 4 ticks. The node timeout is generous (2 s) so that a loaded
// machine's scheduling delays do not make a live link look silent.
func TestClusterBridgeSurvivesKeepalives(t *testing.T) {
	const timeout = 2 * time.Second
	hubs := newClusterHubs(t, Config{}, timeout, "a", "b")
	res, err := hubs[0].Create(0)
	if err != nil {
		t.Fatal(err)
	}
	r := hubs[0].dial(t, res.Reader, wire.DirRead)
	w := hubs[1].dial(t, res.Writer, wire.DirWrite)
	sendAll(t, w, []msg{{websocket.TextMessage, []byte("before")}})
	_ = r.SetReadDeadline(time.Now().Add(testWait))
	if _, b, err := r.ReadMessage(); err != nil || string(b) != "before" {
		t.Fatalf("%q %v", b, err)
	}
	time.Sleep(timeout) // 4 ticks of 500 ms
	sendAll(t, w, []msg{{websocket.TextMessage, []byte("after")}})
	closeWith(t, w, websocket.CloseNormalClosure, "")
	got, ce := readAll(t, r)
	if len(got) != 1 || string(got[0].data) != "after" || ce == nil || ce.Code != websocket.CloseNormalClosure {
		t.Fatalf("after %v idle: reader got %v, %v", timeout, got, ce)
	}
}
