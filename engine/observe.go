package engine

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/auth"
	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/observe"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/internal/wsconn"
	"github.com/sluicehq/sluice/wire"
)

// observe.v1 (docs/protocol.md#observe): observers attached to functions,
// activated after each invocation of the function they observe.

const (
	featureObserveV1 = "observe.v1"
	// maxObserveDepth is the loop guard: an activation that would be the
	// ninth observe hop of a causal chain is not made.
	maxObserveDepth    = 8
	maxObserveMetadata = 64 << 10
	maxObserveArgs     = 64 << 10
	// maxQueuedActivations bounds the activations an observer with
	// max_in_flight keeps waiting for a slot; more are dropped (OVERFLOW).
	maxQueuedActivations = 256
)

// engineFeatures is workerregistered.features.
// local-dispatch.v1: the engine confirms (functionregistered.local_dispatch)
// that a worker may run calls to its own functions in-process; it then
// reports the observed ones in invocationsobserved batches.
var engineFeatures = jsontext.Value(`["observe.v1","local-dispatch.v1"]`)

// Observer states and reason codes, as the 0.25 SDKs name them.
const (
	obsPending   = "pending"
	obsActive    = "active"
	obsSuspended = "suspended"
	obsError     = "error"
	obsDisposed  = "disposed"
)

const (
	captureInput = 1 << iota
	captureOutput
	captureError
	captureCaller
	captureMetadata
)

var captureBits = map[string]int{"input": captureInput, "output": captureOutput, "error": captureError,
	"caller": captureCaller, "metadata": captureMetadata}

type observer struct {
	id       string
	source   string
	target   string
	srcNS    string // namespaces, "default" spelled out
	tgtNS    string
	skey     string // obsKey(srcNS, source): the key of the indexes and revs
	filter   *observe.Filter
	capture  int
	captureL []string
	on       string // success, error, complete
	deliver  string // envelope, input, output
	args     jsontext.Value
	metadata jsontext.Value
	maxFires int64
	expires  time.Time // zero: never
	// maxInFlight > 0 bounds the activations running at once; the rest
	// wait in flight.queue (auto delivery) or fail OVERFLOW (obs.call).
	maxInFlight int
	flight      struct {
		sync.Mutex
		running int
		queue   []*invocation.Request
	}
	overflows atomic.Int64 // activations dropped: the queue was full

	fires     atomic.Int64
	loopDrops atomic.Int64           // activations the loop guard refused
	status    atomic.Pointer[string] // mirrors state for the hot path
	live      atomic.Bool            // state is active (read on the hot path)
	onOK      bool                   // on success or complete
	onErr     bool                   // on error or complete

	// guarded by observeHub.mu
	conn      *workerConn // observing connection; nil while away
	awaySince time.Time
	state     string
	reason    *wire.ErrorBody
	wasActive bool
	addedTo   string // owner connection told about it (observeradded / functionregistered)
	ackedBy   string // owner connection that accepted it
	timer     *time.Timer
}

type observeHub struct {
	e      *Engine
	mu     sync.Mutex
	byID   map[string]*observer
	revs   map[string]int64                      // obsKey → revision of its observer set
	active atomic.Pointer[map[string]*watchList] // auto-delivered, by obsKey of the source: the hot path
	emits  atomic.Pointer[map[string]*watchList] // every active one, by obsKey of the source: reports and emits
}

// watchList is the active observers of one function and their filters
// compiled together (set, index i is obs[i]).
type watchList struct {
	obs []*observer
	set *observe.Set
	// early: no filter reads output or error, so the observers an
	// invocation activates are known when it starts; when none are, it is
	// not watched at all.
	early bool
}

func buildIndex(m map[string][]*observer, withSets bool) *map[string]*watchList {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]*watchList, len(m))
	for fn, obs := range m {
		wl := &watchList{obs: obs}
		if withSets {
			fs := make([]*observe.Filter, len(obs))
			for i, o := range obs {
				fs[i] = o.filter
			}
			wl.set = observe.NewSet(fs)
			wl.early = wl.set.Roots()&(1<<observe.RootOutput|1<<observe.RootError) == 0
		}
		out[fn] = wl
	}
	return &out
}

// obsKey is the key of a function in the observe indexes: its id in the
// default namespace (so the hot path of a default call builds no key),
// namespace NUL id elsewhere.
func obsKey(ns, id string) string {
	if ns == "" || ns == wire.DefaultNamespace {
		return id
	}
	return ns + "\x00" + id
}

func newObserveHub(e *Engine) *observeHub {
	return &observeHub{e: e, byID: map[string]*observer{}, revs: map[string]int64{}}
}

// --- wire shapes ---------------------------------------------------------

type observeSourceIn struct {
	FunctionID string         `json:"function_id"`
	Namespace  string         `json:"namespace"`
	Args       jsontext.Value `json:"args"`
	Filters    jsontext.Value `json:"filters"`
	Capture    []string       `json:"capture"`
	On         string         `json:"on"`
	Deliver    string         `json:"deliver"`
}

type observeIn struct {
	ID     string          `json:"id"`
	Source observeSourceIn `json:"source"`
	Target struct {
		FunctionID string `json:"function_id"`
		Namespace  string `json:"namespace"`
	} `json:"target"`
	Metadata    jsontext.Value `json:"metadata"`
	MaxFires    *int64         `json:"max_fires"`
	ExpiresInMs *int64         `json:"expires_in_ms"`
	MaxInFlight *int64         `json:"max_in_flight"`
	// observerack
	FunctionID string          `json:"function_id"`
	Revision   int64           `json:"revision"`
	Error      *wire.ErrorBody `json:"error"`
	// invocationsobserved
	Items []observedItem `json:"items"`
}

