package registry

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// owner is a fake worker connection (or, with id "", the engine). Owners are
// compared by identity, as the engine's connections are.
type owner struct{ id string }

func (o *owner) OwnerID() string { return o.id }

func fnIDs(fs []*Function) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, f.ID)
	}
	return out
}

func triggerIDs(ts []Trigger) []string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		out = append(out, t.ID)
	}
	return out
}

func ptrTriggerIDs(ts []Moved) []string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		out = append(out, t.Trigger.ID)
	}
	return out
}

func mustFunction(t *testing.T, r *Registry, id string) *Function {
	t.Helper()
	f, ok := r.Function(id)
	if !ok {
		t.Fatalf("function %q not registered", id)
	}
	return f
}

func TestRegisterFunctionLiveOwnerKeeps(t *testing.T) {
	engine, w1, w2 := &owner{""}, &owner{"w1"}, &owner{"w2"}
	w1again := &owner{"w1"} // another connection object with the same id
	tests := []struct {
		name       string
		first      Owner // nil: no earlier registration
		second     Owner
		live       []Owner // workers connected
		wantOwner  Owner   // owner afterwards
		wantOwner2 string  // ConflictError.Owner, "" for no error
	}{
		{name: "fresh id", first: nil, second: w1, live: []Owner{w1}, wantOwner: w1},
		{name: "same owner re-registers", first: w1, second: w1, live: []Owner{w1}, wantOwner: w1},
		{name: "same owner id, other object", first: w1, second: w1again, live: []Owner{w1}, wantOwner: w1again},
		{name: "another live worker is refused", first: w1, second: w2, live: []Owner{w1, w2}, wantOwner: w1, wantOwner2: "w1"},
		{name: "a gone holder is replaced", first: w1, second: w2, live: []Owner{w2}, wantOwner: w2},
		{name: "engine takes over from worker", first: w1, second: engine, live: []Owner{w1}, wantOwner: engine},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New()
			for _, o := range tc.live {
				r.AddWorker(&Worker{ID: o.OwnerID()})
			}
			if tc.first != nil {
				if err := r.RegisterFunction(&Function{ID: "f", Owner: tc.first, Description: "first"}); err != nil {
					t.Fatalf("first registration: %v", err)
				}
			}
			gen := r.FunctionGeneration()
			err := r.RegisterFunction(&Function{ID: "f", Owner: tc.second, Description: "second"})
			var c *ConflictError
			if tc.wantOwner2 == "" && err != nil || tc.wantOwner2 != "" && (!errors.As(err, &c) || c.Owner != tc.wantOwner2 || !errors.Is(err, ErrConflict)) {
				t.Fatalf("RegisterFunction error = %v, want conflict with %q", err, tc.wantOwner2)
			}
			f := mustFunction(t, r, "f")
			if f.Owner != tc.wantOwner {
				t.Errorf("owner = %v, want %v", f.Owner, tc.wantOwner)
			}
			if g := r.FunctionGeneration(); (g != gen) == (tc.wantOwner2 != "") {
				t.Errorf("FunctionGeneration %d -> %d; want a change only when registered", gen, g)
			}
			if n := len(r.Functions()); n != 1 {
				t.Errorf("len(Functions()) = %d, want 1", n)
			}
		})
	}
}

// TestStandbyTakesOver: a refused registration is a standby; when the live
// owner leaves (or unregisters), the first standby still live takes over.
func TestStandbyTakesOver(t *testing.T) {
	r := New()
	w1, w2, w3 := &owner{"w1"}, &owner{"w2"}, &owner{"w3"}
	for _, o := range []Owner{w1, w2, w3} {
		r.AddWorker(&Worker{ID: o.OwnerID()})
	}
	r.RegisterFunction(&Function{ID: "f", Owner: w1})
	if err := r.RegisterFunction(&Function{ID: "f", Owner: w2}); !errors.Is(err, ErrConflict) {
		t.Fatalf("w2: %v, want ErrConflict", err)
	}
	if err := r.RegisterFunction(&Function{ID: "f", Owner: w3}); !errors.Is(err, ErrConflict) {
		t.Fatalf("w3: %v, want ErrConflict", err)
	}
	rel := r.RemoveWorker(w1)
	if len(rel.Promoted) != 1 || rel.Promoted[0].Owner != w2 {
		t.Fatalf("promoted = %v, want w2's registration", rel.Promoted)
	}
	if f := mustFunction(t, r, "f"); f.Owner != w2 {
		t.Fatalf("owner after w1 left = %v, want w2", f.Owner)
	}
	// w3 leaves while standby: it must not come back later.
	r.RemoveWorker(w3)
	if ok, p := r.UnregisterFunction("", "f", w2); !ok || p != nil {
		t.Fatalf("UnregisterFunction by w2 = %v, %v; want removed, nobody promoted", ok, p)
	}
	if _, ok := r.Function("f"); ok {
		t.Fatal("f still registered after its owner unregistered and no standby is live")
	}
}

