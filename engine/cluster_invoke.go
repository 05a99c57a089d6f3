package engine

import (
	"encoding/base64"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/internal/wsconn"
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
	// TakenBy, alone, is the serving node's note that it took the call.
	TakenBy     string          `json:"taken_by,omitzero"`
	Value       jsontext.Value  `json:"value,omitzero"`
	Err         *wire.ErrorBody `json:"err,omitzero"`
	Traceparent string          `json:"tp,omitzero"`
	Baggage     string          `json:"bg,omitzero"`
}

type clusterRouter struct {
	e     *Engine
	nc    *nats.Conn
	wake  chan struct{}
	inbox string // this node's reply subject prefix

	// binary: every live node reads the binary envelope (cluster_codec.go),
	// as their heartbeats say; until then calls go out as JSON. batches:
	// every live node reads calls and answers batched in one message.
	binary  atomic.Bool
	batches atomic.Bool
	// burstBytes bounds a batch (cluster_batch.go) under the server's
	// max_payload; a single call bigger than it goes alone.
	burstBytes int

	mu    sync.Mutex
	subs  map[fnKey]*nats.Subscription // function → its subscription
	calls map[string]*remoteCall       // calls waiting on other nodes, by token
	// sent: the tokens of the calls of each batch sent (callBurst), by
	// its reply token, until one of them ends: NATS answers "no
	// responders" for the whole batch.
	sent     map[string][]string
	seq      uint64
	subjects map[fnKey]string // fnSubject of the functions called lately
	// expiries: one timer per deadline slot (expirySlot) with calls due
	// in it, not one per call, keyed by the slot's end as an offset from
	// base: monotonic time, so a wall-clock step cannot give a call the
	// slot of an earlier one.
	expiries map[time.Duration]*time.Timer
	base     time.Time

	// Calls from other nodes running here, for their taken notes: one
	// timer for all of them while any runs.
	smu       sync.Mutex
	served    map[*servedCall]struct{}
	noteTimer *time.Timer
}

// newRouter makes functions of other nodes callable here; before anything
// listens. startRouting then offers this node's functions to the others.
func (e *Engine) newRouter() error {
	r := &clusterRouter{e: e, nc: e.cluster.node.Conn, wake: make(chan struct{}, 1),
		inbox: nats.NewInbox() + ".", subs: map[fnKey]*nats.Subscription{}, calls: map[string]*remoteCall{}, base: time.Now()}
	r.burstBytes = min(maxBurstBytes, max(int(r.nc.MaxPayload())/2, 1))
	replyBatch := &subBatch{}
	if _, err := r.nc.Subscribe(r.inbox+"*", func(m *nats.Msg) { r.reply(m, replyBatch) }); err != nil {
		return err
	}
	if _, err := r.nc.Subscribe(pubsubSubject, r.published); err != nil {
		return err
	}
	if _, err := r.nc.Subscribe(eventsSubject, r.event); err != nil {
		return err
	}
	e.cluster.router = r
	e.inv.SetRemote(r)
	return nil
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
	defer r.stopCalls()
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
	added := 0
	defer func() {
		// The heartbeat lists only what is subscribed (offered): another
		// node that sees a function listed can call it (a void call
		// published before the interest reached it was dropped unseen).
		if m := r.e.cluster.membersNow(); added > 0 && m != nil {
			m.functionsChanged()
		}
	}()
	r.mu.Lock()
	for id, sub := range r.subs {
		if !want[id] {
			// Drain, not Unsubscribe: a call NATS already handed to this
			// connection is still answered (function_not_found once its
			// worker is gone) instead of dropped, which left its caller
			// waiting for the invocation timeout.
			_ = sub.Drain()
			delete(r.subs, id)
		}
	}
	for id := range want {
		if r.subs[id] != nil {
			continue
		}
		batch := &subBatch{} // the subscription's own: its callbacks run on one goroutine
		sub, err := r.nc.QueueSubscribe(fnSubject(id.ns, id.id), fnQueueGroup, func(m *nats.Msg) { r.serve(m, batch) })
		if err != nil {
			r.e.log.Warn("cluster: function not offered to other nodes", "function_id", id.id, "namespace", id.ns, "err", err)
			continue
		}
		r.subs[id] = sub
		added++
	}
	r.mu.Unlock()
	// Outside r.mu: a Flush waits while NATS reconnects, and the
	// heartbeat reads the offered set.
	_ = r.nc.Flush() // the other nodes learn of the interest sooner
}

