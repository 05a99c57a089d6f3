package queue

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/natsnode/natstest"
)

// phantomKV answers reads of some keys "not found": misses[key] times, or
// every time when negative.
type phantomKV struct {
	jetstream.KeyValue

	mu     sync.Mutex
	misses map[string]int
	reads  map[string]int
}

func (k *phantomKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	k.mu.Lock()
	n, ok := k.misses[key]
	k.reads[key]++
	miss := ok && (n < 0 || k.reads[key] <= n)
	k.mu.Unlock()
	if miss {
		return nil, jetstream.ErrKeyNotFound
	}
	return k.KeyValue.Get(ctx, key)
}

// waitStats polls the index's counts of queue q until ok accepts them
// (the background confirmation has no event to await), up to 10 s.
func waitStats(t *testing.T, s Store, q string, ok func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := stats(t, s, q)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %s: counts %+v not reached within 10 s", q, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestJetStreamPhantomsDoNotStall: index entries never found (their delete
// markers purged while the watcher was away) do not hold up the jobs
// behind them, in a lease or a dead-letter listing: both answer at once
// and the phantoms are forgotten in the background once not found for
// jsGoneConfirm. A trailing job skipped by a lease meanwhile is found by
// the background re-reads, and the dispatcher is told to look again.
// On d798691: each phantom cost the lease a full second inline (the real
// job came after 5 s), the dead-letter listing likewise.
func TestJetStreamPhantomsDoNotStall(t *testing.T) {
	n := natstest.Start(t)
	ctx := context.Background()
	s := openJetStream(t, n, "a")
	defer s.Close()
	const phantoms = 5
	misses := map[string]int{}
	var jobs, dead []NewJob
	for i := range phantoms {
		jobs = append(jobs, job(fmt.Sprintf("p%d", i), "q", "f", ""))
		dead = append(dead, job(fmt.Sprintf("d%d", i), "dq", "f", ""))
		misses[jobKey(fmt.Sprintf("p%d", i))] = -1
		misses[jobKey(fmt.Sprintf("d%d", i))] = -1
	}
	jobs = append(jobs, job("late", "q", "f", ""), job("real", "q", "f", ""))
	misses[jobKey("late")] = 2 // a trailing read: found by the third
	mustEnqueue(t, s, jobs...)
	mustEnqueue(t, s, append(dead, job("dreal", "dq", "f", ""))...)
	for _, j := range lease(t, s, "dq", t0.Add(time.Second), 10, false) {
		if err := s.Bury(ctx, j.ID, "boom", t0); err != nil {
			t.Fatal(err)
		}
	}
	woken := make(chan string, 16)
	s.Notify(func(q string, parked bool) {
		if !parked {
			woken <- q
		}
	})
	s.setBucket(&phantomKV{KeyValue: s.bucket(), misses: misses, reads: map[string]int{}})

	start := time.Now()
	got, err := s.Lease(ctx, "q", t0.Add(time.Second), LeaseOpts{Max: 2})
	if took := time.Since(start); err != nil || ids(got) != "real " || took > 1500*time.Millisecond {
		t.Fatalf("lease behind %d phantoms: %q %v after %s, want real within 1.5 s", phantoms, ids(got), err, took)
	}
	dstart := time.Now()
	ds, err := s.Dead(ctx, "dq", 0, -1)
	if took := time.Since(dstart); err != nil || len(ds) != 1 || ds[0].ID != "dreal" || took > 1500*time.Millisecond {
		t.Fatalf("dead listing with %d phantoms: %+v %v after %s, want dreal within 1.5 s", phantoms, ds, err, took)
	}

	// The trailing job: found in the background, the dispatcher woken.
	deadline := time.After(10 * time.Second)
	for {
		select {
		case q := <-woken:
			if q != "q" {
				continue
			}
		case <-deadline:
			t.Fatal("no wake-up for the trailing job within 10 s")
		}
		if got := lease(t, s, "q", t0.Add(time.Second), 2, false); ids(got) == "late " {
			break
		} else if len(got) != 0 {
			t.Fatalf("lease after the wake-up: %q, want late", ids(got))
		}
	}

	// The phantoms: forgotten, not before jsGoneConfirm.
	waitStats(t, s, "q", func(st Stats) bool { return st.Pending == 2 && st.Ready == 0 })
	waitStats(t, s, "dq", func(st Stats) bool { return st.Dead == 1 })
	if took := time.Since(start); took < jsGoneConfirm {
		t.Fatalf("phantoms forgotten after %s, before the %s of re-reads", took, jsGoneConfirm)
	}
}
