package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
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

// The tests below are for the run of queue.go from line 693 on (session 8,
// scripts/mutants); their line numbers are those of queue.go as of
// ebf0b42 (unchanged up to 27f91bd), which that run mutated. Lines 693–707
// are the old 678–692 (session 7: 15 lines were added above since).

// leaseSpy wraps the engine's queue store and reports each lease of one
// queue: how many jobs the dispatcher asked for and how many it got.
type leaseSpy struct {
	queue.Store
	queue  string
	leases chan leaseCall
	fail   atomic.Int32 // leases of queue still to fail
}

type leaseCall struct{ max, got int }

func (s *leaseSpy) Lease(ctx context.Context, q string, now time.Time, o queue.LeaseOpts) ([]queue.Job, error) {
	if q == s.queue && s.fail.Add(-1) >= 0 {
		return nil, errors.New("lease refused by the test")
	}
	jobs, err := s.Store.Lease(ctx, q, now, o)
	if q == s.queue {
		select {
		case s.leases <- leaseCall{o.Max, len(jobs)}:
		default: // the test reads no further
		}
	}
	return jobs, err
}

// asyncLeaseSpy is leaseSpy for a store with asynchronous writes (SQLite),
// which the engine must still see as such.
type asyncLeaseSpy struct {
	*leaseSpy
	queue.Async
}

// slotsQueue configures a standard queue "slots" of the given
// concurrency, then applies mutate.
func slotsQueue(concurrency int, mutate func(*Config)) func(*Config) {
	return func(c *Config) {
		q := DefaultQueueConfig()
		q.Concurrency = concurrency
		c.Queues = map[string]QueueConfig{"slots": q}
		mutate(c)
	}
}

// spyLeases starts an engine with the queue "slots" (slotsQueue) and spies
// on its leases (spyLeasesOn).
func spyLeases(t *testing.T, concurrency int, mutate func(*Config)) (*leaseSpy, *rawWorker, *queueCaller, *dispatcher) {
	t.Helper()
	return spyLeasesOn(t, startEngine(t, slotsQueue(concurrency, mutate)))
}

