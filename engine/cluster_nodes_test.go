package engine

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/sluicehq/sluice/wire"
)

// startNodes runs n engines as cluster nodes on one external NATS server
// (in-process), named node-0 … node-n-1.
func startNodes(t *testing.T, n int, mutate ...func(*Config)) []*Engine {
	t.Helper()
	url := externalNATS(t)
	out := make([]*Engine, n)
	for i := range n {
		out[i] = startEngine(t, append([]func(*Config){func(c *Config) {
			c.DataDir, c.Cluster.NATSURL, c.Cluster.NodeName = DataDirMemory, url, fmt.Sprintf("node-%d", i)
			c.Cluster.NodeTimeout = 2 * time.Second
		}}, mutate...)...)
	}
	return out
}

// cronFire is one run of a cron binding as its worker saw it.
type cronFire struct {
	node      int
	scheduled string
}

// serveCron answers every invocation of fn on w, reporting each to fires,
// until the socket closes.
func serveCron(w *rawWorker, node int, fn string, fires chan<- cronFire) {
	for m := range w.in {
		if m.Type != wire.TypeInvokeFunction || m.FunctionID != fn {
			continue
		}
		var ev cronEvent
		_ = json.Unmarshal(m.Data, &ev)
		fires <- cronFire{node, ev.ScheduledTime}
		b, _ := wire.Marshal(&wire.Message{Type: wire.TypeInvocationResult, InvocationID: m.InvocationID, FunctionID: fn, Result: []byte("null")})
		_ = w.ws.WriteMessage(1, b)
	}
}

// TestClusterCronOncePerTime: three nodes each hold a binding of the same
// every-second schedule (its own worker, its own binding id, as SDK workers
// on every node would); each scheduled time runs on exactly one node.
// On the code before cluster_cron.go every time ran three times.
func TestClusterCronOncePerTime(t *testing.T) {
	nodes := startNodes(t, 3)
	fires := make(chan cronFire, 256)
	for i, e := range nodes {
		w := dialRaw(t, e)
		w.sendJSON(`{"type":"registerfunction","id":"cron::tick"}`)
		w.sendJSON(fmt.Sprintf(`{"type":"registertrigger","id":"tick-%d","trigger_type":"cron","function_id":"cron::tick","config":{"expression":"* * * * * *"}}`, i))
		go serveCron(w, i, "cron::tick", fires)
	}
	perTime := map[string][]int{}
	deadline := time.After(4500 * time.Millisecond)
collect:
	for {
		select {
		case f := <-fires:
			perTime[f.scheduled] = append(perTime[f.scheduled], f.node)
		case <-deadline:
			break collect
		}
	}
	if len(perTime) < 3 {
		t.Fatalf("only %d scheduled times ran in 4.5 s: %v", len(perTime), perTime)
	}
	for at, ran := range perTime {
		if len(ran) != 1 {
			t.Errorf("scheduled time %s ran on nodes %v, want exactly one", at, ran)
		}
	}
}
