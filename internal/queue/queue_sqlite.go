package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/wsconn"
	_ "modernc.org/sqlite" // registers the "sqlite" driver (pure Go)
)

// Sync modes of the SQLite store (PRAGMA synchronous in WAL mode).
const (
	// SyncNormal: a commit is written to the WAL but not fsynced; it
	// survives a crash or kill -9 of the engine, not a power loss or OS
	// crash (the last commits may be lost then, the file stays consistent).
	SyncNormal = "normal"
	// SyncFull: every commit is fsynced before it is acknowledged; it
	// survives power loss. Group commit shares one fsync among all the
	// operations that arrived meanwhile.
	SyncFull = "full"
)

// FileName is the store's file inside the data directory.
const FileName = "sluice.db"

// SQLite is the embedded durable Store: one file, WAL journal, one writer
// goroutine that commits whatever operations are waiting in one
// transaction (group commit), readers on their own connections. Only the
// jobs asked for are ever loaded, so memory stays bounded whatever the
// backlog.
type SQLite struct {
	w    *sql.Conn // the writer connection, used only by the writer goroutine
	wdb  *sql.DB
	rdb  *sql.DB
	ops  chan *op
	quit chan struct{}
	done chan struct{}

	closeOnce sync.Once
	closeErr  error
	// asyncMu: WriteAsync holds it shared while it queues, Close
	// exclusively after the writer has stopped, to fail what is left: no
	// callback is ever forgotten.
	asyncMu sync.RWMutex

	stmts       map[string]*sql.Stmt // prepared on w
	nextVisible *sql.Stmt            // prepared on rdb

	// MaxBatch bounds the operations committed together.
	maxBatch int
	// answers is the writer goroutine's write batch: what WriteAsync
	// callbacks write through it (AnswerBatch) goes out after the last
	// callback of a commit, one write system call per connection.
	answers wsconn.Batch
	// enqueues counts enqueue operations (writer goroutine only), to prune
	// expired deduplication keys now and then.
	enqueues int
	// afterCommit runs on the writer goroutine after each batch's outcomes.
	afterCommit func()

	// Standard (non-FIFO) leases live in memory only (memlease.go): the
	// writer goroutine changes them, holding memMu so that Stats and
	// NextVisible can read them.
	memMu    sync.Mutex
	memQueue map[string]*leaseQueue
	memByID  map[string]*memLease
	// memJournal undoes the current transaction's memory changes if it
	// rolls back (writer goroutine).
	memJournal []memUndo
}

type op struct {
	fn   func(s *SQLite, ctx context.Context) error
	done chan error  // do: the outcome is sent here
	cb   func(error) // WriteAsync: or passed to this, on the writer goroutine
}

// finish reports o's outcome.
func (o *op) finish(err error) {
	if o.cb != nil {
		o.cb(err)
		return
	}
	o.done <- err
}

const schema = `
CREATE TABLE IF NOT EXISTS jobs (
	seq         INTEGER PRIMARY KEY,
	id          TEXT NOT NULL UNIQUE,
	queue       TEXT NOT NULL,
	fn          TEXT NOT NULL,
	grp         TEXT NOT NULL DEFAULT '',
	data        BLOB,
	tp          TEXT NOT NULL DEFAULT '',
	bg          TEXT NOT NULL DEFAULT '',
	attempts    INTEGER NOT NULL DEFAULT 0,
	state       INTEGER NOT NULL DEFAULT 0,
	visible_at  INTEGER NOT NULL,
	enqueued_at INTEGER NOT NULL,
	err         TEXT NOT NULL DEFAULT '',
	failed_at   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs(queue, state, visible_at, seq);
-- Partial indexes: only FIFO jobs have a group, only parked jobs are
-- looked up by function; the others cost nothing to insert.
CREATE INDEX IF NOT EXISTS jobs_group ON jobs(queue, grp, seq) WHERE grp <> '';
CREATE INDEX IF NOT EXISTS jobs_parked ON jobs(fn) WHERE state = 2;
CREATE TABLE IF NOT EXISTS dedup (
	queue   TEXT NOT NULL,
	key     TEXT NOT NULL,
	id      TEXT NOT NULL,
	expires INTEGER NOT NULL,
	PRIMARY KEY (queue, key)
);
CREATE INDEX IF NOT EXISTS dedup_expires ON dedup(expires);
CREATE TABLE IF NOT EXISTS queue_defs (
	name TEXT PRIMARY KEY,
	def  BLOB NOT NULL
);
`

