package engine

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice/wire"
)

// TestStreamFanOutOrder: 64 clients of one group each get every change
// once, in the order of the calls, when the calls come in bursts of 1 to
// 9 (the fan-out gathers a burst per client into one write; the store
// commits some together).
func TestStreamFanOutOrder(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.DataDir = t.TempDir(); c.Streams.Addr = "127.0.0.1:0" })
	const clients, changes = 64, 200
	var got [clients][]int
	var wg sync.WaitGroup
	for i := range clients {
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+e.StreamClientsAddr()+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.Close() })
		_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"join","data":{"subscriptionId":"s","streamName":"fan","groupId":"g"}}`))
		_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, _, err := ws.ReadMessage(); err != nil { // the sync: joined
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for len(got[i]) < changes {
				var m struct {
					Event struct {
						Data struct{ N int } `json:"data"`
					} `json:"event"`
				}
				_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second)) // a hang fails, a slow run does not
				if err := ws.ReadJSON(&m); err != nil {
					t.Errorf("client %d after %d changes: %v", i, len(got[i]), err)
					return
				}
				got[i] = append(got[i], m.Event.Data.N)
			}
		}()
	}
	w := dialRaw(t, e)
	for n := 0; n < changes; { // bursts of 1 to 9 calls, each burst awaited
		k := min(1+n%9, changes-n)
		for i := range k {
			w.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: invocationID(), FunctionID: "stream::set",
				Data: []byte(fmt.Sprintf(`{"stream_name":"fan","group_id":"g","item_id":"x%d","data":{"n":%d}}`, (n+i)%7, n+i))})
		}
		for range k {
			if m := w.expect(wire.TypeInvocationResult); m.Error != nil {
				t.Fatalf("stream::set: %+v", m.Error)
			}
		}
		n += k
	}
	wg.Wait()
	for i := range clients {
		if len(got[i]) != changes {
			t.Fatalf("client %d got %d of %d changes", i, len(got[i]), changes)
		}
		for n, v := range got[i] {
			if v != n {
				b, _ := json.Marshal(got[i][:min(len(got[i]), n+3)])
				t.Fatalf("client %d: change %d is n=%d (%s)", i, n, v, b)
			}
		}
	}
}
