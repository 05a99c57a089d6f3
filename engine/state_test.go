package engine

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice/wire"
)

func eachDataDir(t *testing.T, test func(t *testing.T, e *Engine)) {
	t.Run("memory", func(t *testing.T) {
		test(t, startEngine(t, func(c *Config) { c.DataDir = DataDirMemory; c.State.MaxValueBytes = 256 }))
	})
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		test(t, startEngine(t, func(c *Config) { c.DataDir = dir; c.State.MaxValueBytes = 256 }))
	})
	t.Run("cluster", func(t *testing.T) {
		dir := t.TempDir()
		test(t, startEngine(t, func(c *Config) {
			c.DataDir, c.Cluster.Enabled, c.Cluster.NodeName = dir, true, "test-node"
			c.State.MaxValueBytes = 256
		}))
	})
}

// settle waits until the engine has processed everything w sent so far
// (its reader handles a connection's messages in order).
func settle(t *testing.T, w *rawWorker) {
	t.Helper()
	callOK(t, w, "engine::functions::list", `{}`)
}

func callOK(t *testing.T, w *rawWorker, fn, data string) string {
	t.Helper()
	m := w.callSkipping(invocationID(), fn, data)
	if m.Error != nil {
		t.Fatalf("%s %s: %+v", fn, data, m.Error)
	}
	return string(m.Result)
}

var nextInvocation atomic.Int64

func invocationID() string {
	return fmt.Sprintf("00000000-0000-0000-0000-%012d", nextInvocation.Add(1))
}

func TestStateFunctions(t *testing.T) {
	eachDataDir(t, func(t *testing.T, e *Engine) {
		w := dialRaw(t, e)
		if got := callOK(t, w, "state::get", `{"scope":"s","key":"k"}`); got != "null" {
			t.Fatalf("get of nothing: %s", got)
		}
		if got := callOK(t, w, "state::list_groups", `{}`); got != `{"groups":[]}` {
			t.Fatalf("list_groups of nothing: %s", got)
		}
		if got := callOK(t, w, "state::set", `{"scope":"s","key":"k","value":{"a": 1}}`); got != `{"old_value":null,"new_value":{"a":1}}` {
			t.Fatalf("first set: %s", got)
		}
		if got := callOK(t, w, "state::set", `{"scope":"s","key":"k","data":{"a":2}}`); got != `{"old_value":{"a":1},"new_value":{"a":2}}` {
			t.Fatalf("set through the data alias: %s", got)
		}
		got := callOK(t, w, "state::update", `{"scope":"s","key":"k","ops":[{"type":"increment","path":"a","by":5},{"type":"increment","path":"a.b","by":1},{"type":"append","path":"a","value":1}]}`)
		var up struct {
			Old, New jsontext.Value
			Errors   []struct {
				OpIndex int    `json:"op_index"`
				Code    string `json:"code"`
			}
		}
		if err := json.Unmarshal([]byte(got), &up, json.MatchCaseInsensitiveNames(true)); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(got, `"new_value":{"a":7,"a.b":1}`) || len(up.Errors) != 1 || up.Errors[0].OpIndex != 2 || up.Errors[0].Code != "append.type_mismatch" {
			t.Fatalf("update: %s", got)
		}
		callOK(t, w, "state::set", `{"scope":"s","key":"j","value":"x"}`)
		callOK(t, w, "state::set", `{"scope":"t","key":"z","value":true}`)
		if got := callOK(t, w, "state::list", `{"scope":"s"}`); got != `["x",{"a":7,"a.b":1}]` {
			t.Fatalf("list: %s", got)
		}
		if got := callOK(t, w, "state::list_groups", `{}`); got != `{"groups":["s","t"]}` {
			t.Fatalf("list_groups: %s", got)
		}
		if got := callOK(t, w, "state::delete", `{"scope":"s","key":"j"}`); got != `"x"` {
			t.Fatalf("delete: %s", got)
		}
		if got := callOK(t, w, "state::delete", `{"scope":"s","key":"j"}`); got != `null` {
			t.Fatalf("second delete: %s", got)
		}
		m := w.callSkipping(invocationID(), "state::set", `{"scope":"s","key":"big","value":"`+strings.Repeat("x", 300)+`"}`)
		if m.Error == nil || m.Error.Code != "VALUE_TOO_LARGE" || !strings.Contains(m.Error.Message, "max_value_bytes limit of 256") {
			t.Fatalf("oversized set: %+v", m.Error)
		}
		m = w.callSkipping(invocationID(), "state::update", `{"scope":"s","key":"k","ops":[{"type":"set","path":"big","value":"`+strings.Repeat("x", 300)+`"}]}`)
		if m.Error == nil || m.Error.Code != "VALUE_TOO_LARGE" {
			t.Fatalf("oversized update: %+v", m.Error)
		}
		m = w.callSkipping(invocationID(), "state::set", `{"key":"k","value":1}`)
		if m.Error == nil || m.Error.Code != wire.CodeDeserializationError || !strings.Contains(m.Error.Message, "scope") {
			t.Fatalf("set without scope: %+v", m.Error)
		}
	})
}

