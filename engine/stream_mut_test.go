package engine

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/wire"
)

// Tests for the stream.go and stream_ws.go mutants the engine tests did
// not detect (docs/testing.md, "Mutation testing"). Each names the
// mutants it kills; each was applied by hand and the test fails on it.

// TestStreamCallFormWithoutCustom: stream::set and stream::delete's call
// form (used when a worker serves the stream) falls back to the store
// when that worker's function is gone by the time of the call: the value
// is checked, bounded, stored and deleted as the store form does. Kills
// stream.go:312, :315, :319, :322, :370 ×2, :373 (CONDITIONALS_NEGATION).
func TestStreamCallFormWithoutCustom(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.State.MaxValueBytes = 16 })
	m := e.modules.streams
	ctx := context.Background()
	str := func(s string) *string { return &s }
	item := func(data string) (*invocation.Request, streamItemInput) {
		in := streamItemInput{StreamName: str("s"), GroupID: str("g"), ItemID: str("i"), Data: jsontext.Value(data)}
		b, _ := json.Marshal(in)
		return &invocation.Request{FunctionID: "stream::set", Data: b}, in
	}
	set := func(data string) (any, *wire.ErrorBody) { req, in := item(data); return m.set(ctx, req, in) }
	get := func() (any, *wire.ErrorBody) { req, in := item(""); return m.get(ctx, req, in) }
	del := func() (any, *wire.ErrorBody) { req, in := item(""); return m.delete(ctx, req, in) }
	result := func(v any, eb *wire.ErrorBody) string {
		t.Helper()
		if eb != nil {
			t.Fatalf("unexpected error %+v", eb)
		}
		b, _ := json.Marshal(v, json.Deterministic(true))
		return string(b)
	}
	if got := result(set(`{"a": 1}`)); got != `{"old_value":null,"new_value":{"a":1}}` {
		t.Fatalf("first set: %s", got)
	}
	if got := result(set(`2`)); got != `{"old_value":{"a":1},"new_value":2}` {
		t.Fatalf("second set: %s", got)
	}
	if _, eb := set(`{"a":`); eb == nil || eb.Code != wire.CodeDeserializationError {
		t.Fatalf("set of malformed data: %+v", eb)
	}
	if _, eb := set(`"` + strings.Repeat("x", 20) + `"`); eb == nil || eb.Code != "VALUE_TOO_LARGE" {
		t.Fatalf("set past max_value_bytes: %+v", eb)
	}
	if got := result(get()); got != `2` {
		t.Fatalf("get after the refused sets: %s", got)
	}
	if got := result(del()); got != `{"old_value":2}` {
		t.Fatalf("delete: %s", got)
	}
	if got := result(del()); got != `{"old_value":null}` {
		t.Fatalf("second delete: %s", got)
	}
}

// TestStreamAuthFunction: with streams.auth_function set, a client whose
// auth call fails is refused 401 before the upgrade; one it accepts is
// upgraded, and the context it answered goes to the stream:join bindings.
// Kills stream_ws.go:170 (CONDITIONALS_NEGATION).
func TestStreamAuthFunction(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.Streams.Addr, c.Streams.AuthFunction = "127.0.0.1:0", "auth::stream" })
	h := dialRaw(t, e)
	h.sendJSON(`{"type":"registerfunction","id":"auth::stream"}`)
	h.sendJSON(`{"type":"registerfunction","id":"on::join"}`)
	h.sendJSON(`{"type":"registertrigger","id":"sj-ctx","trigger_type":"stream:join","function_id":"on::join","config":{}}`)
	settle(t, h)
	url := "ws://" + e.StreamClientsAddr() + "/?who="
	type dialed struct {
		ws   *websocket.Conn
		resp *http.Response
		err  error
	}
	dial := func(who string) <-chan dialed {
		ch := make(chan dialed, 1)
		go func() {
			ws, resp, err := websocket.DefaultDialer.Dial(url+who, nil)
			ch <- dialed{ws, resp, err}
		}()
		return ch
	}
	answer := func(inv wire.Message, result string, eb *wire.ErrorBody) {
		m := wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID, Error: eb}
		if eb == nil {
			m.Result = jsontext.Value(result)
		}
		h.send(m)
	}
	got := func(ch <-chan dialed) dialed {
		select {
		case d := <-ch:
			return d
		case <-time.After(5 * time.Second):
			t.Fatal("the stream client's handshake was not answered")
		}
		return dialed{}
	}

	refused := dial("mallory")
	inv := h.awaitInvoke("auth::stream", anyInvoke)
	if !strings.Contains(string(inv.Data), `"who":["mallory"]`) {
		t.Fatalf("auth call input %s", inv.Data)
	}
	answer(inv, "", &wire.ErrorBody{Code: "DENIED", Message: "no"})
	if d := got(refused); d.err == nil || d.resp == nil || d.resp.StatusCode != http.StatusUnauthorized {
		if d.ws != nil {
			d.ws.Close()
		}
		t.Fatalf("a client its auth call failed for: %v, %+v; want 401", d.err, d.resp)
	}

	accepted := dial("alice")
	answer(h.awaitInvoke("auth::stream", anyInvoke), `{"context":{"user":"alice"}}`, nil)
	d := got(accepted)
	if d.err != nil {
		t.Fatalf("a client its auth call accepted: %v", d.err)
	}
	defer d.ws.Close()
	_ = d.ws.WriteJSON(map[string]any{"type": "join", "data": map[string]any{"subscriptionId": "s1", "streamName": "chat", "groupId": "r"}})
	join := h.awaitInvoke("on::join", anyInvoke)
	if !strings.Contains(string(join.Data), `"context":{"user":"alice"}`) {
		t.Fatalf("join event without the auth context: %s", join.Data)
	}
	answer(join, "null", nil)
}

