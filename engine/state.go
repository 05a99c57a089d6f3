package engine

import (
	"context"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/queue"
	"github.com/sluicehq/sluice/internal/state"
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
	mu       sync.Mutex
	store    state.Store // nil until opened
	triggers *moduleTriggers[stateTriggerConfig]
}

func (e *Engine) registerState() {
	m := &stateModule{e: e, triggers: newModuleTriggers(parseConfig[stateTriggerConfig])}
	e.modules.state = m
	e.addEngineTriggerType(triggerTypeState, "Fired when a state value is created, updated or deleted (state:created|updated|deleted)", m.triggers)
	// Writes wait for their group commit: async, so that the caller's
	// connection keeps reading (and its other writes join the same commit).
	// Reads answer from the store at once, on the reader.
	e.addBuiltin("state::set", builtin(m.set), true)
	e.addBuiltin("state::get", builtin(m.get), false)
	e.addBuiltin("state::delete", builtin(m.delete), true)
	e.addBuiltin("state::update", builtin(m.update), true)
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

func storeErr(code, what string, err error) *wire.ErrorBody {
	return &wire.ErrorBody{Code: code, Message: "Failed to " + what + ": " + err.Error()}
}

func (m *stateModule) set(ctx context.Context, _ *invocation.Request, in stateSetInput) (any, *wire.ErrorBody) {
	if e := in.check("state::set"); e != nil {
		return nil, e
	}
	raw := in.Value
	if len(raw) == 0 {
		raw = in.Data
	}
	if len(raw) == 0 {
		return nil, &wire.ErrorBody{Code: wire.CodeDeserializationError, Message: "invalid input for state::set: missing field `value`"}
	}
	v, err := compactJSON(raw)
	if err != nil {
		return nil, &wire.ErrorBody{Code: wire.CodeDeserializationError, Message: "invalid input for state::set: " + err.Error()}
	}
	if e := m.tooLarge(len(v)); e != nil {
		return nil, e
	}
	s, err := m.e.kvStore(true)
	if err != nil {
		return nil, storeErr("SET_ERROR", "set value", err)
	}
	ch, err := s.Set(ctx, stateNS, *in.Scope, *in.Key, v)
	if err != nil {
		return nil, storeErr("SET_ERROR", "set value", err)
	}
	m.fire(*in.Scope, *in.Key, ch)
	return setResult{OldValue: orNull(ch.Old, ch.Had), NewValue: orNull(ch.New, true)}, nil
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
func (m *stateModule) delete(ctx context.Context, _ *invocation.Request, in stateKeyInput) (jsontext.Value, *wire.ErrorBody) {
	if e := in.check("state::delete"); e != nil {
		return nil, e
	}
	s, err := m.e.kvStore(false)
	if err != nil {
		return nil, storeErr("DELETE_ERROR", "delete value", err)
	}
	if s == nil {
		return orNull(nil, false), nil
	}
	ch, err := s.Delete(ctx, stateNS, *in.Scope, *in.Key)
	if err != nil {
		return nil, storeErr("DELETE_ERROR", "delete value", err)
	}
	if ch.Had {
		m.fire(*in.Scope, *in.Key, ch)
	}
	return orNull(ch.Old, ch.Had), nil
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

// applyUpdate runs ops on one key of s atomically, bounded by limit.
func applyUpdate(ctx context.Context, s state.Store, ns, group, key string, ops []state.Op, tooLarge func(int) *wire.ErrorBody) (state.Change, []state.OpError, error) {
	var opErrs []state.OpError
	ch, err := s.Update(ctx, ns, group, key, func(old []byte, had bool) ([]byte, bool, error) {
		v, errs, err := state.ApplyOps(old, had, ops)
		if err != nil {
			return nil, false, err
		}
		if e := tooLarge(len(v)); e != nil {
			return nil, false, errValueTooLarge{e}
		}
		opErrs = errs
		return v, true, nil
	})
	return ch, opErrs, err
}

func (m *stateModule) update(ctx context.Context, _ *invocation.Request, in stateUpdateInput) (any, *wire.ErrorBody) {
	if e := in.check("state::update"); e != nil {
		return nil, e
	}
	ops, e := decodeOps("state::update", in.Ops)
	if e != nil {
		return nil, e
	}
	s, err := m.e.kvStore(true)
	if err != nil {
		return nil, storeErr("UPDATE_ERROR", "update value", err)
	}
	ch, opErrs, err := applyUpdate(ctx, s, stateNS, *in.Scope, *in.Key, ops, m.tooLarge)
	var big errValueTooLarge
	if errors.As(err, &big) {
		return nil, big.body
	}
	if err != nil {
		return nil, storeErr("UPDATE_ERROR", "update value", err)
	}
	m.fire(*in.Scope, *in.Key, ch)
	return setResult{OldValue: orNull(ch.Old, ch.Had), NewValue: orNull(ch.New, ch.Has), Errors: opErrs}, nil
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

// fire calls the matching state bindings, in the background, after a
// committed write.
func (m *stateModule) fire(scope, key string, ch state.Change) {
	list := m.triggers.matching(func(c *stateTriggerConfig) bool {
		return (c.Scope == nil || *c.Scope == scope) && (c.Key == nil || *c.Key == key)
	})
	if len(list) == 0 {
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
	m.e.deliver("state", func() {
		for _, mt := range list {
			m.e.runTrigger(m.e.ctx, "state", mt.cfg.ConditionFunctionID, mt.t, data)
		}
	})
}
