package queue

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/natsnode"
)

// JetStream is a Store on a JetStream key-value bucket, shared by every
// engine of a cluster (replicated by JetStream: an acknowledged write is on
// a majority of the bucket's replicas).
//
// Each job is one key, j.<id>, holding the whole job (payload, state,
// attempts, visible time, lease owner). Every state change is a
// compare-and-set on the key's revision, so a job is leased by one engine at
// a time however many lease at once, and an outcome is recorded only by the
// engine holding the lease. Each store keeps an index of the jobs' metadata
// (no payloads), fed by its own writes and by a watcher on the bucket, to
// choose what to lease and to answer Stats, Dead, NextVisible and the like
// without a scan of the bucket; the index may trail other engines' writes
// by the watcher's latency, and every change is checked against the stored
// job, not the index. Its memory grows with the number of stored jobs.
//
// Leases carry the engine's node name: Recover makes ready only this node's
// leases (a node restarting under its stable name), and only the lease owner
// may Ack, Nack, Release, Park or Bury a job.
//
// Deduplication records are keys d.<queue>.<key>; run-time queue
// definitions q.<name>. Delete markers left by removed keys are purged
// after half an hour by a janitor, which also drops expired dedup records.
type JetStream struct {
	kv   atomic.Pointer[jsBucket] // swapped by tests only
	node string
	inst string // this instance, in the leases it takes (jsRecord.Inst)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	jobs     map[string]*jsMeta            // id → metadata
	queues   map[string]map[string]*jsMeta // queue → id → metadata
	tombs    map[string]uint64             // removed ids → revision of the removal
	watchRev uint64                        // last revision the watcher delivered
	notify   func(queue string, parked bool)

	suspects   map[string]jsSuspect // entries not found, skipped while confirmed
	confirming bool                 // the confirmer runs

	// Leases whose holder is unknown (jetstream_tend.go): held counts the
	// callers holding each job leased (Lease, Enqueue of a Leased job)
	// until they settle it; mine are the index's jobs leased by this
	// instance; orphans those the last tend found not held; forgotten the
	// jobs the index dropped as not found, read again later.
	held      map[string]int
	mine      map[string]*jsMeta
	orphans   map[string]jsOrphan
	forgotten map[string]*jsForgotten
}

// jsBucket holds the bucket handle.
type jsBucket struct{ jetstream.KeyValue }

func (s *JetStream) bucket() jetstream.KeyValue { return s.kv.Load().KeyValue }

func (s *JetStream) setBucket(kv jetstream.KeyValue) { s.kv.Store(&jsBucket{kv}) }

var _ Store = (*JetStream)(nil)

// JetStreamBucket is the bucket name the engine uses.
const JetStreamBucket = "sluice_queue"

// jsRecord is a stored job.
type jsRecord struct {
	Seq         int64          `json:"seq,omitzero"` // 0: the key's first revision
	ID          string         `json:"id"`
	Queue       string         `json:"q"`
	FunctionID  string         `json:"fn"`
	Group       string         `json:"grp,omitzero"`
	Data        jsontext.Value `json:"data,omitzero"`
	Traceparent string         `json:"tp,omitzero"`
	Baggage     string         `json:"bg,omitzero"`
	Attempts    int            `json:"att,omitzero"`
	EnqueuedAt  int64          `json:"enq"`
	State       int            `json:"st,omitzero"`
	VisibleAt   int64          `json:"vis,omitzero"`
	Err         string         `json:"err,omitzero"`
	FailedAt    int64          `json:"failed,omitzero"`
	Owner       string         `json:"owner,omitzero"`
	// Inst is the store instance (one engine process) that took the
	// lease: tend releases only its own, even if another process runs
	// under the same node name by mistake.
	Inst string `json:"inst,omitzero"`
}

// jsMeta is what the index keeps of a job.
type jsMeta struct {
	rev        uint64
	seq        int64
	id         string
	queue      string
	functionID string
	group      string
	state      int
	visibleAt  int64
	failedAt   int64
	owner      string
	inst       string
}

type jsDedup struct {
	ID    string `json:"id"`
	Until int64  `json:"until"`
}

var jsOpts = json.JoinOptions(jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))

