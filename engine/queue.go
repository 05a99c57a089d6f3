package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/uuid"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/queue"
	"github.com/sluicehq/sluice/internal/wsconn"
	"github.com/sluicehq/sluice/wire"
)

// Queues: TriggerAction.Enqueue, engine::queue::*, iii::queue::*, durable
// topics. The store (internal/queue) keeps the jobs; this file holds the
// policy: which queues exist, one dispatcher per queue delivering jobs
// through the invoker, retries with backoff, dead letters.
//
// Delivery is at-least-once: a job is acknowledged in the store only after
// its function answered successfully; a crash in between delivers it again.

const defaultQueueName = "default"

// topicQueuePrefix keeps a durable topic's jobs apart from a named queue of
// the same name in the store.
const topicQueuePrefix = "__topic::"

// Function ids of the queue module (upstream's names).
const (
	fnQueueEnqueue        = "engine::queue::enqueue"
	fnQueueDefine         = "queue::define"
	fnQueueListTopics     = "engine::queue::list_topics"
	fnQueueTopicStats     = "engine::queue::topic_stats"
	fnQueueDLQTopics      = "engine::queue::dlq_topics"
	fnQueueDLQMessages    = "engine::queue::dlq_messages"
	fnQueueRedrive        = "iii::queue::redrive"
	fnQueueRedriveMessage = "iii::queue::redrive_message"
	fnQueueDiscardMessage = "iii::queue::discard_message"
	fnDurablePublish      = "iii::durable::publish"
	triggerTypeDurableSub = "durable:subscriber"
)

// maxQueues bounds the named queues (each runs a dispatcher goroutine), so
// queue::define cannot be used to create them without end.
const maxQueues = 1024

// maxEnqueuesInFlight bounds the enqueues waiting for their commit; a
// worker that sends more waits (its socket is not read meanwhile).
const maxEnqueuesInFlight = 4096

// clusterEnqueueTimeout bounds the store of one enqueue in cluster mode.
// A store that timed out may still have committed: the job is then
// delivered although the enqueue answered enqueue_error (at least once: a
// caller that retries may store it twice).
const clusterEnqueueTimeout = 5 * time.Second

// clusterSettleTimeout bounds recording a delivery's outcome in cluster
// mode (see settle).
const clusterSettleTimeout = 10 * time.Second

type queueManager struct {
	e   *Engine
	log *slog.Logger

	ctx    context.Context // ends when the engine starts shutting down
	cancel context.CancelFunc

	sem chan struct{}

	mu      sync.Mutex
	store   queue.Store // nil until opened (the file is created on first use)
	defs    map[string]QueueConfig
	fromCfg map[string]bool
	disp    map[string]*dispatcher
	started bool
	closed  bool

	fnWake chan struct{}
	wg     sync.WaitGroup // dispatchers, the unparker, settling deliveries

	// replies batches the answers written by the callbacks of one group
	// commit (the store's writer goroutine only): one write system call per
	// producer connection per commit; the store's AfterCommit flushes it.
	replies wsconn.Batch
}

func newQueueManager(e *Engine) *queueManager {
	ctx, cancel := context.WithCancel(context.Background())
	m := &queueManager{
		e: e, log: e.log.With("part", "queue"), ctx: ctx, cancel: cancel,
		sem:     make(chan struct{}, maxEnqueuesInFlight),
		defs:    map[string]QueueConfig{defaultQueueName: DefaultQueueConfig()},
		fromCfg: map[string]bool{},
		disp:    map[string]*dispatcher{},
		fnWake:  make(chan struct{}, 1),
	}
	for name, q := range e.cfg.Queues {
		m.defs[name] = q
		m.fromCfg[name] = true
	}
	return m
}

// start opens the store if it already exists (jobs of a previous run wait
// in it) and starts the dispatchers.
func (m *queueManager) start(ctx context.Context) error {
	m.mu.Lock()
	m.started = true
	m.mu.Unlock()
	m.wg.Add(1)
	go m.unparker()
	if m.e.cluster != nil || m.e.cfg.DataDir == DataDirMemory || fileExists(filepath.Join(m.e.cfg.DataDir, queue.FileName)) {
		// Bounded by the start's ctx too: a signal while a cluster has no
		// JetStream quorum ends the start instead of waiting for the store.
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(m.ctx, cancel)()
		if _, err := m.openCtx(ctx); err != nil {
			return err
		}
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// open returns the store, opening it on first use: recovering the leases of
// a previous process, loading queues defined at run time and starting a
// dispatcher per queue.
func (m *queueManager) open() (queue.Store, error) { return m.openCtx(m.ctx) }

// openCtx is open with its store round trips bounded by ctx.
func (m *queueManager) openCtx(ctx context.Context) (queue.Store, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.store != nil {
		return m.store, nil
	}
	if m.closed || m.ctx.Err() != nil {
		return nil, errors.New("engine shutting down")
	}
	var s queue.Store
	if c := m.e.cluster; c != nil {
		s = c.queue
		// Another node enqueued, retried or redrove jobs: look again; it
		// parked jobs: maybe a function of ours can take them.
		c.queue.Notify(func(q string, parked bool) {
			if parked {
				m.functionsChanged()
			} else {
				m.wake(q)
			}
		})
		// queue::define on any node declares the queue on every node.
		c.queue.NotifyQueues(m.definedElsewhere)
	} else if m.e.cfg.DataDir == DataDirMemory {
		s = queue.NewMemory()
	} else {
		sq, err := queue.OpenSQLite(m.e.cfg.DataDir, m.e.cfg.DataSync)
		if err != nil {
			return nil, err
		}
		s = sq
	}
	n, err := s.Recover(ctx)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("queue: recover leases: %w", err)
	}
	defs, err := s.LoadQueues(ctx)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("queue: load queue definitions: %w", err)
	}
	for name, raw := range defs {
		if m.fromCfg[name] {
			continue // the config file wins over a definition made at run time
		}
		q := DefaultQueueConfig()
		if err := json.Unmarshal(raw, &q, lenient); err != nil || q.Validate(name) != nil {
			m.log.Warn("stored queue definition ignored", "queue", name, "err", err)
			continue
		}
		m.defs[name] = q
	}
	if a, ok := s.(queue.Async); ok {
		a.AfterCommit(m.replies.Flush)
	}
	m.store = s
	m.log.Info("queue store open", "data_dir", m.e.cfg.DataDir, "sync", m.e.cfg.DataSync, "redelivering", n)
	names, err := s.Queues(ctx)
	if err != nil {
		m.log.Warn("listing stored queues failed", "err", err)
	}
	for name := range m.defs {
		names = append(names, name)
	}
	for _, name := range names {
		m.dispatcherLocked(name)
	}
	return s, nil
}