// TestFunctionNamespaces: the same id lives once per namespace; lookups are
// strict; engine:: ids are refused to workers in every namespace.
func TestFunctionNamespaces(t *testing.T) {
	r := New()
	w1, w2 := &owner{"w1"}, &owner{"w2"}
	r.AddWorker(&Worker{ID: "w1"})
	r.AddWorker(&Worker{ID: "w2"})
	if err := r.RegisterFunction(&Function{ID: "svc::get", Owner: w1}); err != nil {
		t.Fatal(err)
	}
	if err := r.RegisterFunction(&Function{ID: "svc::get", Namespace: "orders", Owner: w2}); err != nil {
		t.Fatalf("same id in another namespace: %v", err)
	}
	if f, ok := r.FunctionIn("orders", "svc::get"); !ok || f.Owner != w2 || f.Namespace != "orders" {
		t.Fatalf("FunctionIn(orders) = %+v, %v", f, ok)
	}
	if f, ok := r.Function("svc::get"); !ok || f.Owner != w1 || f.Namespace != DefaultNamespace {
		t.Fatalf("Function (default) = %+v, %v", f, ok)
	}
	if _, ok := r.FunctionIn("billing", "svc::get"); ok {
		t.Fatal("a lookup in a third namespace found something")
	}
	if got := r.NamespacesOf("svc::get"); len(got) != 2 || got[0] != "default" || got[1] != "orders" {
		t.Fatalf("NamespacesOf = %v", got)
	}
	if err := r.RegisterFunction(&Function{ID: "engine::mine", Namespace: "orders", Owner: w2}); !errors.Is(err, ErrReserved) {
		t.Fatalf("engine:: id in a namespace: %v, want ErrReserved", err)
	}
	rel := r.RemoveWorker(w2)
	if len(rel.Functions) != 1 {
		t.Fatalf("released %v", rel.Functions)
	}
	if _, ok := r.Function("svc::get"); !ok {
		t.Fatal("w2 leaving removed the default namespace's function")
	}
	if got := r.NamespacesOf("svc::get"); len(got) != 1 || got[0] != "default" {
		t.Fatalf("NamespacesOf after w2 left = %v", got)
	}
	r.UnregisterFunction("", "svc::get", w1)
	if got := r.NamespacesOf("svc::get"); len(got) != 0 {
		t.Fatalf("NamespacesOf after the last one went = %v", got)
	}
}

// TestWithdrawKeepsWorker: a connection's registrations leave, the worker
// stays (a late namespace declaration moves them).
func TestWithdrawKeepsWorker(t *testing.T) {
	r := New()
	w := &owner{"w"}
	r.AddWorker(&Worker{ID: "w"})
	r.RegisterFunction(&Function{ID: "f", Owner: w})
	r.RegisterTriggerType(&TriggerType{ID: "tt", Provider: w})
	r.PutTrigger(&Trigger{ID: "t", Type: "tt", FunctionID: "f", Owner: "w"})
	rel := r.Withdraw(w)
	if len(rel.Functions) != 1 || len(rel.Triggers) != 1 || len(rel.ParkedTypes) != 1 {
		t.Fatalf("Withdraw = %+v", rel)
	}
	if _, ok := r.Worker("w"); !ok {
		t.Fatal("Withdraw removed the worker")
	}
}

// TestClaimName: names are unique per declared namespace among live
// workers; workers declaring none never conflict.
func TestClaimName(t *testing.T) {
	r := New()
	for _, id := range []string{"a", "b", "c", "d"} {
		r.AddWorker(&Worker{ID: id})
	}
	if err := r.ClaimName("a", "orders", true, "state"); err != nil {
		t.Fatal(err)
	}
	var c *ConflictError
	if err := r.ClaimName("b", "orders", true, "state"); !errors.As(err, &c) || c.Owner != "a" || c.Namespace != "orders" {
		t.Fatalf("duplicate name: %v", err)
	}
	if err := r.ClaimName("b", "billing", true, "state"); err != nil {
		t.Fatalf("same name, other namespace: %v", err)
	}
	if err := r.ClaimName("c", "", false, "host:1"); err != nil {
		t.Fatal(err)
	}
	if err := r.ClaimName("d", "", false, "host:1"); err != nil {
		t.Fatalf("undeclared namespace: %v", err)
	}
	r.RemoveWorker(&owner{"a"})
	if err := r.ClaimName("d", "orders", true, "state"); err != nil {
		t.Fatalf("name of a gone worker: %v", err)
	}
}

