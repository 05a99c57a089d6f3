package queue

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func openSQLiteT(t *testing.T) *SQLite {
	t.Helper()
	s, err := OpenSQLite(t.TempDir(), SyncNormal)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fileState reads a job's state and attempts as stored in the file.
func fileState(t *testing.T, s *SQLite, id string) (state, attempts int) {
	t.Helper()
	if err := s.rdb.QueryRow(`SELECT state, attempts FROM jobs WHERE id = ?`, id).Scan(&state, &attempts); err != nil {
		t.Fatal(err)
	}
	return state, attempts
}

// A standard lease writes nothing: the job stays ready in the file, and
// the attempt is recorded only when a failure is (nack, bury).
func TestSQLiteStandardLeaseWritesNothing(t *testing.T) {
	s := openSQLiteT(t)
	ctx := context.Background()
	h := job("h", "q", "f", "")
	h.Leased = true
	mustEnqueue(t, s, job("a", "q", "f", ""), h)
	if js := lease(t, s, "q", t0, 10, false); ids(js) != "a " || js[0].Attempts != 1 {
		t.Fatalf("leased %+v", js)
	}
	for _, id := range []string{"a", "h"} {
		if st, n := fileState(t, s, id); st != stateReady || n != 0 {
			t.Fatalf("%s in the file: state %d attempts %d, want ready with none counted", id, st, n)
		}
	}
	if st := stats(t, s, "q"); st.Ready != 0 || st.Leased != 2 || st.Pending != 2 {
		t.Fatalf("stats %+v", st)
	}
	if err := s.Nack(ctx, "a", t0, "boom"); err != nil {
		t.Fatal(err)
	}
	if st, n := fileState(t, s, "a"); st != stateReady || n != 1 {
		t.Fatalf("after nack: state %d attempts %d, want ready with 1", st, n)
	}
	if err := s.Bury(ctx, "h", "dead", t0); err != nil {
		t.Fatal(err)
	}
	if st, n := fileState(t, s, "h"); st != stateDead || n != 1 {
		t.Fatalf("after bury: state %d attempts %d, want dead with 1", st, n)
	}
	if js := lease(t, s, "q", t0, 10, false); ids(js) != "a " || js[0].Attempts != 2 || js[0].LastError != "boom" {
		t.Fatalf("after nack %+v", js)
	}
	if err := s.Ack(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if st := stats(t, s, "q"); st.Pending != 0 || st.Dead != 1 {
		t.Fatalf("after ack %+v", st)
	}
}

// The lease cursor: rows made ready before it (an older job committed
// late, a release, a nack due at once) are found again; leased rows met
// again are skipped.
func TestSQLiteLeaseCursor(t *testing.T) {
	s := openSQLiteT(t)
	ctx := context.Background()
	mustEnqueue(t, s, job("a", "q", "f", ""), job("b", "q", "f", ""), job("c", "q", "f", ""))
	if js := lease(t, s, "q", t0, 2, false); ids(js) != "a b " {
		t.Fatalf("leased %q", ids(js))
	}
	old := job("old", "q", "f", "")
	old.VisibleAt = t0.Add(-time.Second) // enqueued earlier, committed after the lease
	mustEnqueue(t, s, old)
	if js := lease(t, s, "q", t0, 10, false); ids(js) != "c old " {
		t.Fatalf("leased %q, want c and old (not a, b again)", ids(js))
	}
	if js := lease(t, s, "q", t0, 10, false); len(js) != 0 {
		t.Fatalf("leased %q again", ids(js))
	}
	if err := s.Release(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Nack(ctx, "old", t0.Add(-time.Minute), "x"); err != nil {
		t.Fatal(err)
	}
	js := lease(t, s, "q", t0, 10, false)
	if ids(js) != "a old " || js[0].Attempts != 1 || js[1].Attempts != 2 {
		t.Fatalf("after release and nack %+v: want a (release not counted) and old (attempt 2)", js)
	}
	// A job due later: NextVisible skips the leased ones before it.
	later := job("later", "q", "f", "")
	later.VisibleAt = t0.Add(time.Hour)
	mustEnqueue(t, s, later)
	if v, ok, err := s.NextVisible(ctx, "q"); err != nil || !ok || !v.Equal(later.VisibleAt) {
		t.Fatalf("next visible %v %v %v, want %v", v, ok, err, later.VisibleAt)
	}
	if err := s.Ack(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	// A parked function's backlog: the job in flight stays leased.
	mustEnqueue(t, s, job("m1", "q", "missing", ""))
	if js := lease(t, s, "q", t0, 10, false); ids(js) != "m1 " {
		t.Fatalf("leased %q", ids(js))
	}
	mustEnqueue(t, s, job("m2", "q", "missing", ""))
	if n, err := s.ParkFunction(ctx, "q", "missing"); err != nil || n != 1 {
		t.Fatalf("park function %d %v, want 1 (m2; m1 is in flight)", n, err)
	}
	if st, _ := fileState(t, s, "m1"); st != stateReady {
		t.Fatalf("m1 in flight was parked: state %d", st)
	}
}

// A transaction that rolls back undoes its leases and acks in memory too:
// no job stays leased without a delivery, no ack is half done.
func TestSQLiteLeaseRollback(t *testing.T) {
	s := openSQLiteT(t)
	ctx := context.Background()
	mustEnqueue(t, s, job("a", "q", "f", ""), job("b", "q", "f", ""))
	boom := errors.New("boom")
	err := s.do(ctx, func(s *SQLite, ctx context.Context) error {
		if js, err := s.leaseMem(ctx, "q", ms(t0), 1, nil); err != nil || len(js) != 1 {
			return fmt.Errorf("lease in the failing transaction: %v %v", js, err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	js := lease(t, s, "q", t0, 10, false)
	if ids(js) != "a b " || js[0].Attempts != 1 {
		t.Fatalf("after a rolled back lease %+v: want a and b, first attempts", js)
	}
	err = s.do(ctx, func(s *SQLite, ctx context.Context) error {
		if err := ackOp("a")(s, ctx); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if js := lease(t, s, "q", t0, 10, false); len(js) != 0 {
		t.Fatalf("leased %q: the rolled back ack dropped a's lease", ids(js))
	}
	if err := s.Ack(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if st := stats(t, s, "q"); st.Pending != 1 || st.Leased != 1 {
		t.Fatalf("after the ack %+v: want b alone, leased", st)
	}
}

// A queue redefined fifo -> standard while a job is leased the fifo way
// (written to the file): once released it is ready again behind the
// standard cursor and the next lease must still find it. On ac3778f no
// lease did until a restart, redrive or unpark (Stats counted it ready).
func TestSQLiteWrittenLeaseReleasedBehindCursor(t *testing.T) {
	s := openSQLiteT(t)
	ctx := context.Background()
	mustEnqueue(t, s, job("a", "q", "f", "g:x"))
	if js := lease(t, s, "q", t0, 10, true); ids(js) != "a " {
		t.Fatalf("fifo leased %+v", js)
	}
	mustEnqueue(t, s, job("b", "q", "f", ""))
	if js := lease(t, s, "q", t0, 10, false); ids(js) != "b " {
		t.Fatalf("standard leased %+v", js)
	}
	if err := s.Release(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if js := lease(t, s, "q", t0, 10, false); ids(js) != "a " {
		t.Fatalf("after the release a standard lease got %q, want a", ids(js))
	}
}
