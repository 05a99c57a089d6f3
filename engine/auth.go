package engine

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/auth"
	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/internal/wsconn"
	"github.com/sluicehq/sluice/wire"
)

// authCallTimeout bounds one call to an auth or registration hook function.
const authCallTimeout = 10 * time.Second

// listenerAuth is the auth of one worker listener.
type listenerAuth struct {
	name string
	cfg  AuthConfig
}

// session is the authorization of a connection to an RBAC listener; a
// connection without one (w.sess == nil) is trusted.
type session struct {
	rbac *auth.RBAC
	res  auth.Result

	mu    sync.Mutex
	local map[string]string // engine function id -> the id the worker registered
	trigs map[string]string // the worker's trigger id -> engine trigger id
}

func (s *session) hooks() bool {
	return s.rbac.OnFunctionRegistrationFunctionID != "" || s.rbac.OnTriggerRegistrationFunctionID != "" ||
		s.rbac.OnTriggerTypeRegistrationFunctionID != ""
}

// admit checks a worker upgrade against the listener's auth. It answers a
// refused request itself (HTTP 401) and returns ok=false.
func (e *Engine) admit(la *listenerAuth, rw http.ResponseWriter, r *http.Request) (*session, bool) {
	if la == nil || !la.cfg.enabled() {
		return nil, true
	}
	if tok := auth.Token(r); len(la.cfg.Tokens) > 0 && !auth.TokenOK(tok, la.cfg.Tokens) {
		e.log.Warn("worker refused: missing or wrong token", "listener", la.name, "remote", r.RemoteAddr, "token", presence(tok))
		refuse(rw, "missing or invalid token: send Authorization: Bearer <token> (or ?token=<token>)")
		return nil, false
	}
	if la.cfg.RBAC == nil {
		return nil, true
	}
	res := auth.Open()
	if id := la.cfg.RBAC.AuthFunctionID; id != "" {
		v, errBody := e.callTrusted(r.Context(), id, auth.NewInput(r))
		if errBody == nil {
			var err error
			if res, err = auth.ParseResult(v); err != nil {
				errBody = &wire.ErrorBody{Code: auth.CodeAuthError, Message: err.Error()}
			}
		}
		if errBody != nil {
			e.log.Warn("worker refused by auth function", "listener", la.name, "remote", r.RemoteAddr,
				"auth_function_id", id, "code", errBody.Code, "message", errBody.Message)
			refuse(rw, "refused by the auth function: "+errBody.Message)
			return nil, false
		}
	}
	return &session{rbac: la.cfg.RBAC, res: res}, true
}

// admitToken is admit for the telemetry socket: tokens only.
func (e *Engine) admitToken(la *listenerAuth, rw http.ResponseWriter, r *http.Request) bool {
	if la == nil || len(la.cfg.Tokens) == 0 || auth.TokenOK(auth.Token(r), la.cfg.Tokens) {
		return true
	}
	refuse(rw, "missing or invalid token")
	return false
}

func presence(tok string) string {
	if tok == "" {
		return "missing"
	}
	return "wrong"
}

func refuse(rw http.ResponseWriter, msg string) {
	rw.Header().Set("Content-Type", "application/json")
	rw.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
	rw.WriteHeader(http.StatusUnauthorized)
	b, _ := json.Marshal(map[string]any{"error": wire.ErrorBody{Code: auth.CodeAuthError, Message: msg}})
	_, _ = rw.Write(append(b, '\n'))
}

