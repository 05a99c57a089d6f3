package engine

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	websocket "github.com/sluicehq/sluice/internal/ws"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/internal/wsconn"
	"github.com/sluicehq/sluice/wire"
)

// workerConn is one worker socket: a read loop (this goroutine) that
// dispatches messages, and a wsconn writer goroutine.
type workerConn struct {
	e       *Engine
	id      string
	token   string
	sess    *session // RBAC restrictions; nil on a trusted listener
	conn    *wsconn.Conn
	log     *slog.Logger
	cleanup sync.Once
	gone    chan struct{} // closed when cleanup ran

	dropReason atomic.Pointer[string] // why the engine cut the socket, if it did
	congested  atomic.Bool            // calls to it fail with worker_congested
	inject     []byte                 // Deliver's payload with the caller's id; used by conn's encoders only
	spareReq   *invocation.Request    // handleInvoke's, when routing kept none (read loop only): no allocation per call
	nsState    connNamespace          // namespace.go
	// observe.v1 (observe.go)
	observeV1         atomic.Bool                           // declared observe.v1
	observes          atomic.Bool                           // sent observe frames
	ident             atomic.Pointer[[]byte]                // caller identity it is stamped with
	observeDescriptor atomic.Pointer[map[string]descriptor] // registerfunction.observe per function
	// Owned by the heartbeat goroutine (heartbeat.go).
	hbRead  uint64    // BytesRead at the last check
	hbHeard time.Time // when BytesRead last moved
}

// OwnerID implements registry.Owner.
func (w *workerConn) OwnerID() string { return w.id }

// send encodes m and queues it for the writer.
func (w *workerConn) send(m *wire.Message) error { return w.sendIn(nil, m) }

// sendIn is send as part of a reader's write batch (nil: none), for the
// messages a worker must not miss: results (or the error that replaces
// one, see reply) and notifications. It never waits for the worker's
// socket. These may use up to twice max_pending_bytes_per_worker; a worker
// with that much waiting for it is not reading at all, so it is
// disconnected as too slow: the engine cannot hold its messages without
// bound, and dropping one would leave the worker waiting forever.
func (w *workerConn) sendIn(batch *wsconn.Batch, m *wire.Message) error {
	err := w.write(batch, m, w.mustNotMissBudget())
	if errors.Is(err, wsconn.ErrCongested) {
		w.dropTooSlow()
	}
	return err
}

// mustNotMissBudget is the pending bytes that messages a worker must not
// miss may use.
func (w *workerConn) mustNotMissBudget() int64 { return 2 * int64(w.e.cfg.MaxPendingBytesPerWorker) }

// dropTooSlow disconnects a worker past mustNotMissBudget.
func (w *workerConn) dropTooSlow() {
	w.drop("too slow: more than twice max_pending_bytes_per_worker (" + w.e.cfg.MaxPendingBytesPerWorker.String() +
		") bytes waiting to be written to it")
}

// write encodes m and hands it to the socket without waiting, within
// budget pending bytes (wsconn.ErrCongested otherwise).
func (w *workerConn) write(batch *wsconn.Batch, m *wire.Message, budget int64) error {
	return w.writeEnc(batch, m, budget, func(dst []byte) ([]byte, error) { return wire.Encode(dst, m) })
}

// writeEnc is write with an encoder of m of its own.
func (w *workerConn) writeEnc(batch *wsconn.Batch, m *wire.Message, budget int64, enc func([]byte) ([]byte, error)) error {
	var encErr error
	err := w.conn.SendEncodedWithin(w.e.ctx, batch, wsconn.Text, func(dst []byte) ([]byte, error) {
		dst, encErr = enc(dst)
		return dst, encErr
	}, budget)
	if encErr != nil {
		w.log.Error("encode outgoing message", "type", m.Type, "err", encErr)
	}
	return err
}

// congestion logs the start of an episode in which messages to the worker
// are refused; ok ends it.
func (w *workerConn) congestion(ok bool, what string) {
	switch {
	case !ok:
		if !w.congested.Swap(true) {
			w.log.Warn("worker congested: "+what, "pending_bytes", w.conn.Pending(),
				"max_pending_bytes_per_worker", w.e.cfg.MaxPendingBytesPerWorker)
		}
	case w.congested.Load():
		w.congested.Store(false)
		w.log.Info("worker no longer congested")
	}
}