// OpenJetStream creates (or reuses) the bucket with the given replica count
// and loads the index. node is this engine's stable node name (lease
// owner). In a cluster the bucket's creation is retried while JetStream
// elects its leaders, until ctx ends.
func OpenJetStream(ctx context.Context, js jetstream.JetStream, bucket, node string, replicas int) (*JetStream, error) {
	if replicas <= 0 {
		replicas = 1
	}
	kv, err := natsnode.KeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket: bucket, History: 1, Storage: jetstream.FileStorage, Replicas: replicas, Description: "sluice queue jobs",
	})
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	s := &JetStream{node: node, ctx: wctx, cancel: cancel,
		jobs: map[string]*jsMeta{}, queues: map[string]map[string]*jsMeta{}, tombs: map[string]uint64{},
		suspects: map[string]jsSuspect{}, held: map[string]int{}, mine: map[string]*jsMeta{},
		orphans: map[string]jsOrphan{}, forgotten: map[string]*jsForgotten{}, inst: newInstance()}
	s.setBucket(kv)
	w, err := kv.Watch(wctx, "j.>")
	if err != nil {
		cancel()
		return nil, fmt.Errorf("queue: watch jobs: %w", err)
	}
	// The initial values, up to the watcher's end-of-snapshot marker.
	for loaded := false; !loaded; {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				cancel()
				return nil, errors.New("queue: job watcher closed")
			}
			if e == nil {
				loaded = true
				break
			}
			s.watched(e, false)
		case <-ctx.Done():
			w.Stop()
			cancel()
			return nil, ctx.Err()
		}
	}
	s.wg.Add(3)
	go s.watch(w)
	go s.janitor()
	go s.tend(jsTendEvery)
	return s, nil
}

// Notify registers fn, called on the watcher's goroutine (it must not
// block) when another engine made jobs of queue ready, or parked jobs
// (parked true): the local dispatchers and unparker should look again.
func (s *JetStream) Notify(fn func(queue string, parked bool)) {
	s.mu.Lock()
	s.notify = fn
	s.mu.Unlock()
}

// NotifyQueues starts watching queue definitions: fn gets each definition
// saved from now on, by any engine (this one included).
func (s *JetStream) NotifyQueues(fn func(name string, def []byte)) {
	w, err := s.bucket().Watch(s.ctx, "q.*", jetstream.UpdatesOnly(), jetstream.IgnoreDeletes())
	if err != nil {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer natsnode.StopWatch(s.ctx, w)
		for {
			select {
			case <-s.ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue
				}
				if name, ok := decKey(strings.TrimPrefix(e.Key(), "q.")); ok {
					fn(name, slices.Clone(e.Value()))
				}
			}
		}
	}()
}

func (s *JetStream) watch(w jetstream.KeyWatcher) {
	defer s.wg.Done()
	defer natsnode.StopWatch(s.ctx, w)
	for {
		select {
		case <-s.ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e != nil {
				s.watched(e, true)
			}
		}
	}
}

// watched applies one change seen by the watcher.
func (s *JetStream) watched(e jetstream.KeyValueEntry, live bool) {
	id, ok := decKey(strings.TrimPrefix(e.Key(), "j."))
	var m *jsMeta
	if ok && e.Operation() == jetstream.KeyValuePut {
		var r jsRecord
		if json.Unmarshal(e.Value(), &r, jsOpts) != nil {
			return
		}
		m = metaOf(&r, e.Revision())
	}
	s.mu.Lock()
	if e.Revision() > s.watchRev {
		s.watchRev = e.Revision()
	}
	var fire func(string, bool)
	q := ""
	parked := false
	if ok && s.applyLocked(id, m, e.Revision()) && live && m != nil {
		fire, q, parked = s.notify, m.queue, m.state == stateParked
		if m.state != stateReady && !parked {
			fire = nil
		}
	}
	if len(s.tombs) > 1024 {
		for k, rev := range s.tombs {
			if rev <= s.watchRev {
				delete(s.tombs, k)
			}
		}
	}
	s.mu.Unlock()
	if fire != nil {
		fire(q, parked)
	}
}

func metaOf(r *jsRecord, rev uint64) *jsMeta {
	seq := r.Seq
	if seq == 0 {
		seq = int64(rev)
	}
	return &jsMeta{rev: rev, seq: seq, id: r.ID, queue: r.Queue, functionID: r.FunctionID, group: r.Group,
		state: r.State, visibleAt: r.VisibleAt, failedAt: r.FailedAt, owner: r.Owner, inst: r.Inst}
}