// offered returns the functions whose calls reach this node from the
// others (their subscriptions are in place).
func (r *clusterRouter) offered() map[fnKey]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[fnKey]bool, len(r.subs))
	for id := range r.subs {
		out[id] = true
	}
	return out
}

func (r *clusterRouter) unsubscribeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, sub := range r.subs {
		_ = sub.Drain() // answer the calls already received (sync)
		delete(r.subs, id)
	}
}

// subBatch is the write batch of one subscription's callbacks (nats.go
// runs them on one goroutine).
type subBatch struct {
	wsconn.Batch
	n int // messages since the last flush
}

// maxSubBatch bounds the messages whose writes a subBatch holds, so that a
// subscription that never runs dry still writes out regularly.
const maxSubBatch = 64

// flushIdle writes out what batch holds for worker sockets once no more
// messages wait on m's subscription (or after maxSubBatch messages): the
// messages NATS delivered together reach each socket in one write, as the
// frames of one socket read do.
func flushIdle(m *nats.Msg, batch *subBatch) {
	batch.n++
	// nats.go counts the message being handled as pending until its
	// callback returns.
	n, _, err := m.Sub.Pending()
	if err == nil && n <= 1 && batch.n < maxSubBatch {
		// Before writing out, let the goroutines that bring the next
		// messages (nats.go's reader, the embedded server's) run once: at
		// 128 calls in flight a socket write then carries more calls (the
		// nodes' CPU per call fell by about a tenth).
		runtime.Gosched()
		n, _, err = m.Sub.Pending()
	}
	if err != nil || n <= 1 || batch.n >= maxSubBatch {
		batch.Flush()
		batch.n = 0
	}
}

// noteDelay is how long a call from another node runs here before this
// node notes taking it (remoteReply.TakenBy). Calls answered sooner need
// no note: that saves a NATS message each way per call. It stays well
// under what the caller's node waits for a note before ending a call
// (cluster.node_timeout; a second when a node leaves).
func noteDelay(nodeTimeout time.Duration) time.Duration {
	return min(50*time.Millisecond, nodeTimeout/20)
}

// serve runs a call from another node on this node's worker; the worker
// socket writes it causes go into batch.
func (r *clusterRouter) serve(m *nats.Msg, batch *subBatch) {
	defer flushIdle(m, batch)
	if len(m.Data) > 0 && m.Data[0] == codecCalls {
		// Several calls (cluster_batch.go): each is answered to the
		// caller's inbox prefix and its token.
		if m.Reply == "" {
			return
		}
		prefix := m.Reply[:strings.LastIndexByte(m.Reply, '.')+1]
		_ = batchEntries(m.Data, codecCalls, func(token, env []byte) {
			r.serveOne(env, m, prefix, string(token), batch)
		})
		return
	}
	r.serveOne(m.Data, m, "", "", batch)
}

// serveOne runs one call, env; with a token it came in a batch and is
// answered to prefix+token (batched with others when it can), else to
// m.Reply.
func (r *clusterRouter) serveOne(env []byte, m *nats.Msg, prefix, token string, batch *subBatch) {
	var in remoteRequest
	bin := token != "" || isBinaryEnvelope(env) // answered in the encoding it came in
	respond := func(res invocation.Result) {
		if token != "" {
			r.answer(prefix, token, res)
		} else {
			r.respond(m, bin, res)
		}
	}
	if err := decodeRequest(env, &in); err != nil || in.FunctionID == "" {
		respond(invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeInvalidArguments, Message: "cluster: bad request from another node"}})
		return
	}
	req := &invocation.Request{Namespace: in.Namespace, FunctionID: in.FunctionID, Data: in.Data, Metadata: in.Metadata, Traceparent: in.Traceparent,
		Baggage: in.Baggage, CallerWorkerID: in.CallerWorkerID, MinTimeout: time.Duration(in.MinTimeoutMS) * time.Millisecond,
		Batch: &batch.Batch}
	if m.Reply == "" {
		req.Void = true
		r.e.inv.InvokeLocal(req, nil)
		return
	}
	// Tell the caller which node took the call, so that it can end it if
	// this node leaves the cluster, once the call has run for noteDelay
	// (a note arriving after the answer is ignored).
	reply := m.Reply
	if token != "" {
		reply = prefix
	}
	sc := r.startServed(reply, token, bin)
	r.e.inv.InvokeLocal(req, func(res invocation.Result) {
		r.endServed(sc)
		respond(res)
	})
}

// servedCall is a call from another node running here.
type servedCall struct {
	reply string // the reply subject, or with token its prefix
	token string
	bin   bool
	start time.Time
	noted bool
}

