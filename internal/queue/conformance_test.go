package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/natsnode"
	"github.com/sluicehq/sluice/internal/natsnode/natstest"
)

// stores runs f against every Store implementation.
func stores(t *testing.T, f func(t *testing.T, s Store)) {
	t.Run("memory", func(t *testing.T) {
		s := NewMemory()
		defer s.Close()
		f(t, s)
	})
	t.Run("sqlite", func(t *testing.T) {
		s, err := OpenSQLite(t.TempDir(), SyncNormal)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		f(t, s)
	})
	t.Run("jetstream", func(t *testing.T) {
		s := openJetStream(t, natstest.Start(t), "node-1")
		defer s.Close()
		f(t, s)
	})
}

func openJetStream(t *testing.T, n *natsnode.Node, node string) *JetStream {
	t.Helper()
	s, err := OpenJetStream(context.Background(), n.JS, JetStreamBucket, node, 1)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var t0 = time.UnixMilli(1_800_000_000_000)

func job(id, q, fn, grp string) NewJob {
	return NewJob{ID: id, Queue: q, FunctionID: fn, Group: grp, Data: []byte(`{"id":"` + id + `"}`), VisibleAt: t0, Traceparent: "tp-" + id}
}

func mustEnqueue(t *testing.T, s Store, jobs ...NewJob) {
	t.Helper()
	if _, err := s.Enqueue(context.Background(), jobs); err != nil {
		t.Fatal(err)
	}
}

func lease(t *testing.T, s Store, q string, now time.Time, max int, fifo bool) []Job {
	t.Helper()
	js, err := s.Lease(context.Background(), q, now, LeaseOpts{Max: max, FIFO: fifo})
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func ids(js []Job) string {
	out := ""
	for _, j := range js {
		out += j.ID + " "
	}
	return out
}

func stats(t *testing.T, s Store, q string) Stats {
	t.Helper()
	st, err := s.Stats(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestStoreLeaseAck(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		mustEnqueue(t, s, job("a", "q", "f", ""), job("b", "q", "f", ""), job("c", "other", "f", ""))
		mustEnqueue(t, s, job("a", "q", "g", "")) // same id: skipped
		js := lease(t, s, "q", t0, 10, false)
		if ids(js) != "a b " {
			t.Fatalf("leased %q, want a b", ids(js))
		}
		if js[0].Attempts != 1 || js[0].FunctionID != "f" || string(js[0].Data) != `{"id":"a"}` || js[0].Traceparent != "tp-a" {
			t.Fatalf("job %+v", js[0])
		}
		if again := lease(t, s, "q", t0, 10, false); len(again) != 0 {
			t.Fatalf("leased jobs leased again: %q", ids(again))
		}
		if st := stats(t, s, "q"); st.Leased != 2 || st.Pending != 2 {
			t.Fatalf("stats %+v", st)
		}
		if err := s.Ack(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if err := s.Ack(ctx, "c"); err != nil { // not leased: no-op
			t.Fatal(err)
		}
		if st := stats(t, s, "q"); st.Leased != 1 || st.Pending != 1 {
			t.Fatalf("stats after ack %+v", st)
		}
		if st := stats(t, s, "other"); st.Ready != 1 {
			t.Fatalf("other queue %+v", st)
		}
		qs, err := s.Queues(ctx)
		if err != nil || fmt.Sprint(qs) != "[other q]" {
			t.Fatalf("queues %v %v", qs, err)
		}
	})
}

func TestStoreNackReleaseDelay(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		later := job("late", "q", "f", "")
		later.VisibleAt = t0.Add(time.Minute)
		mustEnqueue(t, s, job("a", "q", "f", ""), later)
		if nv, ok, err := s.NextVisible(ctx, "q"); err != nil || !ok || !nv.Equal(t0) {
			t.Fatalf("next visible %v %v %v", nv, ok, err)
		}
		if js := lease(t, s, "q", t0, 10, false); ids(js) != "a " {
			t.Fatalf("leased %q: a delayed job went early", ids(js))
		}
		if err := s.Nack(ctx, "a", t0.Add(time.Second), "boom"); err != nil {
			t.Fatal(err)
		}
		if js := lease(t, s, "q", t0, 10, false); len(js) != 0 {
			t.Fatalf("nacked job leased before its retry time: %q", ids(js))
		}
		js := lease(t, s, "q", t0.Add(time.Second), 10, false)
		if ids(js) != "a " || js[0].Attempts != 2 || js[0].LastError != "boom" {
			t.Fatalf("retry %+v", js)
		}
		if err := s.Release(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		js = lease(t, s, "q", t0.Add(2*time.Minute), 10, false)
		if ids(js) != "a late " || js[0].Attempts != 2 {
			t.Fatalf("after release %+v (attempts must not count a release)", js)
		}
	})
}

func TestStoreParkUnpark(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		mustEnqueue(t, s, job("a", "q", "missing", ""), job("b", "q", "f", ""))
		lease(t, s, "q", t0, 10, false)
		if err := s.Park(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if js := lease(t, s, "q", t0, 10, false); len(js) != 0 {
			t.Fatalf("parked job leased: %q", ids(js))
		}
		fns, err := s.ParkedFunctions(ctx)
		if err != nil || fmt.Sprint(fns) != "[missing]" {
			t.Fatalf("parked functions %v %v", fns, err)
		}
		if st := stats(t, s, "q"); st.Parked != 1 || st.Pending != 2 {
			t.Fatalf("stats %+v", st)
		}
		if n, err := s.Unpark(ctx, "missing"); err != nil || n != 1 {
			t.Fatalf("unpark %d %v", n, err)
		}
		js := lease(t, s, "q", t0, 10, false)
		if ids(js) != "a " || js[0].Attempts != 1 {
			t.Fatalf("after unpark %+v (a park must not spend an attempt)", js)
		}
		// A backlog for a missing function is parked in one go.
		mustEnqueue(t, s, job("c", "q", "missing", ""), job("d", "q", "missing", ""), job("e", "q", "f", ""), job("x", "other", "missing", ""))
		if n, err := s.ParkFunction(ctx, "q", "missing"); err != nil || n != 2 {
			t.Fatalf("park function %d %v", n, err)
		}
		if js := lease(t, s, "q", t0, 10, false); ids(js) != "e " {
			t.Fatalf("after park function leased %q, want e", ids(js))
		}
		if n, _ := s.Unpark(ctx, "missing"); n != 2 { // c and d; x, in another queue, was not parked
			t.Fatalf("unparked %d, want 2", n)
		}
	})
}

func TestStoreDeadLetters(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		mustEnqueue(t, s, job("a", "q", "f", ""), job("b", "q", "f", ""), job("c", "q", "f", ""))
		lease(t, s, "q", t0, 10, false)
		for i, id := range []string{"a", "b", "c"} {
			if err := s.Bury(ctx, id, "err-"+id, t0.Add(time.Duration(i)*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		if st := stats(t, s, "q"); st.Dead != 3 || st.Pending != 0 {
			t.Fatalf("stats %+v", st)
		}
		dead, err := s.Dead(ctx, "q", 0, 2)
		if err != nil || len(dead) != 2 || dead[0].ID != "c" || dead[0].Error != "err-c" || !dead[0].FailedAt.Equal(t0.Add(2*time.Second)) || dead[0].Attempts != 1 {
			t.Fatalf("dead %+v %v", dead, err)
		}
		if dead, _ := s.Dead(ctx, "q", 2, 10); len(dead) != 1 || dead[0].ID != "a" {
			t.Fatalf("dead page 2 %+v", dead)
		}
		if js := lease(t, s, "q", t0.Add(time.Hour), 10, false); len(js) != 0 {
			t.Fatalf("dead job leased: %q", ids(js))
		}
		if ok, err := s.Discard(ctx, "q", "b"); err != nil || !ok {
			t.Fatalf("discard %v %v", ok, err)
		}
		if ok, _ := s.Discard(ctx, "q", "b"); ok {
			t.Fatal("discarded twice")
		}
		if ok, err := s.RedriveOne(ctx, "q", "a", t0); err != nil || !ok {
			t.Fatalf("redrive one %v %v", ok, err)
		}
		if ok, _ := s.RedriveOne(ctx, "other", "c", t0); ok {
			t.Fatal("redrove a job of another queue")
		}
		if n, err := s.Redrive(ctx, "q", t0); err != nil || n != 1 {
			t.Fatalf("redrive %d %v", n, err)
		}
		js := lease(t, s, "q", t0, 10, false)
		if ids(js) != "a c " || js[0].Attempts != 1 {
			t.Fatalf("redriven %+v (attempts must restart)", js)
		}
	})
}

func TestStoreFIFO(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		mustEnqueue(t, s, job("a1", "q", "f", "a"), job("b1", "q", "f", "b"), job("a2", "q", "f", "a"), job("a3", "q", "f", "a"), job("b2", "q", "f", "b"))
		if js := lease(t, s, "q", t0, 10, true); ids(js) != "a1 b1 " {
			t.Fatalf("fifo lease %q, want one head per group", ids(js))
		}
		if js := lease(t, s, "q", t0, 10, true); len(js) != 0 {
			t.Fatalf("a group with a leased job gave another: %q", ids(js))
		}
		_ = s.Ack(ctx, "a1")
		// b1 fails and backs off: its group waits, a goes on.
		_ = s.Nack(ctx, "b1", t0.Add(time.Minute), "x")
		if js := lease(t, s, "q", t0, 10, true); ids(js) != "a2 " {
			t.Fatalf("after ack/nack %q, want a2 (b blocked behind its retry)", ids(js))
		}
		_ = s.Bury(ctx, "a2", "dead", t0)
		if js := lease(t, s, "q", t0, 10, true); ids(js) != "a3 " {
			t.Fatalf("after bury %q, want a3 (a dead job no longer blocks)", ids(js))
		}
		if js := lease(t, s, "q", t0.Add(time.Minute), 10, true); ids(js) != "b1 " {
			t.Fatalf("retry %q, want b1 before b2", ids(js))
		}
	})
}

