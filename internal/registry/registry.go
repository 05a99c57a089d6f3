// Package registry holds what workers have registered with one engine:
// functions, trigger types, trigger bindings and the workers themselves. It
// does no I/O. Every rule about ownership lives here: the last registration
// of a function id wins, and a disconnecting worker only takes with it what
// it still owns, so a worker that reconnects (and re-registers before its
// old socket is known dead) never loses anything. The engine:: namespace
// and every function or trigger type the engine provides belong to the
// engine; a trigger binding may be replaced or removed only by the worker
// that registered it; ids are bounded in length.
package registry

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// ReservedPrefix starts every id that only the engine may register.
const ReservedPrefix = "engine::"

// DefaultMaxIDLength bounds function, trigger and trigger type ids, in
// bytes, unless SetMaxIDLength says otherwise. Real ids are names and UUIDs;
// a huge id only costs memory in every list that shows it.
const DefaultMaxIDLength = 256

// Refusals. The errors returned wrap one of these and say which id.
var (
	// ErrReserved: a worker tried to register an id the engine owns.
	ErrReserved = errors.New("reserved for the engine")
	// ErrNotOwner: a worker tried to replace or remove another worker's
	// trigger binding.
	ErrNotOwner = errors.New("registered by another worker")
	// ErrIDTooLong: an id is longer than the registry's limit.
	ErrIDTooLong = errors.New("id too long")
)

// IsEngine reports whether o is the engine itself (not nil, id "").
func IsEngine(o Owner) bool { return o != nil && o.OwnerID() == "" }

// Reserved reports whether id is in the engine's namespace.
func Reserved(id string) bool { return strings.HasPrefix(id, ReservedPrefix) }

// ShortID returns id for a log line or error message, cut to 64 bytes.
func ShortID(id string) string {
	if len(id) <= 64 {
		return id
	}
	return fmt.Sprintf("%s… (%d bytes)", strings.ToValidUTF8(id[:64], ""), len(id))
}

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
	// CreatedBy is, for a durable binding, the worker that called
	// engine::register_trigger ("" if no worker did). Only the binding's
	// holder (Owner, else CreatedBy) may replace or remove it.
	CreatedBy string
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

// Holder is the worker allowed to replace or remove the binding: the
// connection that registered it, or the worker that created it through
// engine::register_trigger ("" for neither).
func (t *Trigger) Holder() string {
	if t.Owner != "" {
		return t.Owner
	}
	return t.CreatedBy
}

// Registry is safe for concurrent use.
type Registry struct {
	maxID     int // read-only after SetMaxIDLength
	mu        sync.RWMutex
	functions map[string]*Function
	types     map[string]*TriggerType
	triggers  map[string]*Trigger
	// claims are bindings refused because another connection holds the
	// id, kept in case the holder is a dead socket of the same worker
	// (one that reconnected without reattach): see RemoveWorker.
	claims  map[string]*Trigger
	workers map[string]*Worker
	fnGen   uint64 // bumped on every change to the function set
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{
		functions: make(map[string]*Function),
		types:     make(map[string]*TriggerType),
		triggers:  make(map[string]*Trigger),
		claims:    make(map[string]*Trigger),
		workers:   make(map[string]*Worker),
		maxID:     DefaultMaxIDLength,
	}
}

// SetMaxIDLength sets the id length limit (bytes); call it before use.
func (r *Registry) SetMaxIDLength(n int) { r.maxID = n }

