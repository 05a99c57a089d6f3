// Package registry holds what workers have registered with one engine:
// functions, trigger types, trigger bindings and the workers themselves. It
// does no I/O. Every rule about ownership lives here: the last registration
// of a function id wins, and a disconnecting worker only takes with it what
// it still owns, so a worker that reconnects (and re-registers before its
// old socket is known dead) never loses anything.
package registry

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// Owner is whatever executes a function or provides a trigger type: a
// worker connection, or the engine itself (ID "").
type Owner interface {
	// OwnerID is the worker id, or "" for the engine.
	OwnerID() string
}

// Function is one registered function.
type Function struct {
	ID             string
	Owner          Owner
	Description    string
	RequestFormat  jsontext.Value
	ResponseFormat jsontext.Value
	Metadata       jsontext.Value
	// Invocation is set for HTTP-invoked functions (not executed by a worker).
	Invocation jsontext.Value
}

// Internal reports whether metadata.internal is true (hidden from lists).
func (f *Function) Internal() bool {
	return metadataFlag(f.Metadata, "internal")
}

// TriggerType is a kind of trigger, provided by the engine or a worker.
type TriggerType struct {
	ID                   string
	Description          string
	Provider             Owner
	TriggerRequestFormat jsontext.Value
	CallRequestFormat    jsontext.Value
}

// Trigger binds a function to a trigger type with a config.
type Trigger struct {
	ID         string
	Type       string
	FunctionID string
	Config     jsontext.Value
	Metadata   jsontext.Value
	// Owner registered the trigger; "" for durable bindings made through
	// engine::register_trigger, which outlive any connection.
	Owner string
	// Active is false while the binding is parked (no provider yet, or the
	// provider rejected it).
	Active bool
}

// Worker is what the engine knows about one connected worker.
type Worker struct {
	ID          string
	Name        string
	Description string
	Runtime     string
	Version     string
	OS          string
	PID         int
	HasPID      bool
	Isolation   jsontext.Value
	Telemetry   jsontext.Value
	IPAddress   string
	ConnectedAt time.Time
}

// Registry is safe for concurrent use.
type Registry struct {
	mu        sync.RWMutex
	functions map[string]*Function
	types     map[string]*TriggerType
	triggers  map[string]*Trigger
	workers   map[string]*Worker
	fnGen     uint64 // bumped on every change to the function set
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{
		functions: make(map[string]*Function),
		types:     make(map[string]*TriggerType),
		triggers:  make(map[string]*Trigger),
		workers:   make(map[string]*Worker),
	}
}

// --- functions ---

// RegisterFunction adds or replaces f (last registration wins) and returns
// the previous owner's id if another owner held the id.
func (r *Registry) RegisterFunction(f *Function) (replacedOwner string, replaced bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.functions[f.ID]; ok && old.Owner != nil && old.Owner.OwnerID() != ownerID(f.Owner) {
		replacedOwner, replaced = old.Owner.OwnerID(), true
	}
	r.functions[f.ID] = f
	r.fnGen++
	return replacedOwner, replaced
}

// UnregisterFunction removes id if owner still owns it.
func (r *Registry) UnregisterFunction(id string, owner Owner) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f, ok := r.functions[id]; ok && f.Owner == owner {
		delete(r.functions, id)
		r.fnGen++
		return true
	}
	return false
}

// Function looks up a function by id.
func (r *Registry) Function(id string) (*Function, bool) {
	r.mu.RLock()
	f, ok := r.functions[id]
	r.mu.RUnlock()
	return f, ok
}

// Functions returns all functions sorted by id.
func (r *Registry) Functions() []*Function {
	r.mu.RLock()
	out := make([]*Function, 0, len(r.functions))
	for _, f := range r.functions {
		out = append(out, f)
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// FunctionGeneration changes whenever the set of functions changes.
func (r *Registry) FunctionGeneration() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.fnGen
}

// --- trigger types ---

// RegisterTriggerType makes tt's provider the provider of tt.ID, replacing
// any previous one, and returns the bindings of that type (parked or not)
// that the new provider must now serve.
func (r *Registry) RegisterTriggerType(tt *TriggerType) []*Trigger {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.types[tt.ID] = tt
	var bindings []*Trigger
	for _, t := range r.triggers {
		if t.Type == tt.ID {
			bindings = append(bindings, t)
		}
	}
	sortTriggers(bindings)
	return bindings
}

// UnregisterTriggerType removes the type if provider still provides it and
// parks its bindings.
func (r *Registry) UnregisterTriggerType(id string, provider Owner) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	tt, ok := r.types[id]
	if !ok || tt.Provider != provider {
		return false
	}
	delete(r.types, id)
	for _, t := range r.triggers {
		if t.Type == id {
			t.Active = false
		}
	}
	return true
}

// TriggerType looks up a trigger type.
func (r *Registry) TriggerType(id string) (*TriggerType, bool) {
	r.mu.RLock()
	tt, ok := r.types[id]
	r.mu.RUnlock()
	return tt, ok
}