// drop cuts the socket; the read loop then ends and runs close with reason.
func (w *workerConn) drop(reason string) {
	if w.dropReason.CompareAndSwap(nil, &reason) {
		w.log.Warn("disconnecting worker", "reason", reason)
	}
	w.conn.Abort()
}

// Deliver implements invocation.Executor: it sends invokefunction.
func (w *workerConn) Deliver(req *invocation.Request) error {
	data := wire.DataOrNull(req.Data)
	m := wire.Message{
		Type:         wire.TypeInvokeFunction,
		InvocationID: req.InvocationID,
		FunctionID:   w.localFunctionID(req.FunctionID),
		Namespace:    nsField(req.Namespace),
		Data:         data,
		Traceparent:  req.Traceparent,
		Baggage:      req.Baggage,
		Metadata:     req.Metadata,
	}
	if req.DataVerified {
		m.Verified = wire.VerifiedData // the caller's copy, or it with the caller id spliced in
	}
	var stamped []byte
	if w.observeV1.Load() {
		// Only observe.v1 workers see who called, the observe depth and
		// the activation (older SDKs get exactly what they always got).
		if req.CallerIdent != nil {
			stamped = stampCaller(wsconn.Buffer(), req.CallerIdent, req.Caller)
			m.Caller = stamped
		} else {
			m.Caller = req.Caller // the engine's own, complete
		}
		if req.ObserveDepth > 0 {
			m.ObserveDepth = strconv.AppendInt(nil, int64(req.ObserveDepth), 10)
		}
		m.Activation = req.Activation
	}
	var err error
	if callerID := req.CallerWorkerID; callerID != "" {
		err = w.writeEnc(batchOf(req.Batch), &m, int64(w.e.cfg.MaxPendingBytesPerWorker), func(dst []byte) ([]byte, error) {
			// The encoders of one socket never run at once (wsconn):
			// w.inject is this one's.
			w.inject = wire.InjectCallerID(w.inject[:0], data, callerID)
			m.Data = w.inject
			dst, err := wire.Encode(dst, &m)
			if cap(w.inject) > 4<<10 {
				w.inject = nil // a big payload's copy must not stay pinned to the socket
			}
			return dst, err
		})
	} else {
		err = w.write(batchOf(req.Batch), &m, int64(w.e.cfg.MaxPendingBytesPerWorker))
	}
	if stamped != nil {
		wsconn.Recycle(stamped)
	}
	if err == nil || errors.Is(err, wsconn.ErrCongested) {
		w.congestion(err == nil, "calls to its functions fail with worker_congested until it reads")
	}
	if errors.Is(err, wsconn.ErrCongested) {
		return invocation.ErrExecutorCongested
	}
	return err
}

// batchOf is the write batch an invocation carries: the *wsconn.Batch of
// the reader that started it, or nil.
func batchOf(b invocation.WriteBatch) *wsconn.Batch {
	wb, _ := b.(*wsconn.Batch)
	return wb
}

func (e *Engine) serveWorker(la *listenerAuth, rw http.ResponseWriter, r *http.Request) {
	if e.isShuttingDown() {
		http.Error(rw, "engine shutting down", http.StatusServiceUnavailable)
		return
	}
	sess, ok := e.admit(la, rw, r)
	if !ok {
		return
	}
	ws, err := wsconn.Upgrade(&e.upgrader, rw, r, nil)
	if err != nil {
		return // the upgrader has answered the client
	}
	w := &workerConn{
		e:     e,
		id:    invocation.NewID(),
		token: invocation.NewID(),
		sess:  sess,
		conn:  wsconn.New(ws, wsconn.Options{MaxQueuedBytes: int64(e.cfg.MaxPendingBytesPerWorker)}),
		gone:  make(chan struct{}),

		hbHeard: time.Now(),
	}
	w.log = e.log.With("worker_id", w.id)
	w.setIdent("")
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	e.reg.AddWorker(&registry.Worker{ID: w.id, Runtime: "unknown", IPAddress: host, ConnectedAt: time.Now()})
	e.mu.Lock()
	e.conns[w.id] = w
	e.mu.Unlock()
	w.log.Info("worker connected", "remote", r.RemoteAddr)

	_ = w.send(&wire.Message{Type: wire.TypeWorkerRegistered, WorkerID: w.id, ReattachToken: w.token, Features: engineFeatures})
	e.fireWorkersAvailable("worker_connected", w.id)
	w.readLoop()
	reason := "connection closed"
	if r := w.dropReason.Load(); r != nil {
		reason = *r
	}
	w.close(reason)
}

