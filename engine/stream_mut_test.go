package engine

import (
	"context"
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
