package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice"
)

// flowRaw is a raw protocol client: frames are written whole (no
// fragmentation), results are routed by invocation id, and invocations it
// receives are answered {"ok":true} unless it is told not to read at all.
type flowRaw struct {
	t       testing.TB
	ws      *websocket.Conn
	wmu     sync.Mutex
	mu      sync.Mutex
	waiting map[string]chan flowResult
	served  chan string // function ids of invocations answered
}

type flowResult struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// flowDial connects a raw client; with read false nothing is ever read
// from the socket (a worker that stopped reading).
func flowDial(t testing.TB, e *engineProc, read bool) *flowRaw {
	t.Helper()
	d := websocket.Dialer{WriteBufferSize: 2 << 20, HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.Dial(e.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	c := &flowRaw{t: t, ws: ws, waiting: map[string]chan flowResult{}, served: make(chan string, 100)}
	if read {
		go c.readLoop()
	}
	return c
}

func (c *flowRaw) send(m map[string]any) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// Bounded, so that an engine that stops reading this socket fails the
	// test instead of hanging it.
	_ = c.ws.SetWriteDeadline(time.Now().Add(15 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// call sends an invokefunction and returns where its result will arrive.
func (c *flowRaw) call(id, fn string, data any) (<-chan flowResult, error) {
	ch := make(chan flowResult, 1)
	c.mu.Lock()
	c.waiting[id] = ch
	c.mu.Unlock()
	return ch, c.send(map[string]any{"type": "invokefunction", "invocation_id": id, "function_id": fn, "data": data})
}

func (c *flowRaw) readLoop() {
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var m struct {
			Type         string `json:"type"`
			InvocationID string `json:"invocation_id"`
			FunctionID   string `json:"function_id"`
			flowResult
		}
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		switch m.Type {
		case "invocationresult":
			c.mu.Lock()
			ch := c.waiting[m.InvocationID]
			delete(c.waiting, m.InvocationID)
			c.mu.Unlock()
			if ch != nil {
				ch <- m.flowResult
			}
		case "invokefunction":
			if m.InvocationID != "" {
				_ = c.send(map[string]any{"type": "invocationresult", "invocation_id": m.InvocationID, "function_id": m.FunctionID, "result": map[string]any{"ok": true}})
				c.served <- m.FunctionID
			}
		}
	}
}

// TestAttackFlowStalledWorker: a worker that registers a function and then
// never reads its socket, while a caller sends it big payloads, must not
// stall that caller's other traffic: calls to a healthy (Node SDK)
// function and results the caller owes keep completing promptly, and the
// calls to the stalled worker fail fast with worker_congested.
//
// On 8b50cfc: the engine's reader for the caller blocked writing to the
// stalled socket and stopped reading the caller: its 13th 1 MiB frame
// could not be written for 15 s (nothing behind it could be either).
func TestAttackFlowStalledWorker(t *testing.T) {
	e := startEngine(t, "127.0.0.1:0", "--max-pending-bytes-per-worker", "2097152")
	startWorker(t, flavourNamed("node-0.22.1"), e, "worker.mjs", "flowok", "SEEDS=0")
	obs := connectGo(t, e, "flow-observer")

	stalled := flowDial(t, e, false)
	if err := stalled.send(map[string]any{"type": "registerfunction", "id": "flowstall::sink"}); err != nil {
		t.Fatal(err)
	}
	caller := flowDial(t, e, true)
	if err := caller.send(map[string]any{"type": "registerfunction", "id": "flowcaller::owed"}); err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctxFor(t, callTimeout), t, obs, "flowstall::sink", "flowok::echo", "flowcaller::owed")

	// 48 MiB for a worker that reads nothing: more than the socket buffers
	// and the engine's budget can hold.
	big := strings.Repeat("x", 1<<20)
	var bigResults []<-chan flowResult
	for i := range 48 {
		ch, err := caller.call(fmt.Sprintf("big-%d", i), "flowstall::sink", big)
		if err != nil {
			t.Fatalf("sending big call %d: the engine stopped reading the caller: %v", i, err)
		}
		bigResults = append(bigResults, ch)
	}

	// The caller's unrelated calls, behind the big ones on its socket.
	for i := range 10 {
		start := time.Now()
		ch, err := caller.call(fmt.Sprintf("ok-%d", i), "flowok::echo", map[string]any{"i": i})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-ch:
			if r.Error != nil || !strings.Contains(string(r.Result), fmt.Sprintf(`"i":%d`, i)) {
				t.Fatalf("echo %d: result %s, error %+v", i, r.Result, r.Error)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("echo %d to a healthy worker not answered within 5 s: head-of-line blocked behind the stalled worker", i)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("echo %d took %v", i, d)
		}
	}

	// Results the caller owes (it executes flowcaller::owed) flow too.
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := sluice.Call[map[string]any](ctx, obs, "flowcaller::owed", map[string]any{"i": i})
		cancel()
		if err != nil || out["ok"] != true {
			t.Fatalf("call %d to the caller's own function: %v %v", i, out, err)
		}
	}

	// Calls to the stalled worker: refused at once once it is congested,
	// never answered otherwise (it reads nothing).
	congested := 0
	deadline := time.After(5 * time.Second)
	for i, ch := range bigResults {
		select {
		case r := <-ch:
			if r.Error == nil || r.Error.Code != "worker_congested" {
				t.Fatalf("big call %d: result %.40s, error %+v; want worker_congested", i, r.Result, r.Error)
			}
			congested++
		default:
		}
	}
	if congested == 0 {
		select {
		case <-deadline:
		case r := <-bigResults[len(bigResults)-1]:
			if r.Error != nil && r.Error.Code == "worker_congested" {
				congested++
			}
		}
	}
	if congested == 0 {
		t.Fatal("no call to the stalled worker was refused with worker_congested")
	}
	t.Logf("%d of %d big calls refused with worker_congested", congested, len(bigResults))
	if _, err := e.stderr.wait(ctxFor(t, 5*time.Second), func(s string) bool { return strings.Contains(s, "worker congested") }); err != nil {
		t.Errorf("no \"worker congested\" log line: %v", err)
	}
	// The engine keeps serving everyone else.
	if _, err := listFunctions(ctxFor(t, 5*time.Second), obs, map[string]any{}); err != nil {
		t.Fatal(err)
	}
}

// TestAttackFlowFrozenWorker: an SDK worker (Node, Python) frozen with
// SIGSTOP keeps its socket open but answers nothing. Calls to it get
// TIMEOUT from the engine's invocation deadline, and the engine drops it
// after the idle timeout, so its functions disappear; an idle healthy
// worker of the same SDK, which the engine pings meanwhile, is kept.
//
// On 8b50cfc: the call got only the client's own TIMEOUT after its 10 s
// deadline (the engine never answered), and nothing dropped the worker.
func TestAttackFlowFrozenWorker(t *testing.T) {
	for _, tc := range []struct{ flavour, script string }{
		{"node-0.22.1", "worker.mjs"},
		{"python-0.25.0", "worker.py"},
	} {
		t.Run(tc.flavour, func(t *testing.T) { flowFrozen(t, flavourNamed(tc.flavour), tc.script) })
	}
}

func flowFrozen(t *testing.T, f *flavour, script string) {
	e := startEngine(t, "127.0.0.1:0", "--invocation-timeout", "1s", "--worker-idle-timeout", "3s")
	frozen := startWorker(t, f, e, script, "flowfrz", "SEEDS=0")
	startWorker(t, f, e, script, "flowidle", "SEEDS=0")
	t.Cleanup(func() { _ = syscall.Kill(frozen.pid(), syscall.SIGCONT) }) // before its stop
	obs := connectGo(t, e, "flow-observer")
	waitFunctions(ctxFor(t, callTimeout), t, obs, "flowfrz::echo", "flowidle::echo")
	if _, err := sluice.Call[map[string]any](ctxFor(t, callTimeout), obs, "flowfrz::echo", map[string]any{"a": 1}); err != nil {
		t.Fatal(err)
	}

	if err := syscall.Kill(frozen.pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err := sluice.Call[map[string]any](ctx, obs, "flowfrz::echo", map[string]any{"a": 2})
	cancel()
	took := time.Since(start)
	if err == nil {
		t.Fatal("a frozen worker answered")
	}
	se := asError(t, err)
	if se.Code != "TIMEOUT" || !strings.Contains(se.Message, "engine invocation_timeout") || took > 4*time.Second {
		t.Fatalf("call to the frozen worker: %v after %v; want the engine's TIMEOUT after about 1 s", err, took)
	}
	if took < time.Second {
		t.Fatalf("TIMEOUT after %v, before the 1 s deadline", took)
	}

	if _, err := e.stderr.wait(ctxFor(t, 10*time.Second), func(s string) bool {
		// Logged once its functions are gone.
		return strings.Contains(s, `msg="worker disconnected"`) && strings.Contains(s, "no frame from the worker")
	}); err != nil {
		t.Fatalf("the frozen worker was not dropped: %v", err)
	}
	rows, err := listFunctions(ctxFor(t, callTimeout), obs, map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, r := range rows {
		ids[r.FunctionID] = true
	}
	if ids["flowfrz::echo"] {
		t.Fatal("the frozen worker's functions are still listed after it was dropped")
	}
	if !ids["flowidle::echo"] {
		t.Fatal("the idle healthy worker was dropped too")
	}
	// Nothing but the frozen worker was dropped, and the idle worker serves.
	if strings.Count(e.stderr.String(), "disconnecting worker") != 1 {
		t.Fatalf("more than one worker dropped:\n%s", e.stderr.String())
	}
	out, err := sluice.Call[map[string]any](ctxFor(t, callTimeout), obs, "flowidle::echo", map[string]any{"b": 3})
	if err != nil || out["b"] != float64(3) {
		t.Fatalf("idle worker after the drop: %v %v", out, err)
	}
}
