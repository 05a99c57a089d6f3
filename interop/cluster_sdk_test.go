package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// clSDKWorker is one official SDK worker of TestClusterOfficialSDKCalls:
// the interop worker script of its flavour (worker.mjs, worker.py, the Rust
// worker), whose <prefix>::call makes the SDK's own trigger() with the
// action it is given.
type clSDKWorker struct {
	f      *flavour
	prefix string
	node   int
	w      *worker
	id     string         // its worker id, as its node lists it
	driver *sluice.Client // a Go client on the same node, calling <prefix>::call
}

// call makes the worker call function_id through its SDK's trigger().
func (s *clSDKWorker) call(ctx context.Context, t *testing.T, in map[string]any) callOut {
	t.Helper()
	out, err := sluice.Call[callOut](ctx, s.driver, s.prefix+"::call", in)
	if err != nil {
		t.Fatalf("%s (%s on node %d) ::call %v: %v", s.prefix, s.f.Name, s.node, in, err)
	}
	return out
}

// TestClusterOfficialSDKCalls: three engine processes with one official
// SDK worker each (Node iii-sdk 0.22.1 on node 0, Python iii-sdk 0.25.0 on
// node 1, Rust iii-sdk 0.25.0 on node 2). In every direction (6 ordered
// pairs) a worker's own trigger() reaches the other's function on its node:
// a sync call gets the payload back intact with the caller's worker id as
// _caller_worker_id, a handler error comes back with its code and message,
// TriggerAction.Void runs the function, TriggerAction.Enqueue to the
// "default" queue answers a receipt and the job runs there (each mark
// arrives once). A queue defined at run time through the Python SDK
// (queue::define) takes the Rust and Node SDKs' jobs from nodes 2 and 0.
// Then the Node and Python workers and a second Rust worker (nodes 0, 1
// and 1) call a function that hangs on a Rust worker on node 2: when that
// worker is SIGKILLed each SDK caller's trigger() ends invocation_stopped
// within 2 s (relayed by node 2, as on one engine); when node 2 itself is
// SIGKILLed during the same calls to another worker, within 8 s, well
// within the SDK's own timeout. (The node kill comes right after the calls
// arrive, usually before node 2 noted taking them, so the callers' nodes
// end them as calls no node took, after the node timeout; a call noted
// first ends when node 2 is declared gone, after the node timeout and
// the question over NATS.)
// On 28b79b3 every check passed: the engine needed no change. With the
// void publish removed from clusterRouter.Invoke it failed (no MARK).
func TestClusterOfficialSDKCalls(t *testing.T) {
	sdks := []*clSDKWorker{
		{f: flavourNamed("node-0.22.1"), prefix: "cln0", node: 0},
		{f: flavourNamed("python-0.25.0"), prefix: "clp1", node: 1},
		{f: flavourNamed("rust-0.25.0"), prefix: "clr2", node: 2},
	}
	for _, s := range sdks {
		s.f.require(t)
	}
	nodes := startClusterEngines(t, 3, "--cluster-node-timeout", "2s")
	ctx := ctxFor(t, 90*time.Second)
	drivers := make([]*sluice.Client, len(nodes))
	for i, n := range nodes {
		drivers[i] = connectGo(t, n, fmt.Sprintf("driver-on-node-%d", i))
	}
	// A second Rust worker, on node 1: a Rust caller that outlives node 2.
	rustCaller := &clSDKWorker{f: flavourNamed("rust-0.25.0"), prefix: "clr1", node: 1}
	// A third, on node 2, killed while it runs calls from the others.
	hangWorker := &clSDKWorker{f: flavourNamed("rust-0.25.0"), prefix: "clr2k", node: 2}
	all := append(append([]*clSDKWorker(nil), sdks...), rustCaller, hangWorker)
	var ids []string
	for _, s := range all {
		s.w = startWorker(t, s.f, nodes[s.node], s.f.script("worker"), s.prefix, "SEEDS=0")
		s.driver = drivers[s.node]
		ids = append(ids, testFunctions(s.prefix)...)
	}
	// Every node lists every worker's functions (the other nodes' through
	// their heartbeats), each worker under its own name on its own node.
	for i := range nodes {
		waitFunctions(ctx, t, drivers[i], ids...)
	}
	for _, s := range all {
		s.id = workerRowNamed(ctx, t, s.driver, s.prefix).ID
	}

	type mark struct {
		to   *clSDKWorker
		line string
	}
	var marks []mark
	for _, a := range sdks {
		for _, b := range sdks {
			if a == b {
				continue
			}
			dir := fmt.Sprintf("%s (node %d, %s) -> %s (node %d, %s)", a.prefix, a.node, a.f.Name, b.prefix, b.node, b.f.Name)
			clSDKSync(ctx, t, a, b, dir)

			out := clSDKCallFound(ctx, t, a, map[string]any{"function_id": b.prefix + "::fail", "payload": map[string]any{}}, dir)
			if want := b.f.failMessage(b.prefix); out.Error == nil || str(out.Error.Code) != sluice.CodeInvocationFailed || out.Error.Message != want {
				t.Errorf("%s: fail: %v, want error{code:%s message:%q}", dir, out, sluice.CodeInvocationFailed, want)
			}

			// A void call of a function whose subscription has not reached
			// a's node yet is dropped unanswered: a sync call first (its
			// MARK line is not one of the counted ones).
			probe := fmt.Sprintf("probe:%s-%s", a.prefix, b.prefix)
			if out := clSDKCallFound(ctx, t, a, map[string]any{"function_id": b.prefix + "::mark", "payload": map[string]any{"value": probe}}, dir); out.Error != nil || string(out.Result) != "null" {
				t.Fatalf("%s: mark: %v, want result null", dir, out)
			}
			value := fmt.Sprintf("void:%s-%s", a.prefix, b.prefix)
			out = a.call(ctx, t, map[string]any{"function_id": b.prefix + "::mark", "payload": map[string]any{"value": value}, "action": "void"})
			if out.Error != nil || string(out.Result) != "null" {
				t.Errorf("%s: TriggerAction.Void: %v, want result null", dir, out)
			}
			marks = append(marks, mark{b, "MARK " + mustJSON(value)})

			value = fmt.Sprintf("enqueue:%s-%s", a.prefix, b.prefix)
			out = a.call(ctx, t, map[string]any{"function_id": b.prefix + "::mark", "payload": map[string]any{"value": value},
				"action": map[string]any{"type": "enqueue", "queue": "default"}})
			var receipt struct {
				ID string `json:"messageReceiptId"`
			}
			if out.Error != nil || json.Unmarshal(out.Result, &receipt) != nil || receipt.ID == "" {
				t.Errorf("%s: TriggerAction.Enqueue: %v, want a messageReceiptId", dir, out)
			}
			marks = append(marks, mark{b, "MARK " + mustJSON(value)})
		}
	}
	for _, m := range marks {
		if _, err := m.to.w.stdout.wait(ctx, func(s string) bool { return s == m.line }); err != nil {
			t.Fatalf("%s (node %d) never printed %q: %v", m.to.prefix, m.to.node, m.line, m.to.w.exitNote(err))
		}
	}
	// A queue defined at run time through the Python SDK on node 1 takes
	// jobs enqueued by the SDKs on the other nodes (once node 2 and node 0
	// have read its definition from the cluster's bucket).
	if out := sdks[1].call(ctx, t, map[string]any{"function_id": "queue::define", "payload": map[string]any{"name": "clsdk-q", "max_retries": 2}}); out.Error != nil {
		t.Fatalf("queue::define through %s: %v", sdks[1].f.Name, out)
	}
	for _, p := range [][2]*clSDKWorker{{sdks[2], sdks[0]}, {sdks[0], sdks[2]}} {
		a, b := p[0], p[1]
		value := fmt.Sprintf("named:%s-%s", a.prefix, b.prefix)
		clSDKEnqueue(ctx, t, a, b, "clsdk-q", value)
		marks = append(marks, mark{b, "MARK " + mustJSON(value)})
		if _, err := b.w.stdout.wait(ctx, func(s string) bool { return s == "MARK "+mustJSON(value) }); err != nil {
			t.Fatalf("%s (node %d): the job %s enqueued to clsdk-q never ran: %v", b.prefix, b.node, a.prefix, b.w.exitNote(err))
		}
	}

	// A clean run: each void call and each job ran once.
	for _, m := range marks {
		if n := strings.Count(m.to.w.stdout.String(), "    "+m.line+"\n"); n != 1 {
			t.Errorf("%s printed %q %d times, want once", m.to.prefix, m.line, n)
		}
	}

	// A worker on node 2 dies while it runs a call from each SDK: the
	// serving node relays invocation_stopped at once, as one engine does.
	callers := []*clSDKWorker{sdks[0], sdks[1], rustCaller}
	clSDKStopped(ctx, t, callers, hangWorker, "its worker SIGKILLed", 2*time.Second, hangWorker.w.kill)
	// Node 2 dies while its Rust worker runs a call from each SDK. The
	// node timeout (2 s, checked every quarter) for a call not noted yet,
	// and the question over NATS (1 s) too for one noted; 8 s is far
	// beyond both.
	clSDKStopped(ctx, t, callers, sdks[2], "node 2 SIGKILLed", 8*time.Second, nodes[2].kill)
}

