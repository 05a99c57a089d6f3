package engine

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/wire"
)

func TestRegisterEngineFunctionRejected(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"engine::functions::list"}`)
	m := w.expect(wire.TypeRegistrationRejected)
	if m.FunctionID != "engine::functions::list" {
		t.Errorf("registrationrejected for %q, want engine::functions::list", m.FunctionID)
	}
	if f, ok := e.reg.Function("engine::functions::list"); !ok || f.Owner != e.self {
		t.Fatalf("engine::functions::list after a worker registered it: %+v, %v", f, ok)
	}
	var out struct {
		Functions []any `json:"functions"`
	}
	mustResult(t, w.call("c1", "engine::functions::list", `{}`), &out)
}

// TestReattachKeepsDurableTriggerRights: a durable binding can be removed
// only by the worker that created it, and still after that worker
// reconnects with reattach.
func TestReattachKeepsDurableTriggerRights(t *testing.T) {
	e := startEngine(t)
	creator := dialRaw(t, e)
	var reg struct {
		ID string `json:"id"`
	}
	mustResult(t, creator.call("r1", wire.FnRegisterTrigger,
		`{"trigger_type":"engine::workers-available","function_id":"f::x","config":{}}`), &reg)

	other := dialRaw(t, e)
	res := other.call("u1", wire.FnUnregisterTrigger, `{"id":"`+reg.ID+`"}`)
	if res.Error == nil || res.Error.Code != wire.CodeForbidden || !strings.Contains(res.Error.Message, reg.ID) {
		t.Fatalf("another worker's engine::unregister_trigger: %+v, want FORBIDDEN naming the trigger", res.Error)
	}

	fresh := dialRaw(t, e)
	fresh.sendJSON(`{"type":"reattach","previous_worker_id":"` + creator.id + `","reattach_token":"` + creator.tok + `"}`)
	<-creator.end
	if _, ok := e.reg.Trigger(reg.ID); !ok {
		t.Fatal("the durable binding went with its creator's connection")
	}
	var out struct {
		Removed bool `json:"removed"`
	}
	mustResult(t, fresh.callSkipping("u2", wire.FnUnregisterTrigger, `{"id":"`+reg.ID+`"}`), &out)
	if !out.Removed {
		t.Fatal("the reattached creator could not remove its durable binding")
	}
}