// callTrusted invokes an auth or hook function and waits (bounded) for its
// result. The function must be served by the engine or a trusted
// connection: an RBAC session must not answer for its own admission.
func (e *Engine) callTrusted(ctx context.Context, id string, in any) (jsontext.Value, *wire.ErrorBody) {
	f, ok := e.reg.Function(id)
	if !ok {
		return nil, wire.ErrFunctionNotFound(id)
	}
	if c, ok := f.Owner.(*workerConn); ok && c.sess != nil {
		return nil, &wire.ErrorBody{Code: auth.CodeAuthError, Message: "function " + quote(id) + " is served by an RBAC-restricted connection, not a trusted worker"}
	}
	data, err := json.Marshal(in)
	if err != nil {
		return nil, &wire.ErrorBody{Code: wire.CodeSerializationError, Message: err.Error()}
	}
	ch := make(chan invocation.Result, 1)
	e.inv.Invoke(&invocation.Request{FunctionID: id, Data: data}, func(r invocation.Result) {
		// The value may live in the executor's read buffer: copy it.
		ch <- invocation.Result{Value: bytes.Clone(r.Value), Err: r.Err}
	})
	timer := time.NewTimer(authCallTimeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		return r.Value, r.Err
	case <-timer.C:
		return nil, &wire.ErrorBody{Code: wire.CodeTimeout, Message: "function " + quote(id) + " did not answer within " + authCallTimeout.String()}
	case <-ctx.Done():
		return nil, &wire.ErrorBody{Code: auth.CodeAuthError, Message: "request ended"}
	case <-e.ctx.Done():
		return nil, &wire.ErrorBody{Code: auth.CodeAuthError, Message: "engine shutting down"}
	}
}

// hook calls a registration hook; ok=false means the hook denied.
func (w *workerConn) hook(id string, in map[string]any, out any) (string, bool) {
	in["context"] = w.sess.res.Context
	v, errBody := w.e.callTrusted(w.e.ctx, id, in)
	if errBody != nil {
		return errBody.Message, false
	}
	if len(v) == 0 || v.Kind() != '{' {
		return "the hook returned no object", false
	}
	if err := json.Unmarshal(v, out); err != nil {
		return "the hook's result: " + err.Error(), false
	}
	return "", true
}

// flushBeforeHook sends the reader's deferred writes before a registration
// that will block the reader on a hook function.
func (w *workerConn) flushBeforeHook(m *wire.Message, flush func()) {
	if w.sess == nil || !w.sess.hooks() {
		return
	}
	switch m.Type {
	case wire.TypeRegisterFunction, wire.TypeRegisterTrigger, wire.TypeRegisterTriggerType:
		flush()
	}
}

// mayCall applies the session's RBAC to an invokefunction; a denied call
// with an invocation_id is answered FORBIDDEN.
func (w *workerConn) mayCall(m *wire.Message) bool {
	d := w.canCall(nsOf(m.Namespace), m.FunctionID)
	if d == auth.Allowed {
		return true
	}
	w.log.Warn("call denied by RBAC", "function_id", m.FunctionID)
	if m.InvocationID != "" && !m.Action.IsVoid() {
		w.reply(m.InvocationID, m.FunctionID, invocation.Result{Err: &wire.ErrorBody{Code: auth.CodeForbidden, Message: d.Message(m.FunctionID)}})
	}
	return false
}

// viaMiddleware hands an allowed call of a session to the listener's
// middleware function (upstream's middleware_function_id) and reports
// whether it did. The engine's own functions bypass it: re-invoked from the
// middleware's connection they would lose the caller's session (a filtered
// engine::functions::list would list everything).
func (w *workerConn) viaMiddleware(m *wire.Message, batch *wsconn.Batch) bool {
	if f, ok := w.e.reg.FunctionIn(nsOf(m.Namespace), m.FunctionID); ok && f.Owner == w.e.self {
		return false
	}
	in := struct {
		FunctionID string         `json:"function_id"`
		Payload    jsontext.Value `json:"payload"`
		Action     *wire.Action   `json:"action"`
		Context    jsontext.Value `json:"context"`
		Namespace  string         `json:"namespace"`
	}{m.FunctionID, m.Data, m.Action, w.sess.res.Context, nsOf(m.Namespace)}
	if len(in.Payload) == 0 {
		in.Payload = jsontext.Value("null")
	}
	if len(in.Context) == 0 {
		in.Context = jsontext.Value("{}")
	}
	data, err := json.Marshal(in)
	if err != nil {
		if m.InvocationID != "" && !m.Action.IsVoid() {
			w.reply(m.InvocationID, m.FunctionID, invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeSerializationError, Message: err.Error()}, Batch: batch})
		}
		return true
	}
	req := &invocation.Request{
		FunctionID:  w.sess.rbac.MiddlewareFunctionID,
		Namespace:   in.Namespace,
		Data:        data,
		Metadata:    m.Metadata,
		Traceparent: m.Traceparent,
		Baggage:     m.Baggage,
	}
	callerID, fnID := m.InvocationID, m.FunctionID
	if callerID == "" || m.Action.IsVoid() {
		w.e.inv.Invoke(req, nil)
		return true
	}
	w.e.inv.Invoke(req, func(res invocation.Result) { w.reply(callerID, fnID, res) })
	return true
}

