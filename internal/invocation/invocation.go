// Package invocation routes function invocations to whoever executes them
// and tracks the ones that still owe a result.
//
// Invoker is the seam for scaling out: Local resolves a function id through
// the local registry and delivers to a connection of this process; a
// cluster implementation would deliver to the node that holds the worker.
// Callers only ever see Invoke and a Completion called exactly once.
package invocation

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/uuid"

	"github.com/sluicehq/sluice/internal/metrics"
	"github.com/sluicehq/sluice/internal/otel"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

func init() { uuid.EnableRandPool() }

// NewID returns a fresh UUIDv4 string.
func NewID() string { return uuid.NewString() }

// Request is one invocation as the executor will see it.
type Request struct {
	// InvocationID is the id the executor answers with; Invoke fills it in
	// when empty.
	InvocationID string
	FunctionID   string
	// Namespace is where FunctionID resolves ("" is the default one).
	Namespace string
	Data      jsontext.Value
	Metadata  jsontext.Value
	// DataVerified: Data is as a worker's text frame carried it,
	// validated when it was decoded (wire.DecodeText), so an executor
	// need not scan it again to forward it. Whoever replaces Data clears
	// it.
	DataVerified bool
	Traceparent  string
	Baggage      string
	// CallerWorkerID is the worker that made the call ("" for the engine).
	CallerWorkerID string
	// Void calls are executed but nobody waits for the result.
	Void bool
	// MinTimeout raises the engine's deadline for this invocation to at
	// least this (HTTP triggers pass http.timeout, so that the engine
	// never answers TIMEOUT before the HTTP side would give up).
	MinTimeout time.Duration
	// Batch, when set, is the write batch of the connection reader that
	// started this invocation: writes caused on that goroutine may be
	// deferred to its flush. Executors that hand the request to another
	// goroutine must not use it.
	Batch WriteBatch
	// AnswerBatch is set by a deferred builtin right before it answers,
	// on the goroutine that answers: that goroutine's write batch (see
	// Result.Batch), or nil. A deferred builtin answering on the caller's
	// goroutine may set it to Batch.
	AnswerBatch WriteBatch

	// observe.v1: Caller is the caller the calling SDK asserted (raw JSON
	// object, or nil); CallerIdent the calling connection's stamped
	// identity (`"worker_id":…,"worker_name":…`, no braces); ObserveDepth
	// the observe hops that led to this call; Activation marks an
	// activation of an observer (raw JSON object). Executors that speak
	// observe.v1 forward them; others never see them.
	Caller       jsontext.Value
	CallerIdent  []byte
	ObserveDepth int
	Activation   jsontext.Value
}

// Watcher sees invocations while anyone observes functions (observe.v1).
// Watch returns the completion to use for req: done itself when nobody
// observes req's function, or a wrapper that reports the result. A void
// req that is observed may be made non-void (done is then non-nil).
type Watcher interface {
	Watch(req *Request, done Completion) Completion
}

// Result is the outcome of an invocation: Value (absent = nil) or Err.
type Result struct {
	Value jsontext.Value
	// ValueVerified: Value was validated when it was decoded (as
	// Request.DataVerified; whoever replaces Value clears it).
	ValueVerified bool
	Err           *wire.ErrorBody
	Traceparent   string
	Baggage       string
	// Batch is as in Request, for the goroutine that produced the result.
	Batch WriteBatch
}

// WriteBatch is a connection reader's write batch (the engine's
// *wsconn.Batch). This package only carries it from a request to its
// result on the same goroutine; the executor that writes knows its type,
// so the routing layer does not depend on the socket layer.
type WriteBatch interface{ Flush() }

// ErrExecutorCongested is what Executor.Deliver returns when the executor
// cannot take more now (the caller is answered worker_congested).
var ErrExecutorCongested = errors.New("invocation: executor congested")

// Completion receives the result of a non-void invocation, exactly once.
// It runs on the goroutine that produced the result and must not block.
type Completion func(Result)

