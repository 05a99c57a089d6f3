package engine

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/natsnode"
	"github.com/sluicehq/sluice/internal/registry"
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
	lastSeen  time.Time
	gone      bool
	recovered bool // its leases were taken over since it left
	functions []hbFunction
	fnKey     string // its function ids, to notice a change (functionsKey)
	workers   []workerSummary
	routes    []hbRoute
	routesKey string
	types     []hbTriggerType
	triggers  []hbTrigger
	subs      []hbSubscription
	codec     int // the call envelope encodings it reads (cluster_codec.go)
}

type membership struct {
	e       *Engine
	kv      jetstream.KeyValue
	key     string
	timeout time.Duration

	changed chan struct{} // this node's functions changed: beat now
	trimmed atomic.Bool   // the last heartbeat was trimmed (warned once)
	// maxPayload is NATS's largest message (0: unknown, nothing trimmed);
	// beat's alone.
	maxPayload int64

	mu      sync.Mutex
	members map[string]*memberState // other nodes

	routesMu sync.Mutex // serializes updateRoutes
}

// heartbeat is a node's entry: it also lists the functions its workers
// serve, for discovery on the other nodes.
type heartbeat struct {
	Node      string       `json:"node"`
	At        int64        `json:"at"` // unix ms, informative only
	Functions []hbFunction `json:"functions,omitzero"`
	// Workers are the node's announced workers, as engine::workers::list
	// shows them (as of the heartbeat).
	Workers []workerSummary `json:"workers,omitzero"`
	// Routes are the http triggers the node serves (cluster_http.go).
	Routes []hbRoute `json:"routes,omitzero"`
	// TriggerTypes are the trigger types its workers provide.
	TriggerTypes []hbTriggerType `json:"trigger_types,omitzero"`
	// Subscriptions are its durable topic subscriptions (cluster_topics.go).
	Subscriptions []hbSubscription `json:"subscriptions,omitzero"`
	// Triggers are its workers' bindings of the other trigger types (cron,
	// state, subscribe, ...), for discovery only (cluster_http.go).
	Triggers []hbTrigger `json:"triggers,omitzero"`
	// Codec is the newest call envelope encoding the node reads
	// (cluster_codec.go); absent on nodes that read JSON only.
	Codec int `json:"codec,omitzero"`
}

// hbTriggerType is a worker's trigger type in a heartbeat.
type hbTriggerType struct {
	ID          string `json:"id"`
	Worker      string `json:"worker"`
	WorkerID    string `json:"wid,omitzero"`
	Description string `json:"description,omitzero"`
}

type hbFunction struct {
	Namespace   string         `json:"ns,omitzero"`
	ID          string         `json:"id"`
	Worker      string         `json:"worker"`
	Description string         `json:"description,omitzero"`
	Metadata    jsontext.Value `json:"metadata,omitzero"`
	WorkerID    string         `json:"wid,omitzero"`
	// Request and Response are its schemas (dropped from a heartbeat that
	// would outgrow maxHeartbeatSchemas).
	Request  jsontext.Value `json:"req,omitzero"`
	Response jsontext.Value `json:"resp,omitzero"`
}

// maxHeartbeatSchemas bounds a heartbeat carrying its functions' schemas:
// a bigger one goes without them (engine::functions::info on the other
// nodes then shows none).
const maxHeartbeatSchemas = 256 << 10

func nodeKey(name string) string { return "n." + base64.RawURLEncoding.EncodeToString([]byte(name)) }

// aliveSubject is where a node answers the others asking whether it is
// still there (NATS core request/reply, independent of JetStream).
func aliveSubject(name string) string {
	return "sluice.alive." + base64.RawURLEncoding.EncodeToString([]byte(name))
}

