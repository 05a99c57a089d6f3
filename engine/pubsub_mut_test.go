package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/wire"
)

// Tests for the pubsub.go mutants the engine tests did not detect
// (docs/testing.md, "Mutation testing"). Each names the mutants it kills;
// each was applied by hand and the test fails on it.

// TestPubSubConfigValidate: each bound refuses 0, naming its setting, and
// accepts its smallest valid value. Kills pubsub.go:59, :61, :63
// (CONDITIONALS_BOUNDARY and _NEGATION each).
func TestPubSubConfigValidate(t *testing.T) {
	for _, c := range []struct {
		key    string
		mutate func(*PubSubConfig)
	}{
		{"pubsub.max_pending_deliveries", func(c *PubSubConfig) { c.MaxPendingDeliveries = 0 }},
		{"pubsub.max_concurrent_deliveries", func(c *PubSubConfig) { c.MaxConcurrentDeliveries = 0 }},
		{"pubsub.publish_timeout", func(c *PubSubConfig) { c.PublishTimeout = 0 }},
	} {
		cfg := DefaultConfig()
		c.mutate(&cfg.PubSub)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%s: Validate() = %v, want an error naming it", c.key, err)
		}
	}
	cfg := DefaultConfig()
	cfg.PubSub.MaxPendingDeliveries, cfg.PubSub.MaxConcurrentDeliveries, cfg.PubSub.PublishTimeout = 1, 1, time.Nanosecond
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the smallest valid pubsub bounds refused: %v", err)
	}
}

// pubsubSubscriber registers function fn with n subscribe bindings of
// topic on a new connection (which never answers unless the test does).
func pubsubSubscriber(t *testing.T, e *Engine, fn, topic string, n int) *rawWorker {
	t.Helper()
	h := dialRaw(t, e)
	h.sendJSON(`{"type":"registerfunction","id":"` + fn + `"}`)
	for i := range n {
		h.sendJSON(fmt.Sprintf(`{"type":"registertrigger","id":"%s-%d","trigger_type":"subscribe","function_id":"%s","config":{"topic":"%s"}}`, fn, i, fn, topic))
	}
	settle(t, h)
	return h
}

func anyInvoke(wire.Message) bool { return true }

// TestPublishCongestedCountsTheMissed: a publish waiting for room for two
// deliveries gets room for the first; the second finds none within
// publish_timeout, and the publish answers PUBLISH_CONGESTED naming 1 of 3
// missed (the count is of those left when the time ran out, not of those
// that waited). The waiting publish is then no longer counted. Kills
// pubsub.go:161 (len(rest)-i: INVERT_NEGATIVES, ARITHMETIC_BASE) and
// :153 (INVERT_NEGATIVES, ARITHMETIC_BASE: the waiting count).
func TestPublishCongestedCountsTheMissed(t *testing.T) {
	m := &pubsubModule{e: &Engine{ctx: context.Background(), log: testLogger(t)}, queue: make(chan pubsubDelivery, 1),
		// The test makes room for the first delivery well within the timeout.
		cfg: PubSubConfig{MaxPendingDeliveries: 1, MaxConcurrentDeliveries: 1, PublishTimeout: 3 * time.Second}}
	m.running.Store(1)                                               // the only slot is taken: nothing queued is started
	m.queue <- pubsubDelivery{mt: &moduleTrigger[subscribeConfig]{}} // a delivery queued ahead
	answered := make(chan *wire.ErrorBody, 1)
	m.wait("t", []*moduleTrigger[subscribeConfig]{{}, {}}, 3, jsontext.Value("1"), func(_ jsontext.Value, eb *wire.ErrorBody) { answered <- eb })
	if n := m.waiting.Load(); n != 1 {
		t.Fatalf("%d publishes counted as waiting, want 1", n)
	}
	<-m.queue // room for the first
	select {
	case eb := <-answered:
		if eb == nil || eb.Code != "PUBLISH_CONGESTED" || !strings.Contains(eb.Message, `1 of 3 subscribers of topic "t"`) ||
			!strings.Contains(eb.Message, "publish_timeout (3s)") {
			t.Fatalf("publish answered %+v, want PUBLISH_CONGESTED for 1 of 3", eb)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting publish was not answered")
	}
	if len(m.queue) != 1 {
		t.Fatal("the delivery that found room was not queued")
	}
	if n := m.dropped.Load(); n != 1 {
		t.Fatalf("%d deliveries counted as dropped, want 1", n)
	}
	// The answer comes just before the waiting count is decremented.
	for deadline := time.Now().Add(5 * time.Second); m.waiting.Load() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d publishes still counted as waiting after the answer", m.waiting.Load())
		}
	}
}

