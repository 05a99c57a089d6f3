package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

// When another worker registers a trigger type that has bindings, the
// bindings move to it (registertrigger) and the previous provider is told
// to stop serving them (unregistertrigger) before anything the engine
// sends it later.
// Mutations: triggers.go registerWorkerTriggerType's move test
// (mv.From != nil, mv.From != tt negated): the old provider is never told.
func TestTriggerTypeTakeoverDetachesOldProvider(t *testing.T) {
	e := startEngine(t)
	oldP := dialRaw(t, e)
	oldP.sendJSON(`{"type":"registertriggertype","id":"tt","description":"old"}`)
	oldP.call("sync0", wire.FnChannelsCreate, `{}`)
	owner := dialRaw(t, e)
	owner.sendJSON(`{"type":"registerfunction","id":"c::f"}`)
	owner.sendJSON(`{"type":"registertrigger","id":"b1","trigger_type":"tt","function_id":"c::f","config":{"k":1}}`)
	if m := oldP.expectSkipping(wire.TypeRegisterTrigger); m.ID != "b1" {
		t.Fatalf("old provider got registertrigger %+v", m)
	}
	newP := dialRaw(t, e)
	newP.announce("new") // fixes its namespace: the type is not held back
	newP.sendJSON(`{"type":"registertriggertype","id":"tt","description":"new"}`)
	if m := newP.expectSkipping(wire.TypeRegisterTrigger); m.ID != "b1" || string(m.Config) != `{"k":1}` {
		t.Fatalf("new provider got registertrigger %+v", m)
	}
	// The detach was sent to the old provider before the new one was told;
	// a call made now is answered after it.
	oldP.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: "sync1", FunctionID: wire.FnChannelsCreate, Data: jsontext.Value(`{}`)})
	m := oldP.await(func(m wire.Message) bool {
		return m.Type == wire.TypeUnregisterTrigger || m.Type == wire.TypeInvocationResult && m.InvocationID == "sync1"
	})
	if m.Type != wire.TypeUnregisterTrigger || m.ID != "b1" {
		t.Fatalf("the old provider got %+v, want unregistertrigger b1", m)
	}
}

