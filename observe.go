package sluice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/invocation"
)

// On says which outcomes of the observed function activate an observer.
type On string

// Outcomes an observer can be activated on.
const (
	OnSuccess  On = "success" // the default
	OnError    On = "error"
	OnComplete On = "complete"
)

// Capture names a part of the observed invocation that travels to the
// target in the envelope.
type Capture string

// What an envelope can carry. The default is input, output and caller.
const (
	CaptureInput    Capture = "input"
	CaptureOutput   Capture = "output"
	CaptureError    Capture = "error"
	CaptureCaller   Capture = "caller"
	CaptureMetadata Capture = "metadata"
)

// Deliver says what the target receives as its input.
type Deliver string

// What a target can receive.
const (
	DeliverEnvelope Deliver = "envelope" // the default: an Observed
	DeliverInput    Deliver = "input"    // the observed call's input
	DeliverOutput   Deliver = "output"   // its result
)

// Source is the observed side of an observer: a function and which of its
// invocations count.
type Source struct {
	FunctionID string
	// Filters select invocations, e.g. {"input.amount": {"$gte": 500}};
	// nil matches every one. The engine validates them (INVALID_FILTER).
	Filters map[string]any
	On      On        // default OnSuccess
	Capture []Capture // default input, output, caller
	Deliver Deliver   // default DeliverEnvelope
	// Args are for functions whose owner delivers to its observers itself.
	Args map[string]any
}

// Target is the function an observer activates.
type Target string

// ObserverState is an observer's lifecycle state as the engine reports it.
type ObserverState string

// Observer states.
const (
	ObserverPending   ObserverState = "pending"   // its source or target is not registered (yet), or its owner has not accepted it
	ObserverActive    ObserverState = "active"    // activations flow
	ObserverSuspended ObserverState = "suspended" // its target or source went away; it resumes when they return
	ObserverError     ObserverState = "error"     // refused; Err says why
	ObserverDisposed  ObserverState = "disposed"  // ended; Err says why
)

// Observed is what a target receives by default (DeliverEnvelope). Fields
// not captured are empty.
type Observed struct {
	ObserverID   string          `json:"observer_id"`
	ActivationID string          `json:"activation_id"`
	FunctionID   string          `json:"function_id"`
	Namespace    string          `json:"namespace,omitempty"`
	InvocationID string          `json:"invocation_id,omitempty"`
	Status       string          `json:"status"` // "success" or "error"
	Input        json.RawMessage `json:"input,omitempty"`
	Output       json.RawMessage `json:"output,omitempty"`
	Error        *Error          `json:"error,omitempty"`
	Caller       json.RawMessage `json:"caller,omitempty"`
	Metadata     json.RawMessage `json:"metadata,omitempty"`
	StartedAtMs  int64           `json:"started_at_ms"`
	DurationMs   float64         `json:"duration_ms"`
}

// ObserveOption configures an observer.
type ObserveOption func(*observeWire)

// MaxFires disposes the observer after n activations.
func MaxFires(n int) ObserveOption { return func(m *observeWire) { m.MaxFires = &n } }

// ExpiresIn disposes the observer after d.
func ExpiresIn(d time.Duration) ObserveOption {
	return func(m *observeWire) { ms := d.Milliseconds(); m.ExpiresInMs = &ms }
}

// MaxInFlight bounds the observer's activations running at once; the
// engine queues the rest (a bounded queue: see docs/protocol.md#observe).
func MaxInFlight(n int) ObserveOption { return func(m *observeWire) { m.MaxInFlight = &n } }

// ObserverID sets the observer's id (default: a random UUID).
func ObserverID(id string) ObserveOption { return func(m *observeWire) { m.ID = id } }

// ObserverMetadata is handed to the target with every activation, as the
// invocation's metadata.
func ObserverMetadata(v any) ObserveOption {
	return func(m *observeWire) { m.metadata = v }
}

