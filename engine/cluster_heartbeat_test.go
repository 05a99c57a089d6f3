package engine

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/internal/natsnode"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

// TestClusterHeartbeatTrimmed: a node whose functions' descriptions and
// metadata make its heartbeat larger than NATS's max payload writes it
// without them: the other node still lists its functions, with their
// node, and the node is not taken for gone. On 44fdc11 the heartbeat write
// failed ("maximum payload exceeded") and node 1 never listed them.
func TestClusterHeartbeatTrimmed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const maxPayload = 192 << 10
	n, err := natsnode.Start(ctx, natsnode.Config{NodeName: "external", StoreDir: t.TempDir(), ClientListen: addr, MaxPayload: maxPayload})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	nodes := make([]*Engine, 2)
	for i := range nodes {
		nodes[i] = startEngine(t, func(c *Config) {
			c.DataDir, c.Cluster.NATSURL, c.Cluster.NodeName = DataDirMemory, "nats://"+addr, fmt.Sprintf("node-%d", i)
			c.Cluster.NodeTimeout = 2 * time.Second
		})
	}
	w := dialRaw(t, nodes[0])
	meta := `{"blob":"` + strings.Repeat("m", 32<<10) + `"}`
	const fns = 8 // 256 KiB of metadata
	for i := range fns {
		w.sendJSON(fmt.Sprintf(`{"type":"registerfunction","id":"big::%d","description":"a described function","metadata":%s}`, i, meta))
	}
	waitFunction(t, w, fmt.Sprintf("big::%d", fns-1))
	on1 := dialRaw(t, nodes[1])
	var fn struct {
		Node        string         `json:"node"`
		Description string         `json:"description"`
		Metadata    jsontext.Value `json:"metadata"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := on1.callSkipping(invocationID(), "engine::functions::info", fmt.Sprintf(`{"function_id":"big::%d"}`, fns-1))
		if m.Error == nil {
			if err := json.Unmarshal(m.Result, &fn); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 1 never listed node 0's functions: %+v", m.Error)
		}
		time.Sleep(20 * time.Millisecond) // node 0's heartbeat has not arrived yet
	}
	if fn.Node != "node-0" || fn.Description != "" || len(fn.Metadata) > 4 {
		t.Fatalf("node 1 shows node 0's function as node %q, description %q, %d bytes of metadata; want node-0 without them", fn.Node, fn.Description, len(fn.Metadata))
	}
}

// TestClusterFunctionsAvailableAcrossNodes: an engine::functions-available
// binding on node 1 fires when a function registers on node 0, listing it,
// and again when it goes away. On 44fdc11 it fired for node 1's own
// functions only (the event named none of node 0's).
func TestClusterFunctionsAvailableAcrossNodes(t *testing.T) {
	nodes := startNodes(t, 2)
	w1 := dialRaw(t, nodes[1])
	w1.announce("watcher")
	w1.sendJSON(`{"type":"registerfunction","id":"watch::fa"}`)
	w1.sendJSON(`{"type":"registertrigger","id":"fa","trigger_type":"engine::functions-available","function_id":"watch::fa","config":{}}`)
	w1.call("sync", wire.FnChannelsCreate, `{}`) // the binding is in place once this answers
	lists := func(m wire.Message, fn string) bool {
		var ev struct {
			Functions []struct {
				FunctionID string `json:"function_id"`
				Node       string `json:"node"`
			} `json:"functions"`
		}
		_ = json.Unmarshal(m.Data, &ev)
		for _, f := range ev.Functions {
			if f.FunctionID == fn && f.Node == "node-0" {
				return true
			}
		}
		return false
	}
	w0 := dialRaw(t, nodes[0])
	w0.sendJSON(`{"type":"registerfunction","id":"remote::fn"}`)
	w1.awaitInvoke("watch::fa", func(m wire.Message) bool { return lists(m, "remote::fn") })
	w0.ws.Close()
	w1.awaitInvoke("watch::fa", func(m wire.Message) bool { return !lists(m, "remote::fn") })
}

// TestHeartbeatListsOfferedFunctions: a heartbeat lists a worker's
// function only once this node's subscription for its calls is in place,
// so a node that sees it listed can call it. On 44fdc11 the heartbeat
// listed every registered function: another node could list one whose
// calls no node received yet (a void call then vanished unseen; the flaky
// interop test TestClusterOfficialSDKCalls waited 90 s for one).
func TestHeartbeatListsOfferedFunctions(t *testing.T) {
	e := offlineCluster(t, nil)
	kv := &putKV{}
	m := &membership{e: e, kv: kv, key: nodeKey("self")}
	e.cluster.router = &clusterRouter{e: e, subs: map[fnKey]*nats.Subscription{{registry.DefaultNamespace, "on::offered"}: {}}}
	for _, id := range []string{"on::offered", "on::pending"} {
		if err := e.reg.RegisterFunction(&registry.Function{ID: id, Owner: mutOwner("w1")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.beat(context.Background()); err != nil {
		t.Fatal(err)
	}
	var hb heartbeat
	if err := json.Unmarshal(kv.puts[len(kv.puts)-1], &hb); err != nil {
		t.Fatal(err)
	}
	if len(hb.Functions) != 1 || hb.Functions[0].ID != "on::offered" {
		t.Fatalf("heartbeat lists %+v, want on::offered only", hb.Functions)
	}
}
