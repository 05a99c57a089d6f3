package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/uuid"

	"github.com/sluicehq/sluice/internal/queue"
	"github.com/sluicehq/sluice/wire"
)

// Tests for the mutation-testing survivors of queue.go (docs/testing.md,
// "Mutation testing"). Each names the mutant it kills (line numbers of
// queue.go as of 7bf40b1, which the run mutated); each was checked by
// applying that mutant by hand and seeing the test fail.

// TestQueueMutStoreOpenedWhenItExists: a SQLite data dir without a queue
// file gets none at start (the store is created on first use), and one
// holding jobs of an earlier run is opened at start, so a parked job is
// delivered as soon as its function registers, with nothing enqueued.
// Fails on queue.go:115 CONDITIONALS_NEGATION (fileExists negated; the
// run's existing tests kill it too).
func TestQueueMutStoreOpenedWhenItExists(t *testing.T) {
	dir := t.TempDir()
	first := startEngine(t, func(c *Config) { c.DataDir = dir })
	if _, err := os.Stat(filepath.Join(dir, queue.FileName)); err == nil {
		t.Fatal("the queue store file was created at start, before any queue use")
	}
	c := &queueCaller{w: dialRaw(t, first)}
	var rcpt map[string]string
	c.ok(fnQueueEnqueue, `{"queue":"default","function_id":"later::fn","data":{"run":1}}`, &rcpt)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := first.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	second := startEngine(t, func(c *Config) { c.DataDir = dir })
	w := dialRaw(t, second)
	w.sendJSON(`{"type":"registerfunction","id":"later::fn"}`)
	inv := w.awaitInvoke("later::fn", func(wire.Message) bool { return true })
	if !strings.Contains(string(inv.Data), `"run":1`) {
		t.Fatalf("delivery after restart: %s", inv.Data)
	}
	w.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: "later::fn", Result: jsontext.Value(`null`)})
}

// TestQueueMutStartFailsOnABrokenStore: a queue store file that cannot be
// opened fails the engine's start, naming the cause, rather than leaving
// an engine whose queues fail later.
// Kills queue.go:121 CONDITIONALS_NEGATION (the open's error ignored).
func TestQueueMutStartFailsOnABrokenStore(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, queue.FileName), []byte(strings.Repeat("not a database ", 512)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Addr, cfg.HTTPAddr, cfg.ConsoleAddr, cfg.Streams.Addr, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", "", "", dir
	e, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = e.Start(ctx)
	_ = e.Shutdown(ctx)
	if err == nil {
		t.Fatal("the engine started on a queue store that is not a database")
	}
	t.Logf("start failed as it should: %v", err)
}

// TestQueueMutDedupField: on a queue with dedup_field, a job whose field
// value was enqueued before stores nothing and gets the first job's
// receipt; another value, or no such field, is a job of its own.
// Kills queue.go:384 CONDITIONALS_NEGATION (dedup_field ignored) and
// queue.go:395 ARITHMETIC_BASE (the window × → ÷: remembered for 0 s).
func TestQueueMutDedupField(t *testing.T) {
	e := startEngine(t, func(c *Config) {
		q := DefaultQueueConfig()
		q.DedupField = "order_id"
		c.Queues = map[string]QueueConfig{"orders": q}
	})
	c := &queueCaller{w: dialRaw(t, e)}
	enqueue := func(data string) string {
		t.Helper()
		var rcpt struct {
			ID string `json:"messageReceiptId"`
		}
		c.ok(fnQueueEnqueue, `{"queue":"orders","function_id":"dd::fn","data":`+data+`}`, &rcpt)
		if rcpt.ID == "" {
			t.Fatalf("enqueue of %s answered without a receipt", data)
		}
		return rcpt.ID
	}
	first := enqueue(`{"order_id":7,"n":1}`)
	if again := enqueue(`{"order_id":7,"n":2}`); again != first {
		t.Errorf("same order_id: receipt %s, want the first job's %s", again, first)
	}
	other := enqueue(`{"order_id":8}`)
	if other == first {
		t.Errorf("another order_id got the first job's receipt %s", first)
	}
	a, b := enqueue(`{"n":3}`), enqueue(`{"n":3}`)
	if a == b || a == first || a == other {
		t.Errorf("jobs without the field got receipts %s, %s (others %s, %s): want new ones", a, b, first, other)
	}
	var st topicStats
	c.ok(fnQueueTopicStats, `{"queue":"orders"}`, &st)
	if st.Depth != 4 {
		t.Errorf("orders holds %d jobs, want 4 (the duplicate not stored)", st.Depth)
	}
}