// definedElsewhere applies a queue definition saved by any node of the
// cluster (this one's own are applied again, unchanged).
func (m *queueManager) definedElsewhere(name string, raw []byte) {
	q := DefaultQueueConfig()
	if err := json.Unmarshal(raw, &q, lenient); err != nil || q.Validate(name) != nil {
		m.log.Warn("queue definition from another node ignored", "queue", name, "err", err)
		return
	}
	m.mu.Lock()
	_, existed := m.defs[name]
	if m.fromCfg[name] || m.closed || !existed && len(m.defs) >= maxQueues {
		m.mu.Unlock()
		return
	}
	m.defs[name] = q
	d := m.dispatcherLocked(name)
	m.mu.Unlock()
	if d != nil {
		d.dirty()
	}
}

// config returns a queue's settings: a named queue, or a durable topic's.
func (m *queueManager) config(key string) (QueueConfig, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.configLocked(key)
}

func (m *queueManager) configLocked(key string) (QueueConfig, bool) {
	if topic, ok := cutPrefix(key, topicQueuePrefix); ok {
		return m.e.topicConfig(topic), true
	}
	q, ok := m.defs[key]
	return q, ok
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return s, false
}

// dispatcherLocked returns the dispatcher of key, starting it if needed.
func (m *queueManager) dispatcherLocked(key string) *dispatcher {
	if d, ok := m.disp[key]; ok {
		return d
	}
	if _, ok := m.configLocked(key); !ok {
		m.log.Warn("stored jobs of an undeclared queue wait until it is declared", "queue", key)
		return nil
	}
	d := &dispatcher{m: m, key: key, wake: make(chan struct{}, 1)}
	d.gen.Store(1) // not drained until a lease finds nothing
	m.disp[key] = d
	m.wg.Add(1)
	go d.run()
	return d
}

func (m *queueManager) wake(key string) {
	m.mu.Lock()
	d := m.disp[key]
	if d == nil && m.store != nil && !m.closed {
		d = m.dispatcherLocked(key)
	}
	m.mu.Unlock()
	if d != nil {
		d.dirty()
	}
}

func (m *queueManager) wakeAll() {
	m.mu.Lock()
	ds := make([]*dispatcher, 0, len(m.disp))
	for _, d := range m.disp {
		ds = append(ds, d)
	}
	m.mu.Unlock()
	for _, d := range ds {
		d.dirty()
	}
}

// functionsChanged is called when functions register or go; parked jobs of
// a function that is now registered become deliverable. It never blocks.
func (m *queueManager) functionsChanged() {
	select {
	case m.fnWake <- struct{}{}:
	default:
	}
}

func (m *queueManager) unparker() {
	defer m.wg.Done()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.fnWake:
		}
		m.mu.Lock()
		s := m.store
		m.mu.Unlock()
		if s == nil {
			continue
		}
		fns, err := s.ParkedFunctions(m.ctx)
		if err != nil {
			continue
		}
		woke := false
		for _, fn := range fns {
			if _, ok := m.e.reg.Function(fn); !ok {
				continue
			}
			if n, err := s.Unpark(m.ctx, fn); err == nil && n > 0 {
				m.log.Info("function registered: parked jobs released", "function_id", fn, "jobs", n)
				woke = true
			}
		}
		// In a cluster, jobs of a function no node served wait ready (each
		// node leases only what it serves): a registration here may serve them.
		if woke || m.e.cluster != nil {
			m.wakeAll()
		}
	}
}

// stopDispatch stops leasing new jobs (shutdown begins).
func (m *queueManager) stopDispatch() { m.cancel() }

// close waits for the deliveries in flight to settle (bounded by ctx) and
// closes the store.
func (m *queueManager) close(ctx context.Context) {
	m.cancel()
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		m.log.Warn("queue deliveries still settling at shutdown; their jobs are redelivered on restart")
	}
	m.mu.Lock()
	m.closed = true
	s := m.store
	m.mu.Unlock()
	if s != nil {
		_ = s.Close()
	}
}

// --- enqueue ---

// enqueueError is the enqueue_error answer.
func enqueueError(msg string) *wire.ErrorBody {
	return &wire.ErrorBody{Code: wire.CodeEnqueueError, Message: msg}
}

// prepare checks a job against its queue and builds it.
func (m *queueManager) prepare(queueName, functionID string, data []byte, id, tp, bg string) (queue.NewJob, *wire.ErrorBody) {
	cfg, ok := m.config(queueName)
	if !ok {
		return queue.NewJob{}, enqueueError("Queue '" + queueName + "' not found: declare it under queues: in the engine config, or with " + fnQueueDefine)
	}
	if functionID == "" {
		return queue.NewJob{}, enqueueError("function_id is required")
	}
	j := queue.NewJob{ID: id, Queue: queueName, FunctionID: functionID, Data: data, Traceparent: tp, Baggage: bg,
		VisibleAt: time.Now().Add(time.Duration(cfg.DelayMS) * time.Millisecond)}
	if j.ID == "" {
		j.ID = newJobID()
	}
	if cfg.DedupField != "" {
		if k, ok := groupOf(data, cfg.DedupField); ok {
			j.DedupKey = "field:" + k
		}
	}
	if j.DedupKey == "" && id != "" {
		// A producer-chosen receipt id is remembered for the window too,
		// not only while its job is stored.
		j.DedupKey = "receipt:" + id
	}
	if j.DedupKey != "" {
		j.DedupUntil = time.Now().Add(time.Duration(cfg.DedupWindowMS) * time.Millisecond)
	}
	if cfg.Type == "fifo" {
		g, ok := groupOf(data, cfg.MessageGroupField)
		if !ok {
			return j, enqueueError("FIFO queue '" + queueName + "' requires field '" + cfg.MessageGroupField + "' in data, and it must not be null")
		}
		j.Group = "g:" + g // never empty: the store orders non-empty groups only
	}
	return j, nil
}

