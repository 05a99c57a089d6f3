package engine

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/internal/ws/wsframe"
	"github.com/sluicehq/sluice/wire"
)

type batchEntry struct{ token, env string }

func encodeBatch(kind byte, es []batchEntry) []byte {
	b := []byte{kind}
	for _, e := range es {
		b = appendBatchEntry(b, e.token, []byte(e.env))
	}
	return b
}

func decodeBatch(b []byte, kind byte) ([]batchEntry, error) {
	var es []batchEntry
	err := batchEntries(b, kind, func(token, env []byte) { es = append(es, batchEntry{string(token), string(env)}) })
	return es, err
}

// TestClusterBatchCodec: calls and answers batches decode to their
// entries, with the request and reply envelopes inside intact; broken
// framing is refused whole (no entry handed out); a cut at an entry
// boundary is the shorter batch, any other cut is refused.
func TestClusterBatchCodec(t *testing.T) {
	q1, _ := encodeRequest(&remoteRequest{FunctionID: "a::b", Data: jsontext.Value(`{"x":1}`), Traceparent: "tp"}, true)
	q2, _ := encodeRequest(&remoteRequest{Namespace: "ns", FunctionID: "c", MinTimeoutMS: 7}, true)
	r1, _ := encodeReply(&remoteReply{Value: jsontext.Value(`[1,2]`)}, true)
	calls := []batchEntry{{"1", string(q1)}, {"zz", string(q2)}, {"3", ""}}
	b := encodeBatch(codecCalls, calls)
	got, err := decodeBatch(b, codecCalls)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(calls) {
		t.Fatalf("calls: %q, %v", got, err)
	}
	var q remoteRequest
	if decodeRequest([]byte(got[1].env), &q) != nil || q.Namespace != "ns" || q.FunctionID != "c" || q.MinTimeoutMS != 7 {
		t.Fatalf("request in a batch: %+v", q)
	}
	if _, err := decodeBatch(b, codecAnswers); err == nil {
		t.Fatal("calls taken for answers")
	}
	answers := []batchEntry{{"a", string(r1)}, {"b", string(r1)}}
	if got, err := decodeBatch(encodeBatch(codecAnswers, answers), codecAnswers); err != nil || fmt.Sprint(got) != fmt.Sprint(answers) {
		t.Fatalf("answers: %q, %v", got, err)
	}

	boundaries := map[int]int{} // length → entries
	n := 1
	for i, e := range calls {
		n += len(encodeBatch(0, []batchEntry{e})) - 1
		boundaries[n] = i + 1
	}
	for cut := 0; cut < len(b); cut++ {
		got, err := decodeBatch(b[:cut], codecCalls)
		if k, ok := boundaries[cut]; ok {
			if err != nil || fmt.Sprint(got) != fmt.Sprint(calls[:k]) {
				t.Fatalf("cut after entry %d: %q, %v", k, got, err)
			}
			continue
		}
		if err == nil || len(got) > 0 {
			t.Fatalf("cut at %d of %d: %q, %v (want refused, nothing handed out)", cut, len(b), got, err)
		}
	}
	for name, bad := range map[string][]byte{
		"empty":               nil,
		"type byte alone":     {codecCalls},
		"empty token":         {codecCalls, 0, 1, 'x'},
		"token past the end":  {codecCalls, 9, 'a'},
		"env past the end":    {codecCalls, 1, 'a', 5, 'x'},
		"overlong length":     append([]byte{codecCalls}, bytes.Repeat([]byte{0xff}, 11)...),
		"good then truncated": append(encodeBatch(codecCalls, calls[:1]), 1, 'b', 3),
	} {
		if got, err := decodeBatch(bad, codecCalls); err == nil || len(got) > 0 {
			t.Errorf("%s: %q, %v", name, got, err)
		}
	}
}

// FuzzClusterBatchCodec: entries survive a batch whatever their bytes
// (tokens non-empty), split at the fuzzer's choice.
func FuzzClusterBatchCodec(f *testing.F) {
	f.Add("1,2,3", "a|b|c")
	f.Add("x", "")
	f.Add("\xff,\x00", "\x01\x02|")
	f.Fuzz(func(t *testing.T, tokens, envs string) {
		ts, vs := strings.Split(tokens, ","), strings.Split(envs, "|")
		var es []batchEntry
		for i, tk := range ts {
			if tk == "" {
				continue
			}
			v := ""
			if i < len(vs) {
				v = vs[i]
			}
			es = append(es, batchEntry{tk, v})
		}
		if len(es) == 0 {
			return
		}
		got, err := decodeBatch(encodeBatch(codecAnswers, es), codecAnswers)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(es) {
			t.Fatalf("round trip of %q: %q, %v", es, got, err)
		}
	})
}