// TestTriggerTypeNamespaces: providers are keyed by namespace; a binding
// resolves its trigger_namespace strictly, else its connection's namespace
// first, then the default one, and moves when a closer provider appears.
func TestTriggerTypeNamespaces(t *testing.T) {
	r := New()
	pd, po := &owner{"pd"}, &owner{"po"}
	r.RegisterTriggerType(&TriggerType{ID: "hook", Provider: pd})
	t1 := &Trigger{ID: "t1", Type: "hook", FunctionID: "f", Owner: "w", ConnNamespace: "orders"}
	t2 := &Trigger{ID: "t2", Type: "hook", FunctionID: "f", Owner: "w", ConnNamespace: "orders", TriggerNamespace: "default"}
	t3 := &Trigger{ID: "t3", Type: "hook", FunctionID: "f", Owner: "w", TriggerNamespace: "billing"}
	for _, tr := range []*Trigger{t1, t2, t3} {
		r.PutTrigger(tr)
	}
	if tt, _ := r.ProviderOf(t1); tt == nil || tt.Provider != pd {
		t.Fatalf("t1 before: %v", tt)
	}
	if _, ok := r.ProviderOf(t3); ok {
		t.Fatal("t3 (strict billing) resolved without a billing provider")
	}
	moved, err := r.RegisterTriggerType(&TriggerType{ID: "hook", Namespace: "orders", Provider: po})
	if err != nil || len(moved) != 1 || moved[0].Trigger != t1 || moved[0].From == nil || moved[0].From.Provider != pd {
		t.Fatalf("moved = %+v, %v; want t1 from pd", moved, err)
	}
	if tt, _ := r.ProviderOf(t2); tt.Provider != pd {
		t.Fatal("t2 (strict default) moved")
	}
	if _, err := r.RegisterTriggerType(&TriggerType{ID: "engine::x", Namespace: "orders", Provider: po}); !errors.Is(err, ErrReserved) {
		t.Fatalf("engine:: type in a namespace: %v", err)
	}
	if tt, ok := r.TriggerTypeIn("orders", "hook"); !ok || tt.Provider != po {
		t.Fatal("TriggerTypeIn(orders)")
	}
	if tt, ok := r.TriggerType("hook"); !ok || tt.Provider != pd {
		t.Fatal("the default provider was replaced")
	}
}

func TestUnregisterFunction(t *testing.T) {
	w1, w2 := &owner{"w1"}, &owner{"w2"}
	tests := []struct {
		name    string
		setup   func(r *Registry)
		id      string
		by      Owner
		want    bool
		wantOwn Owner // owner of "f" afterwards; nil = gone
	}{
		{
			name:  "owner removes its function",
			setup: func(r *Registry) { r.RegisterFunction(&Function{ID: "f", Owner: w1}) },
			id:    "f", by: w1, want: true, wantOwn: nil,
		},
		{
			name:  "another worker cannot remove it",
			setup: func(r *Registry) { r.RegisterFunction(&Function{ID: "f", Owner: w1}) },
			id:    "f", by: w2, want: false, wantOwn: w1,
		},
		{
			name:  "same id, other connection object cannot remove it",
			setup: func(r *Registry) { r.RegisterFunction(&Function{ID: "f", Owner: w1}) },
			id:    "f", by: &owner{"w1"}, want: false, wantOwn: w1,
		},
		{
			name: "previous owner cannot remove a taken-over function",
			setup: func(r *Registry) {
				r.RegisterFunction(&Function{ID: "f", Owner: w1})
				r.RegisterFunction(&Function{ID: "f", Owner: w2})
			},
			id: "f", by: w1, want: false, wantOwn: w2,
		},
		{
			name:  "unknown id",
			setup: func(r *Registry) { r.RegisterFunction(&Function{ID: "f", Owner: w1}) },
			id:    "nope", by: w1, want: false, wantOwn: w1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New()
			tc.setup(r)
			gen := r.FunctionGeneration()
			if got, _ := r.UnregisterFunction("", tc.id, tc.by); got != tc.want {
				t.Errorf("UnregisterFunction(%q) = %v, want %v", tc.id, got, tc.want)
			}
			f, ok := r.Function("f")
			switch {
			case tc.wantOwn == nil && ok:
				t.Errorf("function still registered (owner %v)", f.Owner)
			case tc.wantOwn != nil && (!ok || f.Owner != tc.wantOwn):
				t.Errorf("function owner = %v (registered %v), want %v", f, ok, tc.wantOwn)
			}
			if changed := r.FunctionGeneration() != gen; changed != tc.want {
				t.Errorf("FunctionGeneration changed = %v, want %v", changed, tc.want)
			}
		})
	}
}

