package engine

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/natsnode"

	"github.com/sluicehq/sluice/wire"
)

// queueCaller numbers its calls so each result is matched to its call.
type queueCaller struct {
	w *rawWorker
	n int
}

func (c *queueCaller) call(fn, data string) wire.Message {
	c.w.t.Helper()
	c.n++
	return c.w.callSkipping(fmt.Sprintf("qc-%d", c.n), fn, data)
}

func (c *queueCaller) ok(fn, data string, v any) {
	c.w.t.Helper()
	mustResult(c.w.t, c.call(fn, data), v)
}

func (c *queueCaller) fails(fn, data, code string) {
	c.w.t.Helper()
	res := c.call(fn, data)
	if res.Error == nil || res.Error.Code != code {
		c.w.t.Fatalf("%s %s: %+v, want error %s", fn, data, res, code)
	}
}

// dlqCount asks engine::queue::dlq_topics until queue's count is want:
// burying a job runs after the failed answer has been sent.
func (c *queueCaller) dlqCount(queue string, want int64) {
	c.w.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var topics []dlqTopic
		c.ok(fnQueueDLQTopics, `{}`, &topics)
		var got int64
		for _, tp := range topics {
			if tp.Topic == queue {
				got = tp.MessageCount
			}
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			c.w.t.Fatalf("dead-letter count of %s stays %d, want %d", queue, got, want)
		}
	}
}

// failDelivery answers the next delivery of fn, which must carry data, with
// an error.
func failDelivery(t *testing.T, w *rawWorker, fn, data string) {
	t.Helper()
	inv := w.awaitInvoke(fn, func(wire.Message) bool { return true })
	if !strings.Contains(string(inv.Data), data) {
		t.Fatalf("delivery of %s carries %s, want %s", fn, inv.Data, data)
	}
	w.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: fn,
		Error: &wire.ErrorBody{Code: "boom", Message: "failed on purpose"}})
}

// TestQueueDeadLetterFlow: a job that fails max_retries times lands in the
// dead-letter queue with its error, the admin functions report it, and
// redrive delivers it again while discard drops it.
// It runs in memory and on a one-node cluster (JetStream store).
func TestQueueDeadLetterFlow(t *testing.T) { eachQueueStore(t, testQueueDeadLetterFlow) }

// eachQueueStore runs test on an engine with the memory store, the SQLite
// store (its asynchronous enqueue and ack path) and on one in cluster mode
// (embedded one-node JetStream): mutate sets the rest.
func eachQueueStore(t *testing.T, test func(t *testing.T, store func(*Config))) {
	t.Run("memory", func(t *testing.T) { test(t, func(c *Config) { c.DataDir = DataDirMemory }) })
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		test(t, func(c *Config) { c.DataDir = dir })
	})
	t.Run("cluster", func(t *testing.T) {
		dir := t.TempDir()
		test(t, func(c *Config) { c.DataDir, c.Cluster.Enabled, c.Cluster.NodeName = dir, true, "test-node" })
	})
	t.Run("external-nats", func(t *testing.T) {
		url := externalNATS(t)
		test(t, func(c *Config) { c.DataDir, c.Cluster.NATSURL, c.Cluster.NodeName = DataDirMemory, url, "test-node" })
	})
}