type observedItem struct {
	FunctionID   string         `json:"function_id"`
	InvocationID string         `json:"invocation_id"`
	Matched      []string       `json:"matched"`
	Status       string         `json:"status"`
	Input        jsontext.Value `json:"input"`
	Output       jsontext.Value `json:"output"`
	Error        jsontext.Value `json:"error"`
	Caller       jsontext.Value `json:"caller"`
	Metadata     jsontext.Value `json:"metadata"`
	StartedAtMs  int64          `json:"started_at_ms"`
	DurationMs   float64        `json:"duration_ms"`
	ObserveDepth int            `json:"observe_depth"`
}

type observeResultOut struct {
	Type     string          `json:"type"`
	ID       string          `json:"id"`
	State    string          `json:"state"`
	Error    *wire.ErrorBody `json:"error,omitzero"`
	Reason   *wire.ErrorBody `json:"reason,omitzero"`
	Fires    *int64          `json:"fires,omitzero"`
	Warnings []string        `json:"warnings,omitzero"`
}

type observerInfo struct {
	ID      string         `json:"id"`
	Args    jsontext.Value `json:"args"`
	Filters jsontext.Value `json:"filters"`
	Target  string         `json:"target"`
	Capture []string       `json:"capture"`
	On      string         `json:"on"`
}

type ownerFrame struct {
	Type          string         `json:"type"`
	ID            string         `json:"id,omitzero"`
	FunctionID    string         `json:"function_id,omitzero"`
	Namespace     string         `json:"namespace"`
	Revision      int64          `json:"revision"`
	LocalDispatch *bool          `json:"local_dispatch,omitzero"`
	Observers     []observerInfo `json:"observers,omitzero"`
	Observer      *observerInfo  `json:"observer,omitzero"`
}

func errBody(code, msg string) *wire.ErrorBody { return &wire.ErrorBody{Code: code, Message: msg} }

// isObserveFrame reports the frame types only observe.v1 workers send.
func isObserveFrame(t string) bool {
	switch t {
	case "observe", "unobserve", "observerack", "invocationsobserved", "localinvocationstats":
		return true
	}
	return false
}

// sendObserveFrame writes an observe frame to a worker that declared
// observe.v1 or itself sent observe frames (answers to those).
func (w *workerConn) sendObserveFrame(v any) {
	if !w.observeV1.Load() && !w.observes.Load() {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		w.log.Error("encode observe frame", "err", err)
		return
	}
	// A lost observe frame would leave the worker's view of its observers
	// wrong for good: send it as a message the worker must not miss.
	if err := w.conn.SendInWithin(w.e.ctx, nil, wsconn.Text, b, nil, w.mustNotMissBudget()); errors.Is(err, wsconn.ErrCongested) {
		w.dropTooSlow()
	}
}

// declareObserve marks the connection as speaking observe.v1 and sends it
// functionregistered for what it registered before it said so.
func (h *observeHub) declareObserve(w *workerConn) {
	if w.observeV1.Swap(true) {
		return
	}
	for _, f := range h.e.reg.Functions() {
		if f.Owner == registry.Owner(w) {
			h.functionRegistered(w, f.ID, f.Namespace)
		}
	}
}

// frame handles an observe-family frame from w (raw: the reader's buffer,
// read synchronously).
func (h *observeHub) frame(w *workerConn, typ string, raw []byte) {
	// A worker that sends observe frames gets the answers; only one that
	// declared observe.v1 is an owner (functionregistered, observeradded,
	// acks) and sees caller, observe_depth and activation on its calls.
	w.observes.Store(true)
	if typ == "localinvocationstats" {
		return // counts of calls the SDK ran in-process: nothing to do (no local dispatch granted)
	}
	var in observeIn
	if err := json.Unmarshal(raw, &in, lenient); err != nil {
		w.log.Warn("malformed "+typ+" ignored", "err", err)
		if typ == "observe" && in.ID != "" {
			w.sendObserveFrame(observeResultOut{Type: "observeresult", ID: in.ID, State: obsError,
				Error: errBody("INVALID_ARGS", "malformed observe: "+err.Error())})
		}
		return
	}
	switch typ {
	case "observe":
		h.observe(w, &in)
	case "unobserve":
		h.unobserve(w, in.ID)
	case "observerack":
		h.ack(w, &in)
	case "invocationsobserved":
		h.reported(w, in.Items)
	}
}

