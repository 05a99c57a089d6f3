package registry

import (
	"errors"
	"strings"
	"testing"
)

func TestRegisterFunctionReserved(t *testing.T) {
	eng, w1 := &owner{""}, &owner{"w1"}
	tests := []struct {
		name    string
		setup   func(r *Registry)
		f       *Function
		wantErr error
	}{
		{name: "worker, engine:: id nobody holds", f: &Function{ID: "engine::mine", Owner: w1}, wantErr: ErrReserved},
		{name: "worker, engine:: builtin", setup: func(r *Registry) { r.RegisterFunction(&Function{ID: "engine::functions::list", Owner: eng}) },
			f: &Function{ID: "engine::functions::list", Owner: w1}, wantErr: ErrReserved},
		{name: "worker, builtin outside engine::", setup: func(r *Registry) { r.RegisterFunction(&Function{ID: "state::get", Owner: eng}) },
			f: &Function{ID: "state::get", Owner: w1}, wantErr: ErrReserved},
		{name: "worker, prefix only in the middle", f: &Function{ID: "svc::engine::x", Owner: w1}},
		{name: "worker, similar prefix", f: &Function{ID: "engine:x", Owner: w1}},
		{name: "engine, engine:: id", f: &Function{ID: "engine::x", Owner: eng}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New()
			if tc.setup != nil {
				tc.setup(r)
			}
			before, hadBefore := r.Function(tc.f.ID)
			gen := r.FunctionGeneration()
			err := r.RegisterFunction(tc.f)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("RegisterFunction(%s by %q) error = %v, want %v", tc.f.ID, tc.f.Owner.OwnerID(), err, tc.wantErr)
			}
			got, ok := r.Function(tc.f.ID)
			if tc.wantErr != nil {
				if ok != hadBefore || got != before {
					t.Errorf("refused registration changed the registry: %+v (was %+v)", got, before)
				}
				if r.FunctionGeneration() != gen {
					t.Error("refused registration bumped FunctionGeneration")
				}
				if !strings.Contains(err.Error(), tc.f.ID) {
					t.Errorf("error %q does not name the id", err)
				}
			} else if !ok || got != tc.f {
				t.Errorf("Function(%s) = %+v, %v; want the registration", tc.f.ID, got, ok)
			}
		})
	}
}

func TestUnregisterFunctionOfEngineByWorker(t *testing.T) {
	r := New()
	eng := &owner{""}
	r.RegisterFunction(&Function{ID: "engine::functions::list", Owner: eng})
	if ok, _ := r.UnregisterFunction("", "engine::functions::list", &owner{"w1"}); ok {
		t.Error("a worker unregistered an engine function")
	}
	if f, ok := r.Function("engine::functions::list"); !ok || f.Owner != eng {
		t.Errorf("engine function after a worker's unregister: %+v, %v", f, ok)
	}
}

