package interop

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/queue"
	"github.com/sluicehq/sluice/internal/state"
)

// BenchmarkStateRoundTrip: state::set and state::get from a Go SDK worker
// (this process) to the built engine (SQLite store, data_sync normal), at
// 1 and 64 calls in flight; the ops/s metric is acknowledged calls per
// second.
//
//	go test -run '^$' -bench StateRoundTrip -benchtime 20000x ./interop/
func BenchmarkStateRoundTrip(b *testing.B) {
	for _, op := range []string{"set", "get"} {
		for _, inFlight := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/inflight=%d", op, inFlight), func(b *testing.B) {
				e := startEngine(b, "127.0.0.1:0", "--data-dir", filepath.Join(b.TempDir(), "data"), "--log-level", "info")
				c := connectGo(b, e, "bench-state")
				ctx := ctxFor(b, 5*time.Minute)
				for i := range 1000 {
					if _, err := c.Trigger(ctx, "state::set", map[string]any{"scope": "bench", "key": strconv.Itoa(i), "value": map[string]int{"n": i}}); err != nil {
						b.Fatal(err)
					}
				}
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for range inFlight {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								return
							}
							key := strconv.Itoa(int(i % 1000))
							var err error
							if op == "set" {
								_, err = c.Trigger(ctx, "state::set", map[string]any{"scope": "bench", "key": key, "value": map[string]int64{"n": i}})
							} else {
								_, err = c.Trigger(ctx, "state::get", map[string]any{"scope": "bench", "key": key})
							}
							if err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
			})
		}
	}
}

// BenchmarkStateStoreRaw: the same store without the engine or the wire
// (the baseline): Set and Get on internal/state over the queue's SQLite
// file, at 1 and 64 goroutines.
func BenchmarkStateStoreRaw(b *testing.B) {
	for _, op := range []string{"set", "get"} {
		for _, inFlight := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/inflight=%d", op, inFlight), func(b *testing.B) {
				q, err := queue.OpenSQLite(b.TempDir(), queue.SyncNormal)
				if err != nil {
					b.Fatal(err)
				}
				defer q.Close()
				ctx := context.Background()
				s, err := state.OpenSQLite(ctx, q)
				if err != nil {
					b.Fatal(err)
				}
				for i := range 1000 {
					if _, err := s.Set(ctx, "state", "bench", strconv.Itoa(i), []byte(`{"n":0}`)); err != nil {
						b.Fatal(err)
					}
				}
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for range inFlight {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								return
							}
							key := strconv.Itoa(int(i % 1000))
							var err error
							if op == "set" {
								_, err = s.Set(ctx, "state", "bench", key, []byte(`{"n":`+strconv.Itoa(int(i))+`}`))
							} else {
								_, _, err = s.Get(ctx, "state", "bench", key)
							}
							if err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
			})
		}
	}
}
