// Package registry holds what workers have registered with one engine:
// functions, trigger types, trigger bindings and the workers themselves. It
// does no I/O. Every rule about ownership lives here. Functions and trigger
// types are keyed by (namespace, id); older SDKs send no namespace and live
// in DefaultNamespace. A function id has one live owner per namespace: a
// second live worker registering it is refused (ErrConflict) and kept as a
// standby that takes over when the owner leaves, so a worker that
// reconnects before its old socket is known dead still ends up serving its
// functions. The engine:: prefix and every function or trigger type the
// engine provides belong to the engine; a trigger binding may be replaced
// or removed only by the worker that registered it; ids are bounded in
// length.
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
	// ErrConflict: another live worker holds the function id or worker
	// name in that namespace (see ConflictError).
	ErrConflict = errors.New("held by another live worker")
)

// DefaultNamespace holds everything registered without a namespace.
const DefaultNamespace = "default"

// ConflictError is a registration refused because the live worker Owner
// holds ID in Namespace.
type ConflictError struct {
	Namespace, ID, Owner string
}

func (c *ConflictError) Error() string {
	return fmt.Sprintf("%s is registered in namespace %q by the live worker %s", quote(ShortID(c.ID)), c.Namespace, c.Owner)
}

func (c *ConflictError) Unwrap() error { return ErrConflict }

// Key names a function or trigger type: its namespace and id.
type Key struct{ NS, ID string }

func nsOr(ns string) string {
	if ns == "" {
		return DefaultNamespace
	}
	return ns
}

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
	ID string
	// Namespace is where it is registered ("" is DefaultNamespace).
	Namespace      string
	Owner          Owner
	Description    string
	RequestFormat  jsontext.Value
	ResponseFormat jsontext.Value
	Metadata       jsontext.Value
	// Invocation is set for HTTP-invoked functions (not executed by a worker).
	Invocation jsontext.Value
	// External, when set, executes the function in place of its owner
	// (invocation.External: the HTTP call of an HTTP-invoked function).
	External any
}

// Internal reports whether metadata.internal is true (hidden from lists).
func (f *Function) Internal() bool {
	return metadataFlag(f.Metadata, "internal")
}

