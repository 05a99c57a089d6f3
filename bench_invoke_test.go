package sluice_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/benchrelay"
)

// The invocation benchmarks compare a round trip through the engine
// (Go SDK caller → engine → Go SDK worker and back) with a baseline that
// has the same two hops and no engine logic (caller → WebSocket relay →
// echo server → relay → caller), measured in the same run. They report the
// ratio directly, so the noisy shared machine matters less.
//
//	go test -run '^$' -bench 'Invoke' -benchtime 20000x .

var benchPayload = json.RawMessage(`{"user":"ada","op":"echo","n":42,"tags":["a","b"]}`)

type invokeRig struct {
	caller *sluice.Client
	e      *engine.Engine
	relay  *websocket.Conn
	close  func()
}

func newInvokeRig(b *testing.B, mutate ...func(*engine.Config)) *invokeRig {
	b.Helper()
	ctx := context.Background()
	cfg := engine.DefaultConfig()
	cfg.Addr, cfg.HTTPAddr = "127.0.0.1:0", ""
	cfg.ConsoleAddr, cfg.Streams.Addr = "", "" // no admin or stream-client listener: their default ports would be shared by every test engine
	cfg.DataDir = engine.DataDirMemory
	for _, m := range mutate {
		m(&cfg)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := engine.New(cfg, quiet)
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		b.Fatal(err)
	}
	worker, err := sluice.Connect(ctx, e.WorkerURL(), sluice.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	if err := worker.RegisterRaw("bench::echo", func(_ context.Context, inv *sluice.Invocation) (json.RawMessage, error) {
		return inv.Data, nil
	}); err != nil {
		b.Fatal(err)
	}
	caller, err := sluice.Connect(ctx, e.WorkerURL(), sluice.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	// Wait until the function is routable.
	for {
		if _, err := caller.Trigger(ctx, "bench::echo", benchPayload); err == nil {
			break
		}
	}
	echo, err := benchrelay.StartEcho()
	if err != nil {
		b.Fatal(err)
	}
	relay, err := benchrelay.StartRelay(echo.URL)
	if err != nil {
		b.Fatal(err)
	}
	rc, _, err := websocket.DefaultDialer.Dial(relay.URL, nil)
	if err != nil {
		b.Fatal(err)
	}
	return &invokeRig{caller: caller, e: e, relay: rc, close: func() {
		rc.Close()
		relay.Close()
		echo.Close()
		caller.Close()
		worker.Close()
		e.Shutdown(ctx)
	}}
}

func percentile(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[int(float64(len(d)-1)*p)]
}

// BenchmarkInvokeSequential reports p50/p99 of sequential round trips.
func BenchmarkInvokeSequential(b *testing.B) { benchInvokeSequential(b) }

func benchInvokeSequential(b *testing.B, mutate ...func(*engine.Config)) {
	rig := newInvokeRig(b, mutate...)
	defer rig.close()
	ctx := context.Background()
	n := b.N
	relayLat := make([]time.Duration, n)
	engineLat := make([]time.Duration, n)
	b.ResetTimer()
	// Alternate batches of the two, so that both see the same drift of a
	// shared machine's load.
	const batch = 500
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n)
		for i := lo; i < hi; i++ {
			t0 := time.Now()
			if err := rig.relay.WriteMessage(websocket.TextMessage, benchPayload); err != nil {
				b.Fatal(err)
			}
			if _, _, err := rig.relay.ReadMessage(); err != nil {
				b.Fatal(err)
			}
			relayLat[i] = time.Since(t0)
		}
		for i := lo; i < hi; i++ {
			t0 := time.Now()
			if _, err := rig.caller.Trigger(ctx, "bench::echo", benchPayload); err != nil {
				b.Fatal(err)
			}
			engineLat[i] = time.Since(t0)
		}
	}
	b.StopTimer()
	rp50, rp99 := percentile(relayLat, .5), percentile(relayLat, .99)
	ep50, ep99 := percentile(engineLat, .5), percentile(engineLat, .99)
	b.ReportMetric(float64(ep50.Microseconds()), "engine-p50-µs")
	b.ReportMetric(float64(ep99.Microseconds()), "engine-p99-µs")
	b.ReportMetric(float64(rp50.Microseconds()), "relay-p50-µs")
	b.ReportMetric(float64(rp99.Microseconds()), "relay-p99-µs")
	b.ReportMetric(float64(ep50)/float64(rp50), "p50-ratio")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkInvokeThroughput reports invocations/s with 128 in flight.
func BenchmarkInvokeThroughput(b *testing.B) {
	const inFlight = 128
	rig := newInvokeRig(b)
	defer rig.close()
	ctx := context.Background()
	n := max(b.N, inFlight)
	b.ResetTimer()

	// Baseline: keep 128 messages outstanding on the relay connection. The
	// first 128 are written before the reader starts, so that only one
	// goroutine writes at a time.
	relay := func(n int) time.Duration {
		t0 := time.Now()
		for i := 0; i < min(inFlight, n); i++ {
			if err := rig.relay.WriteMessage(websocket.TextMessage, benchPayload); err != nil {
				b.Fatal(err)
			}
		}
		for i, sent := 0, min(inFlight, n); i < n; i++ {
			if _, _, err := rig.relay.ReadMessage(); err != nil {
				b.Fatal(err)
			}
			if sent < n {
				sent++
				if err := rig.relay.WriteMessage(websocket.TextMessage, benchPayload); err != nil {
					b.Fatal(err)
				}
			}
		}
		return time.Since(t0)
	}
	// Engine: 128 goroutines, each making sequential calls.
	engine := func(n int) time.Duration {
		t0 := time.Now()
		var wg sync.WaitGroup
		var next atomic.Int64
		for g := 0; g < inFlight; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(n) {
					if _, err := rig.caller.Trigger(ctx, "bench::echo", benchPayload); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(t0)
	}
	// Alternate four rounds of each, so that both see the same drift of a
	// shared machine's load.
	var relayTime, engineTime time.Duration
	for r := 0; r < 4; r++ {
		part := n/4 + min(1, max(0, n%4-r))
		relayTime += relay(part)
		engineTime += engine(part)
	}
	relayRate := float64(n) / relayTime.Seconds()
	engineRate := float64(n) / engineTime.Seconds()
	b.StopTimer()
	b.ReportMetric(engineRate, "engine-inv/s")
	b.ReportMetric(relayRate, "relay-msg/s")
	b.ReportMetric(engineRate/relayRate, "ratio")
	b.ReportMetric(0, "ns/op")
}
