package engine

import (
	"context"
	"errors"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/state"
	"github.com/sluicehq/sluice/wire"
)

// Streams: upstream's iii-stream functions and the "stream" trigger type.
// Items live in the state store under namespace "stream/<stream_name>",
// group group_id, key item_id (durable like state). A worker that
// registers stream::get(<name>), stream::set(<name>), stream::delete(<name>),
// stream::list(<name>) or stream::list_groups(<name>) implements that
// stream itself: the engine calls it instead of the store (custom streams).
// Stream clients connect over WebSocket (stream_ws.go).

const (
	triggerTypeStream = "stream"
	streamNSPrefix    = "stream/"
)

type streamTriggerConfig struct {
	StreamName          string `json:"stream_name"`
	GroupID             string `json:"group_id"`
	ItemID              string `json:"item_id"`
	ConditionFunctionID string `json:"condition_function_id"`
}

type streamModule struct {
	e        *Engine
	triggers *moduleTriggers[streamTriggerConfig]
	hub      *streamHub // stream clients (stream_ws.go)
}

func (e *Engine) registerStreams() {
	m := &streamModule{e: e, triggers: newModuleTriggers(func(raw jsontext.Value) (streamTriggerConfig, error) {
		c, err := parseConfig[streamTriggerConfig](raw)
		if err == nil && c.StreamName == "" {
			err = errors.New("stream trigger: stream_name is required")
		}
		return c, err
	})}
	e.addEngineTriggerType(triggerTypeStream, "Fired when a stream item is created, updated or deleted, or an event is sent", m.triggers)
	// Deferred, as state's: the store's writes are submitted to its
	// group-commit writer from the caller's reader, in arrival order, and
	// answered after their commit (no goroutine per call); reads answer at
	// once. A custom stream's call waits for its worker (which may be the
	// caller's own connection) on a goroutine of its own.
	e.addDeferred("stream::set", m.deferred("stream::set", builtin(m.set), deferredBuiltin(m.setStore)))
	e.addDeferred("stream::get", m.deferred("stream::get", builtin(m.get), deferredBuiltin(m.readStore(m.get))))
	e.addDeferred("stream::delete", m.deferred("stream::delete", builtin(m.delete), deferredBuiltin(m.deleteStore)))
	e.addDeferred("stream::update", deferredBuiltin(m.updateStore)) // no custom form
	e.addDeferred("stream::list", m.deferred("stream::list", builtin(m.list), deferredBuiltin(m.readStore(m.list))))
	e.addDeferred("stream::list_groups", m.deferred("stream::list_groups", builtin(m.listGroups), deferredBuiltin(m.readStore(m.listGroups))))
	e.addBuiltin("stream::list_all", builtin(m.listAll), false)
	e.addBuiltin("stream::send", builtin(m.send), false)
	e.modules.streams = m
	e.registerStreamClients(m)
}

type streamItemInput struct {
	StreamName *string        `json:"stream_name"`
	GroupID    *string        `json:"group_id"`
	ItemID     *string        `json:"item_id"`
	Data       jsontext.Value `json:"data"`
	Ops        jsontext.Value `json:"ops"`
}

func missingField(fn, field string) *wire.ErrorBody {
	return &wire.ErrorBody{Code: wire.CodeDeserializationError, Message: "invalid input for " + fn + ": missing field `" + field + "`"}
}

func (in *streamItemInput) check(fn string, item bool) *wire.ErrorBody {
	switch {
	case in.StreamName == nil:
		return missingField(fn, "stream_name")
	case in.GroupID == nil:
		return missingField(fn, "group_id")
	case item && in.ItemID == nil:
		return missingField(fn, "item_id")
	}
	return nil
}