// answering asks each node whether it is there, at once, and returns those
// that answered. A node whose heartbeats are late but that answers is
// alive and reachable: the heartbeat writes stalled (a JetStream leader
// election pauses every write for seconds), not the node.
func (m *membership) answering(names []string) map[string]bool {
	wait := aliveWait(m.timeout)
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := map[string]bool{}
	for _, name := range names {
		wg.Go(func() {
			if _, err := m.e.cluster.node.Conn.Request(aliveSubject(name), nil, wait); err == nil {
				mu.Lock()
				out[name] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// aliveWait bounds the wait for the answers to "are you there": half the
// node timeout, within 250 ms to 2 s. A node that died or whose routes
// closed answers "no responders" at once: the bound only matters for a
// slow node or a silent link.
func aliveWait(timeout time.Duration) time.Duration {
	return min(max(timeout/2, 250*time.Millisecond), 2*time.Second)
}

// stillThere records that a node whose heartbeats are late answered; a
// node declared gone that answers again has joined again.
func (m *membership) stillThere(name string) {
	m.mu.Lock()
	st := m.members[name]
	if st == nil {
		m.mu.Unlock()
		return
	}
	back := st.gone
	st.lastSeen, st.gone = time.Now(), false
	hadRoutes, hadFns := len(st.routes) > 0, len(st.functions) > 0
	if back {
		m.codecsChanged()
	}
	m.mu.Unlock()
	if back {
		m.e.log.Info("cluster node joined", "node", name, "why", "answers again")
		if hadRoutes {
			m.updateRoutes()
		}
		if hadFns {
			m.e.remoteFunctionsChanged()
		}
	}
}

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
	m := &membership{e: e, kv: kv, key: nodeKey(c.name), timeout: e.cfg.Cluster.NodeTimeout,
		members: map[string]*memberState{}, changed: make(chan struct{}, 1)}
	// Answer the other nodes' "are you there" over NATS core (aliveSubject).
	if _, err := c.node.Conn.Subscribe(aliveSubject(c.name), func(msg *nats.Msg) { _ = msg.Respond(nil) }); err != nil {
		return err
	}
	if err := m.beat(ctx); err != nil {
		return err
	}
	w, err := kv.Watch(e.ctx, "n.*")
	if err != nil {
		return err
	}
	c.members.Store(m)
	m.functionsChanged() // subscriptions added since the first beat could not signal it
	e.backgroundDone.Add(2)
	go m.watch(w)
	go m.tick()
	return nil
}

func (m *membership) beat(ctx context.Context) error {
	hb := heartbeat{Node: m.e.cluster.name, At: time.Now().UnixMilli(), Codec: clusterCodec}
	var offered map[fnKey]bool // nil: no router (offline tests), all listed
	if r := m.e.cluster.router; r != nil {
		offered = r.offered()
	}
	for _, f := range m.e.reg.Functions() {
		if _, builtin := f.Owner.(*invocation.EngineExecutor); !builtin && (offered == nil || offered[fnKey{nsOrDefault(f.Namespace), f.ID}]) {
			hb.Functions = append(hb.Functions, hbFunction{Namespace: nsOrDefault(f.Namespace), ID: f.ID, Worker: m.e.workerName(ownerOf(f.Owner), f.ID),
				Description: f.Description, Metadata: f.Metadata, WorkerID: ownerOf(f.Owner), Request: f.RequestFormat, Response: f.ResponseFormat})
		}
	}
	for _, tt := range m.e.reg.TriggerTypes() {
		if w := ownerOf(tt.Provider); w != "" {
			hb.TriggerTypes = append(hb.TriggerTypes, hbTriggerType{ID: tt.ID, Worker: m.e.workerName(w, tt.ID), WorkerID: w, Description: tt.Description})
		}
	}
	for _, w := range m.e.reg.Workers() {
		if w.HasPID {
			hb.Workers = append(hb.Workers, m.e.summarizeWorker(w))
		}
	}
	hb.Routes = m.e.http.routes()
	hb.Triggers = m.e.localTriggers()
	if p := m.e.durableSubs(); p != nil {
		hb.Subscriptions = p.subscriptions()
	}
	b, _ := json.Marshal(hb)
	if len(b) > maxHeartbeatSchemas {
		for i := range hb.Functions {
			hb.Functions[i].Request, hb.Functions[i].Response = nil, nil
		}
		b, _ = json.Marshal(hb)
	}
	// A heartbeat past NATS's max payload is not written, and the other
	// nodes would take this live node for gone. What only describes
	// (workers, other bindings, descriptions, metadata) goes first; what
	// routes calls and jobs (function ids, routes, subscriptions) stays.
	if c := m.e.cluster; c != nil && c.node != nil {
		m.maxPayload = c.node.Conn.MaxPayload() // the server's, as of the last (re)connect
	}
	if limit := heartbeatLimit(m.maxPayload); m.maxPayload > 0 && len(b) > limit {
		hb.Workers, hb.Triggers = nil, nil
		for i := range hb.Functions {
			f := &hb.Functions[i]
			f.Description, f.Metadata, f.Request, f.Response = "", nil, nil, nil
		}
		for i := range hb.TriggerTypes {
			hb.TriggerTypes[i].Description = ""
		}
		b, _ = json.Marshal(hb)
		if len(b) > limit {
			return fmt.Errorf("heartbeat of %d bytes exceeds NATS's max payload (%d) even without descriptions: too many functions, routes or subscriptions on this node", len(b), limit)
		}
		if !m.trimmed.Swap(true) {
			m.e.log.Warn("cluster heartbeat trimmed to NATS's max payload: other nodes list this node's functions without descriptions, metadata or schemas, and not its workers or other bindings", "bytes", len(b), "max_payload", limit)
		}
	} else {
		m.trimmed.Store(false)
	}
	_, err := m.kv.Put(ctx, m.key, b)
	return err
}

// heartbeatLimit is the largest heartbeat value a connection whose server
// takes max bytes per message can write (room left for the subject,
// headers and reply of a KV put).
func heartbeatLimit(max int64) int {
	return int(max) - 4<<10
}

func (m *membership) watch(w jetstream.KeyWatcher) {
	defer m.e.backgroundDone.Done()
	defer natsnode.StopWatch(m.e.ctx, w)
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
				var hb heartbeat
				_ = json.Unmarshal(en.Value(), &hb, lenient)
				m.seen(name, en.Created(), hb)
			} else {
				m.left(name, "shut down")
			}
		}
	}
}

// seen records a heartbeat of name. at is when it was written: old entries
// replayed at start are not taken for a live node.
func (m *membership) seen(name string, at time.Time, hb heartbeat) {
	now := time.Now()
	if now.Sub(at) > m.timeout {
		at = now.Add(-m.timeout) // stale at once unless it beats again
		hb.Routes = nil          // not served until it does
		hb.Subscriptions = nil   // no copies for a node that may be long dead
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
	st.lastSeen, st.gone, st.functions, st.workers, st.types, st.subs, st.codec = at, false, hb.Functions, hb.Workers, hb.TriggerTypes, hb.Subscriptions, hb.Codec
	st.triggers = hb.Triggers
	fk := functionsKey(hb.Functions)
	fnsChanged := fk != st.fnKey || (joined && fk != "")
	st.fnKey = fk
	rk := routesKey(hb.Routes)
	routesChanged := rk != st.routesKey || (joined && rk != "")
	st.routes, st.routesKey = hb.Routes, rk
	m.codecsChanged()
	m.mu.Unlock()
	if joined {
		m.e.log.Info("cluster node joined", "node", name)
	}
	if routesChanged {
		m.updateRoutes()
	}
	if fnsChanged {
		m.e.remoteFunctionsChanged()
	}
}

// functionsKey identifies a node's set of functions (ids by namespace).
func functionsKey(fs []hbFunction) string {
	if len(fs) == 0 {
		return ""
	}
	ids := make([]string, len(fs))
	for i, f := range fs {
		ids[i] = f.Namespace + "\x00" + f.ID
	}
	slices.Sort(ids)
	return strings.Join(ids, "\n")
}

// codecsChanged sends calls in the binary envelope once every live node
// reads it, in JSON while any does not (a node of an older version), and
// several calls or answers in one message once every live node reads
// that. Under m.mu.
func (m *membership) codecsChanged() {
	low := clusterCodec
	for _, st := range m.members {
		if !st.gone {
			low = min(low, st.codec)
		}
	}
	if r := m.e.cluster.router; r != nil {
		r.binary.Store(low >= codecBinary)
		r.batches.Store(low >= codecBatches)
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
	st.gone, st.recovered = true, false
	hadRoutes, hadFns := len(st.routes) > 0, len(st.functions) > 0
	m.codecsChanged()
	m.mu.Unlock()
	if !was {
		return
	}
	if hadRoutes {
		m.updateRoutes()
	}
	if hadFns {
		m.e.remoteFunctionsChanged()
	}
	calls := m.e.cluster.router.nodeLeft(name)
	bridges := m.e.hub.NodeLeft(name)
	n, err := m.takeOver(name)
	m.e.log.Info("cluster node left", "node", name, "why", why, "jobs_taken_over", n, "calls_stopped", calls, "channels_broken", bridges, "err", err)
}

// takeOver makes the leases of a departed node ready again. It fails
// while JetStream elects new leaders (the departed node may have led the
// bucket); tick tries again until it succeeds.
func (m *membership) takeOver(name string) (int, error) {
	// Bounded: without a majority JetStream answers nothing, and tick must
	// go on beating and watching meanwhile.
	ctx, cancel := context.WithTimeout(m.e.ctx, m.timeout)
	defer cancel()
	n, err := m.e.cluster.queue.RecoverNode(ctx, name)
	if n > 0 {
		m.e.queues.wakeAll()
	}
	if err == nil {
		m.mu.Lock()
		if st := m.members[name]; st != nil && st.gone {
			st.recovered = true
		}
		m.mu.Unlock()
	}
	return n, err
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
		case <-m.changed:
		}
		ctx, cancel := context.WithTimeout(m.e.ctx, m.timeout)
		if err := m.beat(ctx); err != nil && m.e.ctx.Err() == nil {
			m.e.log.Warn("cluster heartbeat not written", "err", err)
		}
		cancel()
		var silent, retry []string
		now := time.Now()
		m.mu.Lock()
		for name, st := range m.members {
			if !st.gone && now.Sub(st.lastSeen) > m.timeout {
				silent = append(silent, name)
			} else if st.gone && !st.recovered {
				retry = append(retry, name)
			}
		}
		m.mu.Unlock()
		// A silent node that still answers over NATS is not gone, and the
		// leases of a node that answers again are never taken over (this
		// node may have been the one cut off, and the others live on).
		there := m.answering(append(slices.Clone(silent), retry...))
		for _, name := range silent {
			if there[name] {
				m.stillThere(name)
				continue
			}
			m.left(name, "silent for "+m.timeout.String())
		}
		// After the node timeout, not sooner: a call and its note travel
		// the same connections and scheduler as the serving node's
		// heartbeats, which a live node may send up to the node timeout
		// apart; on a loaded machine a call can take over half of it to
		// reach the serving node's worker.
		if n := m.e.cluster.router.stopUnnoted(m.timeout); n > 0 {
			m.e.log.Warn("cluster: calls no node took ended", "calls", n)
		}
		for _, name := range retry {
			if there[name] {
				m.stillThere(name)
				continue
			}
			if n, err := m.takeOver(name); err == nil {
				m.e.log.Info("cluster node's jobs taken over", "node", name, "jobs_taken_over", n)
			}
		}
	}
}

// functionsChanged makes the next heartbeat go now.
func (m *membership) functionsChanged() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// remoteFunctions lists the functions served on the other live nodes, by
// node (first node in name order wins for a function several serve).
func (m *membership) remoteFunctions() map[fnKey]remoteFunction {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.members))
	for name, st := range m.members {
		if !st.gone {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	out := map[fnKey]remoteFunction{}
	for _, name := range names {
		for _, f := range m.members[name].functions {
			k := fnKey{nsOrDefault(f.Namespace), f.ID}
			if _, dup := out[k]; !dup {
				out[k] = remoteFunction{hbFunction: f, Node: name}
			}
		}
	}
	return out
}

type remoteFunction struct {
	hbFunction
	Node string
}

// leave deletes this node's heartbeat (clean shutdown): the others know at
// once instead of after node_timeout.
func (m *membership) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = m.kv.Delete(ctx, m.key)
}

