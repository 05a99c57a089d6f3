package engine

import (
	"errors"
	"os"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/httpfunc"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/internal/wsconn"
	"github.com/sluicehq/sluice/wire"
)

// connNamespace is what a connection knows of its namespace. It is declared
// on engine::workers::register, which the SDKs send after replaying their
// registrations, so a connection's first registrations arrive before the
// namespace is known. Until then they apply in the default namespace at
// once (every SDK before 0.23 and every worker that declares none stays
// there, and so behaves exactly as before) and are logged; one that the
// default namespace would refuse because of someone else's registration (a
// function id held by another live worker, a trigger type with a
// provider, a binding id held by another worker) is held instead of
// refused. On the declaration:
//   - default (or none): the held ones are applied, refusals sent;
//   - another namespace: what the connection registered is withdrawn from
//     the default namespace and the log is replayed in the declared one.
//
// A connection that declares nothing within registration_namespace_grace
// is settled in the default namespace.
type connNamespace struct {
	mu     sync.Mutex
	known  bool   // declared, settled by the grace timer, or closed
	closed bool   // the connection ended: registrations are dropped
	ns     string // "" until declared: the default namespace
	log    []*wire.Message
	held   []*wire.Message
	timer  *time.Timer
}

func orDefault(ns string) string {
	if ns == "" {
		return wire.DefaultNamespace
	}
	return ns
}

// fixedNamespace returns the connection's namespace if it is fixed.
func (w *workerConn) fixedNamespace() (string, bool) {
	w.nsState.mu.Lock()
	defer w.nsState.mu.Unlock()
	return orDefault(w.nsState.ns), w.nsState.known
}

// handleRegistration applies a registration message, logging it while the
// namespace is unknown.
func (w *workerConn) handleRegistration(m *wire.Message) {
	st := &w.nsState
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return
	}
	tentative := !st.known
	if tentative {
		c := *m
		st.log = append(st.log, &c)
		if st.timer == nil {
			st.timer = time.AfterFunc(w.e.cfg.RegistrationNamespaceGrace, w.namespaceGraceExpired)
		}
	}
	if w.applyRegistration(m, tentative) {
		c := *m
		st.held = append(st.held, &c)
	}
}

// applyRegistration applies m in the connection's namespace (st.mu held).
// When tentative, a refusal caused by another worker's registration in the
// default namespace is not sent: it reports held instead.
func (w *workerConn) applyRegistration(m *wire.Message, tentative bool) (held bool) {
	e := w.e
	ns := orDefault(w.nsState.ns)
	switch m.Type {
	case wire.TypeRegisterFunction:
		return w.registerFunction(m, ns, tentative)
	case wire.TypeUnregisterFunction:
		id := w.engineFunctionID(m.ID)
		if ok, promoted := e.reg.UnregisterFunction(ns, id, w); ok {
			w.log.Info("function unregistered", "function_id", m.ID, "namespace", ns)
			e.logPromoted(promoted)
			e.functionsChanged()
		} else if f, ok := e.reg.FunctionIn(ns, id); ok && registry.IsEngine(f.Owner) {
			w.log.Warn("unregisterfunction of an engine function ignored", "function_id", m.ID)
		}
	case wire.TypeRegisterTriggerType:
		if tentative {
			if _, taken := e.reg.TriggerTypeIn(wire.DefaultNamespace, m.ID); taken && m.Namespace == nil {
				return true
			}
		}
		e.registerWorkerTriggerType(w, m, ns)
	case wire.TypeUnregisterTriggerType:
		tns := ns
		if m.Namespace != nil {
			tns = *m.Namespace
		}
		if e.reg.UnregisterTriggerType(tns, m.ID, w) {
			w.log.Info("trigger type unregistered", "trigger_type", m.ID, "namespace", tns)
		}
	case wire.TypeRegisterTrigger:
		return e.registerTrigger(w, m, ns, tentative)
	case wire.TypeUnregisterTrigger:
		// The protocol has no answer to unregistertrigger; the log says why.
		if _, err := e.unregisterTrigger(w.engineTriggerID(m.ID), &w.id); err != nil {
			w.log.Warn("unregistertrigger refused", "trigger_id", registry.ShortID(m.ID), "err", err)
		}
	}
	return false
}

