package sluice

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/uuid"

	"github.com/sluicehq/sluice/wire"
)

// JSON: payloads and results are encoded with encoding/json/v2 semantics
// (github.com/go-json-experiment/json), with map keys sorted as
// encoding/json does; decoding matches field names case-insensitively.
var encodeOptions = jsonv2.Deterministic(true)

func marshalJSON(v any) (jsontext.Value, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		return jsontext.Value(v), nil
	case jsontext.Value:
		return v, nil
	}
	return jsonv2.Marshal(v, encodeOptions)
}

// decodeOptions are the options for decoding values that came from the
// engine: case-insensitive names, and channel refs materialised as live
// channel ends bound to this client's engine.
func decodeOptions(url string, dial *dialOptions) jsonv2.Options {
	return jsonv2.JoinOptions(
		jsonv2.MatchCaseInsensitiveNames(true),
		jsonv2.WithUnmarshalers(channelUnmarshalers(url, dial)),
	)
}

func (c *Client) unmarshal(data []byte, v any) error {
	if len(data) == 0 {
		data = wire.Null
	}
	return jsonv2.Unmarshal(data, v, c.decOpts)
}

type callResult struct {
	msg  *wire.Message
	err  error
	role bool // the reader role comes with it (readerRole)
}

// pendingCall is a call waiting for its invocationresult. Whoever removes
// it from Client.pending (result, disconnect, Close, caller's ctx) owns the
// single delivery on ch.
type pendingCall struct {
	sess       *session
	functionID string
	expires    time.Time // the default timeout's deadline; zero if ctx has one
	ch         chan callResult
}

// Pending calls are recycled, channel included: two allocations per call.
var pendingCalls = sync.Pool{New: func() any { return &pendingCall{ch: make(chan callResult, 1)} }}

func newPendingCall(s *session, functionID string, expires time.Time) *pendingCall {
	p := pendingCalls.Get().(*pendingCall)
	p.sess, p.functionID, p.expires = s, functionID, expires
	return p
}

// release recycles p; its channel must be empty and p out of pending.
func (p *pendingCall) release() {
	*p = pendingCall{ch: p.ch}
	pendingCalls.Put(p)
}

// Trigger calls functionID synchronously with payload (any JSON-encodable
// value; nil sends null; a json.RawMessage is sent as is) and returns the
// raw result, nil when the function returned nothing.
//
// Errors:
//   - the function's error (or engine's, e.g. function_not_found) as *Error;
//   - ctx's deadline, or the client's invocation timeout when ctx has none:
//     an *Error with Code CodeTimeout that wraps context.DeadlineExceeded;
//     a result arriving later is dropped;
//   - ctx cancelled: an error wrapping context.Canceled;
//   - the socket dropped after the call was sent: *Error with Code
//     CodeInvocationStopped, at once (the call is not re-sent, since it may
//     have run);
//   - ErrClosed after Close.
//
// While the client is disconnected the call waits for the next connection
// (within ctx) before it is sent; so does a call whose frame the socket
// refused because it had just closed (it was not sent, so it cannot have
// run).
func (c *Client) Trigger(ctx context.Context, functionID string, payload any, opts ...CallOption) (json.RawMessage, error) {
	m, err := c.call(ctx, functionID, nil, payload, opts)
	if err != nil {
		return nil, err
	}
	if m.Error != nil {
		return nil, errorFromWire(m.Error, functionID)
	}
	if m.Result == nil {
		return nil, nil
	}
	return json.RawMessage(m.Result), nil
}

// Call is Trigger with the result decoded into Out. A function that
// returned nothing (or null) yields Out's zero value.
func Call[Out any](ctx context.Context, c *Client, functionID string, payload any, opts ...CallOption) (Out, error) {
	var out Out
	raw, err := c.Trigger(ctx, functionID, payload, opts...)
	if err != nil {
		return out, err
	}
	if err := c.unmarshal(raw, &out); err != nil {
		return out, fmt.Errorf("sluice: decode result of %s: %w", functionID, err)
	}
	return out, nil
}