// spyLeasesOn connects a worker serving "sl::fn" to e, waits until the
// queue "slots"' dispatcher has made its first (empty) lease, and then
// puts a lease spy between the engine and its store.
func spyLeasesOn(t *testing.T, e *Engine) (*leaseSpy, *rawWorker, *queueCaller, *dispatcher) {
	t.Helper()
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"sl::fn"}`)
	c := &queueCaller{w: dialRaw(t, e)}
	waitFunction(t, c.w, "sl::fn")
	m := e.queues
	if _, err := m.open(); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	d := m.disp["slots"]
	m.mu.Unlock()
	if d == nil {
		t.Fatal("no dispatcher for queue slots")
	}
	for deadline := time.Now().Add(5 * time.Second); !d.drained(); runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatal("the idle queue never drained")
		}
	}
	m.mu.Lock()
	spy := &leaseSpy{Store: m.store, queue: "slots", leases: make(chan leaseCall, 256)}
	if a, ok := m.store.(queue.Async); ok {
		m.store = &asyncLeaseSpy{spy, a}
	} else {
		m.store = spy
	}
	m.mu.Unlock()
	return spy, w, c, d
}

// next returns the next lease of the queue, failing the test after 10 s.
func (s *leaseSpy) next(t *testing.T, what string) leaseCall {
	t.Helper()
	select {
	case l := <-s.leases:
		return l
	case <-time.After(10 * time.Second):
		t.Fatalf("no lease %s", what)
	}
	return leaseCall{}
}

// qmNextInvoke returns the worker's next message, which must be a delivery
// of job i of sl::fn.
func qmNextInvoke(t *testing.T, w *rawWorker, i int) wire.Message {
	t.Helper()
	inv := w.await(func(wire.Message) bool { return true })
	if inv.Type != wire.TypeInvokeFunction || inv.FunctionID != "sl::fn" || !strings.Contains(string(inv.Data), fmt.Sprintf(`"i":%d}`, i)) {
		t.Fatalf("next message %+v (data %s), want the delivery of job %d", inv, inv.Data, i)
	}
	return inv
}

func qmAnswer(w *rawWorker, inv wire.Message) {
	w.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID, Result: jsontext.Value(`null`)})
}

// TestQueueMutNoDeliveryWhileSlotsBusy: with every slot of a queue busy, a
// job enqueued meanwhile is not leased; when one delivery settles, the
// dispatcher leases exactly one job (the free slot), and that job is
// delivered next. Run on the memory store and on SQLite (its acks are
// asynchronous: the settled delivery itself wakes the dispatcher).
// Kills queue.go:695 ARITHMETIC_BASE (free slots C - inflight → C +
// inflight: the waiting jobs were leased at once, beyond the concurrency),
// queue.go:707 ×2 (free > 0 → >= 0: a lease of 0 jobs with every slot
// busy) and queue.go:704:50 CONDITIONALS_NEGATION (a non-cluster
// dispatcher looked in the store on every wake-up: a handed-off job cost
// a lease), which the run of session 7 left as not deterministically
// testable: the lease spy makes the dispatcher's decision visible.
func TestQueueMutNoDeliveryWhileSlotsBusy(t *testing.T) {
	qmEachLocalStore(t, func(t *testing.T, store func(*Config)) {
		const slots = 4
		spy, w, c, _ := spyLeases(t, slots, store)
		var rcpt map[string]string
		var invs []wire.Message
		for i := 1; i <= slots; i++ { // handed to free slots: no lease
			c.ok(fnQueueEnqueue, fmt.Sprintf(`{"queue":"slots","function_id":"sl::fn","data":{"i":%d}}`, i), &rcpt)
			invs = append(invs, qmNextInvoke(t, w, i))
		}
		for i := slots + 1; i <= slots+2; i++ { // stored: every slot is busy
			c.ok(fnQueueEnqueue, fmt.Sprintf(`{"queue":"slots","function_id":"sl::fn","data":{"i":%d}}`, i), &rcpt)
		}
		qmAnswer(w, invs[0])
		if l := spy.next(t, "after a delivery settled"); l.max != 1 || l.got != 1 {
			t.Fatalf("first lease with %d slots busy, then one freed: max %d, got %d; want 1, 1", slots, l.max, l.got)
		}
		invs = append(invs, qmNextInvoke(t, w, slots+1))
		qmAnswer(w, invs[1])
		if l := spy.next(t, "after a second delivery settled"); l.max != 1 || l.got != 1 {
			t.Fatalf("second lease: max %d, got %d; want 1, 1", l.max, l.got)
		}
		invs = append(invs, qmNextInvoke(t, w, slots+2))
		for _, inv := range invs[2:] {
			qmAnswer(w, inv)
		}
	})
}

// qmEachLocalStore runs test on the memory and the SQLite store.
func qmEachLocalStore(t *testing.T, test func(t *testing.T, store func(*Config))) {
	t.Run("memory", func(t *testing.T) { test(t, func(c *Config) { c.DataDir = DataDirMemory }) })
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		test(t, func(c *Config) { c.DataDir = dir })
	})
}

// TestQueueMutLeaseWaitsForAQuarter: a standard queue with jobs in flight
// leases again only once a quarter of its slots are free, and then as
// many jobs as slots are free (one store write for several jobs).
// Kills queue.go:698 (the quarter rule: its type test negated, inflight > 0
// negated, free < max(1, C/4) → <= and negated, C/4 → C*4), queue.go:709
// (a standard queue leased as fifo) and queue.go:840 (SQLite: a settled
// delivery wakes the dispatcher only once a quarter of the slots are
// free: <= → < and negated, C/4 → C*4; and Add(-1) → Add(+1)), left by
// session 7 as not deterministically testable.
func TestQueueMutLeaseWaitsForAQuarter(t *testing.T) {
	qmEachLocalStore(t, func(t *testing.T, store func(*Config)) {
		const slots = 8 // a quarter: 2
		spy, w, c, _ := spyLeases(t, slots, store)
		var rcpt map[string]string
		var invs []wire.Message
		for i := 1; i <= slots; i++ {
			c.ok(fnQueueEnqueue, fmt.Sprintf(`{"queue":"slots","function_id":"sl::fn","data":{"i":%d}}`, i), &rcpt)
			invs = append(invs, qmNextInvoke(t, w, i))
		}
		for i := slots + 1; i <= slots+3; i++ {
			c.ok(fnQueueEnqueue, fmt.Sprintf(`{"queue":"slots","function_id":"sl::fn","data":{"i":%d}}`, i), &rcpt)
		}
		qmAnswer(w, invs[0]) // one free slot: not yet
		qmAnswer(w, invs[1]) // two: lease both
		if l := spy.next(t, "after two deliveries settled"); l.max != 2 || l.got != 2 {
			t.Fatalf("first lease after 2 of %d slots freed: max %d, got %d; want 2, 2", slots, l.max, l.got)
		}
		invs = append(invs, qmNextInvoke(t, w, slots+1), qmNextInvoke(t, w, slots+2))
		for _, inv := range invs[2:] {
			qmAnswer(w, inv)
		}
		if l := spy.next(t, "after every delivery settled"); l.got != 1 {
			t.Fatalf("last lease: max %d, got %d; want the last job", l.max, l.got)
		}
		qmAnswer(w, qmNextInvoke(t, w, slots+3))
	})
}

// TestQueueMutDelayOnACluster: on a cluster node a delayed job is
// delivered when its time comes, with nothing else happening: the idle
// dispatcher sleeps until the job's time, bounded by clusterRecheck.
// Kills queue.go:782 ARITHMETIC_BASE (clusterRecheck 2 * time.Second → /:
// a bound of 0 left the dispatcher with no timer, the job never came).
func TestQueueMutDelayOnACluster(t *testing.T) {
	e := startEngine(t, func(c *Config) {
		c.DataDir, c.Cluster.Enabled, c.Cluster.NodeName = t.TempDir(), true, "test-node"
		q := DefaultQueueConfig()
		q.DelayMS = 300
		c.Queues = map[string]QueueConfig{"later": q}
	})
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"dc::fn"}`)
	c := &queueCaller{w: dialRaw(t, e)}
	waitFunction(t, c.w, "dc::fn")
	var rcpt map[string]string
	c.ok(fnQueueEnqueue, `{"queue":"later","function_id":"dc::fn","data":{"k":1}}`, &rcpt)
	inv := w.awaitInvoke("dc::fn", func(wire.Message) bool { return true })
	qmAnswer(w, inv)
}