func (w *workerConn) canCall(ns, id string) auth.Decision {
	var meta jsontext.Value
	own := false
	// The function asked for, in its namespace: exposure by metadata and
	// ownership are those of that function, not of a same-named one in
	// another namespace.
	if f, ok := w.e.reg.FunctionIn(ns, id); ok {
		meta, own = f.Metadata, ownerOf(f.Owner) == w.id
	}
	return auth.CanCall(w.sess.rbac, &w.sess.res, id, meta, own)
}

// visibleTo returns the discovery filter of a caller: nil when it sees
// everything (the engine, a trusted connection).
func (e *Engine) visibleTo(callerID string) func(*registry.Function) bool {
	if callerID == "" {
		return nil
	}
	e.mu.RLock()
	c := e.conns[callerID]
	e.mu.RUnlock()
	if c == nil || c.sess == nil {
		return nil
	}
	return func(f *registry.Function) bool {
		return auth.CanCall(c.sess.rbac, &c.sess.res, f.ID, f.Metadata, ownerOf(f.Owner) == c.id) == auth.Allowed
	}
}

func (w *workerConn) denyRegistration(what, id, reason string) bool {
	w.log.Warn(what+" registration denied by RBAC", "id", id, "reason", reason)
	return false
}

// admitFunction applies the session's RBAC to a registerfunction: it may
// deny it or rename it (hook, then function_registration_prefix).
func (w *workerConn) admitFunction(m *wire.Message) bool {
	s := w.sess
	asked := m.ID
	if !s.res.AllowFunctionRegistration {
		return w.denyRegistration("function", asked, "allow_function_registration is false for this session")
	}
	if id := s.rbac.OnFunctionRegistrationFunctionID; id != "" {
		var out struct {
			FunctionID  *string        `json:"function_id"`
			Description *string        `json:"description"`
			Metadata    jsontext.Value `json:"metadata"`
		}
		in := map[string]any{"function_id": m.ID, "description": m.Description, "metadata": wire.DataOrNull(m.Metadata)}
		if why, ok := w.hook(id, in, &out); !ok {
			return w.denyRegistration("function", asked, "on_function_registration hook: "+why)
		}
		if out.FunctionID != nil && *out.FunctionID != "" {
			m.ID = *out.FunctionID
		}
		if out.Description != nil {
			m.Description = *out.Description
		}
		if len(out.Metadata) > 0 && string(out.Metadata) != "null" {
			m.Metadata = out.Metadata
		}
	}
	m.ID = s.res.Prefixed(m.ID)
	// Engine ids are refused by the registry itself (registrationrejected).
	if f, ok := w.e.reg.Function(m.ID); ok && ownerOf(f.Owner) != w.id && !registry.IsEngine(f.Owner) {
		return w.denyRegistration("function", m.ID, "the id is served by another worker")
	}
	if m.ID != asked {
		s.mu.Lock()
		if s.local == nil {
			s.local = map[string]string{}
		}
		s.local[m.ID] = asked
		s.mu.Unlock()
		w.log.Info("function registration renamed by RBAC", "asked", asked, "function_id", m.ID)
	}
	return true
}