// nodeName is this node's name in cluster mode, "" otherwise.
func (e *Engine) nodeName() string {
	if e.cluster == nil {
		return ""
	}
	return e.cluster.name
}

// appendRemoteFunctions adds the functions served only on other nodes to a
// functions list, under the same filters.
func (e *Engine) appendRemoteFunctions(out []functionSummary, in functionsFilter, search string, visible func(*registry.Function) bool) []functionSummary {
	if e.cluster == nil {
		return out
	}
	m := e.cluster.membersNow()
	if m == nil {
		return out
	}
	remote := m.remoteFunctions()
	if len(remote) == 0 {
		return out
	}
	keys := make([]fnKey, 0, len(remote))
	for k := range remote {
		if _, local := e.reg.FunctionIn(k.ns, k.id); !local {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b fnKey) int {
		if c := strings.Compare(a.id, b.id); c != 0 {
			return c
		}
		return strings.Compare(a.ns, b.ns)
	})
	for _, k := range keys {
		rf, id := remote[k], k.id
		f := &registry.Function{Namespace: k.ns, ID: id, Description: rf.Description, Metadata: rf.Metadata}
		switch {
		case visible != nil && !visible(f),
			!in.IncludeInternal && (hiddenFunction(id) || f.Internal()),
			in.Prefix != "" && !strings.HasPrefix(id, in.Prefix),
			in.Worker != "" && rf.Worker != in.Worker,
			len(in.Workers) > 0 && !contains(in.Workers, rf.Worker),
			search != "" && !strings.Contains(strings.ToLower(id), search) && !strings.Contains(strings.ToLower(rf.Description), search):
			continue
		}
		out = append(out, functionSummary{FunctionID: id, Namespace: k.ns, WorkerName: rf.Worker, Description: rf.Description, Metadata: rf.Metadata, Node: rf.Node})
	}
	return out
}

func nsOrDefault(ns string) string {
	if ns == "" {
		return registry.DefaultNamespace
	}
	return ns
}

// remoteWorkers lists the workers of the other live nodes, each with its
// node, as of their last heartbeat.
func (e *Engine) remoteWorkers() []workerSummary {
	var out []workerSummary
	e.eachLiveMember(func(name string, st *memberState) {
		for _, w := range st.workers {
			w.Node = name
			out = append(out, w)
		}
	})
	return out
}

// eachLiveMember calls fn for every other node not known gone, under the
// membership lock; without a cluster it calls nothing.
func (e *Engine) eachLiveMember(fn func(name string, st *memberState)) {
	if e.cluster == nil {
		return
	}
	m := e.cluster.membersNow()
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, st := range m.members {
		if !st.gone {
			fn(name, st)
		}
	}
}
