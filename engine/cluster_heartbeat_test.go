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

	"github.com/sluicehq/sluice/internal/natsnode"
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
