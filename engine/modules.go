package engine

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/internal/state"
	"github.com/sluicehq/sluice/wire"
)

// The platform modules (upstream's iii-state, iii-pubsub, iii-cron): each
// can be turned off; all are on by default. Streams use the state
// module's value size limit.

// StateConfig configures the state module (state::*, trigger type state).
type StateConfig struct {
	Enabled bool `yaml:"enabled"`
	// MaxValueBytes bounds a stored value's JSON (state::set, and the
	// result of state::update): larger ones are refused VALUE_TOO_LARGE.
	MaxValueBytes ByteSize `yaml:"max_value_bytes"`
}

// ModuleConfig switches a module without settings of its own.
type ModuleConfig struct {
	Enabled bool `yaml:"enabled"`
}

func defaultStateConfig() StateConfig { return StateConfig{Enabled: true, MaxValueBytes: 1 << 20} }

// startModules starts what listens or runs in the background (Start).
func (e *Engine) startModules() {
	if m := e.modules.streams; m != nil {
		m.hub.start()
	}
}

// stopModules stops it (Shutdown).
func (e *Engine) stopModules() {
	if m := e.modules.streams; m != nil {
		m.hub.stop()
	}
}

// StreamClientsAddr is the address of the stream client WebSocket, "" when
// not served.
func (e *Engine) StreamClientsAddr() string {
	if m := e.modules.streams; m != nil {
		return m.hub.Addr()
	}
	return ""
}

func (c *Config) validateModules() error {
	if c.State.MaxValueBytes < 0 {
		return fmt.Errorf("config: state.max_value_bytes must not be negative (0: only max_message_size bounds a value)")
	}
	return c.PubSub.validate()
}

func (e *Engine) registerModules() {
	e.modules.events = make(chan struct{}, maxEventDeliveries)
	if e.cfg.State.Enabled {
		e.registerState()
	}
	if e.cfg.Streams.Enabled {
		e.registerStreams()
	}
	if e.cfg.PubSub.Enabled {
		e.registerPubSub()
	}
	if e.cfg.Cron.Enabled {
		e.registerCron()
	}
}

// moduleTrigger is a binding of a module's trigger type with its parsed
// config.
type moduleTrigger[C any] struct {
	t   *registry.Trigger
	cfg C
}

// moduleTriggers keeps the bindings of one engine-provided trigger type.
// parse checks a binding's config; a parse error rejects the binding.
type moduleTriggers[C any] struct {
	mu     sync.RWMutex
	m      map[string]*moduleTrigger[C]
	parse  func(raw jsontext.Value) (C, error)
	onAdd  func(*moduleTrigger[C])
	onDrop func(*moduleTrigger[C])
}

func newModuleTriggers[C any](parse func(jsontext.Value) (C, error)) *moduleTriggers[C] {
	return &moduleTriggers[C]{m: map[string]*moduleTrigger[C]{}, parse: parse}
}

func (p *moduleTriggers[C]) RegisterTrigger(t *registry.Trigger) error {
	c, err := p.parse(t.Config)
	if err != nil {
		return err
	}
	mt := &moduleTrigger[C]{t: t, cfg: c}
	// onAdd and onDrop run under the lock (they must not block), so that a
	// binding is never dropped before it is fully added.
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.m[t.ID]; old != nil && p.onDrop != nil {
		p.onDrop(old)
	}
	p.m[t.ID] = mt
	if p.onAdd != nil {
		p.onAdd(mt)
	}
	return nil
}

func (p *moduleTriggers[C]) UnregisterTrigger(t *registry.Trigger) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.m[t.ID]; old != nil && p.onDrop != nil {
		p.onDrop(old)
	}
	delete(p.m, t.ID)
}

// matching returns the bindings whose config match accepts.
func (p *moduleTriggers[C]) matching(match func(*C) bool) []*moduleTrigger[C] {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var out []*moduleTrigger[C]
	for _, mt := range p.m {
		if match(&mt.cfg) {
			out = append(out, mt)
		}
	}
	return out
}

