package sluice_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/wire"
)

func TestConnectSendsWorkerInfo(t *testing.T) {
	fe := newFakeEngine(t)
	c, err := sluice.Connect(t.Context(), fe.url(), sluice.WithLogger(quietLogger()),
		sluice.WithName("w1"), sluice.WithDescription("test worker"),
		sluice.WithHeader(http.Header{"Authorization": {"Bearer t"}}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.URL() != fe.url() {
		t.Errorf("URL() = %q", c.URL())
	}
	fc := fe.accept(t)
	if got := fc.header.Get("Authorization"); got != "Bearer t" {
		t.Errorf("handshake header = %q", got)
	}
	f := fc.expectWorkerInfo(t)
	var info struct {
		Runtime, Version, Name, Description, OS string
		PID                                     int
		Telemetry                               struct{ Language, Framework string }
	}
	if err := json.Unmarshal(f.m.Data, &info); err != nil {
		t.Fatal(err)
	}
	if info.Runtime != "go" || info.Name != "w1" || info.Description != "test worker" ||
		info.PID != os.Getpid() || info.Telemetry.Framework != "sluice-go" || info.OS == "" || info.Version == "" {
		t.Errorf("worker info = %+v", info)
	}

	// workerregistered was sent before the answer below, so it is known
	// once the call returns.
	go func() {
		in := <-fc.in
		fc.send(&wire.Message{Type: wire.TypeInvocationResult, InvocationID: in.m.InvocationID, Result: []byte(`1`)})
	}()
	if _, err := c.Trigger(t.Context(), "x", nil); err != nil {
		t.Fatal(err)
	}
	if got := c.WorkerID(); got != "worker-1" {
		t.Errorf("WorkerID() = %q", got)
	}
}

func TestReplayOrderOnReconnect(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)

	// Registrations made while connected go out at once, in call order.
	must(t, c.RegisterTriggerType("tt", "a type", nopTriggerType{}))
	must(t, c.RegisterRaw("fn::a", echoRaw, sluice.WithFunctionDescription("A"),
		sluice.WithMetadata(map[string]any{"k": 1}), sluice.WithRequestFormat(map[string]string{"type": "object"})))
	tid, err := c.RegisterTrigger(sluice.TriggerSpec{Type: "tt", FunctionID: "fn::a", Config: map[string]int{"n": 1}})
	must(t, err)
	must(t, c.RegisterRaw("fn::b", echoRaw))
	must(t, c.RegisterRaw("fn::gone", echoRaw))
	must(t, c.Unregister("fn::gone"))

	f := fc.expect(t, wire.TypeRegisterTriggerType)
	if f.m.ID != "tt" || f.m.Description != "a type" {
		t.Errorf("registertriggertype: %s", f.raw)
	}
	f = fc.expect(t, wire.TypeRegisterFunction)
	if f.m.ID != "fn::a" || f.m.Description != "A" || string(f.m.Metadata) != `{"k":1}` || string(f.m.RequestFormat) != `{"type":"object"}` {
		t.Errorf("registerfunction: %s", f.raw)
	}
	f = fc.expect(t, wire.TypeRegisterTrigger)
	if f.m.ID != tid || f.m.TriggerType != "tt" || f.m.FunctionID != "fn::a" || string(f.m.Config) != `{"n":1}` {
		t.Errorf("registertrigger: %s", f.raw)
	}
	fc.expect(t, wire.TypeRegisterFunction)
	fc.expect(t, wire.TypeRegisterFunction)
	if f := fc.expect(t, wire.TypeUnregisterFunction); f.m.ID != "fn::gone" {
		t.Errorf("unregisterfunction: %s", f.raw)
	}

	fc.kill()
	fc2 := fe.accept(t)
	f = fc2.expect(t, wire.TypeReattach)
	if f.m.PreviousWorkerID != "worker-1" || f.m.ReattachToken != "token-1" {
		t.Errorf("reattach: %s", f.raw)
	}
	if f := fc2.expect(t, wire.TypeRegisterTriggerType); f.m.ID != "tt" {
		t.Errorf("replay: %s", f.raw)
	}
	if f := fc2.expect(t, wire.TypeRegisterFunction); f.m.ID != "fn::a" || f.m.Description != "A" {
		t.Errorf("replay: %s", f.raw)
	}
	if f := fc2.expect(t, wire.TypeRegisterFunction); f.m.ID != "fn::b" {
		t.Errorf("replay: %s", f.raw)
	}
	if f := fc2.expect(t, wire.TypeRegisterTrigger); f.m.ID != tid {
		t.Errorf("replay: trigger id changed: %s", f.raw)
	}
	fc2.expectWorkerInfo(t)

	// The second reconnect reattaches with the second connection's id.
	fc2.sync(t)
	fc2.kill()
	fc3 := fe.accept(t)
	if f := fc3.expect(t, wire.TypeReattach); f.m.PreviousWorkerID != "worker-2" || f.m.ReattachToken != "token-2" {
		t.Errorf("reattach: %s", f.raw)
	}
}

func TestHandlers(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)

	type in struct{ Name string }
	type out struct {
		Greeting string `json:"greeting"`
	}
	must(t, sluice.Register(c, "greet", func(ctx context.Context, v in) (out, error) {
		inv := sluice.InvocationFrom(ctx)
		if inv == nil || inv.FunctionID != "greet" {
			return out{}, errors.New("no invocation in ctx")
		}
		return out{Greeting: "hi " + v.Name + " from " + inv.CallerWorkerID + " " + string(inv.Metadata)}, nil
	}))
	must(t, c.RegisterRaw("nothing", func(context.Context, *sluice.Invocation) (json.RawMessage, error) { return nil, nil }))
	must(t, c.RegisterRaw("null", func(context.Context, *sluice.Invocation) (json.RawMessage, error) {
		return json.RawMessage("null"), nil
	}))
	must(t, c.RegisterRaw("echo", echoRaw))
	must(t, c.RegisterRaw("coded", func(context.Context, *sluice.Invocation) (json.RawMessage, error) {
		return nil, &sluice.Error{Code: "my_code", Message: "mine", Stacktrace: "here"}
	}))
	must(t, c.RegisterRaw("fails", func(context.Context, *sluice.Invocation) (json.RawMessage, error) {
		return nil, errors.New("boom")
	}))
	must(t, c.RegisterRaw("panics", func(context.Context, *sluice.Invocation) (json.RawMessage, error) {
		panic("kaboom")
	}))
	must(t, c.RegisterRaw("badjson", func(context.Context, *sluice.Invocation) (json.RawMessage, error) {
		return json.RawMessage("{nope"), nil
	}))
	for range 8 {
		fc.expect(t, wire.TypeRegisterFunction)
	}

	// invoke sends one invokefunction frame and returns the reply.
	invoke := func(raw string) frame {
		t.Helper()
		fc.sendRaw(raw)
		return fc.expect(t, wire.TypeInvocationResult)
	}
	r := invoke(`{"type":"invokefunction","invocation_id":"i1","function_id":"greet","data":{"NAME":"bob","_caller_worker_id":"w9"},"metadata":{"m":1}}`)
	if r.m.InvocationID != "i1" || r.m.FunctionID != "greet" || r.m.Error != nil ||
		string(r.m.Result) != `{"greeting":"hi bob from w9 {\"m\":1}"}` {
		t.Errorf("typed: %s", r.raw)
	}
	// Missing data is read as null; the handler still runs.
	r = invoke(`{"type":"invokefunction","invocation_id":"i2","function_id":"echo"}`)
	if string(r.m.Result) != `{"data":null}` {
		t.Errorf("missing data: %s", r.raw)
	}
	r = invoke(`{"type":"invokefunction","invocation_id":"i3","function_id":"nothing","data":1}`)
	if strings.Contains(r.raw, `"result"`) || strings.Contains(r.raw, `"error"`) {
		t.Errorf("nil result must be absent: %s", r.raw)
	}
	r = invoke(`{"type":"invokefunction","invocation_id":"i4","function_id":"null","data":1}`)
	if !strings.Contains(r.raw, `"result":null`) {
		t.Errorf("null result must be present: %s", r.raw)
	}
	r = invoke(`{"type":"invokefunction","invocation_id":"i5","function_id":"coded","data":1}`)
	if e := r.m.Error; e == nil || e.Code != "my_code" || e.Message != "mine" || e.Stacktrace != "here" {
		t.Errorf("*Error: %s", r.raw)
	}
	r = invoke(`{"type":"invokefunction","invocation_id":"i6","function_id":"fails","data":1}`)
	if e := r.m.Error; e == nil || e.Code != "invocation_failed" || e.Message != "boom" || strings.Contains(r.raw, "stacktrace") {
		t.Errorf("plain error: %s", r.raw)
	}
	r = invoke(`{"type":"invokefunction","invocation_id":"i7","function_id":"panics","data":1}`)
	if e := r.m.Error; e == nil || e.Code != "invocation_failed" || !strings.Contains(e.Message, "kaboom") ||
		!strings.Contains(e.Stacktrace, "TestHandlers") {
		t.Errorf("panic: %s", r.raw)
	}
	r = invoke(`{"type":"invokefunction","invocation_id":"i8","function_id":"missing","data":1}`)
	if e := r.m.Error; e == nil || e.Code != "function_not_found" {
		t.Errorf("unknown function: %s", r.raw)
	}
	r = invoke(`{"type":"invokefunction","invocation_id":"i9","function_id":"greet","data":"not an object"}`)
	if e := r.m.Error; e == nil || e.Code != "invocation_failed" || !strings.Contains(e.Message, "decode input") {
		t.Errorf("bad input: %s", r.raw)
	}
	r = invoke(`{"type":"invokefunction","invocation_id":"i10","function_id":"badjson","data":1}`)
	if e := r.m.Error; e == nil || e.Code != "invocation_failed" {
		t.Errorf("invalid handler JSON: %s", r.raw)
	}
	// Without an invocation id nothing is answered: the next reply is i11's.
	fc.sendRaw(`{"type":"invokefunction","function_id":"echo","data":"void"}`)
	r = invoke(`{"type":"invokefunction","invocation_id":"i11","function_id":"echo","data":2}`)
	if r.m.InvocationID != "i11" {
		t.Errorf("void invocation was answered: %s", r.raw)
	}
	// Unknown types and garbage are ignored; the socket stays up.
	fc.sendRaw(`{"type":"whatever"}`)
	fc.sendRaw(`not json`)
	fc.sendRaw(`  `)
	r = invoke(`{"type":"invokefunction","invocation_id":"i12","function_id":"echo","data":3}`)
	if r.m.InvocationID != "i12" {
		t.Errorf("after junk: %s", r.raw)
	}

	if err := c.RegisterRaw("echo", echoRaw); err == nil {
		t.Error("duplicate registration accepted")
	}
	if err := c.RegisterRaw("", echoRaw); err == nil {
		t.Error("empty id accepted")
	}
}

