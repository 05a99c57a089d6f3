package engine

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice/wire"
)

// logCapture is an engine log kept for the test to read.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logCapture) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logCapture) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Reset()
}

func (l *logCapture) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

// TestCongestionLoggedOncePerEpisode: calls to a worker that stops reading
// fail with worker_congested once its pending bytes reach
// max_pending_bytes_per_worker; the engine logs that once for the whole
// episode (not once per refused call), and logs its end once the worker
// reads again and a call is delivered.
func TestCongestionLoggedOncePerEpisode(t *testing.T) {
	e, logs := startEngineLogged(t, func(c *Config) { c.MaxPendingBytesPerWorker = 64 << 10 })
	mute, _ := dialMute(t, e)
	if err := mute.WriteMessage(websocket.TextMessage, []byte(`{"type":"registerfunction","id":"f::mute"}`)); err != nil {
		t.Fatal(err)
	}
	caller := dialRaw(t, e)
	waitFunction(t, caller, "f::mute")

	payload := jsontext.Value(`"` + strings.Repeat("p", 32<<10) + `"`)
	// call sends a call to f::mute, then a probe that the caller's reader
	// handles after it, and reports whether the call was refused as
	// congested by then.
	call := func(id string) bool {
		t.Helper()
		caller.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: id, FunctionID: "f::mute", Data: payload})
		probe := "probe-" + id
		caller.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: probe, FunctionID: wire.FnFunctionsList, Data: jsontext.Value(`{}`)})
		refused := false
		caller.await(func(m wire.Message) bool {
			if m.Type == wire.TypeInvocationResult && m.InvocationID == id {
				if m.Error == nil || m.Error.Code != wire.CodeWorkerCongested {
					t.Fatalf("call %s: %+v", id, m)
				}
				refused = true
			}
			return m.Type == wire.TypeInvocationResult && m.InvocationID == probe
		})
		return refused
	}
	refused := 0
	for i := 0; refused < 5; i++ {
		if i == 2000 { // 64 MiB: far more than the socket buffers hold
			t.Fatal("calls to a worker that reads nothing were never refused")
		}
		if call("c-" + itoa(int64(i))) {
			refused++
		}
	}
	const start, end = "worker congested: calls to its functions fail with worker_congested until it reads", "worker no longer congested"
	if n, m := logs.count(start), logs.count(end); n != 1 || m != 0 {
		t.Fatalf("after %d refused calls: %d congestion warnings, %d ends; want 1 and 0", refused, n, m)
	}

	// The worker reads again: the next call delivered ends the episode.
	go func() {
		for {
			if _, _, err := mute.ReadMessage(); err != nil {
				return
			}
		}
	}()
	_ = mute.SetReadDeadline(time.Now().Add(20 * time.Second))
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; logs.count(end) == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatal("the end of the congestion was never logged")
		}
		call("after-" + itoa(int64(i)))
	}
	if n, m := logs.count(start), logs.count(end); n != 1 || m != 1 {
		t.Fatalf("one episode logged as %d warnings and %d ends", n, m)
	}
}

// startEngineLogged is startEngine with the engine's log (debug and above)
// kept for the test to read.
func startEngineLogged(t *testing.T, mutate ...func(*Config)) (*Engine, *logCapture) {
	t.Helper()
	logs := &logCapture{}
	e := startEngineWithLogger(t, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), mutate...)
	return e, logs
}

// TestTelemetryFramesRecognised: binary frames tagged OTLP, MTRC or LOGS
// are the SDKs' telemetry, dropped with one log line per connection; a
// text frame is a protocol message whatever it starts with, so a text
// "OTLP..." is malformed and said so.
func TestTelemetryFramesRecognised(t *testing.T) {
	e, logs := startEngineLogged(t)
	w := dialRaw(t, e)
	for _, f := range []string{"OTLP{}", "MTRC{}", "LOGS{}", "OTLP{}"} {
		if err := w.ws.WriteMessage(websocket.BinaryMessage, []byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	settle(t, w)
	const seen, malformed = "worker sends telemetry", "malformed message from worker"
	if n, m := logs.count(seen), logs.count(malformed); n != 1 || m != 0 {
		t.Fatalf("four telemetry frames: %d telemetry lines, %d malformed; want 1 and 0", n, m)
	}
	w.sendJSON("OTLP{}") // a text frame
	settle(t, w)
	if n, m := logs.count(seen), logs.count(malformed); n != 1 || m != 1 {
		t.Fatalf("a text frame starting with OTLP: %d telemetry lines, %d malformed; want 1 and 1", n, m)
	}
}

// TestOversizedResultDecoyAtTheEnd: the envelope of an oversized result
// is read from the frame's start when it is there (the Node, Rust and Go
// SDKs put it first), so an invocation_id near the end, inside the result
// itself, does not decide which call fails.
func TestOversizedResultDecoyAtTheEnd(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.MaxMessageSize = 4096 })
	callee := dialRaw(t, e)
	caller := dialRaw(t, e)
	callee.sendJSON(`{"type":"registerfunction","id":"f::huge"}`)
	waitFunction(t, caller, "f::huge")
	caller.sendJSON(`{"type":"invokefunction","invocation_id":"real","function_id":"f::huge","data":{}}`)
	inv := callee.expect(wire.TypeInvokeFunction)
	callee.sendJSON(`{"type":"invocationresult","invocation_id":"` + inv.InvocationID + `","function_id":"f::huge","result":{"pad":"` +
		strings.Repeat("x", 8000) + `","inner":{"type":"invokefunction","invocation_id":"decoy","function_id":"f::other"}}}`)
	res := caller.expect(wire.TypeInvocationResult)
	if res.InvocationID != "real" || res.Error == nil || !strings.Contains(res.Error.Message, "max_message_size") {
		t.Fatalf("caller after an oversized result with a decoy id at its end: %+v", res)
	}
}