// startServed records a call from another node until endServed. A timer
// per call cost about as much CPU as decoding the call: one timer notes
// every call that has run noteDelay, at most half of it late.
func (r *clusterRouter) startServed(reply, token string, bin bool) *servedCall {
	sc := &servedCall{reply: reply, token: token, bin: bin, start: time.Now()}
	r.smu.Lock()
	if r.served == nil {
		r.served = map[*servedCall]struct{}{}
	}
	r.served[sc] = struct{}{}
	if r.noteTimer == nil {
		r.noteTimer = time.AfterFunc(noteDelay(r.e.cfg.Cluster.NodeTimeout), r.noteServed)
	}
	r.smu.Unlock()
	return sc
}

func (r *clusterRouter) endServed(sc *servedCall) {
	r.smu.Lock()
	delete(r.served, sc)
	r.smu.Unlock()
}

// noteServed sends the taken notes of the calls that have run noteDelay,
// and looks again in half of it while calls run.
func (r *clusterRouter) noteServed() {
	d := noteDelay(r.e.cfg.Cluster.NodeTimeout)
	now := time.Now()
	var due []*servedCall
	r.smu.Lock()
	for sc := range r.served {
		if !sc.noted && now.Sub(sc.start) >= d {
			sc.noted = true
			due = append(due, sc)
		}
	}
	if len(r.served) > 0 {
		r.noteTimer.Reset(max(d/2, time.Millisecond))
	} else {
		r.noteTimer = nil
	}
	r.smu.Unlock()
	for _, sc := range due {
		b, _ := encodeReply(&remoteReply{TakenBy: r.e.cluster.name}, sc.bin)
		_ = r.nc.Publish(sc.reply+sc.token, b)
	}
}

func (r *clusterRouter) respond(m *nats.Msg, bin bool, res invocation.Result) {
	if m.Reply == "" {
		return
	}
	b, err := encodeReply(&remoteReply{Value: res.Value, Err: res.Err, Traceparent: res.Traceparent, Baggage: res.Baggage}, bin)
	if err != nil {
		b, _ = encodeReply(&remoteReply{Err: &wire.ErrorBody{Code: wire.CodeInvalidArguments, Message: "cluster: result not sent: " + err.Error()}}, bin)
	}
	// Publish, not m.Respond: the subscription may be gone by now (the
	// function unregistered while the call ran).
	_ = r.nc.Publish(m.Reply, b)
	if bin {
		putBuf(b)
	}
}

// Invoke sends a call of a function this node does not hold to the nodes
// that serve it. Answers come to this node's reply subject
// (<inbox>.<call>): first a note naming the node that took the call, then
// the result. Calls taken by a node that leaves the cluster end with
// invocation_stopped (nodeLeft).
func (r *clusterRouter) Invoke(req *invocation.Request, done invocation.Completion) bool {
	if r.e.ctx.Err() != nil {
		return false
	}
	bin := r.binary.Load()
	b, err := encodeRequest(&remoteRequest{Namespace: req.Namespace, FunctionID: req.FunctionID, Data: req.Data, Metadata: req.Metadata, Traceparent: req.Traceparent,
		Baggage: req.Baggage, CallerWorkerID: req.CallerWorkerID, MinTimeoutMS: req.MinTimeout.Milliseconds()}, bin)
	if err != nil {
		return false
	}
	if bin {
		defer putBuf(b) // nats.go (or the burst) has copied it by the time Invoke returns
	}
	subj := r.subject(req.Namespace, req.FunctionID)
	var burst *callBurst
	if wb := batchOf(req.Batch); bin && !req.Void && wb != nil && r.batches.Load() {
		burst = r.callBurstIn(wb, subj)
	}
	if req.Void {
		// Fire and forget, as locally; nobody hears of a function no node has.
		_ = r.nc.Publish(subj, b)
		return true
	}
	timeout := max(r.e.cfg.InvocationTimeout, req.MinTimeout)
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	ns := req.Namespace
	if ns == "" {
		ns = wire.DefaultNamespace
	}
	now := time.Now()
	c := &remoteCall{done: done, fn: req.FunctionID, ns: ns, sent: now, due: now.Add(timeout), timeout: timeout}
	r.mu.Lock()
	if len(r.calls) >= maxRemoteCalls {
		r.mu.Unlock()
		done(invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeInvocationStopped, Message: "cluster: too many calls waiting on other nodes (" + strconv.Itoa(maxRemoteCalls) + ")"}})
		return true
	}
	r.seq++
	token := strconv.FormatUint(r.seq, 36)
	r.calls[token] = c
	r.expireAt(c.due, timeout)
	r.mu.Unlock()
	if burst != nil {
		burst.add(token, b)
		return true
	}
	if err := r.nc.PublishRequest(subj, r.inbox+token, b); err != nil {
		r.finish(token, invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeInvocationStopped, Message: "Invocation stopped: " + err.Error()}})
	}
	return true
}