// applyLocked puts m (nil: the job is gone) in the index at revision rev,
// unless the index already holds a later revision of the job. It reports
// whether it changed anything.
func (s *JetStream) applyLocked(id string, m *jsMeta, rev uint64) bool {
	if t, ok := s.tombs[id]; ok && t >= rev {
		return false
	}
	old := s.jobs[id]
	if old != nil && old.rev >= rev {
		return false
	}
	if old != nil {
		if q := s.queues[old.queue]; q != nil {
			delete(q, id)
			if len(q) == 0 {
				delete(s.queues, old.queue)
			}
		}
		delete(s.jobs, id)
		delete(s.mine, id)
	}
	if m == nil {
		s.tombs[id] = rev
		return old != nil
	}
	delete(s.tombs, id)
	s.jobs[id] = m
	if m.state == stateLeased && m.owner == s.node && m.inst == s.inst {
		s.mine[id] = m
	}
	q := s.queues[m.queue]
	if q == nil {
		q = map[string]*jsMeta{}
		s.queues[m.queue] = q
	}
	q[id] = m
	return true
}

func encKey(s string) string { return "_" + base64.RawURLEncoding.EncodeToString([]byte(s)) }

func decKey(tok string) (string, bool) {
	if !strings.HasPrefix(tok, "_") {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(tok[1:])
	return string(b), err == nil
}

func jobKey(id string) string { return "j." + encKey(id) }

func jsConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || api.ErrorCode == 10164)
}

func (s *JetStream) check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return nil
}

// wrap turns errors of a store closed meanwhile into ErrClosed.
func (s *JetStream) wrap(err error) error {
	if err != nil && s.check() != nil {
		return ErrClosed
	}
	return err
}

// jsGoneConfirm is how long a job the index holds must stay not found
// before the index forgets it.
const jsGoneConfirm = time.Second

// jsPassConfirm bounds the re-reads one lease pass or dead-letter listing
// waits for, all candidates together: a job still not found then is
// skipped and confirmed in the background.
const jsPassConfirm = 200 * time.Millisecond

// jsPass is one call going through many jobs (a lease, a listing).
type jsPass struct{ until time.Time }

func newPass() *jsPass { return &jsPass{until: time.Now().Add(jsPassConfirm)} }

// jsSuspect is an index entry a read did not find, being confirmed.
type jsSuspect struct {
	m     *jsMeta
	since time.Time // the first miss
}

// get reads a job (nil: not stored, or skipped while confirmed). pass nil:
// the caller wants this job, and waits up to jsGoneConfirm for it.
func (s *JetStream) get(ctx context.Context, id string, pass *jsPass) (*jsRecord, uint64, error) {
	e, err := s.bucket().Get(ctx, jobKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		since := time.Now()
		s.mu.Lock()
		m := s.jobs[id]
		s.mu.Unlock()
		// A read can trail the write the index learnt the job from (seen
		// in a cluster: a job just stored, known from the watcher, not
		// found once and found by the next read). Forgetting it then
		// stranded it: the index ignores the watcher's copy of a write it
		// already has. So the job is read again until found, or until the
		// watcher brings newer news of it (its delete, usually), within
		// jsGoneConfirm; one still not found and unchanged is gone behind
		// the index's back (its delete marker purged while the watcher was
		// away) and forgotten. A pass waits only jsPassConfirm in all: a
		// purged marker brings no news, and each such entry would hold up
		// the jobs behind it for the whole second.
		deadline := since.Add(jsGoneConfirm)
		if pass != nil && pass.until.Before(deadline) {
			deadline = pass.until
		}
		for m != nil && errors.Is(err, jetstream.ErrKeyNotFound) && time.Now().Before(deadline) && natsnode.Backoff(ctx) {
			s.mu.Lock()
			changed := s.jobs[id] != m
			s.mu.Unlock()
			if changed {
				break
			}
			e, err = s.bucket().Get(ctx, jobKey(id))
		}
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			if m != nil && ctx.Err() != nil {
				return nil, 0, ctx.Err() // not confirmed gone
			}
			if m != nil && pass != nil {
				s.suspect(id, m, since)
				return nil, 0, nil
			}
			s.mu.Lock()
			if m != nil && s.jobs[id] == m {
				s.forgetLocked(id, m)
			}
			s.mu.Unlock()
			return nil, 0, nil
		}
	}
	if err != nil {
		return nil, 0, err
	}
	var r jsRecord
	if err := json.Unmarshal(e.Value(), &r, jsOpts); err != nil {
		return nil, 0, fmt.Errorf("queue: stored job %s: %w", id, err)
	}
	if r.Seq == 0 {
		r.Seq = int64(e.Revision())
	}
	return &r, e.Revision(), nil
}

// suspect marks index entry m of job id, not found since then, to be
// confirmed in the background; lease passes and listings skip it meanwhile.
func (s *JetStream) suspect(id string, m *jsMeta, since time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.jobs[id] != m || s.suspects[id].m == m {
		return
	}
	s.suspects[id] = jsSuspect{m: m, since: since}
	if !s.confirming {
		s.confirming = true
		s.wg.Add(1)
		go s.confirm()
	}
}