// TestQueueMutReceiptRememberedAfterAck: a producer-chosen receipt id is
// remembered for the dedup window, not only while its job is stored: sent
// again after the job was delivered and acknowledged, it stores nothing.
// Kills queue.go:395 ARITHMETIC_BASE (window × → ÷).
func TestQueueMutReceiptRememberedAfterAck(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"rr::fn"}`)
	c := &queueCaller{w: dialRaw(t, e)}
	waitFunction(t, c.w, "rr::fn")
	var rcpt struct {
		ID string `json:"messageReceiptId"`
	}
	c.ok(fnQueueEnqueue, `{"function_id":"rr::fn","data":{"p":1},"messageReceiptId":"r-9"}`, &rcpt)
	inv := w.awaitInvoke("rr::fn", func(wire.Message) bool { return true })
	w.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: "rr::fn", Result: jsontext.Value(`null`)})
	// The ack is recorded after the answer: wait until the queue is empty.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var st topicStats
		c.ok(fnQueueTopicStats, `{"queue":"default"}`, &st)
		if st.Depth == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the delivered job is still stored: %+v", st)
		}
	}
	c.ok(fnQueueEnqueue, `{"function_id":"rr::fn","data":{"p":1},"messageReceiptId":"r-9"}`, &rcpt)
	if rcpt.ID != "r-9" {
		t.Fatalf("receipt %q, want r-9", rcpt.ID)
	}
	c.ok(fnQueueEnqueue, `{"function_id":"rr::fn","data":{"p":2}}`, &rcpt)
	inv = w.awaitInvoke("rr::fn", func(wire.Message) bool { return true })
	if !strings.Contains(string(inv.Data), `"p":2`) {
		t.Fatalf("next delivery is %s, want p 2 (the repeated receipt was stored again)", inv.Data)
	}
}

// TestQueueMutDelay: a queue's delay_ms and a durable subscriber's
// delaySeconds hold a job's first delivery back by that long (a lower
// bound only: a late delivery on a loaded machine is fine), and the job is
// then delivered. On 7bf40b1 the durable topic's job was never delivered:
// the new topic dispatcher's first wake-up stopped the timer set for it.
// Kills queue.go:380 ARITHMETIC_BASE (delay × → ÷ time.Millisecond),
// queue.go:1291 ARITHMETIC_BASE (the same in iii::durable::publish) and
// queue.go:1381 ARITHMETIC_BASE (delaySeconds × 1000 → ÷, reported not
// covered).
func TestQueueMutDelay(t *testing.T) {
	e := startEngine(t, func(c *Config) {
		q := DefaultQueueConfig()
		q.DelayMS = 400
		c.Queues = map[string]QueueConfig{"later": q}
	})
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"dl::fn"}`)
	w.sendJSON(`{"type":"registertrigger","id":"dl-sub","trigger_type":"durable:subscriber","function_id":"dl::fn","config":{"topic":"slow","queue_config":{"delaySeconds":1}}}`)
	c := &queueCaller{w: dialRaw(t, e)}
	waitFunction(t, c.w, "dl::fn")
	for deadline := time.Now().Add(5 * time.Second); ; {
		var topics []topicInfo
		c.ok(fnQueueListTopics, `{}`, &topics)
		if len(topics) > 0 && topics[len(topics)-1].Name == "slow" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the subscriber's topic never listed: %+v", topics)
		}
	}

	for _, tc := range []struct {
		name    string
		enqueue func()
		min     time.Duration
	}{
		{"delay_ms", func() {
			var rcpt map[string]string
			c.ok(fnQueueEnqueue, `{"queue":"later","function_id":"dl::fn","data":{"k":"delay_ms"}}`, &rcpt)
		}, 400 * time.Millisecond},
		{"delaySeconds", func() {
			if res := c.call(fnDurablePublish, `{"topic":"slow","data":{"k":"delaySeconds"}}`); res.Error != nil {
				t.Fatalf("publish: %+v", res.Error)
			}
		}, time.Second},
	} {
		start := time.Now()
		tc.enqueue()
		inv := w.awaitInvoke("dl::fn", func(wire.Message) bool { return true })
		// The store keeps times in milliseconds: a job may be due up to
		// 1 ms early.
		if got := time.Since(start); got < tc.min-5*time.Millisecond {
			t.Errorf("%s: delivered after %v, want at least %v", tc.name, got, tc.min)
		}
		if !strings.Contains(string(inv.Data), tc.name) {
			t.Errorf("%s: delivery carries %s", tc.name, inv.Data)
		}
		w.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: "dl::fn", Result: jsontext.Value(`null`)})
	}
}

