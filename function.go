package sluice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/wsconn"
	"github.com/sluicehq/sluice/wire"
)

// Invocation describes the call a handler is serving.
type Invocation struct {
	// ID is the engine's invocation id (a UUID); "" if the engine sent none.
	ID         string
	FunctionID string
	// Data is the payload as received ("null" when the caller sent none).
	// When another worker called, the engine has added "_caller_worker_id"
	// to an object payload; it is also in CallerWorkerID.
	Data json.RawMessage
	// Metadata is the caller's call metadata, or the trigger's metadata
	// when a trigger fired; nil when absent.
	Metadata    json.RawMessage
	Traceparent string
	Baggage     string
	// CallerWorkerID is the worker id of the calling worker, when the
	// engine told us.
	CallerWorkerID string

	// role and run identify the inline run serving this invocation (run
	// is 0 on a goroutine of its own), so that a call the handler makes,
	// on any client, can hand the socket to a new reader before it waits.
	role *readerRole
	run  uint64
}

type invocationKey struct{}

// invocationContext is a handler's context: the client's, carrying the
// invocation (context.WithValue would be one more allocation per call).
type invocationContext struct {
	context.Context
	inv Invocation
}

func (x *invocationContext) Value(key any) any {
	if key == (invocationKey{}) {
		return &x.inv
	}
	return x.Context.Value(key)
}

// InvocationFrom returns the invocation a handler's context belongs to, or
// nil outside a handler. Calls made with that context carry the
// invocation's trace context.
func InvocationFrom(ctx context.Context) *Invocation {
	inv, _ := ctx.Value(invocationKey{}).(*Invocation)
	return inv
}

// RawHandler serves a function on raw JSON. Returning a nil result sends
// no result at all (callers see nil / the zero value); json.RawMessage("null")
// sends null. Returning an *Error chooses the error code the caller sees;
// any other error is reported as CodeInvocationFailed. Panics are recovered
// and reported as CodeInvocationFailed with the stack as Stacktrace.
//
// ctx is cancelled when the Client is closed. It is not cancelled when the
// socket drops: the engine has then already answered the caller with
// invocation_stopped, and the handler's result is discarded.
//
// Handlers may block, and several run at once. A function whose handler
// has been quick (under about 50 µs) runs on the connection's reader
// goroutine, which saves a goroutine hand-off per call; if such a handler
// blocks, the connection moves to a new reader within one or two
// milliseconds, and calls the handler makes hand it over at once. Slower
// functions run on a goroutine of their own.
type RawHandler func(ctx context.Context, inv *Invocation) (json.RawMessage, error)

type function struct {
	avg runAverage // handler run time, deciding inline or not (reader.go)
	h   RawHandler
	msg []byte // the registerfunction frame, replayed on reconnect
	seq uint64
}

func (f *function) order() uint64   { return f.seq }
func (f *function) message() []byte { return f.msg }

// RegisterRaw registers a function served by h. The id must be non-empty
// and not registered on this client already (Unregister first to replace
// a handler). The registration is kept across reconnects.
func (c *Client) RegisterRaw(id string, h RawHandler, opts ...FunctionOption) error {
	if id == "" {
		return errors.New("sluice: function id must not be empty")
	}
	if h == nil {
		return errors.New("sluice: nil handler for " + id)
	}
	var fc functionConfig
	for _, o := range opts {
		o(&fc)
	}
	m := wire.Message{Type: wire.TypeRegisterFunction, ID: id, Description: fc.description}
	var err error
	for _, f := range []struct {
		dst *jsontext.Value
		v   any
	}{{&m.Metadata, fc.metadata}, {&m.RequestFormat, fc.requestFormat}, {&m.ResponseFormat, fc.responseFormat}} {
		if *f.dst, err = marshalJSON(f.v); err != nil {
			return fmt.Errorf("sluice: register %s: %w", id, err)
		}
	}
	b, err := wire.Marshal(&m)
	if err != nil {
		return fmt.Errorf("sluice: register %s: %w", id, err)
	}

	return register(c, c.functions, "function", id, false, b, func(seq uint64) *function {
		return &function{h: h, msg: b, seq: seq}
	})
}

// register adds id to one of the client's registration maps (under the
// locks every registration change takes) and sends its message b if
// connected. The entry gets the next replay position, or keeps the old
// one when replace allows replacing an existing id (otherwise that is an
// error).
func register[T registration](c *Client, m map[string]T, kind, id string, replace bool, b []byte, entry func(seq uint64) T) error {
	c.regMu.Lock()
	defer c.regMu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	var seq uint64
	if old, dup := m[id]; dup {
		if !replace {
			c.mu.Unlock()
			return fmt.Errorf("sluice: %s %s is already registered", kind, id)
		}
		seq = old.order() // a replacement keeps its place in the replay
	} else {
		c.seq++
		seq = c.seq
	}
	m[id] = entry(seq)
	s := c.sess
	c.mu.Unlock()
	c.sendRegistration(s, b)
	return nil
}

// sendRegistration sends a registration change on s if connected. A failed
// send is fine: the next connection replays the current registrations.
// Called with regMu held.
func (c *Client) sendRegistration(s *session, b []byte) {
	if s != nil {
		_ = s.send(c.ctx, b)
	}
}