func TestFunctionsSortedAndLookup(t *testing.T) {
	r := New()
	w := &owner{"w"}
	for _, id := range []string{"b::two", "a::one", "c::three"} {
		r.RegisterFunction(&Function{ID: id, Owner: w})
	}
	if got, want := fnIDs(r.Functions()), []string{"a::one", "b::two", "c::three"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Functions() = %v, want %v", got, want)
	}
	if _, ok := r.Function("d::four"); ok {
		t.Error("Function of an unknown id reported found")
	}
	if f := mustFunction(t, r, "b::two"); f.ID != "b::two" || f.Owner != w {
		t.Errorf("Function(b::two) = %+v", f)
	}
	if got := New().Functions(); got == nil || len(got) != 0 {
		t.Errorf("Functions() of an empty registry = %#v, want empty non-nil", got)
	}
}

func TestFunctionInternal(t *testing.T) {
	tests := []struct {
		metadata string
		want     bool
	}{
		{``, false},
		{`null`, false},
		{`{}`, false},
		{`{"internal":true}`, true},
		{`{"a":1,"internal":true}`, true},
		{`{"a":{"b":[1,2]},"internal":true,"c":"d"}`, true},
		{`{"internal":false}`, false},
		{`{"internal":"true"}`, false},
		{`{"internal":1}`, false},
		{`{"nested":{"internal":true}}`, false},
		{`{"x":"internal"}`, false},
		{`["internal",true]`, false},
		{`{"internal":`, false},
	}
	for _, tc := range tests {
		f := &Function{ID: "f", Metadata: jsontext.Value(tc.metadata)}
		if got := f.Internal(); got != tc.want {
			t.Errorf("Internal() with metadata %s = %v, want %v", tc.metadata, got, tc.want)
		}
	}
}

func TestFunctionGenerationOnlyChangesWithFunctionSet(t *testing.T) {
	r := New()
	w := &owner{"w"}
	g0 := r.FunctionGeneration()
	r.RegisterFunction(&Function{ID: "f", Owner: w})
	g1 := r.FunctionGeneration()
	if g1 == g0 {
		t.Fatal("registration did not change the generation")
	}
	// Triggers, types and workers do not touch the function set.
	r.AddWorker(&Worker{ID: "w"})
	r.RegisterTriggerType(&TriggerType{ID: "tt", Provider: w})
	r.PutTrigger(&Trigger{ID: "t", Type: "tt", FunctionID: "f"})
	if g := r.FunctionGeneration(); g != g1 {
		t.Errorf("generation changed %d → %d without a function change", g1, g)
	}
	// Removing a worker that owns no function does not change it either.
	r.RemoveWorker(&owner{"other"})
	if g := r.FunctionGeneration(); g != g1 {
		t.Errorf("generation changed %d → %d by removing a worker without functions", g1, g)
	}
	r.RemoveWorker(w)
	if g := r.FunctionGeneration(); g == g1 {
		t.Error("removing the owner of a function did not change the generation")
	}
}

// --- trigger types and bindings ---

func TestPutTriggerParksWithoutProviderAndTypeRegistrationReturnsBindings(t *testing.T) {
	r := New()
	provider := &owner{"p"}

	// Bindings for a type nobody provides yet are stored, parked.
	for _, id := range []string{"t2", "t1"} {
		tp, replaced, _ := r.PutTrigger(&Trigger{ID: id, Type: "cron", FunctionID: "f", Owner: "w"})
		if tp != nil || replaced != nil {
			t.Fatalf("PutTrigger(%s) = (%v, %v), want no provider and nothing replaced", id, tp, replaced)
		}
	}
	r.PutTrigger(&Trigger{ID: "t3", Type: "other", FunctionID: "f", Owner: "w"})
	for _, tr := range r.Triggers("") {
		if tr.Active {
			t.Errorf("binding %s is active without a provider", tr.ID)
		}
	}

	// The provider registers the type and receives exactly its bindings, sorted.
	bindings, _ := r.RegisterTriggerType(&TriggerType{ID: "cron", Provider: provider})
	if got, want := ptrTriggerIDs(bindings), []string{"t1", "t2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("RegisterTriggerType bindings = %v, want %v", got, want)
	}
	for _, b := range bindings {
		r.SetTriggerActive(b.Trigger, true)
	}
	for _, tr := range r.Triggers("cron") {
		if !tr.Active {
			t.Errorf("binding %s not active after activation", tr.ID)
		}
	}
	if tr, _ := r.Trigger("t3"); tr.Active {
		t.Error("binding of another type was activated")
	}

	// A binding put once the type exists is told its provider.
	tp, _, _ := r.PutTrigger(&Trigger{ID: "t4", Type: "cron", FunctionID: "f", Owner: "w"})
	if tp == nil || tp.Provider != provider {
		t.Errorf("PutTrigger with a provided type returned provider %v, want %v", tp, provider)
	}
}