// clSDKStopped: each caller's SDK calls victim's hang (with its own
// timeout of 15 s, far beyond within: a TIMEOUT means the engine never
// ended the call); once victim runs them all, kill runs, and each call must
// end invocation_stopped within the bound.
func clSDKStopped(ctx context.Context, t *testing.T, callers []*clSDKWorker, victim *clSDKWorker, what string, within time.Duration, kill func()) {
	t.Helper()
	type stopped struct {
		who *clSDKWorker
		out callOut
		err error
		at  time.Time
	}
	done := make(chan stopped, len(callers))
	tag := strings.ReplaceAll(what, " ", "-")
	for _, c := range callers {
		go func() {
			for {
				out, err := sluice.Call[callOut](ctx, c.driver, c.prefix+"::call", map[string]any{
					"function_id": victim.prefix + "::hang", "payload": map[string]any{"tag": tag + "-from-" + c.prefix}, "timeout_ms": 15000})
				if err != nil || out.Error == nil || str(out.Error.Code) != sluice.CodeFunctionNotFound {
					done <- stopped{c, out, err, time.Now()}
					return
				}
				// victim's subscription has not reached c's node yet
				// (clSDKCallFound); the wait for its HANG line bounds this.
				select {
				case <-time.After(20 * time.Millisecond):
				case <-ctx.Done():
					done <- stopped{c, out, err, time.Now()}
					return
				}
			}
		}()
	}
	for _, c := range callers {
		victim.w.waitLine(ctx, t, "HANG "+tag+"-from-"+c.prefix)
	}
	killed := time.Now()
	kill()
	for range callers {
		var r stopped
		select {
		case r = <-done:
		case <-ctx.Done():
			t.Fatalf("an SDK call to %s::hang was still waiting %v after %s", victim.prefix, time.Since(killed), what)
		}
		if r.err != nil {
			t.Errorf("%s::call: %v", r.who.prefix, r.err)
			continue
		}
		if r.out.Error == nil || str(r.out.Error.Code) != sluice.CodeInvocationStopped {
			t.Errorf("%s (%s, node %d) calling %s::hang (node %d), %s: %v, want code %s", r.who.prefix, r.who.f.Name, r.who.node, victim.prefix, victim.node, what, r.out, sluice.CodeInvocationStopped)
			continue
		}
		d := r.at.Sub(killed)
		if d > within {
			t.Errorf("%s got invocation_stopped %v after %s, want within %v", r.who.prefix, d, what, within)
		}
		t.Logf("%s (%s, node %d), %s: %v %v after", r.who.prefix, r.who.f.Name, r.who.node, what, r.out, d.Round(time.Millisecond))
	}
}