// TestQueueMutSettleLogsNoFailure: settling deliveries (a success, a
// failure that is retried, the retry's success) records them without an
// error line, on the memory store (settled on a goroutine) and on SQLite
// (a success acknowledged asynchronously).
// Kills queue.go:833 CONDITIONALS_NEGATION (the asynchronous ack's
// callback logged "recording a delivery failed" on success) and
// queue.go:912 CONDITIONALS_NEGATION (the same in settle).
func TestQueueMutSettleLogsNoFailure(t *testing.T) {
	qmEachLocalStore(t, func(t *testing.T, store func(*Config)) {
		e, logs := startEngineLogged(t, func(c *Config) {
			store(c)
			q := DefaultQueueConfig()
			q.BackoffMS = 1
			c.Queues = map[string]QueueConfig{"jobs": q}
		})
		w := dialRaw(t, e)
		w.sendJSON(`{"type":"registerfunction","id":"sn::fn"}`)
		c := &queueCaller{w: dialRaw(t, e)}
		waitFunction(t, c.w, "sn::fn")
		var rcpt map[string]string
		c.ok(fnQueueEnqueue, `{"queue":"jobs","function_id":"sn::fn","data":{"n":1}}`, &rcpt)
		qmAnswer(w, w.awaitInvoke("sn::fn", func(wire.Message) bool { return true }))
		c.ok(fnQueueEnqueue, `{"queue":"jobs","function_id":"sn::fn","data":{"n":2}}`, &rcpt)
		failDelivery(t, w, "sn::fn", `"n":2`)
		qmAnswer(w, w.awaitInvoke("sn::fn", func(wire.Message) bool { return true }))
		c.dlqCount("jobs", 0)
		// Shutdown waits for every settlement and ack callback.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if n := logs.count("recording a delivery failed"); n != 0 {
			t.Fatalf("settled deliveries logged as failed to record (%d):\n%s", n, logs)
		}
		if n := logs.count("job failed; retrying"); n != 1 {
			t.Fatalf("%d retries logged, want 1:\n%s", n, logs)
		}
	})
}