func (w *workerConn) readLoop() {
	ws := w.conn.WS()
	limit := int64(w.e.cfg.MaxMessageSize)
	buf := make([]byte, 0, 4096)
	var m wire.Message
	telemetry := false // logged once per connection
	// Writes caused by a burst of input are batched per destination and
	// flushed before the next read that could block.
	var batch wsconn.Batch
	defer batch.Flush()
	for {
		if !wsconn.NextFrameBuffered(ws) {
			batch.Flush()
		}
		kind, data, err := wsconn.ReadFrame(ws, buf[:0], limit)
		if cap(data) <= 1<<20 {
			buf = data[:0] // keep a grown buffer, unless it is huge
		}
		// With nothing more buffered the flush would come right after
		// this frame: its writes go out directly instead. Not while
		// anything is observed: an observed call's completion runs the
		// observers after the result is written, and a caller must not
		// see its result before that is done (as with the flush).
		batch.SetDirect(!wsconn.NextFrameBuffered(ws) && !w.e.inv.Watching())
		if errors.Is(err, wsconn.ErrFrameTooLarge) {
			w.rejectOversized(data)
			continue
		}
		if err != nil {
			if code, reason, ok := wsconn.IsCloseError(err); ok {
				w.log.Debug("worker closed socket", "code", code, "reason", reason)
			} else if !errors.Is(err, net.ErrClosed) {
				w.log.Debug("worker socket read ended", "err", err)
			}
			return
		}
		if kind == wsconn.Binary && isTelemetryFrame(data) {
			fwd := w.e.forwardTelemetry(data)
			if !telemetry {
				telemetry = true
				msg := "worker sends telemetry (discarded)"
				if fwd {
					msg = "worker sends telemetry (forwarded over OTLP)"
				}
				w.log.Info(msg, "kind", string(data[:4]))
			}
			continue
		}
		if wire.IsBlank(data) {
			continue
		}
		// A text message from ReadFrame is valid UTF-8 as a whole (one
		// that is not ended the socket with 1007): DecodeText relies on
		// it, and the payloads it vouches for are forwarded without a
		// second scan. A binary frame's UTF-8 is not checked: Decode
		// vouches for nothing, and the encoder scans its payloads.
		rawValid := false
		if kind == wsconn.Text {
			rawValid, err = wire.DecodeText(data, &m)
		} else {
			err = wire.Decode(data, &m)
		}
		if err != nil {
			w.rejectMalformed(data, err)
			continue
		}
		if isObserveFrame(m.Type) {
			batch.Flush()
			w.e.obs.frame(w, m.Type, data)
			continue
		}
		w.handle(&m, rawValid, &batch)
	}
}

func isTelemetryFrame(b []byte) bool {
	return len(b) >= 4 && (bytes.HasPrefix(b, []byte("OTLP")) || bytes.HasPrefix(b, []byte("MTRC")) || bytes.HasPrefix(b, []byte("LOGS")))
}

// envelope is the little we try to recover from a frame we cannot decode,
// so that a caller waiting on an invocation gets an answer.
type envelope struct {
	Type         string `json:"type"`
	InvocationID string `json:"invocation_id"`
	FunctionID   string `json:"function_id"`
}