// subject is fnSubject, remembered for the functions called lately (the
// encoding costs two allocations per call otherwise).
func (r *clusterRouter) subject(ns, fn string) string {
	k := fnKey{ns, fn}
	r.mu.Lock()
	s, ok := r.subjects[k]
	r.mu.Unlock()
	if ok {
		return s
	}
	s = fnSubject(ns, fn)
	r.mu.Lock()
	if r.subjects == nil || len(r.subjects) >= maxInternedNames {
		r.subjects = make(map[fnKey]string, 64)
	}
	r.subjects[k] = s
	r.mu.Unlock()
	return s
}

// remoteCall is a call this node sent to another, waiting for its answer.
type remoteCall struct {
	done    invocation.Completion
	batch   string // the reply token of the batch it went in (callBurst)
	fn      string
	ns      string
	node    string // the node that took it, once it said so
	sent    time.Time
	due     time.Time // then it ends with TIMEOUT
	timeout time.Duration
}

// expirySlot is how late a call may end after its deadline: a
// thirty-second of its timeout, within 1 to 100 ms. The calls due in one
// slot share a timer (one timer per call cost about as much CPU as
// decoding the call).
func expirySlot(timeout time.Duration) time.Duration {
	return min(max(timeout/32, time.Millisecond), 100*time.Millisecond)
}

// expireAt makes sure a timer runs expire at the end of due's slot. Under
// r.mu.
func (r *clusterRouter) expireAt(due time.Time, timeout time.Duration) {
	if r.base.IsZero() {
		r.base = time.Now()
	}
	slot := expirySlot(timeout)
	end := (due.Sub(r.base) + slot - 1) / slot * slot
	if r.expiries[end] != nil {
		return
	}
	if r.expiries == nil {
		r.expiries = map[time.Duration]*time.Timer{}
	}
	// base.Add keeps base's monotonic reading, so does time.Until.
	r.expiries[end] = time.AfterFunc(time.Until(r.base.Add(end)), func() { r.expire(end) })
}

// expire ends the calls whose deadline has passed with TIMEOUT, and makes
// sure the others still have a slot timer (should one have fired before a
// call's deadline, the call would otherwise never time out).
func (r *clusterRouter) expire(slot time.Duration) {
	now := time.Now()
	var due []string
	r.mu.Lock()
	delete(r.expiries, slot)
	for t, c := range r.calls {
		if !c.due.After(now) {
			due = append(due, t)
		} else {
			r.expireAt(c.due, c.timeout)
		}
	}
	r.mu.Unlock()
	for _, t := range due {
		r.mu.Lock()
		c := r.calls[t]
		r.mu.Unlock()
		if c != nil {
			r.finish(t, invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeTimeout,
				Message: "Invocation timed out after " + strconv.FormatInt(c.timeout.Milliseconds(), 10) + "ms (on another node)"}})
		}
	}
}

// finish completes the call token once (nil result: already done).
func (r *clusterRouter) finish(token string, res invocation.Result) {
	r.mu.Lock()
	c := r.calls[token]
	delete(r.calls, token)
	if c != nil && c.batch != "" {
		// The batch reached a node: no "no responders" can follow.
		delete(r.sent, c.batch)
	}
	r.mu.Unlock()
	if c == nil {
		return
	}
	c.done(res)
}

// reply takes the answers sent to this node's inbox; the callers' socket
// writes go into batch.
func (r *clusterRouter) reply(m *nats.Msg, batch *subBatch) {
	defer flushIdle(m, batch)
	token := strings.TrimPrefix(m.Subject, r.inbox)
	if strings.HasPrefix(token, "_") {
		// Batched (cluster_batch.go): "_" carries answers, "_<batch>" the
		// "no responders" of a batch of calls.
		if token != "_" {
			if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
				r.batchNotFound(token)
			}
			return
		}
		_ = batchEntries(m.Data, codecAnswers, func(t, env []byte) { r.replyOne(string(t), env, batch) })
		return
	}
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		// No node subscribes to the function's subject.
		r.mu.Lock()
		c := r.calls[token]
		r.mu.Unlock()
		if c != nil {
			r.finish(token, invocation.Result{Err: wire.ErrFunctionNotFoundIn(c.fn, c.ns, nil), Batch: &batch.Batch})
		}
		return
	}
	r.replyOne(token, m.Data, batch)
}