// suspectedLocked reports whether index entry m is being confirmed (s.mu
// held).
func (s *JetStream) suspectedLocked(m *jsMeta) bool {
	return len(s.suspects) > 0 && s.suspects[m.id].m == m
}

// confirm reads the suspects again every 50 ms until each is found (the
// index learns it; a ready job wakes the dispatchers, which skipped it),
// changed by other news, or not found for jsGoneConfirm (forgotten).
func (s *JetStream) confirm() {
	defer s.wg.Done()
	for natsnode.Backoff(s.ctx) {
		s.mu.Lock()
		var pending []string
		for id, sp := range s.suspects {
			if s.jobs[id] != sp.m {
				delete(s.suspects, id)
				continue
			}
			pending = append(pending, id)
		}
		if len(pending) == 0 {
			s.confirming = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		for _, id := range pending {
			if s.ctx.Err() != nil {
				return
			}
			s.confirmOne(id)
		}
	}
}

func (s *JetStream) confirmOne(id string) {
	s.mu.Lock()
	sp, ok := s.suspects[id]
	s.mu.Unlock()
	if !ok {
		return
	}
	at := time.Now()
	e, err := s.bucket().Get(s.ctx, jobKey(id))
	var m *jsMeta
	if err == nil {
		var r jsRecord
		if json.Unmarshal(e.Value(), &r, jsOpts) == nil {
			m = metaOf(&r, e.Revision())
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) || at.Sub(sp.since) < jsGoneConfirm {
		return // read again on the next round
	}
	s.mu.Lock()
	if s.suspects[id].m == sp.m {
		delete(s.suspects, id)
	}
	var fire func(string, bool)
	switch {
	case err != nil:
		if s.jobs[id] == sp.m {
			s.forgetLocked(id, sp.m)
		}
	case m != nil:
		s.applyLocked(id, m, m.rev)
		if cur := s.jobs[id]; cur != nil && cur.state == stateReady {
			fire, m = s.notify, cur
		}
	}
	s.mu.Unlock()
	if fire != nil {
		fire(m.queue, false)
	}
}

// mutate applies f to the stored job id (compare-and-set, retried on a
// conflict). f returns false to leave the job alone; remove deletes it.
// mutate reports whether it wrote.
func (s *JetStream) mutate(ctx context.Context, id string, f func(r *jsRecord) (write, remove bool)) (bool, error) {
	return s.mutateIn(ctx, nil, id, f)
}

// mutateIn is mutate within pass (nil: none).
func (s *JetStream) mutateIn(ctx context.Context, pass *jsPass, id string, f func(r *jsRecord) (write, remove bool)) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	var transient time.Time
	for {
		r, rev, err := s.get(ctx, id, pass)
		if err != nil || r == nil {
			return false, s.wrap(err)
		}
		write, remove := f(r)
		if !write {
			// What was just read is the stored job (from the stream's
			// leader): the index learns it now rather than from a watcher
			// that may trail (another node leased or took the job over).
			s.mu.Lock()
			s.applyLocked(id, metaOf(r, rev), rev)
			s.mu.Unlock()
			return false, nil
		}
		var nrev uint64
		var b []byte
		if remove {
			err = s.bucket().Delete(ctx, jobKey(id), jetstream.LastRevision(rev))
			if err == nil {
				nrev = rev + 1 // a lower bound: the marker's revision is later still
			}
		} else {
			if b, err = json.Marshal(r, jsOpts); err == nil {
				nrev, err = s.bucket().Update(ctx, jobKey(id), b, rev)
			}
		}
		if jsConflict(err) || natsnode.RetryTransient(ctx, err, &transient) {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			continue
		}
		if err != nil && ctx.Err() == nil {
			// A timeout does not say whether the write was applied: a
			// lease applied but reported failed left the job leased by
			// this live node, delivered by none.
			if landed, lrev := s.landed(ctx, id, rev, remove, b); landed {
				nrev, err = lrev, nil
			}
		}
		if err != nil {
			return false, s.wrap(err)
		}
		s.mu.Lock()
		if remove {
			s.applyLocked(id, nil, nrev)
		} else {
			s.applyLocked(id, metaOf(r, nrev), nrev)
		}
		delete(s.forgotten, id) // written: not to be read back in by tend
		s.mu.Unlock()
		return true, nil
	}
}

// landed reports whether a write of job id over revision rev that failed
// without an answer (a timeout) was applied after all: the job is gone
// (remove), or holds exactly the bytes written (b), at revision lrev.
func (s *JetStream) landed(ctx context.Context, id string, rev uint64, remove bool, b []byte) (ok bool, lrev uint64) {
	e, err := s.bucket().Get(ctx, jobKey(id))
	if remove {
		return errors.Is(err, jetstream.ErrKeyNotFound), rev + 1
	}
	if err != nil || e.Revision() <= rev || !bytes.Equal(e.Value(), b) {
		return false, 0
	}
	return true, e.Revision()
}

func (s *JetStream) Enqueue(ctx context.Context, jobs []NewJob) ([]string, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	now := ms(time.Now())
	ids := make([]string, len(jobs))
	for i, nj := range jobs {
		id, err := s.enqueueOne(ctx, nj, now)
		if err != nil {
			return nil, s.wrap(err)
		}
		ids[i] = id
	}
	return ids, nil
}

func dedupKey(queue, key string) string { return "d." + encKey(queue) + "." + encKey(key) }

// dedupHolder returns the unexpired job id a dedup key points to, and the
// record's revision (0: none).
func (s *JetStream) dedupHolder(ctx context.Context, k string, now int64) (string, uint64, error) {
	e, err := s.bucket().Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, err
	}
	var d jsDedup
	if json.Unmarshal(e.Value(), &d) != nil || d.Until <= now {
		return "", e.Revision(), nil
	}
	return d.ID, e.Revision(), nil
}

