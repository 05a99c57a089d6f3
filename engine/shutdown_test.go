package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice/wire"
)

// TestShutdownReportsCutWorkers: a worker that stops reading keeps the
// engine's frames to it pending, and its close frame waits behind them, so
// its socket cannot close gracefully. At the shutdown deadline the engine
// cuts it, and Shutdown, having stopped everything (the worker cut and
// gone, the other worker's calls answered and its socket closed with
// 1012, the listeners closed), says so with an error wrapping
// context.DeadlineExceeded, as net/http.Server.Shutdown does. It returned
// nil before: a caller could not tell a clean stop from a cut one.
func TestShutdownReportsCutWorkers(t *testing.T) {
	e, logs := startEngineLogged(t)
	workerAddr, httpAddr := e.ln.Addr().String(), strings.TrimPrefix(e.HTTPURL(), "http://")
	mute, mc := dialMute(t, e)
	if err := mute.WriteMessage(websocket.TextMessage, []byte(`{"type":"registerfunction","id":"f::mute"}`)); err != nil {
		t.Fatal(err)
	}
	caller := dialRaw(t, e)
	waitFunction(t, caller, "f::mute")

	// Calls to f::mute until the engine holds more bytes for it than the
	// kernel's socket buffers could still take (tcp_wmem's maximum is
	// 4 MiB by default), well within max_pending_bytes_per_worker
	// (32 MiB): its writer is then stuck for good.
	const stuck = 16 << 20
	payload := jsontext.Value(`"` + strings.Repeat("p", 1<<20) + `"`)
	calls := 0
	for ; mc.conn.Pending() < stuck; calls++ {
		if calls == 48 {
			t.Fatalf("%d MiB of calls to a worker that reads nothing, %d bytes pending", calls, mc.conn.Pending())
		}
		caller.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: "c-" + itoa(int64(calls)), FunctionID: "f::mute", Data: payload})
		// The caller's reader handles the probe after the call, so the
		// call was delivered (or refused) by the probe's answer.
		if m := caller.callSkipping("probe-"+itoa(int64(calls)), wire.FnFunctionsList, `{}`); m.Error != nil {
			t.Fatalf("probe: %+v", m.Error)
		}
	}

	e.mu.RLock()
	cc := e.conns[caller.id]
	e.mu.RUnlock()

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := e.Shutdown(ctx)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "worker sockets still open at the deadline were cut (1)") {
		t.Fatalf("Shutdown with a worker that cannot be closed gracefully: %v, want the cut worker and context.DeadlineExceeded", err)
	}
	if took > 10*time.Second { // the write timeout (30 s) would have cut it otherwise
		t.Fatalf("Shutdown took %v", took)
	}
	if n := logs.count("worker sockets still open at the shutdown deadline: cut"); n != 1 {
		t.Errorf("%d warnings about the cut worker, want 1", n)
	}

	// Everything stopped all the same.
	waitGone(t, mc, 5*time.Second, "the stuck worker")
	waitGone(t, cc, 5*time.Second, "the other worker")
	stopped := 0
	for m := range caller.in { // closed by its reader at the socket's end
		if m.Type == wire.TypeInvocationResult && strings.HasPrefix(m.InvocationID, "c-") {
			if m.Error == nil || m.Error.Code != wire.CodeInvocationStopped {
				t.Errorf("call %s answered %+v, want %s", m.InvocationID, m.Error, wire.CodeInvocationStopped)
			}
			stopped++
		}
	}
	if stopped != calls {
		t.Errorf("%d of the %d calls to the cut worker answered", stopped, calls)
	}
	if err := <-caller.end; !websocket.IsCloseError(err, websocket.CloseServiceRestart) {
		t.Errorf("the other worker's socket ended with %v, want close 1012", err)
	}
	if s := e.Stats(); s.Workers != 0 || s.PendingInvocations != 0 {
		t.Errorf("after Shutdown: %+v", s)
	}
	if !refused(workerAddr) || !refused(httpAddr) {
		t.Error("a listener still accepts connections after Shutdown")
	}
}