// groupOf returns the message group: the field's JSON text (strings
// unquoted). Missing or null is no group.
func groupOf(data []byte, field string) (string, bool) {
	var obj map[string]jsontext.Value
	if err := json.Unmarshal(data, &obj, lenient); err != nil {
		return "", false
	}
	v, ok := obj[field]
	if !ok || string(v) == "null" {
		return "", false
	}
	var s string
	if v.Kind() == '"' && json.Unmarshal(v, &s) == nil {
		return s, true
	}
	return string(v), true
}

// put stores one job and wakes its dispatcher. It returns the receipt id:
// the job's, or that of the earlier job it duplicates.
func (m *queueManager) put(ctx context.Context, j queue.NewJob) (string, *wire.ErrorBody) {
	s, err := m.open()
	if err != nil {
		return "", enqueueError("queue store unavailable: " + err.Error())
	}
	if m.e.cluster != nil {
		// JetStream retries a write while its stream has no leader: bound
		// it, so that an enqueue during a long election or without a
		// majority answers enqueue_error instead of waiting on.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, clusterEnqueueTimeout)
		defer cancel()
	}
	d, hd := m.handoff(&j)
	ids, err := s.Enqueue(ctx, []queue.NewJob{j})
	if err != nil {
		m.stored(d, hd, j, err)
		return "", enqueueError("job not stored: " + err.Error())
	}
	m.stored(d, hd, j, nil)
	return ids[0], nil
}

// putAsync is put for a store that takes writes without waiting: done
// gets the receipt (or the error) after the commit. On success it runs on
// the store's writer goroutine and may write its answer into batch
// (flushed after the commit's callbacks); batch is nil on failure.
func (m *queueManager) putAsync(ctx context.Context, a queue.Async, j queue.NewJob, done func(id string, errBody *wire.ErrorBody, batch *wsconn.Batch)) {
	d, hd := m.handoff(&j)
	a.EnqueueAsync(ctx, []queue.NewJob{j}, func(ids []string, err error) {
		m.stored(d, hd, j, err)
		if err != nil {
			done("", enqueueError("job not stored: "+err.Error()), nil)
			return
		}
		done(ids[0], nil, &m.replies)
	})
}

// handoff decides the direct hand-off: a standard queue with nothing
// ready and a free slot gets the job stored already leased and delivered
// right after the commit, saving a lease write and a dispatcher round. It
// returns the job's dispatcher (nil if none yet) and whether the job was
// handed off (slot reserved, j.Leased set).
func (m *queueManager) handoff(j *queue.NewJob) (*dispatcher, bool) {
	m.mu.Lock()
	d := m.disp[j.Queue]
	cfg, _ := m.configLocked(j.Queue)
	m.mu.Unlock()
	if d == nil || j.DedupKey != "" || j.Group != "" || j.VisibleAt.After(time.Now()) || m.ctx.Err() != nil {
		return d, false
	}
	if cfg.Type == "standard" && d.drained() && (m.e.cluster == nil || m.e.servesLocally(j.FunctionID)) && d.reserve(cfg.Concurrency) {
		j.Leased = true
		return d, true
	}
	return d, false
}

// stored follows up a job's commit (err nil) or its failure: a handed-off
// job goes to its dispatcher (its slot freed on failure), any other wakes
// the dispatcher. It never blocks.
func (m *queueManager) stored(d *dispatcher, handed bool, j queue.NewJob, err error) {
	switch {
	case handed && err != nil:
		d.unreserve()
	case handed:
		// The dispatcher's goroutine delivers it. At shutdown it is
		// leased (in memory for a standard queue, written for fifo) and
		// ready again in the store after the restart.
		d.hand(queue.Job{ID: j.ID, Queue: j.Queue, FunctionID: j.FunctionID, Data: j.Data,
			Traceparent: j.Traceparent, Baggage: j.Baggage, Attempts: 1, EnqueuedAt: time.Now()})
	case err != nil:
	case d != nil:
		d.dirty()
	default:
		m.wake(j.Queue)
	}
}

// newJobID is a receipt id: a UUID of version 7, whose time-ordered bytes
// make the store's id index grow at its end, as its table does (random
// v4 ids touched a random index page per insert and per ack: a WAL page
// write each).
func newJobID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return invocation.NewID()
	}
	return id.String()
}

func receipt(id string) jsontext.Value {
	b := make([]byte, 0, len(id)+24)
	b = append(b, `{"messageReceiptId":`...)
	b, err := jsontext.AppendQuote(b, id)
	if err != nil { // invalid UTF-8: the slow path replaces it (json v2 refuses it by default)
		b, _ = json.Marshal(map[string]string{"messageReceiptId": id}, jsontext.AllowInvalidUTF8(true))
		return b
	}
	return append(b, '}')
}

// enqueueFromWorker serves invokefunction with action enqueue: the answer
// {messageReceiptId} is sent only once the job is committed.
func (e *Engine) enqueueFromWorker(w *workerConn, m *wire.Message) {
	// m is the reader's message, reused for the next frame: copy what the
	// goroutine below needs.
	callerID, fnID, tp, bg := m.InvocationID, m.FunctionID, m.Traceparent, m.Baggage
	answer := func(res invocation.Result) {
		if callerID != "" {
			w.reply(callerID, fnID, res)
		}
	}
	if ns := nsOf(m.Namespace); ns != "" {
		// Jobs name their function without a namespace: a job for a
		// namespaced function would wait forever for it in default.
		answer(invocation.Result{Err: enqueueError("queues serve the default namespace only; " + quote(fnID) +
			" was enqueued for namespace " + quote(ns))})
		return
	}
	// m.Data points into the reader's buffer: copy before going async.
	j, errBody := e.queues.prepare(m.Action.Queue, fnID, append([]byte(nil), wire.DataOrNull(m.Data)...), "", tp, bg)
	if errBody != nil {
		answer(invocation.Result{Err: errBody})
		return
	}
	qm := e.queues
	select {
	case qm.sem <- struct{}{}:
	case <-e.ctx.Done():
		answer(invocation.Result{Err: enqueueError("engine shutting down")})
		return
	}
	s, err := qm.open()
	if err != nil {
		<-qm.sem
		answer(invocation.Result{Err: enqueueError("queue store unavailable: " + err.Error())})
		return
	}
	// The answer is written by the commit's callback (no goroutine waits),
	// unless a write could block there (no per-worker write budget).
	if a, ok := s.(queue.Async); ok && e.cfg.MaxPendingBytesPerWorker > 0 {
		qm.putAsync(e.ctx, a, j, func(id string, errBody *wire.ErrorBody, batch *wsconn.Batch) {
			<-qm.sem
			if errBody != nil {
				answer(invocation.Result{Err: errBody})
				return
			}
			answer(invocation.Result{Value: receipt(id), Traceparent: tp, Baggage: bg, Batch: batch})
		})
		return
	}
	go func() {
		defer func() { <-qm.sem }()
		id, errBody := qm.put(e.ctx, j)
		if errBody != nil {
			answer(invocation.Result{Err: errBody})
			return
		}
		answer(invocation.Result{Value: receipt(id), Traceparent: tp, Baggage: bg})
	}()
}

