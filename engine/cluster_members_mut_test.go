package engine

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/registry"
)

// mutOwner is a worker owning a function or trigger type in the registry.
type mutOwner string

func (o mutOwner) OwnerID() string { return string(o) }

// routesSpy stands for the HTTP trigger server and records the other
// nodes' routes it is handed.
type routesSpy struct {
	httpTriggers
	mu   sync.Mutex
	sets [][]string // trigger ids, one list per SetRemoteRoutes
}

func (s *routesSpy) SetRemoteRoutes(ts []*registry.Trigger) []error {
	ids := []string{}
	for _, t := range ts {
		ids = append(ids, t.Owner+":"+t.ID)
	}
	s.mu.Lock()
	s.sets = append(s.sets, ids)
	s.mu.Unlock()
	return nil
}

// last returns how many times routes were set, and the last routes.
func (s *routesSpy) last() (int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sets) == 0 {
		return 0, nil
	}
	return len(s.sets), s.sets[len(s.sets)-1]
}

func spyRoutes(e *Engine) *routesSpy {
	s := &routesSpy{httpTriggers: e.http.httpTriggers}
	e.http.httpTriggers = s
	return s
}

// TestRemoteFunctionsListFilters: engine::functions::list's functions of
// other nodes, ordered by id then namespace, under each filter, a function
// served here too left out, nothing without a cluster or a membership.
// Kills cluster_members.go:424, :428, :432 (each negated), :442 (`c != 0`
// negated: ordered by namespace), :451, :453, :454 ×2, :455 ×2 and :456
// (each filter's condition negated or its boundary moved).
func TestRemoteFunctionsListFilters(t *testing.T) {
	e := offlineCluster(t, map[string]*memberState{
		"a": {functions: []hbFunction{
			{ID: "pay::refund", Namespace: "zz", Worker: "billing", Description: "Gives money back"},
			{ID: "pay::charge", Worker: "billing", Description: "Charges a CARD"},
			{ID: "mail::send", Worker: "mail"},
			{ID: "local::fn", Worker: "mail"},
			{ID: "secret::fn", Worker: "mail", Metadata: jsontext.Value(`{"internal":true}`)},
			{ID: "hidden::fn", Worker: "ops"},
		}},
		"b": {functions: []hbFunction{{ID: "pay::charge", Worker: "billing-b"}, {ID: "sms::send", Worker: "sms"}}},
		"z": {gone: true, functions: []hbFunction{{ID: "gone::fn", Worker: "gone"}}},
	})
	if err := e.reg.RegisterFunction(&registry.Function{ID: "local::fn", Owner: mutOwner("w-local")}); err != nil {
		t.Fatal(err)
	}
	list := func(in functionsFilter, visible func(*registry.Function) bool) []string {
		var ids []string
		for _, f := range e.appendRemoteFunctions([]functionSummary{{FunctionID: "first"}}, in, strings.ToLower(in.Search), visible) {
			ids = append(ids, f.Namespace+"/"+f.FunctionID+"@"+f.Node)
		}
		return ids
	}
	for _, c := range []struct {
		name    string
		in      functionsFilter
		visible func(*registry.Function) bool
		want    []string
	}{
		{"all", functionsFilter{}, nil, []string{"/first@", "default/hidden::fn@a", "default/mail::send@a", "default/pay::charge@a", "zz/pay::refund@a", "default/sms::send@b"}},
		{"internal too", functionsFilter{IncludeInternal: true}, nil, []string{"/first@", "default/hidden::fn@a", "default/mail::send@a", "default/pay::charge@a", "zz/pay::refund@a", "default/secret::fn@a", "default/sms::send@b"}},
		{"visible", functionsFilter{}, func(f *registry.Function) bool { return f.ID != "hidden::fn" }, []string{"/first@", "default/mail::send@a", "default/pay::charge@a", "zz/pay::refund@a", "default/sms::send@b"}},
		{"prefix", functionsFilter{Prefix: "pay::"}, nil, []string{"/first@", "default/pay::charge@a", "zz/pay::refund@a"}},
		{"worker", functionsFilter{Worker: "mail"}, nil, []string{"/first@", "default/mail::send@a"}},
		{"workers", functionsFilter{Workers: []string{"sms", "ops"}}, nil, []string{"/first@", "default/hidden::fn@a", "default/sms::send@b"}},
		{"search id", functionsFilter{Search: "SEND"}, nil, []string{"/first@", "default/mail::send@a", "default/sms::send@b"}},
		{"search description", functionsFilter{Search: "card"}, nil, []string{"/first@", "default/pay::charge@a"}},
	} {
		if got := list(c.in, c.visible); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}

	// Without a cluster, a membership, or other nodes' functions: the list
	// as it was.
	plain := offlineCluster(t, nil)
	plain.cluster = nil
	if got := plain.appendRemoteFunctions(nil, functionsFilter{}, "", nil); got != nil {
		t.Errorf("without a cluster: %v", got)
	}
	plain.cluster = &clusterNode{name: "self"}
	if got := plain.appendRemoteFunctions(nil, functionsFilter{}, "", nil); got != nil {
		t.Errorf("before the membership started: %v", got)
	}
	empty := offlineCluster(t, map[string]*memberState{"a": {}})
	if got := empty.appendRemoteFunctions([]functionSummary{}, functionsFilter{}, "", nil); got == nil || len(got) != 0 {
		t.Errorf("no function on the other nodes: %#v, want the empty list back", got)
	}
}

