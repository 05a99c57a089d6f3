package engine

import (
	"context"
	stdjson "encoding/json"
	"errors"
	"fmt"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/queue"
	"github.com/sluicehq/sluice/internal/state"
	"github.com/sluicehq/sluice/internal/wsconn"
	"github.com/sluicehq/sluice/wire"
)

// State: upstream's iii-state. Values live in the queue's store file
// (internal/state through the queue's group-commit writer), or in memory
// with data_dir "memory". Each write is atomic per key; state::update reads,
// applies its operations and writes in one transaction, so concurrent
// increments are never lost. Bindings of trigger type "state" are called
// after the write commits.

const (
	triggerTypeState = "state"
	stateNS          = "state" // the store namespace of state values
)

type stateTriggerConfig struct {
	Scope               *string `json:"scope"`
	Key                 *string `json:"key"`
	ConditionFunctionID string  `json:"condition_function_id"`
}

type stateModule struct {
	e        *Engine
	triggers *moduleTriggers[stateTriggerConfig]
}

func (e *Engine) registerState() {
	m := &stateModule{e: e, triggers: newModuleTriggers(parseConfig[stateTriggerConfig])}
	e.modules.state = m
	e.addEngineTriggerType(triggerTypeState, "Fired when a state value is created, updated or deleted (state:created|updated|deleted)", m.triggers)
	// Writes are submitted to the store from the caller's reader, in
	// arrival order, and answered after their group commit (deferred): the
	// connection keeps reading, its other writes join the same commit, and
	// its answers come in the order of its calls. Reads answer from the
	// store at once, on the reader.
	e.addDeferred("state::set", deferredBuiltin(m.set))
	e.addBuiltin("state::get", builtin(m.get), false)
	e.addDeferred("state::delete", deferredBuiltin(m.delete))
	e.addDeferred("state::update", deferredBuiltin(m.update))
	e.addBuiltin("state::list", builtin(m.list), false)
	e.addBuiltin("state::list_groups", builtin(m.listGroups), false)
}

// kvStore returns the store shared by state and streams. Without create,
// a durable store whose file does not exist yet is not created (nil: no
// values).
func (e *Engine) kvStore(create bool) (state.Store, error) {
	mods := &e.modules
	mods.kvMu.Lock()
	defer mods.kvMu.Unlock()
	if mods.kv != nil {
		return mods.kv, nil
	}
	if e.cluster != nil {
		mods.kv = e.cluster.kv
		return mods.kv, nil
	}
	if e.cfg.DataDir == DataDirMemory {
		mods.kv = state.NewMemory()
		return mods.kv, nil
	}
	q := e.queues
	q.mu.Lock()
	qs := q.store
	q.mu.Unlock()
	if qs == nil {
		if !create {
			return nil, nil
		}
		var err error
		if qs, err = q.open(); err != nil {
			return nil, err
		}
	}
	sq, ok := qs.(*queue.SQLite)
	if !ok {
		return nil, errors.New("the queue store is not SQLite")
	}
	s, err := state.OpenSQLite(context.Background(), sq)
	if err != nil {
		return nil, err
	}
	mods.kv = s
	return s, nil
}

type stateKeyInput struct {
	Scope *string `json:"scope"`
	Key   *string `json:"key"`
}

func (in *stateKeyInput) check(fn string) *wire.ErrorBody {
	switch {
	case in.Scope == nil:
		return &wire.ErrorBody{Code: wire.CodeDeserializationError, Message: "invalid input for " + fn + ": missing field `scope`"}
	case in.Key == nil:
		return &wire.ErrorBody{Code: wire.CodeDeserializationError, Message: "invalid input for " + fn + ": missing field `key`"}
	}
	return nil
}

type stateSetInput struct {
	stateKeyInput
	Value jsontext.Value `json:"value"`
	Data  jsontext.Value `json:"data"` // upstream's alias of value
}

// setResult is {old_value, new_value} (state::set, stream::set); old_value
// is null when there was none.
type setResult struct {
	OldValue jsontext.Value  `json:"old_value"`
	NewValue jsontext.Value  `json:"new_value"`
	Errors   []state.OpError `json:"errors,omitempty"`
}

func orNull(v []byte, ok bool) jsontext.Value {
	if !ok || len(v) == 0 {
		return jsontext.Value("null")
	}
	return jsontext.Value(v)
}

// compactJSON returns v compacted into a fresh buffer (v may live in a
// connection's read buffer).
func compactJSON(v jsontext.Value) ([]byte, error) {
	c := jsontext.Value(append([]byte(nil), v...))
	if err := c.Compact(); err != nil {
		return nil, err
	}
	return c, nil
}

func (m *stateModule) tooLarge(n int) *wire.ErrorBody { return m.e.valueTooLarge(n) }

// valueTooLarge enforces state.max_value_bytes (state values and stream
// items).
func (e *Engine) valueTooLarge(n int) *wire.ErrorBody {
	limit := int(e.cfg.State.MaxValueBytes)
	if limit <= 0 || n <= limit {
		return nil
	}
	return &wire.ErrorBody{Code: "VALUE_TOO_LARGE", Message: fmt.Sprintf("value of %d bytes exceeds the configured max_value_bytes limit of %d", n, limit)}
}