func (h *observeHub) observe(w *workerConn, in *observeIn) {
	reply := func(state string, e *wire.ErrorBody) {
		w.sendObserveFrame(observeResultOut{Type: "observeresult", ID: in.ID, State: state, Error: e})
	}
	if in.ID == "" || len(in.ID) > 256 {
		reply(obsError, errBody("INVALID_ARGS", "observe needs an id of at most 256 bytes"))
		return
	}
	o, fail := h.parse(in)
	if fail != nil {
		reply(obsError, fail)
		return
	}
	if w.sess != nil {
		// Observing reads the source's calls and makes the engine call the
		// target: an RBAC session must be allowed to call both.
		for _, fn := range [...]struct{ ns, id string }{{o.srcNS, o.source}, {o.tgtNS, o.target}} {
			if d := w.canCall(fn.ns, fn.id); d != auth.Allowed {
				reply(obsError, errBody(auth.CodeForbidden, d.Message(fn.id)))
				return
			}
		}
	}
	h.mu.Lock()
	if old, ok := h.byID[in.ID]; ok {
		if (old.conn != nil && old.conn != w) || !sameSpec(old, o) {
			h.mu.Unlock()
			reply(obsError, errBody("OBSERVER_ID_CONFLICT", "observer "+in.ID+" exists for another worker, source or target"))
			return
		}
		// A replay (after a reconnect, or a repeat): the same observer.
		old.conn = w
		old.awaySince = time.Time{}
		notes := h.recomputeLocked() // publishes: a call right after the answer is observed
		// The answer and the state changes go out under h.mu: an
		// observerstatechanged another goroutine sends (an owner's ack)
		// cannot overtake it, so the worker's last word is the current state.
		reply(old.state, old.reason)
		h.notify(notes, old.id)
		h.mu.Unlock()
		return
	}
	lim := h.e.cfg.Observe
	if len(h.byID) >= lim.Max || h.countFor(w) >= lim.MaxPerWorker {
		h.mu.Unlock()
		reply(obsError, errBody("LIMIT_EXCEEDED", "too many observers (observe.max_observers_per_worker "+strconv.Itoa(lim.MaxPerWorker)+
			", observe.max_observers "+strconv.Itoa(lim.Max)+")"))
		return
	}
	if f, ok := h.e.reg.FunctionIn(o.srcNS, o.source); ok {
		if wc, isConn := f.Owner.(*workerConn); isConn && wc.observeDescriptor.Load() != nil {
			if d := wc.observeDescriptor.Load(); d != nil && (*d)[o.source].allowFalse {
				h.mu.Unlock()
				reply(obsError, errBody("NOT_OBSERVABLE", o.source+" does not accept observers"))
				return
			}
		}
		if len(o.args) > 0 && !h.ownerDelivered(f) {
			h.mu.Unlock()
			reply(obsError, errBody("INVALID_ARGS", "args are for owner-delivered functions; "+o.source+" is delivered automatically"))
			return
		}
		if wc, isConn := f.Owner.(*workerConn); isConn {
			if d := wc.observeDescriptor.Load(); d != nil && (*d)[o.source].owner {
				if err := observe.CheckArgs([]byte((*d)[o.source].argsFormat), o.args); err != nil {
					h.mu.Unlock()
					reply(obsError, errBody("INVALID_ARGS", err.Error()))
					return
				}
			}
		}
	}
	o.conn = w
	o.state = obsPending
	h.byID[o.id] = o
	if !o.expires.IsZero() {
		id := o.id
		o.timer = time.AfterFunc(time.Until(o.expires), func() { h.dispose(id, errBody("EXPIRED", "the observer expired")) })
	}
	notes := h.recomputeLocked()
	state := o.state
	reply(state, nil) // under h.mu, as in the replay above
	h.notify(notes, o.id)
	h.mu.Unlock()
	w.log.Info("observer added", "observer_id", o.id, "source", o.source, "target", o.target, "state", state)
}

func sameSpec(a, b *observer) bool {
	return a.source == b.source && a.target == b.target && a.srcNS == b.srcNS && a.tgtNS == b.tgtNS
}

func (h *observeHub) countFor(w *workerConn) int {
	n := 0
	for _, o := range h.byID {
		if o.conn == w {
			n++
		}
	}
	return n
}

// parse validates an observe message into an observer.
func (h *observeHub) parse(in *observeIn) (*observer, *wire.ErrorBody) {
	src := &in.Source
	if src.FunctionID == "" || in.Target.FunctionID == "" {
		return nil, errBody("INVALID_ARGS", "observe needs source.function_id and target.function_id")
	}
	if src.FunctionID == in.Target.FunctionID && orDefault(src.Namespace) == orDefault(in.Target.Namespace) {
		return nil, errBody("SELF_TARGET", "an observer cannot target the function it observes ("+src.FunctionID+")")
	}
	for _, ns := range []string{src.Namespace, in.Target.Namespace} {
		if ns != "" && wire.BlankNamespace(&ns) {
			return nil, errBody("INVALID_NAMESPACE", "a namespace must not be blank")
		}
	}
	f, err := observe.Compile(src.Filters)
	if err != nil {
		return nil, errBody("INVALID_FILTER", err.Error())
	}
	o := &observer{id: in.ID, source: src.FunctionID, target: in.Target.FunctionID, filter: f,
		srcNS: orDefault(src.Namespace), tgtNS: orDefault(in.Target.Namespace),
		on: src.On, deliver: src.Deliver, metadata: in.Metadata}
	o.skey = obsKey(o.srcNS, o.source)
	if o.on == "" {
		o.on = "success"
	}
	if o.on != "success" && o.on != "error" && o.on != "complete" {
		return nil, errBody("INVALID_ARGS", "source.on must be success, error or complete")
	}
	o.onOK, o.onErr = o.on != "error", o.on != "success"
	if o.deliver == "" {
		o.deliver = "envelope"
	}
	if o.deliver != "envelope" && o.deliver != "input" && o.deliver != "output" {
		return nil, errBody("INVALID_ARGS", "source.deliver must be envelope, input or output")
	}
	caps := src.Capture
	if caps == nil {
		caps = []string{"input", "output", "caller"}
	}
	for _, c := range caps {
		bit, ok := captureBits[c]
		if !ok {
			return nil, errBody("INVALID_ARGS", "unknown capture "+quote(c))
		}
		o.capture |= bit
	}
	o.captureL = caps
	if a := bytes.TrimSpace(src.Args); len(a) > 0 && string(a) != "null" {
		if a[0] != '{' {
			return nil, errBody("INVALID_ARGS", "source.args must be an object")
		}
		if len(a) > maxObserveArgs {
			return nil, errBody("INVALID_ARGS", "source.args larger than 64 KiB")
		}
		if string(a) != "{}" {
			o.args = a
		}
	}
	if len(in.Metadata) > maxObserveMetadata {
		return nil, errBody("INVALID_ARGS", "metadata larger than 64 KiB")
	}
	if in.MaxFires != nil {
		if *in.MaxFires <= 0 {
			return nil, errBody("INVALID_ARGS", "max_fires must be positive")
		}
		o.maxFires = *in.MaxFires
	}
	if in.ExpiresInMs != nil {
		if *in.ExpiresInMs <= 0 {
			return nil, errBody("INVALID_ARGS", "expires_in_ms must be positive")
		}
		o.expires = time.Now().Add(time.Duration(*in.ExpiresInMs) * time.Millisecond)
	}
	if in.MaxInFlight != nil {
		if *in.MaxInFlight <= 0 || *in.MaxInFlight > 1<<20 {
			return nil, errBody("INVALID_ARGS", "max_in_flight must be between 1 and 1048576")
		}
		o.maxInFlight = int(*in.MaxInFlight)
	}
	return o, nil
}

