package sluice_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/wire"
)

// Tests for survivors of the mutation run over reader.go (docs/testing.md,
// "Mutation testing"). Each names the mutant it kills; each was applied by
// hand and the test failed on it.

// A call alone in flight reads its own result: an invocation that arrives
// meanwhile runs on a goroutine of its own, so even a handler that blocks
// needs no rescue. Kills reader.go:120 (`ctx.Err() != nil` → `==`,
// `len(p.ch) > 0` → `>=` and → `<=`: the caller gave the role up at once,
// a background reader ran the handler inline and the watchdog had to
// rescue the socket from it).
func TestCallerReadsItsOwnResult(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe, sluice.WithFreeRoleKept())
	release := make(chan struct{})
	must(t, c.RegisterRaw("block", func(context.Context, *sluice.Invocation) (json.RawMessage, error) {
		<-release
		return json.RawMessage(`"released"`), nil
	}))
	fc.expect(t, wire.TypeRegisterFunction)
	freeReader(t, c, fc)

	done := make(chan error, 1)
	go func() {
		_, err := c.Trigger(context.Background(), "remote", nil)
		done <- err
	}()
	call := fc.expect(t, wire.TypeInvokeFunction)
	fc.sendRaw(`{"type":"invokefunction","invocation_id":"b1","function_id":"block","data":1}`)
	fc.sendRaw(`{"type":"invocationresult","invocation_id":"` + call.m.InvocationID + `","result":2}`)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(release)
	if r := fc.expect(t, wire.TypeInvocationResult); r.m.InvocationID != "b1" {
		t.Fatalf("handler result: %s", r.raw)
	}
	if n := sluice.Rescues(c); n != 0 {
		t.Fatalf("rescues = %d: the handler ran inline, not the caller's own read", n)
	}
}

// A caller reading for itself passes over the results of other calls (a
// late answer to a call that gave up) and returns its own. Kills
// reader.go:149 (`m.InvocationID == id` → `!=`: it returned the first
// result it read).
func TestCallerReadingSkipsOtherResults(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe, sluice.WithFreeRoleKept())
	freeReader(t, c, fc)
	type res struct {
		raw []byte
		err error
	}
	done := make(chan res, 1)
	go func() {
		raw, err := c.Trigger(context.Background(), "remote", nil)
		done <- res{raw, err}
	}()
	call := fc.expect(t, wire.TypeInvokeFunction)
	fc.sendRaw(`{"type":"invocationresult","invocation_id":"gave-up","result":"wrong"}`)
	fc.sendRaw(`{"type":"invocationresult","invocation_id":"` + call.m.InvocationID + `","result":"right"}`)
	if r := <-done; r.err != nil || string(r.raw) != `"right"` {
		t.Fatalf("Trigger = %s, %v", r.raw, r.err)
	}
}

// A background reader drops an invocationresult without an invocation id
// and reads on. Kills reader.go:149 (`p != nil` → `p == nil`: the
// background reader took it for its own and gave the role up, so with the
// free role kept nobody read the socket any more).
func TestBackgroundReaderDropsResultWithoutID(t *testing.T) {
	fe := newFakeEngine(t)
	_, fc := connect(t, fe, sluice.WithFreeRoleKept())
	fc.sendRaw(`{"type":"invocationresult","result":1}`)
	fc.sync(t)
}

// A socket that ends while the client is open is logged (debug); one that
// ends because of Close is not. Kills reader.go:133 CONDITIONALS_NEGATION
// (the line was logged for Close only).
func TestSocketEndLogged(t *testing.T) {
	fe := newFakeEngine(t)
	logs := &logRecorder{}
	c, fc := connect(t, fe, sluice.WithLogger(slog.New(logs)))
	const msg = "sluice: engine socket ended"
	fc.kill()
	fc2 := fe.accept(t) // the reader logged before the client redialled
	if n := len(logs.records(slog.LevelDebug, msg)); n != 1 {
		t.Fatalf("%d %q lines after the engine dropped the socket, want 1", n, msg)
	}
	fc2.expect(t, wire.TypeReattach)
	fc2.expectWorkerInfo(t)
	must(t, c.Close())
	if n := len(logs.records(slog.LevelDebug, msg)); n != 1 {
		t.Fatalf("%d %q lines after Close, want still 1", n, msg)
	}
}

// With the free role kept for the next call (WithFreeRoleKept, a test
// hook), a handler that blocks inline is still rescued. Kills reader.go:304
// CONDITIONALS_NEGATION (`run&1 == 1` → `!=`: the hook stopped the rescue
// of blocked handlers instead of the takeover of a free role).
func TestFreeRoleKeptStillRescuesBlockedHandler(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe, sluice.WithFreeRoleKept())
	checkBlockedHandlerRescued(t, c, fc, func() {})
}