func TestStoreRecoverAndDefs(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		mustEnqueue(t, s, job("a", "q", "f", ""))
		lease(t, s, "q", t0, 10, false)
		if n, err := s.Recover(ctx); err != nil || n != 1 {
			t.Fatalf("recover %d %v", n, err)
		}
		// SQLite keeps standard leases in memory: a recovered one's attempt
		// is not counted.
		want := 2
		if _, ok := s.(*SQLite); ok {
			want = 1
		}
		if js := lease(t, s, "q", t0, 10, false); ids(js) != "a " || js[0].Attempts != want {
			t.Fatalf("recovered %+v, want attempts %d", js, want)
		}
		if err := s.SaveQueue(ctx, "x", []byte(`{"a":1}`)); err != nil {
			t.Fatal(err)
		}
		_ = s.SaveQueue(ctx, "x", []byte(`{"a":2}`))
		defs, err := s.LoadQueues(ctx)
		if err != nil || len(defs) != 1 || string(defs["x"]) != `{"a":2}` {
			t.Fatalf("defs %q %v", defs, err)
		}
	})
}

func TestStoreConcurrentEnqueue(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		var wg sync.WaitGroup
		for p := 0; p < 32; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 20; i++ {
					if _, err := s.Enqueue(context.Background(), []NewJob{job(fmt.Sprintf("p%d-%d", p, i), "q", "f", "")}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if st := stats(t, s, "q"); st.Ready != 640 {
			t.Fatalf("stored %d of 640", st.Ready)
		}
	})
}

