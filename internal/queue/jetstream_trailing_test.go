package queue

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/natsnode/natstest"
)

// trailingKV answers the first misses reads of a job "not found", as a
// read that trails the write does (misses < 0: every read); it counts the
// reads and reports the first on first.
type trailingKV struct {
	jetstream.KeyValue
	key    string
	misses int

	mu    sync.Mutex
	reads int
	first chan struct{}
}

func (k *trailingKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if key != k.key {
		return k.KeyValue.Get(ctx, key)
	}
	k.mu.Lock()
	k.reads++
	n := k.reads
	k.mu.Unlock()
	if n == 1 && k.first != nil {
		close(k.first)
	}
	if k.misses < 0 || n <= k.misses {
		return nil, jetstream.ErrKeyNotFound
	}
	return k.KeyValue.Get(ctx, key)
}

func (k *trailingKV) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.reads
}

// TestJetStreamLeaseReadTrailing: a read that does not find a job the
// index holds (it trails the write: seen in the interop cluster topic test,
// a job not found once, found by the next read) does not make the index
// forget the job: Lease reads again and hands it out. On 957c0ee the first
// miss dropped the job from the index for good (Lease got nothing, then and
// later, while the job stayed stored: delivered by none).
func TestJetStreamLeaseReadTrailing(t *testing.T) {
	n := natstest.Start(t)
	ctx := context.Background()
	s := openJetStream(t, n, "a")
	defer s.Close()
	mustEnqueue(t, s, job("j1", "q", "f", ""))
	kv := &trailingKV{KeyValue: s.bucket(), key: jobKey("j1"), misses: 2}
	s.setBucket(kv)
	jobs, err := s.Lease(ctx, "q", t0.Add(time.Second), LeaseOpts{Max: 1})
	if err != nil || len(jobs) != 1 || jobs[0].ID != "j1" {
		t.Fatalf("lease after two missed reads: %+v %v, want j1", jobs, err)
	}
	if kv.count() != 3 {
		t.Fatalf("%d reads, want 3 (two misses, then found)", kv.count())
	}
}

// TestJetStreamGoneJobForgotten: a job the index holds that stays not found
// for jsGoneConfirm (its delete marker purged while the watcher was away)
// is forgotten: in the background after a lease skipped it, or before a
// call for that one job answers; one whose delete the watcher brings
// meanwhile is not read again; a read whose context ends is not taken for
// a confirmation.
func TestJetStreamGoneJobForgotten(t *testing.T) {
	n := natstest.Start(t)
	ctx := context.Background()
	s := openJetStream(t, n, "a")
	defer s.Close()
	mustEnqueue(t, s, job("ghost", "q", "f", ""), job("deleted", "q2", "f", ""), job("kept", "q3", "f", ""),
		job("ghost2", "q4", "f", ""))
	real := s.bucket()

	kv := &trailingKV{KeyValue: real, key: jobKey("ghost"), misses: -1}
	s.setBucket(kv)
	start := time.Now()
	jobs, err := s.Lease(ctx, "q", t0.Add(time.Second), LeaseOpts{Max: 1})
	if took := time.Since(start); err != nil || len(jobs) != 0 || took >= jsGoneConfirm {
		t.Fatalf("lease of a job never found: %+v %v after %s, want none before %s", jobs, err, took, jsGoneConfirm)
	}
	waitStats(t, s, "q", func(st Stats) bool { return st.Pending == 0 })
	if took := time.Since(start); took < jsGoneConfirm || kv.count() < 3 {
		t.Fatalf("forgotten after %s and %d reads, want %s of re-reads", took, kv.count(), jsGoneConfirm)
	}

	kv = &trailingKV{KeyValue: real, key: jobKey("ghost2"), misses: -1}
	s.setBucket(kv)
	start = time.Now()
	if ok, err := s.Discard(ctx, "q4", "ghost2"); ok || err != nil {
		t.Fatalf("discard of a job never found: %v %v", ok, err)
	}
	if took := time.Since(start); took < jsGoneConfirm || kv.count() < 3 {
		t.Fatalf("discard answered after %s and %d reads, want %s of re-reads", took, kv.count(), jsGoneConfirm)
	}
	if st := stats(t, s, "q4"); st.Pending != 0 {
		t.Fatalf("the gone job is still counted: %+v", st)
	}

	// The watcher brings the job's delete while it is read again.
	kv = &trailingKV{KeyValue: real, key: jobKey("deleted"), misses: -1, first: make(chan struct{})}
	s.setBucket(kv)
	done := make(chan []Job)
	go func() {
		jobs, _ := s.Lease(ctx, "q2", t0.Add(time.Second), LeaseOpts{Max: 1})
		done <- jobs
	}()
	<-kv.first
	s.mu.Lock()
	s.applyLocked("deleted", nil, s.jobs["deleted"].rev+1)
	s.mu.Unlock()
	if jobs := <-done; len(jobs) != 0 || kv.count() > 2 {
		t.Fatalf("lease of a job whose delete arrived: %+v after %d reads, want none after at most 2", jobs, kv.count())
	}

	// The caller gives up while the job is read again: it stays indexed.
	kv = &trailingKV{KeyValue: real, key: jobKey("kept"), misses: -1}
	s.setBucket(kv)
	cctx, cancel := context.WithTimeout(ctx, 120*time.Millisecond)
	defer cancel()
	if _, err := s.Lease(cctx, "q3", t0.Add(time.Second), LeaseOpts{Max: 1}); err == nil {
		t.Fatal("a lease whose context ended while confirming answered no error")
	}
	s.setBucket(real)
	jobs, err = s.Lease(ctx, "q3", t0.Add(time.Second), LeaseOpts{Max: 1})
	if err != nil || len(jobs) != 1 || jobs[0].ID != "kept" {
		t.Fatalf("lease after an interrupted confirmation: %+v %v, want kept", jobs, err)
	}
}
