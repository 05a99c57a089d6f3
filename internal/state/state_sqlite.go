package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/sluicehq/sluice/internal/wsconn"
)

// Backend is the shared SQLite file: a group-commit writer and a pool of
// readers (queue.SQLite provides both), so that queues and state live in
// one file with one writer.
type Backend interface {
	Write(ctx context.Context, fn func(ctx context.Context, c *sql.Conn) error) error
	// WriteAsync queues fn for the writer's next transaction and calls
	// done with the outcome once it is committed, in submission order.
	WriteAsync(ctx context.Context, fn func(ctx context.Context, c *sql.Conn) error, done func(error))
	ReadDB() *sql.DB
}

// answerBatcher is a Backend whose WriteAsync callbacks run on a goroutine
// with a write batch (queue.SQLite).
type answerBatcher interface{ AnswerBatch() *wsconn.Batch }

// SQLite is the durable Store: table kv in the backend's file.
type SQLite struct {
	b Backend
	// Prepared on the writer connection, used on the writer goroutine only.
	wstmts map[string]*sql.Stmt
	get    *sql.Stmt
	list   *sql.Stmt
	groups *sql.Stmt
	nss    *sql.Stmt

	hot hotCache
}

// hotCache answers Get for recently read or written keys without SQLite,
// kept consistent with the single writer: a write marks its key in flight
// (dropping it from the cache) inside its transaction, before the commit;
// Gets of a key in flight read SQLite; once committed the writer records
// the new value and clears the mark, on the writer goroutine, before the
// write is answered. A Get fills the cache only if no write was marked or
// applied since it looked (gen). So the cache only ever holds the latest
// committed value, and no Get sees a value older than one seen before.
// Bounded in entries and bytes; absence is cached too.
type hotCache struct {
	mu       sync.RWMutex
	m        map[string][]byte // nil value: no such key
	inflight map[string]int    // writes of the key between mark and applied
	bytes    int
	gen      uint64
}

const (
	hotMaxEntries = 1 << 16
	hotMaxBytes   = 32 << 20
	hotMaxValue   = 16 << 10
)

// hotKey is unambiguous whatever bytes the parts hold.
func hotKey(ns, group, key string) string {
	return strconv.Itoa(len(ns)) + ":" + strconv.Itoa(len(group)) + ":" + ns + group + key
}

func (h *hotCache) get(k string) (v []byte, cached bool, gen uint64) {
	h.mu.RLock()
	v, cached = h.m[k]
	gen = h.gen
	h.mu.RUnlock()
	return v, cached, gen
}

// putLocked stores v (nil: absent) under k if the bounds allow, else
// forgets k.
func (h *hotCache) putLocked(k string, v []byte) {
	old, had := h.m[k]
	if had {
		h.bytes -= len(k) + len(old)
		delete(h.m, k)
	}
	if len(v) > hotMaxValue || len(h.m) >= hotMaxEntries || h.bytes+len(k)+len(v) > hotMaxBytes {
		return
	}
	if h.m == nil {
		h.m = map[string][]byte{}
	}
	h.m[k] = v
	h.bytes += len(k) + len(v)
}

// fill caches what a Get read, unless a write was marked or applied since
// gen.
func (h *hotCache) fill(k string, v []byte, gen uint64) {
	h.mu.Lock()
	if h.gen == gen && h.inflight[k] == 0 {
		h.putLocked(k, v)
	}
	h.mu.Unlock()
}

// mark records a write of k in flight (writer goroutine, inside the
// transaction, once per write: *marked guards a rerun of the batch). When
// no other write of k is in flight and k is cached, it returns the cached
// value (nil: absent) with known true: the committed value, which the
// write need not read from SQLite.
func (h *hotCache) mark(k string, marked *bool) (v []byte, known bool) {
	if *marked {
		return nil, false
	}
	*marked = true
	h.mu.Lock()
	h.gen++
	if h.inflight == nil {
		h.inflight = map[string]int{}
	}
	if h.inflight[k] == 0 {
		v, known = h.m[k]
	}
	h.inflight[k]++
	h.forgetLocked(k)
	h.mu.Unlock()
	return v, known
}

func (h *hotCache) forgetLocked(k string) {
	if old, had := h.m[k]; had {
		h.bytes -= len(k) + len(old)
		delete(h.m, k)
	}
}

// applied records a write's outcome (writer goroutine, after its commit
// or failure); ok false: it did not take effect. marked false: it never
// reached the writer.
func (h *hotCache) applied(k string, ch Change, ok, marked bool) {
	if !marked {
		return
	}
	h.mu.Lock()
	h.gen++
	n := h.inflight[k] - 1
	if n > 0 {
		h.inflight[k] = n
	} else {
		delete(h.inflight, k)
	}
	switch {
	case !ok || n > 0:
		// Failed (the committed value is unchanged, but one read costs
		// little), or another write of the key is in flight.
		h.forgetLocked(k)
	case ch.Has:
		h.putLocked(k, ch.New)
	default:
		h.putLocked(k, nil)
	}
	h.mu.Unlock()
}