// TriggerTypes returns all trigger types sorted by id.
func (r *Registry) TriggerTypes() []*TriggerType {
	r.mu.RLock()
	out := make([]*TriggerType, 0, len(r.types))
	for _, tt := range r.types {
		out = append(out, tt)
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// --- triggers ---

// PutTrigger adds or replaces a binding (same id replaces: reconnect replay
// is idempotent) and returns its provider, if one exists now, and the
// binding it replaced, if any.
func (r *Registry) PutTrigger(t *Trigger) (provider *TriggerType, replaced *Trigger) {
	r.mu.Lock()
	defer r.mu.Unlock()
	replaced = r.triggers[t.ID]
	r.triggers[t.ID] = t
	provider = r.types[t.Type]
	return provider, replaced
}

// SetTriggerActive marks a binding active or parked, if it is still the
// same binding (not replaced meanwhile).
func (r *Registry) SetTriggerActive(t *Trigger, active bool) {
	r.mu.Lock()
	if cur, ok := r.triggers[t.ID]; ok && cur == t {
		t.Active = active
	}
	r.mu.Unlock()
}

// RemoveTrigger removes binding id. When owner is non-nil the binding is
// removed only if that worker registered it. It returns the removed binding
// and its provider at the time.
func (r *Registry) RemoveTrigger(id string, owner *string) (*Trigger, *TriggerType) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.triggers[id]
	if !ok || (owner != nil && t.Owner != *owner) {
		return nil, nil
	}
	delete(r.triggers, id)
	return t, r.types[t.Type]
}

// Trigger looks up a binding.
func (r *Registry) Trigger(id string) (*Trigger, bool) {
	r.mu.RLock()
	t, ok := r.triggers[id]
	r.mu.RUnlock()
	return t, ok
}

// TriggerSnapshot returns a copy of the binding id, read under the lock
// (Trigger's pointer must not be dereferenced for fields that change, such
// as Active, without it).
func (r *Registry) TriggerSnapshot(id string) (Trigger, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t, ok := r.triggers[id]
	if !ok {
		return Trigger{}, false
	}
	return *t, true
}

// Triggers returns the bindings, optionally only those of one type, sorted
// by id. A copy of each binding is returned.
func (r *Registry) Triggers(triggerType string) []Trigger {
	r.mu.RLock()
	out := make([]Trigger, 0, len(r.triggers))
	for _, t := range r.triggers {
		if triggerType == "" || t.Type == triggerType {
			out = append(out, *t)
		}
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// --- workers ---

// AddWorker records a connected worker.
func (r *Registry) AddWorker(w *Worker) {
	r.mu.Lock()
	r.workers[w.ID] = w
	r.mu.Unlock()
}

// UpdateWorker applies fn to the worker's record under the lock.
func (r *Registry) UpdateWorker(id string, fn func(w *Worker)) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.workers[id]
	if ok {
		fn(w)
	}
	return ok
}

// Worker returns a copy of a worker's record.
func (r *Registry) Worker(id string) (Worker, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	w, ok := r.workers[id]
	if !ok {
		return Worker{}, false
	}
	return *w, true
}

// Workers returns copies of all worker records.
func (r *Registry) Workers() []Worker {
	r.mu.RLock()
	out := make([]Worker, 0, len(r.workers))
	for _, w := range r.workers {
		out = append(out, *w)
	}
	r.mu.RUnlock()
	return out
}

// Released is what a disconnecting worker took with it.
type Released struct {
	Functions []string
	// Triggers it had registered, with their provider at the time.
	Triggers []ReleasedTrigger
	// ParkedTypes are the types it provided; their bindings are now parked.
	ParkedTypes []string
}

// ReleasedTrigger is one binding removed with its worker.
type ReleasedTrigger struct {
	Trigger  *Trigger
	Provider *TriggerType
}

// RemoveWorker forgets a worker and everything it still owns.
func (r *Registry) RemoveWorker(owner Owner) Released {
	id := owner.OwnerID()
	var rel Released
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.workers, id)
	for fid, f := range r.functions {
		if f.Owner == owner {
			delete(r.functions, fid)
			rel.Functions = append(rel.Functions, fid)
		}
	}
	if len(rel.Functions) > 0 {
		r.fnGen++
	}
	for tid, t := range r.triggers {
		if t.Owner == id {
			delete(r.triggers, tid)
			rel.Triggers = append(rel.Triggers, ReleasedTrigger{Trigger: t, Provider: r.types[t.Type]})
		}
	}
	for tyid, tt := range r.types {
		if tt.Provider == owner {
			delete(r.types, tyid)
			rel.ParkedTypes = append(rel.ParkedTypes, tyid)
			for _, t := range r.triggers {
				if t.Type == tyid {
					t.Active = false
				}
			}
		}
	}
	sort.Strings(rel.Functions)
	return rel
}

// WorkerFunctionCount counts the functions a worker owns.
func (r *Registry) WorkerFunctionCount(id string) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for _, f := range r.functions {
		if ownerID(f.Owner) == id {
			n++
		}
	}
	return n
}

func ownerID(o Owner) string {
	if o == nil {
		return ""
	}
	return o.OwnerID()
}

func sortTriggers(ts []*Trigger) {
	sort.Slice(ts, func(i, j int) bool { return ts[i].ID < ts[j].ID })
}

// metadataFlag reports whether the JSON object m has key set to true. It
// avoids a full decode for the common cases.
func metadataFlag(m jsontext.Value, key string) bool {
	if len(m) == 0 || !strings.Contains(string(m), `"`+key+`"`) {
		return false
	}
	dec := jsontext.NewDecoder(strings.NewReader(string(m)))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return false
	}
	for dec.PeekKind() == '"' {
		name, err := dec.ReadToken()
		if err != nil {
			return false
		}
		if name.String() == key {
			v, err := dec.ReadToken()
			return err == nil && v.Kind() == 't'
		}
		if err := dec.SkipValue(); err != nil {
			return false
		}
	}
	return false
}