// TestStateTriggerEvents: a state binding sees created, updated and
// deleted events with old and new values, only for its scope.
func TestStateTriggerEvents(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.DataDir = DataDirMemory })
	h := dialRaw(t, e)
	h.sendJSON(`{"type":"registerfunction","id":"on::change"}`)
	h.sendJSON(`{"type":"registertrigger","id":"st-1","trigger_type":"state","function_id":"on::change","config":{"scope":"watched"}}`)
	settle(t, h)
	c := dialRaw(t, e)
	waitFunction(t, c, "on::change")
	next := func() string {
		inv := h.awaitInvoke("on::change", func(wire.Message) bool { return true })
		h.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID, Result: jsontext.Value(`null`)})
		var ev map[string]any
		_ = json.Unmarshal(inv.Data, &ev)
		delete(ev, "_caller_worker_id")
		b, _ := json.Marshal(ev, json.Deterministic(true))
		return string(b)
	}
	callOK(t, c, "state::set", `{"scope":"other","key":"k","value":0}`)
	callOK(t, c, "state::set", `{"scope":"watched","key":"k","value":1}`)
	if got := next(); got != `{"event_type":"state:created","key":"k","new_value":1,"old_value":null,"scope":"watched","type":"state"}` {
		t.Fatalf("created: %s", got)
	}
	callOK(t, c, "state::update", `{"scope":"watched","key":"k","ops":[{"type":"increment","path":"","by":2}]}`)
	if got := next(); got != `{"event_type":"state:updated","key":"k","new_value":3,"old_value":1,"scope":"watched","type":"state"}` {
		t.Fatalf("updated: %s", got)
	}
	callOK(t, c, "state::delete", `{"scope":"watched","key":"k"}`)
	if got := next(); got != `{"event_type":"state:deleted","key":"k","new_value":null,"old_value":3,"scope":"watched","type":"state"}` {
		t.Fatalf("deleted: %s", got)
	}
}

// TestModulesOff: a module turned off has no functions and no trigger type.
func TestModulesOff(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.State.Enabled, c.PubSub.Enabled, c.Cron.Enabled = false, false, false })
	w := dialRaw(t, e)
	for _, fn := range []string{"state::get", "publish"} {
		if m := w.callSkipping(invocationID(), fn, `{}`); m.Error == nil || m.Error.Code != wire.CodeFunctionNotFound {
			t.Fatalf("%s with its module off: %+v", fn, m)
		}
	}
	for _, tt := range []string{"state", "subscribe", "cron"} {
		if _, ok := e.reg.TriggerType(tt); ok {
			t.Fatalf("trigger type %s with its module off", tt)
		}
	}
}

