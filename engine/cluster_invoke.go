package engine

import (
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

// Cross-node invocations. Each node subscribes, in the queue group
// "sluice", to one NATS subject per function its workers serve,
// sluice.fn.<base64url(namespace)>.<base64url(function id)>. A node asked for a function it does
// not hold sends a NATS request there: NATS delivers it to one of the nodes
// serving it (several nodes share the load), and answers "no responders" at
// once when none does (function_not_found). NATS's interest graph is the
// routing table; no registry is replicated.
const (
	fnSubjectPrefix = "sluice.fn."
	fnQueueGroup    = "sluice"
	// maxRemoteCalls bounds the calls this node has waiting on other nodes.
	maxRemoteCalls = 10_000
)

func fnSubject(ns, fn string) string {
	if ns == "" {
		ns = registry.DefaultNamespace
	}
	return fnSubjectPrefix + base64.RawURLEncoding.EncodeToString([]byte(ns)) + "." + base64.RawURLEncoding.EncodeToString([]byte(fn))
}

// fnKey names a function across namespaces in the router's table.
type fnKey struct{ ns, id string }

// remoteRequest and remoteReply travel between nodes.
type remoteRequest struct {
	Namespace      string         `json:"ns,omitzero"`
	FunctionID     string         `json:"fn"`
	Data           jsontext.Value `json:"data,omitzero"`
	Metadata       jsontext.Value `json:"meta,omitzero"`
	Traceparent    string         `json:"tp,omitzero"`
	Baggage        string         `json:"bg,omitzero"`
	CallerWorkerID string         `json:"caller,omitzero"`
	MinTimeoutMS   int64          `json:"min_timeout_ms,omitzero"`
}

type remoteReply struct {
	Value       jsontext.Value  `json:"value,omitzero"`
	Err         *wire.ErrorBody `json:"err,omitzero"`
	Traceparent string          `json:"tp,omitzero"`
	Baggage     string          `json:"bg,omitzero"`
}

type clusterRouter struct {
	e    *Engine
	nc   *nats.Conn
	sem  chan struct{}
	wake chan struct{}

	mu   sync.Mutex
	subs map[fnKey]*nats.Subscription // function → its subscription
}

// newRouter makes functions of other nodes callable here; before anything
// listens. startRouting then offers this node's functions to the others.
func (e *Engine) newRouter() {
	r := &clusterRouter{e: e, nc: e.cluster.node.Conn, sem: make(chan struct{}, maxRemoteCalls),
		wake: make(chan struct{}, 1), subs: map[fnKey]*nats.Subscription{}}
	e.cluster.router = r
	e.inv.SetRemote(r)
}

func (e *Engine) startRouting() {
	e.backgroundDone.Add(1)
	go e.cluster.router.run()
}

// functionsChanged asks the router to bring its subscriptions up to date.
func (r *clusterRouter) functionsChanged() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *clusterRouter) run() {
	defer r.e.backgroundDone.Done()
	defer r.unsubscribeAll()
	r.sync()
	for {
		select {
		case <-r.e.ctx.Done():
			return
		case <-r.wake:
			r.sync()
		}
	}
}

