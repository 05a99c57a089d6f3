package natsnode_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/natsnode"
)

// startNode starts an embedded node with cfg (NodeName and StoreDir filled
// in when empty), closed when the test ends.
func startNode(t *testing.T, cfg natsnode.Config) *natsnode.Node {
	t.Helper()
	if cfg.NodeName == "" {
		cfg.NodeName = "n"
	}
	if cfg.StoreDir == "" {
		cfg.StoreDir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := natsnode.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

// TestStartExternalURL: with a URL the node connects to that deployment
// and starts no server of its own; replicas default to 1 there (a count
// given is kept), and the JetStream context works against it. The
// deployment here is an embedded node whose client port is open.
func TestStartExternalURL(t *testing.T) {
	addr := freeAddrs(t, 1)[0]
	srv := startNode(t, natsnode.Config{NodeName: "server", ClientListen: addr})
	if got := srv.Server.Addr().String(); got != addr {
		t.Fatalf("client port on %s, want %s", got, addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct{ replicas, want int }{{0, 1}, {2, 2}} {
		n, err := natsnode.Start(ctx, natsnode.Config{NodeName: "client", URL: "nats://" + addr, Replicas: tc.replicas})
		if err != nil {
			t.Fatal(err)
		}
		if n.Server != nil {
			n.Close()
			t.Fatal("an external URL started an embedded server")
		}
		if n.Replicas != tc.want {
			t.Errorf("replicas %d with %d configured, want %d", n.Replicas, tc.replicas, tc.want)
		}
		if got := n.Conn.ConnectedUrl(); got != "nats://"+addr {
			t.Errorf("connected to %q", got)
		}
		kv, err := natsnode.KeyValue(ctx, n.JS, jetstream.KeyValueConfig{Bucket: "ext"})
		if err == nil {
			_, err = kv.Put(ctx, "k", []byte("v"))
		}
		n.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	// What the client wrote is in the server's store.
	kv, err := srv.JS.KeyValue(ctx, "ext")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "k"); err != nil || string(e.Value()) != "v" {
		t.Fatalf("value through the server node: %v", err)
	}
}

// TestStartExternalFailures: an external deployment that refuses
// connections, or whose name does not resolve, is retried until the start
// context ends; a TLS config for a server without TLS and a credentials
// file that does not exist fail at once. Each fails Start with a "connect"
// error, leaving nothing open.
func TestStartExternalFailures(t *testing.T) {
	addr := freeAddrs(t, 1)[0] // closed again: nothing listens
	live := freeAddrs(t, 1)[0]
	startNode(t, natsnode.Config{NodeName: "server", ClientListen: live})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name  string
		cfg   natsnode.Config
		want  string
		waits bool // retried until the start context ends
	}{
		{"unreachable", natsnode.Config{URL: "nats://" + addr}, "no servers available", true},
		{"unresolvable", natsnode.Config{URL: "nats://nonexistent.invalid:4222"}, "nonexistent.invalid", true},
		{"tls", natsnode.Config{URL: "nats://" + live, TLS: &tls.Config{ServerName: "x"}}, "secure connection", false},
		{"creds", natsnode.Config{URL: "nats://" + live, CredsFile: filepath.Join(t.TempDir(), "none.creds")}, "none.creds", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.NodeName = "client"
			start := time.Now()
			ctx := ctx
			if tc.waits {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Second)
				defer cancel()
			}
			n, err := natsnode.Start(ctx, tc.cfg)
			if err == nil {
				n.Close()
				t.Fatal("started")
			}
			if !strings.HasPrefix(err.Error(), "nats: connect: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want a connect error naming %q", err, tc.want)
			}
			if d := time.Since(start); d > 5*time.Second || tc.waits && d < 900*time.Millisecond {
				t.Fatalf("failing took %v (waits for the start timeout: %v)", d, tc.waits)
			}
		})
	}
}

// TestStartExternalWaitsForNATS: an external NATS not reachable when the
// engine starts (started beside it) is waited for, with one warning, and
// connected to once it listens. On 44fdc11 Start failed at once with "no
// servers available for connection".
func TestStartExternalWaitsForNATS(t *testing.T) {
	addr := freeAddrs(t, 1)[0] // nothing listens yet
	logs := make(chan string, 16)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type started struct {
		n   *natsnode.Node
		err error
	}
	done := make(chan started, 1)
	go func() {
		n, err := natsnode.Start(ctx, natsnode.Config{NodeName: "client", URL: "nats://" + addr, Log: slog.New(msgHandler{logs})})
		done <- started{n, err}
	}()
	for msg := ""; !strings.Contains(msg, "no server reachable yet"); {
		select {
		case msg = <-logs:
		case r := <-done:
			t.Fatalf("Start ended before NATS listened: %v", r.err)
		case <-ctx.Done():
			t.Fatal("no warning that NATS is not reachable")
		}
	}
	startNode(t, natsnode.Config{NodeName: "server", ClientListen: addr})
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("Start after NATS came up: %v", r.err)
		}
		defer r.n.Close()
		if !r.n.Conn.IsConnected() || r.n.Server != nil {
			t.Fatalf("connected %v, own server %v", r.n.Conn.IsConnected(), r.n.Server != nil)
		}
	case <-ctx.Done():
		t.Fatal("Start did not connect once NATS listened")
	}
}

