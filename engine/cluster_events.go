package engine

import (
	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/nats-io/nats.go"
)

// State and stream events across nodes. After a committed state or stream
// write (and a stream::send) the node publishes the event it fires on
// sluice.events; every other node fires its own state/stream bindings of
// it and pushes it to its stream clients. Fire-and-forget, as the events
// are on one node: a node cut off from NATS misses them.
const eventsSubject = "sluice.events"

type clusterEvent struct {
	Origin string `json:"origin"`
	Kind   string `json:"kind"` // "state" or "stream"
	// state: Scope, Key; stream: Scope is the stream name, Key the group,
	// Item the item id (if any).
	Scope string         `json:"scope"`
	Key   string         `json:"key"`
	Item  *string        `json:"item,omitzero"`
	Data  jsontext.Value `json:"data"` // the event as the bindings get it
}

// publishEvent sends an event fired here to the other nodes.
func (e *Engine) publishEvent(ev clusterEvent) {
	c := e.cluster
	if c == nil || c.router == nil {
		return
	}
	ev.Origin = c.name
	b, err := json.Marshal(ev)
	if err == nil {
		err = c.router.nc.Publish(eventsSubject, b)
	}
	if err != nil {
		if n := c.eventsLost.Add(1); n == 1 || n%1000 == 0 {
			e.log.Warn("cluster: event not sent to the other nodes", "kind", ev.Kind, "bytes", len(b), "err", err, "lost_total", n)
		}
	}
}

// event takes an event fired on another node.
func (r *clusterRouter) event(m *nats.Msg) {
	var ev clusterEvent
	if json.Unmarshal(m.Data, &ev, lenient) != nil || ev.Origin == r.e.cluster.name || len(ev.Data) == 0 {
		return
	}
	switch ev.Kind {
	case "state":
		if s := r.e.modules.state; s != nil {
			s.fireLocal(ev.Scope, ev.Key, ev.Data)
		}
	case "stream":
		if s := r.e.modules.streams; s != nil {
			s.fireLocal(ev.Scope, ev.Key, ev.Item, ev.Data)
		}
	}
}