// Register registers a typed function: the payload is decoded into In
// (field names match case-insensitively; channel refs become live channel
// ends) and the returned Out is encoded as the result. A payload that does
// not decode fails the call with CodeInvocationFailed.
func Register[In, Out any](c *Client, id string, fn func(ctx context.Context, in In) (Out, error), opts ...FunctionOption) error {
	if fn == nil {
		return errors.New("sluice: nil function for " + id)
	}
	return c.RegisterRaw(id, func(ctx context.Context, inv *Invocation) (json.RawMessage, error) {
		var in In
		if err := c.unmarshal(inv.Data, &in); err != nil {
			return nil, &Error{Code: CodeInvocationFailed, Message: "decode input: " + err.Error()}
		}
		out, err := fn(ctx, in)
		if err != nil {
			return nil, err
		}
		b, err := jsonv2.Marshal(out, encodeOptions)
		if err != nil {
			return nil, fmt.Errorf("encode output: %w", err)
		}
		return b, nil
	}, opts...)
}

// Unregister removes a function registered on this client. While
// disconnected the removal is only local (the engine forgot the old
// connection's functions anyway).
func (c *Client) Unregister(id string) error {
	_, err := unregister(c, c.functions, "function", id, func(*function) *wire.Message {
		return &wire.Message{Type: wire.TypeUnregisterFunction, ID: id}
	})
	return err
}

// unregister removes id from one of the client's registration maps (under
// the locks every registration change takes) and tells the engine, if
// connected, with the message msg builds from the removed entry.
func unregister[T any](c *Client, m map[string]T, kind, id string, msg func(T) *wire.Message) (T, error) {
	c.regMu.Lock()
	defer c.regMu.Unlock()
	c.mu.Lock()
	var zero T
	if c.closed {
		c.mu.Unlock()
		return zero, ErrClosed
	}
	v, ok := m[id]
	if !ok {
		c.mu.Unlock()
		return zero, fmt.Errorf("sluice: %s %s is not registered", kind, id)
	}
	delete(m, id)
	s := c.sess
	c.mu.Unlock()
	b, _ := wire.Marshal(msg(v))
	c.sendRegistration(s, b)
	return v, nil
}

// invoke serves one invokefunction from the engine with f (nil: not
// registered here) and answers on the socket it came from. run is the
// inline run's number, 0 on a goroutine of its own; more says the reader
// has more input of the same burst buffered (more results follow).
func (c *Client) invoke(s *session, m *wire.Message, f *function, run uint64, more bool) {
	ictx := &invocationContext{Context: c.ctx}
	inv := &ictx.inv
	*inv = Invocation{
		role:        &s.role,
		run:         run,
		ID:          m.InvocationID,
		FunctionID:  m.FunctionID,
		Data:        json.RawMessage(wire.DataOrNull(m.Data)),
		Traceparent: m.Traceparent,
		Baggage:     m.Baggage,
	}
	if m.Metadata != nil {
		inv.Metadata = json.RawMessage(m.Metadata)
	}
	inv.CallerWorkerID = wire.CallerIDValid(jsontext.Value(inv.Data)) // decoded, so valid

	var result json.RawMessage
	var errBody *wire.ErrorBody
	if f == nil {
		errBody = &wire.ErrorBody{Code: CodeFunctionNotFound, Message: "Function " + m.FunctionID + " not found"}
	} else {
		start := time.Now()
		result, errBody = runHandler(ictx, f.h, inv)
		f.avg.add(time.Since(start))
	}
	if m.InvocationID == "" {
		if errBody != nil {
			c.log.Warn("sluice: fire-and-forget invocation failed", "function_id", m.FunctionID, "err", errBody.Error())
		}
		return
	}
	reply := &wire.Message{
		Type:         wire.TypeInvocationResult,
		InvocationID: m.InvocationID,
		FunctionID:   m.FunctionID,
		Error:        errBody,
		Traceparent:  m.Traceparent,
		Baggage:      m.Baggage,
	}
	if errBody == nil && result != nil {
		reply.Result = jsontext.Value(result)
	}
	b, err := wire.Encode(wsconn.Buffer(), reply)
	if err != nil {
		// Only an invalid result from a RawHandler gets here.
		reply.Result = nil
		reply.Error = &wire.ErrorBody{Code: CodeInvocationFailed, Message: "handler returned invalid JSON: " + err.Error()}
		b, _ = wire.Marshal(reply)
	}
	if more {
		err = s.sendDeferred(c.ctx, b, wsconn.Recycle)
	} else {
		err = s.conn.Send(c.ctx, wsconn.Text, b, wsconn.Recycle)
	}
	if err != nil {
		c.log.Debug("sluice: result not sent, socket gone", "function_id", m.FunctionID, "invocation_id", m.InvocationID)
	}
}

func runHandler(ctx context.Context, h RawHandler, inv *Invocation) (result json.RawMessage, errBody *wire.ErrorBody) {
	defer func() {
		if v := recover(); v != nil {
			result, errBody = nil, panicError(v)
		}
	}()
	res, err := h(ctx, inv)
	if err != nil {
		return nil, handlerError(err)
	}
	return res, nil
}