const jobCols = `seq, id, queue, fn, grp, data, tp, bg, attempts, enqueued_at, err`

// The lease limits are written abs(?3), not ?3: SQLite reads a bare bound
// LIMIT while planning and then re-prepares the statement whenever the
// value changes (it did on every lease: half the writer's time).
var writerStmts = map[string]string{
	"begin":  `BEGIN IMMEDIATE`,
	"commit": `COMMIT`,
	"insert": `INSERT INTO jobs (id, queue, fn, grp, data, tp, bg, visible_at, enqueued_at, state, attempts) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING`,
	// leaseMem reads (writes nothing) the next ready jobs after the
	// queue's cursor, for leases kept in memory (memlease.go).
	"leaseMem": `SELECT ` + jobCols + `, visible_at FROM jobs
		WHERE queue = ?1 AND state = 0 AND visible_at <= ?2 AND (visible_at, seq) > (?4, ?5)
		ORDER BY visible_at, seq LIMIT abs(?3)`,
	"ackMem":  `DELETE FROM jobs WHERE seq = ? AND state = 0`,
	"nackMem": `UPDATE jobs SET visible_at = ?, err = ?, attempts = ? WHERE seq = ? AND state = 0`,
	"parkMem": `UPDATE jobs SET state = 2 WHERE seq = ? AND state = 0`,
	"buryMem": `UPDATE jobs SET state = 3, err = ?, failed_at = ?, attempts = ? WHERE seq = ? AND state = 0`,
	"lease": `UPDATE jobs SET state = 1, attempts = attempts + 1 WHERE seq IN (
		SELECT seq FROM jobs WHERE queue = ?1 AND state = 0 AND visible_at <= ?2 ORDER BY visible_at, seq LIMIT abs(?3))
		RETURNING ` + jobCols,
	"leaseFIFO": `UPDATE jobs SET state = 1, attempts = attempts + 1 WHERE seq IN (
		SELECT j.seq FROM jobs j WHERE j.queue = ?1 AND j.state = 0 AND j.visible_at <= ?2
		AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.queue = j.queue AND k.grp = j.grp AND k.grp <> '' AND k.seq < j.seq AND k.state <> 3)
		ORDER BY j.seq LIMIT abs(?3))
		RETURNING ` + jobCols,
	"dedupGet": `SELECT id FROM dedup WHERE queue = ? AND key = ? AND expires > ?`,
	"dedupPut": `INSERT INTO dedup (queue, key, id, expires) VALUES (?,?,?,?) ON CONFLICT(queue, key) DO UPDATE SET id = excluded.id, expires = excluded.expires`,
	"dedupGC":  `DELETE FROM dedup WHERE expires <= ?`,
	"ack":      `DELETE FROM jobs WHERE id = ? AND state = 1`,
	"nack":     `UPDATE jobs SET state = 0, visible_at = ?, err = ? WHERE id = ? AND state = 1`,
	"release":  `UPDATE jobs SET state = 0, attempts = attempts - 1 WHERE id = ? AND state = 1`,
	"park":     `UPDATE jobs SET state = 2, attempts = attempts - 1 WHERE id = ? AND state = 1`,
	"bury":     `UPDATE jobs SET state = 3, err = ?, failed_at = ? WHERE id = ? AND state = 1`,
}

