package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/wire"
)

// PubSub: upstream's iii-pubsub. publish {topic, data} calls every binding
// of trigger type "subscribe" with that topic once, with data as its
// input; nothing is stored.
//
// Deliveries are bounded, never silently lost: each goes into one queue
// (pubsub.max_pending_deliveries) served by up to
// pubsub.max_concurrent_deliveries long-lived runners, each running one
// delivery at a time (condition, handler, its answer). publish answers
// once every delivery is queued; when the queue is full it waits for room,
// off the caller's reader (a connection that publishes and subscribes
// keeps reading its handlers' answers), for up to pubsub.publish_timeout.
// What still found no room then is dropped, counted, logged, and the
// publish answers PUBLISH_CONGESTED naming how many subscribers missed it.

const triggerTypeSubscribe = "subscribe"

// PubSubConfig configures the pubsub module (publish, trigger type
// subscribe).
type PubSubConfig struct {
	Enabled bool `yaml:"enabled"`
	// MaxPendingDeliveries bounds the deliveries queued for a runner, all
	// topics together; a publish that finds the queue full waits.
	MaxPendingDeliveries int `yaml:"max_pending_deliveries"`
	// MaxConcurrentDeliveries bounds the deliveries running at once.
	MaxConcurrentDeliveries int `yaml:"max_concurrent_deliveries"`
	// PublishTimeout bounds a publish's wait for room in the queue.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
}

func defaultPubSubConfig() PubSubConfig {
	return PubSubConfig{Enabled: true, MaxPendingDeliveries: 10_000, MaxConcurrentDeliveries: 1024, PublishTimeout: 10 * time.Second}
}

func (c *PubSubConfig) validate() error {
	switch {
	case c.MaxPendingDeliveries < 1:
		return fmt.Errorf("config: pubsub.max_pending_deliveries must be at least 1")
	case c.MaxConcurrentDeliveries < 1:
		return fmt.Errorf("config: pubsub.max_concurrent_deliveries must be at least 1")
	case c.PublishTimeout <= 0:
		return fmt.Errorf("config: pubsub.publish_timeout must be positive")
	}
	return nil
}

// maxWaitingPublishes bounds the publishes waiting for room at once (each
// holds a goroutine); past it a publish that finds no room fails at once.
const maxWaitingPublishes = 4096

// runnerIdle is how long an idle runner waits for work before it exits.
const runnerIdle = time.Second

type subscribeConfig struct {
	Topic               string `json:"topic"`
	ConditionFunctionID string `json:"condition_function_id"`
}

type pubsubModule struct {
	e        *Engine
	cfg      PubSubConfig
	triggers *moduleTriggers[subscribeConfig]

	queue   chan pubsubDelivery
	runners atomic.Int32 // runner goroutines alive
	idle    atomic.Int32 // of which waiting for work
	waiting atomic.Int32 // publishes waiting for room
	dropped atomic.Int64 // deliveries dropped, in total
}

type pubsubDelivery struct {
	mt   *moduleTrigger[subscribeConfig]
	data jsontext.Value
}

func (e *Engine) registerPubSub() {
	m := &pubsubModule{e: e, cfg: e.cfg.PubSub, triggers: newModuleTriggers(func(raw jsontext.Value) (subscribeConfig, error) {
		c, err := parseConfig[subscribeConfig](raw)
		if err == nil && c.Topic == "" {
			err = errors.New("subscribe trigger: topic is required")
		}
		return c, err
	})}
	m.queue = make(chan pubsubDelivery, m.cfg.MaxPendingDeliveries)
	e.modules.pubsub = m
	e.addEngineTriggerType(triggerTypeSubscribe, "Subscribe to a topic", m.triggers)
	e.addDeferred("publish", deferredBuiltin(m.publish))
}

type publishInput struct {
	Topic string         `json:"topic"`
	Data  jsontext.Value `json:"data"`
}

func (m *pubsubModule) publish(_ context.Context, _ *invocation.Request, in publishInput, done func(jsontext.Value, *wire.ErrorBody)) {
	if in.Topic == "" {
		done(nil, &wire.ErrorBody{Code: "topic_not_set", Message: "Topic is not set"})
		return
	}
	data := jsontext.Value("null")
	if len(in.Data) > 0 {
		data = append(jsontext.Value(nil), in.Data...)
	}
	if c := m.e.cluster; c != nil {
		c.router.publish(in.Topic, data) // the other nodes' subscribers
	}
	list := m.triggers.matching(func(c *subscribeConfig) bool { return c.Topic == in.Topic })
	for i, mt := range list {
		select {
		case m.queue <- pubsubDelivery{mt, data}:
			m.wake()
		default:
			m.wait(in.Topic, list[i:], len(list), data, done)
			return
		}
	}
	done(jsontext.Value("null"), nil)
}