// TriggerVoid sends a fire-and-forget call: it returns once the call is
// handed to the socket; the engine sends no answer, so errors of the
// function are never seen. While disconnected it waits for the next
// connection, within ctx or, when ctx has no deadline, the invocation
// timeout.
func (c *Client) TriggerVoid(ctx context.Context, functionID string, payload any, opts ...CallOption) error {
	b, err := c.invokeMessage(ctx, "", functionID, &wire.Action{Type: wire.ActionVoid}, payload, opts)
	if err != nil {
		return err
	}
	expires := c.defaultExpiry(ctx)
	for {
		s, err := c.session(ctx, functionID, expires)
		if err != nil {
			return err
		}
		if err := s.send(ctx, b); err == nil {
			return nil
		} else if ctx.Err() != nil {
			return ctxError(ctx, functionID)
		}
		// The socket closed under us before the frame was queued: it was
		// not sent, so sending on the next connection is safe.
		c.sendFailed(ctx, s)
	}
}

// sendFailed is called when a send on s failed while the caller's ctx was
// live: s's writer has closed, so s is dead even if no reader has noticed
// yet (nobody may be reading it). It ends s and waits until the client has
// forgotten it, so that the caller's retry waits for the next socket
// instead of failing on s again and again.
func (c *Client) sendFailed(ctx context.Context, s *session) {
	if c.ctx.Err() != nil {
		return // Close: the next session() answers ErrClosed
	}
	s.end()
	select {
	case <-s.detached:
	case <-ctx.Done():
	case <-c.ctx.Done():
	}
}

// Enqueue hands the call to the named queue of the engine and returns the
// receipt id (messageReceiptId) once the job is durably stored; the
// function runs later, at least once, with retries and a dead-letter queue
// (docs/queues.md). The engine answers with an error (Code "enqueue_error")
// when the queue is not declared or the job could not be stored.
func (c *Client) Enqueue(ctx context.Context, queue, functionID string, payload any, opts ...CallOption) (receiptID string, err error) {
	m, err := c.call(ctx, functionID, &wire.Action{Type: wire.ActionEnqueue, Queue: queue}, payload, opts)
	if err != nil {
		return "", err
	}
	if m.Error != nil {
		return "", errorFromWire(m.Error, functionID)
	}
	if id, ok := plainReceipt(m.Result); ok {
		return id, nil
	}
	var r struct {
		MessageReceiptID string `json:"messageReceiptId"`
	}
	if err := c.unmarshal(m.Result, &r); err != nil {
		return "", fmt.Errorf("sluice: decode enqueue receipt: %w", err)
	}
	return r.MessageReceiptID, nil
}

// plainReceipt reads the receipt as engines write it,
// {"messageReceiptId":"<id>"} with an id that needs no unescaping, without
// a JSON decoder (a tenth of an enqueue's CPU in the client); anything
// else is left to the decoder.
func plainReceipt(b []byte) (string, bool) {
	const head, tail = `{"messageReceiptId":"`, `"}`
	if len(b) < len(head)+len(tail) || string(b[:len(head)]) != head || string(b[len(b)-len(tail):]) != tail {
		return "", false
	}
	id := b[len(head) : len(b)-len(tail)]
	for _, ch := range id {
		if ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x80 {
			return "", false
		}
	}
	return string(id), true
}

func callOptions(opts []CallOption) callConfig {
	var cc callConfig
	for _, o := range opts {
		o(&cc)
	}
	return cc
}

