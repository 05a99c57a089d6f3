package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/wire"
)

// beatWatch follows this node's heartbeats in the members bucket.
type beatWatch struct {
	t *testing.T
	m *membership
	w jetstream.KeyWatcher
}

func watchBeats(t *testing.T, e *Engine) *beatWatch {
	t.Helper()
	m := e.cluster.membersNow()
	w, err := m.kv.Watch(context.Background(), m.key, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop() })
	return &beatWatch{t: t, m: m, w: w}
}

// tick makes the membership tick now and waits for its heartbeat. Once a
// tick's heartbeat is seen, the tick before it has done everything.
func (b *beatWatch) tick() {
	b.t.Helper()
	b.m.functionsChanged()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case en := <-b.w.Updates():
			if en != nil {
				return
			}
		case <-deadline:
			b.t.Fatal("no heartbeat within 10 s of a tick")
		}
	}
}

// TestMembershipTickLogsAndUnnotedCalls: a membership tick that writes its
// heartbeat logs no warning (one not written: the next test); a call no
// node noted taking for over the node timeout is stopped at the next
// tick, with one warning, and a tick that stops none logs none; the leases
// of a member declared gone whose take-over had failed are taken over, and
// that is logged. Kills cluster_members.go:327 (`err != nil` negated: every
// heartbeat written logged as not written), :353 ×3 (`timeout / 2` → `*
// 2`, when the bound was half the node timeout: the call stopped after
// twice it; `n > 0` → `>=`: a
// warning at every tick; negated: none when calls were stopped) and :361
// (`err == nil` negated: a take-over retried and done not logged).
func TestMembershipTickLogsAndUnnotedCalls(t *testing.T) {
	e, logs := startClusterLogged(t, func(c *Config) { c.Cluster.NodeTimeout = time.Minute })
	m := e.cluster.membersNow()
	beats := watchBeats(t, e)
	const notWritten, unnotedEnded = "cluster heartbeat not written", "cluster: calls no node took ended"
	beats.tick()
	beats.tick()
	if n, u := logs.count(notWritten), logs.count(unnotedEnded); n != 0 || u != 0 {
		t.Fatalf("two ticks, heartbeats written, no call waiting: %d heartbeat warnings, %d unnoted-call warnings; want none", n, u)
	}

	// A call that reaches a subscriber which never notes taking it.
	reached := make(chan struct{}, 1)
	sub, err := e.cluster.node.Conn.Subscribe(fnSubject("", "lost::fn"), func(*nats.Msg) { reached <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := e.cluster.node.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	w := dialRaw(t, e)
	id := invocationID()
	w.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: id, FunctionID: "lost::fn", Data: jsontext.Value(`{}`)})
	select {
	case <-reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the call never reached the subscriber")
	}
	r := e.cluster.router
	r.mu.Lock()
	for _, c := range r.calls { // sent 70 s ago: past the node timeout (1 min), within twice it
		c.sent = c.sent.Add(-70 * time.Second)
	}
	r.mu.Unlock()
	m.functionsChanged()
	res := w.expect(wire.TypeInvocationResult)
	if res.InvocationID != id || res.Error == nil || res.Error.Code != wire.CodeInvocationStopped || !strings.Contains(res.Error.Message, "within 1m0s") {
		t.Fatalf("a call unnoted for 70 s: %+v, want invocation_stopped after 1 min", res.Error)
	}
	logs.waitFor(t, 10*time.Second, 1, unnotedEnded, "calls=1")
	beats.tick()
	beats.tick()
	if u := logs.count(unnotedEnded); u != 1 {
		t.Fatalf("%d unnoted-call warnings after two more ticks, want the 1", u)
	}

	// A member declared gone whose leases were not yet taken over, and
	// that does not answer.
	m.mu.Lock()
	m.members["ghost-r"] = &memberState{lastSeen: time.Now(), gone: true}
	m.mu.Unlock()
	m.functionsChanged()
	logs.waitFor(t, 10*time.Second, 1, "cluster node's jobs taken over", "node=ghost-r")

}

// TestMembershipHeartbeatNotWritten: a heartbeat that cannot be written
// (the members bucket deleted) is logged while the engine runs. Kills
// cluster_members.go:327 (`m.e.ctx.Err() == nil` negated: a failed
// heartbeat not logged). The node timeout is 2 s: a write caught in the
// bucket's deletion waits for its answer up to that.
func TestMembershipHeartbeatNotWritten(t *testing.T) {
	e, logs := startClusterLogged(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.cluster.node.JS.DeleteKeyValue(ctx, nodesBucket); err != nil {
		t.Fatal(err)
	}
	logs.waitFor(t, 15*time.Second, 1, "cluster heartbeat not written")
}

// TestMembershipLeft: a member that left has its routes no longer served
// and its leaving logged; one without routes hands the HTTP server
// nothing; an unknown one is recorded as gone; a member that left already
// is not logged again. Kills cluster_members.go:272 (`st == nil` negated)
// and :278 ×2 (`len(st.routes) > 0` → `>=`, negated).
func TestMembershipLeft(t *testing.T) {
	e, logs := startClusterLogged(t, func(c *Config) { c.Cluster.NodeTimeout = time.Minute })
	spy := spyRoutes(e)
	m := e.cluster.membersNow()
	m.seen("routed", time.Now(), heartbeat{Routes: []hbRoute{{ID: "r1", FunctionID: "f", Config: jsontext.Value(`{"api_path":"/r1"}`)}}})
	if n, ids := spy.last(); n != 1 || len(ids) != 1 {
		t.Fatalf("a member with a route: %d route sets, last %v", n, ids)
	}
	m.left("routed", "test")
	if n, ids := spy.last(); n != 2 || len(ids) != 0 {
		t.Fatalf("after the member with a route left: %d route sets, last %v; want its route dropped", n, ids)
	}
	logs.waitFor(t, time.Second, 1, "cluster node left", "node=routed", "why=test")
	m.left("unknown", "test")
	logs.waitFor(t, time.Second, 1, "cluster node left", "node=unknown")
	m.mu.Lock()
	st := m.members["unknown"]
	m.mu.Unlock()
	if st == nil || !st.gone {
		t.Fatalf("an unknown member that left: %+v, want recorded as gone", st)
	}
	if n, _ := spy.last(); n != 2 {
		t.Fatalf("a member without routes left: %d route sets, want 2 still", n)
	}
	m.left("routed", "again")
	if n := logs.count("cluster node left", "node=routed"); n != 1 {
		t.Fatalf("a member that left twice logged %d times", n)
	}
}