// wait queues the rest of a publish's deliveries as room frees up, on a
// goroutine of its own, and answers the publish.
func (m *pubsubModule) wait(topic string, rest []*moduleTrigger[subscribeConfig], total int, data jsontext.Value, done func(jsontext.Value, *wire.ErrorBody)) {
	if m.waiting.Add(1) > maxWaitingPublishes {
		m.waiting.Add(-1)
		done(nil, m.drop(topic, len(rest), total, strconv.Itoa(maxWaitingPublishes)+" publishes already wait for room"))
		return
	}
	go func() {
		defer m.waiting.Add(-1)
		timer := time.NewTimer(m.cfg.PublishTimeout)
		defer timer.Stop()
		for i, mt := range rest {
			select {
			case m.queue <- pubsubDelivery{mt, data}:
				m.wake()
			case <-timer.C:
				done(nil, m.drop(topic, len(rest)-i, total, "no room within publish_timeout ("+m.cfg.PublishTimeout.String()+")"))
				return
			case <-m.e.ctx.Done():
				done(nil, m.drop(topic, len(rest)-i, total, "engine shutting down"))
				return
			}
		}
		done(jsontext.Value("null"), nil)
	}()
}

// drop counts and logs n deliveries of a publish that will not happen and
// returns the publish's error.
func (m *pubsubModule) drop(topic string, n, total int, why string) *wire.ErrorBody {
	if d := m.dropped.Add(int64(n)); d == int64(n) || d/1000 != (d-int64(n))/1000 {
		m.e.log.Warn("pubsub deliveries dropped: subscribers too slow", "topic", topic, "dropped", n, "dropped_total", d,
			"reason", why, "max_pending_deliveries", m.cfg.MaxPendingDeliveries)
	}
	return &wire.ErrorBody{Code: "PUBLISH_CONGESTED", Message: fmt.Sprintf(
		"%d of %d subscribers of topic %q did not get this message: %d deliveries wait for slow subscribers (pubsub.max_pending_deliveries) and %s",
		n, total, topic, m.cfg.MaxPendingDeliveries, why)}
}

// wake starts a runner when more deliveries wait than runners idle, and
// the bound allows one.
func (m *pubsubModule) wake() {
	if len(m.queue) <= int(m.idle.Load()) {
		return
	}
	for {
		n := m.runners.Load()
		if int(n) >= m.cfg.MaxConcurrentDeliveries {
			return
		}
		if m.runners.CompareAndSwap(n, n+1) {
			go m.run()
			return
		}
	}
}

// run serves deliveries until none came for runnerIdle. Long-lived: a
// fresh goroutine per delivery spent much of its time growing its stack.
func (m *pubsubModule) run() {
	timer := time.NewTimer(runnerIdle)
	defer timer.Stop()
	for {
		var d pubsubDelivery
		select {
		case d = <-m.queue:
		default:
			m.idle.Add(1)
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			timer.Reset(runnerIdle)
			select {
			case d = <-m.queue:
				m.idle.Add(-1)
			case <-timer.C:
				m.idle.Add(-1)
				m.runners.Add(-1)
				// A delivery queued while this runner was leaving must
				// not wait for the next publish.
				if len(m.queue) > 0 {
					m.wake()
				}
				return
			case <-m.e.ctx.Done():
				m.idle.Add(-1)
				m.runners.Add(-1)
				return
			}
		}
		m.e.runTrigger(m.e.ctx, "pubsub", d.mt.cfg.ConditionFunctionID, d.mt.t, d.data)
	}
}

// deliverLocal queues this node's deliveries of a message published on
// another node (cluster mode). Nobody waits for it: deliveries that find no
// room are dropped and counted, as a publish past publish_timeout would.
func (m *pubsubModule) deliverLocal(topic string, data jsontext.Value) {
	list := m.triggers.matching(func(c *subscribeConfig) bool { return c.Topic == topic })
	for i, mt := range list {
		select {
		case m.queue <- pubsubDelivery{mt, data}:
			m.wake()
		default:
			m.drop(topic, len(list)-i, len(list), "published on another node; no room")
			return
		}
	}
}