func TestTriggerCalls(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)
	ctx := t.Context()

	// The engine answers each call as told by the test.
	type answer struct {
		result string
		err    *wire.ErrorBody
	}
	answers := make(chan answer, 1)
	calls := make(chan frame, 1)
	go func() {
		for {
			select {
			case f := <-fc.in:
				calls <- f
				a := <-answers
				m := &wire.Message{Type: wire.TypeInvocationResult, InvocationID: f.m.InvocationID,
					FunctionID: f.m.FunctionID, Error: a.err}
				if a.result != "" {
					m.Result = []byte(a.result)
				}
				fc.send(m)
			case <-fc.done:
				return
			}
		}
	}()

	answers <- answer{result: `{"Sum":3}`}
	res, err := sluice.Call[struct{ Sum int }](ctx, c, "math::add", map[string]int{"a": 1, "b": 2},
		sluice.WithCallMetadata("meta"), sluice.WithTraceContext("00-tp-01", "k=v"))
	if err != nil || res.Sum != 3 {
		t.Fatalf("Call = %+v, %v", res, err)
	}
	f := <-calls
	if f.m.FunctionID != "math::add" || f.m.Action != nil || len(f.m.InvocationID) != 36 ||
		string(f.m.Data) != `{"a":1,"b":2}` || string(f.m.Metadata) != `"meta"` ||
		f.m.Traceparent != "00-tp-01" || f.m.Baggage != "k=v" {
		t.Errorf("call frame: %s", f.raw)
	}

	// A nil payload is sent as null (the reference engine drops frames
	// without data); a missing result is a nil RawMessage.
	answers <- answer{}
	raw, err := c.Trigger(ctx, "f", nil)
	if err != nil || raw != nil {
		t.Errorf("Trigger = %q, %v", raw, err)
	}
	if f := <-calls; string(f.m.Data) != "null" {
		t.Errorf("nil payload: %s", f.raw)
	}

	answers <- answer{err: &wire.ErrorBody{Code: "function_not_found", Message: "Function f not found"}}
	_, err = c.Trigger(ctx, "f", 1)
	<-calls
	var se *sluice.Error
	if !errors.As(err, &se) || se.Code != sluice.CodeFunctionNotFound || se.FunctionID != "f" ||
		err.Error() != "function_not_found: Function f not found" {
		t.Errorf("error = %v", err)
	}

	// Timeout: a TIMEOUT *Error that is also context.DeadlineExceeded; the
	// late answer is dropped.
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = c.Trigger(tctx, "slow", nil)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &se) || se.Code != sluice.CodeTimeout {
		t.Errorf("timeout error = %v", err)
	}
	<-calls
	if n := sluice.PendingCalls(c); n != 0 {
		t.Errorf("%d pending calls after timeout", n)
	}
	answers <- answer{result: `"late"`} // dropped by the client
	// The client's own invocation timeout applies when ctx has none; and the
	// late answer above must not satisfy this call.
	c2, fc2 := connect(t, fe, sluice.WithInvocationTimeout(30*time.Millisecond))
	_, err = c2.Trigger(ctx, "slow", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("default timeout error = %v", err)
	}
	fc2.expect(t, wire.TypeInvokeFunction)

	// Cancellation is context.Canceled, not a timeout.
	cctx, ccancel := context.WithCancel(ctx)
	go func() { <-calls; ccancel() }()
	_, err = c.Trigger(cctx, "slow", nil)
	if !errors.Is(err, context.Canceled) || errors.As(err, &se) {
		t.Errorf("cancel error = %v", err)
	}
	answers <- answer{}

	// Void: no invocation id, returns without an answer.
	if err := c.TriggerVoid(ctx, "bg", "x"); err != nil {
		t.Fatal(err)
	}
	if f := <-calls; !f.m.Action.IsVoid() || strings.Contains(f.raw, "invocation_id") || string(f.m.Data) != `"x"` {
		t.Errorf("void frame: %s", f.raw)
	}
	answers <- answer{} // answers nobody; dropped

	// Enqueue: the engine's error is surfaced; success returns the receipt.
	answers <- answer{err: &wire.ErrorBody{Code: "enqueue_error", Message: "no queue q1"}}
	_, err = c.Enqueue(ctx, "q1", "job", 1)
	if f := <-calls; f.m.Action == nil || !f.m.Action.IsEnqueue() || f.m.Action.Queue != "q1" || f.m.InvocationID == "" {
		t.Errorf("enqueue frame: %s", f.raw)
	}
	if !errors.As(err, &se) || se.Code != "enqueue_error" {
		t.Errorf("enqueue error = %v", err)
	}
	answers <- answer{result: `{"messageReceiptId":"r-1"}`}
	id, err := c.Enqueue(ctx, "q1", "job", 1)
	<-calls
	if err != nil || id != "r-1" {
		t.Errorf("Enqueue = %q, %v", id, err)
	}
}