// TestQueueMutCutPrefix: a key that is exactly the prefix is cut to "".
// Kills queue.go:248 CONDITIONALS_BOUNDARY (len(s) >= len(p) → >).
func TestQueueMutCutPrefix(t *testing.T) {
	for _, tc := range []struct {
		s, rest string
		ok      bool
	}{
		{topicQueuePrefix + "orders", "orders", true},
		{topicQueuePrefix, "", true},
		{"__topic:", "__topic:", false},
		{"orders", "orders", false},
	} {
		if rest, ok := cutPrefix(tc.s, topicQueuePrefix); rest != tc.rest || ok != tc.ok {
			t.Errorf("cutPrefix(%q) = %q %v, want %q %v", tc.s, rest, ok, tc.rest, tc.ok)
		}
	}
}

// TestQueueMutStoreOpenLogsNoWarning: opening the store lists its queues
// without complaint.
// Kills queue.go:198 CONDITIONALS_NEGATION (the warning logged when the
// listing succeeded).
func TestQueueMutStoreOpenLogsNoWarning(t *testing.T) {
	_, logs := startEngineLogged(t) // the memory store opens at start
	if n := logs.count("queue store open"); n != 1 {
		t.Fatalf("%d store open lines, want 1:\n%s", n, logs)
	}
	if n := logs.count("listing stored queues failed"); n != 0 {
		t.Fatalf("the store's queue listing reported as failed:\n%s", logs)
	}
}

// TestQueueMutDefinitionOutlivesRestart: a queue declared with
// queue::define on a SQLite store is there again after a restart, with
// its settings, without being declared again.
// Kills queue.go:186 CONDITIONALS_NEGATION ×2 (a valid stored definition
// ignored; reported not covered).
func TestQueueMutDefinitionOutlivesRestart(t *testing.T) {
	dir := t.TempDir()
	first := startEngine(t, func(c *Config) { c.DataDir = dir })
	c := &queueCaller{w: dialRaw(t, first)}
	var def map[string]any
	c.ok(fnQueueDefine, `{"name":"kept","config":{"max_retries":4,"concurrency":2}}`, &def)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := first.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	second := startEngine(t, func(c *Config) { c.DataDir = dir })
	c = &queueCaller{w: dialRaw(t, second)}
	var st topicStats
	c.ok(fnQueueTopicStats, `{"queue":"kept"}`, &st)
	if st.Config == nil || st.Config.MaxRetries != 4 || st.Config.Concurrency != 2 {
		t.Fatalf("the stored definition after a restart: %+v", st)
	}
	var rcpt map[string]string
	c.ok(fnQueueEnqueue, `{"queue":"kept","function_id":"k::fn","data":{}}`, &rcpt)
}

// TestQueueMutDefinedOnAnotherNode: a queue declared with queue::define on
// one cluster node takes jobs on another (the definition reaches it
// through the store's watcher).
// Kills queue.go:214 CONDITIONALS_NEGATION ×2 (a valid definition from
// another node ignored) and queue.go:220 CONDITIONALS_NEGATION (the
// queue-count bound negated: every new queue ignored); all three reported
// not covered.
func TestQueueMutDefinedOnAnotherNode(t *testing.T) {
	nodes := startNodes(t, 2)
	a, b := &queueCaller{w: dialRaw(t, nodes[0])}, &queueCaller{w: dialRaw(t, nodes[1])}
	var def map[string]any
	a.ok(fnQueueDefine, `{"name":"shared","config":{"max_retries":5}}`, &def)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var st topicStats
		b.ok(fnQueueTopicStats, `{"queue":"shared"}`, &st)
		// Until the definition arrives, "shared" reads as a durable topic
		// with the default settings.
		if st.Config != nil && st.Config.MaxRetries == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node-1 never learned the queue node-0 declared: %+v", st.Config)
		}
	}
	var rcpt map[string]string
	b.ok(fnQueueEnqueue, `{"queue":"shared","function_id":"s::fn","data":{}}`, &rcpt)
}