// --- delivery ---

type dispatcher struct {
	m        *queueManager
	key      string
	wake     chan struct{}
	inflight atomic.Int64
	// gen counts the times jobs became ready in the store (retries,
	// redrive, unpark, enqueues that were not handed off); seen is gen as
	// it was before the last lease that found no more ready jobs. Equal:
	// the queue is drained, a new job may skip the store's queue, and a
	// settled delivery need not look in the store.
	gen, seen atomic.Uint64
	// handedMu guards handed: jobs handed off at enqueue (stored leased,
	// slot reserved), waiting for the dispatcher's goroutine.
	handedMu sync.Mutex
	handed   []queue.Job
	// batch defers the dispatcher's writes to a consumer's connection to
	// the end of its round (dispatcher goroutine only).
	batch wsconn.Batch
}

func (d *dispatcher) drained() bool { return d.gen.Load() == d.seen.Load() }

// hand passes a job stored leased at enqueue to the dispatcher.
func (d *dispatcher) hand(j queue.Job) {
	d.handedMu.Lock()
	d.handed = append(d.handed, j)
	d.handedMu.Unlock()
	d.poke()
}

// takeHanded returns the jobs handed off since the last call.
func (d *dispatcher) takeHanded(buf []queue.Job) []queue.Job {
	d.handedMu.Lock()
	buf = append(buf[:0], d.handed...)
	clear(d.handed)
	d.handed = d.handed[:0]
	d.handedMu.Unlock()
	return buf
}

// poke wakes the dispatcher after a delivery settled.
func (d *dispatcher) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// dirty wakes the dispatcher because jobs became ready in the store.
func (d *dispatcher) dirty() {
	d.gen.Add(1)
	d.poke()
}

// reserve takes a delivery slot if one is free.
func (d *dispatcher) reserve(concurrency int) bool {
	for {
		n := d.inflight.Load()
		if n >= int64(concurrency) {
			return false
		}
		if d.inflight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (d *dispatcher) unreserve() {
	d.inflight.Add(-1)
	d.poke()
}

func (d *dispatcher) run() {
	defer d.m.wg.Done()
	m := d.m
	ctx := m.ctx
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var handed []queue.Job
	// look: the store may hold jobs ready for us (start, something made
	// jobs ready, a delayed job's time came, a lease filled every slot).
	look := true
	for ctx.Err() == nil {
		cfg, ok := m.config(d.key)
		if !ok {
			return
		}
		m.mu.Lock()
		s := m.store
		m.mu.Unlock()
		handed = d.takeHanded(handed)
		for i := range handed {
			d.deliverReserved(ctx, s, handed[i], cfg)
		}
		clear(handed)
		inflight := int(d.inflight.Load())
		free := cfg.Concurrency - inflight
		// A standard queue with jobs in flight waits until a quarter of its
		// slots are free: fewer, larger leases (each is a store write).
		if cfg.Type != "fifo" && inflight > 0 && free < max(1, cfg.Concurrency/4) {
			free = 0
		}
		// Fifo: a settled job may unblock its group's next one. A cluster
		// node looks on every wake-up, as before: other nodes' jobs and
		// registrations reach it only through watchers.
		if !look && (cfg.Type == "fifo" || m.e.cluster != nil || !d.drained()) {
			look = true
		}
		if free > 0 && look {
			now := time.Now()
			opts := queue.LeaseOpts{Max: free, FIFO: cfg.Type == "fifo"}
			if m.e.cluster != nil {
				opts.Serves = m.e.servesLocally
			}
			gen := d.gen.Load()
			d.batch.Flush() // deliveries so far go out before the store round trip
			jobs, err := s.Lease(ctx, d.key, now, opts)
			if err != nil {
				d.batch.Flush()
				if ctx.Err() == nil {
					m.log.Error("lease failed", "queue", d.key, "err", err)
					if !sleepCtx(ctx, time.Second) {
						return
					}
				}
				continue
			}
			for i := range jobs {
				d.deliver(ctx, s, jobs[i], cfg)
			}
			if len(jobs) == free {
				continue // there may be more
			}
			// Nothing more is ready: settled deliveries need not look again
			// until something makes jobs ready (dirty) or the timer fires.
			d.seen.Store(gen)
			look = false
			// Sleep until the next delayed job, if any comes later. With jobs
			// leased, their completion wakes the loop, which asks then.
			if len(jobs) > 0 {
				look = true
				goto wait
			}
			var wait time.Duration
			if next, ok, err := s.NextVisible(ctx, d.key); err == nil && ok {
				if wait = time.Until(next); wait <= 0 && m.e.cluster != nil {
					// Ready jobs this node does not serve: look again in a
					// second in case a wake-up was missed (a registration
					// racing the lease, a watcher event arriving late).
					wait = time.Second
				}
			}
			// A cluster node learns of other nodes' jobs only through
			// watchers: an idle dispatcher also looks every few seconds,
			// so a missed event delays a job, never strands it.
			if m.e.cluster != nil && (wait <= 0 || wait > clusterRecheck) {
				wait = clusterRecheck
			}
			if wait > 0 {
				timer.Reset(wait)
			}
		}
	wait:
		d.batch.Flush()
		select {
		case <-ctx.Done():
		case <-d.wake:
		case <-timer.C:
			look = true
		}
		// A wake-up leaves the timer armed. It stands for the next delayed
		// job: a wake-up that makes no look (nothing new is ready, e.g. a
		// settled delivery or the poke of a dispatcher's creation) used to
		// stop it, and that job then waited until some other job was
		// enqueued. A look that finds nothing re-arms it for the next job;
		// a stale firing only makes one more look. (Go >= 1.23 timers:
		// Reset discards a value not yet received.)
	}
	d.batch.Flush()
}

// clusterRecheck bounds how long an idle cluster dispatcher trusts its
// watchers alone.
const clusterRecheck = 2 * time.Second

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// deliver invokes the job's function; its answer settles the job.
func (d *dispatcher) deliver(ctx context.Context, s queue.Store, j queue.Job, cfg QueueConfig) {
	if _, ok := d.m.e.reg.Function(j.FunctionID); !ok {
		d.park(ctx, s, j)
		return
	}
	d.inflight.Add(1)
	d.invoke(s, j, cfg)
}

// deliverReserved is deliver for a job handed off at enqueue, whose slot is
// already reserved.
func (d *dispatcher) deliverReserved(ctx context.Context, s queue.Store, j queue.Job, cfg QueueConfig) {
	if _, ok := d.m.e.reg.Function(j.FunctionID); !ok {
		d.unreserve()
		d.park(ctx, s, j)
		return
	}
	d.invoke(s, j, cfg)
}

// invoke calls the job's function; its slot is taken. It runs on the
// dispatcher's goroutine (the call is written into d.batch).
func (d *dispatcher) invoke(s queue.Store, j queue.Job, cfg QueueConfig) {
	m := d.m
	m.wg.Add(1)
	var settled atomic.Bool
	a, _ := s.(queue.Async)
	settle := func(res invocation.Result) {
		if !settled.CompareAndSwap(false, true) {
			return
		}
		if res.Err == nil && a != nil {
			// Success, the common case: the ack joins the next group commit
			// and the slot is free at once; nobody waits for the commit. A
			// crash before it only delivers the job again (at-least-once),
			// and the job stays leased meanwhile, so no lease hands it out.
			a.AckAsync(context.Background(), j.ID, func(err error) {
				if err != nil && !errors.Is(err, queue.ErrClosed) {
					m.log.Error("recording a delivery failed; the job is delivered again after restart", "queue", d.key, "job", j.ID, "err", err)
				}
				m.wg.Done()
			})
			// The dispatcher leases again once a quarter of the slots are
			// free (see run): wake it then, not for every job.
			if n := d.inflight.Add(-1); cfg.Type == "fifo" || n <= int64(cfg.Concurrency-max(1, cfg.Concurrency/4)) {
				d.poke()
			}
			return
		}
		go d.settle(s, j, cfg, res)
	}
	timeout := time.AfterFunc(time.Duration(cfg.VisibilityTimeoutMS)*time.Millisecond, func() {
		settle(invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeTimeout,
			Message: "no answer within the queue's visibility_timeout_ms (" + strconv.FormatInt(cfg.VisibilityTimeoutMS, 10) + ")"}})
	})
	// MinTimeout: a visibility timeout longer than the engine's
	// invocation_timeout is the queue's to choose.
	req := &invocation.Request{FunctionID: j.FunctionID, Data: j.Data, Traceparent: j.Traceparent, Baggage: j.Baggage,
		MinTimeout: time.Duration(cfg.VisibilityTimeoutMS) * time.Millisecond, Batch: &d.batch}
	m.e.inv.Invoke(req, func(res invocation.Result) {
		timeout.Stop()
		res.Batch = nil // settled on another goroutine
		settle(res)
	})
}

