package engine

import (
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/gorilla/websocket"
)

// Tests for the stream_ws.go mutants the engine tests did not detect
// (docs/testing.md, "Mutation testing", scripts/mutants). Each names the
// mutants it kills; each was applied and the test fails on it.

// streamClientMut is a stream client socket for these tests.
type streamClientMut struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialStreamClientMut(t *testing.T, e *Engine) *streamClientMut {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+e.StreamClientsAddr()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return &streamClientMut{t: t, ws: ws}
}

func (c *streamClientMut) send(typ, sub, stream, group string, id *string) {
	c.t.Helper()
	d := map[string]any{"subscriptionId": sub, "streamName": stream, "groupId": group}
	if id != nil {
		d["id"] = *id
	}
	if err := c.ws.WriteJSON(map[string]any{"type": typ, "data": d}); err != nil {
		c.t.Fatal(err)
	}
}

// next reads the next message and returns it as "<groupId>/<id> <event>"
// (the event in deterministic JSON); the deadline only turns a message
// that never comes into a failure.
func (c *streamClientMut) next() string {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	var m struct {
		GroupID string         `json:"groupId"`
		ID      *string        `json:"id"`
		Event   map[string]any `json:"event"`
	}
	if err := c.ws.ReadJSON(&m); err != nil {
		c.t.Fatalf("stream client: %v", err)
	}
	id := "-"
	if m.ID != nil {
		id = *m.ID
	}
	b, _ := json.Marshal(m.Event, json.Deterministic(true))
	return m.GroupID + "/" + id + " " + string(b)
}

// TestStreamClientItemSubscription: a stream client that joins one item
// gets that item in its sync, then only that item's changes: not another
// item's of the group, nor an event sent to the group without an id.
// Kills stream_ws.go:361 (CONDITIONALS_NEGATION, columns 29 and 47: the
// first dereferenced the missing id of the group event and crashed the
// fan-out, the second pushed the other item's change instead).
func TestStreamClientItemSubscription(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.Streams.Addr = "127.0.0.1:0" })
	w := dialRaw(t, e)
	callOK(t, w, "stream::set", `{"stream_name":"s","group_id":"g","item_id":"a","data":1}`)
	callOK(t, w, "stream::set", `{"stream_name":"s","group_id":"g","item_id":"b","data":2}`)
	c := dialStreamClientMut(t, e)
	a := "a"
	c.send("join", "sub", "s", "g", &a)
	if got := c.next(); got != `g/a {"data":1,"type":"sync"}` {
		t.Fatalf("sync of the joined item: %s", got)
	}
	callOK(t, w, "stream::set", `{"stream_name":"s","group_id":"g","item_id":"b","data":3}`)
	callOK(t, w, "stream::send", `{"stream_name":"s","group_id":"g","type":"all","data":0}`)
	callOK(t, w, "stream::set", `{"stream_name":"s","group_id":"g","item_id":"a","data":4}`)
	if got := c.next(); got != `g/a {"data":4,"type":"update"}` {
		t.Fatalf("first push after the join: %s, want the update of item a", got)
	}
}

// TestStreamClientLeaveKeepsOthers: when one of two subscriptions to a
// group leaves, the other still gets the group's changes, once. Kills
// stream_ws.go:252 (CONDITIONALS_NEGATION: the group's subscriber set was
// dropped while a subscriber was left in it).
func TestStreamClientLeaveKeepsOthers(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.Streams.Addr = "127.0.0.1:0" })
	w := dialRaw(t, e)
	c := dialStreamClientMut(t, e)
	for _, sub := range []string{"s1", "s2"} {
		c.send("join", sub, "s", "g", nil)
		if got := c.next(); got != `g/- {"data":[],"type":"sync"}` {
			t.Fatalf("sync of %s: %s", sub, got)
		}
	}
	c.send("leave", "s1", "s", "g", nil)
	c.send("join", "s3", "s", "h", nil) // its sync: the leave before it is done
	if got := c.next(); got != `h/- {"data":[],"type":"sync"}` {
		t.Fatalf("sync of s3: %s", got)
	}
	callOK(t, w, "stream::set", `{"stream_name":"s","group_id":"g","item_id":"x","data":1}`)
	callOK(t, w, "stream::set", `{"stream_name":"s","group_id":"h","item_id":"y","data":2}`)
	if got := c.next(); got != `g/x {"data":1,"type":"create"}` {
		t.Fatalf("after s1 left, the group's change: %s, want it once for s2", got)
	}
	if got := c.next(); got != `h/y {"data":2,"type":"create"}` {
		t.Fatalf("next push: %s, want the change of group h (the one of g only once)", got)
	}
}

// TestStreamClientHeaderTimeout: the stream client listener bounds the
// time a connection may take to send its request's headers (10 s), so a
// client that connects and sends nothing does not hold a connection for
// ever. Kills stream_ws.go:124 (ARITHMETIC_BASE, 10 * time.Second → 10 /
// time.Second, which is 0: no bound). The setting is checked rather than
// a silent client waited out: that takes the full 10 s.
func TestStreamClientHeaderTimeout(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.Streams.Addr = "127.0.0.1:0" })
	if got := e.modules.streams.hub.srv.ReadHeaderTimeout; got != 10*time.Second {
		t.Fatalf("stream client listener's ReadHeaderTimeout %v, want 10s", got)
	}
}