// TriggerType is a kind of trigger, provided by the engine or a worker.
type TriggerType struct {
	ID string
	// Namespace is where the provider serves ("" is DefaultNamespace).
	Namespace            string
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
	// Namespace is where FunctionID resolves ("" is DefaultNamespace).
	Namespace string
	// TriggerNamespace, when set, is the only namespace the provider of
	// Type is looked up in. Unset: ConnNamespace first, then the default.
	TriggerNamespace string
	// ConnNamespace is the namespace of the connection that registered
	// the binding ("" for the engine and durable bindings: default).
	ConnNamespace string
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
	// Namespace is the one the worker declared on engine::workers::register
	// ("" until then, and for workers that declare none: default).
	Namespace string
	// NamespaceDeclared is true when the worker named its namespace; only
	// such workers' names must be unique within it (see ClaimName).
	NamespaceDeclared bool
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
	functions map[Key]*Function
	// nsByID indexes the namespaces of each function id (a miss names
	// them without scanning every function).
	nsByID map[string][]string
	// standby holds, per key, the refused registrations of other live
	// workers, in arrival order: the first still live takes over when the
	// owner leaves.
	standby  map[Key][]*Function
	types    map[Key]*TriggerType
	triggers map[string]*Trigger
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
		functions: make(map[Key]*Function),
		nsByID:    make(map[string][]string),
		standby:   make(map[Key][]*Function),
		types:     make(map[Key]*TriggerType),
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

// RegisterFunction adds f in its namespace. A worker may not register an id
// with the engine:: prefix in any namespace or one the engine provides
// (ErrReserved), nor an id over the length limit (ErrIDTooLong). An id held
// by another live worker is refused with a *ConflictError and f is kept as
// a standby (see RemoveWorker); a holder that is no longer a live worker
// (its connection is gone) is replaced. The same owner re-registering
// replaces its own registration.
func (r *Registry) RegisterFunction(f *Function) error {
	if err := r.checkID("function id", f.ID); err != nil {
		return err
	}
	f.Namespace = nsOr(f.Namespace)
	worker := !IsEngine(f.Owner)
	if worker && Reserved(f.ID) {
		return fmt.Errorf("function id %s is in the engine's namespace %q: %w", quote(f.ID), ReservedPrefix, ErrReserved)
	}
	k := Key{f.Namespace, f.ID}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.functions[k]; ok && old.Owner != nil && old.Owner.OwnerID() != ownerID(f.Owner) {
		if worker && IsEngine(old.Owner) {
			return fmt.Errorf("function id %s is a built-in function of the engine: %w", quote(f.ID), ErrReserved)
		}
		if _, live := r.workers[old.Owner.OwnerID()]; live && worker {
			r.addStandby(k, f)
			return &ConflictError{Namespace: f.Namespace, ID: f.ID, Owner: old.Owner.OwnerID()}
		}
	}
	r.dropStandby(k, ownerID(f.Owner))
	r.setFn(k, f)
	r.fnGen++
	return nil
}

// setFn stores f under k and indexes its namespace. r.mu held.
func (r *Registry) setFn(k Key, f *Function) {
	if _, ok := r.functions[k]; !ok {
		r.nsByID[k.ID] = append(r.nsByID[k.ID], k.NS)
	}
	r.functions[k] = f
}

// delFn removes k and its index entry. r.mu held.
func (r *Registry) delFn(k Key) {
	delete(r.functions, k)
	list := r.nsByID[k.ID]
	for i, ns := range list {
		if ns == k.NS {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(r.nsByID, k.ID)
	} else {
		r.nsByID[k.ID] = list
	}
}

func (r *Registry) addStandby(k Key, f *Function) {
	list := r.standby[k]
	for i, s := range list {
		if s.Owner == f.Owner {
			list[i] = f
			return
		}
	}
	r.standby[k] = append(list, f)
}

func (r *Registry) dropStandby(k Key, owner string) {
	list := r.standby[k]
	for i, s := range list {
		if ownerID(s.Owner) == owner {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(r.standby, k)
	} else {
		r.standby[k] = list
	}
}

// promote hands k to its first standby whose worker is still live; it
// reports the new owner's function, if any. Called with r.mu held, after
// the holder was removed.
func (r *Registry) promote(k Key) *Function {
	list := r.standby[k]
	for i, f := range list {
		if _, live := r.workers[ownerID(f.Owner)]; live {
			r.setFn(k, f)
			rest := list[i+1:]
			if len(rest) == 0 {
				delete(r.standby, k)
			} else {
				r.standby[k] = append([]*Function(nil), rest...)
			}
			return f
		}
	}
	delete(r.standby, k)
	return nil
}

// UnregisterFunction removes id in namespace ns if owner still owns it (a
// standby takes over), or owner's standby registration of it. It returns
// the standby that took over, if any.
func (r *Registry) UnregisterFunction(ns, id string, owner Owner) (removed bool, promoted *Function) {
	k := Key{nsOr(ns), id}
	r.mu.Lock()
	defer r.mu.Unlock()
	if f, ok := r.functions[k]; ok && f.Owner == owner {
		r.delFn(k)
		r.fnGen++
		return true, r.promote(k)
	}
	if owner != nil {
		before := len(r.standby[k])
		r.dropStandby(k, owner.OwnerID())
		return len(r.standby[k]) < before, nil
	}
	return false, nil
}

// Function looks up a function by id in the default namespace.
func (r *Registry) Function(id string) (*Function, bool) {
	return r.FunctionIn(DefaultNamespace, id)
}

// FunctionIn looks up a function by namespace ("" is the default) and id.
func (r *Registry) FunctionIn(ns, id string) (*Function, bool) {
	r.mu.RLock()
	f, ok := r.functions[Key{nsOr(ns), id}]
	r.mu.RUnlock()
	return f, ok
}

// NamespacesOf returns the namespaces in which id is registered, sorted.
func (r *Registry) NamespacesOf(id string) []string {
	r.mu.RLock()
	out := append([]string(nil), r.nsByID[id]...)
	r.mu.RUnlock()
	sort.Strings(out)
	return out
}

// Functions returns all functions of every namespace, sorted by id, then
// namespace.
func (r *Registry) Functions() []*Function {
	r.mu.RLock()
	out := make([]*Function, 0, len(r.functions))
	for _, f := range r.functions {
		out = append(out, f)
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].ID != out[j].ID {
			return out[i].ID < out[j].ID
		}
		return out[i].Namespace < out[j].Namespace
	})
	return out
}

// FunctionGeneration changes whenever the set of functions changes.
func (r *Registry) FunctionGeneration() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.fnGen
}