// An acknowledged enqueue survives closing and reopening the file; a
// standard lease held when the store was closed left nothing behind (it
// lived in memory: the job is ready, its attempt not counted) and a FIFO
// lease is recovered with its attempt counted.
func TestSQLiteReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSQLite(dir, SyncFull)
	if err != nil {
		t.Fatal(err)
	}
	h := job("h", "q", "f", "")
	h.Leased = true
	mustEnqueue(t, s, job("a", "q", "f", ""), job("b", "q", "f", ""), job("f1", "fq", "f", "g"), h)
	if js := lease(t, s, "q", t0, 1, false); ids(js) != "a " || js[0].Attempts != 1 {
		t.Fatalf("leased %+v", js)
	}
	if js := lease(t, s, "fq", t0, 1, true); ids(js) != "f1 " {
		t.Fatalf("fifo leased %q", ids(js))
	}
	s.Close()
	if _, err := s.Enqueue(context.Background(), []NewJob{job("c", "q", "f", "")}); err != ErrClosed {
		t.Fatalf("enqueue on closed store: %v", err)
	}
	s, err = OpenSQLite(dir, SyncNormal)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, _ := s.Recover(context.Background()); n != 1 {
		t.Fatalf("recovered %d leases, want 1 (the fifo one)", n)
	}
	js := lease(t, s, "q", t0, 10, false)
	if ids(js) != "a b h " || js[0].Attempts != 1 || js[2].Attempts != 1 {
		t.Fatalf("after reopen %+v: want a, b and h, none with an attempt counted", js)
	}
	if js := lease(t, s, "fq", t0, 10, true); ids(js) != "f1 " || js[0].Attempts != 2 {
		t.Fatalf("fifo after reopen %+v", js)
	}
}