// localFunctionID is the id the worker knows a function by (inlined on
// the delivery path of trusted connections).
func (w *workerConn) localFunctionID(id string) string {
	if w.sess == nil {
		return id
	}
	return w.sess.localID(id)
}

func (s *session) localID(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.local[id]; ok {
		return l
	}
	return id
}

// engineFunctionID maps the id a worker unregisters to the engine's.
func (w *workerConn) engineFunctionID(id string) string {
	if w.sess == nil {
		return id
	}
	w.sess.mu.Lock()
	defer w.sess.mu.Unlock()
	for eid, l := range w.sess.local {
		if l == id {
			delete(w.sess.local, eid)
			return eid
		}
	}
	return w.sess.res.Prefixed(id)
}

// engineTriggerID maps the id a worker unregisters to the engine's.
func (w *workerConn) engineTriggerID(id string) string {
	if w.sess == nil {
		return id
	}
	w.sess.mu.Lock()
	defer w.sess.mu.Unlock()
	if t, ok := w.sess.trigs[id]; ok {
		delete(w.sess.trigs, id)
		return t
	}
	return id
}

// admitTriggerType applies the session's RBAC to a registertriggertype.
func (w *workerConn) admitTriggerType(m *wire.Message) bool {
	s := w.sess
	asked := m.ID
	if !s.res.AllowTriggerTypeRegistration {
		return w.denyRegistration("trigger type", asked, "allow_trigger_type_registration is false for this session")
	}
	if id := s.rbac.OnTriggerTypeRegistrationFunctionID; id != "" {
		var out struct {
			TriggerTypeID *string `json:"trigger_type_id"`
			Description   *string `json:"description"`
		}
		if why, ok := w.hook(id, map[string]any{"trigger_type_id": m.ID, "description": m.Description}, &out); !ok {
			return w.denyRegistration("trigger type", asked, "on_trigger_type_registration hook: "+why)
		}
		if out.TriggerTypeID != nil && *out.TriggerTypeID != "" {
			m.ID = *out.TriggerTypeID
		}
		if out.Description != nil {
			m.Description = *out.Description
		}
	}
	if tt, ok := w.e.reg.TriggerType(m.ID); ok && ownerOf(tt.Provider) != w.id {
		return w.denyRegistration("trigger type", m.ID, "the type is provided by another worker or the engine")
	}
	return true
}

// admitTrigger applies the session's RBAC to a registertrigger; a denial
// is answered with a FORBIDDEN triggerregistrationresult.
func (w *workerConn) admitTrigger(m *wire.Message) bool {
	s := w.sess
	asked := m.ID
	deny := func(msg string) bool {
		w.log.Warn("trigger registration denied by RBAC", "trigger_id", asked, "trigger_type", m.TriggerType, "function_id", m.FunctionID, "reason", msg)
		_ = w.send(&wire.Message{Type: wire.TypeTriggerRegistrationResult, ID: asked, TriggerType: m.TriggerType, FunctionID: m.FunctionID,
			Error: &wire.ErrorBody{Code: auth.CodeForbidden, Message: msg}})
		return false
	}
	if !s.res.CanUseTriggerType(m.TriggerType) {
		return deny("trigger type '" + m.TriggerType + "' not allowed for this session (allowed_trigger_types)")
	}
	if id := s.rbac.OnTriggerRegistrationFunctionID; id != "" {
		var out struct {
			TriggerID   *string        `json:"trigger_id"`
			TriggerType *string        `json:"trigger_type"`
			FunctionID  *string        `json:"function_id"`
			Config      jsontext.Value `json:"config"`
		}
		in := map[string]any{"trigger_id": m.ID, "trigger_type": m.TriggerType, "function_id": m.FunctionID, "config": wire.DataOrNull(m.Config)}
		if why, ok := w.hook(id, in, &out); !ok {
			return deny("denied by on_trigger_registration hook: " + why)
		}
		if out.TriggerID != nil && *out.TriggerID != "" {
			m.ID = *out.TriggerID
		}
		if out.TriggerType != nil && *out.TriggerType != "" {
			m.TriggerType = *out.TriggerType
		}
		if out.FunctionID != nil && *out.FunctionID != "" {
			m.FunctionID = *out.FunctionID
		}
		if len(out.Config) > 0 {
			m.Config = out.Config
		}
		if !s.res.CanUseTriggerType(m.TriggerType) {
			return deny("trigger type '" + m.TriggerType + "' not allowed for this session (allowed_trigger_types)")
		}
	}
	m.FunctionID = s.res.Prefixed(m.FunctionID)
	if d := w.canCall(nsOf(m.Namespace), m.FunctionID); d != auth.Allowed {
		return deny(d.Message(m.FunctionID))
	}
	if m.ID != asked {
		s.mu.Lock()
		if s.trigs == nil {
			s.trigs = map[string]string{}
		}
		s.trigs[asked] = m.ID
		s.mu.Unlock()
	}
	return true
}

