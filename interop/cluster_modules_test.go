package interop

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// clusterCronFires collects the runs of an every-second cron binding held
// by a Go client on each node: scheduled time → names of the nodes it ran on.
type clusterCronFires struct {
	mu   sync.Mutex
	runs map[string][]string
	new  chan struct{}
}

func (f *clusterCronFires) snapshot() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string][]string, len(f.runs))
	for k, v := range f.runs {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// TestClusterCronOncePerTime: three engine processes, each with a worker
// holding the same every-second cron schedule (own binding ids, as
// identical SDK workers on every node have). Over ~5 s each scheduled
// time runs exactly once in the cluster; after node 1 is SIGKILLed the
// schedule keeps running on the two others, still once per time.
// On 04c1a7a every scheduled time ran once per node (three times).
func TestClusterCronOncePerTime(t *testing.T) {
	nodes := startClusterEngines(t, 3)
	ctx := ctxFor(t, 90*time.Second)
	f := &clusterCronFires{runs: map[string][]string{}, new: make(chan struct{}, 1)}
	for i, n := range nodes {
		name := []string{"node-0", "node-1", "node-2"}[i]
		c := connectGo(t, n, "cron-on-"+name)
		if err := sluice.Register(c, "cluster::tick", func(ctx context.Context, in struct {
			ScheduledTime string `json:"scheduled_time"`
		}) (any, error) {
			f.mu.Lock()
			f.runs[in.ScheduledTime] = append(f.runs[in.ScheduledTime], name)
			f.mu.Unlock()
			select {
			case f.new <- struct{}{}:
			default:
			}
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.RegisterTrigger(sluice.TriggerSpec{Type: "cron", FunctionID: "cluster::tick", Config: map[string]any{"expression": "* * * * * *"}}); err != nil {
			t.Fatal(err)
		}
		waitFunctions(ctx, t, c, "cluster::tick")
	}
	// About five seconds of runs with all three nodes.
	window := time.After(5 * time.Second)
	<-window
	before := f.snapshot()
	if len(before) < 4 {
		t.Fatalf("%d scheduled times ran in 5 s with three nodes, want at least 4: %v", len(before), before)
	}
	nodes[1].kill()
	// Runs after the kill: at least three more scheduled times on the
	// surviving nodes (JetStream may pause for a leader election first).
	survivorRuns := func(all map[string][]string) int {
		n := 0
		for at, ran := range all {
			if _, old := before[at]; !old && len(ran) > 0 && ran[0] != "node-1" {
				n++
			}
		}
		return n
	}
	for survivorRuns(f.snapshot()) < 3 {
		select {
		case <-f.new:
		case <-ctx.Done():
			t.Fatalf("after node 1 was killed fewer than 3 scheduled times ran on nodes 0 and 2: %v", f.snapshot())
		}
	}
	all := f.snapshot()
	times := make([]string, 0, len(all))
	for at := range all {
		times = append(times, at)
	}
	sort.Strings(times)
	for _, at := range times {
		if len(all[at]) != 1 {
			t.Errorf("scheduled time %s ran on %v, want exactly one node", at, all[at])
		}
	}
	t.Logf("runs by scheduled time: %v", all)
}
