package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	sluice "github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/queue"
	"github.com/sluicehq/sluice/internal/state"
)

// BenchmarkStateRoundTrip: state::set and state::get from a Go SDK worker
// (this process) to the built engine (SQLite store, data_sync normal), at
// 1 and 64 calls in flight; the ops/s metric is acknowledged calls per
// second.
//
//	go test -run '^$' -bench StateRoundTrip -benchtime 20000x ./interop/
//
// With SLUICE_UPSTREAM_URL set (e.g. ws://127.0.0.1:49234, the upstream
// engine started with ../shared/tools/upstream/start.sh modules) the same
// calls go to that engine instead.
func BenchmarkStateRoundTrip(b *testing.B) {
	upstream := os.Getenv("SLUICE_UPSTREAM_URL")
	for _, op := range []string{"set", "get"} {
		for _, inFlight := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/inflight=%d", op, inFlight), func(b *testing.B) {
				var c *sluice.Client
				if upstream != "" {
					c = connectGo(b, &engineProc{URL: upstream}, "bench-state")
				} else {
					e := startEngine(b, "127.0.0.1:0", "--data-dir", filepath.Join(b.TempDir(), "data"), "--log-level", "info")
					c = connectGo(b, e, "bench-state")
				}
				ctx := ctxFor(b, 5*time.Minute)
				for i := range 1000 {
					if _, err := c.Trigger(ctx, "state::set", map[string]any{"scope": "bench", "key": strconv.Itoa(i), "value": map[string]int{"n": i}}); err != nil {
						b.Fatal(err)
					}
				}
				opsPerSecond(b, inFlight, func(i int64) error {
					key := strconv.Itoa(int(i % 1000))
					var err error
					if op == "set" {
						_, err = c.Trigger(ctx, "state::set", map[string]any{"scope": "bench", "key": key, "value": map[string]int64{"n": i}})
					} else {
						_, err = c.Trigger(ctx, "state::get", map[string]any{"scope": "bench", "key": key})
					}
					return err
				})
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
				opsPerSecond(b, inFlight, func(i int64) error {
					key := strconv.Itoa(int(i % 1000))
					var err error
					if op == "set" {
						_, err = s.Set(ctx, "state", "bench", key, []byte(`{"n":`+strconv.Itoa(int(i))+`}`))
					} else {
						_, _, err = s.Get(ctx, "state", "bench", key)
					}
					return err
				})
			})
		}
	}
}

// BenchmarkPubSubFanout: one publish reaches 100 subscribe bindings (100
// functions on 4 Go SDK connections); deliveries/s over b.N publishes.
//
//	go test -run '^$' -bench PubSubFanout -benchtime 200x ./interop/
func BenchmarkPubSubFanout(b *testing.B) {
	const subs = 100
	e := startEngine(b, "127.0.0.1:0", "--data-dir", "memory", "--log-level", "info")
	ctx := ctxFor(b, 5*time.Minute)
	var got atomic.Int64
	total := int64(b.N) * subs
	done := make(chan struct{})
	var ids []string
	for w := range 4 {
		c := connectGo(b, e, "bench-sub")
		for i := range subs / 4 {
			id := fmt.Sprintf("bench::sub%d_%d", w, i)
			ids = append(ids, id)
			if err := sluice.Register(c, id, func(context.Context, json.RawMessage) (any, error) {
				if got.Add(1) == total {
					close(done)
				}
				return nil, nil
			}); err != nil {
				b.Fatal(err)
			}
			if _, err := c.RegisterTrigger(sluice.TriggerSpec{Type: "subscribe", FunctionID: id, Config: map[string]string{"topic": "bench"}}); err != nil {
				b.Fatal(err)
			}
		}
	}
	pub := connectGo(b, e, "bench-pub")
	waitFunctions(ctx, b, pub, ids...)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := pub.Trigger(ctx, "publish", map[string]any{"topic": "bench", "data": map[string]int{"x": 1}}); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		b.Fatalf("%d of %d deliveries", got.Load(), total)
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "deliveries/s")
}

// BenchmarkStreamFanout: 1,000 stream WebSocket clients joined to one
// group; each stream::set reaches all of them; p50/p99 latency from the
// set call to each client's receipt, over b.N sets one after another.
//
//	go test -run '^$' -bench StreamFanout -benchtime 100x ./interop/
func BenchmarkStreamFanout(b *testing.B) {
	const clients = 1000
	dir := b.TempDir()
	cfg := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("streams:\n  addr: 127.0.0.1:0\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	e := startEngine(b, "127.0.0.1:0", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--log-level", "info")
	ctx := ctxFor(b, 5*time.Minute)
	line, err := e.stderr.wait(ctx, func(s string) bool { return strings.Contains(s, "stream clients served") })
	if err != nil {
		b.Fatal(err)
	}
	addr := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)[1]
	c := connectGo(b, e, "bench-stream")
	var mu sync.Mutex
	var lat []time.Duration
	var sent atomic.Int64 // unix nanos of the current set
	var wg sync.WaitGroup
	received := make(chan struct{}, clients*4)
	for range clients {
		ws, _, err := websocket.DefaultDialer.DialContext(ctx, "ws://"+addr+"/", nil)
		if err != nil {
			b.Fatal(err)
		}
		defer ws.Close()
		if err := ws.WriteJSON(map[string]any{"type": "join", "data": map[string]any{"subscriptionId": "s", "streamName": "bench", "groupId": "g"}}); err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := true
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
				if first { // the sync
					first = false
					received <- struct{}{}
					continue
				}
				d := time.Since(time.Unix(0, sent.Load()))
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
				received <- struct{}{}
			}
		}()
	}
	wait := func() {
		for range clients {
			select {
			case <-received:
			case <-ctx.Done():
				b.Fatal("clients did not all receive")
			}
		}
	}
	wait() // every sync
	b.ResetTimer()
	for i := range b.N {
		sent.Store(time.Now().UnixNano())
		if _, err := c.Trigger(ctx, "stream::set", map[string]any{"stream_name": "bench", "group_id": "g", "item_id": "x", "data": i}); err != nil {
			b.Fatal(err)
		}
		wait()
	}
	b.StopTimer()
	mu.Lock()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	mu.Unlock()
}

// opsPerSecond runs op for b.N numbers (1..b.N) across inFlight goroutines
// and reports the rate.
func opsPerSecond(b *testing.B, inFlight int, op func(i int64) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range inFlight {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
}