// custom calls the worker function <op>(<stream_name>) if one is
// registered; ok false: there is none.
func (m *streamModule) custom(op string, req *invocation.Request) (jsontext.Value, *wire.ErrorBody, bool, string) {
	var in struct {
		StreamName string `json:"stream_name"`
	}
	_ = json.Unmarshal(req.Data, &in, lenient)
	id := op + "(" + in.StreamName + ")"
	if _, ok := m.e.reg.Function(id); !ok {
		return nil, nil, false, ""
	}
	v, errBody := m.e.callAndWait(id, append(jsontext.Value(nil), req.Data...), nil)
	return v, errBody, true, id
}

// deferred answers op from the store (store: on the caller's reader), or,
// when a worker serves op for the stream named in the input, through
// call on a goroutine of its own (it waits for that worker).
func (m *streamModule) deferred(op string, call invocation.Builtin, store invocation.Deferred) invocation.Deferred {
	return func(ctx context.Context, req *invocation.Request, done func(jsontext.Value, *wire.ErrorBody)) {
		if m.hasCustom(op, req.Data) {
			r := *req
			r.Data, r.Batch = append(jsontext.Value(nil), req.Data...), nil // req.Data lives in the reader's buffer
			go func() { done(call(ctx, &r)) }()
			return
		}
		store(ctx, req, done)
	}
}

// hasCustom reports whether a worker serves op(<stream_name>).
func (m *streamModule) hasCustom(op string, data jsontext.Value) bool {
	var in struct {
		StreamName string `json:"stream_name"`
	}
	if json.Unmarshal(data, &in, lenient) != nil || in.StreamName == "" {
		return false
	}
	_, ok := m.e.reg.Function(op + "(" + in.StreamName + ")")
	return ok
}

// readStore adapts a read (which the store answers at once) to deferred.
func (m *streamModule) readStore(read func(context.Context, *invocation.Request, streamItemInput) (jsontext.Value, *wire.ErrorBody)) func(context.Context, *invocation.Request, streamItemInput, func(jsontext.Value, *wire.ErrorBody)) {
	return func(ctx context.Context, req *invocation.Request, in streamItemInput, done func(jsontext.Value, *wire.ErrorBody)) {
		done(read(ctx, req, in))
	}
}

// setStore is set on the store: answered after the commit, in order.
func (m *streamModule) setStore(ctx context.Context, req *invocation.Request, in streamItemInput, done func(any, *wire.ErrorBody)) {
	if e := in.check("stream::set", true); e != nil {
		done(nil, e)
		return
	}
	if len(in.Data) == 0 {
		done(nil, missingField("stream::set", "data"))
		return
	}
	v, err := compactJSON(in.Data)
	if err != nil {
		done(nil, &wire.ErrorBody{Code: wire.CodeDeserializationError, Message: "invalid input for stream::set: " + err.Error()})
		return
	}
	if e := m.e.valueTooLarge(len(v)); e != nil {
		done(nil, e)
		return
	}
	s, err := m.e.kvStore(true)
	if err != nil {
		done(nil, storeErr("STREAM_SET_ERROR", "set value", err))
		return
	}
	name, group, item := *in.StreamName, *in.GroupID, in.ItemID
	state.Async(s).SetAsync(ctx, streamNSPrefix+name, group, *item, v, func(ch state.Change, err error) {
		if err != nil {
			done(nil, storeErr("STREAM_SET_ERROR", "set value", err))
			return
		}
		m.fire(name, group, item, changeEvent(ch))
		answerIn(req, ch.Batch)
		done(setResult{OldValue: orNull(ch.Old, ch.Had), NewValue: orNull(ch.New, true)}, nil)
	})
}

// deleteStore is delete on the store: answered after the commit, in order.
func (m *streamModule) deleteStore(ctx context.Context, req *invocation.Request, in streamItemInput, done func(any, *wire.ErrorBody)) {
	if e := in.check("stream::delete", true); e != nil {
		done(nil, e)
		return
	}
	s, err := m.e.kvStore(false)
	if err != nil {
		done(nil, storeErr("STREAM_DELETE_ERROR", "delete value", err))
		return
	}
	if s == nil {
		done(map[string]jsontext.Value{"old_value": orNull(nil, false)}, nil)
		return
	}
	name, group, item := *in.StreamName, *in.GroupID, in.ItemID
	state.Async(s).DeleteAsync(ctx, streamNSPrefix+name, group, *item, func(ch state.Change, err error) {
		if err != nil {
			done(nil, storeErr("STREAM_DELETE_ERROR", "delete value", err))
			return
		}
		if ch.Had {
			m.fire(name, group, item, changeEvent(ch))
		}
		answerIn(req, ch.Batch)
		done(map[string]jsontext.Value{"old_value": orNull(ch.Old, ch.Had)}, nil)
	})
}