// Executor runs invocations: a worker connection, or the engine itself.
type Executor interface {
	registry.Owner
	// Deliver hands req to the executor. It must not block (it runs on
	// the caller's reader): ErrExecutorCongested means the executor cannot
	// take more now, any other error that it is gone. It must not keep req
	// (the caller may reuse it, InvokeHeld), only copies of its fields.
	Deliver(req *Request) error
}

// Invoker starts invocations.
type Invoker interface {
	// Invoke routes req to the function's executor. done is called exactly
	// once for a non-void request (never for a void one).
	Invoke(req *Request, done Completion)
}

// External is a function the engine executes on its owner's behalf (an
// HTTP-invoked function, internal/httpfunc). Run must not block; it calls
// done exactly once, from any goroutine, unless done is nil (a void call).
type External interface {
	Run(ctx context.Context, req *Request, done func(jsontext.Value, *wire.ErrorBody))
}

func (l *Local) runExternal(x External, req *Request, done Completion) {
	if req.InvocationID == "" {
		req.InvocationID = NewID()
	}
	if req.Void {
		x.Run(l.ctx, req, nil)
		return
	}
	x.Run(l.ctx, req, func(v jsontext.Value, err *wire.ErrorBody) {
		done(Result{Value: v, Err: err, Traceparent: req.Traceparent, Baggage: req.Baggage})
	})
}

// Builtin is a function implemented by the engine.
type Builtin func(ctx context.Context, req *Request) (jsontext.Value, *wire.ErrorBody)

// Deferred is a builtin that starts on the caller's goroutine, in the
// order the caller's calls arrive, must not block there (beyond brief
// backpressure), and answers later through done: exactly once, from any
// goroutine, without blocking.
type Deferred func(ctx context.Context, req *Request, done func(jsontext.Value, *wire.ErrorBody))

// Remote routes invocations of functions this process does not serve to
// other engines (cluster mode).
type Remote interface {
	// Invoke takes req, reporting false if no other engine can serve it
	// (the caller then answers function_not_found). done is as for Invoker.
	Invoke(req *Request, done Completion) bool
}

// Local routes through the registry of this process, and through Remote
// for functions it does not hold.
type Local struct {
	reg     *registry.Registry
	pending Table
	ctx     context.Context
	metrics *metrics.Metrics // nil: not counted
	tracer  *otel.Exporter   // nil: no spans (trace.go)
	remote  Remote           // nil: single node
	// watch is non-nil only while some function has an observer, so an
	// unobserved invocation pays one atomic load.
	watch atomic.Pointer[watcherBox]
}

type watcherBox struct{ w Watcher }

// SetWatcher installs (w non-nil) or removes (nil) the observe hook.
func (l *Local) SetWatcher(w Watcher) {
	if w == nil {
		l.watch.Store(nil)
		return
	}
	l.watch.Store(&watcherBox{w})
}

// SetRemote sends invocations of functions not registered here to r. Call
// it before the first Invoke.
func (l *Local) SetRemote(r Remote) { l.remote = r }

// InvokeLocal is Invoke without Remote: for invocations that came from
// another engine (never forwarded again).
func (l *Local) InvokeLocal(req *Request, done Completion) { _ = l.invoke(req, done, false) }

// NewLocal returns an Invoker over reg. ctx bounds builtin executions (it
// ends at engine shutdown).
func NewLocal(ctx context.Context, reg *registry.Registry) *Local {
	l := &Local{reg: reg, ctx: ctx}
	l.pending.init()
	return l
}

// SetMetrics makes Invoke count invocations in m. Call it before the
// first Invoke.
func (l *Local) SetMetrics(m *metrics.Metrics) { l.metrics = m }

// Pending exposes the table of invocations awaiting a result.
func (l *Local) Pending() *Table { return &l.pending }