func TestRegisterTriggerTypeReserved(t *testing.T) {
	eng, w1 := &owner{""}, &owner{"w1"}
	r := New()
	if _, err := r.RegisterTriggerType(&TriggerType{ID: "http", Provider: eng}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RegisterTriggerType(&TriggerType{ID: "engine::workers-available", Provider: eng}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"http", "engine::workers-available", "engine::new-type"} {
		if _, err := r.RegisterTriggerType(&TriggerType{ID: id, Provider: w1}); !errors.Is(err, ErrReserved) {
			t.Errorf("worker RegisterTriggerType(%s) error = %v, want ErrReserved", id, err)
		}
	}
	if tt, _ := r.TriggerType("http"); tt.Provider != eng {
		t.Errorf("http provider = %v after a worker's attempt, want the engine", tt.Provider)
	}
	if _, ok := r.TriggerType("engine::new-type"); ok {
		t.Error("a worker registered a trigger type in engine::")
	}
	if _, err := r.RegisterTriggerType(&TriggerType{ID: "cron", Provider: w1}); err != nil {
		t.Errorf("worker type outside engine:: refused: %v", err)
	}
}

func TestIDLengthLimit(t *testing.T) {
	r := New()
	r.SetMaxIDLength(64)
	ok, long := strings.Repeat("a", 64), strings.Repeat("a", 65)
	w := &owner{"w"}
	if err := r.RegisterFunction(&Function{ID: ok, Owner: w}); err != nil {
		t.Errorf("64-byte function id refused: %v", err)
	}
	if err := r.RegisterFunction(&Function{ID: long, Owner: w}); !errors.Is(err, ErrIDTooLong) {
		t.Errorf("65-byte function id: error %v, want ErrIDTooLong", err)
	}
	if _, err := r.RegisterTriggerType(&TriggerType{ID: long, Provider: w}); !errors.Is(err, ErrIDTooLong) {
		t.Errorf("65-byte trigger type id: error %v, want ErrIDTooLong", err)
	}
	for name, tr := range map[string]*Trigger{
		"id":          {ID: long, Type: "cron", FunctionID: "f", Owner: "w"},
		"type":        {ID: "t", Type: long, FunctionID: "f", Owner: "w"},
		"function id": {ID: "t", Type: "cron", FunctionID: long, Owner: "w"},
	} {
		if _, _, err := r.PutTrigger(tr); !errors.Is(err, ErrIDTooLong) {
			t.Errorf("trigger with a 65-byte %s: error %v, want ErrIDTooLong", name, err)
		}
	}
	if n := len(r.Functions()) + len(r.TriggerTypes()) + len(r.Triggers("")); n != 1 {
		t.Errorf("%d entries registered, want only the 64-byte function", n)
	}
	if got := New(); got.maxID != DefaultMaxIDLength {
		t.Errorf("default limit %d, want %d", got.maxID, DefaultMaxIDLength)
	}
	huge := strings.Repeat("x", 1<<20)
	err := New().RegisterFunction(&Function{ID: huge, Owner: w})
	if !errors.Is(err, ErrIDTooLong) || len(err.Error()) > 300 {
		t.Errorf("1 MiB id: error of %d bytes (%v), want a short ErrIDTooLong", len(err.Error()), errors.Is(err, ErrIDTooLong))
	}
}

func TestPutTriggerOwnership(t *testing.T) {
	tests := []struct {
		name     string
		existing *Trigger
		put      *Trigger
		wantErr  error
	}{
		{name: "same connection replaces", existing: &Trigger{ID: "t", Type: "http", FunctionID: "f", Owner: "w1"},
			put: &Trigger{ID: "t", Type: "http", FunctionID: "g", Owner: "w1"}},
		{name: "other connection refused", existing: &Trigger{ID: "t", Type: "http", FunctionID: "f", Owner: "w1"},
			put: &Trigger{ID: "t", Type: "http", FunctionID: "evil", Owner: "w2"}, wantErr: ErrNotOwner},
		{name: "connection over a durable binding", existing: &Trigger{ID: "t", Type: "http", FunctionID: "f", CreatedBy: "w1"},
			put: &Trigger{ID: "t", Type: "http", FunctionID: "evil", Owner: "w2"}, wantErr: ErrNotOwner},
		{name: "durable binding over a connection's", existing: &Trigger{ID: "t", Type: "http", FunctionID: "f", Owner: "w1"},
			put: &Trigger{ID: "t", Type: "http", FunctionID: "evil", CreatedBy: "w2"}, wantErr: ErrNotOwner},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New()
			r.PutTrigger(tc.existing)
			_, replaced, err := r.PutTrigger(tc.put)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("PutTrigger error = %v, want %v", err, tc.wantErr)
			}
			want := tc.put
			if err != nil {
				want = tc.existing
				if replaced != nil {
					t.Errorf("refused PutTrigger reported replacing %+v", replaced)
				}
			} else if replaced != tc.existing {
				t.Errorf("PutTrigger replaced = %+v, want the existing binding", replaced)
			}
			if got, _ := r.Trigger("t"); got != want {
				t.Errorf("binding = %+v, want %+v", got, want)
			}
		})
	}
}

func TestRemoveTriggerOwnership(t *testing.T) {
	str := func(s string) *string { return &s }
	conn := &Trigger{ID: "t", Type: "http", FunctionID: "f", Owner: "w1"}
	durable := &Trigger{ID: "t", Type: "http", FunctionID: "f", CreatedBy: "w1"}
	tests := []struct {
		name    string
		binding *Trigger
		by      *string
		wantErr error
	}{
		{name: "connection's, by it", binding: conn, by: str("w1")},
		{name: "connection's, by another", binding: conn, by: str("w2"), wantErr: ErrNotOwner},
		{name: "connection's, anonymous", binding: conn, by: str(""), wantErr: ErrNotOwner},
		{name: "connection's, by the engine", binding: conn, by: nil},
		{name: "durable, by its creator", binding: durable, by: str("w1")},
		{name: "durable, by another", binding: durable, by: str("w2"), wantErr: ErrNotOwner},
		{name: "durable, anonymous", binding: durable, by: str(""), wantErr: ErrNotOwner},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New()
			b := *tc.binding
			r.PutTrigger(&b)
			got, _, err := r.RemoveTrigger("t", tc.by)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("RemoveTrigger error = %v, want %v", err, tc.wantErr)
			}
			_, present := r.Trigger("t")
			if tc.wantErr != nil && (got != nil || !present) {
				t.Errorf("refused RemoveTrigger: returned %+v, binding present %v", got, present)
			}
			if tc.wantErr == nil && (got != &b || present) {
				t.Errorf("RemoveTrigger: returned %+v, binding present %v; want it removed", got, present)
			}
		})
	}
}

