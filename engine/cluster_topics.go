package engine

import (
	"errors"
	"slices"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

// Durable topics across nodes. A subscription (a durable:subscriber
// binding) lives where a single engine keeps it: in the memory of the node
// its worker registered it on, for as long as the binding lives there.
// Each node lists its subscriptions in its heartbeat (written at once when
// one is added or removed, cluster_members.go), and iii::durable::publish
// on any node stores one job per distinct function subscribed on any live
// node (topicSubscribers). The jobs are in the shared queue bucket, so the
// node serving the function leases and delivers them.
//
// A node that stops answering keeps its subscriptions counted until the
// others declare it gone (as its routes stay served): a publish meanwhile
// still stores the copies, which wait until the function registers
// somewhere (its worker reconnecting to another node). A node declared gone
// counts no more, as a worker disconnected from one engine: its worker
// subscribes again when it re-registers on another node.

// hbSubscription is a durable:subscriber binding in a heartbeat.
type hbSubscription struct {
	Topic       string         `json:"topic"`
	FunctionID  string         `json:"fn"`
	QueueConfig jsontext.Value `json:"qc,omitzero"`
}

// durableSubProvider is the durable:subscriber trigger type's provider: it
// checks a binding's config and keeps the active bindings for the
// heartbeat.
type durableSubProvider struct {
	e     *Engine
	local activeTriggers
}

func (p *durableSubProvider) RegisterTrigger(t *registry.Trigger) error {
	var c durableSubConfig
	if err := json.Unmarshal(wire.DataOrNull(t.Config), &c, lenient); err != nil || c.Topic == "" {
		return errors.New("durable:subscriber needs config.topic")
	}
	p.local.set(p.e, t, true) // beat now: the other nodes' publishes store its copies
	return nil
}

func (p *durableSubProvider) UnregisterTrigger(t *registry.Trigger) { p.local.set(p.e, t, false) }

// subscriptions lists this node's active subscriptions for the heartbeat,
// one per topic and function (the first binding's queue_config, by
// trigger id), sorted.
func (p *durableSubProvider) subscriptions() []hbSubscription {
	ts := p.local.sorted()
	var out []hbSubscription
	seen := map[string]bool{}
	for _, t := range ts {
		if _, ok := p.e.reg.Trigger(t.ID); !ok {
			continue // removed before it was active: its provider was not told
		}
		var c durableSubConfig
		if json.Unmarshal(wire.DataOrNull(t.Config), &c, lenient) != nil || c.Topic == "" {
			continue
		}
		if k := c.Topic + "\x00" + t.FunctionID; !seen[k] {
			seen[k] = true
			out = append(out, hbSubscription{Topic: c.Topic, FunctionID: t.FunctionID, QueueConfig: c.QueueConfig})
		}
	}
	slices.SortFunc(out, func(a, b hbSubscription) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return strings.Compare(a.FunctionID, b.FunctionID)
	})
	return out
}

// durableSubs is this engine's durable:subscriber provider.
func (e *Engine) durableSubs() *durableSubProvider {
	if ep := e.providers[triggerTypeDurableSub]; ep != nil {
		p, _ := ep.p.(*durableSubProvider)
		return p
	}
	return nil
}

// remoteSubscriptions lists the subscriptions of the other live nodes, in
// node name order (nil without a cluster).
func (e *Engine) remoteSubscriptions() []hbSubscription {
	var out []hbSubscription
	for _, m := range e.liveMembers() {
		out = append(out, m.subs...)
	}
	return out
}