// TestStartEmbeddedRefusals: options the embedded server cannot take are
// refused before anything listens, each naming what is wrong.
func TestStartEmbeddedRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		cfg  natsnode.Config
		want string
	}{
		{"client listen without port", natsnode.Config{ClientListen: "127.0.0.1"}, "nats: client listen"},
		{"client port out of range", natsnode.Config{ClientListen: "127.0.0.1:65536"}, `bad port in "127.0.0.1:65536"`},
		{"negative cluster port", natsnode.Config{ClusterListen: "127.0.0.1:-1"}, "nats: cluster listen"},
		{"bad peer", natsnode.Config{ClusterListen: "127.0.0.1:0", Peers: []string{"peer-without-port"}}, `nats: cluster peer "peer-without-port"`},
		{"node name with a space", natsnode.Config{NodeName: "node a"}, "nats: embedded server: server name cannot contain spaces"},
		{"cluster name with a space", natsnode.Config{ClusterListen: "127.0.0.1:0", ClusterName: "my cluster"}, "nats: embedded server: cluster name cannot contain spaces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cfg.NodeName == "" {
				tc.cfg.NodeName = "n"
			}
			tc.cfg.StoreDir = t.TempDir()
			n, err := natsnode.Start(ctx, tc.cfg)
			if err == nil {
				n.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want %q", err, tc.want)
			}
		})
	}
}

// TestStartClientPortTaken: an embedded server whose client port is held
// by another process never becomes ready; Start gives up when its context
// ends (not after its own 10 s), shuts the server down and says why, and
// the server's listen error reaches the log.
func TestStartClientPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	logs := make(chan string, 1024)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	n, err := natsnode.Start(ctx, natsnode.Config{NodeName: "n", StoreDir: t.TempDir(),
		ClientListen: ln.Addr().String(), Log: slog.New(msgHandler{logs})})
	if err == nil {
		n.Close()
		t.Fatal("started on a taken port")
	}
	if err.Error() != "nats: embedded server not ready" {
		t.Fatalf("error %q", err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("gave up after %v; the context allowed 1.5 s", d)
	}
	for {
		select {
		case m := <-logs:
			if strings.Contains(m, "Error listening on port") && strings.Contains(m, ln.Addr().String()) {
				return
			}
		default:
			t.Fatal("the listen error was not logged")
		}
	}
}

// TestStartReplicasAndClusterName: an embedded node's replicas default to
// 3 with three nodes or more (itself and two peers), else 1; a count given
// is kept. The cluster is named "sluice" unless a name is given. Route
// dialling is in the background: peers that do not answer do not hold up
// Start.
func TestStartReplicasAndClusterName(t *testing.T) {
	addrs := freeAddrs(t, 4)
	for _, tc := range []struct {
		name     string
		peers    []string
		replicas int
		cluster  string
		want     int
		wantName string
	}{
		{"one peer", addrs[1:2], 0, "", 1, "sluice"},
		{"two peers", addrs[1:3], 0, "c1", 3, "c1"},
		{"three peers", addrs[1:4], 0, "", 3, "sluice"},
		{"given", addrs[1:3], 2, "", 2, "sluice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, natsnode.Config{ClusterListen: addrs[0], Peers: tc.peers, Replicas: tc.replicas, ClusterName: tc.cluster})
			if n.Replicas != tc.want {
				t.Errorf("replicas %d, want %d", n.Replicas, tc.want)
			}
			if got := n.Server.ClusterName(); got != tc.wantName {
				t.Errorf("cluster name %q, want %q", got, tc.wantName)
			}
			n.Close()
		})
	}
	if n := startNode(t, natsnode.Config{}); n.Replicas != 1 {
		t.Errorf("standalone: replicas %d, want 1", n.Replicas)
	}
}

// TestRetryEndsWithContext: an operation that never succeeds is retried
// until the context ends; the error wraps the context's and names the
// last failure.
func TestRetryEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := natsnode.Retry(ctx, func(context.Context) error {
		calls++
		if calls == 3 {
			cancel()
		}
		return errors.New("no leader " + string(rune('0'+calls)))
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want one wrapping context.Canceled", err)
	}
	if calls != 3 || !strings.Contains(err.Error(), "last error: no leader 3") {
		t.Fatalf("%d calls, error %q", calls, err)
	}
}