// TestWaitingPublishesBounded: at most maxWaitingPublishes publishes wait
// for room at once; the next one is answered PUBLISH_CONGESTED at once and
// is not counted as waiting. Kills pubsub.go:147 (CONDITIONALS_BOUNDARY,
// _NEGATION) and :148 (INVERT_NEGATIVES, ARITHMETIC_BASE).
func TestWaitingPublishesBounded(t *testing.T) {
	e := startEngine(t, func(c *Config) {
		c.PubSub.MaxConcurrentDeliveries, c.PubSub.MaxPendingDeliveries = 1, 1
		c.PubSub.PublishTimeout = time.Minute // the waiting publishes outlast the test (shutdown ends them)
	})
	m := e.modules.pubsub
	h := pubsubSubscriber(t, e, "sub::held", "t", 1)
	c := dialRaw(t, e)
	// One delivery runs (never answered), one is queued (both publishes
	// answered), maxWaitingPublishes wait.
	for i := range 2 + maxWaitingPublishes {
		c.sendJSON(fmt.Sprintf(`{"type":"invokefunction","invocation_id":"22222222-0000-0000-0000-%012d","function_id":"publish","data":{"topic":"t","data":%d}}`, i, i))
	}
	h.awaitInvoke("sub::held", anyInvoke)
	// The reader handles c's messages in order: once this is answered,
	// every publish above has run (and counted itself if it waits); none
	// of them may have been refused.
	const listID = "33333333-0000-0000-0000-000000000001"
	c.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: listID, FunctionID: "engine::functions::list", Data: jsontext.Value(`{}`)})
	c.await(func(got wire.Message) bool {
		started := got.InvocationID == "22222222-0000-0000-0000-000000000000" || got.InvocationID == "22222222-0000-0000-0000-000000000001"
		if got.Type == wire.TypeInvocationResult && got.InvocationID != listID && !started {
			t.Fatalf("a publish within the bound was answered: %+v", got)
		}
		return got.InvocationID == listID
	})
	if n := m.waiting.Load(); n != maxWaitingPublishes {
		t.Fatalf("%d publishes wait, want %d", n, maxWaitingPublishes)
	}
	res := c.callSkipping("33333333-0000-0000-0000-000000000002", "publish", `{"topic":"t","data":0}`)
	if res.Error == nil || res.Error.Code != "PUBLISH_CONGESTED" || !strings.Contains(res.Error.Message, fmt.Sprintf("1 of 1 subscribers of topic \"t\" did not get this message: 1 deliveries wait for slow subscribers (pubsub.max_pending_deliveries) and %d publishes already wait for room", maxWaitingPublishes)) {
		t.Fatalf("the publish past the bound answered %+v", res)
	}
	if n := m.waiting.Load(); n != maxWaitingPublishes {
		t.Fatalf("after a refused publish %d wait, want %d", n, maxWaitingPublishes)
	}
}

// TestPublishDropsLoggedPerThousand: drops are logged on the first and
// then once each time the running total passes a multiple of 1,000, not
// once per publish. Kills pubsub.go:175 (CONDITIONALS_NEGATION ×2,
// ARITHMETIC_BASE ×3, INVERT_NEGATIVES).
func TestPublishDropsLoggedPerThousand(t *testing.T) {
	e, logs := startEngineLogged(t)
	m := e.modules.pubsub
	const line = "pubsub deliveries dropped"
	for i, c := range []struct {
		n    int
		logs int // lines so far
	}{{1, 1}, {1, 1}, {997, 1}, {1, 2}, {2, 2}, {997, 2}, {1, 3}} { // totals 1, 2, 999, 1000, 1002, 1999, 2000
		eb := m.drop("t", c.n, c.n, "test")
		if eb.Code != "PUBLISH_CONGESTED" || !strings.Contains(eb.Message, fmt.Sprintf("%d of %d subscribers", c.n, c.n)) {
			t.Fatalf("drop %d answered %+v", i, eb)
		}
		if got := logs.count(line); got != c.logs {
			t.Fatalf("after drop %d (%d more, %d in all): %d log lines, want %d\n%s", i, c.n, m.dropped.Load(), got, c.logs, logs)
		}
	}
}