func (s *JetStream) enqueueOne(ctx context.Context, nj NewJob, now int64) (string, error) {
	if !nj.Leased {
		return s.store(ctx, nj, now)
	}
	// The caller delivers a job stored leased: held before the write, so
	// that tend never sees it leased and not held meanwhile.
	s.hold(nj.ID)
	id, err := s.store(ctx, nj, now)
	if err != nil || id != nj.ID {
		s.unhold(nj.ID)
	}
	return id, err
}

// store writes one new job (and its dedup record).
func (s *JetStream) store(ctx context.Context, nj NewJob, now int64) (string, error) {
	var dk string
	if nj.DedupKey != "" {
		dk = dedupKey(nj.Queue, nj.DedupKey)
		holder, _, err := s.dedupHolder(ctx, dk, now)
		if err != nil {
			return "", err
		}
		if holder != "" {
			return holder, nil
		}
	}
	r := jsRecord{ID: nj.ID, Queue: nj.Queue, FunctionID: nj.FunctionID, Group: nj.Group, Data: jsontext.Value(nj.Data),
		Traceparent: nj.Traceparent, Baggage: nj.Baggage, EnqueuedAt: now, VisibleAt: ms(nj.VisibleAt)}
	if nj.Leased {
		r.State, r.Attempts, r.Owner, r.Inst = stateLeased, 1, s.node, s.inst
	}
	b, err := json.Marshal(&r, jsOpts)
	if err != nil {
		return "", fmt.Errorf("queue: job %s: %w", nj.ID, err)
	}
	rev, err := s.bucket().Create(ctx, jobKey(nj.ID), b)
	var transient time.Time
	for natsnode.RetryTransient(ctx, err, &transient) {
		rev, err = s.bucket().Create(ctx, jobKey(nj.ID), b) // no stream leader yet
	}
	if jsConflict(err) {
		return nj.ID, nil // already stored (live or dead): no second job
	}
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.applyLocked(nj.ID, metaOf(&r, rev), rev)
	s.mu.Unlock()
	if dk == "" {
		return nj.ID, nil
	}
	// The job is stored before its dedup record: a crash in between may let
	// a retried enqueue store a second job (at-least-once), never lose one.
	db, _ := json.Marshal(jsDedup{ID: nj.ID, Until: ms(nj.DedupUntil)})
	for {
		holder, drev, err := s.dedupHolder(ctx, dk, now)
		if err != nil {
			return "", err
		}
		if holder != "" && holder != nj.ID {
			// Another engine enqueued the same key meanwhile: theirs stands.
			if _, err := s.mutate(ctx, nj.ID, func(*jsRecord) (bool, bool) { return true, true }); err != nil {
				return "", err
			}
			return holder, nil
		}
		if drev == 0 {
			_, err = s.bucket().Create(ctx, dk, db)
		} else {
			_, err = s.bucket().Update(ctx, dk, db, drev)
		}
		if jsConflict(err) {
			continue
		}
		if err != nil {
			return "", err
		}
		return nj.ID, nil
	}
}

