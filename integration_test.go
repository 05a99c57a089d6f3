package sluice_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/engine"
)

// Integration tests: Go clients against the real engine, on loopback.

// startEngine starts an in-process engine on loopback ports, in memory,
// with each of opts applied to its config.
func startEngine(t *testing.T, opts ...func(*engine.Config)) *engine.Engine {
	t.Helper()
	cfg := engine.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.ConsoleAddr, cfg.Streams.Addr = "", "" // no admin or stream-client listener: their default ports would be shared by every test engine
	cfg.DataDir = engine.DataDirMemory
	for _, o := range opts {
		o(&cfg)
	}
	e, err := engine.New(cfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = e.Shutdown(ctx)
	})
	return e
}

func connectEngine(t *testing.T, e *engine.Engine, name string) *sluice.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	c, err := sluice.Connect(ctx, e.WorkerURL(), sluice.WithName(name), sluice.WithLogger(quietLogger()),
		sluice.WithReconnectBackoff(time.Millisecond, 5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip calls id through the engine from c itself. Registrations and
// calls on one socket are handled in order, so once it answers, everything
// c registered before is known to the engine.
func roundTrip(t *testing.T, c *sluice.Client, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	if _, err := c.Trigger(ctx, id, map[string]any{}); err != nil {
		t.Fatalf("round trip via %s: %v", id, err)
	}
}

type addIn struct{ A, B int }
type addOut struct {
	Sum    int    `json:"sum"`
	Caller string `json:"caller"`
}

func TestEngineTwoClients(t *testing.T) {
	e := startEngine(t)
	a := connectEngine(t, e, "a")
	b := connectEngine(t, e, "b")
	ctx := t.Context()

	must(t, sluice.Register(a, "a::add", func(ctx context.Context, in addIn) (addOut, error) {
		return addOut{Sum: in.A + in.B, Caller: sluice.InvocationFrom(ctx).CallerWorkerID}, nil
	}))
	must(t, sluice.Register(b, "b::fail", func(ctx context.Context, in struct{ Coded bool }) (*struct{}, error) {
		if in.Coded {
			return nil, &sluice.Error{Code: "out_of_stock", Message: "none left"}
		}
		return nil, errors.New("plain failure")
	}))
	roundTrip(t, a, "a::add")
	must(t, b.RegisterRaw("b::sync", func(context.Context, *sluice.Invocation) (json.RawMessage, error) { return nil, nil }))
	roundTrip(t, b, "b::sync")

	out, err := sluice.Call[addOut](ctx, b, "a::add", addIn{A: 2, B: 3})
	if err != nil || out.Sum != 5 {
		t.Fatalf("Call a::add = %+v, %v", out, err)
	}
	if out.Caller == "" || out.Caller != b.WorkerID() {
		t.Errorf("caller worker id = %q, b is %q", out.Caller, b.WorkerID())
	}

	var se *sluice.Error
	_, err = a.Trigger(ctx, "b::fail", map[string]bool{"coded": true})
	if !errors.As(err, &se) || se.Code != "out_of_stock" || se.Message != "none left" {
		t.Errorf("coded error = %v", err)
	}
	_, err = a.Trigger(ctx, "b::fail", nil)
	if !errors.As(err, &se) || se.Code != sluice.CodeInvocationFailed || se.Message != "plain failure" {
		t.Errorf("plain error = %v", err)
	}
	_, err = a.Trigger(ctx, "nobody::home", nil)
	if !errors.As(err, &se) || se.Code != sluice.CodeFunctionNotFound {
		t.Errorf("unknown function error = %v", err)
	}

	// Void calls run but answer nothing.
	done := make(chan string, 1)
	must(t, a.RegisterRaw("a::note", func(_ context.Context, inv *sluice.Invocation) (json.RawMessage, error) {
		done <- string(inv.Data)
		return nil, nil
	}))
	roundTrip(t, a, "a::add")
	must(t, b.TriggerVoid(ctx, "a::note", "hello"))
	select {
	case got := <-done:
		if got != `"hello"` {
			t.Errorf("void payload = %s", got)
		}
	case <-time.After(waitFor):
		t.Fatal("void call not delivered")
	}

	// Without a queue the engine refuses enqueue; the error is surfaced.
	if _, err := b.Enqueue(ctx, "jobs", "a::add", addIn{}); !errors.As(err, &se) || se.Code != "enqueue_error" {
		t.Errorf("enqueue error = %v", err)
	}

	must(t, a.Close())
	must(t, b.Close())
	assertNoClientGoroutines(t)
}

func TestEngineCalleeDiesMidCall(t *testing.T) {
	e := startEngine(t)
	callee := connectEngine(t, e, "callee")
	caller := connectEngine(t, e, "caller")

	started := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	must(t, callee.RegisterRaw("callee::hang", func(context.Context, *sluice.Invocation) (json.RawMessage, error) {
		started <- struct{}{}
		<-release
		return json.RawMessage(`"too late"`), nil
	}))
	must(t, callee.RegisterRaw("callee::ping", func(context.Context, *sluice.Invocation) (json.RawMessage, error) { return nil, nil }))
	roundTrip(t, callee, "callee::ping")

	errc := make(chan error, 1)
	go func() {
		_, err := caller.Trigger(t.Context(), "callee::hang", nil)
		errc <- err
	}()
	<-started
	sluice.KillConn(callee)
	select {
	case err := <-errc:
		var se *sluice.Error
		if !errors.As(err, &se) || se.Code != sluice.CodeInvocationStopped {
			t.Errorf("caller error = %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("caller not told the callee died")
	}
}

func TestEngineReconnectReregisters(t *testing.T) {
	e := startEngine(t)
	a := connectEngine(t, e, "a")
	b := connectEngine(t, e, "b")
	ctx := t.Context()

	must(t, sluice.Register(a, "a::add", func(_ context.Context, in addIn) (addOut, error) {
		return addOut{Sum: in.A + in.B}, nil
	}))
	roundTrip(t, a, "a::add")
	first := a.WorkerID()

	for i := range 3 {
		sluice.KillConn(a)
		// a's own call waits for the reconnection and goes out after the
		// replay, so when it returns a::add is registered again.
		roundTrip(t, a, "a::add")
		out, err := sluice.Call[addOut](ctx, b, "a::add", addIn{A: i, B: 1})
		if err != nil || out.Sum != i+1 {
			t.Fatalf("after reconnect %d: %+v, %v", i, out, err)
		}
	}
	if a.WorkerID() == first {
		t.Error("worker id unchanged after reconnect")
	}
}

// tickType is a trigger type provider that remembers its bindings so the
// test can fire them.
type tickType struct {
	mu       sync.Mutex
	bindings map[string]sluice.TriggerBinding
	changed  chan struct{}
}

func (tt *tickType) RegisterTrigger(_ context.Context, b sluice.TriggerBinding) error {
	tt.mu.Lock()
	tt.bindings[b.ID] = b
	tt.mu.Unlock()
	tt.changed <- struct{}{}
	return nil
}

func (tt *tickType) UnregisterTrigger(_ context.Context, b sluice.TriggerBinding) error {
	tt.mu.Lock()
	delete(tt.bindings, b.ID)
	tt.mu.Unlock()
	tt.changed <- struct{}{}
	return nil
}

func TestEngineTriggerType(t *testing.T) {
	e := startEngine(t)
	provider := connectEngine(t, e, "provider")
	user := connectEngine(t, e, "user")
	ctx := t.Context()

	tick := &tickType{bindings: map[string]sluice.TriggerBinding{}, changed: make(chan struct{}, 4)}
	must(t, provider.RegisterTriggerType("tick", "fires when told", tick))
	fired := make(chan *sluice.Invocation, 1)
	must(t, user.RegisterRaw("user::on_tick", func(ctx context.Context, inv *sluice.Invocation) (json.RawMessage, error) {
		fired <- inv
		return nil, nil
	}))
	id, err := user.RegisterTrigger(sluice.TriggerSpec{Type: "tick", FunctionID: "user::on_tick",
		Config: map[string]int{"every": 5}, Metadata: map[string]string{"why": "test"}})
	must(t, err)

	select {
	case <-tick.changed:
	case <-time.After(waitFor):
		t.Fatal("provider never got the binding")
	}
	tick.mu.Lock()
	bnd := tick.bindings[id]
	tick.mu.Unlock()
	if bnd.FunctionID != "user::on_tick" || string(bnd.Config) != `{"every":5}` {
		t.Fatalf("binding = %+v", bnd)
	}
	roundTrip(t, user, "user::on_tick") // registration of user::on_tick is in
	<-fired
	if err := provider.TriggerVoid(ctx, bnd.FunctionID, map[string]int{"n": 1}, sluice.WithCallMetadata(bnd.Metadata)); err != nil {
		t.Fatal(err)
	}
	select {
	case inv := <-fired:
		if string(inv.Metadata) != `{"why":"test"}` {
			t.Errorf("fired with metadata %s", inv.Metadata)
		}
	case <-time.After(waitFor):
		t.Fatal("trigger did not fire")
	}

	must(t, user.UnregisterTrigger(id))
	select {
	case <-tick.changed:
	case <-time.After(waitFor):
		t.Fatal("provider never got the unregistration")
	}
}

func TestEngineChannels(t *testing.T) {
	e := startEngine(t)
	producer := connectEngine(t, e, "producer")
	consumer := connectEngine(t, e, "consumer")
	ctx := t.Context()

	type consumeIn struct {
		Src *sluice.ChannelReader `json:"src"`
	}
	must(t, sluice.Register(consumer, "consumer::read", func(_ context.Context, in consumeIn) (string, error) {
		b, err := in.Src.ReadAll()
		return string(b), err
	}))
	// A call from the consumer itself proves its registration is in.
	ch, err := consumer.CreateChannel(ctx)
	must(t, err)
	ch.Writer.Close()
	if got, err := sluice.Call[string](ctx, consumer, "consumer::read", consumeIn{Src: ch.Reader}); err != nil || got != "" {
		t.Fatalf("self call = %q, %v", got, err)
	}

	// Clean end: the consumer reads everything.
	ch, err = producer.CreateChannel(ctx, sluice.WithBufferSize(4))
	must(t, err)
	go func() {
		_, _ = io.Copy(ch.Writer, strings.NewReader(strings.Repeat("x", 200_000)))
		ch.Writer.Close()
	}()
	got, err := sluice.Call[string](ctx, producer, "consumer::read", map[string]any{"src": ch.ReaderRef})
	if err != nil || len(got) != 200_000 {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}

	// Broken end: the consumer's read fails and so does the call.
	ch, err = producer.CreateChannel(ctx)
	must(t, err)
	go func() {
		_, _ = ch.Writer.Write([]byte("partial"))
		ch.Writer.CloseWithError(errors.New("disk on fire"))
	}()
	_, err = sluice.Call[string](ctx, producer, "consumer::read", consumeIn{Src: ch.Reader})
	var se *sluice.Error
	if !errors.As(err, &se) || se.Code != sluice.CodeInvocationFailed || !strings.Contains(se.Message, "disk on fire") {
		t.Errorf("broken stream call = %v", err)
	}
}