// OpenSQLite opens (creating if needed) the store in dir. syncMode is
// SyncNormal or SyncFull.
func OpenSQLite(dir, syncMode string) (*SQLite, error) {
	switch syncMode {
	case "", SyncNormal:
		syncMode = SyncNormal
	case SyncFull:
	default:
		return nil, fmt.Errorf("queue: sync mode %q: want %q or %q", syncMode, SyncNormal, SyncFull)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("queue: data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+syncMode+")")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	wdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	wdb.SetMaxOpenConns(1)
	ctx := context.Background()
	w, err := wdb.Conn(ctx)
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("queue: open %s: %w", path, err)
	}
	if _, err := w.ExecContext(ctx, schema); err != nil {
		w.Close()
		wdb.Close()
		return nil, fmt.Errorf("queue: schema of %s: %w", path, err)
	}
	rdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		w.Close()
		wdb.Close()
		return nil, err
	}
	rdb.SetMaxOpenConns(4)
	s := &SQLite{w: w, wdb: wdb, rdb: rdb, ops: make(chan *op, 1024), quit: make(chan struct{}),
		done: make(chan struct{}), stmts: map[string]*sql.Stmt{}, maxBatch: 1024,
		memQueue: map[string]*leaseQueue{}, memByID: map[string]*memLease{}}
	for name, text := range writerStmts {
		st, err := w.PrepareContext(ctx, text)
		if err != nil {
			s.closeDBs()
			return nil, fmt.Errorf("queue: prepare %s: %w", name, err)
		}
		s.stmts[name] = st
	}
	if s.nextVisible, err = rdb.PrepareContext(ctx, `SELECT visible_at, seq FROM jobs
		WHERE queue = ?1 AND state = 0 AND (visible_at, seq) > (?2, ?3) ORDER BY visible_at, seq LIMIT abs(?4)`); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("queue: prepare: %w", err)
	}
	go s.writer()
	return s, nil
}

var (
	_ Store = (*SQLite)(nil)
	_ Async = (*SQLite)(nil)
)

func (s *SQLite) closeDBs() {
	for _, st := range s.stmts {
		st.Close()
	}
	if s.nextVisible != nil {
		s.nextVisible.Close()
	}
	s.w.Close()
	s.wdb.Close()
	s.rdb.Close()
}

// writer commits the waiting operations together: one transaction, one
// WAL append (and, with SyncFull, one fsync) for all of them.
func (s *SQLite) writer() {
	defer close(s.done)
	ctx := context.Background()
	batch := make([]*op, 0, s.maxBatch)
	for {
		var first *op
		select {
		case first = <-s.ops:
		case <-s.quit:
			// Fail whatever is still queued.
			for {
				select {
				case o := <-s.ops:
					o.finish(ErrClosed)
				default:
					s.answers.Flush()
					return
				}
			}
		}
		batch = append(batch[:0], first)
	drain:
		for len(batch) < s.maxBatch {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break drain
			}
		}
		s.commit(ctx, batch)
		s.answers.Flush()
	}
}

func (s *SQLite) commit(ctx context.Context, batch []*op) {
	if s.afterCommit != nil {
		defer s.afterCommit()
	}
	err := s.tx(ctx, batch)
	if err == nil {
		for _, o := range batch {
			o.finish(nil)
		}
		return
	}
	if len(batch) == 1 {
		batch[0].finish(err)
		return
	}
	// One operation failed and the whole transaction was rolled back: run
	// each in its own transaction so that only the failing one fails (in
	// the same order: outcomes stay in submission order).
	for _, o := range batch {
		o.finish(s.tx(ctx, []*op{o}))
	}
}

// tx runs ops in one transaction: all commit, or none.
func (s *SQLite) tx(ctx context.Context, ops []*op) error {
	if _, err := s.stmts["begin"].ExecContext(ctx); err != nil {
		return fmt.Errorf("queue: begin: %w", err)
	}
	for _, o := range ops {
		if err := o.fn(s, ctx); err != nil {
			_, _ = s.w.ExecContext(ctx, "ROLLBACK")
			s.memRollback()
			return err
		}
	}
	if _, err := s.stmts["commit"].ExecContext(ctx); err != nil {
		_, _ = s.w.ExecContext(ctx, "ROLLBACK")
		s.memRollback()
		return fmt.Errorf("queue: commit: %w", err)
	}
	s.memCommitted()
	return nil
}

