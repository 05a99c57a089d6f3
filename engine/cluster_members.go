package engine

import (
	"context"
	"encoding/base64"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/natsnode"
)

// Membership. Every node writes a heartbeat to the KV bucket sluice_nodes
// (key n.<base64url(node name)>) every quarter of cluster.node_timeout and
// watches the bucket. A node whose heartbeat has not been seen for
// node_timeout (measured with the watcher's local clock, so machines'
// clocks need not agree), or that deleted its key at shutdown, has left:
// the others log it and take over the queue jobs it held leased, which it
// can no longer settle (an acknowledged job survives the node).
const nodesBucket = "sluice_nodes"

type memberState struct {
	lastSeen time.Time
	gone     bool
}

type membership struct {
	e       *Engine
	kv      jetstream.KeyValue
	key     string
	timeout time.Duration

	mu      sync.Mutex
	members map[string]*memberState // other nodes
}

type heartbeat struct {
	Node string `json:"node"`
	At   int64  `json:"at"` // unix ms, informative only
}

func nodeKey(name string) string { return "n." + base64.RawURLEncoding.EncodeToString([]byte(name)) }

// startMembership opens the bucket and starts heartbeating and watching.
func (e *Engine) startMembership(ctx context.Context) error {
	c := e.cluster
	kv, err := natsnode.KeyValue(ctx, c.node.JS, jetstream.KeyValueConfig{
		Bucket: nodesBucket, History: 1, Storage: jetstream.FileStorage, Replicas: c.node.Replicas,
		TTL: time.Hour, Description: "sluice cluster members",
	})
	if err != nil {
		return err
	}
	m := &membership{e: e, kv: kv, key: nodeKey(c.name), timeout: e.cfg.Cluster.NodeTimeout, members: map[string]*memberState{}}
	if err := m.beat(ctx); err != nil {
		return err
	}
	w, err := kv.Watch(e.ctx, "n.*")
	if err != nil {
		return err
	}
	c.members = m
	e.backgroundDone.Add(2)
	go m.watch(w)
	go m.tick()
	return nil
}

func (m *membership) beat(ctx context.Context) error {
	b, _ := json.Marshal(heartbeat{Node: m.e.cluster.name, At: time.Now().UnixMilli()})
	_, err := m.kv.Put(ctx, m.key, b)
	return err
}

func (m *membership) watch(w jetstream.KeyWatcher) {
	defer m.e.backgroundDone.Done()
	defer w.Stop()
	for {
		select {
		case <-m.e.ctx.Done():
			return
		case en, ok := <-w.Updates():
			if !ok {
				return
			}
			if en == nil || en.Key() == m.key {
				continue
			}
			b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(en.Key(), "n."))
			if err != nil {
				continue
			}
			name := string(b)
			if en.Operation() == jetstream.KeyValuePut {
				m.seen(name, en.Created())
			} else {
				m.left(name, "shut down")
			}
		}
	}
}

// seen records a heartbeat of name. at is when it was written: old entries
// replayed at start are not taken for a live node.
func (m *membership) seen(name string, at time.Time) {
	now := time.Now()
	if now.Sub(at) > m.timeout {
		at = now.Add(-m.timeout) // stale at once unless it beats again
	} else {
		at = now
	}
	m.mu.Lock()
	st := m.members[name]
	joined := st == nil || st.gone
	if st == nil {
		st = &memberState{}
		m.members[name] = st
	}
	st.lastSeen, st.gone = at, false
	m.mu.Unlock()
	if joined {
		m.e.log.Info("cluster node joined", "node", name)
	}
}

func (m *membership) left(name, why string) {
	m.mu.Lock()
	st := m.members[name]
	if st == nil {
		st = &memberState{}
		m.members[name] = st
	}
	was := !st.gone
	st.gone = true
	m.mu.Unlock()
	if !was {
		return
	}
	n, err := m.e.cluster.queue.RecoverNode(m.e.ctx, name)
	m.e.log.Info("cluster node left", "node", name, "why", why, "jobs_taken_over", n, "err", err)
	if n > 0 {
		m.e.queues.wakeAll()
	}
}

// tick heartbeats and declares silent nodes gone.
func (m *membership) tick() {
	defer m.e.backgroundDone.Done()
	t := time.NewTicker(max(m.timeout/4, 50*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-m.e.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(m.e.ctx, m.timeout)
		if err := m.beat(ctx); err != nil && m.e.ctx.Err() == nil {
			m.e.log.Warn("cluster heartbeat not written", "err", err)
		}
		cancel()
		var silent []string
		now := time.Now()
		m.mu.Lock()
		for name, st := range m.members {
			if !st.gone && now.Sub(st.lastSeen) > m.timeout {
				silent = append(silent, name)
			}
		}
		m.mu.Unlock()
		for _, name := range silent {
			m.left(name, "silent for "+m.timeout.String())
		}
	}
}

// Nodes returns the names of the nodes seen alive, this one included.
func (m *membership) nodes() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []string{m.e.cluster.name}
	for name, st := range m.members {
		if !st.gone {
			out = append(out, name)
		}
	}
	return out
}

// leave deletes this node's heartbeat (clean shutdown): the others know at
// once instead of after node_timeout.
func (m *membership) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = m.kv.Delete(ctx, m.key)
}