// Invoke implements Invoker.
func (l *Local) Invoke(req *Request, done Completion) { _ = l.invoke(req, done, true) }

// InvokeHeld is Invoke that reports whether req may still be referenced
// once it returns (a watcher, another engine, a builtin or an external
// function has it); if not, the caller may reuse req for its next call.
func (l *Local) InvokeHeld(req *Request, done Completion) (held bool) {
	return l.invoke(req, done, true)
}

// invoke routes req and reports whether req may still be referenced after
// it returns: by a watcher, another engine, a builtin or an external
// function. An Executor's Deliver does not keep it.
func (l *Local) invoke(req *Request, done Completion, remote bool) (held bool) {
	if wb := l.watch.Load(); wb != nil {
		done = wb.w.Watch(req, done)
		held = true
	}
	fn, ok := l.reg.FunctionIn(req.Namespace, req.FunctionID)
	if !ok && remote && l.remote != nil && l.remote.Invoke(req, done) {
		return true
	}
	var obs observed
	if m := l.metrics; m != nil {
		f := m.Function(req.FunctionID, ok)
		if req.Void {
			f.Void()
			if m.Feed.Active() {
				m.Feed.Publish(metrics.Invocation{Time: time.Now(), FunctionID: req.FunctionID, Namespace: req.Namespace, CallerWorkerID: req.CallerWorkerID, Outcome: metrics.OutcomeVoid})
			}
		} else {
			obs = observed{m: m, f: f, start: sinceEpoch(), fn: req.FunctionID, ns: req.Namespace, caller: req.CallerWorkerID}
			m.Started()
		}
	}
	if l.tracer != nil {
		if obs.span = l.startSpan(req, fn, ok); req.Void && obs.span != nil {
			defer obs.span.End() // a void call's span covers its routing
			obs.span = nil
		}
	}
	if !ok {
		if !req.Void {
			res := Result{Err: l.notFound(req)}
			obs.finish(res)
			done(res)
		}
		return held
	}
	if fn.External != nil {
		if x, ok := fn.External.(External); ok {
			l.runExternal(x, req, obs.wrap(done))
			return true
		}
	}
	switch ex := fn.Owner.(type) {
	case *EngineExecutor:
		ex.run(l.ctx, req, obs.wrap(done))
		return true
	case Executor:
		if req.Void {
			if req.InvocationID == "" {
				req.InvocationID = NewID()
			}
			_ = ex.Deliver(req)
			return held
		}
		// The pending entry carries the metrics: no closure per call.
		req.InvocationID = l.pending.add(req.InvocationID, ex.OwnerID(), done, req.MinTimeout, obs)
		if err := ex.Deliver(req); err != nil {
			body := wire.ErrInvocationStopped()
			if errors.Is(err, ErrExecutorCongested) {
				body = ErrCongested(req.FunctionID)
			}
			l.pending.Complete(req.InvocationID, ex.OwnerID(), Result{Err: body})
		}
	default:
		if !req.Void {
			obs.wrap(done)(Result{Err: &wire.ErrorBody{Code: wire.CodeFunctionNotInvokable, Message: "Function " + req.FunctionID + " cannot be invoked by this engine"}})
		}
	}
	return held
}

// notFound is the function_not_found error of req, naming the namespaces
// where the id does exist.
func (l *Local) notFound(req *Request) *wire.ErrorBody {
	ns := req.Namespace
	if ns == "" {
		ns = wire.DefaultNamespace
	}
	var elsewhere []string
	for _, other := range l.reg.NamespacesOf(req.FunctionID) {
		if other != ns {
			elsewhere = append(elsewhere, other)
		}
	}
	return wire.ErrFunctionNotFoundIn(req.FunctionID, ns, elsewhere)
}

// epoch is the reference of observed.start (monotonic).
var epoch = time.Now()

// sinceEpoch is now as an observed.start.
func sinceEpoch() time.Duration { return time.Since(epoch) }

