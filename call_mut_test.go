package sluice_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/wire"
)

// Tests for survivors of the mutation run over call.go (docs/testing.md,
// "Mutation testing"). Each names the mutant it kills; each was applied by
// hand and the test failed on it.

// The call frame's buffer is sized from the payload, the metadata and the
// function id: a function id or metadata longer than the rest plus 256
// bytes must still be sent. Kills call.go:222 ARITHMETIC_BASE (the first
// and the second `+` → `-`: a negative capacity, make panics).
func TestCallLongFunctionIDAndMetadata(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)
	long := "fn::" + strings.Repeat("x", 600)
	meta := strings.Repeat("m", 600)
	for _, tc := range []struct {
		name, id, meta string
	}{{"long id", long, ""}, {"long metadata", "short", meta}} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []sluice.CallOption
			if tc.meta != "" {
				opts = append(opts, sluice.WithCallMetadata(tc.meta))
			}
			type res struct {
				raw []byte
				err error
			}
			done := make(chan res, 1)
			go func() {
				raw, err := c.Trigger(t.Context(), tc.id, nil, opts...)
				done <- res{raw, err}
			}()
			call := answerNext(t, fc, `"ok"`)
			if call.m.FunctionID != tc.id || (tc.meta != "" && string(call.m.Metadata) != `"`+tc.meta+`"`) {
				t.Fatalf("call frame: %.80s", call.raw)
			}
			if r := <-done; r.err != nil || string(r.raw) != `"ok"` {
				t.Fatalf("Trigger = %s, %v", r.raw, r.err)
			}
		})
	}
}

// A call waiting for a connection counts in OfflineCalls only while it
// waits. Kills call.go:396 INVERT_NEGATIVES (`Add(-1)` → `Add(1)`: the
// count only grew).
func TestOfflineCallsCountDrops(t *testing.T) {
	c := offlineClient(t, sluice.WithInvocationTimeout(0))
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Trigger(ctx, "offline::fn", nil)
		errc <- err
	}()
	waitUntil(t, "the call to wait for a connection", func() bool { return sluice.OfflineCalls(c) == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("offline call after its ctx ended: %v", err)
	}
	if n := sluice.OfflineCalls(c); n != 0 {
		t.Fatalf("OfflineCalls = %d after the only waiting call returned", n)
	}
}

// Call decodes a missing result as Out's zero value, and reports a result
// it cannot decode. Kills call.go:45 CONDITIONALS_NEGATION (an empty
// result was decoded as is: an error instead of the zero value).
func TestCallDecodesNothingAsZero(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)
	type res struct {
		n   int
		err error
	}
	done := make(chan res, 1)
	call := func() {
		n, err := sluice.Call[int](t.Context(), c, "f", nil)
		done <- res{n, err}
	}
	go call()
	f := fc.expect(t, wire.TypeInvokeFunction)
	fc.send(&wire.Message{Type: wire.TypeInvocationResult, InvocationID: f.m.InvocationID}) // no result
	if r := <-done; r.err != nil || r.n != 0 {
		t.Fatalf("Call of a function that returned nothing = %d, %v", r.n, r.err)
	}
	go call()
	answerNext(t, fc, `"not a number"`)
	if r := <-done; r.err == nil || !strings.Contains(r.err.Error(), "decode result of f") {
		t.Fatalf("Call with an undecodable result = %d, %v", r.n, r.err)
	}
}

// After Close every kind of call answers ErrClosed.
func TestCallsAfterClose(t *testing.T) {
	fe := newFakeEngine(t)
	c, _ := connect(t, fe)
	must(t, c.Close())
	if err := c.TriggerVoid(t.Context(), "f", nil); !errors.Is(err, sluice.ErrClosed) {
		t.Errorf("TriggerVoid after Close = %v", err)
	}
	if _, err := c.Enqueue(t.Context(), "q", "f", nil); !errors.Is(err, sluice.ErrClosed) {
		t.Errorf("Enqueue after Close = %v", err)
	}
}