// updateStore is update: answered after the commit, in order.
func (m *streamModule) updateStore(ctx context.Context, req *invocation.Request, in streamItemInput, done func(any, *wire.ErrorBody)) {
	if e := in.check("stream::update", true); e != nil {
		done(nil, e)
		return
	}
	ops, e := decodeOps("stream::update", in.Ops)
	if e != nil {
		done(nil, e)
		return
	}
	s, err := m.e.kvStore(true)
	if err != nil {
		done(nil, storeErr("STREAM_UPDATE_ERROR", "update value", err))
		return
	}
	name, group, item := *in.StreamName, *in.GroupID, in.ItemID
	opErrs := new([]state.OpError)
	state.Async(s).UpdateAsync(ctx, streamNSPrefix+name, group, *item, updateFunc(ops, m.e.valueTooLarge, opErrs), func(ch state.Change, err error) {
		var big errValueTooLarge
		if errors.As(err, &big) {
			done(nil, big.body)
			return
		}
		if err != nil {
			done(nil, storeErr("STREAM_UPDATE_ERROR", "update value", err))
			return
		}
		m.fire(name, group, item, changeEvent(ch))
		answerIn(req, ch.Batch)
		done(setResult{OldValue: orNull(ch.Old, ch.Had), NewValue: orNull(ch.New, ch.Has), Errors: *opErrs}, nil)
	})
}

// streamMessage is what stream bindings (and, later, stream clients) get.
type streamMessage struct {
	Type       string         `json:"type"`
	Timestamp  int64          `json:"timestamp"`
	StreamName string         `json:"streamName"`
	GroupID    string         `json:"groupId"`
	ID         *string        `json:"id"`
	Event      map[string]any `json:"event"`
}

func (m *streamModule) fire(name, group string, id *string, event map[string]any) {
	data, err := json.Marshal(streamMessage{Type: "stream", Timestamp: time.Now().UnixMilli(), StreamName: name, GroupID: group, ID: id, Event: event})
	if err != nil {
		return
	}
	if m.e.cluster != nil {
		m.e.publishEvent(clusterEvent{Kind: "stream", Scope: name, Key: group, Item: id, Data: data})
	}
	m.fireLocal(name, group, id, data)
}

// fireLocal pushes a stream message to this node's stream clients and
// calls this node's stream bindings.
func (m *streamModule) fireLocal(name, group string, id *string, data []byte) {
	m.hub.publish(name, group, id, data)
	list := m.triggers.matching(func(c *streamTriggerConfig) bool {
		return c.StreamName == name && (c.GroupID == "" || c.GroupID == group) &&
			(c.ItemID == "" || (id != nil && c.ItemID == *id))
	})
	if len(list) == 0 {
		return
	}
	m.e.deliver("stream", func() {
		for _, mt := range list {
			m.e.runTrigger(m.e.ctx, "stream", mt.cfg.ConditionFunctionID, mt.t, data)
		}
	})
}

func changeEvent(ch state.Change) map[string]any {
	switch {
	case !ch.Has:
		return map[string]any{"type": "delete", "data": orNull(ch.Old, ch.Had)}
	case ch.Had:
		return map[string]any{"type": "update", "data": orNull(ch.New, true)}
	default:
		return map[string]any{"type": "create", "data": orNull(ch.New, true)}
	}
}

