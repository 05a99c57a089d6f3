package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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

// TestSQLiteAsyncEnqueueAck: EnqueueAsync reports the committed ids (a
// deduplicated job the first one's), AfterCommit runs after the callbacks
// of each commit and before the next commit's, AckAsync removes the leased
// job, and a closed store fails both.
func TestSQLiteAsyncEnqueueAck(t *testing.T) {
	s, err := OpenSQLite(t.TempDir(), SyncNormal)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The callbacks and AfterCommit run on the writer goroutine only, one
	// after the other: pending needs no lock.
	pending, flushed := 0, make(chan int, 1024)
	s.AfterCommit(func() {
		flushed <- pending
		pending = 0
	})
	const n = 200
	got := make(chan string, n)
	for i := range n {
		j := job(fmt.Sprintf("j%03d", i), "q", "f", "")
		if i%2 == 1 {
			j.DedupKey, j.DedupUntil = fmt.Sprintf("k%d", i-1), time.Now().Add(time.Minute)
		}
		if i%2 == 0 {
			j.DedupKey, j.DedupUntil = fmt.Sprintf("k%d", i), time.Now().Add(time.Minute)
		}
		s.EnqueueAsync(ctx, []NewJob{j}, func(ids []string, err error) {
			if err != nil {
				t.Errorf("enqueue %s: %v", j.ID, err)
			}
			pending++
			got <- ids[0]
		})
	}
	answered := 0
	for answered < n {
		select {
		case k := <-flushed:
			answered += k
		case <-time.After(10 * time.Second):
			t.Fatalf("AfterCommit reported %d of %d answers", answered, n)
		}
	}
	for i := range n {
		id := <-got
		// Odd jobs repeat the even one's dedup key: answered with its id.
		if want := fmt.Sprintf("j%03d", i-i%2); id != want {
			t.Fatalf("answer %d: id %s, want %s", i, id, want)
		}
	}
	if st := stats(t, s, "q"); st.Ready != n/2 {
		t.Fatalf("stored %+v, want %d ready", st, n/2)
	}
	leased := lease(t, s, "q", t0, n, false)
	if len(leased) != n/2 {
		t.Fatalf("leased %d, want %d", len(leased), n/2)
	}
	<-flushed // the lease's commit
	acked := make(chan error, len(leased))
	for _, j := range leased {
		s.AckAsync(ctx, j.ID, func(err error) { acked <- err })
	}
	for range leased {
		if err := <-acked; err != nil {
			t.Fatal(err)
		}
	}
	if st := stats(t, s, "q"); st.Pending != 0 {
		t.Fatalf("after the acks %+v", st)
	}
	s.Close()
	fails := make(chan error, 2)
	s.EnqueueAsync(ctx, []NewJob{job("late", "q", "f", "")}, func(_ []string, err error) { fails <- err })
	s.AckAsync(ctx, "late", func(err error) { fails <- err })
	for range 2 {
		if err := <-fails; !errors.Is(err, ErrClosed) {
			t.Fatalf("write on a closed store: %v, want ErrClosed", err)
		}
	}
}