// --- trigger types ---

// Moved is a binding that a newly registered provider must now serve; From
// is the provider it resolved to before (nil if none).
type Moved struct {
	Trigger *Trigger
	From    *TriggerType
}

// providerFor resolves the provider of t: its TriggerNamespace strictly if
// set, else its connection's namespace, then the default one. r.mu held.
func (r *Registry) providerFor(t *Trigger) *TriggerType {
	if t.TriggerNamespace != "" {
		return r.types[Key{t.TriggerNamespace, t.Type}]
	}
	if ns := nsOr(t.ConnNamespace); ns != DefaultNamespace {
		if tt, ok := r.types[Key{ns, t.Type}]; ok {
			return tt
		}
	}
	return r.types[Key{DefaultNamespace, t.Type}]
}

// RegisterTriggerType makes tt's provider the provider of tt.ID in its
// namespace, replacing any previous one there, and returns the bindings
// (parked or not) that now resolve to it, with the provider each resolved
// to before. A worker may not provide a type with the engine:: prefix or one
// the engine provides (ErrReserved), nor one whose id is over the length
// limit (ErrIDTooLong).
func (r *Registry) RegisterTriggerType(tt *TriggerType) ([]Moved, error) {
	if err := r.checkID("trigger type id", tt.ID); err != nil {
		return nil, err
	}
	tt.Namespace = nsOr(tt.Namespace)
	worker := !IsEngine(tt.Provider)
	if worker && Reserved(tt.ID) {
		return nil, fmt.Errorf("trigger type %s is in the engine's namespace %q: %w", quote(tt.ID), ReservedPrefix, ErrReserved)
	}
	k := Key{tt.Namespace, tt.ID}
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.types[k]; ok && worker && IsEngine(cur.Provider) {
		return nil, fmt.Errorf("trigger type %s is provided by the engine: %w", quote(tt.ID), ErrReserved)
	}
	var before []Moved
	for _, t := range r.triggers {
		if t.Type == tt.ID {
			before = append(before, Moved{Trigger: t, From: r.providerFor(t)})
		}
	}
	r.types[k] = tt
	var moved []Moved
	for _, m := range before {
		if r.providerFor(m.Trigger) == tt {
			moved = append(moved, m)
		}
	}
	sort.Slice(moved, func(i, j int) bool { return moved[i].Trigger.ID < moved[j].Trigger.ID })
	return moved, nil
}

// UnregisterTriggerType removes the type in namespace ns if provider still
// provides it and parks the bindings it served.
func (r *Registry) UnregisterTriggerType(ns, id string, provider Owner) bool {
	k := Key{nsOr(ns), id}
	r.mu.Lock()
	defer r.mu.Unlock()
	tt, ok := r.types[k]
	if !ok || tt.Provider != provider {
		return false
	}
	r.parkServedBy(tt)
	delete(r.types, k)
	return true
}

// parkServedBy parks the bindings that resolve to tt. r.mu held.
func (r *Registry) parkServedBy(tt *TriggerType) {
	for _, t := range r.triggers {
		if t.Type == tt.ID && r.providerFor(t) == tt {
			t.Active = false
		}
	}
}

// TriggerType looks up a trigger type in the default namespace.
func (r *Registry) TriggerType(id string) (*TriggerType, bool) {
	return r.TriggerTypeIn(DefaultNamespace, id)
}

