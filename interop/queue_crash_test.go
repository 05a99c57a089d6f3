package interop

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sluice "github.com/sluicehq/sluice"
)

// TestQueueCrashRedelivery: 10,000 jobs enqueued by 16 concurrent Go
// producers while a Go consumer runs; the engine is killed with SIGKILL at
// a random moment and restarted on the same data directory and address.
// Every job whose enqueue was acknowledged is delivered at least once;
// duplicates (jobs in flight at the kill, or re-enqueued by a producer
// whose answer was lost) are reported in the log.
//
// On 97af979 (before queues) no enqueue was ever acknowledged.
func TestQueueCrashRedelivery(t *testing.T) {
	const total, producers = 10_000, 16
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	killAfter := int64(1000 + rng.IntN(6000))
	t.Logf("seed %d: SIGKILL after %d acknowledged enqueues", seed, killAfter)

	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("queues:\n  crash:\n    concurrency: 32\n    backoff_ms: 10\n    max_retries: 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", cfg, "--data-dir", data}
	e1 := startEngine(t, "127.0.0.1:0", args...)
	ctx := ctxFor(t, 60*time.Second)

	var mu sync.Mutex
	delivered := make([]int, total)
	var distinct atomic.Int64
	allDone := make(chan struct{})
	consumer := connectGo(t, e1, "crash-consumer")
	err := sluice.Register(consumer, "crash::job", func(ctx context.Context, in struct{ N int }) (any, error) {
		mu.Lock()
		delivered[in.N]++
		first := delivered[in.N] == 1
		mu.Unlock()
		if first && distinct.Add(1) == total {
			close(allDone)
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctx, t, consumer, "crash::job")

	acked := make([]atomic.Bool, total)
	var nAcked, reEnqueued atomic.Int64
	killed := make(chan struct{})
	var killOnce sync.Once
	kill := func() {
		killOnce.Do(func() {
			e1.kill()
			<-e1.exited
			close(killed)
		})
	}
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		c := connectGo(t, e1, "crash-producer")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := p; n < total; n += producers {
				for tries := 0; ; tries++ {
					if ctx.Err() != nil {
						return
					}
					if tries > 0 {
						reEnqueued.Add(1)
					}
					cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
					_, err := c.Enqueue(cctx, "crash", "crash::job", map[string]int{"n": n})
					cancel()
					if err == nil {
						acked[n].Store(true)
						if nAcked.Add(1) == killAfter {
							go kill()
						}
						break
					}
					// Refused while the engine is down: wait for the restart.
					select {
					case <-ctx.Done():
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		}()
	}

	select {
	case <-killed:
	case <-ctx.Done():
		t.Fatalf("engine never killed: %d acknowledged", nAcked.Load())
	}
	mu.Lock()
	atKill := int(distinct.Load())
	mu.Unlock()
	ackedAtKill := nAcked.Load()
	t.Logf("killed: %d enqueues acknowledged, %d jobs delivered", ackedAtKill, atKill)

	// Restart on the same data directory and address; clients reconnect.
	startEngine(t, e1.Addr, args...)
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("producers did not finish: %d of %d acknowledged", nAcked.Load(), total)
	}
	select {
	case <-allDone:
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	missing, dups := 0, 0
	for n := range total {
		if !acked[n].Load() {
			t.Fatalf("job %d was never acknowledged", n)
		}
		switch {
		case delivered[n] == 0:
			missing++
		case delivered[n] > 1:
			dups += delivered[n] - 1
		}
	}
	t.Logf("after restart: %d jobs, %d missing, %d duplicate deliveries, %d enqueue retries after a refused/lost answer",
		total, missing, dups, reEnqueued.Load())
	if missing > 0 {
		t.Fatalf("%d acknowledged jobs were never delivered", missing)
	}
}