func (w *workerConn) rejectMalformed(frame []byte, err error) {
	var env envelope
	_ = json.Unmarshal(frame, &env, jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	if env.Type == "" {
		env.Type = scanString(frame, `"type"`, false)
	}
	w.log.Warn("malformed message from worker", "err", err, "type", env.Type, "bytes", len(frame))
	switch env.Type {
	case "observe":
		// Every observe is answered, so the SDK's ready() ends.
		if id := scanString(frame, `"id"`, false); id != "" {
			w.observes.Store(true)
			w.sendObserveFrame(observeResultOut{Type: "observeresult", ID: id, State: obsError,
				Error: errBody("INVALID_ARGS", "malformed observe: "+err.Error())})
		}
	case wire.TypeInvokeFunction:
		if env.InvocationID != "" {
			w.reply(env.InvocationID, env.FunctionID, invocation.Result{Err: &wire.ErrorBody{
				Code: wire.CodeDeserializationError, Message: "malformed invokefunction: " + err.Error()}})
		}
	case wire.TypeInvocationResult:
		if env.InvocationID != "" {
			w.e.inv.Pending().Complete(env.InvocationID, w.id, invocation.Result{Err: &wire.ErrorBody{
				Code: wire.CodeInvocationError, Message: "the executing worker sent a malformed invocationresult: " + err.Error()}})
		}
	}
}

// rejectOversized answers a frame over the size limit. Only its first and
// last bytes were kept (wsconn.ReadFrame); if they name an invocation, the
// caller is told why it failed. A field is looked for first from the start
// (where the Node, Rust and Go SDKs put the envelope), then from the end
// (the Python SDK puts data first).
func (w *workerConn) rejectOversized(part []byte) {
	field := func(key string) string {
		if v := scanString(part, key, false); v != "" {
			return v
		}
		return scanString(part, key, true)
	}
	id, fn, typ := field(`"invocation_id"`), field(`"function_id"`), field(`"type"`)
	w.log.Warn("message over size limit dropped", "limit", w.e.cfg.MaxMessageSize, "type", typ, "invocation_id", id)
	if id == "" {
		return
	}
	msg := "message exceeds the engine's max_message_size of " + itoa(int64(w.e.cfg.MaxMessageSize)) + " bytes"
	switch typ {
	case wire.TypeInvocationResult:
		w.e.inv.Pending().Complete(id, w.id, invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeInvocationError, Message: "result " + msg}})
	default:
		w.reply(id, fn, invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeInvocationError, Message: "invocation " + msg}})
	}
}