func (m *streamModule) set(ctx context.Context, req *invocation.Request, in streamItemInput) (any, *wire.ErrorBody) {
	if e := in.check("stream::set", true); e != nil {
		return nil, e
	}
	if len(in.Data) == 0 {
		return nil, missingField("stream::set", "data")
	}
	var ch state.Change
	if v, errBody, ok, id := m.custom("stream::set", req); ok {
		if errBody != nil {
			return nil, &wire.ErrorBody{Code: "STREAM_SET_ERROR", Message: "Failed to set value: " + id + ": " + errBody.Message}
		}
		var r struct {
			OldValue jsontext.Value `json:"old_value"`
			NewValue jsontext.Value `json:"new_value"`
		}
		if err := json.Unmarshal(v, &r, lenient); err != nil {
			return nil, &wire.ErrorBody{Code: "JSON_ERROR", Message: "Failed to convert result to value: " + err.Error()}
		}
		ch = state.Change{Old: r.OldValue, Had: len(r.OldValue) > 0 && string(r.OldValue) != "null", New: r.NewValue, Has: true}
	} else {
		v, err := compactJSON(in.Data)
		if err != nil {
			return nil, &wire.ErrorBody{Code: wire.CodeDeserializationError, Message: "invalid input for stream::set: " + err.Error()}
		}
		if e := m.e.valueTooLarge(len(v)); e != nil {
			return nil, e
		}
		s, err := m.e.kvStore(true)
		if err == nil {
			ch, err = s.Set(ctx, streamNSPrefix+*in.StreamName, *in.GroupID, *in.ItemID, v)
		}
		if err != nil {
			return nil, storeErr("STREAM_SET_ERROR", "set value", err)
		}
	}
	m.fire(*in.StreamName, *in.GroupID, in.ItemID, changeEvent(ch))
	return setResult{OldValue: orNull(ch.Old, ch.Had), NewValue: orNull(ch.New, true)}, nil
}

func (m *streamModule) get(ctx context.Context, req *invocation.Request, in streamItemInput) (jsontext.Value, *wire.ErrorBody) {
	if e := in.check("stream::get", true); e != nil {
		return nil, e
	}
	if v, errBody, ok, id := m.custom("stream::get", req); ok {
		if errBody != nil {
			return nil, &wire.ErrorBody{Code: "STREAM_GET_ERROR", Message: "Failed to get value: " + id + ": " + errBody.Message}
		}
		return orNull(v, true), nil
	}
	s, err := m.e.kvStore(false)
	if err != nil {
		return nil, storeErr("STREAM_GET_ERROR", "get value", err)
	}
	if s == nil {
		return orNull(nil, false), nil
	}
	v, ok, err := s.Get(ctx, streamNSPrefix+*in.StreamName, *in.GroupID, *in.ItemID)
	if err != nil {
		return nil, storeErr("STREAM_GET_ERROR", "get value", err)
	}
	return orNull(v, ok), nil
}

func (m *streamModule) delete(ctx context.Context, req *invocation.Request, in streamItemInput) (any, *wire.ErrorBody) {
	if e := in.check("stream::delete", true); e != nil {
		return nil, e
	}
	var ch state.Change
	if v, errBody, ok, id := m.custom("stream::delete", req); ok {
		if errBody != nil {
			return nil, &wire.ErrorBody{Code: "STREAM_DELETE_ERROR", Message: "Failed to delete value: " + id + ": " + errBody.Message}
		}
		var r struct {
			OldValue jsontext.Value `json:"old_value"`
		}
		_ = json.Unmarshal(v, &r, lenient)
		ch = state.Change{Old: r.OldValue, Had: len(r.OldValue) > 0 && string(r.OldValue) != "null"}
	} else {
		s, err := m.e.kvStore(false)
		if err == nil && s != nil {
			ch, err = s.Delete(ctx, streamNSPrefix+*in.StreamName, *in.GroupID, *in.ItemID)
		}
		if err != nil {
			return nil, storeErr("STREAM_DELETE_ERROR", "delete value", err)
		}
	}
	if ch.Had {
		m.fire(*in.StreamName, *in.GroupID, in.ItemID, changeEvent(ch))
	}
	return map[string]jsontext.Value{"old_value": orNull(ch.Old, ch.Had)}, nil
}