// observed is a non-void invocation being counted; the zero value counts
// nothing.
type observed struct {
	m *metrics.Metrics
	f *metrics.Function
	// start is when it started, as an offset from epoch: 8 bytes where a
	// time.Time takes 24, which keeps a pending entry within the 128
	// bytes a map stores in place (a bigger one costs an allocation per
	// call).
	start          time.Duration
	span           *otel.Span // nil: not traced
	fn, ns, caller string     // for the live feed
}

// finish records the invocation's outcome and latency, and reports it to
// the live feed when anyone listens.
func (o *observed) finish(r Result) {
	if o.span != nil {
		o.endSpan(r)
	}
	if o.f == nil {
		return
	}
	oc := outcome(r.Err)
	// One monotonic reading, no wall clock: both ends are offsets from epoch.
	d := sinceEpoch() - o.start
	o.f.DoneAfter(o.m, d, oc)
	if o.m.Feed.Active() {
		ev := metrics.Invocation{Time: time.Now(), FunctionID: o.fn, Namespace: o.ns, CallerWorkerID: o.caller, Duration: d, Outcome: oc}
		if r.Err != nil {
			ev.ErrorCode = r.Err.Code
		}
		o.m.Feed.Publish(ev)
	}
}

// wrap returns done, counting the result first.
func (o observed) wrap(done Completion) Completion {
	if (o.f == nil && o.span == nil) || done == nil {
		return done
	}
	return func(r Result) {
		o.finish(r)
		done(r)
	}
}

func outcome(e *wire.ErrorBody) int {
	switch {
	case e == nil:
		return metrics.OutcomeOK
	case e.Code == wire.CodeTimeout || e.Code == "timeout":
		return metrics.OutcomeTimeout
	case e.Code == wire.CodeInvocationStopped:
		return metrics.OutcomeStopped
	default:
		return metrics.OutcomeError
	}
}

// ErrCongested answers an invocation whose executor has too many bytes
// waiting to be written to it: failing at once keeps the caller's reader
// from waiting on another connection's socket.
func ErrCongested(functionID string) *wire.ErrorBody {
	return &wire.ErrorBody{Code: wire.CodeWorkerCongested, Message: "the worker executing " + functionID +
		" is not reading its socket fast enough (max_pending_bytes_per_worker reached); try again later"}
}

// EngineExecutor owns the engine's own functions.
type EngineExecutor struct {
	mu       sync.RWMutex
	builtins map[string]builtinEntry
}

type builtinEntry struct {
	fn       Builtin
	async    bool
	deferred Deferred
}

// OwnerID implements registry.Owner: the engine has the empty id.
func (*EngineExecutor) OwnerID() string { return "" }

// Add registers a builtin. Async builtins may block and run on their own
// goroutine; the others run inline on the caller's goroutine.
func (e *EngineExecutor) Add(id string, fn Builtin, async bool) {
	e.mu.Lock()
	if e.builtins == nil {
		e.builtins = make(map[string]builtinEntry)
	}
	e.builtins[id] = builtinEntry{fn: fn, async: async}
	e.mu.Unlock()
}

// AddDeferred registers a deferred builtin: unlike an async one (a
// goroutine per call, which the Go scheduler may run in any order), it
// keeps the order of each caller's calls, and costs no goroutine.
func (e *EngineExecutor) AddDeferred(id string, fn Deferred) {
	e.mu.Lock()
	if e.builtins == nil {
		e.builtins = make(map[string]builtinEntry)
	}
	e.builtins[id] = builtinEntry{deferred: fn}
	e.mu.Unlock()
}