func TestDisconnectFailsInFlightCalls(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Trigger(t.Context(), "slow", nil)
		errc <- err
	}()
	fc.expect(t, wire.TypeInvokeFunction)
	fc.kill()
	var se *sluice.Error
	select {
	case err := <-errc:
		if !errors.As(err, &se) || se.Code != sluice.CodeInvocationStopped || se.FunctionID != "slow" {
			t.Errorf("in-flight call error = %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("in-flight call not failed on disconnect")
	}
	fc2 := fe.accept(t)
	fc2.expect(t, wire.TypeReattach)
	fc2.expectWorkerInfo(t)
}

func TestCallsWaitForReconnect(t *testing.T) {
	fe := newFakeEngine(t)
	// The engine refuses the client until both calls are known to wait
	// for a connection; they must not fail but go out on the next one.
	c, _ := connect(t, fe)
	fe.refuse.Store(http.StatusServiceUnavailable)
	sluice.KillConn(c)
	ctx := t.Context()

	type res struct {
		raw json.RawMessage
		err error
	}
	resc := make(chan res, 1)
	voidc := make(chan error, 1)
	go func() {
		raw, err := c.Trigger(ctx, "later", 1)
		resc <- res{raw, err}
	}()
	go func() { voidc <- c.TriggerVoid(ctx, "later::void", 2) }()
	waitUntil(t, "two calls waiting for a connection", func() bool { return sluice.OfflineCalls(c) == 2 })
	fe.refuse.Store(0)

	fc2 := fe.accept(t)
	fc2.expect(t, wire.TypeReattach)
	fc2.expectWorkerInfo(t)
	for range 2 {
		f := fc2.expect(t, wire.TypeInvokeFunction)
		if f.m.InvocationID != "" {
			fc2.send(&wire.Message{Type: wire.TypeInvocationResult, InvocationID: f.m.InvocationID, Result: []byte(`"ok"`)})
		}
	}
	if r := <-resc; r.err != nil || string(r.raw) != `"ok"` {
		t.Errorf("queued call = %s, %v", r.raw, r.err)
	}
	if err := <-voidc; err != nil {
		t.Errorf("queued void = %v", err)
	}
}

// waitUntil polls cond (1 ms apart) until it holds, failing after waitFor.
// For state that has no event to wait on.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestClose(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)
	handlerCtx := make(chan context.Context, 1)
	must(t, c.RegisterRaw("block", func(ctx context.Context, _ *sluice.Invocation) (json.RawMessage, error) {
		handlerCtx <- ctx
		<-ctx.Done()
		return nil, ctx.Err()
	}))
	fc.expect(t, wire.TypeRegisterFunction)
	fc.sendRaw(`{"type":"invokefunction","invocation_id":"i1","function_id":"block","data":null}`)
	hctx := <-handlerCtx

	errc := make(chan error, 1)
	go func() {
		_, err := c.Trigger(t.Context(), "slow", nil)
		errc <- err
	}()
	fc.expect(t, wire.TypeInvokeFunction)

	must(t, c.Close())
	if err := <-errc; !errors.Is(err, sluice.ErrClosed) {
		t.Errorf("pending call error = %v", err)
	}
	select {
	case <-hctx.Done():
	case <-time.After(waitFor):
		t.Error("handler context not cancelled by Close")
	}
	// The socket was closed with a close frame.
	select {
	case <-fc.done:
	case <-time.After(waitFor):
		t.Error("socket not closed")
	}
	if _, err := c.Trigger(t.Context(), "x", nil); !errors.Is(err, sluice.ErrClosed) {
		t.Errorf("Trigger after Close = %v", err)
	}
	if err := c.RegisterRaw("y", echoRaw); !errors.Is(err, sluice.ErrClosed) {
		t.Errorf("RegisterRaw after Close = %v", err)
	}
	must(t, c.Close()) // idempotent
	assertNoClientGoroutines(t)
}