func (m *streamModule) list(ctx context.Context, req *invocation.Request, in streamItemInput) (jsontext.Value, *wire.ErrorBody) {
	if e := in.check("stream::list", false); e != nil {
		return nil, e
	}
	if v, errBody, ok, id := m.custom("stream::list", req); ok {
		if errBody != nil {
			return nil, &wire.ErrorBody{Code: "STREAM_GET_GROUP_ERROR", Message: "Failed to list values: " + id + ": " + errBody.Message}
		}
		return orNull(v, true), nil
	}
	out := []jsontext.Value{}
	s, err := m.e.kvStore(false)
	if err == nil && s != nil {
		var entries []state.Entry
		entries, err = s.List(ctx, streamNSPrefix+*in.StreamName, *in.GroupID)
		for _, en := range entries {
			out = append(out, en.Value)
		}
	}
	if err != nil {
		return nil, storeErr("STREAM_GET_GROUP_ERROR", "list values", err)
	}
	b, _ := json.Marshal(out)
	return b, nil
}

func (m *streamModule) listGroups(ctx context.Context, req *invocation.Request, in streamItemInput) (jsontext.Value, *wire.ErrorBody) {
	if in.StreamName == nil {
		return nil, missingField("stream::list_groups", "stream_name")
	}
	if v, errBody, ok, id := m.custom("stream::list_groups", req); ok {
		if errBody != nil {
			return nil, &wire.ErrorBody{Code: "STREAM_LIST_GROUPS_ERROR", Message: "Failed to list groups: " + id + ": " + errBody.Message}
		}
		return orNull(v, true), nil
	}
	groups := []string{}
	s, err := m.e.kvStore(false)
	if err == nil && s != nil {
		groups, err = s.Groups(ctx, streamNSPrefix+*in.StreamName)
	}
	if err != nil {
		return nil, storeErr("STREAM_LIST_GROUPS_ERROR", "list groups", err)
	}
	b, _ := json.Marshal(groups)
	return b, nil
}

type streamMeta struct {
	ID     string   `json:"id"`
	Groups []string `json:"groups"`
}

func (m *streamModule) listAll(ctx context.Context, _ *invocation.Request, _ struct{}) (any, *wire.ErrorBody) {
	out := []streamMeta{}
	s, err := m.e.kvStore(false)
	if err == nil && s != nil {
		var names []string
		names, err = s.Namespaces(ctx, streamNSPrefix)
		for _, ns := range names {
			var groups []string
			if groups, err = s.Groups(ctx, ns); err != nil {
				break
			}
			out = append(out, streamMeta{ID: ns[len(streamNSPrefix):], Groups: groups})
		}
	}
	if err != nil {
		return nil, storeErr("STREAM_LIST_ALL_ERROR", "list stream", err)
	}
	return map[string]any{"stream": out, "count": len(out)}, nil
}

type streamSendInput struct {
	StreamName *string        `json:"stream_name"`
	GroupID    *string        `json:"group_id"`
	ID         *string        `json:"id"`
	Type       string         `json:"type"`
	Data       jsontext.Value `json:"data"`
}

func (m *streamModule) send(_ context.Context, _ *invocation.Request, in streamSendInput) (jsontext.Value, *wire.ErrorBody) {
	switch {
	case in.StreamName == nil:
		return nil, missingField("stream::send", "stream_name")
	case in.GroupID == nil:
		return nil, missingField("stream::send", "group_id")
	}
	data := jsontext.Value("null")
	if len(in.Data) > 0 {
		data = append(jsontext.Value(nil), in.Data...)
	}
	m.fire(*in.StreamName, *in.GroupID, in.ID, map[string]any{"type": "event", "event": map[string]any{"type": in.Type, "data": data}})
	return jsontext.Value("null"), nil
}
