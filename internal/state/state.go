// Package state is the key-value store behind the engine's state module
// (state::*) and stream items (stream::*): JSON values under
// namespace > group > key.
//
// Store is the seam (DESIGN.md, centrifuge's broker pattern): state.go
// declares it, state_sqlite.go (tables in the queue's SQLite file, written
// through its group-commit writer) and state_memory.go implement it, and a
// cluster implementation (JetStream KV) can be added beside them. The
// engine holds the policy (update operations, size limits, triggers); the
// store only keeps values and makes each write atomic per key.
package state

import (
	"context"
	"errors"

	"github.com/sluicehq/sluice/internal/wsconn"
)

// Entry is one stored value.
type Entry struct {
	Key   string
	Value []byte // JSON
}

// Change is what a write did: the value before (Had false: there was
// none) and after (Has false: deleted, or nothing to delete).
type Change struct {
	Old []byte
	Had bool
	New []byte
	Has bool
	// Batch, in an AsyncStore's completion, is the write batch of the
	// goroutine running it (nil: none): frames sent through it go out
	// together after the completions of the same commit.
	Batch *wsconn.Batch
}

// UpdateFunc computes a key's new value from its current one (had false:
// none). It may run more than once for one Update (a retried transaction)
// and must not have side effects; returning keep false leaves the key as
// it was.
type UpdateFunc func(old []byte, had bool) (updated []byte, keep bool, err error)

// ErrClosed is returned by a closed store.
var ErrClosed = errors.New("state: store closed")

// Store keeps JSON values durably. All methods are safe for concurrent use;
// a method that returns nil has made its change durable (as durable as the
// store's sync mode promises). Keys, groups and namespaces are opaque
// strings.
type Store interface {
	// Get returns a value (ok false: none).
	Get(ctx context.Context, ns, group, key string) (value []byte, ok bool, err error)
	// Set stores value and reports the value it replaced.
	Set(ctx context.Context, ns, group, key string, value []byte) (Change, error)
	// Delete removes a value and reports it.
	Delete(ctx context.Context, ns, group, key string) (Change, error)
	// Update reads, transforms and writes one key atomically: no other
	// write of the key comes between fn's read and its write, so
	// concurrent updates never lose one another's changes.
	Update(ctx context.Context, ns, group, key string, fn UpdateFunc) (Change, error)
	// List returns a group's values in key order.
	List(ctx context.Context, ns, group string) ([]Entry, error)
	// Groups lists the groups of ns that hold a value, sorted.
	Groups(ctx context.Context, ns string) ([]string, error)
	// Namespaces lists the namespaces starting with prefix that hold a
	// value, sorted.
	Namespaces(ctx context.Context, prefix string) ([]string, error)
}

// AsyncStore is implemented by stores that can take a write without
// waiting for it (the SQLite store's group-commit writer, Memory). done
// gets the write's outcome exactly once, possibly before the method
// returns, and must not block. Writes submitted one after another from
// one goroutine take effect, and are answered, in that order: the engine
// submits a connection's writes from its reader, so a client's writes are
// answered in the order it made them (a goroutine per write would let the
// Go scheduler reorder them).
type AsyncStore interface {
	SetAsync(ctx context.Context, ns, group, key string, value []byte, done func(Change, error))
	DeleteAsync(ctx context.Context, ns, group, key string, done func(Change, error))
	UpdateAsync(ctx context.Context, ns, group, key string, fn UpdateFunc, done func(Change, error))
}

// Async returns s as an AsyncStore: s itself when it is one, otherwise an
// adapter that runs each write on a goroutine of its own (answered in
// whatever order they finish).
func Async(s Store) AsyncStore {
	if a, ok := s.(AsyncStore); ok {
		return a
	}
	return goAsync{s}
}

type goAsync struct{ s Store }

func (g goAsync) SetAsync(ctx context.Context, ns, group, key string, value []byte, done func(Change, error)) {
	go func() { done(g.s.Set(ctx, ns, group, key, value)) }()
}

func (g goAsync) DeleteAsync(ctx context.Context, ns, group, key string, done func(Change, error)) {
	go func() { done(g.s.Delete(ctx, ns, group, key)) }()
}

func (g goAsync) UpdateAsync(ctx context.Context, ns, group, key string, fn UpdateFunc, done func(Change, error)) {
	go func() { done(g.s.Update(ctx, ns, group, key, fn)) }()
}
