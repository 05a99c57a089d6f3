package engine

import (
	"bytes"
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
// Deliveries are bounded, never silently lost: up to
// pubsub.max_concurrent_deliveries run at once (condition, handler, its
// answer), the rest wait in one queue (pubsub.max_pending_deliveries).
// A delivery is a chain of invocations, each continued by its completion
// on the goroutine that produced the answer (the subscriber's reader): no
// goroutine is started for, or waits on, a delivery. publish starts the
// deliveries it has room for on the caller's reader, so a publish to many
// bindings of one worker connection goes out in one write (the reader's
// write batch); a finished delivery starts the next queued one the same
// way, on the subscriber's reader. publish answers once every delivery is
// started or queued; when the queue is full it waits for room, off the
// caller's reader (a connection that publishes and subscribes keeps
// reading its handlers' answers), for up to pubsub.publish_timeout. What
// still found no room then is dropped, counted, logged, and the publish
// answers PUBLISH_CONGESTED naming how many subscribers missed it.

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

type subscribeConfig struct {
	Topic               string `json:"topic"`
	ConditionFunctionID string `json:"condition_function_id"`
}

type pubsubModule struct {
	e        *Engine
	cfg      PubSubConfig
	triggers *moduleTriggers[subscribeConfig]

	queue   chan pubsubDelivery
	running atomic.Int32 // deliveries started and not finished
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

func (m *pubsubModule) publish(_ context.Context, req *invocation.Request, in publishInput, done func(jsontext.Value, *wire.ErrorBody)) {
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
		d := pubsubDelivery{mt, data}
		// Started at once while there is room and nothing queued ahead.
		if len(m.queue) == 0 && m.acquire() {
			m.drive(&pubsubRun{m: m, d: d}, req.Batch)
			continue
		}
		select {
		case m.queue <- d:
			m.pump(req.Batch)
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
				m.pump(nil)
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

// acquire takes a delivery slot if one is free.
func (m *pubsubModule) acquire() bool {
	for {
		n := m.running.Load()
		if int(n) >= m.cfg.MaxConcurrentDeliveries {
			return false
		}
		if m.running.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// claim takes a queued delivery with a free slot; nil: none, or no slot.
func (m *pubsubModule) claim() *pubsubRun {
	for len(m.queue) > 0 && m.acquire() {
		select {
		case d := <-m.queue:
			return &pubsubRun{m: m, d: d}
		default:
			m.running.Add(-1) // taken by someone else meanwhile
		}
	}
	return nil
}

// pump starts queued deliveries while there are slots. Whoever queues a
// delivery pumps after it, and whoever ends one takes the next (finish):
// nothing stays queued while a slot is free.
func (m *pubsubModule) pump(batch invocation.WriteBatch) {
	for r := m.claim(); r != nil; r = m.claim() {
		m.drive(r, batch)
	}
}

// finish ends a delivery: its slot goes to the next queued one, returned
// to be run by the caller, if there is one.
func (m *pubsubModule) finish() *pubsubRun {
	select {
	case d := <-m.queue:
		return &pubsubRun{m: m, d: d}
	default:
	}
	m.running.Add(-1)
	return m.claim() // one queued after the look above
}

// pubsubRun is one delivery under way: its condition (if any), then its
// handler.
type pubsubRun struct {
	m       *pubsubModule
	d       pubsubDelivery
	handler bool // the condition passed, or there is none: the handler's call is next
	// phase of the call under way: whether Invoke has returned, or the
	// completion came first (a builtin, an executor gone or congested) and
	// left the rest to drive's loop: no recursion however many deliveries
	// fail at once.
	phase atomic.Int32
	next  bool // set by the completion: the handler is to be called next
}

const (
	callStarted = iota
	callReturned
	callDoneInline
)

// drive runs r's calls until one of them is answered later (its completion
// carries on), then returns. batch is the calling goroutine's write batch
// (nil: none).
func (m *pubsubModule) drive(r *pubsubRun, batch invocation.WriteBatch) {
	for r != nil {
		mt := r.d.mt
		if m.e.ctx.Err() != nil { // shutting down: what is left is not delivered
			r = m.finish()
			continue
		}
		if !r.handler && mt.cfg.ConditionFunctionID == "" {
			r.handler = true
		}
		req := &invocation.Request{FunctionID: mt.cfg.ConditionFunctionID, Namespace: mt.t.Namespace, Data: r.d.data, Batch: batch}
		if r.handler {
			req.FunctionID, req.Metadata = mt.t.FunctionID, mt.t.Metadata
		}
		r.phase.Store(callStarted)
		m.e.inv.Invoke(req, m.completion(r))
		if r.phase.CompareAndSwap(callStarted, callReturned) {
			return
		}
		r = r.after()
	}
}

// completion is the Completion of r's current call. Without an engine
// invocation_timeout, moduleCallTimeout bounds it (a hung handler must
// not keep its slot for ever).
func (m *pubsubModule) completion(r *pubsubRun) invocation.Completion {
	if m.e.cfg.InvocationTimeout > 0 {
		return r.complete
	}
	var once atomic.Bool
	var t *time.Timer
	t = time.AfterFunc(moduleCallTimeout, func() {
		if once.CompareAndSwap(false, true) {
			r.complete(invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeTimeout, Message: "function did not answer within " + moduleCallTimeout.String()}})
		}
	})
	return func(res invocation.Result) {
		if once.CompareAndSwap(false, true) {
			t.Stop()
			r.complete(res)
		}
	}
}

func (r *pubsubRun) complete(res invocation.Result) {
	mt := r.d.mt
	r.next = false
	switch {
	case !r.handler && res.Err != nil:
		r.m.e.log.Warn("trigger condition failed; handler skipped", "part", "pubsub", "trigger_id", mt.t.ID,
			"condition_function_id", mt.cfg.ConditionFunctionID, "code", res.Err.Code, "message", res.Err.Message)
	case !r.handler:
		r.next = string(bytes.TrimSpace(res.Value)) != "false"
	case res.Err != nil:
		r.m.e.log.Warn("trigger handler failed", "part", "pubsub", "trigger_id", mt.t.ID, "function_id", mt.t.FunctionID,
			"code", res.Err.Code, "message", res.Err.Message)
	}
	if r.phase.CompareAndSwap(callStarted, callDoneInline) {
		return // drive, still in Invoke, carries on
	}
	r.m.drive(r.after(), res.Batch)
}

// after is the run to drive once r's call is answered: r itself (its
// handler is next), the next queued delivery, or nil.
func (r *pubsubRun) after() *pubsubRun {
	if r.next {
		r.handler = true
		return r
	}
	return r.m.finish()
}

// deliverLocal queues this node's deliveries of a message published on
// another node (cluster mode). Nobody waits for it: deliveries that find no
// room are dropped and counted, as a publish past publish_timeout would.
func (m *pubsubModule) deliverLocal(topic string, data jsontext.Value) {
	list := m.triggers.matching(func(c *subscribeConfig) bool { return c.Topic == topic })
	for i, mt := range list {
		d := pubsubDelivery{mt, data}
		if len(m.queue) == 0 && m.acquire() {
			m.drive(&pubsubRun{m: m, d: d}, nil)
			continue
		}
		select {
		case m.queue <- d:
			m.pump(nil)
		default:
			m.drop(topic, len(list)-i, len(list), "published on another node; no room")
			return
		}
	}
}
