package engine

import (
	"fmt"
	"testing"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/wire"
)

// TestPubSubDeliveriesBounded: deliveries are chains of completions, no
// goroutine each. With max_concurrent_deliveries 3, a publish to 10
// bindings of one worker has exactly 3 deliveries under way (the rest
// queued) until one is answered; each answer starts the next; all 10
// arrive, and the slots are all free afterwards. A publish to 2,000
// bindings whose condition function does not exist (each call answered
// before Invoke returns) finishes every delivery within the publish,
// leaving no slot taken (a chain of 2,000 inline answers, no recursion).
func TestPubSubDeliveriesBounded(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.PubSub.MaxConcurrentDeliveries = 3 })
	m := e.modules.pubsub
	h := dialRaw(t, e)
	h.sendJSON(`{"type":"registerfunction","id":"sub::a"}`)
	for i := range 10 {
		h.sendJSON(fmt.Sprintf(`{"type":"registertrigger","id":"ps-%d","trigger_type":"subscribe","function_id":"sub::a","config":{"topic":"t"}}`, i))
	}
	for i := range 2000 {
		h.sendJSON(fmt.Sprintf(`{"type":"registertrigger","id":"pc-%d","trigger_type":"subscribe","function_id":"sub::a","config":{"topic":"t2","condition_function_id":"cond::missing"}}`, i))
	}
	settle(t, h)
	c := dialRaw(t, e)
	waitFunction(t, c, "sub::a")

	callOK(t, c, "publish", `{"topic":"t2","data":1}`)
	if n, q := m.running.Load(), len(m.queue); n != 0 || q != 0 {
		t.Fatalf("after a publish whose deliveries all failed at once: %d under way, %d queued", n, q)
	}

	callOK(t, c, "publish", `{"topic":"t","data":2}`)
	isSub := func(wire.Message) bool { return true }
	held := []wire.Message{h.awaitInvoke("sub::a", isSub), h.awaitInvoke("sub::a", isSub), h.awaitInvoke("sub::a", isSub)}
	started := 3
	for len(held) > 0 {
		if n, q := m.running.Load(), len(m.queue); n != int32(len(held)) || q != 10-started {
			t.Fatalf("%d started, %d held: %d under way, %d queued", started, len(held), n, q)
		}
		inv := held[0]
		held = held[1:]
		if string(inv.Data) != "2" {
			t.Fatalf("delivery data %s", inv.Data)
		}
		h.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID, Result: jsontext.Value("null")})
		if started < 10 {
			held = append(held, h.awaitInvoke("sub::a", isSub))
			started++
		} else {
			settle(t, h) // the answer's completion ran on h's reader before this call
		}
	}
	if n, q := m.running.Load(), len(m.queue); n != 0 || q != 0 {
		t.Fatalf("after every answer: %d under way, %d queued", n, q)
	}
}
