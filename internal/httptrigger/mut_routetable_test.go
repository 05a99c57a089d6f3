package httptrigger

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/registry"
)

// The route table's bookkeeping (router.go add/remove), driven on the
// router itself. The background rebuild is held off by a parked timer so
// that each step sees the table exactly as the previous one left it.

func tableRoute(t *testing.T, id, holder, fn, path string) *route {
	t.Helper()
	rt, err := parseTrigger(&registry.Trigger{ID: id, Type: "http", FunctionID: fn, Owner: holder,
		Config: jsontext.Value(`{"api_path":"` + path + `"}`)})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// parkedRouter is a router whose removals schedule no rebuild (a pending
// one is "already scheduled"): only a lookup or a conflict rebuilds.
func parkedRouter(t *testing.T) *router {
	r := newRouter()
	r.timer = time.NewTimer(time.Hour)
	r.timer.Stop()
	t.Cleanup(r.close)
	return r
}

func served(r *router, path string) string {
	rt, _ := r.lookup(httptest.NewRequest("GET", path, nil))
	if rt == nil {
		return ""
	}
	return rt.functionID
}

// A removed slot is counted exactly, whatever replaced it: replacing a
// live route (last wins) removes nothing (router.go:256, Swap(rt) == nil
// negated, counted it as a revived slot: the count went to -1, so a later
// removal left it at 0 and the emptied slot, never rebuilt, shadowed the
// less specific route), and reviving a removed one brings the count back
// (router.go:257, dead-- → dead++, left a phantom that rebuilt the table
// for nothing).
func TestRouteTableDeadCount(t *testing.T) {
	r := parkedRouter(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.add(tableRoute(t, "gen", "w", "general", "/p/:id")))
	must(r.add(tableRoute(t, "spec", "w", "special", "/p/special")))
	must(r.add(tableRoute(t, "spec", "w", "special2", "/p/special"))) // last wins, same slot
	if d := r.cur.Load().dead; d != 0 {
		t.Fatalf("after replacing a live route: %d dead slots, want 0", d)
	}
	r.remove("spec")
	if d := r.cur.Load().dead; d != 1 {
		t.Fatalf("after a removal: %d dead slots, want 1", d)
	}
	if fn := served(r, "/p/special"); fn != "general" {
		t.Fatalf("a removed specific route: served by %q, want the general one", fn)
	}

	// Revive a removed slot before any rebuild.
	r2 := parkedRouter(t)
	r = r2
	must(r.add(tableRoute(t, "a", "w", "one", "/a")))
	r.remove("a")
	st := r.cur.Load()
	must(r.add(tableRoute(t, "a", "w", "two", "/a")))
	if r.cur.Load() != st {
		t.Fatal("reviving a slot rebuilt the table")
	}
	if d := st.dead; d != 0 {
		t.Fatalf("after reviving the removed slot: %d dead slots, want 0", d)
	}
	if fn := served(r, "/a"); fn != "two" {
		t.Fatalf("revived route served by %q", fn)
	}
	// The rebuild the removal scheduled finds nothing to do (router.go:338,
	// dead > 0 → dead >= 0, rebuilt anyway).
	r.rebuildIfDirty()
	if r.cur.Load() != st {
		t.Fatal("a rebuild with no removed slot swapped the table")
	}
}

// A route taken over by another trigger of the same worker leaves no entry
// for the trigger it replaced (router.go:253, the "taken over" delete
// negated: the old trigger id kept pointing at the route).
func TestRouteTableTakeoverForgetsOldTrigger(t *testing.T) {
	r := parkedRouter(t)
	if err := r.add(tableRoute(t, "t1", "w", "one", "/x")); err != nil {
		t.Fatal(err)
	}
	if err := r.add(tableRoute(t, "t2", "w", "two", "/x")); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.byTrigger["t1"]; ok || len(r.byTrigger) != 1 || r.byTrigger["t2"] == "" {
		t.Fatalf("trigger index after a takeover: %v", r.byTrigger)
	}
}

// A refused route (a real conflict, no removed slot in the way) does not
// rebuild the table: a rebuild is O(routes) (router.go:266, dead > 0 →
// dead >= 0, rebuilt on every refusal).
func TestRouteConflictDoesNotRebuild(t *testing.T) {
	r := parkedRouter(t)
	if err := r.add(tableRoute(t, "t1", "w", "one", "/a/:x")); err != nil {
		t.Fatal(err)
	}
	st := r.cur.Load()
	if err := r.add(tableRoute(t, "t2", "w", "two", "/a/:y")); err == nil {
		t.Fatal("conflicting route accepted")
	}
	if r.cur.Load() != st {
		t.Fatal("a refused route rebuilt the table")
	}
	// With a removed slot in the way, the rebuild is what lets it in.
	r.remove("t1")
	if err := r.add(tableRoute(t, "t2", "w", "two", "/a/:y")); err != nil {
		t.Fatalf("after removing the conflicting route: %v", err)
	}
	if fn := served(r, "/a/1"); fn != "two" {
		t.Fatalf("served by %q", fn)
	}
}

// A rebuild keeps every live route in the table, so they can still be
// counted and removed (router.go:354, the rebuild's error check negated:
// it dropped every route it had just registered; the new mux still served
// them, but they could never be removed).
func TestRouteTableRebuildKeepsRoutes(t *testing.T) {
	r := parkedRouter(t)
	for _, p := range [][2]string{{"a", "/a"}, {"b", "/b"}} {
		if err := r.add(tableRoute(t, p[0], "w", p[0], p[1])); err != nil {
			t.Fatal(err)
		}
	}
	r.remove("a")
	st := r.cur.Load()
	if fn := served(r, "/a"); fn != "" { // lands on the emptied slot: rebuilds
		t.Fatalf("removed route served by %q", fn)
	}
	if r.cur.Load() == st {
		t.Fatal("no rebuild")
	}
	if n := r.len(); n != 1 {
		t.Fatalf("%d routes after the rebuild, want 1", n)
	}
	r.remove("b")
	r.rebuildIfDirty()
	if fn := served(r, "/b"); fn != "" {
		t.Fatalf("removed after a rebuild, still served by %q", fn)
	}
}

// A removal schedules the background rebuild that takes the removed
// pattern out of the mux (until then it still shapes 405 answers), and a
// rebuild clears the schedule so that the next removal schedules its own
// (router.go:330, r.timer == nil negated: never scheduled; :346,
// r.timer != nil negated: a rebuild left the old timer in place, so no
// later removal was ever rebuilt in the background).
func TestRouteRemovalSchedulesRebuild(t *testing.T) {
	r := newRouter()
	t.Cleanup(r.close)
	for _, id := range []string{"a", "b"} {
		if err := r.add(tableRoute(t, id, "w", id, "/"+id)); err != nil {
			t.Fatal(err)
		}
	}
	scheduledOrDone := func(before *muxState) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.timer != nil || r.cur.Load() != before
	}
	st := r.cur.Load()
	r.remove("a")
	if !scheduledOrDone(st) {
		t.Fatal("a removal scheduled no rebuild")
	}
	r.rebuildIfDirty() // what the timer runs (or, if it ran already, nothing)
	r.mu.Lock()
	pending := r.timer != nil
	r.mu.Unlock()
	if pending {
		t.Fatal("a rebuild left its timer scheduled: later removals would schedule none")
	}
	st = r.cur.Load()
	r.remove("b")
	if !scheduledOrDone(st) {
		t.Fatal("the second removal scheduled no rebuild")
	}
}