func TestKeepalive(t *testing.T) {
	fe := newFakeEngine(t)
	// The idle timeout is 25 ping intervals: a loaded machine delaying a
	// few pongs must not look like a dead engine.
	_, fc := connect(t, fe, sluice.WithKeepalive(20*time.Millisecond, 500*time.Millisecond))
	// Pings flow while the engine answers them, and keep the socket up
	// well past the idle timeout (60 pings: 1.2 s, more than twice it).
	for range 60 {
		select {
		case <-fc.pings:
		case <-fc.done:
			t.Fatal("socket dropped although the engine answers pings")
		case <-time.After(waitFor):
			t.Fatal("no pings")
		}
	}
	// An engine that stops sending anything is dropped after the idle
	// timeout and the client reconnects.
	fe.noPong.Store(true)
	select {
	case <-fc.done:
	case <-time.After(waitFor):
		t.Fatal("idle socket not dropped")
	}
	fe.accept(t).expect(t, wire.TypeReattach)
}

func TestConnectGivesUp(t *testing.T) {
	fe := newFakeEngine(t)
	u := fe.url()
	fe.srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := sluice.Connect(ctx, u, sluice.WithLogger(quietLogger()),
		sluice.WithReconnectBackoff(5*time.Millisecond, 10*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "last attempt") {
		t.Errorf("Connect = %v", err)
	}
	if _, err := sluice.Connect(t.Context(), "http://x"); err == nil {
		t.Error("http URL accepted")
	}
	assertNoClientGoroutines(t)
}

type recordingTriggerType struct {
	calls chan string
	fail  atomic.Bool
}

func (r *recordingTriggerType) RegisterTrigger(_ context.Context, b sluice.TriggerBinding) error {
	r.calls <- "register " + b.ID + " " + b.FunctionID + " " + string(b.Config) + " " + string(b.Metadata)
	if r.fail.Load() {
		return errors.New("bad config")
	}
	return nil
}

func (r *recordingTriggerType) UnregisterTrigger(_ context.Context, b sluice.TriggerBinding) error {
	r.calls <- "unregister " + b.ID + " " + b.Type + " " + b.FunctionID + " " + string(b.Config)
	return nil
}

func TestTriggerTypeProvider(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)
	h := &recordingTriggerType{calls: make(chan string, 4)}
	must(t, c.RegisterTriggerType("cron", "every so often", h))
	fc.expect(t, wire.TypeRegisterTriggerType)

	fc.sendRaw(`{"type":"registertrigger","id":"t1","trigger_type":"cron","function_id":"f","config":{"s":1},"metadata":{"m":2}}`)
	if got := <-h.calls; got != `register t1 f {"s":1} {"m":2}` {
		t.Errorf("handler got %q", got)
	}
	r := fc.expect(t, wire.TypeTriggerRegistrationResult)
	if r.m.ID != "t1" || r.m.TriggerType != "cron" || r.m.FunctionID != "f" || r.m.Error != nil {
		t.Errorf("result: %s", r.raw)
	}

	fc.sendRaw(`{"type":"unregistertrigger","id":"t1","trigger_type":"cron"}`)
	if got := <-h.calls; got != `unregister t1 cron f {"s":1}` {
		t.Errorf("handler got %q", got)
	}

	h.fail.Store(true)
	fc.sendRaw(`{"type":"registertrigger","id":"t2","trigger_type":"cron","function_id":"f","config":null}`)
	<-h.calls
	r = fc.expect(t, wire.TypeTriggerRegistrationResult)
	if r.m.Error == nil || r.m.Error.Code != "trigger_registration_failed" || r.m.Error.Message != "bad config" {
		t.Errorf("failure result: %s", r.raw)
	}

	fc.sendRaw(`{"type":"registertrigger","id":"t3","trigger_type":"nope","function_id":"f","config":{}}`)
	r = fc.expect(t, wire.TypeTriggerRegistrationResult)
	if r.m.Error == nil || r.m.Error.Code != "trigger_type_not_found" {
		t.Errorf("unknown type result: %s", r.raw)
	}

	must(t, c.UnregisterTriggerType("cron"))
	if f := fc.expect(t, wire.TypeUnregisterTriggerType); f.m.ID != "cron" {
		t.Errorf("unregistertriggertype: %s", f.raw)
	}

	id, err := c.RegisterTrigger(sluice.TriggerSpec{ID: "mine", Type: "http", FunctionID: "f", Metadata: map[string]int{"x": 1}})
	if err != nil || id != "mine" {
		t.Fatal(id, err)
	}
	if f := fc.expect(t, wire.TypeRegisterTrigger); f.m.ID != "mine" || string(f.m.Config) != "null" || string(f.m.Metadata) != `{"x":1}` {
		t.Errorf("registertrigger: %s", f.raw)
	}
	must(t, c.UnregisterTrigger("mine"))
	if f := fc.expect(t, wire.TypeUnregisterTrigger); f.m.ID != "mine" || f.m.TriggerType != "http" {
		t.Errorf("unregistertrigger: %s", f.raw)
	}
	if err := c.UnregisterTrigger("mine"); err == nil {
		t.Error("unregistering an unknown trigger succeeded")
	}
}