// TestResultCongestionLoggedOnce: a caller that stops reading its results
// gets worker_congested errors in their place (TestSlowCallerGetsErrorsForResults);
// the engine logs that once for the episode, and its end once the caller
// reads again and a result is delivered.
func TestResultCongestionLoggedOnce(t *testing.T) {
	e, logs := startEngineLogged(t, func(c *Config) { c.MaxPendingBytesPerWorker = 64 << 10 })
	callee, answer := bigCallee(t, e, 64<<10)
	caller, cw := dialMute(t, e)
	const start, end = "worker congested: results of its calls are replaced by worker_congested errors until it reads", "worker no longer congested"
	call := func(id string) {
		t.Helper()
		if err := muteCall(t, caller, id); err != nil {
			t.Fatal(err)
		}
		answer()
		callee.call("probe-"+id, wire.FnFunctionsList, `{}`) // the result is handled by now
	}
	i := 0
	for ; logs.count(start) == 0; i++ {
		if i == 2000 { // 128 MiB of results: far more than the socket buffers hold
			t.Fatal("results for a caller that reads nothing were never replaced")
		}
		call("c-" + itoa(int64(i)))
	}
	for range 5 { // more replaced results, same episode
		call("c-" + itoa(int64(i)))
		i++
	}
	if n, m := logs.count(start), logs.count(end); n != 1 || m != 0 || cw.dropReason.Load() != nil {
		t.Fatalf("%d congestion warnings, %d ends, dropped %v; want 1, 0, not dropped", n, m, cw.dropReason.Load() != nil)
	}
	_ = caller.SetReadDeadline(time.Now().Add(20 * time.Second))
	go func() {
		for {
			if _, _, err := caller.ReadMessage(); err != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for j := 0; logs.count(end) == 0; j++ {
		if time.Now().After(deadline) {
			t.Fatal("the end of the congestion was never logged")
		}
		call("after-" + itoa(int64(j)))
	}
	if n := logs.count(start); n != 1 {
		t.Fatalf("one episode logged as %d warnings", n)
	}
}

// TestUnregisterTriggerOfAnotherRefused: unregistertrigger of another
// worker's binding changes nothing and is logged as refused (the protocol
// has no answer to it); the owner's own unregistertrigger removes it
// without that warning, and an unknown id is silently nothing.
func TestUnregisterTriggerOfAnotherRefused(t *testing.T) {
	e, logs := startEngineLogged(t)
	owner, other := dialRaw(t, e), dialRaw(t, e)
	owner.sendJSON(`{"type":"registerfunction","id":"f::tick"}`)
	owner.sendJSON(`{"type":"registertrigger","id":"tick-1","trigger_type":"cron","function_id":"f::tick","config":{"expression":"0 0 0 1 1 *"}}`)
	settle(t, owner)
	const refused = "unregistertrigger refused"
	other.sendJSON(`{"type":"unregistertrigger","id":"tick-1"}`)
	other.sendJSON(`{"type":"unregistertrigger","id":"no-such-trigger"}`)
	settle(t, other)
	if _, ok := e.reg.Trigger("tick-1"); !ok || logs.count(refused) != 1 || !strings.Contains(logs.String(), "only that worker may remove it") {
		t.Fatalf("another worker's unregistertrigger: trigger kept %v, %d refusals logged", ok, logs.count(refused))
	}
	owner.sendJSON(`{"type":"unregistertrigger","id":"tick-1"}`)
	settle(t, owner)
	if _, ok := e.reg.Trigger("tick-1"); ok || logs.count(refused) != 1 {
		t.Fatalf("the owner's unregistertrigger: trigger kept %v, %d refusals logged", ok, logs.count(refused))
	}
}

// TestResultForDepartedCaller: a result for a caller that has gone is not
// delivered, and the engine says so (debug); results that are delivered
// do not say it.
func TestResultForDepartedCaller(t *testing.T) {
	e, logs := startEngineLogged(t)
	callee, caller := dialRaw(t, e), dialRaw(t, e)
	callee.sendJSON(`{"type":"registerfunction","id":"f::slow"}`)
	waitFunction(t, caller, "f::slow")
	const gone = "result not delivered: caller gone"
	answer := func() {
		inv := callee.expect(wire.TypeInvokeFunction)
		callee.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID, Result: jsontext.Value(`1`)})
	}
	caller.sendJSON(`{"type":"invokefunction","invocation_id":"r1","function_id":"f::slow","data":{}}`)
	answer()
	if m := caller.expect(wire.TypeInvocationResult); m.InvocationID != "r1" || logs.count(gone) != 0 {
		t.Fatalf("a delivered result: %+v, %d 'caller gone' lines", m, logs.count(gone))
	}
	// The caller's socket is aborted while the callee still runs the call.
	caller.sendJSON(`{"type":"invokefunction","invocation_id":"r2","function_id":"f::slow","data":{}}`)
	inv := callee.expect(wire.TypeInvokeFunction)
	e.mu.RLock()
	cw := e.conns[caller.id]
	e.mu.RUnlock()
	cw.conn.Abort()
	callee.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID, Result: jsontext.Value(`2`)})
	settle(t, callee) // the result is handled on the callee's reader before this
	if n := logs.count(gone); n != 1 {
		t.Fatalf("a result for a departed caller: %d 'caller gone' lines, want 1", n)
	}
}