// answerIn names b, the store writer's write batch (nil: none), for a
// deferred builtin's answer given on that goroutine (a nil *wsconn.Batch
// must not become a non-nil WriteBatch).
func answerIn(req *invocation.Request, b *wsconn.Batch) {
	if b != nil {
		req.AnswerBatch = b
	}
}

func storeErr(code, what string, err error) *wire.ErrorBody {
	return &wire.ErrorBody{Code: code, Message: "Failed to " + what + ": " + err.Error()}
}

func (m *stateModule) set(ctx context.Context, req *invocation.Request, in stateSetInput, done func(any, *wire.ErrorBody)) {
	if e := in.check("state::set"); e != nil {
		done(nil, e)
		return
	}
	raw := in.Value
	if len(raw) == 0 {
		raw = in.Data
	}
	if len(raw) == 0 {
		done(nil, &wire.ErrorBody{Code: wire.CodeDeserializationError, Message: "invalid input for state::set: missing field `value`"})
		return
	}
	v, err := compactJSON(raw)
	if err != nil {
		done(nil, &wire.ErrorBody{Code: wire.CodeDeserializationError, Message: "invalid input for state::set: " + err.Error()})
		return
	}
	if e := m.tooLarge(len(v)); e != nil {
		done(nil, e)
		return
	}
	s, err := m.e.kvStore(true)
	if err != nil {
		done(nil, storeErr("SET_ERROR", "set value", err))
		return
	}
	scope, key := *in.Scope, *in.Key
	state.Async(s).SetAsync(ctx, stateNS, scope, key, v, func(ch state.Change, err error) {
		if err != nil {
			done(nil, storeErr("SET_ERROR", "set value", err))
			return
		}
		m.fire(scope, key, ch)
		answerIn(req, ch.Batch)
		done(setResult{OldValue: orNull(ch.Old, ch.Had), NewValue: orNull(ch.New, true)}, nil)
	})
}

func (m *stateModule) get(ctx context.Context, _ *invocation.Request, in stateKeyInput) (jsontext.Value, *wire.ErrorBody) {
	if e := in.check("state::get"); e != nil {
		return nil, e
	}
	s, err := m.e.kvStore(false)
	if err != nil {
		return nil, storeErr("GET_ERROR", "get value", err)
	}
	if s == nil {
		return orNull(nil, false), nil
	}
	v, ok, err := s.Get(ctx, stateNS, *in.Scope, *in.Key)
	if err != nil {
		return nil, storeErr("GET_ERROR", "get value", err)
	}
	return orNull(v, ok), nil
}

// delete answers the deleted value (null: there was none), as upstream.
func (m *stateModule) delete(ctx context.Context, req *invocation.Request, in stateKeyInput, done func(jsontext.Value, *wire.ErrorBody)) {
	if e := in.check("state::delete"); e != nil {
		done(nil, e)
		return
	}
	s, err := m.e.kvStore(false)
	if err != nil {
		done(nil, storeErr("DELETE_ERROR", "delete value", err))
		return
	}
	if s == nil {
		done(orNull(nil, false), nil)
		return
	}
	scope, key := *in.Scope, *in.Key
	state.Async(s).DeleteAsync(ctx, stateNS, scope, key, func(ch state.Change, err error) {
		if err != nil {
			done(nil, storeErr("DELETE_ERROR", "delete value", err))
			return
		}
		if ch.Had {
			m.fire(scope, key, ch)
		}
		answerIn(req, ch.Batch)
		done(orNull(ch.Old, ch.Had), nil)
	})
}

type stateUpdateInput struct {
	stateKeyInput
	Ops jsontext.Value `json:"ops"`
}

// errValueTooLarge carries VALUE_TOO_LARGE out of an update transaction.
type errValueTooLarge struct{ body *wire.ErrorBody }

func (e errValueTooLarge) Error() string { return e.body.Message }

// decodeOps reads an update's operation list.
func decodeOps(fn string, raw jsontext.Value) ([]state.Op, *wire.ErrorBody) {
	var ops []state.Op
	if len(raw) == 0 {
		return nil, &wire.ErrorBody{Code: wire.CodeDeserializationError, Message: "invalid input for " + fn + ": missing field `ops`"}
	}
	if err := stdjson.Unmarshal(raw, &ops); err != nil {
		return nil, &wire.ErrorBody{Code: wire.CodeDeserializationError, Message: "invalid input for " + fn + ": ops: " + err.Error()}
	}
	return ops, nil
}

// updateFunc is the store update applying ops, bounded by tooLarge; the
// operations' errors of the run that took effect go to *opErrs.
func updateFunc(ops []state.Op, tooLarge func(int) *wire.ErrorBody, opErrs *[]state.OpError) state.UpdateFunc {
	return func(old []byte, had bool) ([]byte, bool, error) {
		v, errs, err := state.ApplyOps(old, had, ops)
		if err != nil {
			return nil, false, err
		}
		if e := tooLarge(len(v)); e != nil {
			return nil, false, errValueTooLarge{e}
		}
		*opErrs = errs
		return v, true, nil
	}
}