// candidates returns, oldest first, the jobs of queue Lease may hand out
// according to the index.
func (s *JetStream) candidates(queue string, now int64, o LeaseOpts) []*jsMeta {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[queue]
	all := make([]*jsMeta, 0, len(q))
	for _, m := range q {
		if m.state != stateDead {
			all = append(all, m)
		}
	}
	slices.SortFunc(all, func(a, b *jsMeta) int { return int(a.seq - b.seq) })
	out := all[:0]
	seen := map[string]bool{}
	for _, m := range all {
		if o.FIFO && m.group != "" {
			if seen[m.group] {
				continue
			}
			seen[m.group] = true
		}
		if m.state != stateReady || m.visibleAt > now || s.suspectedLocked(m) {
			continue // a suspect heading its group holds the group back
		}
		if o.Serves != nil && !o.Serves(m.functionID) {
			continue
		}
		out = append(out, m)
	}
	return out
}

func (s *JetStream) Lease(ctx context.Context, queue string, now time.Time, o LeaseOpts) ([]Job, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if o.Max <= 0 {
		return nil, nil
	}
	t := ms(now)
	var out []Job
	pass := newPass()
	for _, c := range s.candidates(queue, t, o) {
		if len(out) >= o.Max {
			break
		}
		var leased jsRecord
		held := false
		ok, err := s.mutateIn(ctx, pass, c.id, func(r *jsRecord) (bool, bool) {
			if r.State != stateReady || r.VisibleAt > t || r.Queue != queue {
				return false, false // another engine got there first
			}
			r.State, r.Owner, r.Inst = stateLeased, s.node, s.inst
			r.Attempts++
			leased = *r
			if !held { // before the write: see enqueueOne
				s.hold(c.id)
				held = true
			}
			return true, false
		})
		if held && (err != nil || !ok) {
			s.unhold(c.id) // not handed out; a lease written after all is tend's
		}
		if err != nil {
			if len(out) > 0 && !errors.Is(err, ErrClosed) {
				break // hand out what is leased; the rest waits
			}
			return nil, err
		}
		if ok {
			out = append(out, Job{Seq: leased.Seq, ID: leased.ID, Queue: leased.Queue, FunctionID: leased.FunctionID,
				Data: []byte(leased.Data), Group: leased.Group, Traceparent: leased.Traceparent, Baggage: leased.Baggage,
				Attempts: leased.Attempts, EnqueuedAt: fromMS(leased.EnqueuedAt), LastError: leased.Err})
		}
	}
	return out, nil
}

// settleMine applies f to a job this engine holds leased.
func (s *JetStream) settleMine(ctx context.Context, id string, f func(r *jsRecord) (write, remove bool)) error {
	// Settled or not, the caller is done with the job: a lease left by a
	// failed write is tend's to make ready again.
	defer s.unhold(id)
	_, err := s.mutate(ctx, id, func(r *jsRecord) (bool, bool) {
		if r.State != stateLeased || r.Owner != s.node {
			return false, false
		}
		return f(r)
	})
	return err
}

func (s *JetStream) Ack(ctx context.Context, id string) error {
	return s.settleMine(ctx, id, func(*jsRecord) (bool, bool) { return true, true })
}

func (s *JetStream) Nack(ctx context.Context, id string, retryAt time.Time, errMsg string) error {
	return s.settleMine(ctx, id, func(r *jsRecord) (bool, bool) {
		r.State, r.VisibleAt, r.Err, r.Owner = stateReady, ms(retryAt), errMsg, ""
		return true, false
	})
}

func (s *JetStream) Release(ctx context.Context, id string) error {
	return s.settleMine(ctx, id, func(r *jsRecord) (bool, bool) {
		r.State, r.Owner = stateReady, ""
		r.Attempts--
		return true, false
	})
}

func (s *JetStream) Park(ctx context.Context, id string) error {
	return s.settleMine(ctx, id, func(r *jsRecord) (bool, bool) {
		r.State, r.Owner = stateParked, ""
		r.Attempts--
		return true, false
	})
}

func (s *JetStream) Bury(ctx context.Context, id, errMsg string, failedAt time.Time) error {
	return s.settleMine(ctx, id, func(r *jsRecord) (bool, bool) {
		r.State, r.Err, r.FailedAt, r.Owner = stateDead, errMsg, ms(failedAt), ""
		return true, false
	})
}

// selectIDs returns the ids of the index's jobs that pick accepts.
func (s *JetStream) selectIDs(queue string, pick func(m *jsMeta) bool) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	from := s.jobs
	if queue != "" {
		from = s.queues[queue]
	}
	for id, m := range from {
		if pick(m) {
			out = append(out, id)
		}
	}
	return out
}

