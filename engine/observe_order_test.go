package engine

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// gateHandler is a slog handler that holds the goroutine logging msg (the
// first time) until release is closed: a test parks an engine goroutine at
// a known point of its work that way, without hooks in the engine.
type gateHandler struct {
	slog.Handler
	msg     string
	once    *sync.Once
	entered chan struct{}
	release chan struct{}
}

func newGateHandler(msg string) *gateHandler {
	return &gateHandler{Handler: slog.NewTextHandler(io.Discard, nil), msg: msg, once: &sync.Once{},
		entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gateHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == g.msg {
		g.once.Do(func() {
			close(g.entered)
			select {
			case <-g.release:
			case <-time.After(10 * time.Second): // a bound, not a wait: the test fails before
			}
		})
	}
	return g.Handler.Handle(ctx, r)
}

func (g *gateHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *g
	c.Handler = g.Handler.WithAttrs(as)
	return &c
}

func (g *gateHandler) WithGroup(name string) slog.Handler {
	c := *g
	c.Handler = g.Handler.WithGroup(name)
	return &c
}

// obsStates collects the states the watcher is told about observer id
// (observeresult and observerstatechanged, in arrival order) until stop
// accepts a frame.
func obsStates(t *testing.T, c *obsClient, id string, states []string, stop func(map[string]any) bool) []string {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m, ok := <-c.in:
			if !ok {
				t.Fatalf("socket closed; states so far %v", states)
			}
			if (m["type"] == "observeresult" || m["type"] == "observerstatechanged") && m["id"] == id {
				states = append(states, m["type"].(string)+":"+m["state"].(string))
			}
			if stop(m) {
				return states
			}
		case <-timeout:
			t.Fatalf("timed out; states so far %v", states)
		}
	}
}

// The answer to observe must not be overtaken by a state change the owner's
// ack causes: the observing connection's reader is parked right after the
// observer is added (on its "observer added" log line) while the owner acks
// it. The watcher must hear observeresult first and end on active. On
// b8b8b29 (and since 04a89b9) the answer was written after the hub lock was
// released, so the watcher heard [observerstatechanged:active
// observeresult:pending] and the Python 0.25 SDK's handle stayed pending
// (its test_dispose_stops_the_activations_and_max_fires_disposes_after_the_last_one
// timing out in a.ready()).
func TestObserveAnswerNotOvertakenByOwnerAck(t *testing.T) {
	gate := newGateHandler("observer added")
	e := startEngineWithLogger(t, slog.New(gate))
	owner := obsDial(t, e)
	owner.announce("owner", true)
	owner.send(`{"type":"registerfunction","id":"r::src"}`)
	owner.await("functionregistered", withID("r::src"))
	watcher := obsDial(t, e)
	watcher.send(`{"type":"registerfunction","id":"r::tgt"}`)
	watcher.noFrame("observeresult") // the target is registered

	watcher.send(`{"type":"observe","id":"ob","source":{"function_id":"r::src"},"target":{"function_id":"r::tgt"}}`)
	select {
	case <-gate.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the observer was not added")
	}
	added := owner.await("observeradded", func(m map[string]any) bool {
		o, _ := m["observer"].(map[string]any)
		return o["id"] == "ob"
	})
	owner.send(`{"type":"observerack","function_id":"r::src","id":"ob","revision":` + jsonNum(added["revision"]) + `}`)
	// The ack makes it active (the engine says so whether or not the
	// answer went out yet); then the parked reader goes on.
	states := obsStates(t, watcher, "ob", nil, func(m map[string]any) bool { return m["id"] == "ob" && m["state"] == obsActive })
	close(gate.release)
	watcher.send(`{"type":"invokefunction","invocation_id":"barrier","function_id":"engine::functions::list","data":{}}`)
	states = obsStates(t, watcher, "ob", states, func(m map[string]any) bool {
		return m["type"] == "invocationresult" && m["invocation_id"] == "barrier"
	})
	if len(states) == 0 || states[0] != "observeresult:pending" && states[0] != "observeresult:active" {
		t.Fatalf("the answer to observe did not come first: %v", states)
	}
	if last := states[len(states)-1]; last != "observerstatechanged:active" && last != "observeresult:active" {
		t.Fatalf("the watcher was last told %s (states %v); the engine has the observer active", last, states)
	}
}
