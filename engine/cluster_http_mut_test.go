package engine

import (
	"testing"
	"time"
)

// TestClusterRemoteRoutesOrder: engine::registered-triggers::list shows the
// other nodes' http routes by node name, then by id within a node, whatever
// the order of their heartbeats (kills cluster_http.go:138
// CONDITIONALS_NEGATION: routes of one node kept in heartbeat order, those
// of different nodes ordered by id).
func TestClusterRemoteRoutesOrder(t *testing.T) {
	// A long node timeout: the members put in by hand are not declared
	// gone while the test runs.
	e := startNodes(t, 1, func(c *Config) { c.Cluster.NodeTimeout = time.Minute })[0]
	m := e.cluster.membersNow()
	m.mu.Lock()
	m.members["node-a"] = &memberState{lastSeen: time.Now(), routes: []hbRoute{{ID: "z", FunctionID: "a::z"}, {ID: "y", FunctionID: "a::y"}}}
	m.members["node-b"] = &memberState{lastSeen: time.Now(), routes: []hbRoute{{ID: "a", FunctionID: "b::a"}}}
	m.mu.Unlock()
	got := e.remoteRoutes()
	want := []struct{ node, id string }{{"node-a", "y"}, {"node-a", "z"}, {"node-b", "a"}}
	if len(got) != len(want) {
		t.Fatalf("remote routes %+v, want %v", got, want)
	}
	for i, w := range want {
		if got[i].Node != w.node || got[i].ID != w.id || got[i].FunctionID != w.node[len(w.node)-1:]+"::"+w.id {
			t.Fatalf("remote route %d: %+v, want %v", i, got[i], w)
		}
	}
}
