package engine

import (
	"slices"
	"strings"

	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

// Discovery across nodes: what engine::functions::info, engine::workers::info
// and engine::triggers::list show of the other nodes, from their last
// heartbeats (cluster_members.go), each entry with its node. The lists
// (engine::functions::list, engine::workers::list) are in
// cluster_members.go.

// liveMembers returns the other live nodes' states in node name order,
// copied out of the membership lock (nil without a cluster).
func (e *Engine) liveMembers() []liveMember {
	var out []liveMember
	e.eachLiveMember(func(name string, st *memberState) {
		out = append(out, liveMember{name: name, functions: st.functions, workers: st.workers, routes: st.routes, types: st.types, triggers: st.triggers, subs: st.subs})
	})
	slices.SortFunc(out, func(a, b liveMember) int { return strings.Compare(a.name, b.name) })
	return out
}

type liveMember struct {
	name      string
	functions []hbFunction
	workers   []workerSummary
	routes    []hbRoute
	types     []hbTriggerType
	triggers  []hbTrigger
	subs      []hbSubscription
}

// remoteFunctionDetail is engine::functions::info of a function served on
// another node (the first in name order; without a namespace the default
// one is preferred), with the registry view of it for visibility rules;
// nil when no other node serves it.
func (e *Engine) remoteFunctionDetail(id string, ns *string) (*functionDetail, *registry.Function) {
	var pick *hbFunction
	var node string
	var routes []hbRoute
	var others []hbTrigger
	for _, m := range e.liveMembers() {
		for i, f := range m.functions {
			fns := nsOrDefault(f.Namespace)
			if f.ID != id || (ns != nil && fns != *ns) {
				continue
			}
			if pick == nil || (ns == nil && fns == registry.DefaultNamespace && nsOrDefault(pick.Namespace) != registry.DefaultNamespace) {
				pick, node, routes, others = &m.functions[i], m.name, m.routes, m.triggers
			}
		}
	}
	if pick == nil {
		return nil, nil
	}
	fns := nsOrDefault(pick.Namespace)
	d := &functionDetail{FunctionID: id, Namespace: fns, WorkerName: pick.Worker, Description: pick.Description,
		RequestSchema: pick.Request, ResponseSchema: pick.Response, Metadata: pick.Metadata, RegisteredTriggers: []triggerRef{}, Node: node}
	// The other node's bindings, as of its last heartbeat.
	for _, r := range routes {
		if r.FunctionID == id && nsOrDefault(r.Namespace) == fns {
			d.RegisteredTriggers = append(d.RegisteredTriggers, triggerRef{ID: r.ID, TriggerType: wire.TriggerTypeHTTP, Config: wire.DataOrNull(r.Config)})
		}
	}
	for _, r := range others {
		if r.FunctionID == id && nsOrDefault(r.Namespace) == fns {
			d.RegisteredTriggers = append(d.RegisteredTriggers, triggerRef{ID: r.ID, TriggerType: r.Type, Config: wire.DataOrNull(r.Config)})
		}
	}
	return d, &registry.Function{Namespace: fns, ID: id, Description: pick.Description, Metadata: pick.Metadata}
}

// remoteWorkerInfo is engine::workers::info of a worker connected to
// another node, by id or by name (as pickWorker: the default namespace
// wins); nil when none matches.
func (e *Engine) remoteWorkerInfo(in workersInfoInput) map[string]any {
	var w *workerSummary
	var at liveMember
	for _, m := range e.liveMembers() {
		for i, c := range m.workers {
			byName := c.Name != nil && *c.Name == in.Name && (in.Namespace == nil || orDefault(c.Namespace) == *in.Namespace)
			if c.ID != in.Name && !byName {
				continue
			}
			if w == nil || c.ID == in.Name || (orDefault(c.Namespace) == wire.DefaultNamespace && orDefault(w.Namespace) != wire.DefaultNamespace) {
				w, at = &m.workers[i], m
			}
		}
	}
	if w == nil {
		return nil
	}
	s := *w
	s.Node = at.name
	fns := []functionSummary{}
	for _, f := range at.functions {
		if f.WorkerID == s.ID {
			fns = append(fns, functionSummary{FunctionID: f.ID, Namespace: nsOrDefault(f.Namespace), WorkerName: f.Worker, Description: f.Description,
				Metadata: f.Metadata, Node: at.name})
		}
	}
	types := []triggerTypeSummary{}
	for _, t := range at.types {
		if t.WorkerID == s.ID {
			types = append(types, triggerTypeSummary{ID: t.ID, WorkerName: t.Worker, Description: t.Description, Node: at.name})
		}
	}
	regs := []registeredTrigger{}
	for _, r := range at.routes {
		if r.Holder == s.ID {
			cfg := wire.DataOrNull(r.Config)
			regs = append(regs, registeredTrigger{ID: r.ID, TriggerType: wire.TriggerTypeHTTP, FunctionID: r.FunctionID, WorkerName: r.Worker,
				Config: cfg, ConfigSummary: configSummary(cfg), Active: true, Node: at.name})
		}
	}
	for _, r := range at.triggers {
		if r.Holder == s.ID {
			cfg := wire.DataOrNull(r.Config)
			regs = append(regs, registeredTrigger{ID: r.ID, TriggerType: r.Type, FunctionID: r.FunctionID, WorkerName: r.Worker,
				Config: cfg, ConfigSummary: configSummary(cfg), Active: true, Node: at.name})
		}
	}
	info := struct {
		workerSummary
		Internal bool `json:"internal"`
	}{workerSummary: s}
	return map[string]any{"worker": info, "functions": fns, "trigger_types": types, "registered_triggers": regs}
}

// remoteTriggerTypes lists the trigger types provided by workers on other
// nodes and not registered here (a type provided on several nodes is
// listed once, from the first node in name order).
func (e *Engine) remoteTriggerTypes() []triggerTypeSummary {
	var out []triggerTypeSummary
	seen := map[string]bool{}
	for _, m := range e.liveMembers() {
		for _, t := range m.types {
			if seen[t.ID] {
				continue
			}
			seen[t.ID] = true
			if _, local := e.reg.TriggerType(t.ID); local {
				continue
			}
			out = append(out, triggerTypeSummary{ID: t.ID, WorkerName: t.Worker, Description: t.Description, Node: m.name})
		}
	}
	return out
}