// each applies f to every job of ids and counts the writes.
func (s *JetStream) each(ctx context.Context, ids []string, f func(r *jsRecord) bool) (int, error) {
	n := 0
	for _, id := range ids {
		ok, err := s.mutate(ctx, id, func(r *jsRecord) (bool, bool) { return f(r), false })
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

func (s *JetStream) ParkFunction(ctx context.Context, queue, fn string) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	ids := s.selectIDs(queue, func(m *jsMeta) bool { return m.state == stateReady && m.functionID == fn })
	return s.each(ctx, ids, func(r *jsRecord) bool {
		if r.State != stateReady || r.FunctionID != fn || r.Queue != queue {
			return false
		}
		r.State = stateParked
		return true
	})
}

func (s *JetStream) Unpark(ctx context.Context, fn string) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	ids := s.selectIDs("", func(m *jsMeta) bool { return m.state == stateParked && m.functionID == fn })
	return s.each(ctx, ids, func(r *jsRecord) bool {
		if r.State != stateParked || r.FunctionID != fn {
			return false
		}
		r.State = stateReady
		return true
	})
}

func (s *JetStream) ParkedFunctions(context.Context) ([]string, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	set := map[string]bool{}
	for _, m := range s.jobs {
		if m.state == stateParked {
			set[m.functionID] = true
		}
	}
	return sortedKeys(set), nil
}