// externalNATS runs a nats-server with JetStream listening on a loopback
// port, as an external deployment would, and returns its URL.
func externalNATS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := natsnode.Start(ctx, natsnode.Config{NodeName: "external", StoreDir: t.TempDir(), ClientListen: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return "nats://" + addr
}

func testQueueDeadLetterFlow(t *testing.T, store func(*Config)) {
	e := startEngine(t, func(c *Config) {
		store(c)
		q := DefaultQueueConfig()
		q.MaxRetries, q.BackoffMS, q.Concurrency = 2, 1, 1
		c.Queues = map[string]QueueConfig{"jobs": q}
	})
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"q::work"}`)
	c := &queueCaller{w: dialRaw(t, e)}
	waitFunction(t, c.w, "q::work")

	// Enqueued as an action: answered with a receipt once stored.
	c.w.sendJSON(`{"type":"invokefunction","invocation_id":"e1","function_id":"q::work","data":{"n":1},"action":{"type":"enqueue","queue":"jobs"}}`)
	var rcpt struct {
		ID string `json:"messageReceiptId"`
	}
	mustResult(t, c.w.await(func(m wire.Message) bool { return m.Type == wire.TypeInvocationResult && m.InvocationID == "e1" }), &rcpt)
	if rcpt.ID == "" {
		t.Fatal("enqueue answered without a receipt")
	}
	failDelivery(t, w, "q::work", `"n":1`)
	failDelivery(t, w, "q::work", `"n":1`) // second and last attempt
	c.dlqCount("jobs", 1)

	var msgs []dlqMessage
	c.ok(fnQueueDLQMessages, `{"queue":"jobs"}`, &msgs)
	if len(msgs) != 1 || msgs[0].FunctionID != "q::work" || msgs[0].Retries != 2 ||
		!strings.Contains(msgs[0].Error, "boom") || !strings.Contains(string(msgs[0].Payload), `"n":1`) {
		t.Fatalf("dlq_messages: %+v", msgs)
	}
	var st topicStats
	c.ok(fnQueueTopicStats, `{"queue":"jobs"}`, &st)
	if st.Depth != 0 || st.DLQDepth != 1 || st.Config == nil || st.Config.MaxRetries != 2 {
		t.Fatalf("topic_stats: %+v", st)
	}
	var topics []topicInfo
	c.ok(fnQueueListTopics, `{}`, &topics)
	found := false
	for _, tp := range topics {
		found = found || tp.Name == "jobs"
	}
	if !found {
		t.Fatalf("list_topics lacks jobs: %+v", topics)
	}

	// Redriven: delivered again, and this time it succeeds.
	var rd map[string]any
	c.ok(fnQueueRedriveMessage, `{"queue":"jobs","message_id":"`+msgs[0].ID+`"}`, &rd)
	if rd["redriven"] != 1.0 {
		t.Fatalf("redrive_message: %v", rd)
	}
	inv := w.awaitInvoke("q::work", func(wire.Message) bool { return true })
	w.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: "q::work", Result: jsontext.Value(`null`)})
	c.dlqCount("jobs", 0)

	// Enqueued through engine::queue::enqueue, dead-lettered, discarded.
	mustResult(t, c.call(fnQueueEnqueue, `{"queue":"jobs","function_id":"q::work","data":{"n":2}}`), &rcpt)
	failDelivery(t, w, "q::work", `"n":2`)
	failDelivery(t, w, "q::work", `"n":2`)
	c.dlqCount("jobs", 1)
	c.ok(fnQueueDLQMessages, `{"queue":"jobs"}`, &msgs)
	if len(msgs) != 1 {
		t.Fatalf("dlq_messages: %+v", msgs)
	}
	c.ok(fnQueueDiscardMessage, `{"queue":"jobs","message_id":"`+msgs[0].ID+`"}`, &rd)
	if rd["redriven"] != 1.0 {
		t.Fatalf("discard_message: %v", rd)
	}
	c.dlqCount("jobs", 0)
	c.ok(fnQueueDiscardMessage, `{"queue":"jobs","message_id":"`+msgs[0].ID+`"}`, &rd)
	if rd["redriven"] != 0.0 {
		t.Fatalf("discarding a discarded message: %v", rd)
	}
	c.ok(fnQueueRedrive, `{"queue":"jobs"}`, &rd)
	if rd["redriven"] != 0.0 {
		t.Fatalf("redrive of an empty dead-letter queue: %v", rd)
	}

	// Bad input is refused clearly.
	c.fails(fnQueueRedrive, `{}`, "queue_not_set")
	c.fails(fnQueueRedriveMessage, `{"queue":"jobs"}`, "message_id_not_set")
	c.fails(fnQueueEnqueue, `{"queue":"nope","function_id":"q::work","data":{}}`, wire.CodeEnqueueError)
	c.fails(fnQueueDefine, `{"name":"jobs","max_retries":5}`, wire.CodeInvalidArguments)
	c.fails(fnQueueDefine, `{"name":"bad","concurrency":0}`, wire.CodeInvalidArguments)
}

// TestQueueDefineAtRunTime: queue::define makes a queue usable by name and
// reports whether it was new; redefining the same queue is not a creation.
func TestQueueDefineAtRunTime(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.DataDir = DataDirMemory })
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"q::late"}`)
	c := &queueCaller{w: dialRaw(t, e)}
	waitFunction(t, c.w, "q::late")
	c.fails(fnQueueEnqueue, `{"queue":"late","function_id":"q::late","data":{}}`, wire.CodeEnqueueError)
	var def struct {
		Name    string      `json:"name"`
		Created bool        `json:"created"`
		Config  QueueConfig `json:"config"`
	}
	c.ok(fnQueueDefine, `{"name":"late","config":{"max_retries":4,"concurrency":2}}`, &def)
	if def.Name != "late" || !def.Created || def.Config.MaxRetries != 4 || def.Config.Concurrency != 2 {
		t.Fatalf("define: %+v", def)
	}
	c.ok(fnQueueDefine, `{"queue":"late","max_retries":4,"concurrency":2}`, &def)
	if def.Created {
		t.Fatalf("redefine reported a creation: %+v", def)
	}
	var rcpt map[string]string
	mustResult(t, c.call(fnQueueEnqueue, `{"queue":"late","function_id":"q::late","data":{"k":7}}`), &rcpt)
	inv := w.awaitInvoke("q::late", func(wire.Message) bool { return true })
	if !strings.Contains(string(inv.Data), `"k":7`) {
		t.Fatalf("delivery: %s", inv.Data)
	}
	w.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: "q::late", Result: jsontext.Value(`null`)})
	var st topicStats
	c.ok(fnQueueTopicStats, `{"queue":"late"}`, &st)
	if st.Config == nil || st.Config.MaxRetries != 4 {
		t.Fatalf("topic_stats of a defined queue: %+v", st)
	}
}