// Call runs a builtin directly, on the caller's goroutine, without routing
// or counting it (the console's periodic reads must not show up as
// invocations). ok is false when id is not a builtin.
func (e *EngineExecutor) Call(ctx context.Context, req *Request) (v jsontext.Value, err *wire.ErrorBody, ok bool) {
	e.mu.RLock()
	b, ok := e.builtins[req.FunctionID]
	e.mu.RUnlock()
	if !ok {
		return nil, nil, false
	}
	if b.deferred != nil {
		type answer struct {
			v   jsontext.Value
			err *wire.ErrorBody
		}
		ch := make(chan answer, 1)
		b.deferred(ctx, req, func(v jsontext.Value, err *wire.ErrorBody) { ch <- answer{v, err} })
		a := <-ch
		return a.v, a.err, true
	}
	v, err = b.fn(ctx, req)
	return v, err, true
}

func (e *EngineExecutor) run(ctx context.Context, req *Request, done Completion) {
	e.mu.RLock()
	b, ok := e.builtins[req.FunctionID]
	e.mu.RUnlock()
	if !ok {
		if !req.Void {
			done(Result{Err: wire.ErrFunctionNotFound(req.FunctionID)})
		}
		return
	}
	if b.deferred != nil {
		// The answer may come from another goroutine: the builtin names
		// that goroutine's write batch, if any.
		b.deferred(ctx, req, func(v jsontext.Value, err *wire.ErrorBody) {
			if !req.Void {
				done(Result{Value: v, Err: err, Traceparent: req.Traceparent, Baggage: req.Baggage, Batch: req.AnswerBatch})
			}
		})
		return
	}
	call := func(batch WriteBatch) {
		v, err := b.fn(ctx, req)
		if !req.Void {
			done(Result{Value: v, Err: err, Traceparent: req.Traceparent, Baggage: req.Baggage, Batch: batch})
		}
	}
	if b.async {
		go call(nil)
	} else {
		call(req.Batch)
	}
}

// Table tracks invocations awaiting a result, with a count per executor so
// that a vanished executor's invocations can be found and halted.
//
// With SetTimeout, invocations that get no result in time are answered
// TIMEOUT by Sweep. Entries carry the sweep count at which they were added
// rather than a time: the hot path reads no clock and arms no timer.
type Table struct {
	mu   sync.Mutex
	byID map[string]entry
	// owed counts each executor's entries; an entry points at its
	// executor's counter, so that completing it hashes nothing more.
	owed     map[string]*int
	sweeps   uint64 // Sweep calls so far
	ticks    uint64 // sweeps an entry may live; 0: no deadline
	timeout  time.Duration
	interval time.Duration
}

type entry struct {
	executor string
	owed     *int // owed[executor]
	done     Completion
	obs      observed
	due      uint64        // the Sweep count at which it expires; 0: never
	timeout  time.Duration // its deadline, for the error message
}

func (t *Table) init() {
	t.byID = make(map[string]entry)
	t.owed = make(map[string]*int)
}

// Add records a pending invocation under id (a fresh id if id is empty or
// already taken) and returns the id used.
func (t *Table) Add(id, executor string, done Completion) string {
	return t.AddAtLeast(id, executor, done, 0)
}

// AddAtLeast is Add with a deadline of at least atLeast (when deadlines are
// on at all).
func (t *Table) AddAtLeast(id, executor string, done Completion, atLeast time.Duration) string {
	return t.add(id, executor, done, atLeast, observed{})
}

func (t *Table) add(id, executor string, done Completion, atLeast time.Duration, obs observed) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID == nil { // the zero Table is ready to use
		t.init()
	}
	if _, taken := t.byID[id]; id == "" || taken {
		id = NewID()
	}
	e := entry{executor: executor, done: done, obs: obs}
	if t.ticks > 0 {
		// Added after sweep n: due at sweep n+ticks+3, so it lives at
		// least ticks whole intervals even when the ticks of sweeps n+1
		// and n+2 have come and their Sweeps have not counted yet (one
		// waiting for t.mu, one in the ticker's channel: a sweeper late
		// under load; with n+ticks+1 a TIMEOUT came up to an interval
		// early).
		ticks, d := t.ticks, t.timeout
		if atLeast > d {
			ticks, d = uint64((atLeast+t.interval-1)/t.interval), atLeast
		}
		e.due, e.timeout = t.sweeps+ticks+3, d
	}
	n := t.owed[executor]
	if n == nil {
		n = new(int)
		t.owed[executor] = n
	}
	*n++
	e.owed = n
	t.byID[id] = e
	return id
}

