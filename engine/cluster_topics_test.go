package engine

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

// topicSubscriberCount asks engine::queue::list_topics through c until
// topic lists want subscribers (the other node's heartbeat travels
// asynchronously), for up to 10 s.
func topicSubscriberCount(t *testing.T, c *queueCaller, topic string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var topics []topicInfo
		c.ok(fnQueueListTopics, `{}`, &topics)
		got := 0
		for _, tp := range topics {
			if tp.Name == topic && tp.BrokerType == "topic" {
				got = tp.SubscriberCount
			}
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s lists %d subscribers, want %d", topic, got, want)
		}
		time.Sleep(10 * time.Millisecond) // the next heartbeat has not arrived yet
	}
}

// TestClusterDurableTopicAcrossNodes: node 1 subscribes sub::remote and
// sub::dup to a topic, node 0 subscribes sub::dup too (served on both).
// A publish through node 0 stores one copy for each function: sub::remote
// is delivered on node 1, sub::dup once in all. Once node 1's worker is
// gone, node 0 counts its own subscriber only.
// On 28b79b3 node 0 listed 1 subscriber and sub::remote got nothing.
func TestClusterDurableTopicAcrossNodes(t *testing.T) {
	nodes := startNodes(t, 2)
	w1 := dialRaw(t, nodes[1])
	w1.sendJSON(`{"type":"registerfunction","id":"sub::remote"}`)
	w1.sendJSON(`{"type":"registerfunction","id":"sub::dup"}`)
	w1.sendJSON(`{"type":"registertrigger","id":"r1","trigger_type":"durable:subscriber","function_id":"sub::remote","config":{"topic":"orders"}}`)
	w1.sendJSON(`{"type":"registertrigger","id":"d1","trigger_type":"durable:subscriber","function_id":"sub::dup","config":{"topic":"orders"}}`)
	w0 := dialRaw(t, nodes[0])
	w0.sendJSON(`{"type":"registerfunction","id":"sub::dup"}`)
	w0.sendJSON(`{"type":"registertrigger","id":"d0","trigger_type":"durable:subscriber","function_id":"sub::dup","config":{"topic":"orders"}}`)
	pub := &queueCaller{w: dialRaw(t, nodes[0])}
	waitFunction(t, pub.w, "sub::dup")
	topicSubscriberCount(t, pub, "orders", 2)
	if res := pub.call(fnDurablePublish, `{"topic":"orders","data":{"o":1}}`); res.Error != nil {
		t.Fatalf("publish through node 0: %+v", res)
	}

	got := make(chan string, 8)
	answer := func(w *rawWorker, node string) {
		for m := range w.in {
			if m.Type != wire.TypeInvokeFunction {
				continue
			}
			got <- node + " " + m.FunctionID + " " + string(m.Data)
			w.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: m.InvocationID, FunctionID: m.FunctionID, Result: jsontext.Value("null")})
		}
	}
	go answer(w0, "node-0")
	go answer(w1, "node-1")
	var deliveries []string
	timeout := time.After(expectWithin)
	for len(deliveries) < 2 {
		select {
		case d := <-got:
			deliveries = append(deliveries, d)
		case <-timeout:
			t.Fatalf("deliveries of a publish through node 0: %v, want sub::remote on node 1 and sub::dup once", deliveries)
		}
	}
	// A second copy of sub::dup would be leased at once by the other node.
	select {
	case d := <-got:
		deliveries = append(deliveries, d)
	case <-time.After(300 * time.Millisecond):
	}
	slices.Sort(deliveries)
	if len(deliveries) != 2 || deliveries[1] != `node-1 sub::remote {"o":1}` ||
		(deliveries[0] != `node-0 sub::dup {"o":1}` && deliveries[0] != `node-1 sub::dup {"o":1}`) {
		t.Fatalf("deliveries of a publish through node 0: %v, want sub::remote on node 1 and sub::dup once", deliveries)
	}

	// Node 1's worker leaves: its bindings go with it, on every node.
	w1.ws.Close()
	topicSubscriberCount(t, pub, "orders", 1)
}