func (c *Client) invokeMessage(ctx context.Context, id, functionID string, action *wire.Action, payload any, opts []CallOption) ([]byte, error) {
	var cc callConfig
	if len(opts) > 0 { // options would move cc to the heap on every call
		cc = callOptions(opts)
	}
	if !cc.traceSet {
		if inv := InvocationFrom(ctx); inv != nil {
			cc.traceparent, cc.baggage = inv.Traceparent, inv.Baggage
		}
	}
	data, err := marshalJSON(payload)
	if err != nil {
		return nil, fmt.Errorf("sluice: encode payload for %s: %w", functionID, err)
	}
	meta, err := marshalJSON(cc.metadata)
	if err != nil {
		return nil, fmt.Errorf("sluice: encode metadata for %s: %w", functionID, err)
	}
	// Sized up front: growing the buffer was most of the encode cost.
	b, err := wire.Encode(make([]byte, 0, len(data)+len(meta)+len(functionID)+256), &wire.Message{
		Type:         wire.TypeInvokeFunction,
		InvocationID: id,
		FunctionID:   functionID,
		// Always send data: the reference engine drops an invokefunction
		// without it.
		Data:        wire.DataOrNull(data),
		Action:      action,
		Metadata:    meta,
		Traceparent: cc.traceparent,
		Baggage:     cc.baggage,
	})
	if err != nil {
		return nil, fmt.Errorf("sluice: encode call to %s: %w", functionID, err)
	}
	return b, nil
}

// call sends a call that expects an invocationresult and waits for it.
//
// A ctx without a deadline gets the client's invocation timeout, enforced
// by the sweeper rather than a timer per call: creating and stopping a timer
// for every call was a measurable share of a round trip.
func (c *Client) call(ctx context.Context, functionID string, action *wire.Action, payload any, opts []CallOption) (*wire.Message, error) {
	id := uuid.NewString()
	b, err := c.invokeMessage(ctx, id, functionID, action, payload, opts)
	if err != nil {
		return nil, err
	}
	expires := c.defaultExpiry(ctx)
	var p *pendingCall
	for p == nil {
		s, err := c.session(ctx, functionID, expires)
		if err != nil {
			return nil, err
		}
		p = newPendingCall(s, functionID, expires)
		c.mu.Lock()
		switch {
		case c.closed:
			c.mu.Unlock()
			p.release()
			return nil, ErrClosed
		case c.sess != s: // dropped meanwhile; wait for the next one
			c.mu.Unlock()
			p.release()
			p = nil
			continue
		}
		c.pending[id] = p
		c.mu.Unlock()
		// Written at once even with other calls in flight: handing calls
		// to the writer goroutine to coalesce them (as nats.go's flusher
		// does) cost more than it saved, since concurrent callers rarely
		// send at the same moment (docs/benchmarks.md, durable queues).
		// Calls that find the socket busy queue and go out together.
		if err := s.send(ctx, b); err != nil {
			// Not queued, so not sent: safe to retry on the next socket.
			c.mu.Lock()
			mine := c.pending[id] == p
			if mine {
				delete(c.pending, id)
			}
			c.mu.Unlock()
			if !mine { // Close or a timeout answered it meanwhile
				_, _ = c.received(p, <-p.ch)
			}
			p.release()
			p = nil
			if ctx.Err() != nil {
				return nil, ctxError(ctx, functionID)
			}
			c.sendFailed(ctx, s)
		}
	}
	// Every return below has taken p out of pending and its answer (if
	// any was sent) off p.ch, so nobody else holds it any more.
	defer p.release()
	if inv := InvocationFrom(ctx); inv != nil && inv.run != 0 {
		// A handler running inline on a reader (of this client or another)
		// is about to wait for a frame: give that socket to a new reader.
		inv.role.handOff(inv.run)
	}
	if r, ok := p.sess.role.readOwn(ctx, id, p); ok {
		return r.msg, r.err
	}
	select {
	case r := <-p.ch:
		return c.received(p, r)
	case <-ctx.Done():
		c.mu.Lock()
		mine := c.pending[id] == p
		if mine {
			delete(c.pending, id) // a late result is now dropped
		}
		c.mu.Unlock()
		if !mine { // delivered at the same moment: prefer the answer
			return c.received(p, <-p.ch)
		}
		return nil, ctxError(ctx, functionID)
	}
}

// received unpacks a delivered answer; one that came with the reader role
// (readerRole) gives the role up again.
func (c *Client) received(p *pendingCall, r callResult) (*wire.Message, error) {
	if r.role {
		p.sess.role.leave()
	}
	return r.msg, r.err
}

