package engine

import (
	"slices"
	"strings"
	"sync"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

// HTTP routes across nodes. Each node lists the http triggers it serves in
// its heartbeat (cluster_members.go); every other node serves them too, as
// remote routes of its HTTP trigger server, and invokes their functions
// through the Invoker like any other call, so a function served on
// another node goes there by NATS request/reply (cluster_invoke.go). A
// node's own routes win over the others'. A route leaves the other nodes
// when its node's next heartbeat (written at once on a change) no longer
// lists it, or when the node leaves the cluster.

// hbRoute is an http trigger in a heartbeat.
type hbRoute struct {
	ID         string         `json:"id"`
	FunctionID string         `json:"fn"`
	Namespace  string         `json:"ns,omitzero"`
	Holder     string         `json:"holder,omitzero"`
	Worker     string         `json:"worker,omitzero"` // its worker's name, for discovery
	Config     jsontext.Value `json:"config,omitzero"`
	Metadata   jsontext.Value `json:"metadata,omitzero"`
}

// httpProvider is the http trigger type's provider: the HTTP trigger
// server, plus the table of the routes it serves for the heartbeat.
type httpProvider struct {
	httpTriggers
	e     *Engine
	local activeTriggers
}

// activeTriggers is a provider's table of the bindings active on this node,
// for its part of the heartbeat.
type activeTriggers struct {
	mu sync.Mutex
	m  map[string]*registry.Trigger // by trigger id
}

// set adds t (add) or removes it, then makes the next heartbeat go now.
func (a *activeTriggers) set(e *Engine, t *registry.Trigger, add bool) {
	a.mu.Lock()
	if add {
		if a.m == nil {
			a.m = map[string]*registry.Trigger{}
		}
		a.m[t.ID] = t
	} else {
		delete(a.m, t.ID)
	}
	a.mu.Unlock()
	e.routesChanged()
}

// sorted lists the table by trigger id.
func (a *activeTriggers) sorted() []*registry.Trigger {
	a.mu.Lock()
	ts := make([]*registry.Trigger, 0, len(a.m))
	for _, t := range a.m {
		ts = append(ts, t)
	}
	a.mu.Unlock()
	slices.SortFunc(ts, func(x, y *registry.Trigger) int { return strings.Compare(x.ID, y.ID) })
	return ts
}

func (p *httpProvider) RegisterTrigger(t *registry.Trigger) error {
	if err := p.httpTriggers.RegisterTrigger(t); err != nil {
		return err
	}
	p.local.set(p.e, t, true)
	return nil
}

func (p *httpProvider) UnregisterTrigger(t *registry.Trigger) {
	p.httpTriggers.UnregisterTrigger(t)
	p.local.set(p.e, t, false)
}

// routes lists the routes served here, by trigger id.
func (p *httpProvider) routes() []hbRoute {
	ts := p.local.sorted()
	out := make([]hbRoute, 0, len(ts))
	for _, t := range ts {
		out = append(out, hbRoute{ID: t.ID, FunctionID: t.FunctionID, Namespace: t.Namespace, Holder: t.Holder(), Config: t.Config, Metadata: t.Metadata,
			Worker: p.e.workerName(t.Owner, t.FunctionID)})
	}
	return out
}

// routesChanged makes the next heartbeat go now (cluster mode).
func (e *Engine) routesChanged() {
	if c := e.cluster; c != nil {
		if m := c.membersNow(); m != nil {
			m.functionsChanged()
		}
	}
}

// routesKey is a heartbeat's routes in comparable form.
func routesKey(rs []hbRoute) string {
	if len(rs) == 0 {
		return ""
	}
	b, _ := json.Marshal(rs)
	return string(b)
}

// updateRoutes hands the HTTP trigger server the routes of the live
// nodes, in node name order (of two conflicting routes, the first node's
// is served).
func (m *membership) updateRoutes() {
	m.routesMu.Lock()
	defer m.routesMu.Unlock()
	m.mu.Lock()
	names := make([]string, 0, len(m.members))
	for name, st := range m.members {
		if !st.gone && len(st.routes) > 0 {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var ts []*registry.Trigger
	for _, name := range names {
		for _, r := range m.members[name].routes {
			ts = append(ts, &registry.Trigger{ID: r.ID, Type: "http", FunctionID: r.FunctionID, Namespace: r.Namespace,
				Config: r.Config, Metadata: r.Metadata, Owner: name + "/" + r.Holder, Active: true})
		}
	}
	m.mu.Unlock()
	for _, err := range m.e.http.SetRemoteRoutes(ts) {
		m.e.log.Warn("cluster: another node's http route not served here", "err", err)
	}
}

// hbTrigger is a binding of a trigger type other than http in a heartbeat:
// listed by the other nodes' discovery, served only where it was registered.
type hbTrigger struct {
	ID         string         `json:"id"`
	Type       string         `json:"type"`
	FunctionID string         `json:"fn"`
	Namespace  string         `json:"ns,omitzero"`
	Holder     string         `json:"holder,omitzero"`
	Worker     string         `json:"worker,omitzero"`
	Config     jsontext.Value `json:"config,omitzero"`
}

// localTriggers lists the active bindings of this node's workers of every
// trigger type but http (the routes carry those), by id.
func (e *Engine) localTriggers() []hbTrigger {
	var out []hbTrigger
	for _, t := range e.reg.Triggers("") {
		if t.Type == wire.TriggerTypeHTTP || !t.Active || t.Owner == "" {
			continue // durable bindings (no owner) are not this node's alone
		}
		out = append(out, hbTrigger{ID: t.ID, Type: t.Type, FunctionID: t.FunctionID, Namespace: t.Namespace, Holder: t.Holder(), Config: t.Config,
			Worker: e.workerName(t.Owner, t.FunctionID)})
	}
	slices.SortFunc(out, func(a, b hbTrigger) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// remoteRoutes lists the bindings of the other live nodes (their http
// routes, and their other triggers as of their last heartbeat), each with
// its node, for engine::registered-triggers::list.
func (e *Engine) remoteRoutes() []registeredTrigger {
	var out []registeredTrigger
	e.eachLiveMember(func(name string, st *memberState) {
		for _, r := range st.routes {
			cfg := wire.DataOrNull(r.Config)
			out = append(out, registeredTrigger{ID: r.ID, TriggerType: wire.TriggerTypeHTTP, FunctionID: r.FunctionID, WorkerName: r.Worker,
				Config: cfg, ConfigSummary: configSummary(cfg), Active: true, Node: name})
		}
		for _, r := range st.triggers {
			cfg := wire.DataOrNull(r.Config)
			out = append(out, registeredTrigger{ID: r.ID, TriggerType: r.Type, FunctionID: r.FunctionID, WorkerName: r.Worker,
				Config: cfg, ConfigSummary: configSummary(cfg), Active: true, Node: name})
		}
	})
	slices.SortFunc(out, func(a, b registeredTrigger) int {
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}