func TestPutTriggerSameIDReplaces(t *testing.T) {
	r := New()
	first := &Trigger{ID: "t", Type: "cron", FunctionID: "f", Owner: "w1"}
	r.PutTrigger(first)
	r.SetTriggerActive(first, true)
	second := &Trigger{ID: "t", Type: "cron", FunctionID: "g", Owner: "w1"}
	_, replaced, _ := r.PutTrigger(second)
	if replaced != first {
		t.Fatalf("PutTrigger replaced = %v, want the first binding", replaced)
	}
	if got, _ := r.Trigger("t"); got != second {
		t.Errorf("Trigger(t) = %+v, want the second binding", got)
	}
	// Activating or parking the stale binding does nothing to the registry.
	r.SetTriggerActive(first, false)
	if !first.Active {
		t.Error("SetTriggerActive changed a binding that was replaced")
	}
	r.SetTriggerActive(second, true)
	if got, _ := r.Trigger("t"); !got.Active {
		t.Error("SetTriggerActive did not activate the current binding")
	}
	if n := len(r.Triggers("")); n != 1 {
		t.Errorf("%d bindings, want 1", n)
	}
}

func TestSetTriggerActiveOnRemovedBinding(t *testing.T) {
	r := New()
	tr := &Trigger{ID: "t", Type: "cron"}
	r.PutTrigger(tr)
	r.RemoveTrigger("t", nil)
	r.SetTriggerActive(tr, true)
	if tr.Active {
		t.Error("SetTriggerActive activated a removed binding")
	}
	if _, ok := r.Trigger("t"); ok {
		t.Error("SetTriggerActive re-added a removed binding")
	}
}

func TestRegisterTriggerTypeReplacesProvider(t *testing.T) {
	// A worker may replace another worker's type (last one wins), never
	// the engine's (TestRegisterTriggerTypeReserved).
	r := New()
	p1, p2 := &owner{"p1"}, &owner{"p2"}
	r.RegisterTriggerType(&TriggerType{ID: "cron", Provider: p1, Description: "one"})
	r.RegisterTriggerType(&TriggerType{ID: "cron", Provider: p2, Description: "two"})
	tt, ok := r.TriggerType("cron")
	if !ok || tt.Provider != p2 || tt.Description != "two" {
		t.Fatalf("TriggerType(cron) = %+v, %v; want provider p2", tt, ok)
	}
	// The replaced provider can no longer unregister it.
	if r.UnregisterTriggerType("", "cron", p1) {
		t.Error("the replaced provider unregistered the type")
	}
	if _, ok := r.TriggerType("cron"); !ok {
		t.Error("type gone after a refused unregistration")
	}
}

func TestUnregisterTriggerType(t *testing.T) {
	p, other := &owner{"p"}, &owner{"x"}
	tests := []struct {
		name       string
		id         string
		by         Owner
		want       bool
		wantActive bool // of the binding afterwards
	}{
		{name: "provider unregisters and parks bindings", id: "cron", by: p, want: true, wantActive: false},
		{name: "another owner is refused", id: "cron", by: other, want: false, wantActive: true},
		{name: "unknown type", id: "nope", by: p, want: false, wantActive: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New()
			r.RegisterTriggerType(&TriggerType{ID: "cron", Provider: p})
			b := &Trigger{ID: "t", Type: "cron", FunctionID: "f", Owner: "w"}
			r.PutTrigger(b)
			r.SetTriggerActive(b, true)
			if got := r.UnregisterTriggerType("", tc.id, tc.by); got != tc.want {
				t.Errorf("UnregisterTriggerType = %v, want %v", got, tc.want)
			}
			if _, ok := r.TriggerType("cron"); ok == tc.want {
				t.Errorf("type registered = %v after UnregisterTriggerType = %v", ok, tc.want)
			}
			got, ok := r.Trigger("t")
			if !ok {
				t.Fatal("binding removed; parking must keep it")
			}
			if got.Active != tc.wantActive {
				t.Errorf("binding active = %v, want %v", got.Active, tc.wantActive)
			}
		})
	}
}

func TestParkedBindingsReactivateWithNewProvider(t *testing.T) {
	r := New()
	p1, p2 := &owner{"p1"}, &owner{"p2"}
	r.RegisterTriggerType(&TriggerType{ID: "cron", Provider: p1})
	b := &Trigger{ID: "t", Type: "cron", FunctionID: "f", Owner: "w"}
	r.PutTrigger(b)
	r.SetTriggerActive(b, true)

	rel := r.RemoveWorker(p1)
	if !reflect.DeepEqual(rel.ParkedTypes, []string{"cron"}) {
		t.Fatalf("ParkedTypes = %v, want [cron]", rel.ParkedTypes)
	}
	if got, ok := r.Trigger("t"); !ok || got.Active {
		t.Fatalf("binding after provider left: present %v, active %v; want parked", ok, got != nil && got.Active)
	}
	bindings, _ := r.RegisterTriggerType(&TriggerType{ID: "cron", Provider: p2})
	if len(bindings) != 1 || bindings[0].Trigger != b {
		t.Fatalf("new provider got bindings %v, want the parked one", ptrTriggerIDs(bindings))
	}
}