func (m *stateModule) update(ctx context.Context, req *invocation.Request, in stateUpdateInput, done func(any, *wire.ErrorBody)) {
	if e := in.check("state::update"); e != nil {
		done(nil, e)
		return
	}
	ops, e := decodeOps("state::update", in.Ops)
	if e != nil {
		done(nil, e)
		return
	}
	s, err := m.e.kvStore(true)
	if err != nil {
		done(nil, storeErr("UPDATE_ERROR", "update value", err))
		return
	}
	scope, key := *in.Scope, *in.Key
	opErrs := new([]state.OpError)
	state.Async(s).UpdateAsync(ctx, stateNS, scope, key, updateFunc(ops, m.tooLarge, opErrs), func(ch state.Change, err error) {
		var big errValueTooLarge
		if errors.As(err, &big) {
			done(nil, big.body)
			return
		}
		if err != nil {
			done(nil, storeErr("UPDATE_ERROR", "update value", err))
			return
		}
		m.fire(scope, key, ch)
		answerIn(req, ch.Batch)
		done(setResult{OldValue: orNull(ch.Old, ch.Had), NewValue: orNull(ch.New, ch.Has), Errors: *opErrs}, nil)
	})
}

type stateScopeInput struct {
	Scope *string `json:"scope"`
}

func (m *stateModule) list(ctx context.Context, _ *invocation.Request, in stateScopeInput) ([]jsontext.Value, *wire.ErrorBody) {
	if in.Scope == nil {
		return nil, &wire.ErrorBody{Code: wire.CodeDeserializationError, Message: "invalid input for state::list: missing field `scope`"}
	}
	out := []jsontext.Value{}
	s, err := m.e.kvStore(false)
	if err != nil {
		return nil, storeErr("LIST_ERROR", "list values", err)
	}
	if s == nil {
		return out, nil
	}
	entries, err := s.List(ctx, stateNS, *in.Scope)
	if err != nil {
		return nil, storeErr("LIST_ERROR", "list values", err)
	}
	for _, en := range entries {
		out = append(out, en.Value)
	}
	return out, nil
}

func (m *stateModule) listGroups(ctx context.Context, _ *invocation.Request, _ struct{}) (any, *wire.ErrorBody) {
	groups := []string{}
	s, err := m.e.kvStore(false)
	if err != nil {
		return nil, storeErr("LIST_GROUPS_ERROR", "list groups", err)
	}
	if s != nil {
		if groups, err = s.Groups(ctx, stateNS); err != nil {
			return nil, storeErr("LIST_GROUPS_ERROR", "list groups", err)
		}
	}
	return map[string][]string{"groups": groups}, nil
}

// stateEvent is the payload of a state binding's call.
type stateEvent struct {
	Type      string         `json:"type"`
	EventType string         `json:"event_type"`
	Scope     string         `json:"scope"`
	Key       string         `json:"key"`
	OldValue  jsontext.Value `json:"old_value"`
	NewValue  jsontext.Value `json:"new_value"`
}

// fire calls the matching state bindings, here and on the other nodes,
// in the background, after a committed write.
func (m *stateModule) fire(scope, key string, ch state.Change) {
	cluster := m.e.cluster != nil
	list := m.matching(scope, key)
	if len(list) == 0 && !cluster {
		return
	}
	ev := stateEvent{Type: "state", Scope: scope, Key: key, OldValue: orNull(ch.Old, ch.Had), NewValue: orNull(ch.New, ch.Has)}
	switch {
	case !ch.Has:
		ev.EventType = "state:deleted"
	case !ch.Had:
		ev.EventType = "state:created"
	default:
		ev.EventType = "state:updated"
	}
	data, err := json.Marshal(ev)
	if err != nil {
		m.e.log.Warn("state event not serializable", "err", err)
		return
	}
	if cluster {
		m.e.publishEvent(clusterEvent{Kind: "state", Scope: scope, Key: key, Data: data})
	}
	m.run(list, data)
}

func (m *stateModule) matching(scope, key string) []*moduleTrigger[stateTriggerConfig] {
	return m.triggers.matching(func(c *stateTriggerConfig) bool {
		return (c.Scope == nil || *c.Scope == scope) && (c.Key == nil || *c.Key == key)
	})
}

// fireLocal calls this node's bindings of an event fired on another node.
func (m *stateModule) fireLocal(scope, key string, data []byte) {
	m.run(m.matching(scope, key), data)
}

func (m *stateModule) run(list []*moduleTrigger[stateTriggerConfig], data []byte) {
	if len(list) == 0 {
		return
	}
	m.e.deliver("state", func() {
		for _, mt := range list {
			m.e.runTrigger(m.e.ctx, "state", mt.cfg.ConditionFunctionID, mt.t, data)
		}
	})
}