// TestStreamTriggerItemFilter: a stream binding with an item_id fires for
// that item only: not for another item of its group, nor for an event
// sent to the group without an id; a binding without stream_name is
// refused. Kills stream.go:267 (CONDITIONALS_NEGATION, columns 27 and
// 46: the first dereferenced the missing id of the group event, the
// second fired for the other items instead) and :45 (column 10: a binding
// without stream_name was accepted).
func TestStreamTriggerItemFilter(t *testing.T) {
	e := startEngine(t)
	h := dialRaw(t, e)
	h.sendJSON(`{"type":"registerfunction","id":"on::item"}`)
	h.sendJSON(`{"type":"registertrigger","id":"sr-none","trigger_type":"stream","function_id":"on::item","config":{"group_id":"g"}}`)
	if m := h.expect(wire.TypeTriggerRegistrationResult); m.ID != "sr-none" || m.Error == nil || !strings.Contains(m.Error.Message, "stream_name is required") {
		t.Fatalf("stream binding without stream_name: %+v", m)
	}
	h.sendJSON(`{"type":"registertrigger","id":"sr-item","trigger_type":"stream","function_id":"on::item","config":{"stream_name":"s","group_id":"g","item_id":"m1"}}`)
	settle(t, h)
	c := dialRaw(t, e)
	callOK(t, c, "stream::set", `{"stream_name":"s","group_id":"g","item_id":"m2","data":1}`)
	callOK(t, c, "stream::send", `{"stream_name":"s","group_id":"g","type":"all","data":0}`)
	callOK(t, c, "stream::set", `{"stream_name":"s","group_id":"g","item_id":"m1","data":2}`)
	inv := h.awaitInvoke("on::item", anyInvoke)
	h.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID, Result: jsontext.Value(`null`)})
	var ev struct {
		ID    *string        `json:"id"`
		Event map[string]any `json:"event"`
	}
	_ = json.Unmarshal(inv.Data, &ev)
	if ev.ID == nil || *ev.ID != "m1" || ev.Event["type"] != "create" {
		t.Fatalf("first event of the item binding: %s, want the create of m1", inv.Data)
	}
}

// TestCustomStreamAnswersWithoutOldValue: a custom stream's delete that
// answers no old_value deleted nothing (no event, old_value null), and
// its set that answers no old_value created the item (a create event, not
// an update). Kills stream.go:367 and :309 (CONDITIONALS_BOUNDARY,
// len(old_value) > 0 → >= 0: an absent old value counted as one).
func TestCustomStreamAnswersWithoutOldValue(t *testing.T) {
	e := startEngine(t)
	h := dialRaw(t, e) // serves stream "ext"
	b := dialRaw(t, e) // its binding: a worker of its own, so no event is skipped while h is awaited
	c := dialRaw(t, e)
	h.sendJSON(`{"type":"registerfunction","id":"stream::set(ext)"}`)
	h.sendJSON(`{"type":"registerfunction","id":"stream::delete(ext)"}`)
	settle(t, h)
	b.sendJSON(`{"type":"registerfunction","id":"on::ext"}`)
	b.sendJSON(`{"type":"registertrigger","id":"t-ext","trigger_type":"stream","function_id":"on::ext","config":{"stream_name":"ext"}}`)
	settle(t, b)
	call := func(fn, data, custom, result string) string {
		t.Helper()
		id := invocationID()
		c.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: id, FunctionID: fn, Data: jsontext.Value(data)})
		inv := h.awaitInvoke(custom, anyInvoke)
		h.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID, Result: jsontext.Value(result)})
		m := c.await(func(m wire.Message) bool { return m.Type == wire.TypeInvocationResult && m.InvocationID == id })
		if m.Error != nil {
			t.Fatalf("%s: %+v", fn, m.Error)
		}
		return string(m.Result)
	}
	event := func() string {
		t.Helper()
		inv := b.awaitInvoke("on::ext", anyInvoke)
		b.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID, Result: jsontext.Value(`null`)})
		var ev struct {
			ID    string         `json:"id"`
			Event map[string]any `json:"event"`
		}
		_ = json.Unmarshal(inv.Data, &ev)
		return fmt.Sprint(ev.ID, " ", ev.Event["type"])
	}
	if got := call("stream::delete", `{"stream_name":"ext","group_id":"g","item_id":"i"}`, "stream::delete(ext)", `{}`); got != `{"old_value":null}` {
		t.Fatalf("custom delete answering {}: %s", got)
	}
	if got := call("stream::set", `{"stream_name":"ext","group_id":"g","item_id":"j","data":5}`, "stream::set(ext)", `{"new_value":5}`); got != `{"old_value":null,"new_value":5}` {
		t.Fatalf("custom set answering no old_value: %s", got)
	}
	if got := event(); got != "j create" {
		t.Fatalf("first event: %q, want the create of j (the delete of nothing fires none)", got)
	}
	callOK(t, c, "stream::send", `{"stream_name":"ext","group_id":"g","id":"k","type":"ping"}`)
	if got := event(); got != "k event" {
		t.Fatalf("second event: %q, want the send to k", got)
	}
}