func TestTriggerTypesSortedAndLookup(t *testing.T) {
	r := New()
	e := &owner{""}
	for _, id := range []string{"http", "engine::workers-available", "cron"} {
		r.RegisterTriggerType(&TriggerType{ID: id, Provider: e})
	}
	var got []string
	for _, tt := range r.TriggerTypes() {
		got = append(got, tt.ID)
	}
	if want := []string{"cron", "engine::workers-available", "http"}; !reflect.DeepEqual(got, want) {
		t.Errorf("TriggerTypes() = %v, want %v", got, want)
	}
	if _, ok := r.TriggerType("queue"); ok {
		t.Error("TriggerType of an unknown id reported found")
	}
}

func TestRemoveTrigger(t *testing.T) {
	str := func(s string) *string { return &s }
	tests := []struct {
		name        string
		id          string
		owner       *string
		wantRemoved bool
	}{
		{name: "any owner", id: "t", owner: nil, wantRemoved: true},
		{name: "registering worker", id: "t", owner: str("w1"), wantRemoved: true},
		{name: "another worker", id: "t", owner: str("w2"), wantRemoved: false},
		{name: "durable-binding owner", id: "t", owner: str(""), wantRemoved: false},
		{name: "unknown id", id: "nope", owner: nil, wantRemoved: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New()
			p := &owner{"p"}
			r.RegisterTriggerType(&TriggerType{ID: "cron", Provider: p})
			b := &Trigger{ID: "t", Type: "cron", FunctionID: "f", Owner: "w1"}
			r.PutTrigger(b)
			got, tt, _ := r.RemoveTrigger(tc.id, tc.owner)
			if tc.wantRemoved {
				if got != b || tt == nil || tt.Provider != p {
					t.Errorf("RemoveTrigger = (%v, %v), want the binding and its provider", got, tt)
				}
			} else if got != nil || tt != nil {
				t.Errorf("RemoveTrigger = (%v, %v), want (nil, nil)", got, tt)
			}
			if _, ok := r.Trigger("t"); ok == tc.wantRemoved {
				t.Errorf("binding present = %v after RemoveTrigger, want %v", ok, !tc.wantRemoved)
			}
		})
	}
}

func TestRemoveTriggerDurableBindingWithoutProvider(t *testing.T) {
	r := New()
	r.PutTrigger(&Trigger{ID: "t", Type: "cron", Owner: ""})
	empty := ""
	got, tt, _ := r.RemoveTrigger("t", &empty)
	if got == nil || tt != nil {
		t.Errorf("RemoveTrigger = (%v, %v), want the binding and no provider", got, tt)
	}
}

func TestTriggersFilterSortAndCopy(t *testing.T) {
	r := New()
	for _, b := range []*Trigger{
		{ID: "c", Type: "cron"},
		{ID: "a", Type: "http"},
		{ID: "b", Type: "cron"},
	} {
		r.PutTrigger(b)
	}
	tests := []struct {
		typ  string
		want []string
	}{
		{"", []string{"a", "b", "c"}},
		{"cron", []string{"b", "c"}},
		{"http", []string{"a"}},
		{"queue", []string{}},
	}
	for _, tc := range tests {
		if got := triggerIDs(r.Triggers(tc.typ)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Triggers(%q) = %v, want %v", tc.typ, got, tc.want)
		}
	}
	// The returned bindings are copies.
	list := r.Triggers("")
	list[0].Active, list[0].FunctionID = true, "changed"
	if got, _ := r.Trigger("a"); got.Active || got.FunctionID != "" {
		t.Errorf("changing a listed binding changed the registry: %+v", got)
	}
}

// --- workers and ownership on disconnect ---

func TestWorkers(t *testing.T) {
	r := New()
	at := time.Unix(1700000000, 0)
	r.AddWorker(&Worker{ID: "w1", Name: "one", ConnectedAt: at})
	r.AddWorker(&Worker{ID: "w2", Name: "two"})

	w, ok := r.Worker("w1")
	if !ok || w.Name != "one" || !w.ConnectedAt.Equal(at) {
		t.Fatalf("Worker(w1) = %+v, %v", w, ok)
	}
	if _, ok := r.Worker("w3"); ok {
		t.Error("Worker of an unknown id reported found")
	}

	// Worker returns a copy.
	w.Name = "changed"
	if w, _ := r.Worker("w1"); w.Name != "one" {
		t.Errorf("changing a returned record changed the registry: name %q", w.Name)
	}

	if !r.UpdateWorker("w1", func(w *Worker) { w.Runtime, w.PID, w.HasPID = "node", 42, true }) {
		t.Error("UpdateWorker of a known worker = false")
	}
	called := false
	if r.UpdateWorker("w3", func(*Worker) { called = true }) || called {
		t.Errorf("UpdateWorker of an unknown worker: returned true or ran fn (ran %v)", called)
	}
	if w, _ := r.Worker("w1"); w.Runtime != "node" || w.PID != 42 || !w.HasPID {
		t.Errorf("after UpdateWorker: %+v", w)
	}

	names := map[string]string{}
	for _, w := range r.Workers() {
		names[w.ID] = w.Name
	}
	if want := map[string]string{"w1": "one", "w2": "two"}; !reflect.DeepEqual(names, want) {
		t.Errorf("Workers() = %v, want %v", names, want)
	}

	r.RemoveWorker(&owner{"w1"})
	if _, ok := r.Worker("w1"); ok {
		t.Error("RemoveWorker kept the worker's record")
	}
	if n := len(r.Workers()); n != 1 {
		t.Errorf("%d workers after removing one of two, want 1", n)
	}
}

