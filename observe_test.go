package sluice_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	sluice "github.com/sluicehq/sluice"
)

type observeFrame struct {
	Type   string `json:"type"`
	ID     string `json:"id"`
	Source struct {
		FunctionID string         `json:"function_id"`
		Filters    map[string]any `json:"filters"`
		On         string         `json:"on"`
		Capture    []string       `json:"capture"`
	} `json:"source"`
	Target struct {
		FunctionID string `json:"function_id"`
	} `json:"target"`
	Metadata    json.RawMessage `json:"metadata"`
	MaxFires    *int            `json:"max_fires"`
	MaxInFlight *int            `json:"max_in_flight"`
}

func expectObserve(t *testing.T, fc *fakeConn) observeFrame {
	t.Helper()
	f := fc.expect(t, "observe")
	var m observeFrame
	if err := json.Unmarshal([]byte(f.raw), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// Observe sends one observe frame with what was asked, returns once the
// engine answered, and Ready/State follow observerstatechanged.
func TestObserveSendsTheObserverAndFollowsItsState(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)
	type res struct {
		h   *sluice.ObserveHandle
		err error
	}
	got := make(chan res, 1)
	go func() {
		h, err := c.Observe(t.Context(), sluice.Source{
			FunctionID: "orders::create",
			Filters:    map[string]any{"input.amount": map[string]any{"$gte": 500}},
			On:         sluice.OnComplete,
			Capture:    []sluice.Capture{sluice.CaptureInput},
		}, "alerts::big", sluice.MaxFires(3), sluice.MaxInFlight(4), sluice.ObserverMetadata(map[string]string{"team": "pay"}))
		got <- res{h, err}
	}()
	m := expectObserve(t, fc)
	if m.Source.FunctionID != "orders::create" || m.Target.FunctionID != "alerts::big" || m.Source.On != "complete" ||
		len(m.Source.Capture) != 1 || m.Source.Filters["input.amount"] == nil || m.MaxFires == nil || *m.MaxFires != 3 ||
		m.MaxInFlight == nil || *m.MaxInFlight != 4 ||
		string(m.Metadata) != `{"team":"pay"}` || m.ID == "" {
		t.Fatalf("observe frame: %+v", m)
	}
	fc.sendRaw(`{"type":"observeresult","id":"` + m.ID + `","state":"pending"}`)
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	h := r.h
	if h.ID() != m.ID || h.State() != sluice.ObserverPending {
		t.Fatalf("id %s state %s", h.ID(), h.State())
	}
	ready := make(chan error, 1)
	go func() { ready <- h.Ready(t.Context()) }()
	fc.sendRaw(`{"type":"observerstatechanged","id":"` + m.ID + `","state":"active","fires":0}`)
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	fc.sendRaw(`{"type":"observerstatechanged","id":"` + m.ID + `","state":"disposed","reason":{"code":"MAX_FIRES","message":"done"},"fires":3}`)
	select {
	case <-h.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not disposed")
	}
	var e *sluice.Error
	if h.State() != sluice.ObserverDisposed || !errors.As(h.Err(), &e) || e.Code != "MAX_FIRES" {
		t.Fatalf("state %s err %v", h.State(), h.Err())
	}
}

// A refused observer is an *Error with the engine's code.
func TestObserveRefusedIsAnError(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Observe(t.Context(), sluice.Source{FunctionID: "a"}, "a")
		errc <- err
	}()
	m := expectObserve(t, fc)
	fc.sendRaw(`{"type":"observeresult","id":"` + m.ID + `","state":"error","error":{"code":"SELF_TARGET","message":"no"}}`)
	var e *sluice.Error
	if err := <-errc; !errors.As(err, &e) || e.Code != "SELF_TARGET" {
		t.Fatalf("err %v", err)
	}
}

// Cancelling the Observe context disposes the observer (unobserve), and a
// reconnect replays live observers with the same id.
func TestObserveContextEndsItAndReconnectReplaysIt(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	hc := make(chan *sluice.ObserveHandle, 1)
	go func() {
		h, err := c.Observe(ctx, sluice.Source{FunctionID: "src"}, "dst")
		if err != nil {
			t.Error(err)
		}
		hc <- h
	}()
	m := expectObserve(t, fc)
	fc.sendRaw(`{"type":"observeresult","id":"` + m.ID + `","state":"active"}`)
	h := <-hc

	fc.kill()
	fc2 := fe.accept(t)
	fc2.expect(t, "reattach")
	replayed := expectObserve(t, fc2)
	if replayed.ID != m.ID {
		t.Fatalf("replayed %s, want %s", replayed.ID, m.ID)
	}
	fc2.expectWorkerInfo(t)

	cancel()
	f := fc2.expect(t, "unobserve")
	var u struct{ ID string }
	_ = json.Unmarshal([]byte(f.raw), &u)
	if u.ID != m.ID || h.State() != sluice.ObserverDisposed {
		t.Fatalf("unobserve %s, state %s", f.raw, h.State())
	}
}

// Observe fails without an answer within the context.
func TestObserveWithoutAnswerTimesOut(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	go func() { expectObserve(t, fc) }()
	if _, err := c.Observe(ctx, sluice.Source{FunctionID: "src"}, "dst"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	if _, err := c.Observe(t.Context(), sluice.Source{}, "dst"); err == nil {
		t.Fatal("no function id accepted")
	}
}

// Against an engine without observe.v1 in its features, Observe fails at
// once with UNSUPPORTED and sends nothing.
func TestObserveUnsupportedEngine(t *testing.T) {
	fe := newFakeEngine(t)
	fe.noObserve.Store(true)
	c, fc := connect(t, fe)
	_, err := c.Observe(t.Context(), sluice.Source{FunctionID: "src"}, "dst")
	var e *sluice.Error
	if !errors.As(err, &e) || e.Code != "UNSUPPORTED" {
		t.Fatalf("err %v", err)
	}
	fc.sync(t) // the next frame is the probe's answer, not an observe
}