// registertrigger needs id, trigger_type and function_id: a binding that
// lacks one is refused with a triggerregistrationresult, unless it has no
// id to answer for (then the log says why, and nothing is sent).
// Mutations: the id test of the answer negated (triggers.go
// registerTrigger; reported not covered before this test).
func TestRegisterTriggerMissingFields(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"c::f"}`)
	w.sendJSON(`{"type":"registertrigger","trigger_type":"cron","function_id":"c::f","config":{}}`)
	for _, c := range []string{
		`{"type":"registertrigger","id":"no-type","function_id":"c::f","config":{}}`,
		`{"type":"registertrigger","id":"no-fn","trigger_type":"cron","config":{}}`,
	} {
		w.sendJSON(c)
	}
	// Per connection, messages are handled in order: each answer comes
	// before the result of the call sent after them.
	w.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: "sync", FunctionID: wire.FnChannelsCreate, Data: jsontext.Value(`{}`)})
	var refused []string
	for {
		m := w.await(func(m wire.Message) bool {
			return m.Type == wire.TypeTriggerRegistrationResult || m.Type == wire.TypeInvocationResult && m.InvocationID == "sync"
		})
		if m.Type == wire.TypeInvocationResult {
			break
		}
		if m.Error == nil || m.Error.Code != wire.CodeTriggerRegistration {
			t.Errorf("refusal of %q: %+v", m.ID, m.Error)
		}
		refused = append(refused, m.ID)
	}
	if len(refused) != 2 || refused[0] != "no-type" || refused[1] != "no-fn" {
		t.Errorf("refused %q, want no-type and no-fn (nothing for the binding without an id)", refused)
	}
	if n := len(e.reg.Triggers("")); n != 0 {
		t.Errorf("%d bindings stored", n)
	}
}

// A connection whose namespace is not yet fixed that registers a binding
// id another worker holds is not refused at once: the claim is kept (a
// reconnecting worker's replay takes the binding over when its old
// connection ends) and answered only once the namespace is settled. The
// worker's own binding ids are registered as usual meanwhile.
// Mutation: the holder test negated (triggers.go registerTrigger,
// cur.Holder() == t.Holder()): the other worker's id is refused at once.
func TestTentativeTriggerOfAnotherIsHeld(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.RegistrationNamespaceGrace = time.Minute })
	a := dialRaw(t, e)
	a.announce("a")
	a.sendJSON(`{"type":"registerfunction","id":"a::f"}`)
	a.sendJSON(`{"type":"registertrigger","id":"b1","trigger_type":"engine::functions-available","function_id":"a::f","config":{}}`)
	a.call("sync", wire.FnChannelsCreate, `{}`)
	b := dialRaw(t, e) // not announced: its namespace is tentative
	b.sendJSON(`{"type":"registerfunction","id":"b::f"}`)
	b.sendJSON(`{"type":"registertrigger","id":"b1","trigger_type":"engine::functions-available","function_id":"b::f","config":{}}`)
	b.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: "sync", FunctionID: wire.FnChannelsCreate, Data: jsontext.Value(`{}`)})
	m := b.await(func(m wire.Message) bool {
		return m.Type == wire.TypeTriggerRegistrationResult || m.Type == wire.TypeInvocationResult && m.InvocationID == "sync"
	})
	if m.Type != wire.TypeInvocationResult {
		t.Fatalf("a tentative claim on another worker's binding was answered at once: %+v", m)
	}
	if tr, ok := e.reg.Trigger("b1"); !ok || tr.FunctionID != "a::f" || tr.Owner != a.id {
		t.Errorf("binding b1 now %+v", tr)
	}
}

// A refused registertrigger echoes its ids, cut to 64 bytes (with the
// length) only when they are over max_id_length.
// Mutations: the length test of refuseTrigger's echo (> → >=, negated).
func TestRefusedTriggerEchoesIDs(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	max := e.cfg.MaxIDLength
	for _, n := range []int{max, max + 1} {
		id := strings.Repeat("i", n)
		w.sendJSON(`{"type":"registertrigger","id":"` + id + `","trigger_type":"cron","config":{}}`) // no function_id
		m := w.expectSkipping(wire.TypeTriggerRegistrationResult)
		want := id
		if n > max {
			want = registry.ShortID(id)
		}
		if m.ID != want || m.Error == nil {
			t.Errorf("id of %d bytes (max %d) echoed as %d bytes %q, want %d bytes", n, max, len(m.ID), registry.ShortID(m.ID), len(want))
		}
	}
}

// Once its namespace is fixed, a worker registering a binding id another
// worker holds is refused FORBIDDEN.
// Mutation: the ErrNotOwner test of putTrigger negated (reported not
// covered before this test).
func TestTriggerOfAnotherForbidden(t *testing.T) {
	e := startEngine(t)
	a := dialRaw(t, e)
	a.sendJSON(`{"type":"registerfunction","id":"a::f"}`)
	a.sendJSON(`{"type":"registertrigger","id":"b1","trigger_type":"engine::functions-available","function_id":"a::f","config":{}}`)
	a.call("sync", wire.FnChannelsCreate, `{}`)
	b := dialRaw(t, e)
	b.announce("b")
	b.sendJSON(`{"type":"registertrigger","id":"b1","trigger_type":"engine::functions-available","function_id":"a::f","config":{}}`)
	if m := b.expectSkipping(wire.TypeTriggerRegistrationResult); m.ID != "b1" || m.Error == nil || m.Error.Code != wire.CodeForbidden {
		t.Errorf("another worker's binding id: %+v", m.Error)
	}
}