// TestQueueMutShutdownReleasesInFlightJob: a job in flight when the
// engine shuts down spends no attempt: with max_retries 1 it is not
// dead-lettered but delivered again after the restart.
// Kills queue.go:888 CONDITIONALS_NEGATION ×2 (the invocation_stopped
// code and the shutdown test: the job was buried as failed).
func TestQueueMutShutdownReleasesInFlightJob(t *testing.T) {
	dir := t.TempDir()
	cfg := func(c *Config) {
		c.DataDir = dir
		q := DefaultQueueConfig()
		q.MaxRetries = 1
		c.Queues = map[string]QueueConfig{"once": q}
	}
	first := startEngine(t, cfg)
	w := dialRaw(t, first)
	w.sendJSON(`{"type":"registerfunction","id":"sr::fn"}`)
	c := &queueCaller{w: dialRaw(t, first)}
	waitFunction(t, c.w, "sr::fn")
	var rcpt map[string]string
	c.ok(fnQueueEnqueue, `{"queue":"once","function_id":"sr::fn","data":{"k":"kept"}}`, &rcpt)
	w.awaitInvoke("sr::fn", func(wire.Message) bool { return true }) // left unanswered
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := first.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	second := startEngine(t, cfg)
	w = dialRaw(t, second)
	w.sendJSON(`{"type":"registerfunction","id":"sr::fn"}`)
	inv := w.awaitInvoke("sr::fn", func(wire.Message) bool { return true })
	if !strings.Contains(string(inv.Data), `"k":"kept"`) {
		t.Fatalf("delivery after the restart: %s", inv.Data)
	}
	qmAnswer(w, inv)
	c = &queueCaller{w: dialRaw(t, second)}
	c.dlqCount("once", 0)
}

// TestQueueMutParkLogged: a job whose function is not registered is
// parked, said once in the log, and delivered when the function registers.
// Kills queue.go:863 CONDITIONALS_NEGATION (a successful park taken for a
// failed one: the rest of the backlog was not parked with it, nothing was
// logged, and a registration racing the park was not looked after).
func TestQueueMutParkLogged(t *testing.T) {
	e, logs := startEngineLogged(t)
	c := &queueCaller{w: dialRaw(t, e)}
	var rcpt map[string]string
	c.ok(fnQueueEnqueue, `{"function_id":"pk::fn","data":{"p":1}}`, &rcpt)
	const parked = "job waits for its function to register"
	for deadline := time.Now().Add(5 * time.Second); logs.count(parked) == 0; runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatalf("the job was never logged as parked:\n%s", logs)
		}
	}
	if n := logs.count("park failed"); n != 0 {
		t.Fatalf("a park logged as failed:\n%s", logs)
	}
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"pk::fn"}`)
	qmAnswer(w, w.awaitInvoke("pk::fn", func(wire.Message) bool { return true }))
}

// TestQueueMutDefineInput: queue::define without input is refused for its
// missing name (not as unreadable input); with a name that is not a
// string, as unreadable.
// Kills queue.go:988 CONDITIONALS_BOUNDARY (len(req.Data) > 0 → >= 0: no
// input was decoded and refused as invalid).
func TestQueueMutDefineInput(t *testing.T) {
	e := startEngine(t)
	c := &queueCaller{w: dialRaw(t, e)}
	c.w.sendJSON(`{"type":"invokefunction","invocation_id":"no-input","function_id":"` + fnQueueDefine + `"}`)
	res := c.w.await(func(m wire.Message) bool { return m.Type == wire.TypeInvocationResult && m.InvocationID == "no-input" })
	if res.Error == nil || res.Error.Code != wire.CodeInvalidArguments || !strings.Contains(res.Error.Message, "name must not be empty") {
		t.Fatalf("define without input: %+v", res.Error)
	}
	res = c.call(fnQueueDefine, `{"name":5}`)
	if res.Error == nil || res.Error.Code != wire.CodeInvalidArguments || !strings.Contains(res.Error.Message, "invalid input for "+fnQueueDefine) {
		t.Fatalf("define with a number for a name: %+v", res.Error)
	}
}

// TestQueueMutRedefineWakesDispatcher: raising a queue's concurrency with
// queue::define while its only slot is busy delivers a waiting job at
// once, without waiting for the busy one to settle.
// Kills queue.go:1037 CONDITIONALS_NEGATION (the dispatcher not woken).
func TestQueueMutRedefineWakesDispatcher(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"rd::fn"}`)
	c := &queueCaller{w: dialRaw(t, e)}
	waitFunction(t, c.w, "rd::fn")
	var def map[string]any
	c.ok(fnQueueDefine, `{"name":"grow","config":{"concurrency":1}}`, &def)
	var rcpt map[string]string
	c.ok(fnQueueEnqueue, `{"queue":"grow","function_id":"rd::fn","data":{"i":1}}`, &rcpt)
	first := w.awaitInvoke("rd::fn", func(wire.Message) bool { return true })
	c.ok(fnQueueEnqueue, `{"queue":"grow","function_id":"rd::fn","data":{"i":2}}`, &rcpt)
	c.ok(fnQueueDefine, `{"name":"grow","config":{"concurrency":2}}`, &def)
	second := w.awaitInvoke("rd::fn", func(wire.Message) bool { return true })
	if !strings.Contains(string(second.Data), `"i":2`) {
		t.Fatalf("second delivery: %s", second.Data)
	}
	qmAnswer(w, first)
	qmAnswer(w, second)
}