// resolveNamespace fixes the connection's namespace (see connNamespace). A
// connection whose namespace is already fixed keeps it; the return value
// is the namespace in force.
func (w *workerConn) resolveNamespace(ns string) string {
	st := &w.nsState
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.known {
		return orDefault(st.ns)
	}
	st.known = true
	if st.timer != nil {
		st.timer.Stop()
	}
	log, held := st.log, st.held
	st.log, st.held = nil, nil
	if st.closed {
		return orDefault(st.ns)
	}
	if ns == wire.DefaultNamespace {
		for _, m := range held {
			w.applyRegistration(m, false)
		}
		return ns
	}
	st.ns = ns
	// Other connections' bindings served by a type this connection
	// provided tentatively in default: it serves them no more.
	var served []registry.Trigger
	for _, t := range w.e.reg.Triggers("") {
		if tt, ok := w.e.reg.ProviderOf(&t); ok && tt.Provider == registry.Owner(w) && t.Owner != w.id && t.Active {
			served = append(served, t)
		}
	}
	rel := w.e.reg.Withdraw(w)
	for _, t := range served {
		_ = w.send(&wire.Message{Type: wire.TypeUnregisterTrigger, ID: t.ID, TriggerType: t.Type})
	}
	for _, rt := range rel.Triggers {
		w.e.detachTrigger(rt.Trigger, rt.Provider, w)
	}
	w.e.logPromoted(rel.Promoted...)
	if len(rel.Functions)+len(rel.Promoted) > 0 {
		w.e.functionsChanged()
	}
	if len(log) > 0 {
		w.log.Info("registrations moved to the declared namespace", "namespace", ns, "messages", len(log))
	}
	for _, m := range log {
		w.applyRegistration(m, false)
	}
	return ns
}

func (w *workerConn) namespaceGraceExpired() {
	st := &w.nsState
	st.mu.Lock()
	pending := !st.known && !st.closed
	held := len(st.held)
	st.mu.Unlock()
	if !pending {
		return
	}
	if held > 0 {
		w.log.Warn("no engine::workers::register within registration_namespace_grace; held registrations settled in the default namespace",
			"grace", w.e.cfg.RegistrationNamespaceGrace, "held", held)
	}
	w.resolveNamespace(wire.DefaultNamespace)
}

// closeNamespace stops the namespace state machine for a closing connection.
func (w *workerConn) closeNamespace() {
	st := &w.nsState
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closed = true
	if st.timer != nil {
		st.timer.Stop()
	}
	st.log, st.held = nil, nil
}

// logPromoted logs functions a standby worker took over.
func (e *Engine) logPromoted(fs ...*registry.Function) {
	for _, f := range fs {
		if f != nil {
			e.log.Info("function taken over by a standby worker (its owner left)", "function_id", f.ID,
				"namespace", f.Namespace, "worker_id", ownerOf(f.Owner))
		}
	}
}

// registerFunction handles registerfunction in namespace ns.
func (w *workerConn) registerFunction(m *wire.Message, ns string, tentative bool) (held bool) {
	if m.ID == "" {
		w.log.Warn("registerfunction without id ignored")
		return false
	}
	if w.sess != nil && !w.admitFunction(m) {
		return false
	}
	var external any
	if len(m.Invocation) > 0 {
		// The protocol has no refusal the SDKs accept for this (upstream
		// sends none either): the log says why, calls get function_not_found.
		spec, err := w.e.httpfn.Register(w.e.ctx, m.ID, m.Invocation, os.LookupEnv)
		if err != nil {
			w.log.Warn("HTTP-invoked function refused", "function_id", registry.ShortID(m.ID), "namespace", ns, "err", err)
			return false
		}
		external = spec
	}
	// observe.go: a connection registers in one namespace, so its
	// descriptors are keyed by function id alone.
	w.setDescriptor(m.ID, m.Observe)
	f := &registry.Function{
		ID: m.ID, Namespace: ns, Owner: w, Description: m.Description,
		RequestFormat: m.RequestFormat, ResponseFormat: m.ResponseFormat, Metadata: m.Metadata,
		Invocation: m.Invocation, External: external,
	}
	err := w.e.reg.RegisterFunction(f)
	var conflict *registry.ConflictError
	switch {
	case errors.As(err, &conflict) && tentative:
		return true
	case errors.As(err, &conflict):
		// Upstream's rule: the live owner keeps the id. This worker is a
		// standby: it takes over if the owner leaves (registry.RemoveWorker).
		w.log.Warn("registerfunction refused: another live worker holds the id; kept as its standby",
			"function_id", registry.ShortID(m.ID), "namespace", ns, "owner_worker_id", conflict.Owner)
		w.sendRejected(wire.EncodeFunctionRejected(wsconn.Buffer(), ns, m.ID, conflict.Owner))
		return false
	case err != nil:
		w.log.Warn("registerfunction refused", "function_id", registry.ShortID(m.ID), "namespace", ns, "err", err)
		if errors.Is(err, registry.ErrReserved) {
			// The SDKs from 0.23 log this and go on serving their other
			// functions; the 0.22.1 ones ignore it. No other code is safe
			// to send: the Python and Rust SDKs treat unknown codes as fatal.
			w.sendRejected(wire.EncodeFunctionRejected(wsconn.Buffer(), ns, m.ID, ""))
		}
		return false
	}
	if external != nil {
		w.log.Info("HTTP-invoked function registered", "function_id", m.ID, "namespace", ns, "url", external.(*httpfunc.Spec).URL)
	} else {
		w.log.Info("function registered", "function_id", m.ID, "namespace", ns)
	}
	w.e.obs.functionRegistered(w, m.ID, ns)
	w.e.functionsChanged()
	return false
}

func (w *workerConn) sendRejected(b []byte) {
	_ = w.conn.SendIn(w.e.ctx, nil, wsconn.Text, b, wsconn.Recycle)
}
