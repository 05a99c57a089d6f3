package engine

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice/wire"
)

// TestStreamFanOutParallelOrder: with more clients than streamFanParallel
// the fan-out is shared by several writers (GOMAXPROCS 4 here); every
// client still gets every change once, in the order of the calls, also
// when the calls arrive in bursts.
func TestStreamFanOutParallelOrder(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	e := startEngine(t, func(c *Config) { c.DataDir = DataDirMemory; c.Streams.Addr = "127.0.0.1:0" })
	if n := len(e.modules.streams.hub.fanWork); n != 3 {
		t.Fatalf("%d extra fan-out writers with GOMAXPROCS 4, want 3", n)
	}
	const clients, changes = 2 * streamFanParallel, 200
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
				if err := ws.ReadJSON(&m); err != nil {
					return
				}
				got[i] = append(got[i], m.Event.Data.N)
			}
		}()
	}
	w := dialRaw(t, e)
	for n := range changes { // not awaited one by one: bursts reach the fan-out
		w.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: invocationID(), FunctionID: "stream::set",
			Data: []byte(fmt.Sprintf(`{"stream_name":"fan","group_id":"g","item_id":"x%d","data":{"n":%d}}`, n%7, n))})
	}
	for range changes {
		if m := w.expect(wire.TypeInvocationResult); m.Error != nil {
			t.Fatalf("stream::set: %+v", m.Error)
		}
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