// TestDurableTopicFanOut: iii::durable::publish gives each function
// subscribed to the topic (durable:subscriber) its own job, with the
// trigger's queue_config (maxRetries counts retries after the first try).
func TestDurableTopicFanOut(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.DataDir = DataDirMemory })
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"sub::a"}`)
	w.sendJSON(`{"type":"registerfunction","id":"sub::b"}`)
	w.sendJSON(`{"type":"registertrigger","id":"ta","trigger_type":"durable:subscriber","function_id":"sub::a","config":{"topic":"orders","queue_config":{"maxRetries":0,"backoffDelayMs":1,"concurrency":1,"visibilityTimeout":5000}}}`)
	w.sendJSON(`{"type":"registertrigger","id":"tb","trigger_type":"durable:subscriber","function_id":"sub::b","config":{"topic":"orders"}}`)
	w.sendJSON(`{"type":"registertrigger","id":"tbad","trigger_type":"durable:subscriber","function_id":"sub::b","config":{}}`)
	if m := w.await(func(m wire.Message) bool { return m.Type == wire.TypeTriggerRegistrationResult && m.ID == "tbad" }); m.Error == nil {
		t.Fatalf("subscriber without a topic accepted: %+v", m)
	}
	c := &queueCaller{w: dialRaw(t, e)}
	waitFunction(t, c.w, "sub::b")
	c.fails(fnDurablePublish, `{"data":{}}`, "topic_not_set")
	if res := c.call(fnDurablePublish, `{"topic":"nobody","data":{}}`); res.Error != nil {
		t.Fatalf("publish to a topic without subscribers: %+v", res)
	}
	if res := c.call(fnDurablePublish, `{"topic":"orders","data":{"o":1}}`); res.Error != nil {
		t.Fatalf("publish: %+v", res)
	}
	got := map[string]bool{}
	for len(got) < 2 {
		inv := w.await(func(m wire.Message) bool { return m.Type == wire.TypeInvokeFunction })
		if !strings.Contains(string(inv.Data), `"o":1`) || got[inv.FunctionID] {
			t.Fatalf("delivery: %+v", inv)
		}
		got[inv.FunctionID] = true
		if inv.FunctionID == "sub::a" {
			// maxRetries 0: one failure buries it.
			w.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID,
				Error: &wire.ErrorBody{Code: "boom", Message: "no"}})
		} else {
			w.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID, Result: jsontext.Value(`null`)})
		}
	}
	if !got["sub::a"] || !got["sub::b"] {
		t.Fatalf("deliveries: %v", got)
	}
	c.dlqCount("orders", 1)
	var st topicStats
	c.ok(fnQueueTopicStats, `{"topic":"orders"}`, &st)
	if st.DLQDepth != 1 || st.Config == nil || st.Config.MaxRetries != 1 {
		t.Fatalf("topic_stats of orders: %+v", st)
	}
}

// TestQueueJobWaitsForItsFunction: a job for a function nobody registered
// is parked, not failed, and delivered once the function registers; a FIFO
// queue refuses a job without its group field, and a producer-chosen
// receipt id is stored once.
func TestQueueJobWaitsForItsFunction(t *testing.T) {
	eachQueueStore(t, testQueueJobWaitsForItsFunction)
}

func testQueueJobWaitsForItsFunction(t *testing.T, store func(*Config)) {
	e := startEngine(t, func(c *Config) {
		store(c)
		f := DefaultQueueConfig()
		f.Type, f.MessageGroupField = "fifo", "acct"
		c.Queues = map[string]QueueConfig{"ordered": f}
	})
	c := &queueCaller{w: dialRaw(t, e)}
	var rcpt struct {
		ID string `json:"messageReceiptId"`
	}
	c.ok(fnQueueEnqueue, `{"queue":"default","function_id":"late::fn","data":{"p":1},"messageReceiptId":"r-1"}`, &rcpt)
	if rcpt.ID != "r-1" {
		t.Fatalf("receipt %q, want the producer's r-1", rcpt.ID)
	}
	c.ok(fnQueueEnqueue, `{"queue":"default","function_id":"late::fn","data":{"p":1},"messageReceiptId":"r-1"}`, &rcpt)
	c.fails(fnQueueEnqueue, `{"queue":"ordered","function_id":"late::fn","data":{"p":2}}`, wire.CodeEnqueueError)
	c.fails(fnQueueEnqueue, `{"queue":"default","data":{}}`, wire.CodeEnqueueError)

	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"late::fn"}`)
	inv := w.awaitInvoke("late::fn", func(wire.Message) bool { return true })
	if !strings.Contains(string(inv.Data), `"p":1`) {
		t.Fatalf("delivery: %s", inv.Data)
	}
	w.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: "late::fn", Result: jsontext.Value(`null`)})
	// Both copies would have been released together, before this job is
	// enqueued: the next delivery is this one only if the duplicate receipt
	// was not stored.
	c.ok(fnQueueEnqueue, `{"queue":"default","function_id":"late::fn","data":{"p":3}}`, &rcpt)
	inv = w.awaitInvoke("late::fn", func(wire.Message) bool { return true })
	if !strings.Contains(string(inv.Data), `"p":3`) {
		t.Fatalf("second delivery is %s, want p 3 (the duplicate receipt was stored)", inv.Data)
	}
}

