package engine

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice/wire"
)

// TestStateWritesAnsweredInOrder: one connection keeps 64 state writes in
// flight (set, update increment, delete); the engine must answer them in
// exactly the order they were made, each update seeing every increment
// made before it. The bound is by order, not time: answer i is call i.
// On 63603d0 (a goroutine per write) answers came out of order (the Go
// scheduler decided which write reached the group-commit writer first;
// under load some were answered after more than 128 later ones).
func TestStateWritesAnsweredInOrder(t *testing.T) {
	eachDataDir(t, func(t *testing.T, e *Engine) {
		if e.cluster != nil {
			t.Skip("cluster mode answers state writes as JetStream acknowledges them, not in call order (docs/cluster.md)")
		}
		w := dialRaw(t, e)
		const n, inflight = 3000, 64
		ids := make([]string, n)
		kinds := make([]int, n)
		for i := range n {
			ids[i] = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
			kinds[i] = i % 4
		}
		sent := make(chan struct{}, inflight)
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for i := range n {
				select {
				case sent <- struct{}{}:
				case <-stop:
					return
				}
				var data string
				switch kinds[i] {
				case 0, 1:
					data = `{"scope":"order","key":"k` + strconv.Itoa(i%50) + `","value":{"i":` + strconv.Itoa(i) + `}}`
				case 2:
					data = `{"scope":"order","key":"counter","ops":[{"type":"increment","path":"n","by":1}]}`
				case 3:
					data = `{"scope":"order","key":"k` + strconv.Itoa((i+25)%50) + `"}`
				}
				fn := [...]string{"state::set", "state::set", "state::update", "state::delete"}[kinds[i]]
				b, err := wire.Marshal(&wire.Message{Type: wire.TypeInvokeFunction, InvocationID: ids[i], FunctionID: fn, Data: jsontext.Value(data)})
				if err != nil || w.ws.WriteMessage(websocket.TextMessage, b) != nil {
					return // the reading side fails on the missing answers
				}
			}
		}()
		increments := 0
		deadline := time.After(60 * time.Second)
		for i := 0; i < n; {
			var m wire.Message
			select {
			case m = <-w.in:
			case <-deadline:
				t.Fatalf("timed out after %d answers", i)
			}
			if m.Type != wire.TypeInvocationResult {
				continue
			}
			if m.Error != nil {
				t.Fatalf("call %d: %+v", i, m.Error)
			}
			if m.InvocationID != ids[i] {
				t.Fatalf("answer %d is for %s, want call %d's (%s): answers out of call order", i, m.InvocationID, i, ids[i])
			}
			if kinds[i] == 2 {
				increments++
				var r struct {
					NewValue struct {
						N int `json:"n"`
					} `json:"new_value"`
				}
				if err := json.Unmarshal(m.Result, &r); err != nil || r.NewValue.N != increments {
					t.Fatalf("update %d answered %s (err %v), want n=%d", i, m.Result, err, increments)
				}
			}
			<-sent
			i++
		}
	})
}
