package sluice_test

import (
	"context"
	"encoding/json"
	"runtime"
	"testing"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/wire"
)

// Handlers run inline on the socket reader while they are quick; these
// tests check that one that blocks, calls out, or exits its goroutine never
// keeps the socket from being read.

func TestInlineBlockingHandlerDoesNotStallSocket(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)
	release := make(chan struct{})
	started := make(chan struct{}, 8)
	must(t, c.RegisterRaw("block", func(context.Context, *sluice.Invocation) (json.RawMessage, error) {
		started <- struct{}{}
		<-release
		return json.RawMessage(`"released"`), nil
	}))
	must(t, c.RegisterRaw("echo", echoRaw))
	fc.expect(t, wire.TypeRegisterFunction)
	fc.expect(t, wire.TypeRegisterFunction)

	// The first run of "block" is inline (no history yet) and blocks: the
	// watchdog must give the socket to a new reader, so echo is answered.
	fc.sendRaw(`{"type":"invokefunction","invocation_id":"b1","function_id":"block","data":1}`)
	<-started
	fc.sendRaw(`{"type":"invokefunction","invocation_id":"e1","function_id":"echo","data":2}`)
	if r := fc.expect(t, wire.TypeInvocationResult); r.m.InvocationID != "e1" || string(r.m.Result) != `{"data":2}` {
		t.Fatalf("echo behind a blocked handler: %s", r.raw)
	}
	// At least the blocked run's rescue: under load the echo's inline run
	// may also outlast two watchdog ticks and be rescued in its turn.
	rescued := sluice.Rescues(c)
	if rescued < 1 {
		t.Errorf("rescues = %d, want at least 1", rescued)
	}
	close(release)
	if r := fc.expect(t, wire.TypeInvocationResult); r.m.InvocationID != "b1" || string(r.m.Result) != `"released"` {
		t.Fatalf("blocked handler's result: %s", r.raw)
	}

	// "block" is now known to be slow: two runs go on goroutines of their
	// own and run at the same time, without the watchdog.
	release = make(chan struct{})
	fc.sendRaw(`{"type":"invokefunction","invocation_id":"b2","function_id":"block","data":1}`)
	fc.sendRaw(`{"type":"invokefunction","invocation_id":"b3","function_id":"block","data":1}`)
	<-started
	<-started
	close(release)
	got := map[string]bool{}
	for range 2 {
		got[fc.expect(t, wire.TypeInvocationResult).m.InvocationID] = true
	}
	if !got["b2"] || !got["b3"] {
		t.Errorf("results: %v", got)
	}
	if n := sluice.Rescues(c); n != rescued {
		t.Errorf("rescues = %d after slow runs, want still %d", n, rescued)
	}
}

func TestInlineHandlerCallingOutHandsOverSocket(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)
	must(t, c.RegisterRaw("outer", func(ctx context.Context, inv *sluice.Invocation) (json.RawMessage, error) {
		// Waits for a result that only a reader of this socket can see.
		return c.Trigger(ctx, "inner", inv.Data)
	}))
	fc.expect(t, wire.TypeRegisterFunction)

	fc.sendRaw(`{"type":"invokefunction","invocation_id":"o1","function_id":"outer","data":7}`)
	call := fc.expect(t, wire.TypeInvokeFunction)
	if call.m.FunctionID != "inner" || string(call.m.Data) != "7" {
		t.Fatalf("outer's call: %s", call.raw)
	}
	fc.send(&wire.Message{Type: wire.TypeInvocationResult, InvocationID: call.m.InvocationID, FunctionID: "inner", Result: []byte(`"in"`)})
	if r := fc.expect(t, wire.TypeInvocationResult); r.m.InvocationID != "o1" || string(r.m.Result) != `"in"` {
		t.Fatalf("outer's result: %s", r.raw)
	}
	// The handler handed the socket over itself before waiting.
	if n := sluice.Rescues(c); n != 0 {
		t.Errorf("rescues = %d, want 0", n)
	}
}

func TestInlineHandlerGoexitKeepsSocketRead(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)
	must(t, c.RegisterRaw("exit", func(context.Context, *sluice.Invocation) (json.RawMessage, error) {
		runtime.Goexit()
		return nil, nil
	}))
	must(t, c.RegisterRaw("echo", echoRaw))
	fc.expect(t, wire.TypeRegisterFunction)
	fc.expect(t, wire.TypeRegisterFunction)

	fc.sendRaw(`{"type":"invokefunction","invocation_id":"x1","function_id":"exit","data":1}`)
	fc.sendRaw(`{"type":"invokefunction","invocation_id":"e1","function_id":"echo","data":3}`)
	if r := fc.expect(t, wire.TypeInvocationResult); r.m.InvocationID != "e1" || string(r.m.Result) != `{"data":3}` {
		t.Fatalf("after Goexit: %s", r.raw)
	}
}

// The handler's context carries the invocation to contexts derived from
// it, and is cancelled with the client.
func TestHandlerContextDerives(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)
	got := make(chan string, 1)
	must(t, c.RegisterRaw("derive", func(ctx context.Context, _ *sluice.Invocation) (json.RawMessage, error) {
		sub, cancel := context.WithCancel(ctx)
		defer cancel()
		inv := sluice.InvocationFrom(sub)
		if inv == nil {
			got <- "no invocation"
			return nil, nil
		}
		got <- inv.ID
		return nil, nil
	}))
	fc.expect(t, wire.TypeRegisterFunction)
	fc.sendRaw(`{"type":"invokefunction","invocation_id":"d1","function_id":"derive","data":1}`)
	if id := <-got; id != "d1" {
		t.Fatalf("InvocationFrom(derived ctx) = %q", id)
	}
	fc.expect(t, wire.TypeInvocationResult)
}