func (s *JetStream) Dead(ctx context.Context, queue string, offset, limit int) ([]Dead, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	var dead []*jsMeta
	for _, m := range s.queues[queue] {
		if m.state == stateDead && !s.suspectedLocked(m) {
			dead = append(dead, m)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(dead, func(a, b *jsMeta) int {
		if a.failedAt != b.failedAt {
			return int(b.failedAt - a.failedAt)
		}
		return int(b.seq - a.seq)
	})
	if offset >= len(dead) {
		return nil, nil
	}
	dead = dead[offset:]
	if limit >= 0 && limit < len(dead) {
		dead = dead[:limit]
	}
	out := make([]Dead, 0, len(dead))
	pass := newPass()
	for _, m := range dead {
		r, _, err := s.get(ctx, m.id, pass)
		if err != nil {
			return nil, s.wrap(err)
		}
		if r == nil || r.State != stateDead {
			continue // changed meanwhile
		}
		out = append(out, Dead{Job: Job{Seq: r.Seq, ID: r.ID, Queue: r.Queue, FunctionID: r.FunctionID, Data: []byte(r.Data),
			Group: r.Group, Traceparent: r.Traceparent, Baggage: r.Baggage, Attempts: r.Attempts,
			EnqueuedAt: fromMS(r.EnqueuedAt), LastError: r.Err}, Error: r.Err, FailedAt: fromMS(r.FailedAt)})
	}
	return out, nil
}

func revive(r *jsRecord, now time.Time) {
	r.State, r.Attempts, r.VisibleAt, r.Err, r.FailedAt, r.Owner = stateReady, 0, ms(now), "", 0, ""
}

func (s *JetStream) Redrive(ctx context.Context, queue string, now time.Time) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	ids := s.selectIDs(queue, func(m *jsMeta) bool { return m.state == stateDead })
	return s.each(ctx, ids, func(r *jsRecord) bool {
		if r.State != stateDead || r.Queue != queue {
			return false
		}
		revive(r, now)
		return true
	})
}

func (s *JetStream) RedriveOne(ctx context.Context, queue, id string, now time.Time) (bool, error) {
	return s.mutate(ctx, id, func(r *jsRecord) (bool, bool) {
		if r.State != stateDead || r.Queue != queue {
			return false, false
		}
		revive(r, now)
		return true, false
	})
}

func (s *JetStream) Discard(ctx context.Context, queue, id string) (bool, error) {
	return s.mutate(ctx, id, func(r *jsRecord) (bool, bool) {
		return r.State == stateDead && r.Queue == queue, true
	})
}

func (s *JetStream) Stats(_ context.Context, queue string) (Stats, error) {
	if err := s.check(); err != nil {
		return Stats{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var st Stats
	for _, m := range s.queues[queue] {
		switch m.state {
		case stateReady:
			st.Ready++
		case stateLeased:
			st.Leased++
		case stateParked:
			st.Parked++
		case stateDead:
			st.Dead++
		}
	}
	st.Pending = st.Ready + st.Leased + st.Parked
	return st, nil
}

func (s *JetStream) Queues(context.Context) ([]string, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	set := map[string]bool{}
	for name := range s.queues {
		set[name] = true
	}
	return sortedKeys(set), nil
}

func (s *JetStream) NextVisible(_ context.Context, queue string) (time.Time, bool, error) {
	if err := s.check(); err != nil {
		return time.Time{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var best int64
	found := false
	for _, m := range s.queues[queue] {
		if m.state == stateReady && (!found || m.visibleAt < best) {
			best, found = m.visibleAt, true
		}
	}
	return fromMS(best), found, nil
}

// Recover makes this node's leases ready again: the node died holding
// them and restarted under its name. Other nodes' leases are theirs.
func (s *JetStream) Recover(ctx context.Context) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	ids := s.selectIDs("", func(m *jsMeta) bool { return m.state == stateLeased && m.owner == s.node })
	return s.each(ctx, ids, func(r *jsRecord) bool {
		if r.State != stateLeased || r.Owner != s.node {
			return false
		}
		r.State, r.Owner = stateReady, ""
		return true
	})
}

// RecoverNode makes ready the jobs leased by another node that left the
// cluster (it died, or is cut off: if it still delivers them, they run
// twice, which at-least-once allows; its late outcomes are ignored since it
// no longer holds the leases). The attempt stays counted.
func (s *JetStream) RecoverNode(ctx context.Context, node string) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	if node == s.node {
		return 0, nil
	}
	// The stored jobs, not the index: the index trails the other nodes'
	// writes (its watcher may be behind, or restarting, when a node
	// leaves), and a lease it has not seen yet would stay with the
	// departed node, delivered by none.
	ids, err := s.leasedBy(ctx, node)
	if err != nil {
		return 0, s.wrap(err)
	}
	return s.each(ctx, ids, func(r *jsRecord) bool {
		if r.State != stateLeased || r.Owner != node {
			return false
		}
		r.State, r.Owner = stateReady, ""
		return true
	})
}

// leasedBy lists the stored jobs leased by node, read from a fresh
// snapshot of the bucket (one pass over every job; a node leaves rarely).
// The pass also brings the index up to date: when another node took the
// leases over first, this node's index may still hold them leased by the
// departed node (its watcher's consumer may have lived on that node, and
// is recreated only after seconds of silence), and its dispatcher would
// never lease the jobs made ready.
func (s *JetStream) leasedBy(ctx context.Context, node string) ([]string, error) {
	w, err := s.bucket().Watch(ctx, "j.>", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer natsnode.StopWatch(ctx, w)
	var ids []string
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("queue: job watcher closed")
			}
			if e == nil {
				return ids, nil // the end of the snapshot
			}
			s.watched(e, true)
			var r jsRecord
			if json.Unmarshal(e.Value(), &r, jsOpts) == nil && r.State == stateLeased && r.Owner == node {
				if id, ok := decKey(strings.TrimPrefix(e.Key(), "j.")); ok {
					ids = append(ids, id)
				}
			}
		}
	}
}

func (s *JetStream) SaveQueue(ctx context.Context, name string, def []byte) error {
	if err := s.check(); err != nil {
		return err
	}
	_, err := s.bucket().Put(ctx, "q."+encKey(name), def)
	return s.wrap(err)
}

func (s *JetStream) LoadQueues(ctx context.Context) (map[string][]byte, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	w, err := s.bucket().Watch(ctx, "q.*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, s.wrap(err)
	}
	defer natsnode.StopWatch(ctx, w)
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("queue: watcher closed")
			}
			if e == nil {
				return out, nil
			}
			if name, ok := decKey(strings.TrimPrefix(e.Key(), "q.")); ok {
				out[name] = slices.Clone(e.Value())
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// janitor purges delete markers older than half an hour (every acked job
// leaves one) and expired dedup records, every few minutes.
func (s *JetStream) janitor() {
	defer s.wg.Done()
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
		_ = s.bucket().PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(30*time.Minute))
		if w, err := s.bucket().Watch(ctx, "d.>", jetstream.IgnoreDeletes()); err == nil {
			now := ms(time.Now())
			for e := range w.Updates() {
				if e == nil {
					break
				}
				var d jsDedup
				if json.Unmarshal(e.Value(), &d) == nil && d.Until <= now {
					_ = s.bucket().Delete(ctx, e.Key(), jetstream.LastRevision(e.Revision()))
				}
			}
			natsnode.StopWatch(ctx, w)
		}
		cancel()
	}
}

// Close stops the watcher; the bucket and the connection stay.
func (s *JetStream) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}
