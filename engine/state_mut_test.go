package engine

import (
	"strings"
	"testing"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/wire"
)

// Tests for the state.go mutants the engine tests did not detect
// (docs/testing.md, "Mutation testing"). Each names the mutants it kills;
// each was applied by hand and the test fails on it.

// TestValueTooLargeBoundary: state.max_value_bytes admits a value of
// exactly that many bytes (compacted JSON) and refuses one byte more,
// naming both sizes; 0 bounds nothing. Kills state.go:154
// (CONDITIONALS_BOUNDARY ×2).
func TestValueTooLargeBoundary(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.State.MaxValueBytes = 8 })
	w := dialRaw(t, e)
	callOK(t, w, "state::set", `{"scope":"s","key":"k","value": "123456" }`) // 8 bytes compacted
	eb := callErr(t, w, "state::set", `{"scope":"s","key":"k","value":"1234567"}`)
	if eb.Code != "VALUE_TOO_LARGE" || !strings.Contains(eb.Message, "value of 9 bytes exceeds the configured max_value_bytes limit of 8") {
		t.Fatalf("a value one byte over the limit: %+v", eb)
	}
	if got := callOK(t, w, "state::get", `{"scope":"s","key":"k"}`); got != `"123456"` {
		t.Fatalf("stored %s", got)
	}

	unbounded := startEngine(t, func(c *Config) { c.State.MaxValueBytes = 0 })
	u := dialRaw(t, unbounded)
	big := `"` + strings.Repeat("x", 4096) + `"`
	callOK(t, u, "state::set", `{"scope":"s","key":"k","value":`+big+`}`)
	if got := callOK(t, u, "state::get", `{"scope":"s","key":"k"}`); got != big {
		t.Fatalf("with no limit, stored %d bytes", len(got))
	}
}

// TestStateTriggerKeyFilter: a state binding with a key and no scope fires
// for that key in any scope and for no other key; deleting a key that
// holds nothing fires nothing. Kills state.go:417 (CONDITIONALS_NEGATION
// of the key tests, columns 58 and 75).
func TestStateTriggerKeyFilter(t *testing.T) {
	e := startEngine(t)
	h := dialRaw(t, e)
	h.sendJSON(`{"type":"registerfunction","id":"on::key"}`)
	h.sendJSON(`{"type":"registertrigger","id":"st-key","trigger_type":"state","function_id":"on::key","config":{"key":"k1"}}`)
	settle(t, h)
	c := dialRaw(t, e)
	next := func() string {
		t.Helper()
		inv := h.awaitInvoke("on::key", anyInvoke)
		h.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID, Result: jsontext.Value(`null`)})
		var ev struct {
			Scope     string `json:"scope"`
			Key       string `json:"key"`
			EventType string `json:"event_type"`
		}
		_ = json.Unmarshal(inv.Data, &ev)
		return ev.EventType + " " + ev.Scope + "/" + ev.Key
	}
	callOK(t, c, "state::set", `{"scope":"a","key":"k2","value":1}`)
	callOK(t, c, "state::delete", `{"scope":"b","key":"k1"}`) // nothing there
	callOK(t, c, "state::set", `{"scope":"b","key":"k1","value":2}`)
	if got := next(); got != "state:created b/k1" {
		t.Fatalf("first event %q, want the set of b/k1", got)
	}
	callOK(t, c, "state::delete", `{"scope":"b","key":"k1"}`)
	if got := next(); got != "state:deleted b/k1" {
		t.Fatalf("second event %q, want the delete of b/k1", got)
	}
}
