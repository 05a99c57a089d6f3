package interop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	sluice "github.com/sluicehq/sluice"
)

// Durable queues (issue 10) through real sockets: the Go SDK and the
// official Node 0.22.1 and Python 0.25.0 SDKs enqueue with
// TriggerAction.Enqueue, get {messageReceiptId} back, and consume.
//
// On 97af979 (before queues) every enqueue was refused with
// enqueue_error "this engine has no queue backend yet".

// queueTestConfig declares the queues the tests use: quick backoffs so
// retries are observable within the test's time.
const queueTestConfig = `
queues:
  fast:
    max_retries: 3
    backoff_ms: 20
    concurrency: 4
  slow:
    max_retries: 3
    backoff_ms: 400
  dedup:
    dedup_field: order_id
    dedup_window_ms: 60000
  ordered:
    type: fifo
    message_group_field: account
    max_retries: 3
    backoff_ms: 30
    concurrency: 4
`

// startQueueEngine runs the engine on a fresh data directory with the test
// queues, returning it and the directory.
func startQueueEngine(t *testing.T, extra ...string) (*engineProc, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfg, []byte(queueTestConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	args := append([]string{"--config", cfg, "--data-dir", data}, extra...)
	return startEngine(t, "127.0.0.1:0", args...), data
}

type queueDead struct {
	ID         string          `json:"id"`
	FunctionID string          `json:"function_id"`
	Payload    json.RawMessage `json:"payload"`
	Error      string          `json:"error"`
	FailedAt   int64           `json:"failed_at"`
	Retries    int             `json:"retries"`
}

type queueStats struct {
	Depth         int64          `json:"depth"`
	ConsumerCount int            `json:"consumer_count"`
	DLQDepth      int64          `json:"dlq_depth"`
	Config        map[string]any `json:"config"`
}

// queueWaitDead polls engine::queue::dlq_messages until queue holds n dead
// jobs (bounded by ctx).
func queueWaitDead(ctx context.Context, t *testing.T, c *sluice.Client, queue string, n int) []queueDead {
	t.Helper()
	for {
		dead, err := sluice.Call[[]queueDead](ctx, c, "engine::queue::dlq_messages", map[string]any{"queue": queue})
		if err == nil && len(dead) >= n {
			return dead
		}
		select {
		case <-ctx.Done():
			t.Fatalf("dead-letter queue %s: want %d jobs, have %v (err %v)", queue, n, dead, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func queueRecv[T any](ctx context.Context, t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("waiting for %s: %v", what, ctx.Err())
		var zero T
		return zero
	}
}

// TestQueueGoSDK: receipt only once durable, delivery, retry with
// exponential backoff then success, always-failing → DLQ (last error,
// failed_at, retries) → redrive → success, unknown queue, a job whose
// function is not registered yet waits without spending attempts.
func TestQueueGoSDK(t *testing.T) {
	e, _ := startQueueEngine(t)
	c := connectGo(t, e, "queue-go")
	ctx := ctxFor(t, 30*time.Second)

	type hit struct {
		N  int
		At time.Time
	}
	var mu sync.Mutex
	calls := map[int]int{}
	failUntil := map[int]int{1: 0, 2: 2, 3: 1 << 30} // job n fails its first failUntil[n] attempts
	hits := make(chan hit, 64)
	err := sluice.Register(c, "goq::work", func(ctx context.Context, in struct{ N int }) (any, error) {
		mu.Lock()
		calls[in.N]++
		k, limit := calls[in.N], failUntil[in.N]
		mu.Unlock()
		hits <- hit{in.N, time.Now()}
		if k <= limit {
			return nil, &sluice.Error{Code: "flaky", Message: fmt.Sprintf("attempt %d of job %d fails", k, in.N)}
		}
		return map[string]bool{"ok": true}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctx, t, c, "goq::work")

	// Receipt and delivery.
	id, err := c.Enqueue(ctx, "fast", "goq::work", map[string]int{"n": 1})
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	if _, perr := uuid.Parse(id); perr != nil {
		t.Fatalf("receipt %q is not a UUID", id)
	}
	if h := queueRecv(ctx, t, hits, "job 1"); h.N != 1 {
		t.Fatalf("delivered job %d, want 1", h.N)
	}

	// Retry then success: two failures, backoff 20 ms then 40 ms.
	if _, err := c.Enqueue(ctx, "fast", "goq::work", map[string]int{"n": 2}); err != nil {
		t.Fatal(err)
	}
	var at []time.Time
	for i := 0; i < 3; i++ {
		h := queueRecv(ctx, t, hits, "job 2 attempt")
		at = append(at, h.At)
	}
	if d1, d2 := at[1].Sub(at[0]), at[2].Sub(at[1]); d1 < 20*time.Millisecond || d2 < 40*time.Millisecond {
		t.Fatalf("retry gaps %v, %v: want ≥ 20ms then ≥ 40ms (backoff_ms × 2^(attempt−1))", d1, d2)
	}

	// Always failing: 3 deliveries, then the dead-letter queue.
	if _, err := c.Enqueue(ctx, "fast", "goq::work", map[string]int{"n": 3}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		queueRecv(ctx, t, hits, "job 3 attempt")
	}
	dead := queueWaitDead(ctx, t, c, "fast", 1)
	if d := dead[0]; d.Retries != 3 || !strings.Contains(d.Error, "attempt 3 of job 3 fails") || d.FailedAt < time.Now().Add(-time.Minute).Unix() || d.FunctionID != "goq::work" || !strings.Contains(string(d.Payload), `"n":3`) {
		t.Fatalf("dead job %+v", d)
	}
	st, err := sluice.Call[queueStats](ctx, c, "engine::queue::topic_stats", map[string]any{"topic": "fast"})
	if err != nil || st.DLQDepth != 1 || st.Depth != 0 || st.Config["max_retries"] != float64(3) {
		t.Fatalf("topic_stats %+v %v", st, err)
	}
	mu.Lock()
	failUntil[3] = 0
	mu.Unlock()
	var rr struct {
		Queue    string `json:"queue"`
		Redriven int    `json:"redriven"`
	}
	if rr, err = sluice.Call[struct {
		Queue    string `json:"queue"`
		Redriven int    `json:"redriven"`
	}](ctx, c, "iii::queue::redrive", map[string]any{"queue": "fast"}); err != nil || rr.Redriven != 1 || rr.Queue != "fast" {
		t.Fatalf("redrive %+v %v", rr, err)
	}
	if h := queueRecv(ctx, t, hits, "redriven job 3"); h.N != 3 {
		t.Fatalf("delivered %d after redrive, want 3", h.N)
	}
	select {
	case h := <-hits:
		t.Fatalf("unexpected delivery %+v", h)
	case <-time.After(100 * time.Millisecond):
	}
	if dead, _ := sluice.Call[[]queueDead](ctx, c, "engine::queue::dlq_messages", map[string]any{"queue": "fast"}); len(dead) != 0 {
		t.Fatalf("dead-letter queue after redrive: %+v", dead)
	}

	// Unknown queue: a clear enqueue_error naming it.
	_, err = c.Enqueue(ctx, "nope", "goq::work", map[string]int{"n": 9})
	if se := asError(t, err); se.Code != "enqueue_error" || !strings.Contains(se.Message, "'nope'") {
		t.Fatalf("unknown queue error %+v", se)
	}

	// A job for a function nobody registered waits, spending no attempt.
	lateHits := make(chan int, 4)
	if _, err := c.Enqueue(ctx, "fast", "goq::late", map[string]int{"n": 7}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.stderr.wait(ctx, func(s string) bool {
		return strings.Contains(s, "job waits for its function to register") && strings.Contains(s, "goq::late")
	}); err != nil {
		t.Fatal(err)
	}
	attempts := 0
	err = sluice.Register(c, "goq::late", func(ctx context.Context, in struct{ N int }) (any, error) {
		mu.Lock()
		attempts++
		mu.Unlock()
		lateHits <- in.N
		return nil, errors.New("late fails")
	})
	if err != nil {
		t.Fatal(err)
	}
	dead = queueWaitDead(ctx, t, c, "fast", 1)
	if dead[0].FunctionID != "goq::late" || dead[0].Retries != 3 {
		t.Fatalf("late job dead as %+v: waiting must not spend attempts", dead[0])
	}
	mu.Lock()
	if attempts != 3 {
		t.Errorf("late function ran %d times, want 3 (max_retries)", attempts)
	}
	mu.Unlock()

	// discard_message removes it.
	var disc struct {
		Redriven int `json:"redriven"`
	}
	if disc, err = sluice.Call[struct {
		Redriven int `json:"redriven"`
	}](ctx, c, "iii::queue::discard_message", map[string]any{"queue": "fast", "message_id": dead[0].ID}); err != nil || disc.Redriven != 1 {
		t.Fatalf("discard %+v %v", disc, err)
	}
}

// TestQueueFIFOGroups: a fifo queue delivers one job at a time per message
// group, in order; a failing job holds back only its own group until its
// retry succeeds.
func TestQueueFIFOGroups(t *testing.T) {
	e, _ := startQueueEngine(t)
	c := connectGo(t, e, "queue-fifo")
	ctx := ctxFor(t, 30*time.Second)
	type rec struct {
		Account string
		Seq     int
	}
	var mu sync.Mutex
	var got []rec
	inFlight := map[string]int{}
	failedOnce := false
	done := make(chan struct{}, 64)
	err := sluice.Register(c, "goq::ledger", func(ctx context.Context, in rec) (any, error) {
		mu.Lock()
		inFlight[in.Account]++
		if inFlight[in.Account] > 1 {
			t.Errorf("two jobs of group %s in flight at once", in.Account)
		}
		fail := in.Account == "a" && in.Seq == 2 && !failedOnce
		if fail {
			failedOnce = true
		}
		mu.Unlock()
		time.Sleep(2 * time.Millisecond) // let overlap show if it could happen
		mu.Lock()
		inFlight[in.Account]--
		if !fail {
			got = append(got, in)
		}
		mu.Unlock()
		if fail {
			return nil, errors.New("a2 fails once")
		}
		done <- struct{}{}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctx, t, c, "goq::ledger")
	const per = 6
	for i := 1; i <= per; i++ {
		for _, acct := range []string{"a", "b", "c"} {
			if _, err := c.Enqueue(ctx, "ordered", "goq::ledger", map[string]any{"account": acct, "seq": i}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := 0; i < 3*per; i++ {
		queueRecv(ctx, t, done, "fifo deliveries")
	}
	mu.Lock()
	defer mu.Unlock()
	last := map[string]int{}
	for _, r := range got {
		if r.Seq != last[r.Account]+1 {
			t.Fatalf("group %s: job %d after %d (order %v)", r.Account, r.Seq, last[r.Account], got)
		}
		last[r.Account] = r.Seq
	}
	if !failedOnce {
		t.Fatal("a2 never failed")
	}
	// Missing group field: refused at enqueue.
	_, err = c.Enqueue(ctx, "ordered", "goq::ledger", map[string]any{"seq": 1})
	if se := asError(t, err); se.Code != "enqueue_error" || !strings.Contains(se.Message, "account") {
		t.Fatalf("missing group field: %+v", se)
	}
}

// TestQueueOfficialSDKs: the official SDKs enqueue with
// TriggerAction.Enqueue and get the receipt; they consume (delivery,
// retry then success, DLQ → redrive → success); an unknown queue is an
// enqueue_error naming it.
func TestQueueOfficialSDKs(t *testing.T) {
	for _, name := range []string{"node-0.22.1", "python-0.25.0", "rust-0.25.0", "node-0.11.6", "python-seed-0.11.6"} {
		f := flavourNamed(name)
		t.Run(name, func(t *testing.T) {
			f.require(t)
			e, _ := startQueueEngine(t)
			c := connectGo(t, e, "queue-ctl")
			ctx := ctxFor(t, 45*time.Second)
			p := f.Prefix

			w := startWorker(t, f, e, f.script("worker"), p)
			waitFunctions(ctx, t, c, p+"::call", p+"::mark")
			call := func(queue string, value string) callOut {
				out, err := sluice.Call[callOut](ctx, c, p+"::call", map[string]any{
					"function_id": p + "::mark", "payload": map[string]any{"value": value},
					"action": map[string]any{"type": "enqueue", "queue": queue}})
				if err != nil {
					t.Fatalf("%s::call: %v", p, err)
				}
				return out
			}
			// Receipt, then delivery to the SDK's function.
			out := call("fast", "r1")
			var rc struct {
				MessageReceiptID string `json:"messageReceiptId"`
			}
			if out.Error != nil || json.Unmarshal(out.Result, &rc) != nil || uuid.Validate(rc.MessageReceiptID) != nil {
				t.Fatalf("enqueue through the SDK: %s", out)
			}
			w.waitLine(ctx, t, `MARK "r1"`)
			// Unknown queue.
			out = call("nope", "x")
			if out.Error == nil || out.Error.Code == nil || *out.Error.Code != "enqueue_error" || !strings.Contains(out.Error.Message, "'nope'") {
				t.Fatalf("unknown queue through the SDK: %s", out)
			}

			// The function P2::mark is first served by a Go client that
			// always fails: job "dlq" (queue fast) dies, job "retry" (queue
			// slow, 400 ms backoff) fails once. Then the SDK takes over the
			// function: the retry succeeds there, and the redriven job too.
			p2 := p + "x"
			g := connectGo(t, e, "queue-failing")
			failed := make(chan string, 16)
			if err := sluice.Register(g, p2+"::mark", func(ctx context.Context, in struct{ Value string }) (any, error) {
				failed <- in.Value
				return nil, errors.New("go stand-in fails")
			}); err != nil {
				t.Fatal(err)
			}
			waitFunctions(ctx, t, c, p2+"::mark")
			for _, j := range []struct{ q, v string }{{"fast", "dlq"}, {"slow", "retry"}} {
				if _, err := c.Enqueue(ctx, j.q, p2+"::mark", map[string]string{"value": j.v}); err != nil {
					t.Fatal(err)
				}
			}
			sawRetry := false
			for !sawRetry {
				sawRetry = queueRecv(ctx, t, failed, "the stand-in's first failure of job retry") == "retry"
			}
			queueWaitDead(ctx, t, c, "fast", 1)
			_ = g.Close()
			w2 := startWorker(t, f, e, f.script("worker"), p2)
			w2.waitLine(ctx, t, `MARK "retry"`)
			if _, err := sluice.Call[map[string]any](ctx, c, "iii::queue::redrive", map[string]any{"queue": "fast"}); err != nil {
				t.Fatal(err)
			}
			w2.waitLine(ctx, t, `MARK "dlq"`)
		})
	}
}

// TestQueueDurableTopicFanOut: iii::durable::publish gives each distinct
// function subscribed (durable:subscriber) to the topic its own copy; two
// bindings of one function to the topic still give it one copy; a failing
// subscriber retries without affecting the other.
func TestQueueDurableTopicFanOut(t *testing.T) {
	e, _ := startQueueEngine(t)
	c := connectGo(t, e, "queue-topics")
	ctx := ctxFor(t, 30*time.Second)
	got := make(chan string, 16)
	var failOnce sync.Once
	for _, fn := range []string{"subs::billing", "subs::audit"} {
		err := sluice.Register(c, fn, func(ctx context.Context, in struct{ Order int }) (any, error) {
			if fn == "subs::audit" {
				failed := false
				failOnce.Do(func() { failed = true })
				if failed {
					return nil, errors.New("audit fails once")
				}
			}
			got <- fmt.Sprintf("%s:%d", fn, in.Order)
			return nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, fn := range []string{"subs::billing", "subs::audit", "subs::audit"} {
		if _, err := c.SubscribeDurable("orders", fn, map[string]any{"backoffDelayMs": 10}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.RegisterTrigger(sluice.TriggerSpec{ID: "t4", Type: "durable:subscriber", FunctionID: "subs::billing", Config: map[string]any{"topic": "other"}}); err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctx, t, c, "subs::billing", "subs::audit")
	// The bindings are registered asynchronously: wait until the topic
	// lists both subscribers.
	for {
		topics, err := sluice.Call[[]struct {
			Name            string `json:"name"`
			BrokerType      string `json:"broker_type"`
			SubscriberCount int    `json:"subscriber_count"`
		}](ctx, c, "engine::queue::list_topics", map[string]any{})
		if err != nil {
			t.Fatal(err)
		}
		ready := false
		for _, tp := range topics {
			ready = ready || (tp.Name == "orders" && tp.BrokerType == "topic" && tp.SubscriberCount == 2)
		}
		if ready {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("topic orders never listed with 2 subscribers: %+v", topics)
		case <-time.After(10 * time.Millisecond):
		}
	}
	for i := 1; i <= 2; i++ {
		if err := c.PublishDurable(ctx, "orders", map[string]int{"order": i}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int{}
	for i := 0; i < 4; i++ {
		seen[queueRecv(ctx, t, got, "topic deliveries")]++
	}
	for _, k := range []string{"subs::billing:1", "subs::billing:2", "subs::audit:1", "subs::audit:2"} {
		if seen[k] != 1 {
			t.Fatalf("deliveries %v: want each of billing/audit × order 1/2 once", seen)
		}
	}
	select {
	case extra := <-got:
		t.Fatalf("extra delivery %s (a function bound twice must get one copy)", extra)
	case <-time.After(100 * time.Millisecond):
	}
	_, err := c.Trigger(ctx, "iii::durable::publish", map[string]any{"data": 1})
	if se := asError(t, err); se.Code != "topic_not_set" {
		t.Fatalf("publish without topic: %+v", se)
	}
}

// TestQueueDedup: a repeated enqueue with the same dedup_field value within
// the window returns the first job's receipt and runs the work once, even
// after the first job completed; engine::queue::enqueue with a repeated
// messageReceiptId stores no second job either. The dedup_field case also
// through the Node SDK's TriggerAction.Enqueue.
func TestQueueDedup(t *testing.T) {
	e, _ := startQueueEngine(t)
	c := connectGo(t, e, "queue-dedup")
	ctx := ctxFor(t, 30*time.Second)
	runs := make(chan string, 16)
	if err := sluice.Register(c, "goq::charge", func(ctx context.Context, in struct {
		OrderID string `json:"order_id"`
	}) (any, error) {
		runs <- in.OrderID
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctx, t, c, "goq::charge")
	first, err := c.Enqueue(ctx, "dedup", "goq::charge", map[string]string{"order_id": "o-1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := queueRecv(ctx, t, runs, "o-1"); got != "o-1" {
		t.Fatalf("ran %q", got)
	}
	again, err := c.Enqueue(ctx, "dedup", "goq::charge", map[string]string{"order_id": "o-1"})
	if err != nil || again != first {
		t.Fatalf("repeat enqueue: receipt %q (err %v), want the first receipt %q", again, err, first)
	}
	other, err := c.Enqueue(ctx, "dedup", "goq::charge", map[string]string{"order_id": "o-2"})
	if err != nil || other == first {
		t.Fatalf("another order: %q %v", other, err)
	}
	if got := queueRecv(ctx, t, runs, "o-2"); got != "o-2" {
		t.Fatalf("ran %q after the repeat, want o-2 (o-1 must not run twice)", got)
	}

	in := map[string]any{"queue": "fast", "function_id": "goq::charge", "data": map[string]string{"order_id": "o-3"}, "messageReceiptId": "5b0c2c77-1d7b-4d8f-9d59-6e7f9f3d0a11"}
	// The repeat comes after the first job ran and was removed: the id is
	// still remembered for the window.
	for i := 0; i < 2; i++ {
		r, err := sluice.Call[struct {
			MessageReceiptID string `json:"messageReceiptId"`
		}](ctx, c, "engine::queue::enqueue", in)
		if err != nil || r.MessageReceiptID != in["messageReceiptId"] {
			t.Fatalf("engine::queue::enqueue #%d: %+v %v", i, r, err)
		}
		if i == 0 {
			if got := queueRecv(ctx, t, runs, "o-3"); got != "o-3" {
				t.Fatalf("ran %q", got)
			}
		}
	}

	f := flavourNamed("node-0.22.1")
	if _, err := f.dependency(); err != nil {
		t.Logf("node-0.22.1 part skipped: %v", err)
		return
	}
	w := startWorker(t, f, e, f.script("worker"), f.Prefix)
	waitFunctions(ctx, t, c, f.Prefix+"::call")
	var receipts []string
	for i := 0; i < 2; i++ {
		out, err := sluice.Call[callOut](ctx, c, f.Prefix+"::call", map[string]any{
			"function_id": "goq::charge", "payload": map[string]any{"order_id": "o-4"},
			"action": map[string]any{"type": "enqueue", "queue": "dedup"}})
		var rc struct {
			MessageReceiptID string `json:"messageReceiptId"`
		}
		if err != nil || out.Error != nil || json.Unmarshal(out.Result, &rc) != nil {
			t.Fatalf("node enqueue: %v %s", err, out)
		}
		receipts = append(receipts, rc.MessageReceiptID)
	}
	_ = w
	if receipts[0] == "" || receipts[0] != receipts[1] {
		t.Fatalf("node repeat enqueue receipts %v, want equal", receipts)
	}
	if got := queueRecv(ctx, t, runs, "o-4"); got != "o-4" {
		t.Fatalf("ran %q", got)
	}
	select {
	case extra := <-runs:
		t.Fatalf("deduplicated job ran again: %s", extra)
	case <-time.After(150 * time.Millisecond):
	}
}

// TestQueueShutdownAndRestart: a job in flight when the engine stops
// (SIGTERM) is released without spending an attempt and delivered again
// after a restart on the same data directory; queued jobs and a queue
// declared at run time (queue::define) survive the restart too. With the
// shutdown counted as an attempt (the release branch of settle disabled),
// job 1 went to the dead-letter queue and this test timed out.
func TestQueueShutdownAndRestart(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--data-dir", filepath.Join(dir, "data")}
	e := startEngine(t, "127.0.0.1:0", args...)
	c := connectGo(t, e, "queue-restart")
	ctx := ctxFor(t, 30*time.Second)
	// One delivery only: if the shutdown spent the attempt, the job would
	// be dead after the restart instead of delivered.
	if _, err := sluice.Call[map[string]any](ctx, c, "queue::define", map[string]any{"name": "once", "max_retries": 1, "concurrency": 1}); err != nil {
		t.Fatal(err)
	}
	started := make(chan int, 8)
	finished := make(chan int, 8)
	var calls atomic.Int32
	if err := sluice.Register(c, "goq::slow", func(ctx context.Context, in struct{ N int }) (any, error) {
		started <- in.N
		if calls.Add(1) == 1 {
			<-ctx.Done() // held until the client closes; the engine stops first
			return nil, ctx.Err()
		}
		finished <- in.N
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctx, t, c, "goq::slow")
	for n := 1; n <= 2; n++ {
		if _, err := c.Enqueue(ctx, "once", "goq::slow", map[string]int{"n": n}); err != nil {
			t.Fatal(err)
		}
	}
	if n := queueRecv(ctx, t, started, "first delivery"); n != 1 {
		t.Fatalf("first delivery was job %d", n)
	}
	e.stop(t) // SIGTERM: graceful shutdown with job 1 in flight, job 2 queued
	startEngine(t, e.Addr, args...)
	got := map[int]bool{}
	for len(got) < 2 {
		got[queueRecv(ctx, t, finished, "deliveries after the restart")] = true
	}
	if dead, err := sluice.Call[[]queueDead](ctx, c, "engine::queue::dlq_messages", map[string]any{"queue": "once"}); err != nil || len(dead) != 0 {
		t.Fatalf("dead letters after restart: %+v %v (the shutdown must not spend an attempt)", dead, err)
	}
}

// TestQueueVisibilityTimeoutAboveInvocationTimeout: a queue whose
// visibility_timeout_ms is longer than the engine's invocation_timeout
// gives its slow consumer that long: one delivery, acknowledged. Without
// raising the delivery's deadline, the engine answered TIMEOUT at the
// invocation_timeout and the job ran a second time.
func TestQueueVisibilityTimeoutAboveInvocationTimeout(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("queues:\n  patient:\n    visibility_timeout_ms: 5000\n    backoff_ms: 10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := startEngine(t, "127.0.0.1:0", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--invocation-timeout", "200ms")
	c := connectGo(t, e, "queue-patient")
	ctx := ctxFor(t, 20*time.Second)
	runs := make(chan struct{}, 4)
	done := make(chan struct{}, 4)
	if err := sluice.Register(c, "goq::patient", func(ctx context.Context, _ any) (any, error) {
		runs <- struct{}{}
		time.Sleep(600 * time.Millisecond) // the work itself: longer than invocation_timeout
		done <- struct{}{}
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctx, t, c, "goq::patient")
	if _, err := c.Enqueue(ctx, "patient", "goq::patient", map[string]int{}); err != nil {
		t.Fatal(err)
	}
	queueRecv(ctx, t, done, "the slow job")
	for {
		st, err := sluice.Call[queueStats](ctx, c, "engine::queue::topic_stats", map[string]any{"topic": "patient"})
		if err != nil {
			t.Fatal(err)
		}
		if st.Depth == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("job never acknowledged: %+v", st)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if n := len(runs); n != 1 {
		t.Fatalf("the job ran %d times, want 1", n)
	}
}