func TestWorkerFunctionCount(t *testing.T) {
	r := New()
	w1, w2, engine := &owner{"w1"}, &owner{"w2"}, &owner{""}
	r.RegisterFunction(&Function{ID: "a", Owner: w1})
	r.RegisterFunction(&Function{ID: "b", Owner: w1})
	r.RegisterFunction(&Function{ID: "c", Owner: w2})
	r.RegisterFunction(&Function{ID: "engine::x", Owner: engine})
	r.RegisterFunction(&Function{ID: "b", Owner: w2}) // taken over
	for id, want := range map[string]int{"w1": 1, "w2": 2, "": 1, "w3": 0} {
		if got := r.WorkerFunctionCount(id); got != want {
			t.Errorf("WorkerFunctionCount(%q) = %d, want %d", id, got, want)
		}
	}
}

// TestReconnectingWorkerKeepsRegistrations is the ownership rule: a worker
// reconnects (new connection, new id), replays its registrations, and only
// then is its old connection found dead. The old connection's cleanup must
// take nothing the new one re-registered.
func TestReconnectingWorkerKeepsRegistrations(t *testing.T) {
	r := New()
	oldConn, newConn, other := &owner{"old"}, &owner{"new"}, &owner{"other"}
	engineProvider := &owner{""}
	r.RegisterTriggerType(&TriggerType{ID: "http", Provider: engineProvider})

	r.AddWorker(&Worker{ID: "old"})
	r.RegisterFunction(&Function{ID: "svc::a", Owner: oldConn})
	r.RegisterFunction(&Function{ID: "svc::b", Owner: oldConn})
	r.RegisterFunction(&Function{ID: "svc::gone", Owner: oldConn})
	r.RegisterTriggerType(&TriggerType{ID: "cron", Provider: oldConn})
	r.RegisterTriggerType(&TriggerType{ID: "queue", Provider: oldConn})
	r.PutTrigger(&Trigger{ID: "route-a", Type: "http", FunctionID: "svc::a", Owner: "old"})
	r.PutTrigger(&Trigger{ID: "route-gone", Type: "http", FunctionID: "svc::gone", Owner: "old"})
	// Another worker's binding of a type the old connection provides.
	job := &Trigger{ID: "job", Type: "queue", FunctionID: "x", Owner: "other"}
	r.PutTrigger(job)
	r.SetTriggerActive(job, true)
	r.AddWorker(&Worker{ID: "other"})
	r.RegisterFunction(&Function{ID: "other::f", Owner: other})

	// The new connection replays (part of) what the old one had.
	r.AddWorker(&Worker{ID: "new"})
	r.RegisterFunction(&Function{ID: "svc::a", Owner: newConn})
	r.RegisterFunction(&Function{ID: "svc::b", Owner: newConn})
	r.RegisterTriggerType(&TriggerType{ID: "cron", Provider: newConn})
	r.PutTrigger(&Trigger{ID: "route-a", Type: "http", FunctionID: "svc::a", Owner: "new"})

	rel := r.RemoveWorker(oldConn)

	if want := []string{"svc::gone"}; !reflect.DeepEqual(rel.Functions, want) {
		t.Errorf("released functions = %v, want %v", rel.Functions, want)
	}
	if len(rel.Triggers) != 1 || rel.Triggers[0].Trigger.ID != "route-gone" || rel.Triggers[0].Provider == nil || rel.Triggers[0].Provider.Provider != engineProvider {
		t.Errorf("released triggers = %+v, want route-gone with the http provider", rel.Triggers)
	}
	if want := []string{"queue"}; !reflect.DeepEqual(rel.ParkedTypes, want) {
		t.Errorf("parked types = %v, want %v", rel.ParkedTypes, want)
	}

	for id, want := range map[string]Owner{"svc::a": newConn, "svc::b": newConn, "other::f": other} {
		if f, ok := r.Function(id); !ok || f.Owner != want {
			t.Errorf("function %s after old connection removed: %v, %v; want owner %v", id, f, ok, want)
		}
	}
	if _, ok := r.Function("svc::gone"); ok {
		t.Error("svc::gone, owned only by the old connection, survived")
	}
	if tr, ok := r.Trigger("route-a"); !ok || tr.Owner != "new" {
		t.Errorf("route-a after old connection removed: %+v, %v; want owned by new", tr, ok)
	}
	if _, ok := r.Trigger("route-gone"); ok {
		t.Error("route-gone, registered only by the old connection, survived")
	}
	if tt, ok := r.TriggerType("cron"); !ok || tt.Provider != newConn {
		t.Errorf("trigger type cron after old connection removed: %+v, %v; want provided by new", tt, ok)
	}
	if _, ok := r.TriggerType("queue"); ok {
		t.Error("trigger type queue, provided only by the old connection, survived")
	}
	if tr, ok := r.Trigger("job"); !ok || tr.Active {
		t.Errorf("binding job of the old connection's type: present %v, active %v; want present and parked", ok, ok && tr.Active)
	}
	if _, ok := r.Worker("old"); ok {
		t.Error("old worker record survived")
	}
	for _, id := range []string{"new", "other"} {
		if _, ok := r.Worker(id); !ok {
			t.Errorf("worker %s removed with another worker", id)
		}
	}

	// Removing the old connection again releases nothing.
	gen := r.FunctionGeneration()
	if rel := r.RemoveWorker(oldConn); len(rel.Functions)+len(rel.Triggers)+len(rel.ParkedTypes) != 0 {
		t.Errorf("second RemoveWorker released %+v", rel)
	}
	if r.FunctionGeneration() != gen {
		t.Error("second RemoveWorker changed the function generation")
	}
}

