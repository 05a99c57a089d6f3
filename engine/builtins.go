package engine

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	websocket "github.com/sluicehq/sluice/internal/ws"

	"github.com/sluicehq/sluice/internal/channels"
	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/internal/wsconn"
	"github.com/sluicehq/sluice/wire"
)

// engineWorkerName names the engine's in-process worker in discovery output.
const engineWorkerName = "sluice-engine"

var lenient = json.JoinOptions(jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))

// builtin adapts a typed engine function to the wire: input decode errors
// become deserialization_error, as the reference engine reports them.
func builtin[In, Out any](fn func(ctx context.Context, req *invocation.Request, in In) (Out, *wire.ErrorBody)) invocation.Builtin {
	return func(ctx context.Context, req *invocation.Request) (jsontext.Value, *wire.ErrorBody) {
		var in In
		if d := req.Data; len(d) > 0 && string(d) != "null" {
			if err := json.Unmarshal(d, &in, lenient); err != nil {
				return nil, &wire.ErrorBody{Code: wire.CodeDeserializationError, Message: "invalid input for " + req.FunctionID + ": " + err.Error()}
			}
		}
		out, errBody := fn(ctx, req, in)
		if errBody != nil {
			return nil, errBody
		}
		b, err := json.Marshal(out)
		if err != nil {
			return nil, &wire.ErrorBody{Code: wire.CodeSerializationError, Message: err.Error()}
		}
		return b, nil
	}
}

// deferredBuiltin adapts fn to invocation.Deferred: the input is decoded
// on the caller's goroutine, and fn answers through done, exactly once.
func deferredBuiltin[In, Out any](fn func(ctx context.Context, req *invocation.Request, in In, done func(Out, *wire.ErrorBody))) invocation.Deferred {
	return func(ctx context.Context, req *invocation.Request, done func(jsontext.Value, *wire.ErrorBody)) {
		var in In
		if d := req.Data; len(d) > 0 && string(d) != "null" {
			if err := json.Unmarshal(d, &in, lenient); err != nil {
				done(nil, &wire.ErrorBody{Code: wire.CodeDeserializationError, Message: "invalid input for " + req.FunctionID + ": " + err.Error()})
				return
			}
		}
		fn(ctx, req, in, func(out Out, errBody *wire.ErrorBody) {
			if errBody != nil {
				done(nil, errBody)
				return
			}
			b, err := json.Marshal(out)
			if err != nil {
				done(nil, &wire.ErrorBody{Code: wire.CodeSerializationError, Message: err.Error()})
				return
			}
			done(b, nil)
		})
	}
}

// addDeferred registers an engine function that starts on the caller's
// reader, in order, and answers later (invocation.Deferred).
func (e *Engine) addDeferred(id string, fn invocation.Deferred) {
	e.self.AddDeferred(id, fn)
	if err := e.reg.RegisterFunction(&registry.Function{ID: id, Owner: e.self}); err != nil {
		panic("builtin " + id + ": " + err.Error())
	}
}

// addBuiltin registers an engine function. The registry reserves its id:
// no worker can register it (see registry.RegisterFunction).
func (e *Engine) addBuiltin(id string, fn invocation.Builtin, async bool) {
	e.self.Add(id, fn, async)
	if err := e.reg.RegisterFunction(&registry.Function{ID: id, Owner: e.self}); err != nil {
		panic("builtin " + id + ": " + err.Error())
	}
}

func (e *Engine) registerBuiltins() {
	e.addBuiltin(wire.FnChannelsCreate, builtin(e.createChannel), false)
	e.addBuiltin(wire.FnWorkersRegister, builtin(e.registerWorkerMetadata), false)
	e.addBuiltin(wire.FnFunctionsList, builtin(func(_ context.Context, req *invocation.Request, in functionsFilter) (any, *wire.ErrorBody) {
		return map[string]any{"functions": e.listFunctions(in, e.visibleTo(req.CallerWorkerID))}, nil
	}), false)
	e.addBuiltin(wire.FnFunctionsInfo, builtin(e.functionsInfo), false)
	e.addBuiltin(wire.FnWorkersList, builtin(e.workersList), false)
	e.addBuiltin(wire.FnWorkersInfo, builtin(e.workersInfo), false)
	e.addBuiltin(wire.FnTriggersList, builtin(e.triggersList), false)
	e.addBuiltin(wire.FnTriggersInfo, builtin(e.triggersInfo), false)
	e.addBuiltin(wire.FnRegisteredTriggersList, builtin(e.registeredTriggersList), false)
	e.addBuiltin(wire.FnRegisteredTriggersInfo, builtin(e.registeredTriggersInfo), false)
	e.addBuiltin(wire.FnRegisterTrigger, builtin(e.registerTriggerFn), true)
	e.addBuiltin(wire.FnUnregisterTrigger, builtin(e.unregisterTriggerFn), false)
	e.addBuiltin(fnHealthCheck, builtin(e.healthCheck), false)
	e.addBuiltin(fnObserversGet, builtin(e.observersGet), false)
	e.addBuiltin(fnObserversList, builtin(e.observersList), false)
	e.registerLogBuiltins()
}