const schema = `CREATE TABLE IF NOT EXISTS kv (
	ns    TEXT NOT NULL,
	grp   TEXT NOT NULL,
	key   TEXT NOT NULL,
	value BLOB NOT NULL,
	PRIMARY KEY (ns, grp, key)
) WITHOUT ROWID`

var writerStmts = map[string]string{
	"get": `SELECT value FROM kv WHERE ns = ? AND grp = ? AND key = ?`,
	"put": `INSERT INTO kv (ns, grp, key, value) VALUES (?,?,?,?) ON CONFLICT(ns, grp, key) DO UPDATE SET value = excluded.value`,
	"del": `DELETE FROM kv WHERE ns = ? AND grp = ? AND key = ?`,
}

// OpenSQLite creates the table if needed and prepares the reads.
func OpenSQLite(ctx context.Context, b Backend) (*SQLite, error) {
	s := &SQLite{b: b, wstmts: map[string]*sql.Stmt{}}
	if err := b.Write(ctx, func(ctx context.Context, c *sql.Conn) error {
		_, err := c.ExecContext(ctx, schema)
		return err
	}); err != nil {
		return nil, fmt.Errorf("state: schema: %w", err)
	}
	r := b.ReadDB()
	var err error
	prep := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = r.PrepareContext(ctx, q)
		return st
	}
	s.get = prep(writerStmts["get"])
	s.list = prep(`SELECT key, value FROM kv WHERE ns = ? AND grp = ? ORDER BY key`)
	s.groups = prep(`SELECT DISTINCT grp FROM kv WHERE ns = ? ORDER BY grp`)
	// substr, not LIKE: no escaping of % and _ in the prefix.
	s.nss = prep(`SELECT DISTINCT ns FROM kv WHERE substr(ns, 1, length(?1)) = ?1 ORDER BY ns`)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("state: prepare: %w", err)
	}
	return s, nil
}

var _ Store = (*SQLite)(nil)

// Close releases the prepared reads (the backend stays open).
func (s *SQLite) Close() {
	for _, st := range []*sql.Stmt{s.get, s.list, s.groups, s.nss} {
		if st != nil {
			st.Close()
		}
	}
}

// wstmt returns a statement prepared on the writer connection (writer
// goroutine only).
func (s *SQLite) wstmt(ctx context.Context, c *sql.Conn, name string) (*sql.Stmt, error) {
	if st := s.wstmts[name]; st != nil {
		return st, nil
	}
	st, err := c.PrepareContext(ctx, writerStmts[name])
	if err != nil {
		return nil, err
	}
	s.wstmts[name] = st
	return st, nil
}