// warnUnauthenticated is warnExposed for a worker_listeners entry.
func (e *Engine) warnUnauthenticated(la *listenerAuth, addr net.Addr) {
	if !exposed(addr) {
		return
	}
	switch {
	case !la.cfg.enabled():
		e.log.Warn(exposedMsg, "listener", la.name, "addr", addr.String(), "tls", e.tlsCfg != nil)
	case e.tlsCfg == nil:
		e.log.Warn(plaintextMsg, "listener", la.name, "addr", addr.String())
	}
}

// startWorkerListeners starts the worker_listeners, each with its auth.
func (e *Engine) startWorkerListeners(ctx context.Context) error {
	for i, lc := range e.cfg.WorkerListeners {
		name := lc.Name
		if name == "" {
			name = "listener-" + itoa(int64(i+1))
		}
		la := &listenerAuth{name: name, cfg: lc.Auth}
		ln, srv, err := e.listen(ctx, lc.Addr, e.workerHandler(la))
		if err != nil {
			e.closeWorkerListeners()
			return fmt.Errorf("worker listener %s: %w", name, err)
		}
		e.extra = append(e.extra, srv)
		if e.extraURL == nil {
			e.extraURL = map[string]string{}
		}
		e.extraURL[name] = "ws://" + ln.Addr().String()
		e.warnUnauthenticated(la, ln.Addr())
		e.log.Info("worker listener started", "name", name, "worker_url", e.scheme("ws://", "wss://")+ln.Addr().String(),
			"tokens", len(lc.Auth.Tokens) > 0, "rbac", lc.Auth.RBAC != nil)
	}
	return nil
}

// WorkerListenerURL is the URL of the worker_listeners entry named name
// (unnamed entries are "listener-<n>", counting from 1), once started.
func (e *Engine) WorkerListenerURL(name string) string { return e.extraURL[name] }

func (e *Engine) closeWorkerListeners() {
	for _, s := range e.extra {
		_ = s.Close()
	}
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// fireFunctionsAvailable fires engine::functions-available. A binding
// owned by an RBAC session is sent only the functions that session may
// call, as engine::functions::list would list them.
func (e *Engine) fireFunctionsAvailable() {
	payload := func(visible func(*registry.Function) bool) jsontext.Value {
		data, _ := json.Marshal(struct {
			Event     string            `json:"event"`
			Functions []functionSummary `json:"functions"`
		}{"functions_changed", e.listFunctions(functionsFilter{}, visible)})
		return data
	}
	var all jsontext.Value
	for _, t := range e.reg.Triggers(wire.TriggerTypeFunctionsAvailable) {
		if !t.Active {
			continue
		}
		data := all
		if visible := e.visibleTo(t.Owner); visible != nil {
			data = payload(visible)
		} else if data == nil {
			all = payload(nil)
			data = all
		}
		e.inv.Invoke(&invocation.Request{FunctionID: t.FunctionID, Namespace: t.Namespace, Data: data, Metadata: t.Metadata, Void: true}, nil)
	}
}