// TestQueueMutStoredTopicListed: a durable topic whose subscribers are
// gone while it still holds a job is listed from the store, by
// list_topics and dlq_topics.
// Kills queue.go:1067 and :1068 CONDITIONALS_NEGATION (the store's
// queues not listed).
func TestQueueMutStoredTopicListed(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"or::fn"}`)
	w.sendJSON(`{"type":"registertrigger","id":"or-sub","trigger_type":"durable:subscriber","function_id":"or::fn","config":{"topic":"orphan"}}`)
	c := &queueCaller{w: w}
	var topics []topicInfo
	c.ok(fnQueueListTopics, `{}`, &topics) // the same socket: after the registrations
	// Published from another socket: w's calls skip other messages, the
	// delivery among them.
	p := &queueCaller{w: dialRaw(t, e)}
	if res := p.call(fnDurablePublish, `{"topic":"orphan","data":{"o":1}}`); res.Error != nil {
		t.Fatalf("publish: %+v", res.Error)
	}
	inv := w.awaitInvoke("or::fn", func(wire.Message) bool { return true }) // held in flight
	w.sendJSON(`{"type":"unregistertrigger","id":"or-sub"}`)
	// The same socket: the unregistration is done before these calls.
	c.ok(fnQueueListTopics, `{}`, &topics)
	found := false
	for _, tp := range topics {
		found = found || (tp.Name == "orphan" && tp.BrokerType == "topic" && tp.SubscriberCount == 0)
	}
	if !found {
		t.Fatalf("list_topics without the stored topic orphan: %+v", topics)
	}
	var dlq []dlqTopic
	c.ok(fnQueueDLQTopics, `{}`, &dlq)
	found = false
	for _, tp := range dlq {
		found = found || (tp.Topic == "orphan" && tp.BrokerType == "topic")
	}
	if !found {
		t.Fatalf("dlq_topics without the stored topic orphan: %+v", dlq)
	}
	qmAnswer(w, inv)
}

// TestQueueMutTopicStatsConsumers: topic_stats counts a queue's consumers
// as its concurrency and a durable topic's as its subscribed functions.
// Kills queue.go:1126 CONDITIONALS_NEGATION (the two swapped).
func TestQueueMutTopicStatsConsumers(t *testing.T) {
	e := startEngine(t, func(c *Config) {
		q := DefaultQueueConfig()
		q.Concurrency = 3
		c.Queues = map[string]QueueConfig{"three": q}
	})
	w := dialRaw(t, e)
	for _, fn := range []string{"ts::a", "ts::b"} {
		w.sendJSON(`{"type":"registerfunction","id":"` + fn + `"}`)
		w.sendJSON(`{"type":"registertrigger","id":"sub-` + fn + `","trigger_type":"durable:subscriber","function_id":"` + fn + `","config":{"topic":"pair"}}`)
	}
	c := &queueCaller{w: w}
	var st topicStats
	c.ok(fnQueueTopicStats, `{"queue":"three"}`, &st)
	if st.ConsumerCount != 3 {
		t.Errorf("queue three: %d consumers, want its concurrency 3", st.ConsumerCount)
	}
	c.ok(fnQueueTopicStats, `{"topic":"pair"}`, &st)
	if st.ConsumerCount != 2 {
		t.Errorf("topic pair: %d consumers, want its 2 subscribers", st.ConsumerCount)
	}
}

// TestQueueMutDLQPagingAndRedrive: dlq_messages pages with offset and
// limit (a limit of 0 lists nothing, none lists up to 50), and
// engine::queue::redrive puts every dead-lettered job back for delivery.
// Kills queue.go:1193 CONDITIONALS_NEGATION (a positive offset ignored),
// :1196 CONDITIONALS_BOUNDARY and NEGATION (limit 0 taken as none, a
// limit ignored) and :1234 CONDITIONALS_NEGATION (nothing redriven).
func TestQueueMutDLQPagingAndRedrive(t *testing.T) {
	e := startEngine(t, func(c *Config) {
		q := DefaultQueueConfig()
		q.MaxRetries = 1
		c.Queues = map[string]QueueConfig{"dead": q}
	})
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"dq::fn"}`)
	c := &queueCaller{w: dialRaw(t, e)}
	waitFunction(t, c.w, "dq::fn")
	var rcpt map[string]string
	for i := 1; i <= 3; i++ {
		c.ok(fnQueueEnqueue, fmt.Sprintf(`{"queue":"dead","function_id":"dq::fn","data":{"d":%d}}`, i), &rcpt)
		failDelivery(t, w, "dq::fn", fmt.Sprintf(`"d":%d`, i))
		c.dlqCount("dead", int64(i))
	}
	var all []dlqMessage
	c.ok(fnQueueDLQMessages, `{"queue":"dead"}`, &all)
	if len(all) != 3 {
		t.Fatalf("dlq_messages: %d messages, want 3", len(all))
	}
	for _, tc := range []struct {
		in   string
		want []dlqMessage
	}{
		{`{"queue":"dead","offset":1}`, all[1:]},
		{`{"queue":"dead","limit":1}`, all[:1]},
		{`{"queue":"dead","offset":1,"limit":1}`, all[1:2]},
		{`{"queue":"dead","limit":0}`, nil},
		{`{"queue":"dead","offset":0,"limit":-1}`, all},
	} {
		var got []dlqMessage
		c.ok(fnQueueDLQMessages, tc.in, &got)
		var ids, want []string
		for _, m := range got {
			ids = append(ids, m.ID)
		}
		for _, m := range tc.want {
			want = append(want, m.ID)
		}
		if strings.Join(ids, ",") != strings.Join(want, ",") {
			t.Errorf("dlq_messages %s: %v, want %v", tc.in, ids, want)
		}
	}
	var rd map[string]any
	c.ok(fnQueueRedrive, `{"queue":"dead"}`, &rd)
	if rd["redriven"] != 3.0 {
		t.Fatalf("redrive: %v", rd)
	}
	seen := map[string]bool{}
	for len(seen) < 3 {
		inv := w.awaitInvoke("dq::fn", func(wire.Message) bool { return true })
		seen[string(inv.Data)] = true
		qmAnswer(w, inv)
	}
	c.dlqCount("dead", 0)
}