// TestQueueMutHandoff: a job goes straight to its dispatcher (stored
// leased) only on a standard queue that is drained and has a free slot,
// and only without a dedup key, a group or a delay, and not at shutdown;
// outside a cluster the function need not be registered yet.
// Kills queue.go:468 CONDITIONALS_NEGATION (each of the conditions) and
// queue.go:471 CONDITIONALS_NEGATION (the queue type, the cluster test):
// the hand-off only saves a store round trip, so no wire test sees them.
func TestQueueMutHandoff(t *testing.T) {
	e := startEngine(t, func(c *Config) {
		one := DefaultQueueConfig()
		one.Concurrency = 1
		c.Queues = map[string]QueueConfig{"one": one}
	})
	m := e.queues
	m.mu.Lock()
	d := m.disp["one"]
	m.mu.Unlock()
	if d == nil {
		t.Fatal("no dispatcher for queue one")
	}
	// The dispatcher's first lease (at start) finds nothing: drained.
	for deadline := time.Now().Add(5 * time.Second); !d.drained(); runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatal("the idle queue never drained")
		}
	}
	job := func(mut func(*queue.NewJob)) queue.NewJob {
		j := queue.NewJob{ID: newJobID(), Queue: "one", FunctionID: "nobody::yet", Data: []byte(`{}`), VisibleAt: time.Now()}
		if mut != nil {
			mut(&j)
		}
		return j
	}
	for _, tc := range []struct {
		name string
		j    queue.NewJob
		want bool
	}{
		{"dedup key", job(func(j *queue.NewJob) { j.DedupKey = "field:1" }), false},
		{"group", job(func(j *queue.NewJob) { j.Group = "g:1" }), false},
		{"delayed", job(func(j *queue.NewJob) { j.VisibleAt = time.Now().Add(time.Hour) }), false},
		{"plain", job(nil), true},         // takes the only slot
		{"no free slot", job(nil), false}, // concurrency 1
	} {
		got, handed := m.handoff(&tc.j)
		if got != d || handed != tc.want || tc.j.Leased != tc.want {
			t.Errorf("%s: handoff = %p %v (leased %v), want %p %v", tc.name, got, handed, tc.j.Leased, d, tc.want)
		}
	}
	d.unreserve()
	m.stopDispatch()
	j := job(nil)
	if _, handed := m.handoff(&j); handed {
		t.Error("a job was handed off while the engine stops dispatching")
	}
}

// TestQueueMutReserve: a dispatcher's slots: reserve takes one while
// fewer than the concurrency are taken, unreserve gives one back.
// Kills queue.go:642 CONDITIONALS_BOUNDARY (n >= concurrency → >),
// queue.go:645 ARITHMETIC_BASE (n+1 → n-1) and queue.go:652 (the -1 of
// unreserve, reported not covered).
func TestQueueMutReserve(t *testing.T) {
	d := &dispatcher{wake: make(chan struct{}, 1)}
	for i := range 2 {
		if !d.reserve(2) {
			t.Fatalf("reserve %d of 2 refused", i+1)
		}
	}
	if d.reserve(2) {
		t.Fatal("a third slot of 2 reserved")
	}
	if n := d.inflight.Load(); n != 2 {
		t.Fatalf("%d in flight, want 2", n)
	}
	d.unreserve()
	if n := d.inflight.Load(); n != 1 {
		t.Fatalf("%d in flight after unreserve, want 1", n)
	}
	if !d.reserve(2) {
		t.Fatal("a freed slot could not be reserved")
	}
}