func TestSQLiteBadSyncMode(t *testing.T) {
	if _, err := OpenSQLite(t.TempDir(), "sometimes"); err == nil {
		t.Fatal("accepted sync mode \"sometimes\"")
	}
}

func TestStoreDedup(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		until := time.Now().Add(time.Hour)
		a := job("a", "q", "f", "")
		a.DedupKey, a.DedupUntil = "k1", until
		b := job("b", "q", "f", "")
		b.DedupKey, b.DedupUntil = "k1", until
		other := job("o", "other", "f", "")
		other.DedupKey, other.DedupUntil = "k1", until
		expired := job("x", "q", "f", "")
		expired.DedupKey, expired.DedupUntil = "k2", time.Now().Add(-time.Second)
		again := job("y", "q", "f", "")
		again.DedupKey, again.DedupUntil = "k2", until
		ids, err := s.Enqueue(ctx, []NewJob{a, b, other, expired, again})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(ids) != "[a a o x y]" {
			t.Fatalf("ids %v: want b deduplicated to a, other queues and expired keys apart", ids)
		}
		if ids, _ := s.Enqueue(ctx, []NewJob{b}); fmt.Sprint(ids) != "[a]" {
			t.Fatalf("repeat in a later commit: %v", ids)
		}
		if st := stats(t, s, "q"); st.Ready != 3 {
			t.Fatalf("stored %d jobs in q, want 3 (a, x, y)", st.Ready)
		}
	})
}

func TestStoreEnqueueLeased(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		j := job("a", "q", "f", "")
		j.Leased = true
		mustEnqueue(t, s, j, job("b", "q", "f", ""))
		if js := lease(t, s, "q", t0, 10, false); ids(js) != "b " {
			t.Fatalf("leased %q: a job stored leased was leased again", ids(js))
		}
		if st := stats(t, s, "q"); st.Leased != 2 {
			t.Fatalf("stats %+v", st)
		}
		if err := s.Nack(ctx, "a", t0, "x"); err != nil {
			t.Fatal(err)
		}
		if js := lease(t, s, "q", t0, 10, false); ids(js) != "a " || js[0].Attempts != 2 {
			t.Fatalf("after nack %+v: the hand-off must count as the first attempt", js)
		}
		if n, _ := s.Recover(ctx); n != 2 {
			t.Fatalf("recovered %d, want 2", n)
		}
	})
}

// TestStoreClosed: after Close every operation fails with ErrClosed (the
// engine treats that as shutdown, not as a failed delivery), and Close may
// be called again.
func TestStoreClosed(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		mustEnqueue(t, s, job("a", "q", "f", ""))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		errOf := func(_ any, err error) error { return err }
		for name, err := range map[string]error{
			"Enqueue":         errOf(s.Enqueue(ctx, []NewJob{job("b", "q", "f", "")})),
			"Lease":           errOf(s.Lease(ctx, "q", t0, LeaseOpts{Max: 1})),
			"Ack":             s.Ack(ctx, "a"),
			"Nack":            s.Nack(ctx, "a", t0, "x"),
			"Release":         s.Release(ctx, "a"),
			"Park":            s.Park(ctx, "a"),
			"ParkFunction":    errOf(s.ParkFunction(ctx, "q", "f")),
			"Unpark":          errOf(s.Unpark(ctx, "f")),
			"ParkedFunctions": errOf(s.ParkedFunctions(ctx)),
			"Bury":            s.Bury(ctx, "a", "x", t0),
			"Dead":            errOf(s.Dead(ctx, "q", 0, 10)),
			"Redrive":         errOf(s.Redrive(ctx, "q", t0)),
			"RedriveOne":      errOf(s.RedriveOne(ctx, "q", "a", t0)),
			"Discard":         errOf(s.Discard(ctx, "q", "a")),
			"Stats":           errOf(s.Stats(ctx, "q")),
			"Queues":          errOf(s.Queues(ctx)),
			"Recover":         errOf(s.Recover(ctx)),
			"SaveQueue":       s.SaveQueue(ctx, "q", []byte(`{}`)),
			"LoadQueues":      errOf(s.LoadQueues(ctx)),
		} {
			if !errors.Is(err, ErrClosed) {
				t.Errorf("%s after Close: %v, want ErrClosed", name, err)
			}
		}
		_, _, err := s.NextVisible(ctx, "q")
		if !errors.Is(err, ErrClosed) {
			t.Errorf("NextVisible after Close: %v, want ErrClosed", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}