func (d *dispatcher) park(ctx context.Context, s queue.Store, j queue.Job) {
	if err := s.Park(ctx, j.ID); err != nil {
		d.m.log.Debug("park failed", "queue", d.key, "job", j.ID, "err", err)
		return
	}
	n, _ := s.ParkFunction(ctx, d.key, j.FunctionID) // the rest of its backlog too
	d.m.log.Info("job waits for its function to register", "queue", d.key, "function_id", j.FunctionID, "job", j.ID, "also_parked", n)
	// The function may have registered between the check and the park.
	if _, ok := d.m.e.reg.Function(j.FunctionID); ok {
		d.m.functionsChanged()
	}
}

// settle records the outcome of one delivery in the store.
func (d *dispatcher) settle(s queue.Store, j queue.Job, cfg QueueConfig, res invocation.Result) {
	m := d.m
	defer func() {
		d.inflight.Add(-1)
		d.poke()
		m.wg.Done()
	}()
	ctx := context.Background()
	if m.e.cluster != nil {
		// JetStream retries a write while its stream is between leaders:
		// bound it. A lease left in place by a settle that gave up is made
		// ready again by the store (an orphaned lease).
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, clusterSettleTimeout)
		defer cancel()
	}
	var err error
	switch {
	case res.Err == nil:
		err = s.Ack(ctx, j.ID)
	case res.Err.Code == wire.CodeInvocationStopped && m.ctx.Err() != nil:
		// The engine is shutting down: not the job's fault.
		err = s.Release(ctx, j.ID)
	case res.Err.Code == wire.CodeFunctionNotFound:
		// Unregistered between the check and the call: wait, no attempt spent.
		if err = s.Park(ctx, j.ID); err == nil {
			if _, ok := m.e.reg.Function(j.FunctionID); ok {
				m.functionsChanged()
			}
		}
	default:
		msg := res.Err.Code + ": " + res.Err.Message
		if j.Attempts >= cfg.MaxRetries {
			err = s.Bury(ctx, j.ID, msg, time.Now())
			m.log.Warn("job moved to the dead-letter queue", "queue", d.key, "function_id", j.FunctionID, "job", j.ID, "attempts", j.Attempts, "err", msg)
		} else {
			backoff := retryBackoff(cfg.BackoffMS, j.Attempts)
			err = s.Nack(ctx, j.ID, time.Now().Add(backoff), msg)
			m.log.Debug("job failed; retrying", "queue", d.key, "job", j.ID, "attempt", j.Attempts, "backoff", backoff, "err", msg)
			if err == nil {
				time.AfterFunc(backoff, d.dirty)
			}
		}
	}
	if err != nil && !errors.Is(err, queue.ErrClosed) {
		again := "after restart"
		if m.e.cluster != nil {
			again = "once its lease is found orphaned (seconds)"
		}
		m.log.Error("recording a delivery failed; the job is delivered again "+again, "queue", d.key, "job", j.ID, "err", err)
	}
}

// retryBackoff is backoff_ms × 2^(attempt−1), capped at a day.
func retryBackoff(baseMS int64, attempt int) time.Duration {
	const maxBackoff = 24 * time.Hour
	d := time.Duration(baseMS) * time.Millisecond
	if d <= 0 {
		return 0
	}
	for i := 1; i < attempt; i++ {
		d *= 2
		if d >= maxBackoff || d <= 0 {
			return maxBackoff
		}
	}
	return d
}