// TestDurableSubscriptionsMerged: a heartbeat lists this node's active
// durable:subscriber bindings once per topic and function, with their
// queue_config; publishes count the other live nodes' subscribers (not a
// gone node's, not a function twice), and the topic's queue config is
// this node's first binding's, else the other nodes' in name order; a
// stale heartbeat (replayed at start) brings no subscriptions.
func TestDurableSubscriptionsMerged(t *testing.T) {
	e := offlineCluster(t, map[string]*memberState{
		"b":    {lastSeen: time.Now(), subs: []hbSubscription{{Topic: "orders", FunctionID: "r2", QueueConfig: jsontext.Value(`{"delaySeconds":5}`)}, {Topic: "other", FunctionID: "r2", QueueConfig: jsontext.Value(`{"maxRetries":7}`)}}},
		"a":    {lastSeen: time.Now(), subs: []hbSubscription{{Topic: "orders", FunctionID: "l"}, {Topic: "orders", FunctionID: "r1", QueueConfig: jsontext.Value(`{"delaySeconds":3}`)}}},
		"gone": {gone: true, subs: []hbSubscription{{Topic: "orders", FunctionID: "g"}, {Topic: "lost", FunctionID: "g"}}},
	})
	put := func(id, fn, cfg string) {
		t.Helper()
		if errBody := e.putTrigger(&registry.Trigger{ID: id, Type: triggerTypeDurableSub, FunctionID: fn, Config: jsontext.Value(cfg)}, nil); errBody != nil {
			t.Fatalf("trigger %s: %+v", id, errBody)
		}
	}
	put("t2", "l", `{"topic":"orders"}`)
	put("t1", "l", `{"topic":"orders","queue_config":{"concurrency":3}}`) // the same function again: one copy
	put("t3", "m", `{"topic":"mine"}`)
	if errBody := e.putTrigger(&registry.Trigger{ID: "bad", Type: triggerTypeDurableSub, FunctionID: "m", Config: jsontext.Value(`{}`)}, nil); errBody == nil {
		t.Fatal("a subscription without a topic was accepted")
	}

	subs := e.durableSubs().subscriptions()
	if want := []hbSubscription{{Topic: "mine", FunctionID: "m"}, {Topic: "orders", FunctionID: "l", QueueConfig: jsontext.Value(`{"concurrency":3}`)}}; !equalSubs(subs, want) {
		t.Fatalf("heartbeat subscriptions %+v, want %+v", subs, want)
	}
	kv := &putKV{}
	m := &membership{e: e, kv: kv, key: nodeKey("self")}
	if err := m.beat(context.Background()); err != nil {
		t.Fatal(err)
	}
	var hb heartbeat
	if err := json.Unmarshal(kv.puts[0], &hb); err != nil || len(hb.Subscriptions) != 2 || hb.Subscriptions[1].FunctionID != "l" {
		t.Fatalf("heartbeat %s (%v): want both subscriptions", kv.puts[0], err)
	}

	byTopic := e.topicSubscribers()
	if got := byTopic["orders"]; !slices.Equal(got, []string{"l", "r1", "r2"}) {
		t.Fatalf("subscribers of orders: %v, want l (here and on a), r1, r2 once each, not the gone node's", got)
	}
	if got := byTopic["lost"]; got != nil {
		t.Fatalf("a gone node's topic counts: %v", got)
	}
	if cfg := e.topicConfig("orders"); cfg.Concurrency != 3 || cfg.DelayMS != 0 {
		t.Fatalf("orders' config %+v: want this node's queue_config (concurrency 3), not the other nodes'", cfg)
	}
	if cfg := e.topicConfig("other"); cfg.MaxRetries != 8 {
		t.Fatalf("other's config %+v: want node b's maxRetries 7 (8 attempts)", cfg)
	}
	// This node's binding with a queue_config goes: node a's is next.
	if _, err := e.unregisterTrigger("t1", nil); err != nil {
		t.Fatal(err)
	}
	if cfg := e.topicConfig("orders"); cfg.DelayMS != 3000 || cfg.Concurrency != DefaultQueueConfig().Concurrency {
		t.Fatalf("orders' config %+v: want node a's delaySeconds 3 (a before b)", cfg)
	}
	if subs := e.durableSubs().subscriptions(); !equalSubs(subs, []hbSubscription{{Topic: "mine", FunctionID: "m"}, {Topic: "orders", FunctionID: "l"}}) {
		t.Fatalf("after t1 went: %+v", subs)
	}
	// A trigger the registry no longer has is not listed.
	e.reg.DropTrigger(mustTrigger(t, e, "t3"))
	if subs := e.durableSubs().subscriptions(); !equalSubs(subs, []hbSubscription{{Topic: "orders", FunctionID: "l"}}) {
		t.Fatalf("after t3 was dropped: %+v", subs)
	}

	mm := e.cluster.membersNow()
	mm.seen("old", time.Now().Add(-time.Hour), heartbeat{Subscriptions: []hbSubscription{{Topic: "orders", FunctionID: "ghost"}}})
	mm.seen("fresh", time.Now(), heartbeat{Subscriptions: []hbSubscription{{Topic: "orders", FunctionID: "new"}}})
	if got := e.topicSubscribers()["orders"]; !slices.Equal(got, []string{"l", "new", "r1", "r2"}) {
		t.Fatalf("subscribers of orders: %v, want the fresh node's, not the stale heartbeat's", got)
	}
}

func equalSubs(a, b []hbSubscription) bool {
	return slices.EqualFunc(a, b, func(x, y hbSubscription) bool {
		return x.Topic == y.Topic && x.FunctionID == y.FunctionID && string(x.QueueConfig) == string(y.QueueConfig)
	})
}

func mustTrigger(t *testing.T, e *Engine, id string) *registry.Trigger {
	t.Helper()
	tr, ok := e.reg.Trigger(id)
	if !ok {
		t.Fatalf("trigger %s not registered", id)
	}
	return tr
}