// parseConfig decodes a binding's config (null or absent: the zero C).
func parseConfig[C any](raw jsontext.Value) (C, error) {
	var c C
	if len(raw) == 0 || string(raw) == "null" {
		return c, nil
	}
	if err := json.Unmarshal(raw, &c, lenient); err != nil {
		return c, fmt.Errorf("invalid trigger config: %w", err)
	}
	return c, nil
}

// moduleCallTimeout bounds a condition or handler call made by a module
// when invocation_timeout is off.
const moduleCallTimeout = 5 * time.Minute

// callAndWait invokes a function as the engine and waits for its answer.
func (e *Engine) callAndWait(fnID string, data, metadata jsontext.Value) (jsontext.Value, *wire.ErrorBody) {
	return e.callAndWaitIn("", fnID, data, metadata)
}

// callAndWaitIn is callAndWait in namespace ns ("" is the default one).
func (e *Engine) callAndWaitIn(ns, fnID string, data, metadata jsontext.Value) (jsontext.Value, *wire.ErrorBody) {
	ch := make(chan invocation.Result, 1)
	e.inv.Invoke(&invocation.Request{FunctionID: fnID, Namespace: ns, Data: data, Metadata: metadata}, func(r invocation.Result) {
		// The value may live in the executor's read buffer: copy it.
		ch <- invocation.Result{Value: bytes.Clone(r.Value), Err: r.Err}
	})
	timer := time.NewTimer(moduleCallTimeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		return r.Value, r.Err
	case <-timer.C:
		return nil, &wire.ErrorBody{Code: wire.CodeTimeout, Message: "function " + quote(fnID) + " did not answer within " + moduleCallTimeout.String()}
	case <-e.ctx.Done():
		return nil, &wire.ErrorBody{Code: wire.CodeEngineShuttingDown, Message: "engine shutting down"}
	}
}

// conditionPasses runs a binding's condition function: only an answer of
// exactly false skips the handler; a failed condition call skips it too
// (logged), as upstream does.
func (e *Engine) conditionPasses(part, conditionID string, t *registry.Trigger, data jsontext.Value) bool {
	if conditionID == "" {
		return true
	}
	v, errBody := e.callAndWaitIn(t.Namespace, conditionID, data, nil)
	if errBody != nil {
		e.log.Warn("trigger condition failed; handler skipped", "part", part, "trigger_id", t.ID,
			"condition_function_id", conditionID, "code", errBody.Code, "message", errBody.Message)
		return false
	}
	return string(bytes.TrimSpace(v)) != "false"
}

// runTrigger calls a binding's handler with data after its condition, and
// logs a failure.
func (e *Engine) runTrigger(ctx context.Context, part, conditionID string, t *registry.Trigger, data jsontext.Value) {
	if ctx.Err() != nil || !e.conditionPasses(part, conditionID, t, data) {
		return
	}
	if _, errBody := e.callAndWaitIn(t.Namespace, t.FunctionID, data, t.Metadata); errBody != nil {
		e.log.Warn("trigger handler failed", "part", part, "trigger_id", t.ID, "function_id", t.FunctionID,
			"code", errBody.Code, "message", errBody.Message)
	}
}

// modules holds the platform modules' state (Engine.modules).
type modules struct {
	state   *stateModule
	streams *streamModule
	pubsub  *pubsubModule
	cron    *cronModule

	kvMu sync.Mutex
	kv   state.Store // state and stream values; nil until opened (kvStore)

	// events bounds the event deliveries (state, stream) running
	// at once; an event that finds no slot is dropped and counted, so that
	// slow handlers under a write burst cannot pile up goroutines.
	events  chan struct{}
	dropped atomic.Int64
}

// maxEventDeliveries is the size of modules.events.
const maxEventDeliveries = 10_000

// deliver runs fn (the calls of one event's bindings) in the background
// if a delivery slot is free, else drops the event.
func (e *Engine) deliver(part string, fn func()) {
	select {
	case e.modules.events <- struct{}{}:
	default:
		if n := e.modules.dropped.Add(1); n == 1 || n%1000 == 0 {
			e.log.Warn("event dropped: too many event deliveries in flight (slow trigger handlers)", "part", part,
				"in_flight", cap(e.modules.events), "dropped_total", n)
		}
		return
	}
	go func() {
		defer func() { <-e.modules.events }()
		fn()
	}()
}