// TestQueueBacklogAndGroupsDrain: jobs enqueued faster than they are
// answered (first handed off to free slots, then waiting in the store) are
// all delivered once, and a fifo group's next job is delivered after its
// head settles although the queue looked drained when the head was
// leased (a settled delivery alone must wake a fifo dispatcher).
func TestQueueBacklogAndGroupsDrain(t *testing.T) {
	eachQueueStore(t, testQueueBacklogAndGroupsDrain)
}

func testQueueBacklogAndGroupsDrain(t *testing.T, store func(*Config)) {
	e := startEngine(t, func(c *Config) {
		store(c)
		std := DefaultQueueConfig()
		std.Concurrency = 4
		f := DefaultQueueConfig()
		f.Type, f.MessageGroupField, f.Concurrency = "fifo", "g", 4
		c.Queues = map[string]QueueConfig{"std": std, "ordered": f}
	})
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"q::std"}`)
	w.sendJSON(`{"type":"registerfunction","id":"q::fifo"}`)
	c := &queueCaller{w: dialRaw(t, e)}
	waitFunction(t, c.w, "q::fifo")

	// Standard: 40 jobs, all enqueued (as actions, answered in any order)
	// before any delivery is answered.
	const n = 40
	for i := range n {
		c.w.sendJSON(fmt.Sprintf(`{"type":"invokefunction","invocation_id":"s%d","function_id":"q::std","data":{"i":%d},"action":{"type":"enqueue","queue":"std"}}`, i, i))
	}
	for range n {
		if m := c.w.await(func(m wire.Message) bool { return m.Type == wire.TypeInvocationResult }); m.Error != nil {
			t.Fatalf("enqueue: %+v", m.Error)
		}
	}
	seen := map[string]bool{}
	for len(seen) < n {
		inv := w.awaitInvoke("q::std", func(wire.Message) bool { return true })
		if seen[string(inv.Data)] {
			t.Fatalf("delivered twice: %s", inv.Data)
		}
		seen[string(inv.Data)] = true
		w.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: "q::std", Result: jsontext.Value(`null`)})
	}

	// Fifo: group a holds three jobs, b one; each is answered as it comes.
	for _, d := range []string{`{"g":"a","k":1}`, `{"g":"a","k":2}`, `{"g":"b","k":1}`, `{"g":"a","k":3}`} {
		var rcpt map[string]string
		c.ok(fnQueueEnqueue, `{"queue":"ordered","function_id":"q::fifo","data":`+d+`}`, &rcpt)
	}
	var order []string
	for len(order) < 4 {
		inv := w.awaitInvoke("q::fifo", func(wire.Message) bool { return true })
		var v struct {
			G string `json:"g"`
			K int    `json:"k"`
		}
		if err := json.Unmarshal(inv.Data, &v); err != nil {
			t.Fatal(err)
		}
		if v.G == "a" {
			order = append(order, fmt.Sprint(v.K))
		} else {
			order = append(order, "b")
		}
		w.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: "q::fifo", Result: jsontext.Value(`null`)})
	}
	var as []string
	for _, o := range order {
		if o != "b" {
			as = append(as, o)
		}
	}
	if strings.Join(as, ",") != "1,2,3" {
		t.Fatalf("group a delivered in order %v, want 1,2,3 (all: %v)", as, order)
	}
}