// nsReq is an invocation's Namespace for ns ("" for the default one).
func nsReq(ns string) string {
	if ns == wire.DefaultNamespace {
		return ""
	}
	return ns
}

func (h *observeHub) ownerDelivered(f *registry.Function) bool {
	wc, ok := f.Owner.(*workerConn)
	if !ok {
		return false
	}
	d := wc.observeDescriptor.Load()
	return d != nil && (*d)[f.ID].owner
}

func (h *observeHub) unobserve(w *workerConn, id string) {
	h.mu.Lock()
	o, ok := h.byID[id]
	if !ok || (o.conn != w && o.conn != nil) {
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	h.dispose(id, errBody("UNOBSERVED", "the observer was disposed by its worker"))
}

// dispose ends an observer and tells its worker and the source's owner.
func (h *observeHub) dispose(id string, reason *wire.ErrorBody) {
	h.mu.Lock()
	o, ok := h.byID[id]
	if !ok {
		h.mu.Unlock()
		return
	}
	delete(h.byID, id)
	if o.timer != nil {
		o.timer.Stop()
	}
	o.state = obsDisposed
	st := obsDisposed
	o.status.Store(&st)
	o.live.Store(false)
	conn, owner := o.conn, h.ownerConn(o.srcNS, o.source)
	removed := o.addedTo != "" && owner != nil && owner.id == o.addedTo
	var rev int64
	if removed {
		h.revs[o.skey]++
		rev = h.revs[o.skey]
	}
	notes := h.recomputeLocked()
	// Sent under h.mu: revisions reach the owner in order, and no state
	// change computed before this one reaches the worker after it.
	if removed {
		owner.sendObserveFrame(ownerFrame{Type: "observerremoved", FunctionID: o.source, Namespace: o.srcNS, Revision: rev, ID: o.id})
	}
	if conn != nil {
		fires := o.fires.Load()
		conn.sendObserveFrame(observeResultOut{Type: "observerstatechanged", ID: o.id, State: obsDisposed, Reason: reason, Fires: &fires})
	}
	h.notify(notes, "")
	h.mu.Unlock()
	h.e.log.Info("observer disposed", "observer_id", id, "reason", reason.Code)
}

func (h *observeHub) ownerConn(ns, fn string) *workerConn {
	f, ok := h.e.reg.FunctionIn(ns, fn)
	if !ok {
		return nil
	}
	wc, _ := f.Owner.(*workerConn)
	return wc
}

func (o *observer) info() observerInfo {
	args := o.args
	if args == nil {
		args = jsontext.Value("{}")
	}
	return observerInfo{ID: o.id, Args: args, Filters: jsontext.Value(o.filter.Source), Target: o.target, Capture: o.captureL, On: o.on}
}

// functionRegistered acks a registerfunction to an observe.v1 owner with the
// function's observer set; the owner acks each observer (observerack).
func (h *observeHub) functionRegistered(w *workerConn, fn, ns string) {
	if !w.observeV1.Load() {
		return
	}
	ns = orDefault(ns)
	key := obsKey(ns, fn)
	h.mu.Lock()
	h.revs[key]++
	rev := h.revs[key]
	list := []observerInfo{}
	for _, o := range h.byID {
		if o.skey == key && o.state != obsError {
			o.addedTo = w.id
			o.ackedBy = ""
			list = append(list, o.info())
		}
	}
	// Sent under h.mu, like observeradded: an observeradded of a later
	// revision must not overtake it (the SDK replaces its set with this
	// frame's and ignores revisions at or below it, so the overtaken
	// observer was never acked and stayed pending).
	local := true
	w.sendObserveFrame(ownerFrame{Type: "functionregistered", ID: fn, Namespace: ns, Revision: rev, LocalDispatch: &local, Observers: list})
	h.mu.Unlock()
	h.changed()
}

func (h *observeHub) ack(w *workerConn, in *observeIn) {
	h.mu.Lock()
	o, ok := h.byID[in.ID]
	if !ok || o.source != in.FunctionID || o.addedTo != w.id {
		h.mu.Unlock()
		return
	}
	if in.Error != nil {
		o.state = obsError
		o.reason = in.Error
		st := obsError
		o.status.Store(&st)
		o.live.Store(false)
		conn := o.conn
		delete(h.byID, o.id)
		if o.timer != nil {
			o.timer.Stop()
		}
		notes := h.recomputeLocked()
		if conn != nil {
			conn.sendObserveFrame(observeResultOut{Type: "observerstatechanged", ID: o.id, State: obsError, Reason: in.Error})
		}
		h.notify(notes, "")
		h.mu.Unlock()
		return
	}
	o.ackedBy = w.id
	h.notify(h.recomputeLocked(), "")
	h.mu.Unlock()
}

type stateNote struct {
	conn   *workerConn
	id     string
	state  string
	reason *wire.ErrorBody
	fires  int64
}

// notify sends the state changes recomputeLocked returned (but none about
// observer skip, which the caller answers itself). Called under h.mu: two
// goroutines' changes of one observer reach its worker in the order the hub
// made them (engine socket writes never block), so the last state a worker
// hears is the observer's state.
func (h *observeHub) notify(notes []stateNote, skip string) {
	for _, n := range notes {
		if n.id == skip {
			continue
		}
		fires := n.fires
		n.conn.sendObserveFrame(observeResultOut{Type: "observerstatechanged", ID: n.id, State: n.state, Reason: n.reason, Fires: &fires})
	}
}

// changed re-evaluates every observer after the function set or a
// connection changed.
func (h *observeHub) changed() {
	h.mu.Lock()
	h.notify(h.recomputeLocked(), "")
	h.mu.Unlock()
}

// recomputeLocked derives each observer's state and rebuilds the active
// index; it returns the transitions to report. Owners that speak observe.v1
// are sent observeradded for observers they have not seen.
func (h *observeHub) recomputeLocked() []stateNote {
	var notes []stateNote
	idx := map[string][]*observer{}
	all := map[string][]*observer{}
	for _, o := range h.byID {
		if o.state == obsError || o.state == obsDisposed {
			continue
		}
		want := obsActive
		_, tok := h.e.reg.FunctionIn(o.tgtNS, o.target)
		sf, sok := h.e.reg.FunctionIn(o.srcNS, o.source)
		switch {
		case o.conn == nil:
			want = obsSuspended
		case !tok || !sok:
			want = obsPending
			if o.wasActive {
				want = obsSuspended
			}
		default:
			if wc, ok := sf.Owner.(*workerConn); ok && wc.observeV1.Load() {
				if o.addedTo != wc.id {
					h.revs[o.skey]++
					o.addedTo, o.ackedBy = wc.id, ""
					// Sent under h.mu, so revisions reach the owner in order
					// (writes to engine sockets never block).
					info := o.info()
					wc.sendObserveFrame(ownerFrame{Type: "observeradded", FunctionID: o.source, Namespace: o.srcNS,
						Revision: h.revs[o.skey], Observer: &info})
				}
				if o.ackedBy != wc.id {
					want = obsPending
					if o.wasActive {
						want = obsSuspended
					}
				}
			}
		}
		if want == obsActive {
			o.wasActive = true
			all[o.skey] = append(all[o.skey], o)
			if !h.ownerDelivered(sf) {
				idx[o.skey] = append(idx[o.skey], o)
			}
		}
		if want != o.state {
			o.state = want
			st := want
			o.status.Store(&st)
			o.live.Store(want == obsActive)
			if o.conn != nil {
				notes = append(notes, stateNote{o.conn, o.id, want, nil, o.fires.Load()})
			}
		}
	}
	h.active.Store(buildIndex(idx, true))
	h.emits.Store(buildIndex(all, false))
	h.publish() // under h.mu: installs stay in the order of the indexes
	return notes
}

// publish installs or removes the invocation hook.
func (h *observeHub) publish() {
	if h.active.Load() != nil {
		h.e.inv.SetWatcher(h)
	} else {
		h.e.inv.SetWatcher(nil)
	}
}

// connClosed suspends the observers of a closed connection; they are
// disposed if it does not come back within observe.reconnect_grace.
func (h *observeHub) connClosed(w *workerConn) {
	h.mu.Lock()
	var mine []string
	for _, o := range h.byID {
		if o.conn == w {
			o.conn = nil
			o.awaySince = time.Now()
			mine = append(mine, o.id)
		}
		if o.addedTo == w.id {
			o.addedTo, o.ackedBy = "", ""
		}
	}
	h.notify(h.recomputeLocked(), "")
	h.mu.Unlock()
	grace := h.e.cfg.Observe.ReconnectGrace
	for _, id := range mine {
		id := id
		time.AfterFunc(grace, func() {
			h.mu.Lock()
			o, ok := h.byID[id]
			away := ok && o.conn == nil && time.Since(o.awaySince) >= grace-grace/10
			h.mu.Unlock()
			if away {
				h.dispose(id, errBody("OBSERVER_DISCONNECTED", "the observing worker did not come back"))
			}
		})
	}
}

// --- the hot path --------------------------------------------------------

// Watch implements invocation.Watcher.
func (h *observeHub) Watch(req *invocation.Request, done invocation.Completion) invocation.Completion {
	m := h.active.Load()
	if m == nil {
		return done
	}
	list := (*m)[obsKey(req.Namespace, req.FunctionID)]
	if list == nil {
		return done
	}
	var pre []int32
	if list.early {
		var src observe.Source
		roots := list.set.Roots()
		src.Raw[observe.RootInput] = wire.DataOrNull(req.Data)
		if roots&(1<<observe.RootCaller) != 0 && req.CallerIdent != nil {
			src.Raw[observe.RootCaller] = stampCaller(nil, req.CallerIdent, req.Caller)
		}
		src.Raw[observe.RootMetadata] = req.Metadata
		if pre = list.set.Match(&src, nil); pre == nil {
			return done // no observer can be activated, whatever the result
		}
	}
	start := time.Now()
	if done == nil {
		req.Void = false // observed: the engine waits for the result itself
		return func(res invocation.Result) { h.fire(req, list, pre, start, res) }
	}
	return func(res invocation.Result) {
		done(res)
		h.fire(req, list, pre, start, res)
	}
}

// event is one invocation as observers see it.
type event struct {
	functionID   string
	namespace    string
	invocationID string
	ok           bool
	input        jsontext.Value
	output       jsontext.Value
	err          jsontext.Value
	caller       jsontext.Value
	metadata     jsontext.Value
	startedAt    time.Time
	duration     time.Duration
	depth        int // observe depth of the observed invocation
	// the calling connection's identity and asserted caller, stamped into
	// caller when first needed
	ident    []byte
	asserted jsontext.Value
	stamped  bool
}

func (ev *event) callerJSON() jsontext.Value {
	if !ev.stamped {
		ev.stamped = true
		if ev.ident != nil {
			ev.caller = stampCaller(nil, ev.ident, ev.asserted)
		}
	}
	return ev.caller
}

// source is what filters read of ev (only the roots in the mask).
func (ev *event) source(roots int) *observe.Source {
	src := &observe.Source{}
	src.Raw[observe.RootInput] = ev.input
	if ev.ok {
		src.Raw[observe.RootOutput] = ev.output
	} else {
		src.Raw[observe.RootError] = ev.err
	}
	if roots&(1<<observe.RootCaller) != 0 {
		src.Raw[observe.RootCaller] = ev.callerJSON()
	}
	src.Raw[observe.RootMetadata] = ev.metadata
	return src
}

// fire activates the observers of list that matched (pre, when the filters
// were run as the invocation started; otherwise they run now).
func (h *observeHub) fire(req *invocation.Request, list *watchList, pre []int32, start time.Time, res invocation.Result) {
	ev := &event{functionID: req.FunctionID, namespace: orDefault(req.Namespace), invocationID: req.InvocationID, ok: res.Err == nil,
		input: wire.DataOrNull(req.Data), metadata: req.Metadata, startedAt: start, duration: time.Since(start),
		depth: req.ObserveDepth, ident: req.CallerIdent, asserted: req.Caller}
	if ev.ok {
		ev.output = wire.DataOrNull(res.Value)
	} else {
		ev.err, _ = json.Marshal(res.Err)
	}
	if !list.early {
		pre = list.set.Match(ev.source(list.set.Roots()), nil)
	}
	for _, i := range pre {
		h.activate(ev, list.obs[i])
	}
}

// activate delivers ev to o if o wants it (its filter accepted ev).
func (h *observeHub) activate(ev *event, o *observer) {
	if !o.live.Load() {
		return
	}
	if ev.ok && !o.onOK || !ev.ok && !o.onErr {
		return
	}
	depth := ev.depth + 1
	if depth > maxObserveDepth {
		if o.loopDrops.Add(1) == 1 {
			h.e.log.Warn("observer activation refused by the loop guard", "observer_id", o.id, "function_id", ev.functionID,
				"observe_depth", depth, "code", "LOOP_GUARD")
		}
		return
	}
	n := o.fires.Add(1)
	if o.maxFires > 0 && n > o.maxFires {
		return
	}
	h.deliver(o, ev, depth)
	if o.maxFires > 0 && n == o.maxFires {
		go h.dispose(o.id, errBody("MAX_FIRES", "the observer reached max_fires"))
	}
}

type envelopeOut struct {
	ObserverID   string         `json:"observer_id"`
	ActivationID string         `json:"activation_id"`
	FunctionID   string         `json:"function_id"`
	Namespace    string         `json:"namespace"`
	InvocationID string         `json:"invocation_id,omitzero"`
	Status       string         `json:"status"`
	Input        jsontext.Value `json:"input,omitzero"`
	Output       jsontext.Value `json:"output,omitzero"`
	Error        jsontext.Value `json:"error,omitzero"`
	Caller       jsontext.Value `json:"caller,omitzero"`
	Metadata     jsontext.Value `json:"metadata,omitzero"`
	StartedAtMs  int64          `json:"started_at_ms"`
	DurationMs   float64        `json:"duration_ms"`
}

func (h *observeHub) deliver(o *observer, ev *event, depth int) {
	actID := invocation.NewID()
	var data jsontext.Value
	switch o.deliver {
	case "input":
		data = ev.input
	case "output":
		data = ev.output
		if !ev.ok {
			data = wire.Null
		}
	default:
		env := envelopeOut{ObserverID: o.id, ActivationID: actID, FunctionID: ev.functionID, Namespace: ev.namespace,
			InvocationID: ev.invocationID, Status: "success", StartedAtMs: ev.startedAt.UnixMilli(),
			DurationMs: float64(ev.duration.Microseconds()) / 1000}
		if !ev.ok {
			env.Status = "error"
		}
		if o.capture&captureInput != 0 {
			env.Input = ev.input
		}
		if ev.ok && o.capture&captureOutput != 0 {
			env.Output = ev.output
		}
		if !ev.ok && o.capture&captureError != 0 {
			env.Error = ev.err
		}
		if o.capture&captureCaller != 0 {
			env.Caller = ev.callerJSON()
		}
		if o.capture&captureMetadata != 0 {
			env.Metadata = ev.metadata
		}
		b, err := json.Marshal(env)
		if err != nil {
			h.e.log.Warn("observer envelope not encodable", "observer_id", o.id, "err", err)
			return
		}
		data = b
	}
	act, _ := json.Marshal(struct {
		ObserverID   string `json:"observer_id"`
		ActivationID string `json:"activation_id"`
	}{o.id, actID})
	// The engine is the caller of an activation, on behalf of the observed
	// invocation.
	caller := append([]byte(`{"worker_name":"iii-engine","function_id":`), quote(ev.functionID)...)
	if ev.invocationID != "" {
		caller = append(caller, `,"invocation_id":`...)
		caller = append(caller, quote(ev.invocationID)...)
	}
	caller = append(caller, '}')
	req := &invocation.Request{FunctionID: o.target, Namespace: nsReq(o.tgtNS), Data: data, Metadata: o.metadata, Void: true,
		ObserveDepth: depth, Activation: act, Caller: caller}
	if o.maxInFlight == 0 {
		h.e.inv.Invoke(req, nil)
		return
	}
	req.Void = false // its result frees the slot
	o.flight.Lock()
	if o.flight.running >= o.maxInFlight {
		if len(o.flight.queue) >= maxQueuedActivations {
			o.flight.Unlock()
			if o.overflows.Add(1) == 1 {
				h.e.log.Warn("observer activation dropped: max_in_flight reached and its queue is full", "observer_id", o.id,
					"function_id", ev.functionID, "queued", maxQueuedActivations, "code", "OVERFLOW")
			}
			return
		}
		o.flight.queue = append(o.flight.queue, req)
		o.flight.Unlock()
		return
	}
	o.flight.running++
	o.flight.Unlock()
	h.e.inv.Invoke(req, h.activationDone(o))
}

// activationDone is the completion of an activation holding one of o's
// max_in_flight slots: the slot goes to the oldest queued activation, if
// any (dropped when o is no longer active).
func (h *observeHub) activationDone(o *observer) invocation.Completion {
	return func(invocation.Result) {
		o.flight.Lock()
		if !o.live.Load() {
			clear(o.flight.queue)
			o.flight.queue = nil
		}
		if len(o.flight.queue) == 0 {
			o.flight.running--
			o.flight.Unlock()
			return
		}
		next := o.flight.queue[0]
		o.flight.queue[0] = nil
		o.flight.queue = o.flight.queue[1:]
		o.flight.Unlock()
		// Not on this goroutine: a completion must not block, and the
		// next one may complete at once.
		go h.e.inv.Invoke(next, h.activationDone(o))
	}
}

// reported handles invocationsobserved: calls the owner ran itself, or
// events of an owner-delivered function (obs.emit), each naming the
// observers it matched.
func (h *observeHub) reported(w *workerConn, items []observedItem) {
	ns, _ := w.fixedNamespace()
	for i := range items {
		it := &items[i]
		f, ok := h.e.reg.FunctionIn(ns, it.FunctionID)
		if !ok || f.Owner != registry.Owner(w) {
			continue // NOT_FUNCTION_OWNER: dropped
		}
		m := h.emits.Load()
		if m == nil {
			return
		}
		wl := (*m)[obsKey(ns, it.FunctionID)]
		if wl == nil {
			continue
		}
		matched := make(map[string]bool, len(it.Matched))
		for _, id := range it.Matched {
			matched[id] = true
		}
		ev := &event{functionID: it.FunctionID, namespace: ns, invocationID: it.InvocationID, ok: it.Status != "error",
			input: it.Input, output: it.Output, err: it.Error, metadata: it.Metadata,
			startedAt: time.UnixMilli(it.StartedAtMs), duration: time.Duration(it.DurationMs * float64(time.Millisecond)),
			depth: it.ObserveDepth, ident: w.callerIdent(), asserted: it.Caller}
		if ev.input == nil {
			ev.input = wire.Null
		}
		for _, o := range wl.obs { // the owner matched them: no filter runs here
			if matched[o.id] {
				h.activate(ev, o)
			}
		}
	}
}

// ownerCall checks an invokefunction that carries an activation (obs.call
// from an owner-delivered function's owner) and prepares req for the target.
// release, when not nil, must be called with the call's result: the call
// holds one of the observer's max_in_flight slots.
func (h *observeHub) ownerCall(w *workerConn, req *invocation.Request) (release invocation.Completion, _ *wire.ErrorBody) {
	var act struct {
		ObserverID string `json:"observer_id"`
	}
	if err := json.Unmarshal(req.Activation, &act, lenient); err != nil || act.ObserverID == "" {
		return nil, errBody("INVALID_ARGS", "activation needs an observer_id")
	}
	h.mu.Lock()
	o, ok := h.byID[act.ObserverID]
	var state string
	if ok {
		state = o.state
	}
	h.mu.Unlock()
	switch {
	case !ok:
		return nil, errBody("OBSERVER_NOT_FOUND", "no observer "+act.ObserverID)
	case h.ownerConn(o.srcNS, o.source) != w:
		return nil, errBody("NOT_FUNCTION_OWNER", "only the owner of "+o.source+" delivers to its observers")
	case o.target != req.FunctionID || (req.Namespace != "" && orDefault(req.Namespace) != o.tgtNS):
		return nil, errBody("TARGET_MISMATCH", "observer "+o.id+" targets "+o.target+" in namespace "+o.tgtNS)
	case state != obsActive:
		return nil, errBody("OBSERVER_NOT_ACTIVE", "observer "+o.id+" is "+state)
	}
	if o.maxInFlight > 0 {
		o.flight.Lock()
		full := o.flight.running >= o.maxInFlight
		if !full {
			o.flight.running++
		}
		o.flight.Unlock()
		if full {
			return nil, errBody("OVERFLOW", "observer "+o.id+" has max_in_flight "+strconv.Itoa(o.maxInFlight)+" activations running")
		}
		release = h.activationDone(o)
	}
	n := o.fires.Add(1)
	if o.maxFires > 0 && n > o.maxFires {
		if release != nil {
			release(invocation.Result{})
		}
		return nil, errBody("OBSERVER_NOT_ACTIVE", "observer "+o.id+" reached max_fires")
	}
	if o.maxFires > 0 && n == o.maxFires {
		go h.dispose(o.id, errBody("MAX_FIRES", "the observer reached max_fires"))
	}
	req.Metadata = o.metadata
	req.ObserveDepth++
	req.Activation, _ = json.Marshal(struct {
		ObserverID   string `json:"observer_id"`
		ActivationID string `json:"activation_id"`
	}{o.id, invocation.NewID()})
	return release, nil
}

// --- caller stamping -----------------------------------------------------

// stampCaller appends the caller a callee sees: the calling connection's
// identity (stamped by the engine) and what its SDK asserted about the
// handler it called from (function_id, invocation_id, parent one level).
func stampCaller(dst []byte, ident []byte, asserted jsontext.Value) []byte {
	dst = append(dst, '{')
	dst = append(dst, ident...)
	if len(asserted) > 0 && asserted[0] == '{' {
		var c struct {
			FunctionID   string         `json:"function_id"`
			InvocationID string         `json:"invocation_id"`
			Parent       map[string]any `json:"parent"`
		}
		if json.Unmarshal(asserted, &c, lenient) == nil {
			add := func(k, v string) {
				if v == "" {
					return
				}
				if len(dst) > 1 {
					dst = append(dst, ',')
				}
				dst = append(dst, '"')
				dst = append(dst, k...)
				dst = append(dst, `":`...)
				dst, _ = jsontext.AppendQuote(dst, v)
			}
			add("function_id", c.FunctionID)
			add("invocation_id", c.InvocationID)
			if len(c.Parent) > 0 {
				p := map[string]string{}
				for k, v := range c.Parent {
					if s, ok := v.(string); ok && k != "parent" {
						p[k] = s
					}
				}
				if b, err := json.Marshal(p, json.Deterministic(true)); err == nil && len(p) > 0 {
					if len(dst) > 1 {
						dst = append(dst, ',')
					}
					dst = append(dst, `"parent":`...)
					dst = append(dst, b...)
				}
			}
		}
	}
	return append(dst, '}')
}

// callerIdent is `"worker_id":…,"worker_name":…` for this connection.
func (w *workerConn) callerIdent() []byte {
	if p := w.ident.Load(); p != nil {
		return *p
	}
	return nil
}

// setIdent records the connection's name for the callers it stamps.
func (w *workerConn) setIdent(name string) {
	b := append([]byte(`"worker_id":`), quote(w.id)...)
	if name != "" {
		b = append(b, `,"worker_name":`...)
		b = append(b, quote(name)...)
	}
	w.ident.Store(&b)
}

// parseDepth reads observe_depth: a non-negative integer, 0 otherwise.
func parseDepth(raw jsontext.Value) int {
	n, err := strconv.Atoi(string(raw))
	if err != nil || n < 0 {
		return 0
	}
	if n > 1<<20 {
		n = 1 << 20
	}
	return n
}

// descriptor is what registerfunction.observe says about a function.
type descriptor struct {
	owner      bool   // delivery: owner
	allowFalse bool   // allow: false
	argsFormat string // owner only: JSON Schema of the observers' args
}

// setDescriptor records registerfunction.observe for fn.
func (w *workerConn) setDescriptor(fn string, raw jsontext.Value) {
	var d struct {
		Delivery   string         `json:"delivery"`
		Allow      *bool          `json:"allow"`
		ArgsFormat jsontext.Value `json:"args_format"`
	}
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &d, lenient)
	}
	nd := descriptor{owner: d.Delivery == "owner", allowFalse: d.Allow != nil && !*d.Allow}
	if nd.owner && len(d.ArgsFormat) > 0 && string(d.ArgsFormat) != "null" {
		nd.argsFormat = string(d.ArgsFormat)
	}
	for {
		old := w.observeDescriptor.Load()
		m := map[string]descriptor{}
		if old != nil {
			for k, v := range *old {
				m[k] = v
			}
		}
		if nd == (descriptor{}) {
			if old == nil {
				return
			}
			delete(m, fn)
		} else {
			m[fn] = nd
		}
		if w.observeDescriptor.CompareAndSwap(old, &m) {
			return
		}
	}
}