// TestQueueMutTopicConfig: a durable subscriber's queue_config (upstream's
// names) overrides the default queue settings of its topic where valid:
// type only "standard" (a topic has no group field for fifo), maxRetries
// from 0 (retries after the first delivery), concurrency and
// visibilityTimeout from 1, delaySeconds from 1 s, backoffDelayMs from 0.
// Kills queue.go:1383 CONDITIONALS_NEGATION (type fifo taken), :1389
// CONDITIONALS_BOUNDARY (concurrency 0 taken: nothing was ever delivered)
// and the boundaries of :1392, :1395, :1398.
func TestQueueMutTopicConfig(t *testing.T) {
	e := startEngine(t)
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"tc::fn"}`)
	def := DefaultQueueConfig()
	for i, tc := range []struct {
		qc   string
		want func(*QueueConfig)
	}{
		{`{}`, func(*QueueConfig) {}},
		{`{"type":"fifo"}`, func(*QueueConfig) {}},
		{`{"type":"standard","maxRetries":0,"concurrency":1,"visibilityTimeout":1,"delaySeconds":1,"backoffDelayMs":0}`, func(q *QueueConfig) {
			q.MaxRetries, q.Concurrency, q.VisibilityTimeoutMS, q.DelayMS, q.BackoffMS = 1, 1, 1, 1000, 0
		}},
		{`{"maxRetries":-1,"concurrency":0,"visibilityTimeout":0,"delaySeconds":0,"backoffDelayMs":-1}`, func(*QueueConfig) {}},
	} {
		topic := fmt.Sprintf("tc-%d", i)
		w.sendJSON(`{"type":"registertrigger","id":"` + topic + `","trigger_type":"durable:subscriber","function_id":"tc::fn","config":{"topic":"` + topic + `","queue_config":` + tc.qc + `}}`)
		c := &queueCaller{w: w}
		var st topicStats
		c.ok(fnQueueTopicStats, `{"topic":"`+topic+`"}`, &st) // after the registration: same socket
		want := def
		tc.want(&want)
		if st.Config == nil || *st.Config != want {
			t.Errorf("queue_config %s: %+v, want %+v", tc.qc, st.Config, want)
		}
	}
}

// TestQueueMutLeaseFailureRetried: a lease the store fails is logged and
// tried again a second later; the job is then delivered.
// Kills queue.go:718 CONDITIONALS_NEGATION (reported not covered: the
// failure neither logged nor waited for while the engine runs, the lease
// retried at once in a loop).
func TestQueueMutLeaseFailureRetried(t *testing.T) {
	e, logs := startEngineLogged(t, slotsQueue(1, func(*Config) {}))
	spy, w, c, _ := spyLeasesOn(t, e)
	spy.fail.Store(1)
	var rcpt map[string]string
	// A producer's receipt id: stored, not handed off, so leased.
	c.ok(fnQueueEnqueue, `{"queue":"slots","function_id":"sl::fn","data":{"i":1},"messageReceiptId":"lf-1"}`, &rcpt)
	inv := qmNextInvoke(t, w, 1)
	if n := logs.count("lease failed"); n != 1 {
		t.Fatalf("%d lease failures logged, want 1:\n%s", n, logs)
	}
	qmAnswer(w, inv)
}

// TestQueueMutFifoSettleWakes: a fifo queue with its slots nearly all
// busy delivers a group's next job as soon as the group's head settles
// (the settled delivery wakes the dispatcher: on SQLite the ack is
// asynchronous and a standard queue waits for a quarter of its slots).
// Kills queue.go:840 CONDITIONALS_NEGATION (cfg.Type == "fifo" negated:
// no wake-up until 2 of the 8 slots were free).
func TestQueueMutFifoSettleWakes(t *testing.T) {
	qmEachLocalStore(t, func(t *testing.T, store func(*Config)) {
		const slots = 8
		_, w, c, _ := spyLeases(t, slots, func(cfg *Config) {
			store(cfg)
			q := cfg.Queues["slots"]
			q.Type, q.MessageGroupField = "fifo", "g"
			cfg.Queues["slots"] = q
		})
		var rcpt map[string]string
		invs := map[int]wire.Message{}
		for g := range slots {
			c.ok(fnQueueEnqueue, fmt.Sprintf(`{"queue":"slots","function_id":"sl::fn","data":{"g":"%d","i":%d}}`, g, g), &rcpt)
		}
		for range slots {
			inv := w.awaitInvoke("sl::fn", func(wire.Message) bool { return true })
			var v struct {
				I int `json:"i"`
			}
			if err := json.Unmarshal(inv.Data, &v); err != nil {
				t.Fatal(err)
			}
			invs[v.I] = inv
		}
		c.ok(fnQueueEnqueue, `{"queue":"slots","function_id":"sl::fn","data":{"g":"0","i":100}}`, &rcpt)
		qmAnswer(w, invs[0])
		next := qmNextInvoke(t, w, 100)
		qmAnswer(w, next)
		for g := 1; g < slots; g++ {
			qmAnswer(w, invs[g])
		}
	})
}