// FuzzClusterBatchDecode: any bytes decode or are refused without a
// panic; what decodes has non-empty tokens and encodes back to a batch
// that decodes the same.
func FuzzClusterBatchDecode(f *testing.F) {
	f.Add(encodeBatch(codecCalls, []batchEntry{{"1", "\x01x"}, {"2", ""}}))
	f.Add([]byte{codecCalls, 1, 'a'})
	f.Add([]byte{codecAnswers, 0x80, 0x00, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeBatch(b, codecCalls)
		if err != nil {
			if len(got) > 0 {
				t.Fatalf("refused but handed out %q", got)
			}
			return
		}
		for _, e := range got {
			if e.token == "" {
				t.Fatalf("empty token from %q", b)
			}
		}
		again, err := decodeBatch(encodeBatch(codecCalls, got), codecCalls)
		if err != nil || fmt.Sprint(again) != fmt.Sprint(got) {
			t.Fatalf("re-encoded %q: %q, %v", got, again, err)
		}
	})
}

// writeFramesAtOnce sends msgs to the engine in one socket write, so that
// its reader finds them buffered together (one read burst).
func writeFramesAtOnce(t *testing.T, w *rawWorker, msgs [][]byte) {
	t.Helper()
	var out []byte
	var h [wsframe.MaxHeader]byte
	for _, m := range msgs {
		n := wsframe.PutHeader(h[:], true, wsframe.OpText, len(m), true, [4]byte{}) // a zero key masks nothing
		out = append(append(out, h[:n]...), m...)
	}
	if _, err := w.ws.UnderlyingConn().Write(out); err != nil {
		t.Fatal(err)
	}
}

// serveBursts answers fn's calls on w with data as the result, writing the
// results of the calls that arrived together in one socket write; it
// counts the calls.
func serveBursts(t *testing.T, w *rawWorker, fn string, calls *atomic.Int64) {
	var out [][]byte
	for m := range w.in {
		if m.Type == wire.TypeInvokeFunction && m.FunctionID == fn {
			calls.Add(1)
			b, _ := wire.Marshal(&wire.Message{Type: wire.TypeInvocationResult, InvocationID: m.InvocationID, FunctionID: fn, Result: m.Data})
			out = append(out, b)
		}
		if len(w.in) == 0 && len(out) > 0 {
			writeFramesAtOnce(t, w, out)
			out = out[:0]
		}
	}
}

// batchSpy counts, on a NATS connection, the calls batches published to
// fn's subject and the answers batches sent to node e's inbox.
type batchSpy struct {
	mu                         sync.Mutex
	callMsgs, callsBatched     int
	answerMsgs, answersBatched int
	singles                    int
}