func TestDropTriggerOnlyTheSameBinding(t *testing.T) {
	r := New()
	first := &Trigger{ID: "t", Type: "http", Owner: "w1"}
	r.PutTrigger(first)
	second := &Trigger{ID: "t", Type: "http", Owner: "w1"}
	r.PutTrigger(second)
	if r.DropTrigger(first) {
		t.Error("DropTrigger removed a binding that had been replaced")
	}
	if got, _ := r.Trigger("t"); got != second {
		t.Errorf("binding = %+v, want the second", got)
	}
	if !r.DropTrigger(second) {
		t.Error("DropTrigger did not remove the current binding")
	}
	if n := len(r.Triggers("")); n != 0 {
		t.Errorf("%d bindings after DropTrigger, want 0", n)
	}
}

func TestTransferCreatedBy(t *testing.T) {
	r := New()
	r.PutTrigger(&Trigger{ID: "d1", Type: "http", CreatedBy: "old"})
	r.PutTrigger(&Trigger{ID: "d2", Type: "http", CreatedBy: "other"})
	r.PutTrigger(&Trigger{ID: "c1", Type: "http", Owner: "old"})
	if n := r.TransferCreatedBy("old", "new"); n != 1 {
		t.Errorf("TransferCreatedBy moved %d bindings, want 1", n)
	}
	if n := r.TransferCreatedBy("", "new"); n != 0 {
		t.Errorf("TransferCreatedBy from anonymous moved %d bindings, want 0", n)
	}
	nw := "new"
	if _, _, err := r.RemoveTrigger("d1", &nw); err != nil {
		t.Errorf("the reattached worker cannot remove its durable binding: %v", err)
	}
	if _, _, err := r.RemoveTrigger("d2", &nw); !errors.Is(err, ErrNotOwner) {
		t.Errorf("another worker's durable binding: error %v, want ErrNotOwner", err)
	}
}

// TestClaimOnHolderDisconnect: a binding refused because another connection
// holds the id passes to the refused connection when the holder goes, but
// only if it is the very same binding (a worker that reconnected without
// reattach) and the claimant is still connected.
func TestClaimOnHolderDisconnect(t *testing.T) {
	tests := []struct {
		name          string
		claim         *Trigger
		claimantGone  bool
		wantTakenOver bool
	}{
		{name: "same binding", claim: &Trigger{ID: "t", Type: "http", FunctionID: "f", Config: []byte(`{"api_path":"/a"}`), Owner: "new"}, wantTakenOver: true},
		{name: "other function", claim: &Trigger{ID: "t", Type: "http", FunctionID: "evil", Config: []byte(`{"api_path":"/a"}`), Owner: "new"}},
		{name: "other config", claim: &Trigger{ID: "t", Type: "http", FunctionID: "f", Config: []byte(`{"api_path":"/b"}`), Owner: "new"}},
		{name: "claimant gone first", claim: &Trigger{ID: "t", Type: "http", FunctionID: "f", Config: []byte(`{"api_path":"/a"}`), Owner: "new"}, claimantGone: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New()
			oldConn, newConn := &owner{"old"}, &owner{"new"}
			r.AddWorker(&Worker{ID: "old"})
			r.AddWorker(&Worker{ID: "new"})
			held := &Trigger{ID: "t", Type: "http", FunctionID: "f", Config: []byte(`{"api_path":"/a"}`), Owner: "old"}
			r.PutTrigger(held)
			r.SetTriggerActive(held, true)
			if _, _, err := r.PutTrigger(tc.claim); !errors.Is(err, ErrNotOwner) {
				t.Fatalf("claim: error %v, want ErrNotOwner", err)
			}
			if tc.claimantGone {
				r.RemoveWorker(newConn)
			}
			rel := r.RemoveWorker(oldConn)
			got, ok := r.Trigger("t")
			if tc.wantTakenOver {
				if !ok || got != tc.claim || !got.Active || len(rel.Triggers) != 0 {
					t.Errorf("after the holder left: binding %+v (present %v), released %d; want the claim, active, nothing released", got, ok, len(rel.Triggers))
				}
				return
			}
			if ok || len(rel.Triggers) != 1 || rel.Triggers[0].Trigger != held {
				t.Errorf("after the holder left: binding %+v (present %v), released %+v; want it released", got, ok, rel.Triggers)
			}
		})
	}
}