// TestPublishReachesEverySubscriberOnce and the condition: only an exact
// false skips.
func TestPublishAndCron(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.DataDir = DataDirMemory })
	h := dialRaw(t, e)
	h.sendJSON(`{"type":"registerfunction","id":"sub::a"}`)
	h.sendJSON(`{"type":"registertrigger","id":"ps-1","trigger_type":"subscribe","function_id":"sub::a","config":{"topic":"orders"}}`)
	h.sendJSON(`{"type":"registertrigger","id":"ps-bad","trigger_type":"subscribe","function_id":"sub::a","config":{}}`)
	if m := h.expect(wire.TypeTriggerRegistrationResult); m.ID != "ps-bad" || m.Error == nil || !strings.Contains(m.Error.Message, "topic is required") {
		t.Fatalf("subscribe without topic: %+v", m)
	}
	c := dialRaw(t, e)
	waitFunction(t, c, "sub::a")
	if m := c.callSkipping(invocationID(), "publish", `{"topic":"","data":1}`); m.Error == nil || m.Error.Code != "topic_not_set" {
		t.Fatalf("publish without topic: %+v", m)
	}
	if got := callOK(t, c, "publish", `{"topic":"orders","data":{"id":7}}`); got != "null" {
		t.Fatalf("publish: %s", got)
	}
	inv := h.awaitInvoke("sub::a", func(wire.Message) bool { return true })
	if !strings.Contains(string(inv.Data), `"id":7`) {
		t.Fatalf("subscriber got %s", inv.Data)
	}

	h.sendJSON(`{"type":"registerfunction","id":"tick::run"}`)
	h.sendJSON(`{"type":"registertrigger","id":"cr-bad","trigger_type":"cron","function_id":"tick::run","config":{"expression":"* * * * *"}}`)
	if m := h.expect(wire.TypeTriggerRegistrationResult); m.ID != "cr-bad" || m.Error == nil || !strings.Contains(m.Error.Message, "want 6 or 7") {
		t.Fatalf("5-field cron: %+v", m)
	}
	h.sendJSON(`{"type":"registertrigger","id":"cr-1","trigger_type":"cron","function_id":"tick::run","config":{"expression":"* * * * * *"}}`)
	inv = h.awaitInvoke("tick::run", func(wire.Message) bool { return true })
	var ev struct {
		Trigger, JobID, ScheduledTime, ActualTime string
	}
	if err := json.Unmarshal(inv.Data, &ev, json.MatchCaseInsensitiveNames(true), lenient); err != nil || ev.Trigger != "cron" || ev.JobID != "cr-1" || ev.ScheduledTime == "" || ev.ActualTime == "" {
		t.Fatalf("cron payload %s: %v", inv.Data, err)
	}
}

// TestStreamFunctions: items by stream > group > item, the stream trigger
// with upstream's message, custom streams served by a worker.
func TestStreamFunctions(t *testing.T) {
	eachDataDir(t, func(t *testing.T, e *Engine) {
		h := dialRaw(t, e)
		h.sendJSON(`{"type":"registerfunction","id":"on::item"}`)
		h.sendJSON(`{"type":"registertrigger","id":"sr-1","trigger_type":"stream","function_id":"on::item","config":{"stream_name":"chat","group_id":"room1"}}`)
		settle(t, h)
		c := dialRaw(t, e)
		waitFunction(t, c, "on::item")
		next := func() map[string]any {
			inv := h.awaitInvoke("on::item", func(wire.Message) bool { return true })
			h.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID, Result: jsontext.Value(`null`)})
			var ev map[string]any
			_ = json.Unmarshal(inv.Data, &ev)
			return ev
		}
		if got := callOK(t, c, "stream::set", `{"stream_name":"chat","group_id":"room1","item_id":"m1","data":{"text":"hi"}}`); got != `{"old_value":null,"new_value":{"text":"hi"}}` {
			t.Fatalf("stream::set: %s", got)
		}
		ev := next()
		if ev["type"] != "stream" || ev["streamName"] != "chat" || ev["groupId"] != "room1" || ev["id"] != "m1" ||
			ev["event"].(map[string]any)["type"] != "create" || ev["timestamp"] == nil {
			t.Fatalf("create event %v", ev)
		}
		callOK(t, c, "stream::set", `{"stream_name":"chat","group_id":"room2","item_id":"m2","data":2}`) // other group: no event
		callOK(t, c, "stream::update", `{"stream_name":"chat","group_id":"room1","item_id":"m1","ops":[{"type":"set","path":"text","value":"yo"}]}`)
		if ev := next(); ev["event"].(map[string]any)["type"] != "update" {
			t.Fatalf("update event %v", ev)
		}
		callOK(t, c, "stream::send", `{"stream_name":"chat","group_id":"room1","type":"typing","data":{"who":"a"}}`)
		if ev := next(); ev["event"].(map[string]any)["type"] != "event" || ev["event"].(map[string]any)["event"].(map[string]any)["type"] != "typing" {
			t.Fatalf("send event %v", ev)
		}
		if got := callOK(t, c, "stream::get", `{"stream_name":"chat","group_id":"room1","item_id":"m1"}`); got != `{"text":"yo"}` {
			t.Fatalf("stream::get: %s", got)
		}
		if got := callOK(t, c, "stream::list", `{"stream_name":"chat","group_id":"room1"}`); got != `[{"text":"yo"}]` {
			t.Fatalf("stream::list: %s", got)
		}
		if got := callOK(t, c, "stream::list_groups", `{"stream_name":"chat"}`); got != `["room1","room2"]` {
			t.Fatalf("stream::list_groups: %s", got)
		}
		if got := callOK(t, c, "stream::list_all", `{}`); got != `{"count":1,"stream":[{"id":"chat","groups":["room1","room2"]}]}` && got != `{"stream":[{"id":"chat","groups":["room1","room2"]}],"count":1}` {
			t.Fatalf("stream::list_all: %s", got)
		}
		if got := callOK(t, c, "stream::delete", `{"stream_name":"chat","group_id":"room1","item_id":"m1"}`); got != `{"old_value":{"text":"yo"}}` {
			t.Fatalf("stream::delete: %s", got)
		}
		if ev := next(); ev["event"].(map[string]any)["type"] != "delete" {
			t.Fatalf("delete event %v", ev)
		}
		// A custom stream: the worker's stream::get(users) answers.
		h.sendJSON(`{"type":"registerfunction","id":"stream::get(users)"}`)
		settle(t, h)
		go func() {
			inv := h.awaitInvoke("stream::get(users)", func(wire.Message) bool { return true })
			h.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID, Result: jsontext.Value(`{"from":"custom"}`)})
		}()
		if got := callOK(t, c, "stream::get", `{"stream_name":"users","group_id":"g","item_id":"u1"}`); got != `{"from":"custom"}` {
			t.Fatalf("custom stream::get: %s", got)
		}
	})
}

