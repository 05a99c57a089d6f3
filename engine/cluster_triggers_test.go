package engine

import (
	"testing"
	"time"

	"github.com/go-json-experiment/json"
)

// TestClusterTriggersListed: a worker's subscribe and cron bindings on
// node 0 are listed by node 1's engine::registered-triggers::list (all
// types, and filtered by type), with node 0 as their node, and in node 1's
// engine::functions::info of the function; once the worker
// unregisters one,
// node 1 stops listing it. The node timeout of 10 minutes puts the
// heartbeat's tick at 150 s: the listing comes from the beat made on the
// change. Before: node 1 listed other nodes' http triggers only.
func TestClusterTriggersListed(t *testing.T) {
	nodes := startNodes(t, 2, func(c *Config) { c.Cluster.NodeTimeout = 10 * time.Minute })
	w := dialRaw(t, nodes[0])
	w.sendJSON(`{"type":"registerfunction","id":"app::on"}`)
	w.sendJSON(`{"type":"registertrigger","id":"sub-1","trigger_type":"subscribe","function_id":"app::on","config":{"topic":"orders"}}`)
	w.sendJSON(`{"type":"registertrigger","id":"cron-1","trigger_type":"cron","function_id":"app::on","config":{"expression":"0 0 0 1 1 *"}}`)
	lister := dialRaw(t, nodes[1])
	list := func(in string) map[string]registeredTrigger {
		var out struct {
			Triggers []registeredTrigger `json:"registered_triggers"`
		}
		if err := json.Unmarshal([]byte(callOK(t, lister, "engine::registered-triggers::list", in)), &out); err != nil {
			t.Fatal(err)
		}
		m := map[string]registeredTrigger{}
		for _, r := range out.Triggers {
			m[r.ID] = r
		}
		return m
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := list(`{}`)
		if got["sub-1"].Node == "node-0" && got["cron-1"].Node == "node-0" {
			if s := got["sub-1"]; s.TriggerType != "subscribe" || s.FunctionID != "app::on" || string(s.Config) != `{"topic":"orders"}` {
				t.Fatalf("node 1 lists sub-1 as %+v", s)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 1 lists %+v, want node 0's sub-1 and cron-1", got)
		}
		time.Sleep(20 * time.Millisecond) // node 0's heartbeat has not arrived yet
	}
	var info struct {
		Node      string       `json:"node"`
		Triggered []triggerRef `json:"registered_triggers"`
	}
	if err := json.Unmarshal([]byte(callOK(t, lister, "engine::functions::info", `{"function_id":"app::on"}`)), &info); err != nil {
		t.Fatal(err)
	}
	if info.Node != "node-0" || len(info.Triggered) != 2 || info.Triggered[0].ID != "cron-1" || info.Triggered[0].TriggerType != "cron" || info.Triggered[1].ID != "sub-1" {
		t.Fatalf("node 1's engine::functions::info of node 0's function: %+v, want its cron-1 and sub-1", info)
	}
	if got := list(`{"trigger_type":"cron"}`); len(got) != 1 || got["cron-1"].Node != "node-0" {
		t.Fatalf("node 1's list of cron bindings: %+v, want node 0's cron-1 only", got)
	}
	if got := list(`{"trigger_type":"http"}`); len(got) != 0 {
		t.Fatalf("node 1's list of http bindings: %+v, want none", got)
	}
	w.sendJSON(`{"type":"unregistertrigger","id":"sub-1","trigger_type":"subscribe"}`)
	for {
		got := list(`{}`)
		if _, ok := got["sub-1"]; !ok {
			if got["cron-1"].Node != "node-0" {
				t.Fatalf("node 1 lost cron-1 too: %+v", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 1 still lists sub-1 after node 0's worker removed it: %+v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