// clSDKEnqueue: a's trigger() with TriggerAction.Enqueue to queue of b's
// mark answers a receipt. A queue defined at run time on another node is
// "not found" until this node has read its definition: retried until ctx
// ends.
func clSDKEnqueue(ctx context.Context, t *testing.T, a, b *clSDKWorker, queue, value string) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		out := a.call(ctx, t, map[string]any{"function_id": b.prefix + "::mark", "payload": map[string]any{"value": value},
			"action": map[string]any{"type": "enqueue", "queue": queue}})
		var receipt struct {
			ID string `json:"messageReceiptId"`
		}
		if out.Error == nil && json.Unmarshal(out.Result, &receipt) == nil && receipt.ID != "" {
			return
		}
		if out.Error == nil || !strings.Contains(out.Error.Message, "not found") {
			t.Fatalf("%s (node %d) enqueueing to %s: %v, want a messageReceiptId", a.prefix, a.node, queue, out)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("%s (node %d) enqueueing to %s: still %v", a.prefix, a.node, queue, out)
		}
	}
}

// clSDKCallFound is a.call(in), again every 20 ms while it answers
// function_not_found, until ctx ends. A function registered on another
// node reaches a's node asynchronously: its NATS subscription travels
// apart from the heartbeat that lists it (waitFunctions), and each
// function's apart from the others' (b::echo answering says nothing of
// b::mark).
func clSDKCallFound(ctx context.Context, t *testing.T, a *clSDKWorker, in map[string]any, dir string) callOut {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		out := a.call(ctx, t, in)
		if out.Error == nil || str(out.Error.Code) != sluice.CodeFunctionNotFound {
			return out
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("%s: %v still function_not_found: %v", dir, in["function_id"], out)
		}
	}
}

