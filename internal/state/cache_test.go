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
