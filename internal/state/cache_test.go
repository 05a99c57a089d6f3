package state_test

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice/internal/state"
)

// TestReadsMonotonic: with writers incrementing one key and readers
// reading it all along, no reader ever sees the value go back, and a
// writer reads at least what its own write produced (the SQLite store
// answers Gets from a cache the writer keeps; a failed write leaves it
// right too).
func TestReadsMonotonic(t *testing.T) {
	stores(t, func(t *testing.T, s state.Store) {
		const writers, readers, n = 4, 4, 250
		incr := func(old []byte, had bool) ([]byte, bool, error) {
			v := 0
			if had {
				v, _ = strconv.Atoi(string(old))
			}
			return []byte(strconv.Itoa(v + 1)), true, nil
		}
		boom := errors.New("boom")
		read := func() int {
			v, ok, err := s.Get(ctx, "ns", "g", "c")
			if err != nil {
				t.Error(err)
				return -1
			}
			if !ok {
				return 0
			}
			i, _ := strconv.Atoi(string(v))
			return i
		}
		var done atomic.Bool
		var wg, rg sync.WaitGroup
		for range readers {
			rg.Add(1)
			go func() {
				defer rg.Done()
				last := 0
				for !done.Load() {
					v := read()
					if v < last {
						t.Errorf("read %d after %d", v, last)
						return
					}
					last = v
				}
			}()
		}
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range n {
					if i%50 == w {
						if _, err := s.Update(ctx, "ns", "g", "c", func([]byte, bool) ([]byte, bool, error) { return nil, false, boom }); !errors.Is(err, boom) {
							t.Errorf("failing update: %v", err)
						}
					}
					ch, err := s.Update(ctx, "ns", "g", "c", incr)
					if err != nil {
						t.Error(err)
						return
					}
					mine, _ := strconv.Atoi(string(ch.New))
					if got := read(); got < mine {
						t.Errorf("wrote %d, then read %d", mine, got)
						return
					}
				}
			}()
		}
		wg.Wait()
		done.Store(true)
		rg.Wait()
		if got := read(); got != writers*n {
			t.Fatalf("final value %d, want %d", got, writers*n)
		}
		if _, err := s.Delete(ctx, "ns", "g", "c"); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := s.Get(ctx, "ns", "g", "c"); ok {
			t.Fatal("a deleted key is still read")
		}
	})
}

// TestWriteOldValuesFromCache: a write whose key is cached takes its old
// value from the cache instead of reading SQLite; chained writes of one
// key submitted together (one commit), a delete among them, and a write
// after a failed update each report the old value the one before left.
func TestWriteOldValuesFromCache(t *testing.T) {
	s := openSQLite(t, t.TempDir())
	if _, err := s.Set(ctx, "ns", "g", "k", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := s.Get(ctx, "ns", "g", "k"); string(v) != "1" { // cached now
		t.Fatalf("get: %s", v)
	}
	s.Get(ctx, "ns", "g", "absent") // absence cached too
	type got struct {
		ch  state.Change
		err error
	}
	const n = 50
	res := make([]chan got, 0, 2*n+2)
	submit := func(f func(done func(state.Change, error))) {
		c := make(chan got, 1)
		res = append(res, c)
		f(func(ch state.Change, err error) { c <- got{ch, err} })
	}
	boom := errors.New("boom")
	for i := 2; i <= n; i++ {
		v := []byte(strconv.Itoa(i))
		submit(func(done func(state.Change, error)) { s.SetAsync(ctx, "ns", "g", "k", v, done) })
		if i == n/2 {
			submit(func(done func(state.Change, error)) { s.DeleteAsync(ctx, "ns", "g", "k", done) })
			submit(func(done func(state.Change, error)) {
				s.UpdateAsync(ctx, "ns", "g", "k", func([]byte, bool) ([]byte, bool, error) { return nil, false, boom }, done)
			})
		}
	}
	submit(func(done func(state.Change, error)) { s.SetAsync(ctx, "ns", "g", "absent", []byte("x"), done) })
	want := "1"
	i := 2
	for j, c := range res {
		r := <-c
		switch {
		case j == len(res)-1: // the key cached as absent
			if r.err != nil || r.ch.Had {
				t.Errorf("set of an absent key: %+v %v", r.ch, r.err)
			}
		case errors.Is(r.err, boom):
		case r.err != nil:
			t.Fatalf("write %d: %v", j, r.err)
		case !r.ch.Has: // the delete
			if !r.ch.Had || string(r.ch.Old) != want {
				t.Errorf("delete: old %q (had %v), want %q", r.ch.Old, r.ch.Had, want)
			}
			want = ""
		default:
			if (want == "") == r.ch.Had || string(r.ch.Old) != want {
				t.Errorf("set %d: old %q (had %v), want %q", i, r.ch.Old, r.ch.Had, want)
			}
			want = strconv.Itoa(i)
			i++
		}
	}
}