// TriggerTypeIn looks up a trigger type by namespace and id.
func (r *Registry) TriggerTypeIn(ns, id string) (*TriggerType, bool) {
	r.mu.RLock()
	tt, ok := r.types[Key{nsOr(ns), id}]
	r.mu.RUnlock()
	return tt, ok
}

// ProviderOf returns the provider binding t currently resolves to.
func (r *Registry) ProviderOf(t *Trigger) (*TriggerType, bool) {
	r.mu.RLock()
	tt := r.providerFor(t)
	r.mu.RUnlock()
	return tt, tt != nil
}

// TriggerTypes returns all trigger types sorted by id, then namespace.
func (r *Registry) TriggerTypes() []*TriggerType {
	r.mu.RLock()
	out := make([]*TriggerType, 0, len(r.types))
	for _, tt := range r.types {
		out = append(out, tt)
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].ID != out[j].ID {
			return out[i].ID < out[j].ID
		}
		return out[i].Namespace < out[j].Namespace
	})
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
	provider = r.providerFor(t)
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
	return t, r.providerFor(t), nil
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
	// Functions it held that are gone (no standby took them over).
	Functions []string
	// Promoted are functions it held that a standby worker took over.
	Promoted []*Function
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

// ClaimName records a worker's declared name and namespace. In a namespace
// the worker declared, its name must not be held by another live worker
// that declared the same namespace (a *ConflictError naming the holder);
// workers that declare none (every SDK before 0.23) never conflict.
func (r *Registry) ClaimName(id, ns string, declared bool, name string) error {
	ns = nsOr(ns)
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.workers[id]
	if !ok {
		return nil
	}
	if declared && name != "" {
		for oid, o := range r.workers {
			if oid != id && o.NamespaceDeclared && o.Namespace == ns && o.Name == name {
				return &ConflictError{Namespace: ns, ID: name, Owner: oid}
			}
		}
	}
	w.Name, w.Namespace, w.NamespaceDeclared = name, ns, declared
	return nil
}

// Withdraw removes everything owner registered (functions, standby
// registrations, trigger types, the bindings it registered) but keeps the
// worker: a connection whose registrations move to the namespace it
// declared late.
func (r *Registry) Withdraw(owner Owner) Released {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.release(owner, false)
}

// RemoveWorker forgets a worker and everything it still owns. A function it
// held passes to the first standby worker still live.
func (r *Registry) RemoveWorker(owner Owner) Released {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.workers, owner.OwnerID())
	return r.release(owner, true)
}

func (r *Registry) release(owner Owner, gone bool) Released {
	id := owner.OwnerID()
	var rel Released
	for k, list := range r.standby {
		for _, f := range list {
			if f.Owner == owner {
				r.dropStandby(k, id)
				break
			}
		}
	}
	for k, f := range r.functions {
		if f.Owner == owner {
			r.delFn(k)
			r.fnGen++
			if p := r.promote(k); p != nil {
				rel.Promoted = append(rel.Promoted, p)
			} else {
				rel.Functions = append(rel.Functions, k.ID)
			}
		}
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
		if c, ok := r.claims[tid]; gone && ok && r.workers[c.Owner] != nil && sameBinding(c, t) {
			delete(r.claims, tid)
			c.Active = t.Active
			r.triggers[tid] = c
			continue
		}
		delete(r.claims, tid)
		delete(r.triggers, tid)
		rel.Triggers = append(rel.Triggers, ReleasedTrigger{Trigger: t, Provider: r.providerFor(t)})
	}
	for k, tt := range r.types {
		if tt.Provider == owner {
			r.parkServedBy(tt)
			delete(r.types, k)
			rel.ParkedTypes = append(rel.ParkedTypes, k.ID)
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
	return a.Type == b.Type && a.FunctionID == b.FunctionID && a.Namespace == b.Namespace &&
		a.TriggerNamespace == b.TriggerNamespace && bytes.Equal(a.Config, b.Config) && bytes.Equal(a.Metadata, b.Metadata)
}

func ownerID(o Owner) string {
	if o == nil {
		return ""
	}
	return o.OwnerID()
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