// --- engine::observers::* ------------------------------------------------

type observerView struct {
	ID         string           `json:"id"`
	FunctionID string           `json:"function_id"`
	Namespace  string           `json:"namespace"`
	Target     string           `json:"target"`
	TargetNS   string           `json:"target_namespace,omitzero"`
	State      string           `json:"state"`
	Filters    jsontext.Value   `json:"filters"`
	Capture    []string         `json:"capture"`
	On         string           `json:"on"`
	Deliver    string           `json:"deliver"`
	Args       jsontext.Value   `json:"args,omitzero"`
	Metadata   jsontext.Value   `json:"metadata,omitzero"`
	Fires      int64            `json:"fires"`
	MaxFires   int64            `json:"max_fires,omitzero"`
	WorkerID   string           `json:"worker_id,omitzero"`
	Dropped    map[string]int64 `json:"dropped,omitzero"`
}

func (h *observeHub) view(o *observer) observerView {
	v := observerView{ID: o.id, FunctionID: o.source, Namespace: o.srcNS, Target: o.target, State: o.state,
		Filters: jsontext.Value(o.filter.Source), Capture: o.captureL, On: o.on, Deliver: o.deliver, Args: o.args,
		Metadata: o.metadata, Fires: o.fires.Load(), MaxFires: o.maxFires}
	if o.tgtNS != o.srcNS {
		v.TargetNS = o.tgtNS
	}
	if o.conn != nil {
		v.WorkerID = o.conn.id
	}
	if n := o.loopDrops.Load(); n > 0 {
		v.Dropped = map[string]int64{"LOOP_GUARD": n}
	}
	if n := o.overflows.Load(); n > 0 {
		if v.Dropped == nil {
			v.Dropped = map[string]int64{}
		}
		v.Dropped["OVERFLOW"] = n
	}
	return v
}

