package sluice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/wire"
)

// TriggerSpec binds a function to a trigger type (e.g. "http", "cron", or a
// type some worker provides).
type TriggerSpec struct {
	// ID names the binding; a UUID is generated when empty. The id is kept
	// across reconnects, so the engine replaces rather than duplicates it.
	ID         string
	Type       string
	FunctionID string
	// Config is the type-specific configuration (e.g. {"api_path": "/x",
	// "http_method": "POST"} for http); any JSON-encodable value.
	Config any
	// Metadata is delivered to the function as Invocation.Metadata on every
	// fire.
	Metadata any
}

type trigger struct {
	typ string
	msg []byte
	seq uint64
}

func (t *trigger) order() uint64   { return t.seq }
func (t *trigger) message() []byte { return t.msg }

// RegisterTrigger binds t.FunctionID to a trigger and returns the binding's
// id. Neither the function nor the trigger type need exist yet: the engine
// parks the binding until they do. Registering an id again replaces the
// binding. The engine reports a refused binding asynchronously; it is
// logged.
func (c *Client) RegisterTrigger(t TriggerSpec) (id string, err error) {
	if t.Type == "" || t.FunctionID == "" {
		return "", errors.New("sluice: trigger needs a Type and a FunctionID")
	}
	if t.ID == "" {
		t.ID = uuid.NewString()
	}
	cfg, err := marshalJSON(t.Config)
	if err != nil {
		return "", fmt.Errorf("sluice: trigger config: %w", err)
	}
	meta, err := marshalJSON(t.Metadata)
	if err != nil {
		return "", fmt.Errorf("sluice: trigger metadata: %w", err)
	}
	b, err := wire.Marshal(&wire.Message{
		Type:        wire.TypeRegisterTrigger,
		ID:          t.ID,
		TriggerType: t.Type,
		FunctionID:  t.FunctionID,
		Config:      wire.DataOrNull(cfg),
		Metadata:    meta,
	})
	if err != nil {
		return "", fmt.Errorf("sluice: register trigger: %w", err)
	}

	err = register(c, c.triggers, "trigger", t.ID, true, b, func(seq uint64) *trigger {
		return &trigger{typ: t.Type, msg: b, seq: seq}
	})
	if err != nil {
		return "", err
	}
	return t.ID, nil
}

// UnregisterTrigger removes a binding registered on this client.
func (c *Client) UnregisterTrigger(id string) error {
	_, err := unregister(c, c.triggers, "trigger", id, func(t *trigger) *wire.Message {
		return &wire.Message{Type: wire.TypeUnregisterTrigger, ID: id, TriggerType: t.typ}
	})
	return err
}

// TriggerBinding is one binding of a trigger type this client provides.
type TriggerBinding struct {
	ID, Type, FunctionID string
	Config, Metadata     json.RawMessage
}

// TriggerTypeHandler implements a trigger type: the engine hands it every
// binding of the type, and the handler fires the bound function (typically
// with Client.Trigger or TriggerVoid) whenever its event happens.
//
// Calls for one type are made one at a time, in the order the engine sent
// them. RegisterTrigger may be called again for an id it already holds
// (the engine replays all bindings after a reconnect, and a re-registered
// binding replaces the old one), so it should replace, not add.
// UnregisterTrigger receives the binding as it was registered when known,
// else just ID and Type. ctx is cancelled when the client closes.
type TriggerTypeHandler interface {
	RegisterTrigger(ctx context.Context, b TriggerBinding) error
	UnregisterTrigger(ctx context.Context, b TriggerBinding) error
}

type triggerType struct {
	h        TriggerTypeHandler
	msg      []byte
	seq      uint64
	q        serialQueue
	bindings map[string]TriggerBinding // guarded by Client.mu
}

func (t *triggerType) order() uint64   { return t.seq }
func (t *triggerType) message() []byte { return t.msg }

