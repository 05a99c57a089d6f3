package interop

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestClusterExitWithoutQuorum: of three engine processes, two are
// SIGKILLed; the last one, left without a JetStream quorum, still exits
// promptly on SIGTERM, logging "engine stopped" (its shutdown only waits
// for its own leave, bounded by 1 s).
// On ed56023 it took 5.5 s: stopping each KV watcher waited for the
// JetStream API to delete its consumer, up to the 5 s API timeout.
func TestClusterExitWithoutQuorum(t *testing.T) {
	nodes := startClusterEngines(t, 3)
	for _, n := range nodes[1:] {
		n.kill()
		<-n.exited
	}
	const bound = 4 * time.Second // the old code: at least 5 s
	began := time.Now()
	_ = nodes[0].cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-nodes[0].exited:
	case <-time.After(bound):
		t.Fatalf("node 0 (without quorum) did not exit %v after SIGTERM", bound)
	}
	took := time.Since(began)
	if !strings.Contains(nodes[0].stderr.String(), `msg="engine stopped"`) {
		t.Fatalf("node 0 exited after %v without stopping cleanly: %v", took, nodes[0].err)
	}
	t.Logf("node 0 exited %v after SIGTERM", took.Round(time.Millisecond))
}
