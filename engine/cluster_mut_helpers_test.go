package engine

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// clusterLogs keeps an engine's log lines for a test to wait on: every
// write wakes the waiters (the mutation tests of the cluster files).
type clusterLogs struct {
	mu   sync.Mutex
	buf  strings.Builder
	wake chan struct{}
}

func newClusterLogs() *clusterLogs { return &clusterLogs{wake: make(chan struct{})} }

func (l *clusterLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	close(l.wake)
	l.wake = make(chan struct{})
	return len(p), nil
}

// lines returns the lines holding every one of match, and a channel closed
// at the next write.
func (l *clusterLogs) lines(match ...string) ([]string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
next:
	for _, ln := range strings.Split(l.buf.String(), "\n") {
		if ln == "" {
			continue
		}
		for _, m := range match {
			if !strings.Contains(ln, m) {
				continue next
			}
		}
		out = append(out, ln)
	}
	return out, l.wake
}

func (l *clusterLogs) count(match ...string) int {
	ls, _ := l.lines(match...)
	return len(ls)
}

// waitFor waits up to d for n lines holding every one of match and returns
// the last of them.
func (l *clusterLogs) waitFor(t *testing.T, d time.Duration, n int, match ...string) string {
	t.Helper()
	deadline := time.After(d)
	for {
		ls, wake := l.lines(match...)
		if len(ls) >= n {
			return ls[n-1]
		}
		select {
		case <-wake:
		case <-deadline:
			all, _ := l.lines()
			t.Fatalf("no %d log lines with %q within %s; %d: %v\nthe log:\n%s", n, match, d, len(ls), ls, strings.Join(all, "\n"))
		}
	}
}

// startClusterLogged starts a one-node cluster engine (external NATS,
// node-0) whose log the test reads.
func startClusterLogged(t *testing.T, mutate ...func(*Config)) (*Engine, *clusterLogs) {
	t.Helper()
	url := externalNATS(t)
	logs := newClusterLogs()
	e := startEngineWithLogger(t, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		append([]func(*Config){func(c *Config) {
			c.DataDir, c.Cluster.NATSURL, c.Cluster.NodeName = DataDirMemory, url, "node-0"
			c.Cluster.NodeTimeout = 2 * time.Second
		}}, mutate...)...)
	return e, logs
}

// offlineCluster is an engine, not started, that believes itself node
// "self" of a cluster whose other members are members: for the functions
// that only read the membership (discovery), without NATS.
func offlineCluster(t *testing.T, members map[string]*memberState) *Engine {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = DataDirMemory
	e, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.cancel)
	e.cluster = &clusterNode{name: "self"}
	e.cluster.members.Store(&membership{e: e, members: members, timeout: time.Minute, changed: make(chan struct{}, 1)})
	return e
}

func strp(s string) *string { return &s }