// TestStreamClients: a stream client joins a group and an item, gets the
// sync, then live create/update/delete/event pushes; a stream:join binding
// answering {unauthorized: true} refuses a join.
func TestStreamClients(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.DataDir = DataDirMemory; c.Streams.Addr = "127.0.0.1:0" })
	c := dialRaw(t, e)
	callOK(t, c, "stream::set", `{"stream_name":"chat","group_id":"r","item_id":"a","data":1}`)
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+e.StreamClientsAddr()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	read := func() map[string]any {
		t.Helper()
		var m map[string]any
		if err := ws.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	ev := func(m map[string]any) string {
		b, _ := json.Marshal(m["event"], json.Deterministic(true))
		return string(b)
	}
	_ = ws.WriteJSON(map[string]any{"type": "join", "data": map[string]any{"subscriptionId": "s1", "streamName": "chat", "groupId": "r"}})
	if m := read(); ev(m) != `{"data":[1],"type":"sync"}` || m["streamName"] != "chat" || m["groupId"] != "r" {
		t.Fatalf("group sync %v", m)
	}
	callOK(t, c, "stream::set", `{"stream_name":"chat","group_id":"r","item_id":"b","data":2}`)
	if m := read(); ev(m) != `{"data":2,"type":"create"}` || m["id"] != "b" {
		t.Fatalf("create %v", m)
	}
	callOK(t, c, "stream::set", `{"stream_name":"chat","group_id":"other","item_id":"b","data":2}`) // not joined
	callOK(t, c, "stream::send", `{"stream_name":"chat","group_id":"r","type":"typing","data":"x"}`)
	if m := read(); ev(m) != `{"event":{"data":"x","type":"typing"},"type":"event"}` {
		t.Fatalf("event %v", m)
	}
	callOK(t, c, "stream::delete", `{"stream_name":"chat","group_id":"r","item_id":"a"}`)
	if m := read(); ev(m) != `{"data":1,"type":"delete"}` {
		t.Fatalf("delete %v", m)
	}
	_ = ws.WriteJSON(map[string]any{"type": "leave", "data": map[string]any{"subscriptionId": "s1", "streamName": "chat", "groupId": "r"}})

	// A join binding refuses the item "secret".
	c.sendJSON(`{"type":"registerfunction","id":"auth::join"}`)
	c.sendJSON(`{"type":"registertrigger","id":"sj-1","trigger_type":"stream:join","function_id":"auth::join","config":{}}`)
	waitFunction(t, c, "auth::join")
	_ = ws.WriteJSON(map[string]any{"type": "join", "data": map[string]any{"subscriptionId": "s2", "streamName": "chat", "groupId": "r", "id": "secret"}})
	inv := c.awaitInvoke("auth::join", func(wire.Message) bool { return true })
	if !strings.Contains(string(inv.Data), `"id":"secret"`) || !strings.Contains(string(inv.Data), `"subscription_id":"s2"`) {
		t.Fatalf("join event %s", inv.Data)
	}
	c.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID, Result: jsontext.Value(`{"unauthorized":true}`)})
	if m := read(); ev(m) != `{"type":"unauthorized"}` {
		t.Fatalf("refused join %v", m)
	}
	callOK(t, c, "stream::set", `{"stream_name":"chat","group_id":"r","item_id":"secret","data":"s"}`)
	callOK(t, c, "stream::send", `{"stream_name":"chat","group_id":"r","id":"secret","type":"ping","data":0}`)
	_ = ws.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	var m map[string]any
	if err := ws.ReadJSON(&m); err == nil {
		t.Fatalf("a refused or left subscription got %v", m)
	}
}