func TestRemoveWorkerReleasedFunctionsSorted(t *testing.T) {
	r := New()
	w := &owner{"w"}
	want := make([]string, 0, 20)
	for i := range 20 {
		id := fmt.Sprintf("f%02d", i)
		want = append(want, id)
		r.RegisterFunction(&Function{ID: id, Owner: w})
	}
	if got := r.RemoveWorker(w).Functions; !reflect.DeepEqual(got, want) {
		t.Errorf("released functions = %v, want %v", got, want)
	}
	if n := len(r.Functions()); n != 0 {
		t.Errorf("%d functions left", n)
	}
}

// TestConcurrentUse exercises every method from several goroutines; run
// with -race. Each goroutine works on its own ids, so the end state is known.
func TestConcurrentUse(t *testing.T) {
	r := New()
	shared := &owner{"p"}
	r.RegisterTriggerType(&TriggerType{ID: "cron", Provider: shared})
	const workers, rounds = 8, 50
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			o := &owner{fmt.Sprintf("w%d", i)}
			r.AddWorker(&Worker{ID: o.id})
			for j := range rounds {
				fid := fmt.Sprintf("%s::f%d", o.id, j)
				r.RegisterFunction(&Function{ID: fid, Owner: o})
				tr := &Trigger{ID: fid, Type: "cron", FunctionID: fid, Owner: o.id}
				r.PutTrigger(tr)
				r.SetTriggerActive(tr, true)
				r.UpdateWorker(o.id, func(w *Worker) { w.PID = j })
				_ = r.Functions()
				_ = r.Triggers("cron")
				_ = r.Workers()
				_ = r.TriggerTypes()
				_ = r.WorkerFunctionCount(o.id)
				_ = r.FunctionGeneration()
				if j%2 == 1 {
					r.UnregisterFunction("", fid, o)
					r.RemoveTrigger(fid, &o.id)
				}
			}
			if i%2 == 1 {
				r.RemoveWorker(o)
			}
		})
	}
	wg.Wait()
	// Even workers stay with rounds/2 functions and bindings each.
	if got, want := len(r.Functions()), workers/2*rounds/2; got != want {
		t.Errorf("%d functions, want %d", got, want)
	}
	if got, want := len(r.Triggers("cron")), workers/2*rounds/2; got != want {
		t.Errorf("%d bindings, want %d", got, want)
	}
	if got, want := len(r.Workers()), workers/2; got != want {
		t.Errorf("%d workers, want %d", got, want)
	}
}

// TriggerSnapshot copies under the lock, so reading it races with nothing
// (run with -race).
func TestTriggerSnapshotWhileActivating(t *testing.T) {
	r := New()
	tr := &Trigger{ID: "t", Type: "cron", FunctionID: "f", Owner: "w"}
	r.PutTrigger(tr)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 1000 {
			r.SetTriggerActive(tr, i%2 == 0)
		}
	}()
	for range 1000 {
		got, ok := r.TriggerSnapshot("t")
		if !ok || got.ID != "t" || got.FunctionID != "f" {
			t.Fatalf("snapshot %+v %v", got, ok)
		}
	}
	<-done
	if _, ok := r.TriggerSnapshot("missing"); ok {
		t.Fatal("snapshot of a missing trigger")
	}
}