// --- channels ---

// createChannel implements engine::channels::create. A channel created by a
// worker counts against that connection's quota while it is open, and is
// released when the connection ends if no end has connected by then
// (workerConn.close).
func (e *Engine) createChannel(_ context.Context, req *invocation.Request, in wire.CreateChannelInput) (wire.CreateChannelResult, *wire.ErrorBody) {
	size := 0
	if in.BufferSize != nil {
		size = *in.BufferSize
	}
	res, err := e.hub.CreateFor(req.CallerWorkerID, size)
	switch {
	case errors.Is(err, channels.ErrOwnerLimit):
		n := strconv.Itoa(e.cfg.Channels.MaxPerWorker)
		return res, &wire.ErrorBody{Code: wire.CodeChannelLimit, Message: "channel limit reached: this worker has " + n +
			" open channels (channels.max_per_worker); finish or close some first"}
	case errors.Is(err, channels.ErrChannelLimit):
		n := strconv.Itoa(e.cfg.Channels.MaxChannels)
		return res, &wire.ErrorBody{Code: wire.CodeChannelLimit, Message: "channel limit reached: the engine has " + n +
			" open channels (channels.max_channels)"}
	case err != nil:
		return res, &wire.ErrorBody{Code: wire.CodeChannelLimit, Message: err.Error()}
	}
	return res, nil
}

// --- workers ---

type registerWorkerInput struct {
	WorkerID    string         `json:"_caller_worker_id"`
	Runtime     *string        `json:"runtime"`
	Version     *string        `json:"version"`
	Name        *string        `json:"name"`
	Description *string        `json:"description"`
	OS          *string        `json:"os"`
	Telemetry   jsontext.Value `json:"telemetry"`
	PID         *int64         `json:"pid"`
	Isolation   jsontext.Value `json:"isolation"`
	// Namespace (SDKs from 0.23): where the connection registers; absent
	// (or null) is the default namespace.
	Namespace *string  `json:"namespace"`
	Features  []string `json:"features"`
}