// TestPublishWaitEndsAtShutdown: a publish waiting for room when the
// engine shuts down drops what it had not queued yet (not what it had)
// and says why. Kills pubsub.go:164 (len(rest)-i: INVERT_NEGATIVES,
// ARITHMETIC_BASE).
func TestPublishWaitEndsAtShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := &pubsubModule{e: &Engine{ctx: ctx, log: testLogger(t)}, cfg: PubSubConfig{MaxPendingDeliveries: 1, MaxConcurrentDeliveries: 1, PublishTimeout: time.Minute},
		queue: make(chan pubsubDelivery, 1)}
	m.running.Store(1)                                               // the only slot is taken: nothing queued is started
	m.queue <- pubsubDelivery{mt: &moduleTrigger[subscribeConfig]{}} // a delivery queued ahead
	answered := make(chan *wire.ErrorBody, 1)
	m.wait("t", []*moduleTrigger[subscribeConfig]{{}, {}}, 3, jsontext.Value("1"), func(_ jsontext.Value, eb *wire.ErrorBody) { answered <- eb })
	<-m.queue // room for "a"
	deadline := time.Now().Add(5 * time.Second)
	for len(m.queue) == 0 { // "a" queued; "b" waits
		if time.Now().After(deadline) {
			t.Fatal("the waiting publish never queued its delivery")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case eb := <-answered:
		if eb == nil || !strings.Contains(eb.Message, `1 of 3 subscribers`) || !strings.Contains(eb.Message, "engine shutting down") {
			t.Fatalf("publish at shutdown answered %+v", eb)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting publish was not answered at shutdown")
	}
}

// TestDeliverLocalBounded: a message published on another node is
// delivered to this node's bindings of its topic only; what finds neither
// a slot nor queue room is dropped and logged with its count. Kills
// pubsub.go:332 (CONDITIONALS_NEGATION) and :343 (INVERT_NEGATIVES,
// ARITHMETIC_BASE).
func TestDeliverLocalBounded(t *testing.T) {
	e, logs := startEngineLogged(t, func(c *Config) { c.PubSub.MaxConcurrentDeliveries, c.PubSub.MaxPendingDeliveries = 1, 1 })
	m := e.modules.pubsub
	h := pubsubSubscriber(t, e, "sub::here", "t", 3)
	other := pubsubSubscriber(t, e, "sub::other", "u", 1)
	m.deliverLocal("t", jsontext.Value(`"x"`))
	inv := h.awaitInvoke("sub::here", anyInvoke)
	if string(inv.Data) != `"x"` {
		t.Fatalf("delivered %s", inv.Data)
	}
	if !strings.Contains(logs.String(), "dropped=1 dropped_total=1 ") {
		t.Fatalf("the delivery with no room was not logged as 1 dropped:\n%s", logs)
	}
	if n, q := m.running.Load(), len(m.queue); n != 1 || q != 1 {
		t.Fatalf("%d running, %d queued; want 1 and 1", n, q)
	}
	settle(t, other)
	select {
	case got := <-other.in:
		t.Fatalf("a binding of another topic got %+v", got)
	default:
	}
}

// TestPubSubConditionAndHandlerFailure: a subscribe binding's condition
// answering false skips the handler, true runs it; a handler's error is
// logged, its success is not. Kills pubsub.go:307 and :308
// (CONDITIONALS_NEGATION).
func TestPubSubConditionAndHandlerFailure(t *testing.T) {
	e, logs := startEngineLogged(t)
	h := dialRaw(t, e)
	h.sendJSON(`{"type":"registerfunction","id":"sub::h"}`)
	h.sendJSON(`{"type":"registerfunction","id":"sub::cond"}`)
	h.sendJSON(`{"type":"registertrigger","id":"sc-1","trigger_type":"subscribe","function_id":"sub::h","config":{"topic":"t","condition_function_id":"sub::cond"}}`)
	settle(t, h)
	c := dialRaw(t, e)
	answer := func(inv wire.Message, result string, eb *wire.ErrorBody) {
		m := wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID, Error: eb}
		if eb == nil {
			m.Result = jsontext.Value(result)
		}
		h.send(m)
	}
	const failed = "trigger handler failed"
	for _, step := range []struct {
		data, cond string
		fail       bool
	}{{"1", "true", false}, {"2", " false ", false}, {"3", "true", true}, {"4", "null", false}} {
		callOK(t, c, "publish", `{"topic":"t","data":`+step.data+`}`)
		cond := h.awaitInvoke("sub::cond", anyInvoke)
		if string(cond.Data) != step.data {
			t.Fatalf("condition got %s, want %s", cond.Data, step.data)
		}
		answer(cond, step.cond, nil)
		if strings.TrimSpace(step.cond) == "false" {
			continue // the next handler call seen must be the next message's
		}
		inv := h.awaitInvoke("sub::h", anyInvoke)
		if string(inv.Data) != step.data {
			t.Fatalf("handler got %s, want %s (the condition said false for 2)", inv.Data, step.data)
		}
		var eb *wire.ErrorBody
		if step.fail {
			eb = &wire.ErrorBody{Code: "E_SUB", Message: "handler broke"}
		}
		answer(inv, "null", eb)
		settle(t, h) // h's reader ran the completion (and its log) first
		want := 0
		if step.data >= "3" {
			want = 1
		}
		if got := logs.count(failed); got != want {
			t.Fatalf("after message %s: %d %q lines, want %d\n%s", step.data, got, failed, want, logs)
		}
	}
	if !strings.Contains(logs.String(), "code=E_SUB") {
		t.Fatalf("the handler's error code is not logged:\n%s", logs)
	}
}

// TestPublishWithoutData: a publish with no data delivers null. (The
// pubsub.go:119 boundary mutant, passing the empty value on, is
// equivalent: conn.go writes an absent value as null, so this passes on
// it too.)
func TestPublishWithoutData(t *testing.T) {
	e := startEngine(t)
	h := pubsubSubscriber(t, e, "sub::nodata", "t", 1)
	c := dialRaw(t, e)
	callOK(t, c, "publish", `{"topic":"t"}`)
	if inv := h.awaitInvoke("sub::nodata", anyInvoke); string(inv.Data) != "null" {
		t.Fatalf("delivered %q, want null", inv.Data)
	}
}