// TestRemoteWorkersAndNodeName: the workers of the other live nodes, each
// with its node; none without a cluster or a membership; this node's name
// ("" without a cluster); a function's namespace defaulted. Kills
// cluster_members.go:415, :465, :487 and :491 (each negated).
func TestRemoteWorkersAndNodeName(t *testing.T) {
	e := offlineCluster(t, map[string]*memberState{
		"a": {workers: []workerSummary{{ID: "wa1"}, {ID: "wa2", Node: "stale"}}},
		"b": {workers: []workerSummary{{ID: "wb1"}}},
		"z": {gone: true, workers: []workerSummary{{ID: "wz1"}}},
	})
	var got []string
	for _, w := range e.remoteWorkers() {
		got = append(got, w.Node+"/"+w.ID)
	}
	slices.Sort(got)
	if want := []string{"a/wa1", "a/wa2", "b/wb1"}; !slices.Equal(got, want) {
		t.Fatalf("remote workers %v, want %v", got, want)
	}
	if n := e.nodeName(); n != "self" {
		t.Fatalf("nodeName %q, want self", n)
	}
	e.cluster.members.Store(nil)
	if ws := e.remoteWorkers(); ws != nil {
		t.Fatalf("before the membership started: %v", ws)
	}
	e.cluster = nil
	if ws, n := e.remoteWorkers(), e.nodeName(); ws != nil || n != "" {
		t.Fatalf("without a cluster: %v, node name %q", ws, n)
	}
	if a, b := nsOrDefault(""), nsOrDefault("team"); a != registry.DefaultNamespace || b != "team" {
		t.Fatalf("nsOrDefault: %q, %q", a, b)
	}
}

// putKV records the heartbeats written to it.
type putKV struct {
	jetstream.KeyValue
	puts [][]byte
}

func (p *putKV) Put(_ context.Context, _ string, b []byte) (uint64, error) {
	p.puts = append(p.puts, b)
	return uint64(len(p.puts)), nil
}