func TestTraceContextPropagates(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)
	must(t, c.RegisterRaw("outer", func(ctx context.Context, inv *sluice.Invocation) (json.RawMessage, error) {
		return nil, c.TriggerVoid(ctx, "inner", nil)
	}))
	fc.expect(t, wire.TypeRegisterFunction)
	fc.sendRaw(`{"type":"invokefunction","invocation_id":"i1","function_id":"outer","traceparent":"00-abc-01","baggage":"b=1"}`)
	f := fc.expect(t, wire.TypeInvokeFunction)
	if f.m.FunctionID != "inner" || f.m.Traceparent != "00-abc-01" || f.m.Baggage != "b=1" {
		t.Errorf("nested call: %s", f.raw)
	}
	r := fc.expect(t, wire.TypeInvocationResult)
	if r.m.Traceparent != "00-abc-01" {
		t.Errorf("result: %s", r.raw)
	}
}

// --- helpers ---

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func echoRaw(_ context.Context, inv *sluice.Invocation) (json.RawMessage, error) {
	return json.RawMessage(`{"data":` + string(inv.Data) + `}`), nil
}

type nopTriggerType struct{}

func (nopTriggerType) RegisterTrigger(context.Context, sluice.TriggerBinding) error   { return nil }
func (nopTriggerType) UnregisterTrigger(context.Context, sluice.TriggerBinding) error { return nil }

// assertNoClientGoroutines checks that no connection goroutine of a closed
// client survives. Close waits for them, but a goroutine that has signalled
// its end may still be returning, so stragglers get a short grace period
// (as goleak gives).
func assertNoClientGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		left := clientGoroutines()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("goroutines left after Close:\n%s", strings.Join(left, "\n\n"))
			return
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond) // polling a goroutine's exit: nothing to await
	}
}

func clientGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var left []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, fn := range []string{"sluice.(*Client).run", "sluice.(*Client).read", "sluice.(*Client).call"} {
			if strings.Contains(g, fn) {
				left = append(left, g)
				break
			}
		}
	}
	return left
}
