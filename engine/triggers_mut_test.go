package engine

import (
	"testing"

	"github.com/go-json-experiment/json/jsontext"

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
