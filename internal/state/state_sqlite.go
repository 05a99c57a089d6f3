package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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

// SQLite is the durable Store: table kv in the backend's file.
type SQLite struct {
	b Backend
	// Prepared on the writer connection, used on the writer goroutine only.
	wstmts map[string]*sql.Stmt
	get    *sql.Stmt
	list   *sql.Stmt
	groups *sql.Stmt
	nss    *sql.Stmt
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

func (s *SQLite) Get(ctx context.Context, ns, group, key string) ([]byte, bool, error) {
	var v []byte
	switch err := s.get.QueryRowContext(ctx, ns, group, key).Scan(&v); {
	case errors.Is(err, sql.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return v, true, nil
}

// setFn, deleteFn and updateFn are the writes, run on the writer
// goroutine; each records what it did in *ch.
func (s *SQLite) setFn(ns, group, key string, value []byte, ch *Change) func(context.Context, *sql.Conn) error {
	return func(ctx context.Context, c *sql.Conn) error {
		old, had, err := s.read(ctx, c, ns, group, key)
		if err != nil {
			return err
		}
		*ch = Change{Old: old, Had: had, New: value, Has: true}
		return s.exec(ctx, c, "put", ns, group, key, value)
	}
}

func (s *SQLite) deleteFn(ns, group, key string, ch *Change) func(context.Context, *sql.Conn) error {
	return func(ctx context.Context, c *sql.Conn) error {
		old, had, err := s.read(ctx, c, ns, group, key)
		if err != nil || !had {
			*ch = Change{}
			return err
		}
		*ch = Change{Old: old, Had: true}
		return s.exec(ctx, c, "del", ns, group, key)
	}
}

func (s *SQLite) updateFn(ns, group, key string, fn UpdateFunc, ch *Change) func(context.Context, *sql.Conn) error {
	return func(ctx context.Context, c *sql.Conn) error {
		old, had, err := s.read(ctx, c, ns, group, key)
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

func (s *SQLite) Set(ctx context.Context, ns, group, key string, value []byte) (Change, error) {
	var ch Change
	err := s.b.Write(ctx, s.setFn(ns, group, key, value, &ch))
	return ch, err
}

func (s *SQLite) Delete(ctx context.Context, ns, group, key string) (Change, error) {
	var ch Change
	err := s.b.Write(ctx, s.deleteFn(ns, group, key, &ch))
	return ch, err
}

func (s *SQLite) Update(ctx context.Context, ns, group, key string, fn UpdateFunc) (Change, error) {
	var ch Change
	err := s.b.Write(ctx, s.updateFn(ns, group, key, fn, &ch))
	return ch, err
}

var _ AsyncStore = (*SQLite)(nil)

// async queues w and answers done with the change it recorded.
func (s *SQLite) async(ctx context.Context, ch *Change, w func(context.Context, *sql.Conn) error, done func(Change, error)) {
	s.b.WriteAsync(ctx, w, func(err error) {
		if err != nil {
			done(Change{}, err)
			return
		}
		done(*ch, nil)
	})
}

func (s *SQLite) SetAsync(ctx context.Context, ns, group, key string, value []byte, done func(Change, error)) {
	ch := new(Change)
	s.async(ctx, ch, s.setFn(ns, group, key, value, ch), done)
}

func (s *SQLite) DeleteAsync(ctx context.Context, ns, group, key string, done func(Change, error)) {
	ch := new(Change)
	s.async(ctx, ch, s.deleteFn(ns, group, key, ch), done)
}

func (s *SQLite) UpdateAsync(ctx context.Context, ns, group, key string, fn UpdateFunc, done func(Change, error)) {
	ch := new(Change)
	s.async(ctx, ch, s.updateFn(ns, group, key, fn, ch), done)
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
