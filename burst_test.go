package sluice_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	sluice "github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/wire"
)

// sendBurst writes the invocations in one TCP write, so that the client
// reads them as one burst (its results are then deferred to the burst's
// end).
func sendBurst(t *testing.T, fc *fakeConn, ms ...*wire.Message) {
	t.Helper()
	var out []byte
	for _, m := range ms {
		b, err := wire.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) >= 126 {
			out = append(out, 0x81, 126, byte(len(b)>>8), byte(len(b)))
		} else {
			out = append(out, 0x81, byte(len(b)))
		}
		out = append(out, b...)
	}
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	if _, err := fc.ws.NetConn().Write(out); err != nil {
		t.Fatal(err)
	}
}

// TestBurstResultsFlushed: the results of a burst of invocations, written
// together at the burst's end, all arrive; a handler in the middle of the
// burst that makes a call of its own sends it (and the results deferred
// before it) at once instead of holding them until the burst ends.
func TestBurstResultsFlushed(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)
	must(t, c.RegisterRaw("burst::echo", echoRaw))
	must(t, c.RegisterRaw("burst::caller", func(ctx context.Context, inv *sluice.Invocation) (json.RawMessage, error) {
		return c.Trigger(ctx, "elsewhere::fn", nil)
	}))
	fc.expect(t, wire.TypeRegisterFunction)
	fc.expect(t, wire.TypeRegisterFunction)

	const n = 20
	var burst []*wire.Message
	for i := range n {
		burst = append(burst, &wire.Message{Type: wire.TypeInvokeFunction, InvocationID: fmt.Sprintf("inv-%d", i),
			FunctionID: "burst::echo", Data: []byte(fmt.Sprintf(`{"i":%d}`, i))})
	}
	sendBurst(t, fc, burst...)
	for i := range n {
		f := fc.expect(t, wire.TypeInvocationResult)
		if want := fmt.Sprintf("inv-%d", i); f.m.InvocationID != want || string(f.m.Result) != fmt.Sprintf(`{"data":{"i":%d}}`, i) {
			t.Fatalf("result %d: %s", i, f.raw)
		}
	}

	// A burst whose fourth invocation calls out: that call must reach the
	// engine while the rest of the burst waits for its answer.
	burst = burst[:0]
	for i := range 8 {
		fn := "burst::echo"
		if i == 3 {
			fn = "burst::caller"
		}
		burst = append(burst, &wire.Message{Type: wire.TypeInvokeFunction, InvocationID: fmt.Sprintf("b2-%d", i),
			FunctionID: fn, Data: []byte(`{}`)})
	}
	sendBurst(t, fc, burst...)
	results := map[string]string{}
	for len(results) < 8 {
		f := fc.next(t)
		switch f.m.Type {
		case wire.TypeInvokeFunction:
			if f.m.FunctionID != "elsewhere::fn" {
				t.Fatalf("unexpected call %s", f.raw)
			}
			fc.send(&wire.Message{Type: wire.TypeInvocationResult, InvocationID: f.m.InvocationID, Result: []byte(`"called"`)})
		case wire.TypeInvocationResult:
			results[f.m.InvocationID] = string(f.m.Result)
		default:
			t.Fatalf("unexpected frame %s", f.raw)
		}
	}
	if results["b2-3"] != `"called"` || results["b2-7"] != `{"data":{}}` {
		t.Fatalf("results %v", results)
	}
}

// TestBurstResultAfterHandOff: in a burst [a, b], a runs inline and blocks
// until b has been answered, so the watchdog hands the socket to a new
// reader meanwhile; a's result, deferred because b was buffered behind it,
// must still leave once a returns. On ac3778f it stayed in the write buffer
// (the old reader gave up its role without flushing).
func TestBurstResultAfterHandOff(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)
	release := make(chan struct{})
	must(t, c.RegisterRaw("burst::held", func(ctx context.Context, inv *sluice.Invocation) (json.RawMessage, error) {
		<-release
		return json.RawMessage(`"held"`), nil
	}))
	must(t, c.RegisterRaw("burst::echo", echoRaw))
	fc.expect(t, wire.TypeRegisterFunction)
	fc.expect(t, wire.TypeRegisterFunction)
	sendBurst(t, fc,
		&wire.Message{Type: wire.TypeInvokeFunction, InvocationID: "a", FunctionID: "burst::held", Data: []byte(`{}`)},
		&wire.Message{Type: wire.TypeInvokeFunction, InvocationID: "b", FunctionID: "burst::echo", Data: []byte(`{}`)})
	if r := fc.expect(t, wire.TypeInvocationResult); r.m.InvocationID != "b" {
		t.Fatalf("first result %+v, want b's", r)
	}
	close(release)
	if r := fc.expect(t, wire.TypeInvocationResult); r.m.InvocationID != "a" || string(r.m.Result) != `"held"` {
		t.Fatalf("second result %+v, want a's", r)
	}
}

// TestResultBeforeBufferedPing: an invocation and the engine's ping read
// together. A buffered ping is not more work of the burst: the result must
// leave at once, not wait in the write buffer behind the reader blocked
// after the ping. On ac3778f no result came (ws:// counted any whole frame
// as more input).
func TestResultBeforeBufferedPing(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)
	must(t, c.RegisterRaw("burst::echo", echoRaw))
	fc.expect(t, wire.TypeRegisterFunction)
	b, err := wire.Marshal(&wire.Message{Type: wire.TypeInvokeFunction, InvocationID: "a", FunctionID: "burst::echo", Data: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	out := append([]byte{0x81, byte(len(b))}, b...)
	out = append(out, 0x89, 0x00) // an empty ping
	fc.wmu.Lock()
	_, err = fc.ws.NetConn().Write(out)
	fc.wmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if r := fc.expect(t, wire.TypeInvocationResult); r.m.InvocationID != "a" {
		t.Fatalf("result %+v, want a's", r)
	}
}
