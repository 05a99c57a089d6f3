package engine

import (
	"bytes"
	"context"
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
	logs := &logCapture{}
	cfg := DefaultConfig()
	cfg.Addr, cfg.HTTPAddr, cfg.ConsoleAddr, cfg.Streams.Addr, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", "", "", DataDirMemory
	cfg.MaxPendingBytesPerWorker = 64 << 10
	e, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
	})
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