// checkBlockedHandlerRescued registers "block" (blocks until released) and
// "echo", runs before, then calls block and echo: echo must be answered
// while block's inline run is blocked (a rescue), then block's result.
func checkBlockedHandlerRescued(t *testing.T, c *sluice.Client, fc *fakeConn, before func()) {
	t.Helper()
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	must(t, c.RegisterRaw("block", func(context.Context, *sluice.Invocation) (json.RawMessage, error) {
		started <- struct{}{}
		<-release
		return json.RawMessage(`"released"`), nil
	}))
	must(t, c.RegisterRaw("echo", echoRaw))
	fc.expect(t, wire.TypeRegisterFunction)
	fc.expect(t, wire.TypeRegisterFunction)
	before()
	fc.sendRaw(`{"type":"invokefunction","invocation_id":"b1","function_id":"block","data":1}`)
	<-started // inline on the background reader (no run time yet), and blocked
	fc.sendRaw(`{"type":"invokefunction","invocation_id":"e1","function_id":"echo","data":2}`)
	if r := fc.expect(t, wire.TypeInvocationResult); r.m.InvocationID != "e1" {
		t.Fatalf("echo behind a blocked handler: %s", r.raw)
	}
	// At least the blocked handler's rescue: under load the echo's inline
	// run may also outlast two watchdog ticks and be rescued in its turn.
	if n := sluice.Rescues(c); n < 1 {
		t.Errorf("rescues = %d, want at least 1", n)
	}
	close(release)
	if r := fc.expect(t, wire.TypeInvocationResult); r.m.InvocationID != "b1" {
		t.Fatalf("blocked handler's result: %s", r.raw)
	}
}

// A caller reading for its own result is woken by its context's end at
// once, not when the read happens to return (the next frame, or the idle
// deadline a minute on). Kills reader.go:197 CONDITIONALS_NEGATION
// (`ctx.Done() != nil` → `==`: no interrupt on the context; the existing
// test passed after 60 s, it bounds only the error).
func TestCallerReadingHonoursContextPromptly(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe, sluice.WithFreeRoleKept())
	freeReader(t, c, fc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.Trigger(ctx, "silent", nil)
		done <- err
	}()
	fc.expect(t, wire.TypeInvokeFunction)
	// The caller took the free role (nobody else does with it kept): it
	// is about to block in the read, or already is.
	waitUntil(t, "the caller to read for itself", func() bool { return !sluice.ReaderFree(c) })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("call whose context was cancelled: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("a caller reading for itself ignored its context")
	}
}

// waitWatchdogAsleep waits until c's watchdog sleeps, seen asleep at three
// samples a millisecond (its tick) apart: nothing wakes it but an inline
// run, so once asleep it stays asleep; a watchdog that ticks on clears its
// flag only for the nanoseconds between two of its own instructions. The
// samples are no timing assumption: a watchdog that sleeps passes however
// slowly they come.
func waitWatchdogAsleep(t *testing.T, c *sluice.Client) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; n < 3; {
		if time.Now().After(deadline) {
			t.Fatal("the watchdog of an idle client still ticks after 10 s")
		}
		if sluice.WatchdogAsleep(c) {
			n++
		} else {
			n = 0
		}
		time.Sleep(time.Millisecond)
	}
}

// The watchdog sleeps once nothing runs inline and the role is held: an
// idle client does not wake up every millisecond. Kills reader.go:334
// CONDITIONALS_NEGATION ×2 (`run == 0` → `!=`, `started == lastStarted` →
// `!=`) and :339 CONDITIONALS_NEGATION (`r.started.Load() != started` →
// `==`): with each, an idle watchdog ticked for ever.
func TestWatchdogSleepsWhenIdle(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe) // its sync probe ran inline and woke the watchdog
	waitWatchdogAsleep(t, c)
	fc.sync(t) // again, after it slept
	waitWatchdogAsleep(t, c)
}

// A handler that blocks inline while the watchdog sleeps (its run is what
// wakes it) is rescued: the watchdog sees the same run at two looks. Kills
// reader.go:325 CONDITIONALS_NEGATION (`run == lastRun` → `!=`: only a run
// that started while the watchdog was already ticking was rescued; the
// existing test's blocked run always started so, right after its sync
// probe's wake-up).
func TestBlockedHandlerRescuedFromSleepingWatchdog(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)
	checkBlockedHandlerRescued(t, c, fc, func() { waitWatchdogAsleep(t, c) })
}
