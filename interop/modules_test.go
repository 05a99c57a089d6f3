package interop

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	sluice "github.com/sluicehq/sluice"
)

// The platform modules (issue 11) through real sockets: state, publish /
// subscribe and cron from the Go SDK and the official Node SDK 0.22.1
// and the official Python SDK 0.25.0 (trigger / trigger_async and
// registerTrigger / register_trigger: the SDKs' own API).
//
// On f9f823a (before the modules) every state::* and publish call was
// function_not_found and the state, subscribe and cron bindings stayed
// parked.

// modSeen is what the Node handlers report to gomod::seen.
type modSeen struct {
	From string          `json:"from"`
	Kind string          `json:"kind"`
	Data json.RawMessage `json:"data"`
}

type nodeCallOut struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    *string `json:"code"`
		Message string  `json:"message"`
	} `json:"error"`
}

// modCall calls function_id through the Node worker's <prefix>::call.
func modCall(ctx context.Context, t *testing.T, c *sluice.Client, p, fn string, payload any) json.RawMessage {
	t.Helper()
	out, err := sluice.Call[nodeCallOut](ctx, c, p+"::call", map[string]any{"function_id": fn, "payload": payload})
	if err != nil || out.Error != nil {
		t.Fatalf("node %s: %v %+v", fn, err, out.Error)
	}
	return out.Result
}

func mustTrigger(ctx context.Context, t *testing.T, c *sluice.Client, fn string, payload any) json.RawMessage {
	t.Helper()
	v, err := c.Trigger(ctx, fn, payload)
	if err != nil {
		t.Fatalf("%s: %v", fn, err)
	}
	return v
}

func jsonEq(t *testing.T, what string, got json.RawMessage, want string) {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("%s: %s: %v", what, got, err)
	}
	if err := json.Unmarshal([]byte(want), &b); err != nil {
		t.Fatal(err)
	}
	ga, _ := json.Marshal(a)
	gb, _ := json.Marshal(b)
	if string(ga) != string(gb) {
		t.Fatalf("%s: got %s, want %s", what, ga, gb)
	}
}

func TestModulesSDKs(t *testing.T) {
	for _, sdk := range []struct{ flavour, prefix string }{{"node-0.22.1", "nmod"}, {"python-0.25.0", "pmod"}} {
		t.Run(sdk.flavour, func(t *testing.T) { testModules(t, flavourNamed(sdk.flavour), sdk.prefix) })
	}
}