// checkID refuses an id over the length limit.
func (r *Registry) checkID(kind, id string) error {
	if len(id) > r.maxID {
		return fmt.Errorf("%s %s is %d bytes, over the engine's max_id_length of %d: %w", kind, quote(ShortID(id)), len(id), r.maxID, ErrIDTooLong)
	}
	return nil
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

// --- functions ---

// RegisterFunction adds or replaces f (last registration wins) and returns
// the previous owner's id if another owner held the id. A worker may not
// register an id in the engine:: namespace or one the engine provides
// (ErrReserved), nor an id over the length limit (ErrIDTooLong).
func (r *Registry) RegisterFunction(f *Function) (replacedOwner string, replaced bool, err error) {
	if err := r.checkID("function id", f.ID); err != nil {
		return "", false, err
	}
	worker := !IsEngine(f.Owner)
	if worker && Reserved(f.ID) {
		return "", false, fmt.Errorf("function id %s is in the engine's namespace %q: %w", quote(f.ID), ReservedPrefix, ErrReserved)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.functions[f.ID]; ok && old.Owner != nil && old.Owner.OwnerID() != ownerID(f.Owner) {
		if worker && IsEngine(old.Owner) {
			return "", false, fmt.Errorf("function id %s is a built-in function of the engine: %w", quote(f.ID), ErrReserved)
		}
		replacedOwner, replaced = old.Owner.OwnerID(), true
	}
	r.functions[f.ID] = f
	r.fnGen++
	return replacedOwner, replaced, nil
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
// that the new provider must now serve. A worker may not provide a type in
// the engine:: namespace or one the engine provides (ErrReserved), nor one
// whose id is over the length limit (ErrIDTooLong).
func (r *Registry) RegisterTriggerType(tt *TriggerType) ([]*Trigger, error) {
	if err := r.checkID("trigger type id", tt.ID); err != nil {
		return nil, err
	}
	worker := !IsEngine(tt.Provider)
	if worker && Reserved(tt.ID) {
		return nil, fmt.Errorf("trigger type %s is in the engine's namespace %q: %w", quote(tt.ID), ReservedPrefix, ErrReserved)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.types[tt.ID]; ok && worker && IsEngine(cur.Provider) {
		return nil, fmt.Errorf("trigger type %s is provided by the engine: %w", quote(tt.ID), ErrReserved)
	}
	r.types[tt.ID] = tt
	var bindings []*Trigger
	for _, t := range r.triggers {
		if t.Type == tt.ID {
			bindings = append(bindings, t)
		}
	}
	sortTriggers(bindings)
	return bindings, nil
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
// binding it replaced, if any. Only the holder of an existing binding (the
// worker that registered it) may replace it (ErrNotOwner); ids over the
// length limit are refused (ErrIDTooLong).
func (r *Registry) PutTrigger(t *Trigger) (provider *TriggerType, replaced *Trigger, err error) {
	for _, c := range [...]struct{ kind, id string }{{"trigger id", t.ID}, {"trigger type id", t.Type}, {"function id", t.FunctionID}} {
		if err := r.checkID(c.kind, c.id); err != nil {
			return nil, nil, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	replaced = r.triggers[t.ID]
	if replaced != nil && replaced.Holder() != t.Holder() {
		if t.Owner != "" && replaced.Owner != "" {
			r.claims[t.ID] = t
		}
		return nil, nil, fmt.Errorf("trigger %s is %w; only that worker may replace it", quote(t.ID), ErrNotOwner)
	}
	if c, ok := r.claims[t.ID]; ok && c.Owner == t.Owner {
		delete(r.claims, t.ID)
	}
	r.triggers[t.ID] = t
	provider = r.types[t.Type]
	return provider, replaced, nil
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

// RemoveTrigger removes binding id. When by is non-nil the binding is
// removed only if that worker holds it (registered it, or created it
// through engine::register_trigger); otherwise the error wraps ErrNotOwner.
// It returns the removed binding and its provider at the time; an unknown
// id returns nils and no error.
func (r *Registry) RemoveTrigger(id string, by *string) (*Trigger, *TriggerType, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.triggers[id]
	if !ok {
		return nil, nil, nil
	}
	if by != nil && t.Holder() != *by {
		return nil, nil, fmt.Errorf("trigger %s is %w; only that worker may remove it", quote(ShortID(id)), ErrNotOwner)
	}
	delete(r.triggers, id)
	delete(r.claims, id)
	return t, r.types[t.Type], nil
}

// DropTrigger removes binding t if it is still the binding under its id
// (a provider refused it and it must not linger in lists).
func (r *Registry) DropTrigger(t *Trigger) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.triggers[t.ID]; ok && cur == t {
		delete(r.triggers, t.ID)
		delete(r.claims, t.ID)
		return true
	}
	return false
}

// TransferCreatedBy hands the durable bindings created by worker from to
// worker to (a reconnected worker that proved it is the same one).
func (r *Registry) TransferCreatedBy(from, to string) int {
	if from == "" {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, t := range r.triggers {
		if t.Owner == "" && t.CreatedBy == from {
			t.CreatedBy = to
			n++
		}
	}
	return n
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
	for tid, c := range r.claims {
		if c.Owner == id {
			delete(r.claims, tid)
		}
	}
	for tid, t := range r.triggers {
		if t.Owner != id {
			continue
		}
		// A live connection that registered the very same binding takes
		// it over: a worker that reconnected before its old socket was
		// known dead keeps its trigger, and the provider sees no change.
		if c, ok := r.claims[tid]; ok && r.workers[c.Owner] != nil && sameBinding(c, t) {
			delete(r.claims, tid)
			c.Active = t.Active
			r.triggers[tid] = c
			continue
		}
		delete(r.claims, tid)
		delete(r.triggers, tid)
		rel.Triggers = append(rel.Triggers, ReleasedTrigger{Trigger: t, Provider: r.types[t.Type]})
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

// sameBinding reports whether a and b bind the same function to the same
// type with the same config and metadata.
func sameBinding(a, b *Trigger) bool {
	return a.Type == b.Type && a.FunctionID == b.FunctionID &&
		bytes.Equal(a.Config, b.Config) && bytes.Equal(a.Metadata, b.Metadata)
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