// TestKeyValueGivesUp: a bucket that can never be opened (an invalid
// name) fails when the context ends, naming the bucket and the cause.
func TestKeyValueGivesUp(t *testing.T) {
	n := startNode(t, natsnode.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	kv, err := natsnode.KeyValue(ctx, n.JS, jetstream.KeyValueConfig{Bucket: "bad name"})
	if err == nil || kv != nil {
		t.Fatal("opened a bucket with an invalid name")
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "jetstream bucket bad name: ") ||
		!strings.Contains(err.Error(), jetstream.ErrInvalidBucketName.Error()) {
		t.Fatalf("error %q", err)
	}
}

// TestTransient: a request nobody answers (the stream's leader is being
// elected) is transient, also wrapped; other errors are not.
func TestTransient(t *testing.T) {
	n := startNode(t, natsnode.Config{})
	_, err := n.Conn.Request("nobody.listens", nil, 5*time.Second)
	if !natsnode.Transient(err) {
		t.Fatalf("no responders (%v) not transient", err)
	}
	if !natsnode.Transient(fmt.Errorf("put: %w", jetstream.ErrNoStreamResponse)) {
		t.Fatal("a wrapped ErrNoStreamResponse is not transient")
	}
	unavailable := &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}
	if !natsnode.Transient(fmt.Errorf("create: %w", unavailable)) {
		t.Fatal("JetStream's temporarily unavailable (10008) is not transient")
	}
	if natsnode.Transient(&jetstream.APIError{Code: 400, ErrorCode: 10071, Description: "wrong last sequence"}) {
		t.Fatal("another API error is transient")
	}
	for _, err := range []error{nil, jetstream.ErrKeyNotFound, context.DeadlineExceeded, errors.New("no responders")} {
		if natsnode.Transient(err) {
			t.Fatalf("%v is transient", err)
		}
	}
}

// TestBackoff: Backoff waits about 50 ms and reports true; with the
// context ended it returns false at once.
func TestBackoff(t *testing.T) {
	start := time.Now()
	if !natsnode.Backoff(context.Background()) {
		t.Fatal("false with a live context")
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("waited %v, want 50 ms", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start = time.Now()
	if natsnode.Backoff(ctx) {
		t.Fatal("true with an ended context")
	}
	if d := time.Since(start); d >= 50*time.Millisecond {
		t.Fatalf("an ended context still waited %v", d)
	}
}

// stopCounter is a KeyWatcher that counts its Stop calls.
type stopCounter struct {
	jetstream.KeyWatcher
	stops int
}

func (s *stopCounter) Stop() error { s.stops++; return nil }

// TestStopWatch: with its context live, StopWatch stops the watcher (a
// real one's updates channel closes); once the context has ended it does
// not call Stop (nats.go unsubscribes on its own then, and Stop could wait
// on the JetStream API).
func TestStopWatch(t *testing.T) {
	n := startNode(t, natsnode.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := natsnode.KeyValue(ctx, n.JS, jetstream.KeyValueConfig{Bucket: "w"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	natsnode.StopWatch(ctx, w)
	for {
		select {
		case _, ok := <-w.Updates():
			if ok {
				continue // the initial nil marker
			}
		case <-ctx.Done():
			t.Fatal("the watcher's updates did not close")
		}
		break
	}

	live := &stopCounter{}
	natsnode.StopWatch(ctx, live)
	ended, cancelEnded := context.WithCancel(context.Background())
	cancelEnded()
	dead := &stopCounter{}
	natsnode.StopWatch(ended, dead)
	if live.stops != 1 || dead.stops != 0 {
		t.Fatalf("Stop called %d times with a live context, %d with an ended one; want 1 and 0", live.stops, dead.stops)
	}
}

// TestRetryTransient: a transient error is retried (after a Backoff) until
// TransientFor has passed since the first one; another error, or an ended
// context, is not.
func TestRetryTransient(t *testing.T) {
	ctx := context.Background()
	var first time.Time
	if !natsnode.RetryTransient(ctx, jetstream.ErrNoStreamResponse, &first) || first.IsZero() {
		t.Fatal("a first transient error is not retried")
	}
	if natsnode.RetryTransient(ctx, errors.New("boom"), &first) {
		t.Fatal("another error is retried")
	}
	first = time.Now().Add(-natsnode.TransientFor - time.Millisecond)
	if natsnode.RetryTransient(ctx, jetstream.ErrNoStreamResponse, &first) {
		t.Fatalf("retried %v after the first transient error", natsnode.TransientFor)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	var f2 time.Time
	if natsnode.RetryTransient(ended, jetstream.ErrNoStreamResponse, &f2) {
		t.Fatal("retried with the context ended")
	}
}