type observersQuery struct {
	ID         string `json:"id"`
	FunctionID string `json:"function_id"`
	Namespace  string `json:"namespace"` // of function_id; "": every namespace
}

func (e *Engine) observersGet(_ context.Context, _ *invocation.Request, in observersQuery) (any, *wire.ErrorBody) {
	h := e.obs
	h.mu.Lock()
	defer h.mu.Unlock()
	o, ok := h.byID[in.ID]
	if !ok {
		return nil, errBody("OBSERVER_NOT_FOUND", "no observer "+quote(in.ID))
	}
	return map[string]any{"observer": h.view(o)}, nil
}

func (e *Engine) observersList(_ context.Context, _ *invocation.Request, in observersQuery) (any, *wire.ErrorBody) {
	h := e.obs
	h.mu.Lock()
	defer h.mu.Unlock()
	out := []observerView{}
	for _, o := range h.byID {
		if (in.FunctionID == "" || in.FunctionID == o.source) && (in.Namespace == "" || in.Namespace == o.srcNS) {
			out = append(out, h.view(o))
		}
	}
	return map[string]any{"observers": out}, nil
}

const (
	fnObserversGet  = "engine::observers::get"
	fnObserversList = "engine::observers::list"
)

// workerAnnounced takes what engine::workers::register says that observe
// needs: the name callers are stamped with, and the declared features.
func (e *Engine) workerAnnounced(id, name string, features []string) {
	e.mu.RLock()
	w, ok := e.conns[id]
	e.mu.RUnlock()
	if !ok {
		return
	}
	w.setIdent(name)
	for _, f := range features {
		if f == featureObserveV1 {
			e.obs.declareObserve(w)
		}
	}
}