// RegisterTriggerType makes this client the provider of trigger type id
// (replacing any other provider in the engine). Bindings of the type,
// existing and future, arrive at h. An error from h.RegisterTrigger is
// reported to the engine as trigger_registration_failed.
func (c *Client) RegisterTriggerType(id, description string, h TriggerTypeHandler) error {
	if id == "" {
		return errors.New("sluice: trigger type id must not be empty")
	}
	if h == nil {
		return errors.New("sluice: nil trigger type handler for " + id)
	}
	b, err := wire.Marshal(&wire.Message{Type: wire.TypeRegisterTriggerType, ID: id, Description: description})
	if err != nil {
		return err
	}
	return register(c, c.triggerTypes, "trigger type", id, false, b, func(seq uint64) *triggerType {
		return &triggerType{h: h, msg: b, seq: seq, bindings: make(map[string]TriggerBinding)}
	})
}

// UnregisterTriggerType stops providing trigger type id. The handler gets
// no further calls (not even UnregisterTrigger for the bindings it holds).
func (c *Client) UnregisterTriggerType(id string) error {
	_, err := unregister(c, c.triggerTypes, "trigger type", id, func(*triggerType) *wire.Message {
		return &wire.Message{Type: wire.TypeUnregisterTriggerType, ID: id}
	})
	return err
}

// providerRegister answers an engine-sent registertrigger for a type we
// provide, with exactly one triggerregistrationresult.
func (c *Client) providerRegister(s *session, m *wire.Message) {
	reply := &wire.Message{
		Type:        wire.TypeTriggerRegistrationResult,
		ID:          m.ID,
		TriggerType: m.TriggerType,
		FunctionID:  m.FunctionID,
	}
	c.mu.Lock()
	tt := c.triggerTypes[m.TriggerType]
	c.mu.Unlock()
	if tt == nil {
		reply.Error = &wire.ErrorBody{Code: wire.CodeTriggerTypeNotFound, Message: "Trigger type not found"}
		go c.sendReply(s, reply)
		return
	}
	b := TriggerBinding{ID: m.ID, Type: m.TriggerType, FunctionID: m.FunctionID}
	if m.Config != nil {
		b.Config = json.RawMessage(m.Config)
	}
	if m.Metadata != nil {
		b.Metadata = json.RawMessage(m.Metadata)
	}
	tt.q.push(func() {
		if err := safeCall(func() error { return tt.h.RegisterTrigger(c.ctx, b) }); err != nil {
			reply.Error = &wire.ErrorBody{Code: CodeTriggerRegistrationFailed, Message: err.Error()}
		} else {
			c.mu.Lock()
			tt.bindings[b.ID] = b
			c.mu.Unlock()
		}
		c.sendReply(s, reply)
	})
}

// providerUnregister handles an engine-sent unregistertrigger; no reply is
// expected.
func (c *Client) providerUnregister(m *wire.Message) {
	c.mu.Lock()
	tt := c.triggerTypes[m.TriggerType]
	c.mu.Unlock()
	if tt == nil {
		return
	}
	tt.q.push(func() {
		c.mu.Lock()
		b, ok := tt.bindings[m.ID]
		delete(tt.bindings, m.ID)
		c.mu.Unlock()
		if !ok {
			b = TriggerBinding{ID: m.ID, Type: m.TriggerType}
		}
		if err := safeCall(func() error { return tt.h.UnregisterTrigger(c.ctx, b) }); err != nil {
			c.log.Warn("sluice: trigger type handler failed to unregister", "trigger_id", m.ID, "trigger_type", m.TriggerType, "err", err)
		}
	})
}

func (c *Client) sendReply(s *session, m *wire.Message) {
	b, err := wire.Marshal(m)
	if err == nil {
		_ = s.send(c.ctx, b)
	}
}

// safeCall runs f, turning a panic into an error.
func safeCall(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return f()
}

// serialQueue runs functions one at a time in push order on a goroutine
// that exists only while there is work, so a slow trigger type handler
// neither blocks the socket reader nor sees its calls reordered.
type serialQueue struct {
	mu      sync.Mutex
	ops     []func()
	running bool
}

func (q *serialQueue) push(f func()) {
	q.mu.Lock()
	q.ops = append(q.ops, f)
	if q.running {
		q.mu.Unlock()
		return
	}
	q.running = true
	q.mu.Unlock()
	go q.drain()
}

func (q *serialQueue) drain() {
	for {
		q.mu.Lock()
		if len(q.ops) == 0 {
			q.running = false
			q.ops = nil
			q.mu.Unlock()
			return
		}
		f := q.ops[0]
		q.ops[0] = nil
		q.ops = q.ops[1:]
		q.mu.Unlock()
		f()
	}
}