// replyOne takes the answer env to the call token.
func (r *clusterRouter) replyOne(token string, env []byte, batch *subBatch) {
	var rep remoteReply
	if err := decodeReply(env, &rep); err != nil {
		r.finish(token, invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeInvocationStopped, Message: "cluster: unreadable answer from another node"}})
		return
	}
	if rep.TakenBy != "" {
		r.mu.Lock()
		if c := r.calls[token]; c != nil {
			c.node = rep.TakenBy
		}
		r.mu.Unlock()
		return
	}
	r.finish(token, invocation.Result{Value: rep.Value, Err: rep.Err, Traceparent: rep.Traceparent, Baggage: rep.Baggage, Batch: &batch.Batch})
}

// nodeLeft ends the calls taken by a node that left the cluster, and the
// calls no node has noted taking for over a second: the departed node may
// have taken them and died before its note went out (a live node notes a
// call once it has run min(50 ms, node_timeout/20), so that quick calls
// cost no note).
func (r *clusterRouter) nodeLeft(node string) int {
	r.mu.Lock()
	var taken, unnoted []string
	before := time.Now().Add(-time.Second)
	for t, c := range r.calls {
		switch {
		case c.node == node:
			taken = append(taken, t)
		case c.node == "" && c.sent.Before(before):
			unnoted = append(unnoted, t)
		}
	}
	r.mu.Unlock()
	for _, t := range taken {
		r.finish(t, invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeInvocationStopped,
			Message: "Invocation stopped: node " + node + " serving it left the cluster"}})
	}
	for _, t := range unnoted {
		r.finish(t, invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeInvocationStopped,
			Message: "Invocation stopped: no node confirmed taking it and node " + node + " left the cluster"}})
	}
	return len(taken) + len(unnoted)
}

// stopUnnoted ends the calls no node has noted taking for longer than d
// (the node timeout). A live node notes a call once it has run min(50 ms,
// node_timeout/20), far below d; a call routed to a node whose function
// unsubscribed meanwhile is dropped by NATS without any answer, and would
// otherwise wait for the invocation timeout.
func (r *clusterRouter) stopUnnoted(d time.Duration) int {
	before := time.Now().Add(-d)
	r.mu.Lock()
	var unnoted []string
	for t, c := range r.calls {
		if c.node == "" && c.sent.Before(before) {
			unnoted = append(unnoted, t)
		}
	}
	r.mu.Unlock()
	for _, t := range unnoted {
		r.finish(t, invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeInvocationStopped,
			Message: "Invocation stopped: no node took it within " + d.String() + " (its function may have left the cluster)"}})
	}
	return len(unnoted)
}

// stopCalls ends every call still waiting (shutdown).
func (r *clusterRouter) stopCalls() {
	r.mu.Lock()
	for slot, t := range r.expiries {
		t.Stop()
		delete(r.expiries, slot)
	}
	tokens := make([]string, 0, len(r.calls))
	for t := range r.calls {
		tokens = append(tokens, t)
	}
	r.mu.Unlock()
	for _, t := range tokens {
		r.finish(t, invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeInvocationStopped, Message: "Invocation stopped: engine shutting down"}})
	}
}

// PubSub across nodes: publish also sends {origin, topic, data} to
// sluice.pubsub; every node calls its own bindings of the topic for
// messages from the others (at most once per binding, as on one node;
// nothing is stored).
const pubsubSubject = "sluice.pubsub"

type remotePublish struct {
	Origin string         `json:"origin"`
	Topic  string         `json:"topic"`
	Data   jsontext.Value `json:"data,omitzero"`
}

func (r *clusterRouter) publish(topic string, data jsontext.Value) {
	b, err := json.Marshal(remotePublish{Origin: r.e.cluster.name, Topic: topic, Data: data})
	if err == nil {
		_ = r.nc.Publish(pubsubSubject, b)
	}
}

func (r *clusterRouter) published(m *nats.Msg) {
	var p remotePublish
	if json.Unmarshal(m.Data, &p, lenient) != nil || p.Origin == r.e.cluster.name || p.Topic == "" {
		return
	}
	if ps := r.e.modules.pubsub; ps != nil {
		data := p.Data
		if len(data) == 0 {
			data = jsontext.Value("null")
		}
		ps.deliverLocal(p.Topic, data)
	}
}
