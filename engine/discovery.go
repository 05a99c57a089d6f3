package engine

import (
	"context"
	"sort"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

// The engine::* discovery functions, with the shapes of PROTOCOL.md §7.

type functionsFilter struct {
	Search          string   `json:"search"`
	Prefix          string   `json:"prefix"`
	Worker          string   `json:"worker"`
	Workers         []string `json:"workers"`
	IncludeInternal bool     `json:"include_internal"`
}

type functionSummary struct {
	FunctionID  string         `json:"function_id"`
	Namespace   string         `json:"namespace"`
	WorkerName  string         `json:"worker_name"`
	Node        string         `json:"node,omitzero"` // cluster mode: the node serving it
	Description string         `json:"description,omitzero"`
	Metadata    jsontext.Value `json:"metadata,omitzero"`
}

type triggerRef struct {
	ID          string         `json:"id"`
	TriggerType string         `json:"trigger_type"`
	Config      jsontext.Value `json:"config"`
}

type functionDetail struct {
	FunctionID         string         `json:"function_id"`
	Namespace          string         `json:"namespace"`
	WorkerName         string         `json:"worker_name"`
	Description        string         `json:"description,omitzero"`
	RequestSchema      jsontext.Value `json:"request_schema,omitzero"`
	ResponseSchema     jsontext.Value `json:"response_schema,omitzero"`
	Metadata           jsontext.Value `json:"metadata,omitzero"`
	RegisteredTriggers []triggerRef   `json:"registered_triggers"`
	Node               string         `json:"node,omitzero"` // cluster mode: the node serving it
}

// workerName names the worker behind an owner for discovery output.
func (e *Engine) workerName(ownerID, fallbackFunctionID string) string {
	if ownerID == "" {
		return engineWorkerName
	}
	if w, ok := e.reg.Worker(ownerID); ok {
		if w.Name != "" {
			return w.Name
		}
		return w.ID
	}
	if i := strings.Index(fallbackFunctionID, "::"); i > 0 {
		return fallbackFunctionID[:i]
	}
	return fallbackFunctionID
}

func ownerOf(o registry.Owner) string {
	if o == nil {
		return ""
	}
	return o.OwnerID()
}

func hiddenFunction(id string) bool {
	return strings.HasPrefix(id, "engine::") && !strings.HasPrefix(id, "engine::queue::")
}

// listFunctions lists what visible (nil: everything) lets the caller see.
func (e *Engine) listFunctions(in functionsFilter, visible func(*registry.Function) bool) []functionSummary {
	search := strings.ToLower(in.Search)
	var out []functionSummary
	for _, f := range e.reg.Functions() {
		if visible != nil && !visible(f) {
			continue
		}
		if !in.IncludeInternal && (hiddenFunction(f.ID) || f.Internal()) {
			continue
		}
		if in.Prefix != "" && !strings.HasPrefix(f.ID, in.Prefix) {
			continue
		}
		name := e.workerName(ownerOf(f.Owner), f.ID)
		if in.Worker != "" && name != in.Worker && ownerOf(f.Owner) != in.Worker {
			continue
		}
		if len(in.Workers) > 0 && !contains(in.Workers, name) && !contains(in.Workers, ownerOf(f.Owner)) {
			continue
		}
		if search != "" && !strings.Contains(strings.ToLower(f.ID), search) && !strings.Contains(strings.ToLower(f.Description), search) {
			continue
		}
		out = append(out, functionSummary{FunctionID: f.ID, Namespace: f.Namespace, WorkerName: name, Description: f.Description, Metadata: f.Metadata, Node: e.nodeName()})
	}
	out = e.appendRemoteFunctions(out, in, search, visible)
	if search != "" { // id hits first, then description-only hits
		idHit := func(s functionSummary) string {
			if strings.Contains(strings.ToLower(s.FunctionID), search) {
				return "0" + s.FunctionID
			}
			return "1" + s.FunctionID
		}
		sortedBy(out, idHit)
	}
	if out == nil {
		out = []functionSummary{}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (e *Engine) functionDetail(f *registry.Function) functionDetail {
	d := functionDetail{
		Namespace:  f.Namespace,
		FunctionID: f.ID, WorkerName: e.workerName(ownerOf(f.Owner), f.ID), Description: f.Description,
		RequestSchema: f.RequestFormat, ResponseSchema: f.ResponseFormat, Metadata: f.Metadata,
		RegisteredTriggers: []triggerRef{}, Node: e.nodeName(),
	}
	for _, t := range e.reg.Triggers("") {
		if t.FunctionID == f.ID {
			d.RegisteredTriggers = append(d.RegisteredTriggers, triggerRef{ID: t.ID, TriggerType: t.Type, Config: wire.DataOrNull(t.Config)})
		}
	}
	return d
}

type functionsInfoInput struct {
	FunctionID  string   `json:"function_id"`
	FunctionIDs []string `json:"function_ids"`
	// Namespace, when set, is the only one looked in; absent: default,
	// else the one namespace holding the id (several: ambiguous).
	Namespace *string `json:"namespace"`
}

// lookupFunction resolves an introspection lookup (see functionsInfoInput).
func (e *Engine) lookupFunction(id string, ns *string) (*registry.Function, *wire.ErrorBody) {
	if ns != nil {
		if f, ok := e.reg.FunctionIn(*ns, id); ok {
			return f, nil
		}
		return nil, &wire.ErrorBody{Code: wire.CodeNotFound, Message: wire.ErrFunctionNotFoundIn(id, *ns, e.reg.NamespacesOf(id)).Message}
	}
	if f, ok := e.reg.Function(id); ok {
		return f, nil
	}
	switch nss := e.reg.NamespacesOf(id); len(nss) {
	case 0:
		return nil, &wire.ErrorBody{Code: wire.CodeNotFound, Message: "Function '" + id + "' is not registered."}
	case 1:
		if f, ok := e.reg.FunctionIn(nss[0], id); ok {
			return f, nil
		}
		return nil, &wire.ErrorBody{Code: wire.CodeNotFound, Message: "Function '" + id + "' is not registered."}
	default:
		return nil, &wire.ErrorBody{Code: wire.CodeNotFound, Message: "Function '" + id + "' is ambiguous: it is registered in namespace(s): " +
			strings.Join(nss, ", ") + ". Pass `namespace` to select one."}
	}
}

type functionLookupError struct {
	FunctionID string `json:"function_id"`
	Error      string `json:"error"`
}

func (e *Engine) functionsInfo(_ context.Context, req *invocation.Request, in functionsInfoInput) (any, *wire.ErrorBody) {
	visible := e.visibleTo(req.CallerWorkerID)
	switch {
	case in.FunctionID != "" && len(in.FunctionIDs) > 0, in.FunctionID == "" && len(in.FunctionIDs) == 0:
		return nil, &wire.ErrorBody{Code: wire.CodeInvalidArguments, Message: "pass exactly one of function_id or function_ids"}
	case len(in.FunctionIDs) > 32:
		return nil, &wire.ErrorBody{Code: wire.CodeInvalidArguments, Message: "function_ids takes at most 32 ids"}
	case in.FunctionID != "":
		f, errBody := e.lookupFunction(in.FunctionID, in.Namespace)
		if errBody != nil {
			if d, rf := e.remoteFunctionDetail(in.FunctionID, in.Namespace); d != nil {
				if visible != nil && !visible(rf) {
					return nil, &wire.ErrorBody{Code: wire.CodeForbidden, Message: "function '" + in.FunctionID + "' not allowed"}
				}
				return d, nil
			}
		}
		if f != nil && visible != nil && !visible(f) {
			return nil, &wire.ErrorBody{Code: wire.CodeForbidden, Message: "function '" + in.FunctionID + "' not allowed"}
		}
		if errBody != nil {
			return nil, errBody
		}
		return e.functionDetail(f), nil
	}
	out := make([]any, 0, len(in.FunctionIDs))
	for _, id := range in.FunctionIDs {
		f, errBody := e.lookupFunction(id, in.Namespace)
		ok := errBody == nil
		if !ok {
			if d, rf := e.remoteFunctionDetail(id, in.Namespace); d != nil {
				if visible != nil && !visible(rf) {
					out = append(out, functionLookupError{FunctionID: id, Error: "forbidden"})
				} else {
					out = append(out, d)
				}
				continue
			}
		}
		if ok && visible != nil && !visible(f) {
			out = append(out, functionLookupError{FunctionID: id, Error: "forbidden"})
		} else if ok {
			out = append(out, e.functionDetail(f))
		} else {
			out = append(out, functionLookupError{FunctionID: id, Error: "not_found"})
		}
	}
	return map[string]any{"functions": out}, nil
}

// --- workers ---

type workerSummary struct {
	Name              *string        `json:"name"`
	Description       *string        `json:"description"`
	Version           *string        `json:"version"`
	ID                string         `json:"id"`
	Namespace         string         `json:"namespace"`
	Runtime           *string        `json:"runtime"`
	OS                *string        `json:"os"`
	Status            string         `json:"status"`
	FunctionCount     int            `json:"function_count"`
	ConnectedAtMS     int64          `json:"connected_at_ms"`
	ActiveInvocations int            `json:"active_invocations"`
	Isolation         jsontext.Value `json:"isolation"`
	IPAddress         *string        `json:"ip_address"`
	Node              string         `json:"node,omitzero"` // cluster mode: the node it is connected to
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (e *Engine) summarizeWorker(w registry.Worker) workerSummary {
	iso := w.Isolation
	if len(iso) == 0 {
		iso = wire.Null
	}
	return workerSummary{
		Name: optional(w.Name), Description: optional(w.Description), Version: optional(w.Version), ID: w.ID, Namespace: orDefault(w.Namespace),
		Runtime: optional(w.Runtime), OS: optional(w.OS), Status: "connected",
		FunctionCount: e.reg.WorkerFunctionCount(w.ID), ConnectedAtMS: w.ConnectedAt.UnixMilli(),
		ActiveInvocations: e.inv.Pending().CountFor(w.ID), Isolation: iso, IPAddress: optional(w.IPAddress),
		Node: e.nodeName(),
	}
}

func (e *Engine) engineWorkerSummary() workerSummary {
	name, runtime, version := engineWorkerName, "engine", Version
	return workerSummary{
		Name: &name, Version: &version, ID: engineWorkerName, Namespace: wire.DefaultNamespace, Runtime: &runtime, Status: "available",
		FunctionCount: e.reg.WorkerFunctionCount(""), Isolation: jsontext.Value(`"in-process"`),
	}
}

type workersListInput struct {
	Search  string `json:"search"`
	Runtime string `json:"runtime"`
	Status  string `json:"status"`
}

func (e *Engine) workersList(_ context.Context, _ *invocation.Request, in workersListInput) (any, *wire.ErrorBody) {
	search := strings.ToLower(in.Search)
	out := []workerSummary{}
	add := func(s workerSummary) {
		if in.Runtime != "" && (s.Runtime == nil || *s.Runtime != in.Runtime) {
			return
		}
		if in.Status != "" && s.Status != in.Status {
			return
		}
		if search != "" && (s.Name == nil || !strings.Contains(strings.ToLower(*s.Name), search)) {
			return
		}
		out = append(out, s)
	}
	add(e.engineWorkerSummary())
	for _, w := range e.reg.Workers() {
		if !w.HasPID { // not yet (or never) announced through engine::workers::register
			continue
		}
		add(e.summarizeWorker(w))
	}
	for _, w := range e.remoteWorkers() {
		add(w)
	}
	sortedBy(out, func(s workerSummary) string { return deref(s.Name) + "\x00" + s.ID })
	return map[string]any{"workers": out}, nil
}

type workersInfoInput struct {
	Name string `json:"name"`
	// Namespace, when set, restricts the lookup to workers in it (a name
	// is unique only within a namespace).
	Namespace *string `json:"namespace"`
}

// pickWorker resolves an engine::workers::info lookup: by id, or by name in
// the given namespace; without one a default-namespace worker wins, else a
// name in one namespace only, else the lookup is ambiguous.
func (e *Engine) pickWorker(in workersInfoInput) (registry.Worker, *wire.ErrorBody) {
	var cands []registry.Worker
	for _, w := range e.reg.Workers() {
		if w.ID == in.Name {
			return w, nil
		}
		if w.Name == in.Name && (in.Namespace == nil || orDefault(w.Namespace) == *in.Namespace) {
			cands = append(cands, w)
		}
	}
	nss := map[string]bool{}
	for _, w := range cands {
		if orDefault(w.Namespace) == wire.DefaultNamespace {
			return w, nil
		}
		nss[w.Namespace] = true
	}
	switch {
	case len(cands) == 0:
		return registry.Worker{}, &wire.ErrorBody{Code: wire.CodeNotFound, Message: "Worker '" + in.Name + "' is not connected."}
	case len(nss) > 1:
		list := make([]string, 0, len(nss))
		for ns := range nss {
			list = append(list, ns)
		}
		sort.Strings(list)
		return registry.Worker{}, &wire.ErrorBody{Code: wire.CodeNotFound, Message: "Worker '" + in.Name +
			"' is ambiguous: it is connected in namespace(s): " + strings.Join(list, ", ") + ". Pass `namespace` to select one."}
	}
	return cands[0], nil
}

func (e *Engine) workersInfo(_ context.Context, _ *invocation.Request, in workersInfoInput) (any, *wire.ErrorBody) {
	w, errBody := e.pickWorker(in)
	if errBody != nil {
		if info := e.remoteWorkerInfo(in); info != nil {
			return info, nil
		}
		return nil, errBody
	}
	s := e.summarizeWorker(w)
	info := struct {
		workerSummary
		PID      *int `json:"pid,omitzero"`
		Internal bool `json:"internal"`
	}{workerSummary: s}
	if w.HasPID {
		info.PID = &w.PID
	}
	var fns []functionSummary
	for _, f := range e.reg.Functions() {
		if ownerOf(f.Owner) == w.ID {
			fns = append(fns, functionSummary{FunctionID: f.ID, Namespace: f.Namespace, WorkerName: e.workerName(w.ID, f.ID), Description: f.Description, Metadata: f.Metadata})
		}
	}
	var types []triggerTypeSummary
	for _, tt := range e.reg.TriggerTypes() {
		if ownerOf(tt.Provider) == w.ID {
			types = append(types, e.summarizeTriggerType(tt))
		}
	}
	var regs []registeredTrigger
	for _, t := range e.reg.Triggers("") {
		if t.Owner == w.ID {
			regs = append(regs, e.summarizeRegisteredTrigger(t))
		}
	}
	return map[string]any{"worker": info, "functions": nonNil(fns), "trigger_types": nonNil(types), "registered_triggers": nonNil(regs)}, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// --- trigger types ---

type triggerTypeSummary struct {
	ID          string `json:"id"`
	WorkerName  string `json:"worker_name"`
	Description string `json:"description"`
	// Node is, in cluster mode, the node of the worker providing it (the
	// engine's own types, on every node, have none).
	Node string `json:"node,omitzero"`
}

func (e *Engine) summarizeTriggerType(tt *registry.TriggerType) triggerTypeSummary {
	s := triggerTypeSummary{ID: tt.ID, WorkerName: e.workerName(ownerOf(tt.Provider), tt.ID), Description: tt.Description}
	if ownerOf(tt.Provider) != "" {
		s.Node = e.nodeName()
	}
	return s
}

type triggersListInput struct {
	Search          string `json:"search"`
	Prefix          string `json:"prefix"`
	Worker          string `json:"worker"`
	IncludeInternal bool   `json:"include_internal"`
}

func (e *Engine) triggersList(_ context.Context, _ *invocation.Request, in triggersListInput) (any, *wire.ErrorBody) {
	search := strings.ToLower(in.Search)
	out := []triggerTypeSummary{}
	add := func(s triggerTypeSummary) {
		switch {
		case !in.IncludeInternal && strings.HasPrefix(s.ID, "engine::"),
			in.Prefix != "" && !strings.HasPrefix(s.ID, in.Prefix),
			in.Worker != "" && s.WorkerName != in.Worker,
			search != "" && !strings.Contains(strings.ToLower(s.ID), search) && !strings.Contains(strings.ToLower(s.Description), search):
			return
		}
		out = append(out, s)
	}
	for _, tt := range e.reg.TriggerTypes() {
		add(e.summarizeTriggerType(tt))
	}
	for _, s := range e.remoteTriggerTypes() {
		add(s)
	}
	return map[string]any{"triggers": out}, nil
}

type idInput struct {
	ID string `json:"id"`
}

type triggerTypeDetail struct {
	ID                  string         `json:"id"`
	WorkerName          string         `json:"worker_name"`
	Description         string         `json:"description"`
	ConfigurationSchema jsontext.Value `json:"configuration_schema,omitzero"`
	RequestSchema       jsontext.Value `json:"request_schema,omitzero"`
	InstanceCount       int            `json:"instance_count"`
}

func (e *Engine) triggerTypeDetail(tt *registry.TriggerType) triggerTypeDetail {
	return triggerTypeDetail{
		ID: tt.ID, WorkerName: e.workerName(ownerOf(tt.Provider), tt.ID), Description: tt.Description,
		ConfigurationSchema: tt.TriggerRequestFormat, RequestSchema: tt.CallRequestFormat,
		InstanceCount: len(e.reg.Triggers(tt.ID)),
	}
}

func (e *Engine) triggersInfo(_ context.Context, _ *invocation.Request, in idInput) (any, *wire.ErrorBody) {
	tt, ok := e.reg.TriggerType(in.ID)
	if !ok {
		return nil, &wire.ErrorBody{Code: wire.CodeNotFound, Message: "Trigger type '" + in.ID + "' is not registered."}
	}
	return e.triggerTypeDetail(tt), nil
}

// --- registered triggers ---

type registeredTrigger struct {
	ID            string         `json:"id"`
	TriggerType   string         `json:"trigger_type"`
	FunctionID    string         `json:"function_id"`
	WorkerName    string         `json:"worker_name"`
	Config        jsontext.Value `json:"config"`
	ConfigSummary string         `json:"config_summary"`
	// Active: handed to its type's provider (an HTTP route serves from
	// then on); false while the binding is parked for want of one.
	Active bool `json:"active"`
	// Node is, in cluster mode, the node where the binding was registered
	// (other nodes' http triggers are listed too).
	Node string `json:"node,omitzero"`
}

func (e *Engine) summarizeRegisteredTrigger(t registry.Trigger) registeredTrigger {
	cfg := wire.DataOrNull(t.Config)
	owner := t.Owner
	return registeredTrigger{ID: t.ID, TriggerType: t.Type, FunctionID: t.FunctionID,
		WorkerName: e.workerName(owner, t.FunctionID), Config: cfg, ConfigSummary: configSummary(cfg), Active: t.Active, Node: e.nodeName()}
}

// configSummary is a trigger config on one line of at most 80 runes.
func configSummary(cfg jsontext.Value) string {
	compact := cfg.Clone()
	_ = compact.Compact()
	summary := []rune(string(compact))
	s := string(summary)
	if len(summary) > 80 {
		s = string(summary[:80]) + "…"
	}
	return s
}

type registeredTriggersListInput struct {
	Search          string `json:"search"`
	TriggerType     string `json:"trigger_type"`
	FunctionID      string `json:"function_id"`
	Worker          string `json:"worker"`
	IncludeInternal bool   `json:"include_internal"`
}

func (e *Engine) registeredTriggersList(_ context.Context, _ *invocation.Request, in registeredTriggersListInput) (any, *wire.ErrorBody) {
	search := strings.ToLower(in.Search)
	out := []registeredTrigger{}
	for _, t := range e.reg.Triggers(in.TriggerType) {
		if !in.IncludeInternal && strings.HasPrefix(t.FunctionID, "engine::") {
			continue
		}
		if in.FunctionID != "" && t.FunctionID != in.FunctionID {
			continue
		}
		r := e.summarizeRegisteredTrigger(t)
		if in.Worker != "" && r.WorkerName != in.Worker {
			continue
		}
		if search != "" && !strings.Contains(strings.ToLower(t.ID+"\x00"+t.Type+"\x00"+t.FunctionID), search) {
			continue
		}
		out = append(out, r)
	}
	{
		for _, r := range e.remoteRoutes() {
			switch {
			case in.TriggerType != "" && r.TriggerType != in.TriggerType,
				!in.IncludeInternal && strings.HasPrefix(r.FunctionID, "engine::"),
				in.FunctionID != "" && r.FunctionID != in.FunctionID,
				in.Worker != "" && r.WorkerName != in.Worker,
				search != "" && !strings.Contains(strings.ToLower(r.ID+"\x00"+r.TriggerType+"\x00"+r.FunctionID), search):
				continue
			}
			out = append(out, r)
		}
	}
	return map[string]any{"registered_triggers": out}, nil
}

func (e *Engine) registeredTriggersInfo(_ context.Context, _ *invocation.Request, in idInput) (any, *wire.ErrorBody) {
	t, ok := e.reg.TriggerSnapshot(in.ID)
	if !ok {
		return nil, &wire.ErrorBody{Code: wire.CodeNotFound, Message: "Trigger '" + in.ID + "' is not registered."}
	}
	r := e.summarizeRegisteredTrigger(t)
	out := struct {
		ID          string             `json:"id"`
		TriggerType string             `json:"trigger_type"`
		FunctionID  string             `json:"function_id"`
		WorkerName  string             `json:"worker_name"`
		Config      jsontext.Value     `json:"config"`
		Metadata    jsontext.Value     `json:"metadata,omitzero"`
		Trigger     *triggerTypeDetail `json:"trigger"`
		Function    *functionDetail    `json:"function"`
	}{ID: r.ID, TriggerType: r.TriggerType, FunctionID: r.FunctionID, WorkerName: r.WorkerName, Config: r.Config, Metadata: t.Metadata}
	if tt, ok := e.reg.TriggerType(t.Type); ok {
		d := e.triggerTypeDetail(tt)
		out.Trigger = &d
	}
	if f, ok := e.reg.Function(t.FunctionID); ok {
		d := e.functionDetail(f)
		out.Function = &d
	}
	return out, nil
}