type observeWire struct {
	Type   string `json:"type"`
	ID     string `json:"id"`
	Source struct {
		FunctionID string         `json:"function_id"`
		Filters    map[string]any `json:"filters,omitempty"`
		On         On             `json:"on,omitempty"`
		Capture    []Capture      `json:"capture,omitempty"`
		Deliver    Deliver        `json:"deliver,omitempty"`
		Args       map[string]any `json:"args,omitempty"`
	} `json:"source"`
	Target struct {
		FunctionID string `json:"function_id"`
	} `json:"target"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
	MaxFires    *int            `json:"max_fires,omitempty"`
	ExpiresInMs *int64          `json:"expires_in_ms,omitempty"`
	MaxInFlight *int            `json:"max_in_flight,omitempty"`

	metadata any
}

// ObserveHandle is a live observer. It lives until the context given to
// Observe is done, Close is called, or the engine ends it (max fires,
// expiry, an error); it survives reconnects (the client replays it with the
// same id).
type ObserveHandle struct {
	c     *Client
	id    string
	frame []byte

	mu      sync.Mutex
	state   ObserverState
	err     error
	changed chan struct{} // closed and replaced on every state change
	done    chan struct{} // closed once error or disposed
	closed  bool
}

// ID is the observer's id.
func (o *ObserveHandle) ID() string { return o.id }

// State is the observer's last known state.
func (o *ObserveHandle) State() ObserverState {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.state
}

// Err says why the observer is in error or disposed (an *Error with the
// engine's code: SELF_TARGET, INVALID_FILTER, MAX_FIRES, EXPIRED, ...).
func (o *ObserveHandle) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// Done is closed when the observer has ended (error or disposed).
func (o *ObserveHandle) Done() <-chan struct{} { return o.done }

// Ready waits until the observer is active. It fails with the observer's
// error if it ends first, or with ctx's error.
func (o *ObserveHandle) Ready(ctx context.Context) error {
	for {
		o.mu.Lock()
		st, err, ch := o.state, o.err, o.changed
		o.mu.Unlock()
		switch st {
		case ObserverActive:
			return nil
		case ObserverError, ObserverDisposed:
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close disposes the observer (unobserve). It is idempotent.
func (o *ObserveHandle) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	o.mu.Unlock()
	c := o.c
	// regMu: a replay in progress either still sends the observer (and the
	// session it goes to is published before regMu is released) or not.
	c.regMu.Lock()
	defer c.regMu.Unlock()
	c.mu.Lock()
	delete(c.observers, o.id)
	s := c.sess
	c.mu.Unlock()
	o.set(ObserverDisposed, &Error{Code: "UNOBSERVED", Message: "closed"})
	if s == nil {
		return nil // the engine forgets it when it is not replayed
	}
	b, _ := json.Marshal(map[string]string{"type": "unobserve", "id": o.id})
	return s.send(c.ctx, b)
}

func (o *ObserveHandle) set(st ObserverState, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.state == ObserverDisposed || o.state == ObserverError {
		return // final
	}
	o.state, o.err = st, err
	close(o.changed)
	o.changed = make(chan struct{})
	if st == ObserverDisposed || st == ObserverError {
		close(o.done)
	}
}

// Observe attaches an observer: after each invocation of src.FunctionID
// that matches src, the engine invokes target (fire and forget) with an
// Observed envelope (or what src.Deliver says). It returns once the engine
// has answered: an observer it refused is an *Error (SELF_TARGET,
// INVALID_ARGS, INVALID_FILTER, ...); one whose source or target is not
// registered yet is returned pending (see Ready).
//
// The observer lives until ctx is done or Close is called; it survives
// reconnects. The engine must support observe (Sluice, or an iii engine
// from 0.25): otherwise Observe fails with an *Error coded UNSUPPORTED.
func (c *Client) Observe(ctx context.Context, src Source, target Target, opts ...ObserveOption) (*ObserveHandle, error) {
	if src.FunctionID == "" || target == "" {
		return nil, errors.New("sluice: Observe needs a source function id and a target")
	}
	m := observeWire{Type: "observe", ID: invocation.NewID()}
	for _, o := range opts {
		o(&m)
	}
	m.Source.FunctionID, m.Source.Filters, m.Source.On = src.FunctionID, src.Filters, src.On
	m.Source.Capture, m.Source.Deliver, m.Source.Args = src.Capture, src.Deliver, src.Args
	m.Target.FunctionID = string(target)
	if m.metadata != nil {
		b, err := json.Marshal(m.metadata)
		if err != nil {
			return nil, fmt.Errorf("sluice: observer metadata: %w", err)
		}
		m.Metadata = b
	}
	frame, err := json.Marshal(&m)
	if err != nil {
		return nil, fmt.Errorf("sluice: observe: %w", err)
	}
	o := &ObserveHandle{c: c, id: m.ID, frame: frame, state: ObserverPending,
		changed: make(chan struct{}), done: make(chan struct{})}

	c.regMu.Lock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.regMu.Unlock()
		return nil, ErrClosed
	}
	if c.sess != nil && !c.engineObserve {
		c.mu.Unlock()
		c.regMu.Unlock()
		return nil, &Error{Code: "UNSUPPORTED", Message: "the engine does not support observe (no observe.v1 in its features)"}
	}
	if _, dup := c.observers[o.id]; dup {
		c.mu.Unlock()
		c.regMu.Unlock()
		return nil, fmt.Errorf("sluice: observer %s exists", o.id)
	}
	c.observers[o.id] = o
	ch := o.changed
	s := c.sess
	c.mu.Unlock()
	c.sendRegistration(s, frame)
	c.regMu.Unlock()

	wait, cancel := context.WithTimeout(ctx, c.cfg.invocationTimeout)
	defer cancel()
	select {
	case <-ch: // the engine's first answer
	case <-wait.Done():
		_ = o.Close()
		return nil, fmt.Errorf("sluice: observe %s: no answer from the engine: %w", src.FunctionID, wait.Err())
	}
	if st := o.State(); st == ObserverError || st == ObserverDisposed {
		_ = o.Close()
		return nil, o.Err()
	}
	go func() {
		select {
		case <-ctx.Done():
			_ = o.Close()
		case <-o.done:
		case <-c.ctx.Done():
		}
	}()
	return o, nil
}

// observeFrame handles observeresult and observerstatechanged.
func (c *Client) observeFrame(data []byte) {
	var m struct {
		ID     string `json:"id"`
		State  string `json:"state"`
		Error  *Error `json:"error"`
		Reason *Error `json:"reason"`
	}
	if json.Unmarshal(data, &m) != nil || m.ID == "" {
		return
	}
	c.mu.Lock()
	o := c.observers[m.ID]
	st := ObserverState(m.State)
	if o != nil && (st == ObserverError || st == ObserverDisposed) {
		delete(c.observers, m.ID) // not replayed
	}
	c.mu.Unlock()
	if o == nil {
		return
	}
	var err error
	if e := cmpErr(m.Error, m.Reason); e != nil {
		err = e
	}
	o.set(st, err)
}

func cmpErr(a, b *Error) *Error {
	if a != nil {
		return a
	}
	return b
}