// TestCronNoOverlap: a run that outlasts the schedule's period delays the
// next one: never two runs of one job at once, and the missed times are
// skipped, not queued.
func TestCronNoOverlap(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.DataDir = DataDirMemory })
	h := dialRaw(t, e)
	h.sendJSON(`{"type":"registerfunction","id":"tick::slow"}`)
	h.sendJSON(`{"type":"registertrigger","id":"cr-slow","trigger_type":"cron","function_id":"tick::slow","config":{"expression":"* * * * * *"}}`)
	first := h.awaitInvoke("tick::slow", func(wire.Message) bool { return true })
	// Unanswered for 1.5 s (a period and a half): no second run meanwhile.
	select {
	case m := <-h.in:
		t.Fatalf("while the first run was unanswered: %+v", m)
	case <-time.After(1500 * time.Millisecond):
	}
	h.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: first.InvocationID, FunctionID: first.FunctionID, Result: jsontext.Value(`null`)})
	second := h.awaitInvoke("tick::slow", func(wire.Message) bool { return true })
	var a, b struct {
		ScheduledTime time.Time `json:"scheduled_time"`
	}
	_ = json.Unmarshal(first.Data, &a, lenient)
	_ = json.Unmarshal(second.Data, &b, lenient)
	if !b.ScheduledTime.After(a.ScheduledTime.Add(time.Second)) {
		t.Fatalf("second run scheduled %v after the first's %v: a missed time was queued", b.ScheduledTime, a.ScheduledTime)
	}
}

// TestEventDeliveriesBounded: with every delivery slot held by a state
// trigger handler that does not answer, further events are dropped and
// counted instead of piling up goroutines. (PubSub has its own bounded
// queue with publisher backpressure: TestAttackPubSub* in interop.)
func TestEventDeliveriesBounded(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.DataDir = DataDirMemory })
	e.modules.events = make(chan struct{}, 1)
	h := dialRaw(t, e)
	h.sendJSON(`{"type":"registerfunction","id":"sub::stuck"}`)
	h.sendJSON(`{"type":"registertrigger","id":"st-stuck","trigger_type":"state","function_id":"sub::stuck","config":{"scope":"s"}}`)
	settle(t, h)
	c := dialRaw(t, e)
	waitFunction(t, c, "sub::stuck")
	callOK(t, c, "state::set", `{"scope":"s","key":"k","value":1}`)
	h.awaitInvoke("sub::stuck", func(wire.Message) bool { return true }) // holds the only slot
	for i := range 5 {
		callOK(t, c, "state::set", fmt.Sprintf(`{"scope":"s","key":"k","value":%d}`, i+2))
	}
	if n := e.modules.dropped.Load(); n != 5 {
		t.Fatalf("dropped %d events, want 5", n)
	}
}

// TestCustomStreamOnCallersConnection: a worker calls stream::get on a
// custom stream it serves itself. The builtin waits for that worker's
// answer, so it must not run on the worker's own reader (with the stream
// builtins run synchronously on the reader, the answer was never read and
// the call hung).
func TestCustomStreamOnCallersConnection(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.DataDir = DataDirMemory })
	h := dialRaw(t, e)
	h.sendJSON(`{"type":"registerfunction","id":"stream::get(mine)"}`)
	waitFunction(t, h, "stream::get(mine)")
	id := invocationID()
	h.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: id, FunctionID: "stream::get", Data: jsontext.Value(`{"stream_name":"mine","group_id":"g","item_id":"i"}`)})
	inv := h.awaitInvoke("stream::get(mine)", func(wire.Message) bool { return true })
	h.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID, Result: jsontext.Value(`{"mine":true}`)})
	res := h.await(func(m wire.Message) bool { return m.Type == wire.TypeInvocationResult && m.InvocationID == id })
	if res.Error != nil || string(res.Result) != `{"mine":true}` {
		t.Fatalf("stream::get of a custom stream served by the caller: %+v", res)
	}
}
