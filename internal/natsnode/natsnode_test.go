package natsnode_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/natsnode"
	"github.com/sluicehq/sluice/internal/natsnode/natstest"
)

// TestKeyValueReadsFromLeader: a bucket opened through KeyValue has direct
// (any-replica) gets off, also when it existed before with them on.
func TestKeyValueReadsFromLeader(t *testing.T) {
	n := natstest.Start(t)
	ctx := context.Background()
	// As nats.go creates buckets: direct gets on.
	if _, err := n.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b"}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		kv, err := natsnode.KeyValue(ctx, n.JS, jetstream.KeyValueConfig{Bucket: "b"})
		if err != nil {
			t.Fatal(err)
		}
		st, err := n.JS.Stream(ctx, "KV_b")
		if err != nil {
			t.Fatal(err)
		}
		if st.CachedInfo().Config.AllowDirect {
			t.Fatal("bucket still allows direct gets")
		}
		if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := natsnode.KeyValue(ctx, n.JS, jetstream.KeyValueConfig{Bucket: "fresh"}); err != nil {
		t.Fatal(err)
	}
	if st, _ := n.JS.Stream(ctx, "KV_fresh"); st == nil || st.CachedInfo().Config.AllowDirect {
		t.Fatal("new bucket allows direct gets")
	}
}

func TestStartRefusesBadConfig(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		cfg  natsnode.Config
		want string
	}{
		{natsnode.Config{StoreDir: t.TempDir()}, "node name"},
		{natsnode.Config{NodeName: "n"}, "store directory"},
		{natsnode.Config{NodeName: "n", StoreDir: t.TempDir(), Peers: []string{"127.0.0.1:1"}}, "cluster listen"},
		{natsnode.Config{NodeName: "n", StoreDir: t.TempDir(), ClusterListen: "nohost"}, "cluster listen"},
	} {
		n, err := natsnode.Start(ctx, tc.cfg)
		if err == nil {
			n.Close()
			t.Errorf("%+v: started", tc.cfg)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// msgHandler hands every log message to a channel (dropped when full).
type msgHandler struct{ ch chan string }

func (h msgHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h msgHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h.ch <- r.Message:
	default:
	}
	return nil
}
func (h msgHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h msgHandler) WithGroup(string) slog.Handler      { return h }

func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ln.Addr().String())
		defer ln.Close()
	}
	return out
}

// TestRouteSecret: nodes with the same route secret route to each other; a
// node with another secret is refused (an authentication error at the
// node it dials) and gets no route.
func TestRouteSecret(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	addrs := freeAddrs(t, 3)
	logA := make(chan string, 1024)
	start := func(name, listen, secret string, peers []string, log *slog.Logger) *natsnode.Node {
		n, err := natsnode.Start(ctx, natsnode.Config{NodeName: name, StoreDir: t.TempDir(), ClusterListen: listen,
			Peers: peers, RouteSecret: secret, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Close)
		return n
	}
	const secret = "0123456789abcdef-route"
	a := start("a", addrs[0], secret, []string{addrs[1]}, slog.New(msgHandler{logA}))
	b := start("b", addrs[1], secret, []string{addrs[0]}, nil)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for a.Server.NumRoutes() == 0 || b.Server.NumRoutes() == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("nodes with the same secret did not route to each other")
		case <-tick.C:
		}
	}
	c := start("c", addrs[2], "another-secret-0123456", []string{addrs[0]}, nil)
	for {
		select {
		case <-ctx.Done():
			t.Fatal("node a logged no authentication error for the node with the wrong secret")
		case m := <-logA:
			if !strings.Contains(m, "authentication error") {
				continue
			}
			// c counts the refused connection as a route until it sees it
			// closed (seen under load): it must lose it.
			for c.Server.NumRoutes() != 0 {
				select {
				case <-ctx.Done():
					t.Fatalf("the node with the wrong secret kept %d routes", c.Server.NumRoutes())
				case <-tick.C:
				}
			}
			return
		}
	}
}

// TestRetryLimitsGrow: a JetStream request sent before the cluster has a
// meta leader is never answered, so the first attempts get short limits
// (0.5 s, doubling to 5 s) instead of 5 s each. With 5 s from the first
// attempt, three fresh nodes took 20.3 s to be ready; with this, 0.05–0.1 s.
func TestRetryLimitsGrow(t *testing.T) {
	var limits []time.Duration
	err := natsnode.Retry(context.Background(), func(ctx context.Context) error {
		dl, ok := ctx.Deadline()
		if !ok {
			t.Fatal("an attempt without a deadline")
		}
		limits = append(limits, time.Until(dl).Round(100*time.Millisecond))
		if len(limits) < 6 {
			return errors.New("no meta leader yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i, l := range limits {
		if l != want[i] {
			t.Fatalf("attempt limits %v, want %v", limits, want)
		}
	}
}