// defaultExpiry returns when a call under ctx times out by the client's
// invocation timeout: zero if ctx has a deadline of its own (or the
// timeout is off).
func (c *Client) defaultExpiry(ctx context.Context) time.Time {
	if _, ok := ctx.Deadline(); ok || c.cfg.invocationTimeout <= 0 {
		return time.Time{}
	}
	return time.Now().Add(c.cfg.invocationTimeout)
}

// sweepInterval is how often expired calls are failed: a twentieth of the
// invocation timeout, within [5 ms, 1 s].
func (c *Client) sweepInterval() time.Duration {
	return min(max(c.cfg.invocationTimeout/20, 5*time.Millisecond), time.Second)
}

// sweep fails the pending calls whose default timeout has passed.
func (c *Client) sweep(now time.Time) {
	var expired []*pendingCall
	c.mu.Lock()
	for id, p := range c.pending {
		if !p.expires.IsZero() && now.After(p.expires) {
			delete(c.pending, id)
			expired = append(expired, p)
		}
	}
	c.mu.Unlock()
	for _, p := range expired {
		role := &p.sess.role // p is the caller's again once it has the answer
		p.ch <- callResult{err: timeoutError(p.functionID)}
		role.interrupt() // the caller may be reading for itself
	}
}

// sweepLoop runs sweep until the client is closed.
func (c *Client) sweepLoop() {
	t := time.NewTicker(c.sweepInterval())
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			c.sweep(now)
		case <-c.ctx.Done():
			return
		}
	}
}

// session returns the current connection, waiting for one while
// disconnected: within ctx, and until expires when that is set (the
// default timeout's deadline is only armed if there is a wait).
func (c *Client) session(ctx context.Context, functionID string, expires time.Time) (*session, error) {
	var timeout <-chan time.Time
	waiting := false
	for {
		c.mu.Lock()
		closed, s, up := c.closed, c.sess, c.up
		c.mu.Unlock()
		switch {
		case closed:
			return nil, ErrClosed
		case s != nil:
			return s, nil
		}
		if !waiting {
			waiting = true
			c.offline.Add(1)
			defer c.offline.Add(-1)
			if !expires.IsZero() {
				t := time.NewTimer(time.Until(expires))
				defer t.Stop()
				timeout = t.C
			}
		}
		select {
		case <-up:
		case <-c.ctx.Done():
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, ctxError(ctx, functionID)
		case <-timeout:
			return nil, timeoutError(functionID)
		}
	}
}

// complete delivers an invocationresult to its waiting call; results for
// calls that already gave up are dropped. With handRole (a background
// reader), the result of a call that is alone in flight goes with the
// reader role, and complete reports that the calling reader must stop
// (readerRole).
func (c *Client) complete(m *wire.Message, handRole bool) bool {
	c.mu.Lock()
	p := c.pending[m.InvocationID]
	handRole = handRole && p != nil && len(c.pending) == 1
	delete(c.pending, m.InvocationID)
	c.mu.Unlock()
	if p == nil {
		c.log.Debug("sluice: dropped result of a call nobody waits for", "invocation_id", m.InvocationID)
		return false
	}
	p.ch <- callResult{msg: m, role: handRole}
	return handRole
}

// Sync returns once the engine has processed everything this client sent
// before it. Registrations (functions, triggers, HTTP routes) are sent
// without waiting for an answer, because the protocol has none; the engine
// handles one connection's messages in order, so a round trip on the same
// connection is the barrier. Call it before relying on a registration,
// e.g. before sending HTTP requests to a route just registered.
func (c *Client) Sync(ctx context.Context) error {
	// A discovery call that matches nothing: cheap, and served by any
	// engine that implements the iii discovery functions.
	_, err := c.Trigger(ctx, wire.FnFunctionsList, syncProbe)
	return err
}

var syncProbe = json.RawMessage(`{"prefix":"\u0000"}`)