// TestQueueMutJobIDAndReceipt: job ids are version 7 UUIDs (time-ordered,
// see newJobID), and the receipt answer is the id as a JSON string, also
// for a producer's id that is not valid UTF-8 (an action enqueue answers
// with such an id when its job duplicates one enqueued through
// engine::queue::enqueue with it).
// Kills queue.go:504 CONDITIONALS_NEGATION (the v4 fallback taken when
// v7 succeeded). On 7bf40b1 the invalid UTF-8 case answered
// {"messageReceiptId" (json v2 refuses invalid UTF-8 unless allowed).
func TestQueueMutJobIDAndReceipt(t *testing.T) {
	id := newJobID()
	u, err := uuid.Parse(id)
	if err != nil || u.Version() != 7 {
		t.Fatalf("newJobID() = %q (version %v, %v), want a version 7 UUID", id, u.Version(), err)
	}
	for _, tc := range []struct{ id, want string }{
		{"r-1", `{"messageReceiptId":"r-1"}`},
		{id, `{"messageReceiptId":"` + id + `"}`},
		{"a\xffb", "{\"messageReceiptId\":\"a\uFFFDb\"}"}, // was {"messageReceiptId" on 7bf40b1
	} {
		if got := string(receipt(tc.id)); got != tc.want {
			t.Errorf("receipt(%q) = %s, want %s", tc.id, got, tc.want)
		}
	}
}

// TestQueueMutQueueLimit: queue::define declares at most maxQueues queues
// in all (the default queue counts); redefining one at the limit is fine.
// Kills queue.go:1015 CONDITIONALS_BOUNDARY (>= → >: one queue too many)
// and CONDITIONALS_NEGATION.
func TestQueueMutQueueLimit(t *testing.T) {
	e := startEngine(t)
	c := &queueCaller{w: dialRaw(t, e)}
	var def map[string]any
	for i := 1; i < maxQueues; i++ { // "default" is the first
		c.ok(fnQueueDefine, fmt.Sprintf(`{"name":"q%d"}`, i), &def)
	}
	res := c.call(fnQueueDefine, `{"name":"one-too-many"}`)
	if res.Error == nil || res.Error.Code != wire.CodeInvalidArguments || !strings.Contains(res.Error.Message, "too many queues") {
		t.Fatalf("queue %d: %+v, want too many queues", maxQueues+1, res)
	}
	c.ok(fnQueueDefine, `{"name":"q7","config":{"max_retries":9}}`, &def)
	if def["created"] != false {
		t.Fatalf("redefining at the limit: %v", def)
	}
}

// TestQueueMutVisibilityOverInvocationTimeout: a queue's
// visibility_timeout_ms, not the engine's shorter invocation_timeout,
// bounds a delivery (MinTimeout): a job answered after the engine's
// timeout is acknowledged, not failed.
// Kills queue.go:839 ARITHMETIC_BASE (MinTimeout × → ÷ time.Millisecond).
func TestQueueMutVisibilityOverInvocationTimeout(t *testing.T) {
	e := startEngine(t, func(c *Config) {
		c.InvocationTimeout = time.Nanosecond // any answer comes later
		q := DefaultQueueConfig()
		q.MaxRetries = 1 // a failed attempt buries the job
		c.Queues = map[string]QueueConfig{"slow": q}
	})
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"vt::fn"}`)
	w.sendJSON(`{"type":"registerfunction","id":"vt::probe"}`)
	c := &queueCaller{w: dialRaw(t, e)}
	waitFunction(t, c.w, "vt::probe")
	var rcpt map[string]string
	c.ok(fnQueueEnqueue, `{"queue":"slow","function_id":"vt::fn","data":{}}`, &rcpt)
	inv := w.awaitInvoke("vt::fn", func(wire.Message) bool { return true })
	// A plain call made now, left unanswered, times out after the
	// delivery would have under the engine's timeout: answer then.
	if res := c.call("vt::probe", `{}`); res.Error == nil || res.Error.Code != wire.CodeTimeout {
		t.Fatalf("unanswered probe: %+v, want %s", res, wire.CodeTimeout)
	}
	w.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: "vt::fn", Result: jsontext.Value(`null`)})
	for deadline := time.Now().Add(5 * time.Second); ; {
		var st topicStats
		c.ok(fnQueueTopicStats, `{"queue":"slow"}`, &st)
		if st.DLQDepth != 0 {
			t.Fatalf("the answered job was dead-lettered: %+v", st)
		}
		if st.Depth == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the answered job is still stored: %+v", st)
		}
	}
}