// scanString finds "key":"value" in part of a JSON message without
// parsing it: at key's first occurrence, or its last if last.
func scanString(b []byte, key string, last bool) string {
	i := bytes.Index(b, []byte(key))
	if last {
		i = bytes.LastIndex(b, []byte(key))
	}
	if i < 0 {
		return ""
	}
	rest := bytes.TrimLeft(b[i+len(key):], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return ""
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if len(rest) == 0 || rest[0] != '"' {
		return ""
	}
	end := bytes.IndexByte(rest[1:], '"')
	if end < 0 || end > 200 || bytes.IndexByte(rest[1:end+1], '\\') >= 0 {
		return ""
	}
	return string(rest[1 : end+1])
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// handle dispatches m; rawValid is DecodeText's.
func (w *workerConn) handle(m *wire.Message, rawValid bool, batch *wsconn.Batch) {
	e := w.e
	w.flushBeforeHook(m, batch.Flush)
	switch m.Type {
	case wire.TypeInvokeFunction:
		w.handleInvoke(m, rawValid, batch)
	case wire.TypeInvocationResult:
		if !e.inv.Pending().Complete(m.InvocationID, w.id, invocation.Result{
			Value: m.Result, ValueVerified: rawValid, Err: m.Error, Traceparent: m.Traceparent, Baggage: m.Baggage, Batch: batch}) {
			w.log.Debug("result for unknown invocation ignored", "invocation_id", m.InvocationID)
		}
	case wire.TypeRegisterFunction, wire.TypeUnregisterFunction, wire.TypeRegisterTriggerType,
		wire.TypeUnregisterTriggerType, wire.TypeRegisterTrigger, wire.TypeUnregisterTrigger:
		w.handleRegistration(m)
	case wire.TypeTriggerRegistrationResult:
		e.triggerRegistrationResult(w, m)
	case wire.TypeReattach:
		w.reattach(m)
	case wire.TypePing:
		_ = w.send(&wire.Message{Type: wire.TypePong})
	case wire.TypePong, wire.TypeRegisterService:
	default:
		w.log.Debug("unknown message type ignored", "type", m.Type)
	}
}

func (w *workerConn) handleInvoke(m *wire.Message, rawValid bool, batch *wsconn.Batch) {
	callerID, fnID := m.InvocationID, m.FunctionID
	if wire.BlankNamespace(m.Namespace) {
		if callerID != "" && !m.Action.IsVoid() {
			w.reply(callerID, fnID, invocation.Result{Err: wire.ErrInvalidNamespace("namespace"), Batch: batch})
		} else {
			w.log.Warn("invokefunction with an empty namespace dropped", "function_id", registry.ShortID(fnID))
		}
		return
	}
	if w.sess != nil && !w.mayCall(m) {
		return
	}
	if w.sess != nil && w.sess.rbac.MiddlewareFunctionID != "" && w.viaMiddleware(m, batch) {
		return
	}
	if m.Action.IsEnqueue() {
		w.e.enqueueFromWorker(w, m)
		return
	}
	req := w.spareReq
	if req == nil {
		req = new(invocation.Request)
	}
	w.spareReq = nil // until routing is known not to keep it
	*req = invocation.Request{
		InvocationID:   callerID,
		FunctionID:     fnID,
		Namespace:      nsOf(m.Namespace),
		Data:           m.Data,
		DataVerified:   rawValid,
		Metadata:       m.Metadata,
		Traceparent:    m.Traceparent,
		Baggage:        m.Baggage,
		CallerWorkerID: w.id,
		Void:           m.Action.IsVoid() || callerID == "",
		Batch:          batch,
		CallerIdent:    w.callerIdent(),
	}
	if m.Caller != nil || m.ObserveDepth != nil || m.Activation != nil {
		req.Caller = m.Caller
		req.ObserveDepth = parseDepth(m.ObserveDepth)
		if m.Activation != nil {
			req.Activation = m.Activation
			release, e := w.e.obs.ownerCall(w, req)
			if e != nil {
				if !req.Void {
					w.reply(callerID, fnID, invocation.Result{Err: e})
				}
				return
			}
			if release != nil { // the call holds a max_in_flight slot until its result
				void := req.Void
				if void {
					req.Void, req.InvocationID = false, ""
				}
				w.e.inv.Invoke(req, func(res invocation.Result) {
					release(res)
					if !void {
						w.reply(callerID, fnID, res)
					}
				})
				return
			}
		}
	}
	var held bool
	if req.Void {
		req.InvocationID = ""
		held = w.e.inv.InvokeHeld(req, nil)
	} else {
		held = w.e.inv.InvokeHeld(req, func(res invocation.Result) { w.reply(callerID, fnID, res) })
	}
	if !held {
		*req = invocation.Request{} // a spare must not pin the frame its payload is in
		w.spareReq = req
	}
}

// reply sends the invocationresult of a call this worker made.
func (w *workerConn) reply(invocationID, functionID string, res invocation.Result) {
	m := wire.Message{
		Type:         wire.TypeInvocationResult,
		InvocationID: invocationID,
		FunctionID:   functionID,
		Result:       res.Value,
		Error:        res.Err,
		Traceparent:  res.Traceparent,
		Baggage:      res.Baggage,
	}
	if m.Error != nil {
		m.Result = nil
	} else if res.ValueVerified {
		m.Verified = wire.VerifiedResult
	}
	err := w.write(batchOf(res.Batch), &m, int64(w.e.cfg.MaxPendingBytesPerWorker))
	if err == nil || errors.Is(err, wsconn.ErrCongested) {
		w.congestion(err == nil, "results of its calls are replaced by worker_congested errors until it reads")
	}
	if errors.Is(err, wsconn.ErrCongested) {
		// The caller is behind on reading what it asked for: it gets a
		// small error in place of this result, so that its call ends
		// instead of waiting forever (the function did run).
		m = wire.Message{Type: wire.TypeInvocationResult, InvocationID: invocationID, FunctionID: functionID,
			Error: &wire.ErrorBody{Code: wire.CodeWorkerCongested, Message: "the result of " + functionID +
				" was dropped: this worker is not reading its socket fast enough (max_pending_bytes_per_worker reached)"}}
		err = w.sendIn(batchOf(res.Batch), &m)
	}
	if err != nil && !errors.Is(err, wsconn.ErrCongested) {
		w.log.Debug("result not delivered: caller gone", "invocation_id", invocationID)
	}
}

// nsOf is the invocation namespace a wire field names ("" = default).
func nsOf(ns *string) string {
	if ns == nil || *ns == wire.DefaultNamespace {
		return ""
	}
	return *ns
}

// nsField is the namespace field of a message sent to a worker: absent for
// the default namespace, which every SDK before 0.23 knows without it.
func nsField(ns string) *string {
	if ns == "" || ns == wire.DefaultNamespace {
		return nil
	}
	s := ns // the copy escapes, not the parameter: no allocation per call without one
	return &s
}

// reattach lets a reconnected worker evict its previous, half-open
// connection before it replays its registrations, so that the old
// connection's cleanup cannot remove them afterwards.
func (w *workerConn) reattach(m *wire.Message) {
	if m.PreviousWorkerID == "" || m.PreviousWorkerID == w.id {
		return
	}
	w.e.mu.RLock()
	old, ok := w.e.conns[m.PreviousWorkerID]
	w.e.mu.RUnlock()
	if !ok {
		return
	}
	if subtle.ConstantTimeCompare([]byte(old.token), []byte(m.ReattachToken)) != 1 {
		w.log.Warn("reattach with wrong token ignored", "previous_worker_id", m.PreviousWorkerID)
		return
	}
	w.log.Info("worker reattached; evicting previous connection", "previous_worker_id", old.id)
	old.conn.Abort()
	old.close("evicted by reattach")
	// The token proves it is the same worker: it keeps the right to remove
	// the durable bindings it created through engine::register_trigger.
	w.e.reg.TransferCreatedBy(old.id, w.id)
}

// closeFlushWait bounds how long a closed worker socket may take to write
// what was accepted for it before the close (as ws.Conn bounds its control
// frame writes).
const closeFlushWait = time.Second

// close runs the disconnect cleanup once: it answers every invocation the
// worker owed, drops what it still owns and tells trigger providers.
func (w *workerConn) close(reason string) {
	w.cleanup.Do(func() {
		e := w.e
		w.closeNamespace()
		// New frames are refused from here on, but the reader's last one
		// (the echo of the worker's close frame, or a 1002/1007 close) may
		// still be pending: over TLS it always is, nothing being written
		// inline there. It goes out first, for at most closeFlushWait.
		w.conn.HangupWithin(closeFlushWait)
		e.mu.Lock()
		delete(e.conns, w.id)
		e.mu.Unlock()
		// Unroute first so no new invocation reaches this worker, then
		// answer the ones it owed. An invocation routed in between fails
		// its Deliver (the socket is closing) and is answered the same way.
		meta, _ := e.reg.Worker(w.id) // for the log line: RemoveWorker drops it
		rel := e.reg.RemoveWorker(w)
		e.logPromoted(rel.Promoted...)
		halted := e.inv.Pending().HaltExecutor(w.id, wire.ErrInvocationStopped())
		for _, rt := range rel.Triggers {
			e.detachTrigger(rt.Trigger, rt.Provider, w)
		}
		e.hub.ReleaseOwner(w.id) // its channels that no end connected to yet
		if len(rel.Functions)+len(rel.Promoted) > 0 {
			e.functionsChanged()
		}
		w.log.Info("worker disconnected", "name", meta.Name, "runtime", meta.Runtime, "version", meta.Version, "reason", reason, "functions_released", len(rel.Functions),
			"triggers_released", len(rel.Triggers), "invocations_stopped", halted)
		e.obs.connClosed(w)
		close(w.gone)
		e.fireWorkersAvailable("worker_disconnected", w.id)
	})
}

// serveOTel accepts the telemetry socket the SDKs open: what they send is
// forwarded over OTLP when export is on (otel.go), else discarded
// (answering pings keeps them from reconnecting).
func (e *Engine) serveOTel(la *listenerAuth, rw http.ResponseWriter, r *http.Request) {
	if !e.admitToken(la, rw, r) {
		return
	}
	ws, err := e.upgrader.Upgrade(rw, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	stop := context.AfterFunc(e.ctx, func() {
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "engine shutting down"), time.Now().Add(time.Second))
		ws.Close()
	})
	defer stop()
	ws.SetReadLimit(int64(e.cfg.MaxMessageSize))
	forward := e.otel.x != nil && e.otel.forward
	if forward {
		e.log.Info("telemetry socket connected (forwarded over OTLP)", "remote", r.RemoteAddr)
	} else {
		e.log.Info("telemetry socket connected (data discarded)", "remote", r.RemoteAddr)
	}
	var buf bytes.Buffer
	for {
		_, r, err := ws.NextReader()
		if err != nil {
			return
		}
		if !forward {
			if _, err := discard(r); err != nil {
				return
			}
			continue
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return
		}
		e.forwardTelemetry(buf.Bytes())
		if buf.Cap() > 1<<20 {
			buf = bytes.Buffer{} // keep a grown buffer, unless it is huge
		}
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