// sync subscribes to the subjects of the functions served here (by a
// worker: the engine's own functions exist on every node) and drops the
// others.
func (r *clusterRouter) sync() {
	want := map[fnKey]bool{}
	for _, f := range r.e.reg.Functions() {
		if _, builtin := f.Owner.(*invocation.EngineExecutor); !builtin {
			ns := f.Namespace
			if ns == "" {
				ns = registry.DefaultNamespace
			}
			want[fnKey{ns, f.ID}] = true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, sub := range r.subs {
		if !want[id] {
			_ = sub.Unsubscribe()
			delete(r.subs, id)
		}
	}
	for id := range want {
		if r.subs[id] != nil {
			continue
		}
		sub, err := r.nc.QueueSubscribe(fnSubject(id.ns, id.id), fnQueueGroup, r.serve)
		if err != nil {
			r.e.log.Warn("cluster: function not offered to other nodes", "function_id", id.id, "namespace", id.ns, "err", err)
			continue
		}
		r.subs[id] = sub
	}
	_ = r.nc.Flush() // the other nodes learn of the interest sooner
}

func (r *clusterRouter) unsubscribeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, sub := range r.subs {
		_ = sub.Unsubscribe()
		delete(r.subs, id)
	}
}

// serve runs a call from another node on this node's worker.
func (r *clusterRouter) serve(m *nats.Msg) {
	var in remoteRequest
	if err := json.Unmarshal(m.Data, &in, lenient); err != nil || in.FunctionID == "" {
		r.respond(m, invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeInvalidArguments, Message: "cluster: bad request from another node"}})
		return
	}
	req := &invocation.Request{Namespace: in.Namespace, FunctionID: in.FunctionID, Data: in.Data, Metadata: in.Metadata, Traceparent: in.Traceparent,
		Baggage: in.Baggage, CallerWorkerID: in.CallerWorkerID, MinTimeout: time.Duration(in.MinTimeoutMS) * time.Millisecond}
	if m.Reply == "" {
		req.Void = true
		r.e.inv.InvokeLocal(req, nil)
		return
	}
	r.e.inv.InvokeLocal(req, func(res invocation.Result) { r.respond(m, res) })
}

func (r *clusterRouter) respond(m *nats.Msg, res invocation.Result) {
	if m.Reply == "" {
		return
	}
	b, err := json.Marshal(remoteReply{Value: res.Value, Err: res.Err, Traceparent: res.Traceparent, Baggage: res.Baggage})
	if err != nil {
		b, _ = json.Marshal(remoteReply{Err: &wire.ErrorBody{Code: wire.CodeInvalidArguments, Message: "cluster: result not sent: " + err.Error()}})
	}
	_ = m.Respond(b)
}

// Invoke sends a call of a function this node does not hold to the nodes
// that serve it.
func (r *clusterRouter) Invoke(req *invocation.Request, done invocation.Completion) bool {
	if r.e.ctx.Err() != nil {
		return false
	}
	b, err := json.Marshal(remoteRequest{Namespace: req.Namespace, FunctionID: req.FunctionID, Data: req.Data, Metadata: req.Metadata, Traceparent: req.Traceparent,
		Baggage: req.Baggage, CallerWorkerID: req.CallerWorkerID, MinTimeoutMS: req.MinTimeout.Milliseconds()})
	if err != nil {
		return false
	}
	subj := fnSubject(req.Namespace, req.FunctionID)
	if req.Void {
		// Fire and forget, as locally; nobody hears of a function no node has.
		_ = r.nc.Publish(subj, b)
		return true
	}
	select {
	case r.sem <- struct{}{}:
	default:
		done(invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeInvocationStopped, Message: "cluster: too many calls waiting on other nodes (" + strconv.Itoa(maxRemoteCalls) + ")"}})
		return true
	}
	timeout := max(r.e.cfg.InvocationTimeout, req.MinTimeout)
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	go func() {
		defer func() { <-r.sem }()
		ctx, cancel := context.WithTimeout(r.e.ctx, timeout)
		defer cancel()
		msg, err := r.nc.RequestWithContext(ctx, subj, b)
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			ns := req.Namespace
			if ns == "" {
				ns = wire.DefaultNamespace
			}
			done(invocation.Result{Err: wire.ErrFunctionNotFoundIn(req.FunctionID, ns, nil)})
		case errors.Is(err, context.DeadlineExceeded):
			done(invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeTimeout,
				Message: "Invocation timed out after " + strconv.FormatInt(timeout.Milliseconds(), 10) + "ms (on another node)"}})
		case err != nil:
			done(invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeInvocationStopped, Message: "Invocation stopped: " + err.Error()}})
		default:
			var rep remoteReply
			if err := json.Unmarshal(msg.Data, &rep, lenient); err != nil {
				done(invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeInvocationStopped, Message: "cluster: unreadable answer from another node"}})
				return
			}
			done(invocation.Result{Value: rep.Value, Err: rep.Err, Traceparent: rep.Traceparent, Baggage: rep.Baggage})
		}
	}()
	return true
}
