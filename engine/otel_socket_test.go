package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice/wire"
)

// TestOTelSocketKeepsReading: the /otel socket reads and discards frame
// after frame, and answers pings after them (an SDK whose telemetry
// socket stops being served reconnects it).
func TestOTelSocketKeepsReading(t *testing.T) {
	e := startEngine(t)
	otel, _, err := websocket.DefaultDialer.Dial(e.WorkerURL()+"/otel", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer otel.Close()
	pong := make(chan struct{}, 1)
	otel.SetPongHandler(func(string) error { pong <- struct{}{}; return nil })
	readErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := otel.ReadMessage(); err != nil {
				readErr <- err
				return
			}
		}
	}()
	for i := range 3 {
		if err := otel.WriteMessage(websocket.BinaryMessage, []byte("OTLP{}")); err != nil {
			t.Fatal(err)
		}
		if err := otel.WriteControl(websocket.PingMessage, []byte{byte(i)}, time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-pong:
		case err := <-readErr:
			t.Fatalf("the telemetry socket ended after %d frames: %v", i+1, err)
		case <-time.After(5 * time.Second):
			t.Fatalf("no pong after %d frames", i+1)
		}
	}
}

// TestFunctionsAvailableOnDisconnect: when a worker with functions
// disconnects, engine::functions-available bindings get the new list,
// without its functions.
func TestFunctionsAvailableOnDisconnect(t *testing.T) {
	e := startEngine(t)
	watcher := dialRaw(t, e)
	watcher.sendJSON(`{"type":"registerfunction","id":"w::sink"}`)
	watcher.sendJSON(`{"type":"registertrigger","id":"fa","trigger_type":"engine::functions-available","function_id":"w::sink","config":{}}`)
	ack := func(m wire.Message) {
		watcher.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: m.InvocationID, FunctionID: m.FunctionID})
	}
	// Each change is one event: wait for each, so that no earlier change
	// is still pending when the worker leaves.
	ack(watcher.awaitInvoke("w::sink", func(m wire.Message) bool { return strings.Contains(string(m.Data), `"w::sink"`) }))
	leaver := dialRaw(t, e)
	leaver.sendJSON(`{"type":"registerfunction","id":"l::gone"}`)
	ack(watcher.awaitInvoke("w::sink", func(m wire.Message) bool { return strings.Contains(string(m.Data), `"l::gone"`) }))
	leaver.ws.Close()
	inv := watcher.awaitInvoke("w::sink", func(m wire.Message) bool { return !strings.Contains(string(m.Data), `"l::gone"`) })
	ack(inv)
	if !strings.Contains(string(inv.Data), `"w::sink"`) {
		t.Errorf("functions-available after the disconnect: %s", inv.Data)
	}
}
