package queue

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestWriteAsyncOrder: writes submitted from one goroutine are answered in
// submission order, also when one of a batch fails and the batch is rerun
// one by one; the failing ones alone fail.
func TestWriteAsyncOrder(t *testing.T) {
	s, err := OpenSQLite(t.TempDir(), SyncNormal)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Write(ctx, func(ctx context.Context, c *sql.Conn) error {
		_, err := c.ExecContext(ctx, `CREATE TABLE t (i INTEGER)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	const n = 3000
	boom := errors.New("boom")
	var mu sync.Mutex
	var got []int
	all := make(chan struct{})
	for i := range n {
		s.WriteAsync(ctx, func(ctx context.Context, c *sql.Conn) error {
			if i%97 == 0 {
				return boom
			}
			_, err := c.ExecContext(ctx, `INSERT INTO t VALUES (?)`, i)
			return err
		}, func(err error) {
			if (i%97 == 0) != errors.Is(err, boom) || (err != nil && !errors.Is(err, boom)) {
				t.Errorf("write %d: %v", i, err)
			}
			mu.Lock()
			got = append(got, i)
			if len(got) == n {
				close(all)
			}
			mu.Unlock()
		})
	}
	select {
	case <-all:
	case <-time.After(30 * time.Second):
		t.Fatal("not all writes answered")
	}
	for k, i := range got {
		if k != i {
			t.Fatalf("answer %d is write %d's: out of submission order", k, i)
		}
	}
	var rows int
	if err := s.ReadDB().QueryRow(`SELECT COUNT(*) FROM t`).Scan(&rows); err != nil || rows != n-(n+96)/97 {
		t.Fatalf("%d rows (err %v), want %d", rows, err, n-(n+96)/97)
	}
}

// TestWriteAsyncClose: writes racing Close are each answered exactly once
// (committed or ErrClosed), none forgotten.
func TestWriteAsyncClose(t *testing.T) {
	s, err := OpenSQLite(t.TempDir(), SyncNormal)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	var wg sync.WaitGroup
	wg.Add(n)
	var mu sync.Mutex
	answered := map[int]int{}
	go func() {
		for i := range n {
			s.WriteAsync(context.Background(), func(context.Context, *sql.Conn) error { return nil }, func(err error) {
				if err != nil && !errors.Is(err, ErrClosed) {
					t.Errorf("write %d: %v", i, err)
				}
				mu.Lock()
				answered[i]++
				mu.Unlock()
				wg.Done()
			})
		}
	}()
	s.Close()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		mu.Lock()
		t.Fatalf("%d of %d writes answered", len(answered), n)
	}
	for i, c := range answered {
		if c != 1 {
			t.Fatalf("write %d answered %d times", i, c)
		}
	}
}
