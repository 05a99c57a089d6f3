package engine

import (
	"net/http"
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

// TestClusterRouteChangesAnnounced: an http route registered on node 0 is
// served by node 1 at once (node 0's heartbeat goes on the change, not at
// its next tick), and so is a second route added to the first (kills
// cluster_http.go:84 CONDITIONALS_NEGATION: no heartbeat on the change;
// :92 CONDITIONALS_NEGATION: any non-empty route list had the same key,
// so a second route never reached node 1). The node timeout of 10 minutes
// puts the heartbeat's tick at 150 s, far past the 10 s the test waits.
func TestClusterRouteChangesAnnounced(t *testing.T) {
	nodes := startNodes(t, 2, func(c *Config) { c.Cluster.NodeTimeout = 10 * time.Minute })
	w := dialRaw(t, nodes[0])
	w.sendJSON(`{"type":"registerfunction","id":"web::fn"}`)
	go serveRaw(w, "web::fn", `{"status_code":200,"body":"node-0"}`, make(chan struct{}, 64))
	// The routes are registered on another connection: w's socket is
	// written by serveRaw (one writer at a time).
	r := dialRaw(t, nodes[0])
	for _, path := range []string{"one", "two"} {
		r.sendJSON(`{"type":"registertrigger","id":"` + path + `","trigger_type":"http","function_id":"web::fn","config":{"api_path":"/` + path + `","http_method":"GET"}}`)
		code, body := httpGetUntil(t, nodes[1].HTTPURL()+"/"+path, func(code int, _ string) bool { return code != http.StatusNotFound })
		if code != http.StatusOK || body != `"node-0"` {
			t.Fatalf("GET /%s on node 1: %d %s, want node 0's answer", path, code, body)
		}
	}
}
