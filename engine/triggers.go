package engine

import (
	"errors"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

// TriggerProvider is an in-process provider of a trigger type (the HTTP
// listener, the engine's own event types).
type TriggerProvider interface {
	// RegisterTrigger starts serving a binding; an error rejects it and is
	// reported to the worker that registered it.
	RegisterTrigger(t *registry.Trigger) error
	// UnregisterTrigger stops serving a binding.
	UnregisterTrigger(t *registry.Trigger)
}

// engineProvider marks a trigger type as provided by the engine itself.
type engineProvider struct{ p TriggerProvider }

func (*engineProvider) OwnerID() string { return "" }

// acceptAll serves event trigger types whose bindings need no setup: the
// engine fires them itself.
type acceptAll struct{}

func (acceptAll) RegisterTrigger(*registry.Trigger) error { return nil }
func (acceptAll) UnregisterTrigger(*registry.Trigger)     {}

func (e *Engine) addEngineTriggerType(id, description string, p TriggerProvider) {
	ep := &engineProvider{p: p}
	e.providers[id] = ep
	if _, err := e.reg.RegisterTriggerType(&registry.TriggerType{ID: id, Description: description, Provider: ep}); err != nil {
		panic("engine trigger type " + id + ": " + err.Error())
	}
}

func (e *Engine) registerEngineTriggerTypes() {
	e.addEngineTriggerType(wire.TriggerTypeHTTP, "HTTP endpoints served by the engine", e.http)
	e.addEngineTriggerType(wire.TriggerTypeWorkersAvailable, "Fired when a worker connects, disconnects or updates its metadata", acceptAll{})
	e.addEngineTriggerType(wire.TriggerTypeFunctionsAvailable, "Fired when the set of registered functions changes", acceptAll{})
}

func (e *Engine) registerWorkerTriggerType(w *workerConn, m *wire.Message, ns string) {
	if m.ID == "" {
		w.log.Warn("registertriggertype without id ignored")
		return
	}
	if wire.BlankNamespace(m.Namespace) {
		// The protocol has no answer to registertriggertype; the log says why.
		w.log.Warn("registertriggertype refused", "trigger_type", registry.ShortID(m.ID), "err", wire.ErrInvalidNamespace("namespace").Message)
		return
	}
	if m.Namespace != nil {
		ns = *m.Namespace
	}
	if w.sess != nil && !w.admitTriggerType(m) {
		return
	}
	tt := &registry.TriggerType{
		ID: m.ID, Namespace: ns, Description: m.Description, Provider: w,
		TriggerRequestFormat: m.TriggerRequestFormat, CallRequestFormat: m.CallRequestFormat,
	}
	moved, err := e.reg.RegisterTriggerType(tt)
	if err != nil {
		w.log.Warn("registertriggertype refused", "trigger_type", registry.ShortID(m.ID), "namespace", ns, "err", err)
		return
	}
	w.log.Info("trigger type registered", "trigger_type", m.ID, "namespace", ns, "bindings", len(moved))
	for _, mv := range moved {
		if mv.From != nil && mv.From != tt && mv.Trigger.Active {
			e.detachTrigger(mv.Trigger, mv.From, nil)
		}
		e.activate(mv.Trigger, tt, nil)
	}
}

// registerTrigger handles registertrigger from w, whose connection is in
// namespace ns. When tentative (ns not yet declared), a binding id held by
// another worker is reported held instead of refused.
func (e *Engine) registerTrigger(w *workerConn, m *wire.Message, ns string, tentative bool) (held bool) {
	if m.ID == "" || m.TriggerType == "" || m.FunctionID == "" {
		w.log.Warn("registertrigger needs id, trigger_type and function_id; ignored", "id", registry.ShortID(m.ID),
			"trigger_type", registry.ShortID(m.TriggerType), "function_id", registry.ShortID(m.FunctionID))
		if m.ID != "" {
			w.refuseTrigger(m, &wire.ErrorBody{Code: wire.CodeTriggerRegistration, Message: "registertrigger needs id, trigger_type and function_id"})
		}
		return false
	}
	for _, f := range [...]struct {
		name  string
		value *string
	}{{"namespace", m.Namespace}, {"trigger_namespace", m.TriggerNamespace}} {
		if wire.BlankNamespace(f.value) {
			w.refuseTrigger(m, wire.ErrInvalidNamespace(f.name))
			return false
		}
	}
	if w.sess != nil && !w.admitTrigger(m) {
		return false
	}
	t := &registry.Trigger{ID: m.ID, Type: m.TriggerType, FunctionID: m.FunctionID, Config: m.Config, Metadata: m.Metadata, Owner: w.id,
		Namespace: wire.NamespaceOf(m.Namespace), ConnNamespace: ns}
	if m.TriggerNamespace != nil {
		t.TriggerNamespace = *m.TriggerNamespace
	}
	if tentative {
		if cur, ok := e.reg.Trigger(t.ID); ok && cur.Holder() != t.Holder() {
			// Refused without telling the worker yet; the registry keeps
			// the claim (a reconnected worker's replay takes the binding
			// over when its old connection ends).
			_, _, _ = e.reg.PutTrigger(t)
			return true
		}
	}
	e.putTrigger(t, w)
	return false
}

// refuseTrigger answers a registertrigger with triggerregistrationresult
// and an error, which every SDK logs. Ids over the length limit are echoed
// cut to 64 bytes.
func (w *workerConn) refuseTrigger(m *wire.Message, body *wire.ErrorBody) {
	echo := func(id string) string {
		if len(id) > w.e.cfg.MaxIDLength {
			return registry.ShortID(id)
		}
		return id
	}
	_ = w.send(&wire.Message{Type: wire.TypeTriggerRegistrationResult,
		ID: echo(m.ID), TriggerType: echo(m.TriggerType), FunctionID: echo(m.FunctionID), Error: body})
}

// putTrigger stores a binding and activates it if its type has a provider.
// It returns the refusal (another worker's id, an id too long) or the
// provider's rejection, if any; registrant is told either.
func (e *Engine) putTrigger(t *registry.Trigger, registrant *workerConn) *wire.ErrorBody {
	provider, replaced, err := e.reg.PutTrigger(t)
	if err != nil {
		code := wire.CodeTriggerRegistration
		if errors.Is(err, registry.ErrNotOwner) {
			code = wire.CodeForbidden
		}
		body := &wire.ErrorBody{Code: code, Message: err.Error()}
		log := e.log
		if registrant != nil {
			log = registrant.log
			registrant.refuseTrigger(&wire.Message{ID: t.ID, TriggerType: t.Type, FunctionID: t.FunctionID}, body)
		}
		log.Warn("trigger registration refused", "trigger_id", registry.ShortID(t.ID), "trigger_type", registry.ShortID(t.Type), "err", err)
		return body
	}
	if replaced != nil && replaced.Active {
		if oldTT, ok := e.reg.ProviderOf(replaced); ok {
			e.detachTrigger(replaced, oldTT, nil)
		}
	}
	if provider == nil {
		e.log.Info("trigger parked until its type is provided", "trigger_id", t.ID, "trigger_type", t.Type, "function_id", t.FunctionID)
		return nil
	}
	return e.activate(t, provider, registrant)
}

// activate hands a binding to its provider. An in-process provider answers
// at once; a worker provider is sent registertrigger and answers later.
func (e *Engine) activate(t *registry.Trigger, tt *registry.TriggerType, registrant *workerConn) *wire.ErrorBody {
	switch p := tt.Provider.(type) {
	case *engineProvider:
		if err := p.p.RegisterTrigger(t); err != nil {
			// Not kept parked: an engine provider's verdict does not change
			// later, and a rejected binding must not show in lists.
			e.reg.DropTrigger(t)
			body := &wire.ErrorBody{Code: wire.CodeTriggerRegistration, Message: err.Error()}
			e.log.Warn("trigger rejected", "trigger_id", t.ID, "trigger_type", t.Type, "err", err)
			if registrant != nil {
				_ = registrant.send(&wire.Message{Type: wire.TypeTriggerRegistrationResult, ID: t.ID, TriggerType: t.Type, FunctionID: t.FunctionID, Error: body})
			}
			return body
		}
		e.reg.SetTriggerActive(t, true)
		e.log.Info("trigger registered", "trigger_id", t.ID, "trigger_type", t.Type, "function_id", t.FunctionID,
			"config", configSummary(wire.DataOrNull(t.Config)))
	case *workerConn:
		e.reg.SetTriggerActive(t, true)
		_ = p.send(&wire.Message{Type: wire.TypeRegisterTrigger, ID: t.ID, TriggerType: t.Type, FunctionID: t.FunctionID,
			Config: wire.DataOrNull(t.Config), Metadata: t.Metadata})
	}
	e.routesChanged() // cluster mode: the other nodes list it (cluster_http.go)
	return nil
}

// detachTrigger tells a binding's provider to stop serving it.
func (e *Engine) detachTrigger(t *registry.Trigger, tt *registry.TriggerType, except *workerConn) {
	if tt == nil || !t.Active {
		return
	}
	switch p := tt.Provider.(type) {
	case *engineProvider:
		p.p.UnregisterTrigger(t)
	case *workerConn:
		if p != except {
			_ = p.send(&wire.Message{Type: wire.TypeUnregisterTrigger, ID: t.ID, TriggerType: t.Type})
		}
	}
	e.routesChanged()
}

// unregisterTrigger removes binding id and tells its provider. by is the
// worker asking (nil: the engine itself); only the binding's holder may.
func (e *Engine) unregisterTrigger(id string, by *string) (bool, error) {
	t, tt, err := e.reg.RemoveTrigger(id, by)
	if t == nil {
		return false, err
	}
	e.detachTrigger(t, tt, nil)
	e.log.Info("trigger unregistered", "trigger_id", t.ID, "trigger_type", t.Type, "function_id", t.FunctionID)
	return true, nil
}

func (e *Engine) triggerRegistrationResult(w *workerConn, m *wire.Message) {
	t, ok := e.reg.Trigger(m.ID)
	if !ok {
		return
	}
	if tt, ok := e.reg.ProviderOf(t); !ok || tt.Provider != w {
		return // only the current provider may accept or reject a binding
	}
	e.regWaitMu.Lock()
	ch, waiting := e.regWaits[m.ID]
	delete(e.regWaits, m.ID)
	e.regWaitMu.Unlock()
	if waiting {
		ch <- m.Error
		return
	}
	if m.Error == nil {
		return
	}
	e.reg.SetTriggerActive(t, false)
	w.log.Warn("provider rejected trigger", "trigger_id", t.ID, "trigger_type", t.Type, "code", m.Error.Code, "message", m.Error.Message)
	e.mu.RLock()
	owner := e.conns[t.Owner]
	e.mu.RUnlock()
	if owner != nil {
		_ = owner.send(&wire.Message{Type: wire.TypeTriggerRegistrationResult, ID: t.ID, TriggerType: t.Type, FunctionID: t.FunctionID, Error: m.Error})
	}
}

// fire invokes every active binding of an engine trigger type (void).
func (e *Engine) fire(triggerType string, data jsontext.Value) {
	for _, t := range e.reg.Triggers(triggerType) {
		if !t.Active {
			continue
		}
		e.inv.Invoke(&invocation.Request{FunctionID: t.FunctionID, Namespace: t.Namespace, Data: data, Metadata: t.Metadata, Void: true}, nil)
	}
}

func (e *Engine) fireWorkersAvailable(event, workerID string) {
	data, _ := json.Marshal(struct {
		Event    string `json:"event"`
		WorkerID string `json:"worker_id"`
	}{event, workerID})
	e.fire(wire.TriggerTypeWorkersAvailable, data)
}

// functionsChanged wakes the watcher that fires engine::functions-available.
func (e *Engine) functionsChanged() {
	e.queues.functionsChanged()
	e.obs.changed()
	if c := e.cluster; c != nil {
		c.router.functionsChanged()
		if m := c.membersNow(); m != nil {
			m.functionsChanged()
		}
	}
	select {
	case e.fnChanged <- struct{}{}:
	default:
	}
}

// remoteFunctionsChanged wakes the same watcher when another node's
// functions changed (cluster mode: engine::functions::list lists them).
func (e *Engine) remoteFunctionsChanged() {
	e.remoteFnGen.Add(1)
	select {
	case e.fnChanged <- struct{}{}:
	default:
	}
}

// watchFunctions fires engine::functions-available when the function set
// changes, coalescing bursts (a worker registering a hundred functions
// produces one event, not a hundred).
func (e *Engine) watchFunctions() {
	defer e.backgroundDone.Done()
	var lastGen uint64
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-e.fnChanged:
		}
		timer := time.NewTimer(50 * time.Millisecond)
		select {
		case <-e.ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		gen := e.reg.FunctionGeneration() + e.remoteFnGen.Load() // both only grow
		if gen == lastGen {
			continue
		}
		lastGen = gen
		e.fireFunctionsAvailable()
	}
}