// --- functions ---

func (e *Engine) registerQueueBuiltins() {
	e.addBuiltin(fnQueueEnqueue, builtin(e.queueEnqueueFn), true)
	e.addBuiltin(fnQueueDefine, builtin(e.queueDefineFn), true)
	e.addBuiltin(fnQueueListTopics, builtin(e.queueListTopicsFn), true)
	e.addBuiltin(fnQueueTopicStats, builtin(e.queueTopicStatsFn), true)
	e.addBuiltin(fnQueueDLQTopics, builtin(e.queueDLQTopicsFn), true)
	e.addBuiltin(fnQueueDLQMessages, builtin(e.queueDLQMessagesFn), true)
	e.addBuiltin(fnQueueRedrive, builtin(e.queueRedriveFn), true)
	e.addBuiltin(fnQueueRedriveMessage, builtin(e.queueRedriveMessageFn), true)
	e.addBuiltin(fnQueueDiscardMessage, builtin(e.queueDiscardMessageFn), true)
	e.addBuiltin(fnDurablePublish, builtin(e.durablePublishFn), true)
	e.addEngineTriggerType(triggerTypeDurableSub, "Durable topic subscription: each subscribed function gets every message published with "+fnDurablePublish, &durableSubProvider{e: e})
}

type queueEnqueueInput struct {
	Queue       string         `json:"queue"`
	FunctionID  string         `json:"function_id"`
	Data        jsontext.Value `json:"data"`
	ReceiptID   string         `json:"messageReceiptId"`
	Traceparent string         `json:"traceparent"`
	Baggage     string         `json:"baggage"`
}

// queueEnqueueFn is engine::queue::enqueue (the provider function upstream's
// engine calls for TriggerAction.Enqueue). A repeated messageReceiptId
// stores no second job.
func (e *Engine) queueEnqueueFn(ctx context.Context, _ *invocation.Request, in queueEnqueueInput) (any, *wire.ErrorBody) {
	if in.Queue == "" {
		in.Queue = defaultQueueName
	}
	j, errBody := e.queues.prepare(in.Queue, in.FunctionID, append([]byte(nil), wire.DataOrNull(in.Data)...), in.ReceiptID, in.Traceparent, in.Baggage)
	if errBody != nil {
		return nil, errBody
	}
	id, errBody := e.queues.put(ctx, j)
	if errBody != nil {
		return nil, errBody
	}
	return map[string]string{"messageReceiptId": id}, nil
}

type queueDefineInput struct {
	Name  string `json:"name"`
	Queue string `json:"queue"`
	QueueConfig
	Config *QueueConfig `json:"config"`
}

// queueDefineFn is queue::define: declare (or redefine) a named queue at run
// time. The definition is stored and outlives a restart; a queue declared
// in the engine config cannot be changed this way.
func (e *Engine) queueDefineFn(ctx context.Context, req *invocation.Request, _ struct{}) (any, *wire.ErrorBody) {
	in := queueDefineInput{QueueConfig: DefaultQueueConfig()}
	if len(req.Data) > 0 {
		if err := json.Unmarshal(req.Data, &in, lenient); err != nil {
			return nil, &wire.ErrorBody{Code: wire.CodeInvalidArguments, Message: "invalid input for " + fnQueueDefine + ": " + err.Error()}
		}
	}
	name := in.Name
	if name == "" {
		name = in.Queue
	}
	cfg := in.QueueConfig
	if in.Config != nil {
		cfg = DefaultQueueConfig()
		if err := json.Unmarshal(req.Data, &struct {
			Config *QueueConfig `json:"config"`
		}{&cfg}, lenient); err != nil {
			return nil, &wire.ErrorBody{Code: wire.CodeInvalidArguments, Message: err.Error()}
		}
	}
	if err := cfg.Validate(name); err != nil {
		return nil, &wire.ErrorBody{Code: wire.CodeInvalidArguments, Message: err.Error()}
	}
	m := e.queues
	m.mu.Lock()
	if m.fromCfg[name] {
		same := m.defs[name] == cfg
		m.mu.Unlock()
		if same {
			return map[string]any{"name": name, "config": cfg, "created": false}, nil
		}
		return nil, &wire.ErrorBody{Code: wire.CodeInvalidArguments, Message: "queue '" + name + "' is declared in the engine config; change it there"}
	}
	m.mu.Unlock()
	s, err := m.open()
	if err != nil {
		return nil, &wire.ErrorBody{Code: wire.CodeEnqueueError, Message: "queue store unavailable: " + err.Error()}
	}
	raw, _ := json.Marshal(cfg)
	if err := s.SaveQueue(ctx, name, raw); err != nil {
		return nil, &wire.ErrorBody{Code: wire.CodeEnqueueError, Message: "queue definition not stored: " + err.Error()}
	}
	m.mu.Lock()
	_, existed := m.defs[name]
	if !existed && len(m.defs) >= maxQueues {
		m.mu.Unlock()
		return nil, &wire.ErrorBody{Code: wire.CodeInvalidArguments, Message: "too many queues: at most " + strconv.Itoa(maxQueues) + " may be declared"}
	}
	m.defs[name] = cfg
	d := m.dispatcherLocked(name)
	m.mu.Unlock()
	if d != nil {
		d.dirty()
	}
	return map[string]any{"name": name, "config": cfg, "created": !existed}, nil
}

type topicInfo struct {
	Name            string `json:"name"`
	BrokerType      string `json:"broker_type"`
	SubscriberCount int    `json:"subscriber_count"`
}