func (s *SQLite) read(ctx context.Context, c *sql.Conn, ns, group, key string) ([]byte, bool, error) {
	st, err := s.wstmt(ctx, c, "get")
	if err != nil {
		return nil, false, err
	}
	var v []byte
	switch err := st.QueryRowContext(ctx, ns, group, key).Scan(&v); {
	case errors.Is(err, sql.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return v, true, nil
}

func (s *SQLite) exec(ctx context.Context, c *sql.Conn, name string, args ...any) error {
	st, err := s.wstmt(ctx, c, name)
	if err != nil {
		return err
	}
	_, err = st.ExecContext(ctx, args...)
	return err
}

// Get answers from the hot cache when it can; the value returned must not
// be modified.
func (s *SQLite) Get(ctx context.Context, ns, group, key string) ([]byte, bool, error) {
	k := hotKey(ns, group, key)
	v, cached, gen := s.hot.get(k)
	if cached {
		return v, v != nil, nil
	}
	switch err := s.get.QueryRowContext(ctx, ns, group, key).Scan(&v); {
	case errors.Is(err, sql.ErrNoRows):
		s.hot.fill(k, nil, gen)
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	s.hot.fill(k, v, gen)
	return v, true, nil
}

// prior is a key's committed value as the hot cache knows it (known false:
// it does not; the write reads SQLite).
type prior struct {
	v     []byte
	known bool
}

type writeFn func(ctx context.Context, c *sql.Conn, pre prior) error

// readPrior is the key's current value inside the write transaction.
func (s *SQLite) readPrior(ctx context.Context, c *sql.Conn, ns, group, key string, pre prior) ([]byte, bool, error) {
	if pre.known {
		return pre.v, pre.v != nil, nil
	}
	return s.read(ctx, c, ns, group, key)
}

// setFn, deleteFn and updateFn are the writes, run on the writer
// goroutine; each records what it did in *ch.
func (s *SQLite) setFn(ns, group, key string, value []byte, ch *Change) writeFn {
	return func(ctx context.Context, c *sql.Conn, pre prior) error {
		old, had, err := s.readPrior(ctx, c, ns, group, key, pre)
		if err != nil {
			return err
		}
		*ch = Change{Old: old, Had: had, New: value, Has: true}
		return s.exec(ctx, c, "put", ns, group, key, value)
	}
}

func (s *SQLite) deleteFn(ns, group, key string, ch *Change) writeFn {
	return func(ctx context.Context, c *sql.Conn, pre prior) error {
		old, had, err := s.readPrior(ctx, c, ns, group, key, pre)
		if err != nil || !had {
			*ch = Change{}
			return err
		}
		*ch = Change{Old: old, Had: true}
		return s.exec(ctx, c, "del", ns, group, key)
	}
}

func (s *SQLite) updateFn(ns, group, key string, fn UpdateFunc, ch *Change) writeFn {
	return func(ctx context.Context, c *sql.Conn, pre prior) error {
		old, had, err := s.readPrior(ctx, c, ns, group, key, pre)
		if err != nil {
			return err
		}
		v, keep, err := fn(old, had)
		if err != nil {
			return err
		}
		if !keep {
			*ch = Change{Old: old, Had: had, New: old, Has: had}
			return nil
		}
		*ch = Change{Old: old, Had: had, New: v, Has: true}
		return s.exec(ctx, c, "put", ns, group, key, v)
	}
}

// Set, Delete and Update wait for their asynchronous form: the hot cache
// is kept on the writer goroutine, in commit order.
func (s *SQLite) Set(ctx context.Context, ns, group, key string, value []byte) (Change, error) {
	return waitChange(func(done func(Change, error)) { s.SetAsync(ctx, ns, group, key, value, done) })
}

func (s *SQLite) Delete(ctx context.Context, ns, group, key string) (Change, error) {
	return waitChange(func(done func(Change, error)) { s.DeleteAsync(ctx, ns, group, key, done) })
}

func (s *SQLite) Update(ctx context.Context, ns, group, key string, fn UpdateFunc) (Change, error) {
	return waitChange(func(done func(Change, error)) { s.UpdateAsync(ctx, ns, group, key, fn, done) })
}

// waitChange submits a write and waits for its answer (always given).
func waitChange(submit func(done func(Change, error))) (Change, error) {
	type answer struct {
		ch  Change
		err error
	}
	c := make(chan answer, 1)
	submit(func(ch Change, err error) { c <- answer{ch, err} })
	a := <-c
	return a.ch, a.err
}

var _ AsyncStore = (*SQLite)(nil)

// async queues w and answers done with the change it recorded, after
// recording it in the hot cache.
func (s *SQLite) async(ctx context.Context, k string, ch *Change, w writeFn, done func(Change, error)) {
	marked := false // writer goroutine only
	s.b.WriteAsync(ctx, func(ctx context.Context, c *sql.Conn) error {
		v, known := s.hot.mark(k, &marked)
		return w(ctx, c, prior{v, known})
	}, func(err error) {
		s.hot.applied(k, *ch, err == nil, marked)
		if err != nil {
			done(Change{}, err)
			return
		}
		if ab, ok := s.b.(answerBatcher); ok {
			ch.Batch = ab.AnswerBatch()
		}
		done(*ch, nil)
	})
}

func (s *SQLite) SetAsync(ctx context.Context, ns, group, key string, value []byte, done func(Change, error)) {
	ch := new(Change)
	s.async(ctx, hotKey(ns, group, key), ch, s.setFn(ns, group, key, value, ch), done)
}

func (s *SQLite) DeleteAsync(ctx context.Context, ns, group, key string, done func(Change, error)) {
	ch := new(Change)
	s.async(ctx, hotKey(ns, group, key), ch, s.deleteFn(ns, group, key, ch), done)
}

func (s *SQLite) UpdateAsync(ctx context.Context, ns, group, key string, fn UpdateFunc, done func(Change, error)) {
	ch := new(Change)
	s.async(ctx, hotKey(ns, group, key), ch, s.updateFn(ns, group, key, fn, ch), done)
}

func (s *SQLite) List(ctx context.Context, ns, group string) ([]Entry, error) {
	rows, err := s.list.QueryContext(ctx, ns, group)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Entry{}
	for rows.Next() {
		var e Entry
		if err := rows.Scan(&e.Key, &e.Value); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func (s *SQLite) strings(ctx context.Context, st *sql.Stmt, arg string) ([]string, error) {
	rows, err := st.QueryContext(ctx, arg)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (s *SQLite) Groups(ctx context.Context, ns string) ([]string, error) {
	return s.strings(ctx, s.groups, ns)
}

func (s *SQLite) Namespaces(ctx context.Context, prefix string) ([]string, error) {
	return s.strings(ctx, s.nss, prefix)
}