// TestHeartbeatSchemasBound: a heartbeat lists the workers' functions
// (not the engine's) with their schemas, and the trigger types workers
// provide (not the engine's); a heartbeat of exactly maxHeartbeatSchemas
// bytes keeps the schemas, one byte more goes without them. Kills
// cluster_members.go:188 (`w != ""` negated: the engine's types listed,
// the workers' not) and :199 ×2 (`>` → `>=`: the schemas dropped at
// exactly the bound; negated: dropped from every small heartbeat).
func TestHeartbeatSchemasBound(t *testing.T) {
	e := offlineCluster(t, nil)
	kv := &putKV{}
	m := &membership{e: e, kv: kv, key: nodeKey("self")}
	if _, err := e.reg.RegisterTriggerType(&registry.TriggerType{ID: "engine-type", Provider: &invocation.EngineExecutor{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.RegisterTriggerType(&registry.TriggerType{ID: "worker-type", Provider: mutOwner("w1"), Description: "d"}); err != nil {
		t.Fatal(err)
	}
	if err := e.reg.RegisterFunction(&registry.Function{ID: "engine-fn", Owner: &invocation.EngineExecutor{}}); err != nil {
		t.Fatal(err)
	}
	f := &registry.Function{ID: "big::fn", Owner: mutOwner("w1"), ResponseFormat: jsontext.Value(`{"type":"string"}`)}
	if err := e.reg.RegisterFunction(f); err != nil {
		t.Fatal(err)
	}
	beat := func(pad int) (int, heartbeat) {
		t.Helper()
		f.RequestFormat = jsontext.Value(`{"p":"` + strings.Repeat("x", pad) + `"}`)
		if err := m.beat(context.Background()); err != nil {
			t.Fatal(err)
		}
		b := kv.puts[len(kv.puts)-1]
		var hb heartbeat
		if err := json.Unmarshal(b, &hb); err != nil {
			t.Fatal(err)
		}
		return len(b), hb
	}
	n, hb := beat(10)
	if len(hb.Functions) != 1 || hb.Functions[0].ID != "big::fn" || hb.Functions[0].WorkerID != "w1" || len(hb.Functions[0].Request) == 0 ||
		string(hb.Functions[0].Response) != `{"type":"string"}` {
		t.Fatalf("a small heartbeat's functions: %+v", hb.Functions)
	}
	if len(hb.TriggerTypes) != 1 || hb.TriggerTypes[0].ID != "worker-type" || hb.TriggerTypes[0].WorkerID != "w1" || hb.TriggerTypes[0].Description != "d" {
		t.Fatalf("a heartbeat's trigger types: %+v, want the worker's only", hb.TriggerTypes)
	}
	// The time field has 13 digits for centuries: the size moves with the pad only.
	pad := 10 + maxHeartbeatSchemas - n
	if n, hb = beat(pad); n != maxHeartbeatSchemas || len(hb.Functions[0].Request) == 0 || len(hb.Functions[0].Response) == 0 {
		t.Fatalf("a heartbeat of %d bytes (the bound is %d) lost its schemas", n, maxHeartbeatSchemas)
	}
	if n, hb = beat(pad + 1); len(hb.Functions[0].Request) != 0 || len(hb.Functions[0].Response) != 0 || n >= maxHeartbeatSchemas {
		t.Fatalf("a heartbeat one byte over the bound kept its schemas (%d bytes)", n)
	}
}

// TestSeenStaleAndRoutes: a heartbeat written more than node_timeout ago
// (replayed at start) makes a member that is stale at once and whose
// routes are not served; a fresh one is live with its routes served; the
// same routes again are not handed over again, unless the member had been
// declared gone; a member declared gone that answers again is live again
// and its routes are served again (none handed over for a member without
// routes). Kills cluster_members.go:243 (`>` negated: every heartbeat
// taken as stale), :244 (`-m.timeout` → `+`: a stale heartbeat taken as
// fresh for twice node_timeout), :258 ×2 (`rk != st.routesKey` negated:
// changed routes not served; `rk != ""` negated: the routes of a member
// back from gone not served again), :133 (negated: a late member that
// answers not marked seen) and :139 ×2 (`len(st.routes) > 0` → `>=`, `<=`).
func TestSeenStaleAndRoutes(t *testing.T) {
	e := offlineCluster(t, map[string]*memberState{})
	spy := spyRoutes(e)
	m := e.cluster.membersNow()
	state := func(name string) memberState {
		m.mu.Lock()
		defer m.mu.Unlock()
		return *m.members[name]
	}
	route := []hbRoute{{ID: "r1", FunctionID: "f", Config: jsontext.Value(`{"api_path":"/r1"}`)}}

	m.seen("old", time.Now().Add(-time.Hour), heartbeat{Routes: route})
	if st := state("old"); st.lastSeen.After(time.Now().Add(-m.timeout)) || st.routes != nil || st.gone {
		t.Fatalf("a heartbeat an hour old: last seen %s ago, routes %v; want stale (node_timeout %s ago) without routes",
			time.Since(st.lastSeen), st.routes, m.timeout)
	}
	if n, _ := spy.last(); n != 0 {
		t.Fatalf("routes handed over for a stale heartbeat: %d", n)
	}

	before := time.Now()
	m.seen("live", before, heartbeat{Routes: route})
	if st := state("live"); st.lastSeen.Before(before) || len(st.routes) != 1 {
		t.Fatalf("a fresh heartbeat: last seen %s, routes %v; want now, with its route", st.lastSeen, st.routes)
	}
	if n, ids := spy.last(); n != 1 || !slices.Equal(ids, []string{"live/:r1"}) {
		t.Fatalf("after a fresh heartbeat with a route: %d route sets, last %v", n, ids)
	}
	m.seen("live", time.Now(), heartbeat{Routes: route})
	if n, _ := spy.last(); n != 1 {
		t.Fatalf("the same routes again were handed over again (%d sets)", n)
	}
	route2 := append(slices.Clone(route), hbRoute{ID: "r2", FunctionID: "f", Config: jsontext.Value(`{"api_path":"/r2"}`)})
	m.seen("live", time.Now(), heartbeat{Routes: route2})
	if n, ids := spy.last(); n != 2 || !slices.Equal(ids, []string{"live/:r1", "live/:r2"}) {
		t.Fatalf("after a route was added: %d route sets, last %v", n, ids)
	}

	// Declared gone (its routes no longer served), then its heartbeat with
	// the same routes again.
	m.mu.Lock()
	m.members["live"].gone = true
	m.mu.Unlock()
	m.updateRoutes()
	if n, ids := spy.last(); n != 3 || len(ids) != 0 {
		t.Fatalf("after the member was gone: %d route sets, last %v", n, ids)
	}
	m.seen("live", time.Now(), heartbeat{Routes: route2})
	if n, ids := spy.last(); n != 4 || len(ids) != 2 || state("live").gone {
		t.Fatalf("a member back from gone with the same routes: %d route sets, last %v", n, ids)
	}

	// Gone, then answering again: live, its routes served again.
	m.mu.Lock()
	m.members["live"].gone = true
	m.mu.Unlock()
	m.updateRoutes()
	before = time.Now()
	m.stillThere("live")
	if st := state("live"); st.gone || st.lastSeen.Before(before) {
		t.Fatalf("a member that answers again: %+v", st)
	}
	if n, ids := spy.last(); n != 6 || len(ids) != 2 {
		t.Fatalf("a member with routes that answers again: %d route sets, last %v; want its routes served again", n, ids)
	}
	// Late but never gone: marked seen, routes untouched.
	m.mu.Lock()
	m.members["live"].lastSeen = time.Now().Add(-time.Hour)
	m.mu.Unlock()
	before = time.Now()
	m.stillThere("live")
	if st := state("live"); st.lastSeen.Before(before) {
		t.Fatalf("a late member that answers: last seen %s ago, want now", time.Since(st.lastSeen))
	}
	// A member without routes back from gone: nothing to hand over.
	m.seen("bare", time.Now(), heartbeat{})
	m.mu.Lock()
	m.members["bare"].gone = true
	m.mu.Unlock()
	m.stillThere("bare")
	m.stillThere("nobody") // unknown: nothing
	if n, _ := spy.last(); n != 6 || state("bare").gone {
		t.Fatalf("a member without routes back from gone: %d route sets, want 6 still", n)
	}
}

// TestAliveWait: the wait for a node's "still there" answer is half the
// node timeout, at least 250 ms and at most 2 s. Kills (at the lines of
// the run, before aliveWait was split out of answering) cluster_members.go
// :111 `timeout/2` → `*2` (a 2 s node timeout waited 2 s, twice as long,
// before declaring a node gone) and `250*time.Millisecond` → `/` (the
// floor, which a node_timeout of at least 500 ms, as validated, never
// reaches).
func TestAliveWait(t *testing.T) {
	for _, c := range []struct{ timeout, want time.Duration }{
		{100 * time.Millisecond, 250 * time.Millisecond},
		{500 * time.Millisecond, 250 * time.Millisecond},
		{2 * time.Second, time.Second},
		{3 * time.Second, 1500 * time.Millisecond},
		{10 * time.Second, 2 * time.Second},
	} {
		if got := aliveWait(c.timeout); got != c.want {
			t.Errorf("aliveWait(%s) = %s, want %s", c.timeout, got, c.want)
		}
	}
}