func (e *Engine) registerWorkerMetadata(_ context.Context, req *invocation.Request, in registerWorkerInput) (any, *wire.ErrorBody) {
	id := in.WorkerID
	if id == "" {
		id = req.CallerWorkerID
	}
	if wire.BlankNamespace(in.Namespace) {
		return nil, &wire.ErrorBody{Code: wire.CodeInvalidNamespace, Message: "namespace is empty: worker " +
			quote(sanitizeLabel(deref(in.Name))) + " declared " + quote(*in.Namespace) + ". Give it a name, or omit the field to register in 'default'."}
	}
	// Only a connection may declare its own namespace.
	var conn *workerConn
	if id == req.CallerWorkerID {
		e.mu.RLock()
		conn = e.conns[id]
		e.mu.RUnlock()
	}
	ns := wire.NamespaceOf(in.Namespace)
	if conn != nil {
		if fixed, ok := conn.fixedNamespace(); ok && fixed != ns {
			// Settled by the grace timer already: lease, metadata and
			// functions stay in one namespace.
			e.log.Warn("late engine::workers::register: the connection's namespace is already fixed", "worker_id", id,
				"declared", ns, "fixed", fixed)
			ns = fixed
		}
	}
	name := sanitizeLabel(deref(in.Name))
	var conflict *registry.ConflictError
	if err := e.reg.ClaimName(id, ns, in.Namespace != nil, name); errors.As(err, &conflict) {
		e.log.Warn("worker registration refused: the name is held by a live worker in this namespace", "worker_id", id,
			"name", name, "namespace", ns, "owner_worker_id", conflict.Owner)
		if conn != nil {
			conn.sendRejected(wire.EncodeWorkerRejected(wsconn.Buffer(), ns, name, conflict.Owner))
			conn.conn.Close(websocket.ClosePolicyViolation, "worker name "+name+" is held by a live worker in namespace "+ns)
		}
		return map[string]bool{"success": false}, nil
	}
	ok := e.reg.UpdateWorker(id, func(w *registry.Worker) {
		w.Runtime = "unknown"
		if in.Runtime != nil && *in.Runtime != "" {
			w.Runtime = *in.Runtime
		}
		w.Version = deref(in.Version)
		w.Description = sanitizeLabel(deref(in.Description))
		w.OS = deref(in.OS)
		w.Telemetry = in.Telemetry
		w.Isolation = in.Isolation
		if in.PID != nil && *in.PID >= 0 {
			w.PID, w.HasPID = int(*in.PID), true
		}
	})
	if !ok {
		return nil, &wire.ErrorBody{Code: wire.CodeNotFound, Message: "no connected worker with id " + quote(id)}
	}
	if conn != nil {
		ns = conn.resolveNamespace(ns)
	}
	e.workerAnnounced(id, sanitizeLabel(deref(in.Name)), in.Features)
	if w, ok := e.reg.Worker(id); ok {
		e.log.Info("worker registered", "worker_id", id, "name", w.Name, "runtime", w.Runtime, "version", w.Version, "namespace", ns)
	}
	e.fireWorkersAvailable("worker_metadata_updated", id)
	return map[string]bool{"success": true}, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// sanitizeLabel strips control and bidi characters and caps the length, so
// names shown in lists cannot mangle a terminal.
func sanitizeLabel(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > 280 {
		s = string(r[:280])
	}
	return s
}

// --- durable triggers ---

type registerTriggerInput struct {
	TriggerType string         `json:"trigger_type"`
	FunctionID  string         `json:"function_id"`
	Config      jsontext.Value `json:"config"`
	Metadata    jsontext.Value `json:"metadata"`
}

// registerTriggerFn implements engine::register_trigger: a binding owned by
// no connection (it outlives the caller's), which only the calling worker
// may remove. For a worker-provided type it waits (up to 10 s) for the
// provider's verdict.
func (e *Engine) registerTriggerFn(ctx context.Context, req *invocation.Request, in registerTriggerInput) (any, *wire.ErrorBody) {
	if in.TriggerType == "" || in.FunctionID == "" {
		return nil, &wire.ErrorBody{Code: wire.CodeInvalidArguments, Message: "trigger_type and function_id are required"}
	}
	t := &registry.Trigger{ID: invocation.NewID(), Type: in.TriggerType, FunctionID: in.FunctionID, Config: in.Config, Metadata: in.Metadata,
		CreatedBy: req.CallerWorkerID}
	var ack chan *wire.ErrorBody
	if tt, ok := e.reg.TriggerType(in.TriggerType); ok {
		if _, isWorker := tt.Provider.(*workerConn); isWorker {
			ack = make(chan *wire.ErrorBody, 1)
			e.regWaitMu.Lock()
			e.regWaits[t.ID] = ack
			e.regWaitMu.Unlock()
		}
	}
	if errBody := e.putTrigger(t, nil); errBody != nil {
		if ack != nil {
			e.regWaitMu.Lock()
			delete(e.regWaits, t.ID)
			e.regWaitMu.Unlock()
		}
		return nil, errBody // not stored, or dropped by the provider
	}
	if ack != nil {
		timer := time.NewTimer(10 * time.Second)
		defer timer.Stop()
		select {
		case errBody := <-ack:
			if errBody != nil {
				e.reg.DropTrigger(t)
				return nil, &wire.ErrorBody{Code: wire.CodeTriggerRegistration, Message: errBody.Message}
			}
		case <-timer.C:
			e.regWaitMu.Lock()
			delete(e.regWaits, t.ID)
			e.regWaitMu.Unlock()
			_, _ = e.unregisterTrigger(t.ID, nil)
			return nil, &wire.ErrorBody{Code: wire.CodeTriggerRegistration, Message: "the provider of trigger type " + quote(in.TriggerType) + " did not answer within 10s"}
		case <-ctx.Done():
			return nil, &wire.ErrorBody{Code: wire.CodeTriggerRegistration, Message: "engine shutting down"}
		}
	}
	return map[string]string{"id": t.ID}, nil
}

type unregisterTriggerInput struct {
	ID string `json:"id"`
}

// unregisterTriggerFn implements engine::unregister_trigger: only the
// worker that registered the binding (on its connection or through
// engine::register_trigger) may remove it.
func (e *Engine) unregisterTriggerFn(_ context.Context, req *invocation.Request, in unregisterTriggerInput) (any, *wire.ErrorBody) {
	if in.ID == "" {
		return nil, &wire.ErrorBody{Code: wire.CodeUnregisterFailed, Message: "id is required"}
	}
	by := req.CallerWorkerID
	removed, err := e.unregisterTrigger(in.ID, &by)
	if err != nil {
		e.log.Warn("engine::unregister_trigger refused", "trigger_id", registry.ShortID(in.ID), "caller_worker_id", by, "err", err)
		return nil, &wire.ErrorBody{Code: wire.CodeForbidden, Message: err.Error()}
	}
	return map[string]bool{"removed": removed}, nil
}

// sortedBy sorts a slice by a string key.
func sortedBy[T any](s []T, key func(T) string) []T {
	sort.SliceStable(s, func(i, j int) bool { return key(s[i]) < key(s[j]) })
	return s
}