// queueKeys lists every queue and topic the engine knows, by display name
// and store key.
func (e *Engine) queueKeys(ctx context.Context) []topicInfo {
	m := e.queues
	seen := map[string]bool{}
	var out []topicInfo
	m.mu.Lock()
	for name, cfg := range m.defs {
		out = append(out, topicInfo{Name: name, BrokerType: "function_queue", SubscriberCount: cfg.Concurrency})
		seen[name] = true
	}
	s := m.store
	m.mu.Unlock()
	subs := e.topicSubscribers()
	for topic, fns := range subs {
		out = append(out, topicInfo{Name: topic, BrokerType: "topic", SubscriberCount: len(fns)})
		seen[topicQueuePrefix+topic] = true
	}
	if s != nil {
		if keys, err := s.Queues(ctx); err == nil {
			for _, k := range keys {
				if seen[k] {
					continue
				}
				if topic, ok := cutPrefix(k, topicQueuePrefix); ok {
					out = append(out, topicInfo{Name: topic, BrokerType: "topic"})
				} else {
					out = append(out, topicInfo{Name: k, BrokerType: "function_queue"})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (e *Engine) queueListTopicsFn(ctx context.Context, _ *invocation.Request, _ struct{}) ([]topicInfo, *wire.ErrorBody) {
	return e.queueKeys(ctx), nil
}

// storeKey resolves a display name: a named queue, else a durable topic.
func (e *Engine) storeKey(name string) string {
	if _, ok := e.queues.config(name); ok {
		return name
	}
	return topicQueuePrefix + name
}

type topicInput struct {
	Topic string `json:"topic"`
	Queue string `json:"queue"`
}

func (in topicInput) name() string {
	if in.Topic != "" {
		return in.Topic
	}
	return in.Queue
}

type topicStats struct {
	Depth         int64        `json:"depth"`
	ConsumerCount int          `json:"consumer_count"`
	DLQDepth      int64        `json:"dlq_depth"`
	Config        *QueueConfig `json:"config"`
}

func (e *Engine) queueTopicStatsFn(ctx context.Context, _ *invocation.Request, in topicInput) (*topicStats, *wire.ErrorBody) {
	name := in.name()
	if name == "" {
		return nil, &wire.ErrorBody{Code: "topic_required", Message: "topic is required"}
	}
	key := e.storeKey(name)
	out := &topicStats{}
	if cfg, ok := e.queues.config(key); ok {
		out.Config = &cfg
		out.ConsumerCount = cfg.Concurrency
		if key != name {
			out.ConsumerCount = len(e.topicSubscribers()[name])
		}
	}
	if s := e.queues.current(); s != nil {
		st, err := s.Stats(ctx, key)
		if err != nil {
			return nil, &wire.ErrorBody{Code: "topic_stats_failed", Message: "Failed to get topic stats: " + err.Error()}
		}
		out.Depth, out.DLQDepth = st.Pending, st.Dead
	}
	return out, nil
}

func (m *queueManager) current() queue.Store {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.store
}

type dlqTopic struct {
	Topic        string `json:"topic"`
	BrokerType   string `json:"broker_type"`
	MessageCount int64  `json:"message_count"`
}

func (e *Engine) queueDLQTopicsFn(ctx context.Context, _ *invocation.Request, _ struct{}) ([]dlqTopic, *wire.ErrorBody) {
	out := []dlqTopic{}
	s := e.queues.current()
	for _, t := range e.queueKeys(ctx) {
		row := dlqTopic{Topic: t.Name, BrokerType: t.BrokerType}
		if s != nil {
			key := t.Name
			if t.BrokerType == "topic" {
				key = topicQueuePrefix + t.Name
			}
			if st, err := s.Stats(ctx, key); err == nil {
				row.MessageCount = st.Dead
			}
		}
		out = append(out, row)
	}
	return out, nil
}

type dlqMessagesInput struct {
	topicInput
	Offset *int `json:"offset"`
	Limit  *int `json:"limit"`
}

type dlqMessage struct {
	ID         string         `json:"id"`
	FunctionID string         `json:"function_id"`
	Payload    jsontext.Value `json:"payload"`
	Error      string         `json:"error"`
	FailedAt   int64          `json:"failed_at"`
	Retries    int            `json:"retries"`
	SizeBytes  int            `json:"size_bytes"`
}

func (e *Engine) queueDLQMessagesFn(ctx context.Context, _ *invocation.Request, in dlqMessagesInput) ([]dlqMessage, *wire.ErrorBody) {
	name := in.name()
	if name == "" {
		return nil, &wire.ErrorBody{Code: "topic_required", Message: "topic is required"}
	}
	offset, limit := 0, 50
	if in.Offset != nil && *in.Offset > 0 {
		offset = *in.Offset
	}
	if in.Limit != nil && *in.Limit >= 0 {
		limit = min(*in.Limit, 1000)
	}
	out := []dlqMessage{}
	s := e.queues.current()
	if s == nil {
		return out, nil
	}
	dead, err := s.Dead(ctx, e.storeKey(name), offset, limit)
	if err != nil {
		return nil, &wire.ErrorBody{Code: "dlq_messages_failed", Message: "Failed to browse DLQ messages: " + err.Error()}
	}
	for _, d := range dead {
		out = append(out, dlqMessage{ID: d.ID, FunctionID: d.FunctionID, Payload: wire.DataOrNull(d.Data), Error: d.Error,
			FailedAt: d.FailedAt.Unix(), Retries: d.Attempts, SizeBytes: len(d.Data)})
	}
	return out, nil
}

type redriveInput struct {
	Queue     string `json:"queue"`
	Topic     string `json:"topic"`
	MessageID string `json:"message_id"`
}

func (in redriveInput) name() string {
	if in.Queue != "" {
		return in.Queue
	}
	return in.Topic
}

func (e *Engine) queueRedriveFn(ctx context.Context, _ *invocation.Request, in redriveInput) (any, *wire.ErrorBody) {
	name := in.name()
	if name == "" {
		return nil, &wire.ErrorBody{Code: "queue_not_set", Message: "Queue name is required"}
	}
	n := 0
	if s := e.queues.current(); s != nil {
		key := e.storeKey(name)
		var err error
		if n, err = s.Redrive(ctx, key, time.Now()); err != nil {
			return nil, &wire.ErrorBody{Code: "redrive_failed", Message: fmt.Sprintf("Failed to redrive DLQ for queue '%s': %v", name, err)}
		}
		e.queues.wake(key)
	}
	e.queues.log.Info("dead-letter queue redriven", "queue", name, "redriven", n)
	return map[string]any{"queue": name, "redriven": n}, nil
}

func (e *Engine) queueRedriveMessageFn(ctx context.Context, _ *invocation.Request, in redriveInput) (any, *wire.ErrorBody) {
	return e.queueOneDead(ctx, in, "redrive_message_failed", func(s queue.Store, key string) (bool, error) {
		ok, err := s.RedriveOne(ctx, key, in.MessageID, time.Now())
		if ok {
			e.queues.wake(key)
		}
		return ok, err
	})
}

func (e *Engine) queueDiscardMessageFn(ctx context.Context, _ *invocation.Request, in redriveInput) (any, *wire.ErrorBody) {
	return e.queueOneDead(ctx, in, "discard_message_failed", func(s queue.Store, key string) (bool, error) {
		return s.Discard(ctx, key, in.MessageID)
	})
}

func (e *Engine) queueOneDead(_ context.Context, in redriveInput, failCode string, op func(s queue.Store, key string) (bool, error)) (any, *wire.ErrorBody) {
	name := in.name()
	if name == "" {
		return nil, &wire.ErrorBody{Code: "queue_not_set", Message: "Queue name is required"}
	}
	if in.MessageID == "" {
		return nil, &wire.ErrorBody{Code: "message_id_not_set", Message: "Message ID is required"}
	}
	n := 0
	if s := e.queues.current(); s != nil {
		ok, err := op(s, e.storeKey(name))
		if err != nil {
			return nil, &wire.ErrorBody{Code: failCode, Message: fmt.Sprintf("DLQ message '%s' of queue '%s': %v", in.MessageID, name, err)}
		}
		if ok {
			n = 1
		}
	}
	return map[string]any{"queue": name, "message_id": in.MessageID, "redriven": n}, nil
}

// --- durable topics ---

type durablePublishInput struct {
	Topic string         `json:"topic"`
	Data  jsontext.Value `json:"data"`
}

// durablePublishFn is iii::durable::publish: one job per distinct function
// subscribed to the topic, committed together.
func (e *Engine) durablePublishFn(ctx context.Context, req *invocation.Request, in durablePublishInput) (any, *wire.ErrorBody) {
	if in.Topic == "" {
		return nil, &wire.ErrorBody{Code: "topic_not_set", Message: "Topic is not set"}
	}
	fns := e.topicSubscribers()[in.Topic]
	if len(fns) == 0 {
		return nil, nil
	}
	key := topicQueuePrefix + in.Topic
	data := append([]byte(nil), wire.DataOrNull(in.Data)...)
	cfg, _ := e.queues.config(key)
	jobs := make([]queue.NewJob, 0, len(fns))
	for _, fn := range fns {
		jobs = append(jobs, queue.NewJob{ID: newJobID(), Queue: key, FunctionID: fn, Data: data,
			Traceparent: req.Traceparent, Baggage: req.Baggage, VisibleAt: time.Now().Add(time.Duration(cfg.DelayMS) * time.Millisecond)})
	}
	s, err := e.queues.open()
	if err != nil {
		return nil, enqueueError("queue store unavailable: " + err.Error())
	}
	if _, err := s.Enqueue(ctx, jobs); err != nil {
		return nil, enqueueError("message not stored: " + err.Error())
	}
	e.queues.wake(key)
	return nil, nil
}

type durableSubConfig struct {
	Topic       string         `json:"topic"`
	QueueConfig jsontext.Value `json:"queue_config"`
}

// subscriberQueueConfig is the trigger's optional queue_config (upstream's
// camelCase names).
type subscriberQueueConfig struct {
	Type              *string `json:"type"`
	MaxRetries        *int    `json:"maxRetries"`
	Concurrency       *int    `json:"concurrency"`
	VisibilityTimeout *int64  `json:"visibilityTimeout"`
	DelaySeconds      *int64  `json:"delaySeconds"`
	BackoffDelayMS    *int64  `json:"backoffDelayMs"`
}

// topicSubscribers maps each topic to its distinct subscribed functions.
func (e *Engine) topicSubscribers() map[string][]string {
	out := map[string][]string{}
	seen := map[string]bool{}
	for _, t := range e.reg.Triggers(triggerTypeDurableSub) {
		if !t.Active {
			continue
		}
		var c durableSubConfig
		if json.Unmarshal(wire.DataOrNull(t.Config), &c, lenient) != nil || c.Topic == "" {
			continue
		}
		if k := c.Topic + "\x00" + t.FunctionID; !seen[k] {
			seen[k] = true
			out[c.Topic] = append(out[c.Topic], t.FunctionID)
		}
	}
	// In a cluster, the other live nodes' subscribers too: one job per
	// function however many nodes bind it (cluster_topics.go).
	for _, s := range e.remoteSubscriptions() {
		if k := s.Topic + "\x00" + s.FunctionID; !seen[k] {
			seen[k] = true
			out[s.Topic] = append(out[s.Topic], s.FunctionID)
		}
	}
	for _, fns := range out {
		sort.Strings(fns)
	}
	return out
}

// topicConfig is the queue config of a durable topic: the default queue's,
// overridden by the first subscriber trigger's queue_config (this node's
// bindings first, then the other nodes', in node name order).
func (e *Engine) topicConfig(topic string) QueueConfig {
	cfg := DefaultQueueConfig()
	for _, t := range e.reg.Triggers(triggerTypeDurableSub) {
		var c durableSubConfig
		if json.Unmarshal(wire.DataOrNull(t.Config), &c, lenient) != nil || c.Topic != topic || len(c.QueueConfig) == 0 {
			continue
		}
		if applySubscriberQueueConfig(&cfg, c.QueueConfig) {
			return cfg
		}
	}
	for _, s := range e.remoteSubscriptions() {
		if s.Topic == topic && len(s.QueueConfig) > 0 && applySubscriberQueueConfig(&cfg, s.QueueConfig) {
			return cfg
		}
	}
	return cfg
}

// applySubscriberQueueConfig overrides cfg with a subscriber's queue_config;
// false (cfg untouched) when it does not parse.
func applySubscriberQueueConfig(cfg *QueueConfig, raw jsontext.Value) bool {
	var q subscriberQueueConfig
	if json.Unmarshal(raw, &q, lenient) != nil {
		return false
	}
	if q.Type != nil && *q.Type == "standard" {
		cfg.Type = *q.Type
	}
	if q.MaxRetries != nil && *q.MaxRetries >= 0 {
		cfg.MaxRetries = *q.MaxRetries + 1 // upstream: retries after the first attempt
	}
	if q.Concurrency != nil && *q.Concurrency > 0 {
		cfg.Concurrency = *q.Concurrency
	}
	if q.VisibilityTimeout != nil && *q.VisibilityTimeout > 0 {
		cfg.VisibilityTimeoutMS = *q.VisibilityTimeout
	}
	if q.DelaySeconds != nil && *q.DelaySeconds > 0 {
		cfg.DelayMS = *q.DelaySeconds * 1000
	}
	if q.BackoffDelayMS != nil && *q.BackoffDelayMS >= 0 {
		cfg.BackoffMS = *q.BackoffDelayMS
	}
	return true
}