// do runs fn in the writer's next transaction and waits for its commit.
func (s *SQLite) do(ctx context.Context, fn func(s *SQLite, ctx context.Context) error) error {
	o := &op{fn: fn, done: make(chan error, 1)}
	select {
	case <-s.quit:
		return ErrClosed
	default:
	}
	select {
	case s.ops <- o:
	case <-s.quit:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued, the operation runs: wait for its outcome even if ctx
	// ends, so that the caller never mistakes a committed change for a
	// failed one. A writer that has stopped never runs it.
	select {
	case err := <-o.done:
		return err
	case <-s.done:
		select {
		case err := <-o.done:
			return err
		default:
			return ErrClosed
		}
	}
}

func (s *SQLite) exec(ctx context.Context, stmt string, args ...any) (int64, error) {
	r, err := s.stmts[stmt].ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	return r.RowsAffected()
}

func (s *SQLite) Enqueue(ctx context.Context, jobs []NewJob) ([]string, error) {
	ids := make([]string, len(jobs))
	if err := s.do(ctx, enqueueOp(jobs, ids)); err != nil {
		return nil, err
	}
	return ids, nil
}

// EnqueueAsync implements Async.
func (s *SQLite) EnqueueAsync(ctx context.Context, jobs []NewJob, done func([]string, error)) {
	ids := make([]string, len(jobs))
	s.async(ctx, enqueueOp(jobs, ids), func(err error) {
		if err != nil {
			done(nil, err)
			return
		}
		done(ids, nil)
	})
}

// enqueueOp stores jobs, filling ids.
func enqueueOp(jobs []NewJob, ids []string) func(s *SQLite, ctx context.Context) error {
	return func(s *SQLite, ctx context.Context) error {
		now := ms(time.Now())
		if s.enqueues++; s.enqueues%1024 == 0 {
			if _, err := s.exec(ctx, "dedupGC", now); err != nil {
				return err
			}
		}
		for i, j := range jobs {
			ids[i] = j.ID
			if j.DedupKey != "" {
				var prev string
				err := s.stmts["dedupGet"].QueryRowContext(ctx, j.Queue, j.DedupKey, now).Scan(&prev)
				if err == nil {
					ids[i] = prev
					continue
				}
				if !errors.Is(err, sql.ErrNoRows) {
					return err
				}
			}
			state, attempts := stateReady, 0
			if j.Leased && j.Group != "" {
				state, attempts = stateLeased, 1
			}
			r, err := s.stmts["insert"].ExecContext(ctx, j.ID, j.Queue, j.FunctionID, j.Group, j.Data, j.Traceparent, j.Baggage, ms(j.VisibleAt), now, state, attempts)
			if err != nil {
				return err
			}
			n, err := r.RowsAffected()
			if err != nil {
				return err
			}
			if n > 0 && state == stateReady {
				seq, err := r.LastInsertId()
				if err != nil {
					return err
				}
				if j.Leased {
					// Stored ready, leased in memory: a crash makes it
					// ready again without counting the attempt.
					s.memLease(j.Queue, j.ID, seq, ms(j.VisibleAt), 1)
				} else {
					s.memReady(j.Queue, ms(j.VisibleAt), seq)
				}
			}
			if n > 0 && j.DedupKey != "" {
				if _, err := s.exec(ctx, "dedupPut", j.Queue, j.DedupKey, j.ID, ms(j.DedupUntil)); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

func (s *SQLite) Lease(ctx context.Context, queue string, now time.Time, o LeaseOpts) ([]Job, error) {
	if o.Max <= 0 {
		return nil, nil
	}
	var out []Job
	err := s.do(ctx, func(s *SQLite, ctx context.Context) error {
		out = out[:0]
		if !o.FIFO {
			var err error
			out, err = s.leaseMem(ctx, queue, ms(now), o.Max, out)
			return err
		}
		stmt := "leaseFIFO"
		rows, err := s.stmts[stmt].QueryContext(ctx, queue, ms(now), o.Max)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			j, err := scanJob(rows)
			if err != nil {
				return err
			}
			out = append(out, j)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Seq < out[b].Seq })
	return out, nil
}

type scanner interface{ Scan(...any) error }

func scanJob(r scanner) (Job, error) {
	var j Job
	var enq int64
	err := r.Scan(&j.Seq, &j.ID, &j.Queue, &j.FunctionID, &j.Group, &j.Data, &j.Traceparent, &j.Baggage, &j.Attempts, &enq, &j.LastError)
	j.EnqueuedAt = fromMS(enq)
	return j, err
}

func (s *SQLite) Ack(ctx context.Context, id string) error {
	return s.do(ctx, ackOp(id))
}

// AckAsync implements Async.
func (s *SQLite) AckAsync(ctx context.Context, id string, done func(error)) {
	if done == nil {
		done = func(error) {}
	}
	s.async(ctx, ackOp(id), done)
}

func ackOp(id string) func(s *SQLite, ctx context.Context) error {
	return func(s *SQLite, ctx context.Context) error {
		if l := s.memByID[id]; l != nil {
			if _, err := s.exec(ctx, "ackMem", l.seq); err != nil {
				return err
			}
			s.memDrop(l)
			return nil
		}
		_, err := s.exec(ctx, "ack", id)
		return err
	}
}

// AfterCommit implements Async.
func (s *SQLite) AfterCommit(fn func()) { s.afterCommit = fn }

func (s *SQLite) Nack(ctx context.Context, id string, retryAt time.Time, errMsg string) error {
	return s.do(ctx, func(s *SQLite, ctx context.Context) error {
		if l := s.memByID[id]; l != nil {
			if _, err := s.exec(ctx, "nackMem", ms(retryAt), errMsg, l.attempts, l.seq); err != nil {
				return err
			}
			s.memDrop(l)
			s.memReady(l.q.name, ms(retryAt), l.seq)
			return nil
		}
		n, err := s.exec(ctx, "nack", ms(retryAt), errMsg, id)
		s.writtenLeaseReady(n)
		return err
	})
}

// writtenLeaseReady follows a written (fifo) lease made ready again: the
// queue may be standard by now (redefined at run time), with its cursor
// already past the job. Rewinding is always safe, and written leases of a
// standard queue exist only across such a redefinition.
func (s *SQLite) writtenLeaseReady(rows int64) {
	if rows > 0 {
		s.memRewindAll()
	}
}

func (s *SQLite) Release(ctx context.Context, id string) error {
	return s.do(ctx, func(s *SQLite, ctx context.Context) error {
		if l := s.memByID[id]; l != nil {
			// Nothing was written for the lease: dropping it is enough.
			s.memDrop(l)
			s.memReady(l.q.name, l.vis, l.seq)
			return nil
		}
		n, err := s.exec(ctx, "release", id)
		s.writtenLeaseReady(n)
		return err
	})
}

func (s *SQLite) Park(ctx context.Context, id string) error {
	return s.do(ctx, func(s *SQLite, ctx context.Context) error {
		if l := s.memByID[id]; l != nil {
			if _, err := s.exec(ctx, "parkMem", l.seq); err != nil {
				return err
			}
			s.memDrop(l)
			return nil
		}
		_, err := s.exec(ctx, "park", id)
		return err
	})
}

func (s *SQLite) ParkFunction(ctx context.Context, queue, fn string) (int, error) {
	var n int64
	err := s.do(ctx, func(s *SQLite, ctx context.Context) error {
		rows, err := s.w.QueryContext(ctx, `UPDATE jobs SET state = 2 WHERE queue = ? AND state = 0 AND fn = ? RETURNING seq`, queue, fn)
		if err != nil {
			return err
		}
		var back []int64 // leased in memory (ready in the file): in flight, not parked
		for rows.Next() {
			var seq int64
			if err := rows.Scan(&seq); err != nil {
				rows.Close()
				return err
			}
			if q := s.memQueue[queue]; q != nil && q.leases[seq] != nil {
				back = append(back, seq)
			} else {
				n++
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		for _, seq := range back {
			if _, err := s.w.ExecContext(ctx, `UPDATE jobs SET state = 0 WHERE seq = ?`, seq); err != nil {
				return err
			}
		}
		return nil
	})
	return int(n), err
}

func (s *SQLite) Unpark(ctx context.Context, fn string) (int, error) {
	var n int64
	err := s.do(ctx, func(s *SQLite, ctx context.Context) error {
		r, err := s.w.ExecContext(ctx, `UPDATE jobs SET state = 0 WHERE state = 2 AND fn = ?`, fn)
		if err == nil {
			n, err = r.RowsAffected()
		}
		if n > 0 {
			s.memRewindAll()
		}
		return err
	})
	return int(n), err
}

func (s *SQLite) ParkedFunctions(ctx context.Context) ([]string, error) {
	return s.strings(ctx, `SELECT DISTINCT fn FROM jobs WHERE state = 2 ORDER BY fn`)
}

func (s *SQLite) Bury(ctx context.Context, id, errMsg string, failedAt time.Time) error {
	return s.do(ctx, func(s *SQLite, ctx context.Context) error {
		if l := s.memByID[id]; l != nil {
			if _, err := s.exec(ctx, "buryMem", errMsg, ms(failedAt), l.attempts, l.seq); err != nil {
				return err
			}
			s.memDrop(l)
			return nil
		}
		_, err := s.exec(ctx, "bury", errMsg, ms(failedAt), id)
		return err
	})
}

func (s *SQLite) Dead(ctx context.Context, queue string, offset, limit int) ([]Dead, error) {
	if limit < 0 {
		limit = -1
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+jobCols+`, failed_at FROM jobs WHERE queue = ? AND state = 3
		ORDER BY failed_at DESC, seq DESC LIMIT ? OFFSET ?`, queue, limit, offset)
	if err != nil {
		return nil, s.readErr(err)
	}
	defer rows.Close()
	var out []Dead
	for rows.Next() {
		var d Dead
		var enq, failed int64
		if err := rows.Scan(&d.Seq, &d.ID, &d.Queue, &d.FunctionID, &d.Group, &d.Data, &d.Traceparent, &d.Baggage, &d.Attempts, &enq, &d.Error, &failed); err != nil {
			return nil, err
		}
		d.EnqueuedAt, d.FailedAt, d.LastError = fromMS(enq), fromMS(failed), d.Error
		out = append(out, d)
	}
	return out, rows.Err()
}

func (s *SQLite) Redrive(ctx context.Context, queue string, now time.Time) (int, error) {
	var n int64
	err := s.do(ctx, func(s *SQLite, ctx context.Context) error {
		r, err := s.w.ExecContext(ctx, `UPDATE jobs SET state = 0, attempts = 0, visible_at = ?, err = '', failed_at = 0 WHERE queue = ? AND state = 3`, ms(now), queue)
		if err == nil {
			n, err = r.RowsAffected()
		}
		if n > 0 {
			s.memRewind(queue)
		}
		return err
	})
	return int(n), err
}

func (s *SQLite) RedriveOne(ctx context.Context, queue, id string, now time.Time) (bool, error) {
	var n int64
	err := s.do(ctx, func(s *SQLite, ctx context.Context) error {
		r, err := s.w.ExecContext(ctx, `UPDATE jobs SET state = 0, attempts = 0, visible_at = ?, err = '', failed_at = 0 WHERE id = ? AND queue = ? AND state = 3`, ms(now), id, queue)
		if err == nil {
			n, err = r.RowsAffected()
		}
		if n > 0 {
			s.memRewind(queue)
		}
		return err
	})
	return n > 0, err
}

func (s *SQLite) Discard(ctx context.Context, queue, id string) (bool, error) {
	var n int64
	err := s.do(ctx, func(s *SQLite, ctx context.Context) error {
		r, err := s.w.ExecContext(ctx, `DELETE FROM jobs WHERE id = ? AND queue = ? AND state = 3`, id, queue)
		if err == nil {
			n, err = r.RowsAffected()
		}
		return err
	})
	return n > 0, err
}

func (s *SQLite) Stats(ctx context.Context, queue string) (Stats, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT state, COUNT(*) FROM jobs WHERE queue = ? GROUP BY state`, queue)
	if err != nil {
		return Stats{}, s.readErr(err)
	}
	defer rows.Close()
	var st Stats
	for rows.Next() {
		var state int
		var n int64
		if err := rows.Scan(&state, &n); err != nil {
			return Stats{}, err
		}
		switch state {
		case stateReady:
			st.Ready = n
		case stateLeased:
			st.Leased = n
		case stateParked:
			st.Parked = n
		case stateDead:
			st.Dead = n
		}
	}
	// Jobs leased in memory are ready in the file.
	ml := min(int64(s.memCount(queue)), st.Ready)
	st.Ready, st.Leased = st.Ready-ml, st.Leased+ml
	st.Pending = st.Ready + st.Leased + st.Parked
	return st, rows.Err()
}

func (s *SQLite) Queues(ctx context.Context) ([]string, error) {
	// A skip scan over the index: one probe per distinct queue.
	return s.strings(ctx, `SELECT DISTINCT queue FROM jobs ORDER BY queue`)
}

func (s *SQLite) strings(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := s.rdb.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, s.readErr(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (s *SQLite) NextVisible(ctx context.Context, queue string) (time.Time, bool, error) {
	// Jobs leased in memory are ready in the file: skip them.
	cv, cs, leased := s.memAbove(queue)
	rows, err := s.nextVisible.QueryContext(ctx, queue, cv, cs, len(leased)+1)
	if err != nil {
		return time.Time{}, false, s.readErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var v, seq int64
		if err := rows.Scan(&v, &seq); err != nil {
			return time.Time{}, false, s.readErr(err)
		}
		if !leased[seq] {
			return fromMS(v), true, nil
		}
	}
	return time.Time{}, false, s.readErr(rows.Err())
}

// readErr is a read's error: ErrClosed once the store is closed (reads do
// not go through the writer, so database/sql reports it in its own words).
func (s *SQLite) readErr(err error) error {
	if err == nil {
		return nil
	}
	select {
	case <-s.quit:
		return ErrClosed
	default:
		return err
	}
}

func (s *SQLite) Recover(ctx context.Context) (int, error) {
	var n int64
	err := s.do(ctx, func(s *SQLite, ctx context.Context) error {
		r, err := s.w.ExecContext(ctx, `UPDATE jobs SET state = 0 WHERE state = 1`)
		if err == nil {
			n, err = r.RowsAffected()
		}
		if err == nil {
			n += int64(s.memForget())
		}
		return err
	})
	return int(n), err
}

func (s *SQLite) SaveQueue(ctx context.Context, name string, def []byte) error {
	return s.do(ctx, func(s *SQLite, ctx context.Context) error {
		_, err := s.w.ExecContext(ctx, `INSERT INTO queue_defs (name, def) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET def = excluded.def`, name, def)
		return err
	})
}

func (s *SQLite) LoadQueues(ctx context.Context) (map[string][]byte, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT name, def FROM queue_defs`)
	if err != nil {
		return nil, s.readErr(err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var name string
		var def []byte
		if err := rows.Scan(&name, &def); err != nil {
			return nil, err
		}
		out[name] = def
	}
	return out, rows.Err()
}

// Close stops the writer (queued operations fail with ErrClosed) and closes
// the file.
func (s *SQLite) Close() error {
	s.closeOnce.Do(func() {
		close(s.quit)
		<-s.done
		s.asyncMu.Lock()
		for len(s.ops) > 0 {
			(<-s.ops).finish(ErrClosed)
		}
		s.asyncMu.Unlock()
		s.closeDBs()
	})
	return s.closeErr
}

// Write runs fn in the writer's next transaction (group commit, shared with
// the queue's own operations) and returns once it is committed. Other
// modules keep their tables in the same file through it (one store file,
// one writer). fn runs on the writer goroutine: it must not block on
// anything but the connection, and an error rolls back only its part.
func (s *SQLite) Write(ctx context.Context, fn func(ctx context.Context, c *sql.Conn) error) error {
	return s.do(ctx, func(s *SQLite, ctx context.Context) error { return fn(ctx, s.w) })
}

// WriteAsync is Write without the wait: fn joins the writer's next
// transaction and done gets the outcome after the commit, on the writer
// goroutine (it must not block; it runs before the next batch commits).
// Writes submitted one after another commit, and are answered, in that
// order, whatever the Go scheduler does meanwhile: a caller that submits
// from its connection's reader keeps that connection's order. It blocks
// only while the writer's queue is full (backpressure); if ctx ends or the
// store closes first, done gets that error before WriteAsync returns.
func (s *SQLite) WriteAsync(ctx context.Context, fn func(ctx context.Context, c *sql.Conn) error, done func(error)) {
	s.async(ctx, func(s *SQLite, ctx context.Context) error { return fn(ctx, s.w) }, done)
}

// async queues fn for the writer's next transaction; done gets the outcome.
func (s *SQLite) async(ctx context.Context, fn func(s *SQLite, ctx context.Context) error, done func(error)) {
	o := &op{fn: fn, cb: done}
	s.asyncMu.RLock()
	defer s.asyncMu.RUnlock()
	select {
	case <-s.quit:
		done(ErrClosed)
		return
	default:
	}
	select {
	case s.ops <- o:
	case <-s.quit:
		done(ErrClosed)
	case <-ctx.Done():
		done(ctx.Err())
	}
}

// AnswerBatch is the writer goroutine's write batch, for WriteAsync
// callbacks only (they run on that goroutine): frames sent through it are
// flushed once every callback of the commit has run.
func (s *SQLite) AnswerBatch() *wsconn.Batch { return &s.answers }

// ReadDB is the store's pool of read connections (WAL: readers never wait
// for the writer).
func (s *SQLite) ReadDB() *sql.DB { return s.rdb }