// clSDKSync: a's trigger() of b's echo returns the payload as sent, with
// a's worker id added as _caller_worker_id (clSDKCallFound).
func clSDKSync(ctx context.Context, t *testing.T, a, b *clSDKWorker, dir string) {
	t.Helper()
	payload := map[string]any{
		"from": a.prefix, "to": b.prefix,
		"text":   "héllo, wörld ✓ \"quoted\" \\ back",
		"float":  -1.25,
		"list":   []any{1, "two", nil, true, []any{}, map[string]any{}},
		"nested": map[string]any{"a": map[string]any{"b": []any{"c"}}},
	}
	out := clSDKCallFound(ctx, t, a, map[string]any{"function_id": b.prefix + "::echo", "payload": payload}, dir)
	if out.Error != nil {
		t.Fatalf("%s: echo: %v", dir, out)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Result, &got); err != nil {
		t.Fatalf("%s: echo result %s: %v", dir, out.Result, err)
	}
	if got["_caller_worker_id"] != a.id {
		t.Errorf("%s: _caller_worker_id %v, want the caller's worker id %q", dir, got["_caller_worker_id"], a.id)
	}
	delete(got, "_caller_worker_id")
	if want := normalise(t, payload); !reflect.DeepEqual(normalise(t, got), want) {
		t.Errorf("%s: echo changed the payload:\n got %s\nwant %s", dir, mustJSON(got), mustJSON(want))
	}
}

// clSDKChannelSize is the size of each transfer of
// TestClusterOfficialSDKChannels (six of them, through two bridges each).
const clSDKChannelSize = 32 << 20

// TestClusterOfficialSDKChannels: three engine processes with the stream
// worker of one official SDK each (Node 0.22.1 on node 0, Python 0.25.0 on
// node 1, Rust 0.25.0 on node 2). For every ordered pair, a channel is
// created through the third node (its home, so both ends connect to other
// nodes than the home: two bridges), the writer SDK writes 32 MiB of random
// bytes with 8 text messages between them through its own node and the
// reader SDK reads them through its own: both hash the same bytes, and
// the messages arrive in order at the byte offsets they were sent at.
// On 28b79b3 every check passed: the engine needed no change.
func TestClusterOfficialSDKChannels(t *testing.T) {
	sdks := []*clSDKWorker{
		{f: flavourNamed("node-0.22.1"), prefix: "clsn0", node: 0},
		{f: flavourNamed("python-0.25.0"), prefix: "clsp1", node: 1},
		{f: flavourNamed("rust-0.25.0"), prefix: "clsr2", node: 2},
	}
	for _, s := range sdks {
		s.f.require(t)
	}
	nodes := startClusterEngines(t, 3)
	ctx := ctxFor(t, 3*time.Minute)
	drivers := make([]*sluice.Client, len(nodes))
	for i, n := range nodes {
		drivers[i] = connectGo(t, n, fmt.Sprintf("chan-driver-on-node-%d", i))
	}
	var ids []string
	for _, s := range sdks {
		s.w = startWorker(t, s.f, nodes[s.node], s.f.script("stream"), s.prefix)
		s.driver = drivers[s.node]
		ids = append(ids, s.prefix+"::stream_write", s.prefix+"::stream_read")
	}
	for i := range nodes {
		waitFunctions(ctx, t, drivers[i], ids...)
	}
	for _, w := range sdks {
		for _, r := range sdks {
			if w == r {
				continue
			}
			home := 3 - w.node - r.node
			dir := fmt.Sprintf("%s writer (node %d) -> %s reader (node %d), channel of node %d", w.f.Name, w.node, r.f.Name, r.node, home)
			t.Run(fmt.Sprintf("%s-to-%s", w.prefix, r.prefix), func(t *testing.T) {
				ch, err := drivers[home].CreateChannel(ctx)
				if err != nil {
					t.Fatal(err)
				}
				begin := time.Now()
				// Each call runs on its worker's node; only the channel
				// crosses nodes.
				read := callAsync[streamReport](ctx, r.driver, r.prefix+"::stream_read", map[string]any{"reader": ch.ReaderRef})
				write := callAsync[streamReport](ctx, w.driver, w.prefix+"::stream_write",
					map[string]any{"writer": ch.WriterRef, "size": clSDKChannelSize, "messages": streamMessages})
				var sent, got callResult[streamReport]
				select {
				case sent = <-write:
				case <-ctx.Done():
					t.Fatalf("%s: the writer never finished", dir)
				}
				select {
				case got = <-read:
				case <-ctx.Done():
					t.Fatalf("%s: the reader never finished (writer: %v)", dir, sent.err)
				}
				if sent.err != nil || got.err != nil {
					t.Fatalf("%s: writer %v, reader %v", dir, sent.err, got.err)
				}
				checkReports(t, dir, sent.out, got.out, clSDKChannelSize, true)
				el := time.Since(begin)
				t.Logf("%s: %d MiB in %v (%.0f MiB/s)", dir, clSDKChannelSize>>20, el.Round(time.Millisecond), float64(clSDKChannelSize>>20)/el.Seconds())
			})
		}
	}
}