// Complete delivers res for id if executor is the one that owes it. It
// reports whether a pending invocation was completed.
func (t *Table) Complete(id, executor string, res Result) bool {
	t.mu.Lock()
	e, ok := t.byID[id]
	if !ok || e.executor != executor {
		t.mu.Unlock()
		return false
	}
	delete(t.byID, id)
	// A counter stays when it drops to zero (HaltExecutor drops it):
	// making a new one for the next invocation cost an allocation per call.
	*e.owed--
	t.mu.Unlock()
	e.obs.finish(res)
	e.done(res)
	return true
}

// HaltExecutor completes every invocation owed by executor with err and
// returns how many there were. It scans every pending invocation: it runs
// when an executor goes away, not per call.
func (t *Table) HaltExecutor(executor string, err *wire.ErrorBody) int {
	t.mu.Lock()
	var halted []entry
	if n := t.owed[executor]; n != nil {
		delete(t.owed, executor)
		if *n > 0 {
			halted = make([]entry, 0, *n)
			for id, e := range t.byID {
				if e.executor == executor {
					halted = append(halted, e)
					delete(t.byID, id)
				}
			}
		}
	}
	t.mu.Unlock()
	for _, e := range halted {
		res := Result{Err: err}
		e.obs.finish(res)
		e.done(res)
	}
	return len(halted)
}

// CountFor returns how many invocations executor owes.
func (t *Table) CountFor(executor string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.owed[executor]; n != nil {
		return *n
	}
	return 0
}

// Len returns the number of pending invocations.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID)
}

// SetTimeout gives every invocation added from now on a deadline of d
// (0: none), enforced by calls to Sweep every interval; it returns that
// interval, a twentieth of d within [5 ms, 1 s]. A late invocation is
// answered between d and d plus the interval after it was added.
func (t *Table) SetTimeout(d time.Duration) (interval time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d <= 0 {
		t.ticks, t.timeout, t.interval = 0, 0, 0
		return 0
	}
	interval = min(max(d/20, 5*time.Millisecond), time.Second)
	t.ticks = uint64((d + interval - 1) / interval)
	t.timeout, t.interval = d, interval
	return interval
}

// Sweep answers the invocations that have outlived the timeout with a
// TIMEOUT error (a later result from the executor is then ignored) and
// returns how many there were.
func (t *Table) Sweep() int {
	t.mu.Lock()
	t.sweeps++
	if t.ticks == 0 {
		t.mu.Unlock()
		return 0
	}
	var expired []entry
	for id, e := range t.byID {
		if e.due != 0 && e.due <= t.sweeps {
			expired = append(expired, e)
			delete(t.byID, id)
			*e.owed--
		}
	}
	t.mu.Unlock()
	for _, e := range expired {
		res := Result{Err: ErrTimeout(e.timeout)}
		e.obs.finish(res)
		e.done(res)
	}
	return len(expired)
}

// ErrTimeout answers an invocation that outlived the engine's deadline;
// the code and message are those of the SDKs' own timeout.
func ErrTimeout(d time.Duration) *wire.ErrorBody {
	return &wire.ErrorBody{Code: wire.CodeTimeout, Message: "invocation timed out after " +
		strconv.FormatInt(d.Milliseconds(), 10) + "ms (engine invocation_timeout)"}
}

// RunSweeper sweeps t every interval until ctx ends.
func (t *Table) RunSweeper(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		select {
		case <-tk.C:
			t.Sweep()
		case <-ctx.Done():
			return
		}
	}
}

// Watching reports whether an observe hook is installed.
func (l *Local) Watching() bool { return l.watch.Load() != nil }