func testModules(t *testing.T, f *flavour, p string) {
	f.require(t)
	e := startEngine(t, "127.0.0.1:0", "--data-dir", filepath.Join(t.TempDir(), "data"))
	ctx := ctxFor(t, 30*time.Second)
	c := connectGo(t, e, "modules-go")
	seen := make(chan modSeen, 1024)
	if err := sluice.Register(c, "gomod::seen", func(_ context.Context, in modSeen) (any, error) {
		select {
		case seen <- in:
		default:
		}
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	goTopic := make(chan json.RawMessage, 16)
	if err := sluice.Register(c, "gomod::on_topic", func(_ context.Context, in json.RawMessage) (any, error) {
		goTopic <- in
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterTrigger(sluice.TriggerSpec{Type: "subscribe", FunctionID: "gomod::on_topic", Config: map[string]any{"topic": p + "-topic"}}); err != nil {
		t.Fatal(err)
	}
	startWorker(t, f, e, f.script("modules"), p)
	waitFunctions(ctx, t, c, p+"::call", p+"::incr", p+"::on_state", p+"::odd_only", "gomod::seen", "stream::list_groups("+p+"-custom)")
	await := func(kind string, match func(modSeen) bool) modSeen {
		t.Helper()
		for {
			select {
			case s := <-seen:
				if s.Kind == kind && match(s) {
					return s
				}
				if s.Kind == "state" {
					t.Fatalf("unexpected state event %s", s.Data)
				}
			case <-ctx.Done():
				t.Fatalf("no %s event", kind)
			}
		}
	}

	// Written by one SDK, read by the other.
	jsonEq(t, "node state::set", modCall(ctx, t, c, p, "state::set", map[string]any{"scope": "shared", "key": "a", "value": map[string]int{"n": 1}}),
		`{"old_value":null,"new_value":{"n":1}}`)
	got, err := c.Trigger(ctx, "state::get", map[string]string{"scope": "shared", "key": "a"})
	if err != nil {
		t.Fatal(err)
	}
	jsonEq(t, "go state::get", got, `{"n":1}`)
	if _, err := c.Trigger(ctx, "state::set", map[string]any{"scope": "shared", "key": "b", "value": "go"}); err != nil {
		t.Fatal(err)
	}
	jsonEq(t, "node state::get", modCall(ctx, t, c, p, "state::get", map[string]string{"scope": "shared", "key": "b"}), `"go"`)
	jsonEq(t, "node state::list", modCall(ctx, t, c, p, "state::list", map[string]string{"scope": "shared"}), `[{"n":1},"go"]`)
	jsonEq(t, "node state::update", modCall(ctx, t, c, p, "state::update", map[string]any{"scope": "shared", "key": "a",
		"ops": []map[string]any{{"type": "merge", "value": map[string]int{"m": 2}}, {"type": "remove", "path": "n"}}}), `{"old_value":{"n":1},"new_value":{"m":2}}`)
	jsonEq(t, "node state::delete", modCall(ctx, t, c, p, "state::delete", map[string]string{"scope": "shared", "key": "b"}), `"go"`)
	jsonEq(t, "node state::list_groups", modCall(ctx, t, c, p, "state::list_groups", map[string]any{}), `{"groups":["shared"]}`)

	// Reactive trigger with a condition: the Node binding on <p>-watched
	// only runs for odd n.
	for n := 1; n <= 3; n++ {
		if _, err := c.Trigger(ctx, "state::set", map[string]any{"scope": p + "-watched", "key": "k", "value": map[string]int{"n": n}}); err != nil {
			t.Fatal(err)
		}
	}
	var evs []map[string]any
	for range 2 {
		s := await("state", func(modSeen) bool { return true })
		var ev map[string]any
		_ = json.Unmarshal(s.Data, &ev)
		evs = append(evs, ev)
	}
	for _, ev := range evs {
		n := ev["new_value"].(map[string]any)["n"].(float64)
		switch {
		case n == 1 && ev["event_type"] == "state:created" && ev["old_value"] == nil:
		case n == 3 && ev["event_type"] == "state:updated" && ev["old_value"].(map[string]any)["n"] == 2.0:
		default:
			t.Fatalf("state event %v", ev)
		}
	}

	// Publish once from Go: both subscribers (Node and Go) once each.
	if _, err := c.Trigger(ctx, "publish", map[string]any{"topic": p + "-topic", "data": map[string]string{"hello": "world"}}); err != nil {
		t.Fatal(err)
	}
	jsonEq(t, "node subscriber", await("topic", func(modSeen) bool { return true }).Data, `{"hello":"world"}`)
	select {
	case d := <-goTopic:
		jsonEq(t, "go subscriber", d, `{"hello":"world"}`)
	case <-ctx.Done():
		t.Fatal("the Go subscriber got nothing")
	}

	// Concurrent increments: three Node calls and two Go goroutines, 100
	// each, on one key: no update lost.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Trigger(ctx, p+"::incr", map[string]any{"scope": "count", "key": "k", "n": 100}); err != nil {
				errs <- err
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if _, err := c.Trigger(ctx, "state::update", map[string]any{"scope": "count", "key": "k",
					"ops": []map[string]any{{"type": "increment", "path": "count", "by": 1}}}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err = c.Trigger(ctx, "state::get", map[string]string{"scope": "count", "key": "k"})
	if err != nil {
		t.Fatal(err)
	}
	jsonEq(t, "counter after 500 concurrent increments", got, `{"count":500}`)

	// A custom stream served by the SDK's createStream / create_stream:
	// the engine's stream::* calls of stream <p>-custom go to the worker.
	cs := p + "-custom"
	jsonEq(t, "custom stream::set", mustTrigger(ctx, t, c, "stream::set", map[string]any{"stream_name": cs, "group_id": "g", "item_id": "i", "data": map[string]int{"x": 1}}),
		`{"old_value":null,"new_value":{"x":1}}`)
	jsonEq(t, "custom stream::get", mustTrigger(ctx, t, c, "stream::get", map[string]any{"stream_name": cs, "group_id": "g", "item_id": "i"}), `{"x":1}`)
	jsonEq(t, "custom stream::list", mustTrigger(ctx, t, c, "stream::list", map[string]any{"stream_name": cs, "group_id": "g"}), `[{"x":1}]`)
	jsonEq(t, "custom stream::list_groups", mustTrigger(ctx, t, c, "stream::list_groups", map[string]any{"stream_name": cs}), `["g"]`)
	jsonEq(t, "custom stream::delete", mustTrigger(ctx, t, c, "stream::delete", map[string]any{"stream_name": cs, "group_id": "g", "item_id": "i"}), `{"old_value":{"x":1}}`)
	jsonEq(t, "custom stream::get after delete", mustTrigger(ctx, t, c, "stream::get", map[string]any{"stream_name": cs, "group_id": "g", "item_id": "i"}), `null`)

	// Cron: the Node binding (every second) fires with upstream's payload.
	s := await("cron", func(modSeen) bool { return true })
	var ev struct {
		Trigger       string    `json:"trigger"`
		JobID         string    `json:"job_id"`
		ScheduledTime time.Time `json:"scheduled_time"`
		ActualTime    time.Time `json:"actual_time"`
	}
	if err := json.Unmarshal(s.Data, &ev); err != nil || ev.Trigger != "cron" || ev.JobID == "" || ev.ScheduledTime.Nanosecond() != 0 ||
		ev.ActualTime.Before(ev.ScheduledTime) || ev.ActualTime.Sub(ev.ScheduledTime) > 2*time.Second {
		t.Fatalf("cron event %s: %v", s.Data, err)
	}
}

// TestStreamClientsLive: a stream client on the stream WebSocket joins a
// group, gets the sync, and sees live changes made by the Node and Python
// SDKs' stream::set / stream::update / stream::delete and a Go
// stream::send.
func TestStreamClientsLive(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("streams:\n  addr: 127.0.0.1:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := startEngine(t, "127.0.0.1:0", "--config", cfg, "--data-dir", filepath.Join(dir, "data"))
	ctx := ctxFor(t, 30*time.Second)
	line, err := e.stderr.wait(ctx, func(s string) bool { return strings.Contains(s, "stream clients served") })
	if err != nil {
		t.Fatal(err)
	}
	addr := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)[1]
	c := connectGo(t, e, "streams-go")
	seen := make(chan modSeen, 1024)
	if err := sluice.Register(c, "gomod::seen", func(_ context.Context, in modSeen) (any, error) {
		if in.Kind == "stream" {
			seen <- in
		}
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Trigger(ctx, "stream::set", map[string]any{"stream_name": "board", "group_id": "g", "item_id": "seed", "data": 0}); err != nil {
		t.Fatal(err)
	}
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, "ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	read := func() (string, json.RawMessage, any) {
		t.Helper()
		var m struct {
			StreamName string `json:"streamName"`
			ID         any    `json:"id"`
			Event      struct {
				Type string          `json:"type"`
				Data json.RawMessage `json:"data"`
			} `json:"event"`
		}
		if err := ws.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		return m.Event.Type, m.Event.Data, m.ID
	}
	if err := ws.WriteJSON(map[string]any{"type": "join", "data": map[string]any{"subscriptionId": "s1", "streamName": "board", "groupId": "g"}}); err != nil {
		t.Fatal(err)
	}
	if typ, data, _ := read(); typ != "sync" || string(data) != "[0]" {
		t.Fatalf("sync: %s %s", typ, data)
	}
	for _, sdk := range []struct{ flavour, prefix string }{{"node-0.22.1", "nstr"}, {"python-0.25.0", "pstr"}} {
		f := flavourNamed(sdk.flavour)
		if _, err := f.dependency(); err != nil {
			t.Logf("%s skipped: %v", sdk.flavour, err)
			continue
		}
		p := sdk.prefix
		startWorker(t, f, e, f.script("modules"), p)
		waitFunctions(ctx, t, c, p+"::call")
		modCall(ctx, t, c, p, "stream::set", map[string]any{"stream_name": "board", "group_id": "g", "item_id": p, "data": map[string]int{"v": 1}})
		if typ, data, id := read(); typ != "create" || id != p {
			t.Fatalf("%s create: %s %s %v", p, typ, data, id)
		}
		modCall(ctx, t, c, p, "stream::update", map[string]any{"stream_name": "board", "group_id": "g", "item_id": p,
			"ops": []map[string]any{{"type": "increment", "path": "v", "by": 2}}})
		if typ, data, _ := read(); typ != "update" {
			t.Fatalf("%s update: %s %s", p, typ, data)
		} else {
			jsonEq(t, p+" update data", data, `{"v":3}`)
		}
		jsonEq(t, p+" stream::get", modCall(ctx, t, c, p, "stream::get", map[string]any{"stream_name": "board", "group_id": "g", "item_id": p}), `{"v":3}`)
		jsonEq(t, p+" stream::list", modCall(ctx, t, c, p, "stream::list", map[string]any{"stream_name": "board", "group_id": "g"}), `[{"v":3},0]`)
		jsonEq(t, p+" stream::list_groups", modCall(ctx, t, c, p, "stream::list_groups", map[string]any{"stream_name": "board"}), `["g"]`)
		jsonEq(t, p+" stream::list_all", modCall(ctx, t, c, p, "stream::list_all", map[string]any{}), `{"stream":[{"id":"board","groups":["g"]}],"count":1}`)
		modCall(ctx, t, c, p, "stream::delete", map[string]any{"stream_name": "board", "group_id": "g", "item_id": p})
		if typ, _, _ := read(); typ != "delete" {
			t.Fatalf("%s delete: %s", p, typ)
		}
		// The SDK's stream binding on its own item saw create, update and
		// delete (deliveries of different changes are not ordered).
		got := map[string]bool{}
		for range 3 {
			select {
			case s := <-seen:
				var m struct {
					ID    string `json:"id"`
					Event struct {
						Type string `json:"type"`
					} `json:"event"`
				}
				if json.Unmarshal(s.Data, &m) != nil || s.From != p || m.ID != p || got[m.Event.Type] {
					t.Fatalf("%s stream binding: got %s from %s (so far %v)", p, s.Data, s.From, got)
				}
				got[m.Event.Type] = true
			case <-ctx.Done():
				t.Fatalf("%s stream binding: got only %v", p, got)
			}
		}
		if !got["create"] || !got["update"] || !got["delete"] {
			t.Fatalf("%s stream binding: %v", p, got)
		}
	}
	if _, err := c.Trigger(ctx, "stream::send", map[string]any{"stream_name": "board", "group_id": "g", "type": "ping", "data": "hi"}); err != nil {
		t.Fatal(err)
	}
	if typ, data, _ := read(); typ != "event" {
		t.Fatalf("event: %s %s", typ, data)
	}
}