func spyBatches(t *testing.T, e *Engine, fn string) *batchSpy {
	t.Helper()
	s := &batchSpy{}
	nc := e.cluster.node.Conn
	sub1, err := nc.Subscribe(fnSubject("", fn), func(m *nats.Msg) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if es, err := decodeBatch(m.Data, codecCalls); err == nil {
			s.callMsgs++
			s.callsBatched += len(es)
		} else {
			s.singles++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	sub2, err := nc.Subscribe(e.cluster.router.inbox+"_", func(m *nats.Msg) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if es, err := decodeBatch(m.Data, codecAnswers); err == nil {
			s.answerMsgs++
			s.answersBatched += len(es)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub1.Unsubscribe(); _ = sub2.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return s
}

// awaitCallable calls fn through c until a node answers it.
func awaitCallable(t *testing.T, c *rawWorker, fn string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := c.callSkipping(invocationID(), fn, `0`)
		if m.Error == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not callable: %+v", fn, m.Error)
		}
		time.Sleep(20 * time.Millisecond) // the other nodes' subscriptions travel the routes
	}
}

// sendBurst sends n calls of fn through c in one socket write and returns
// their ids and data.
func sendBurst(t *testing.T, c *rawWorker, fn string, n int) map[string]string {
	t.Helper()
	want := map[string]string{}
	var msgs [][]byte
	for range n {
		id := invocationID()
		want[id] = fmt.Sprintf(`{"call":%q}`, id)
		b, _ := wire.Marshal(&wire.Message{Type: wire.TypeInvokeFunction, InvocationID: id, FunctionID: fn, Data: jsontext.Value(want[id])})
		msgs = append(msgs, b)
	}
	writeFramesAtOnce(t, c, msgs)
	return want
}

// TestClusterBatchedCalls: calls of one read burst on node 0 to a function
// served on nodes 1 and 2 go out several to a NATS message, the answers of
// one burst of the serving worker come back several to a message, every
// call gets its own result, and both serving nodes get calls (a batch
// goes to one node; bursts spread). On the code before cluster_batch.go:
// one NATS message per call and per answer (callMsgs 0).
func TestClusterBatchedCalls(t *testing.T) {
	nodes := startNodes(t, 3)
	var served [3]atomic.Int64
	for i := 1; i <= 2; i++ {
		w := dialRaw(t, nodes[i])
		w.sendJSON(`{"type":"registerfunction","id":"batch::fn"}`)
		go serveBursts(t, w, "batch::fn", &served[i])
	}
	c := dialRaw(t, nodes[0])
	awaitCallable(t, c, "batch::fn")
	for !nodes[0].cluster.router.batches.Load() {
		time.Sleep(10 * time.Millisecond) // the first heartbeats (codec 2) are on their way
	}
	spy := spyBatches(t, nodes[0], "batch::fn")

	const rounds, perRound = 30, 24
	for range rounds {
		want := sendBurst(t, c, "batch::fn", perRound)
		for range perRound {
			m := c.expect(wire.TypeInvocationResult)
			if m.Error != nil || want[m.InvocationID] == "" || !strings.Contains(string(m.Result), m.InvocationID) {
				t.Fatalf("result %+v, want %s", m, want[m.InvocationID])
			}
			delete(want, m.InvocationID)
		}
	}
	spy.mu.Lock()
	defer spy.mu.Unlock()
	t.Logf("calls: %d batches with %d calls, %d alone; answers: %d batches with %d; served on node 1: %d, node 2: %d",
		spy.callMsgs, spy.callsBatched, spy.singles, spy.answerMsgs, spy.answersBatched, served[1].Load(), served[2].Load())
	if spy.callMsgs == 0 || spy.callsBatched < 2*spy.callMsgs {
		t.Errorf("calls of a burst not batched: %d batches with %d calls", spy.callMsgs, spy.callsBatched)
	}
	if spy.callsBatched+spy.singles != rounds*perRound {
		t.Errorf("%d calls batched, %d alone: want %d in all", spy.callsBatched, spy.singles, rounds*perRound)
	}
	if spy.answerMsgs == 0 {
		t.Error("no answers batched")
	}
	if served[1].Load() == 0 || served[2].Load() == 0 {
		t.Errorf("one serving node starved: node 1 %d calls, node 2 %d", served[1].Load(), served[2].Load())
	}
}

// TestClusterBatchedCallsNotFound: a batch of calls to a function no node
// serves ends every call of it function_not_found at once (NATS's "no
// responders" names the batch, not the calls). No spy here: a spy's
// subscription would be a responder.
func TestClusterBatchedCallsNotFound(t *testing.T) {
	nodes := startNodes(t, 2)
	c := dialRaw(t, nodes[0])
	r := nodes[0].cluster.router
	for !r.batches.Load() {
		time.Sleep(10 * time.Millisecond)
	}
	const n = 40
	r.mu.Lock()
	seq := r.seq
	r.mu.Unlock()
	start := time.Now()
	want := sendBurst(t, c, "nobody::fn", n)
	for range n {
		m := c.expect(wire.TypeInvocationResult)
		if _, ok := want[m.InvocationID]; !ok || m.Error == nil || m.Error.Code != wire.CodeFunctionNotFound {
			t.Fatalf("result %+v", m)
		}
		delete(want, m.InvocationID)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("answered after %v: not by the no-responders answer", d)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Each call takes a token from r.seq and so does each batch.
	if r.seq-seq <= n {
		t.Errorf("no batch sent (%d tokens for %d calls): the test did not test batches", r.seq-seq, n)
	}
	if len(r.sent) != 0 || len(r.calls) != 0 {
		t.Errorf("left behind: %d batches, %d calls", len(r.sent), len(r.calls))
	}
}

// TestClusterNoBatchesToOldNodes: while a node announcing codec 1 (binary
// envelope, no batches) is live, calls go one per message, and are
// answered.
func TestClusterNoBatchesToOldNodes(t *testing.T) {
	nodes := startNodes(t, 2, func(c *Config) { c.Cluster.NodeTimeout = time.Minute })
	var served atomic.Int64
	w := dialRaw(t, nodes[1])
	w.sendJSON(`{"type":"registerfunction","id":"old::fn"}`)
	go serveBursts(t, w, "old::fn", &served)
	c := dialRaw(t, nodes[0])
	awaitCallable(t, c, "old::fn")
	m := nodes[0].cluster.membersNow()
	m.seen("old-node", time.Now(), heartbeat{Codec: codecBinary})
	r := nodes[0].cluster.router
	if r.batches.Load() || !r.binary.Load() {
		t.Fatalf("batches %v binary %v with a codec 1 node live", r.batches.Load(), r.binary.Load())
	}
	spy := spyBatches(t, nodes[0], "old::fn")
	for range 5 {
		want := sendBurst(t, c, "old::fn", 20)
		for range 20 {
			m := c.expect(wire.TypeInvocationResult)
			if m.Error != nil || want[m.InvocationID] == "" || !strings.Contains(string(m.Result), m.InvocationID) {
				t.Fatalf("result %+v", m)
			}
		}
	}
	spy.mu.Lock()
	defer spy.mu.Unlock()
	if spy.callMsgs != 0 || spy.singles != 100 {
		t.Errorf("%d batches, %d calls alone; want 0 and 100", spy.callMsgs, spy.singles)
	}
}
