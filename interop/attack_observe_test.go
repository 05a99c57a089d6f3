package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	sluice "github.com/sluicehq/sluice"
)

// Observe trust boundaries (issue 12): what one worker can make the engine
// do through observers is bounded, and refusing it leaves others served.

// obsAttacker is a raw protocol client that reads frames as JSON objects.
type obsAttacker struct {
	ws *websocket.Conn
	in chan map[string]any
}

func obsAttack(t *testing.T, e *engineProc) *obsAttacker {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(e.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	a := &obsAttacker{ws: ws, in: make(chan map[string]any, 4096)}
	go func() {
		defer close(a.in)
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var m map[string]any
			if json.Unmarshal(b, &m) == nil {
				a.in <- m
			}
		}
	}()
	return a
}

// result waits for the observeresult of id.
func (a *obsAttacker) result(ctx context.Context, t *testing.T, id string) map[string]any {
	t.Helper()
	for {
		select {
		case m, ok := <-a.in:
			if !ok {
				t.Fatalf("socket closed waiting for the observeresult of %s", id)
			}
			if m["type"] == "observeresult" && m["id"] == id {
				return m
			}
		case <-ctx.Done():
			t.Fatalf("no observeresult for %s: %v", id, ctx.Err())
		}
	}
}

// TestAttackObserveFlood: one connection creates observers past the
// per-worker limit, with malformed, oversized and deeply nested filters
// among them. Each gets an answer (LIMIT_EXCEEDED past 1000, INVALID_FILTER
// for the bad filters), the engine keeps serving another worker's calls,
// and the engine holds no more than the limit.
// On 25c1da9: observe frames were ignored, so the first observeresult never
// came.
func TestAttackObserveFlood(t *testing.T) {
	e := startPlainEngine(t)
	ctx := ctxFor(t, 60*time.Second)
	c := connectGo(t, e, "go-victim")
	if err := sluice.Register(c, "victim::echo", func(_ context.Context, in map[string]any) (map[string]any, error) {
		return in, nil
	}); err != nil {
		t.Fatal(err)
	}
	a := obsAttack(t, e)
	send := func(s string) {
		if err := a.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	bad := map[string]string{
		"bad-literal": `{"input.op":"insert"}`,
		"bad-big":     `{"input.a":{"$eq":"` + strings.Repeat("x", 9000) + `"}}`,
		"bad-deep":    strings.Repeat(`{"$not":`, 20) + `{"input.a":{"$eq":1}}` + strings.Repeat(`}`, 20),
		"bad-json":    `{"input.a":`,
	}
	for id, f := range bad {
		send(`{"type":"observe","id":"` + id + `","source":{"function_id":"victim::echo","filters":` + f + `},"target":{"function_id":"victim::echo2"}}`)
		r := a.result(ctx, t, id)
		code := ""
		if e, ok := r["error"].(map[string]any); ok {
			code, _ = e["code"].(string)
		}
		if r["state"] != "error" || code != "INVALID_FILTER" && !(id == "bad-json" && code == "INVALID_ARGS") {
			t.Fatalf("%s: %v", id, r)
		}
	}
	const n = 1005
	for i := 0; i < n; i++ {
		send(fmt.Sprintf(`{"type":"observe","id":"flood-%d","source":{"function_id":"victim::echo","filters":{"input.n":{"$gt":%d}}},"target":{"function_id":"attacker::sink"}}`, i, i))
	}
	limited := 0
	for i := 0; i < n; i++ {
		r := a.result(ctx, t, fmt.Sprintf("flood-%d", i))
		if e, ok := r["error"].(map[string]any); ok && e["code"] == "LIMIT_EXCEEDED" {
			limited++
		}
	}
	if limited != n-1000 {
		t.Fatalf("%d of %d observers refused with LIMIT_EXCEEDED, want %d", limited, n, n-1000)
	}
	// The victim is still served, its calls evaluated against 1000 filters.
	for i := 0; i < 50; i++ {
		if _, err := c.Trigger(ctx, "victim::echo", map[string]int{"n": i}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	raw, err := c.Trigger(ctx, "engine::observers::list", map[string]string{"function_id": "victim::echo"})
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Observers []json.RawMessage }
	if err := json.Unmarshal(raw, &list); err != nil || len(list.Observers) != 1000 {
		t.Fatalf("the engine holds %d observers (err %v), want 1000", len(list.Observers), err)
	}
	// The attacker leaving ends its observers' activity (suspended, then
	// disposed after the grace period); the victim is unaffected.
	a.ws.Close()
	if _, err := e.stderr.wait(ctx, func(s string) bool { return strings.Contains(s, "worker disconnected") }); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Trigger(ctx, "victim::echo", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
}
