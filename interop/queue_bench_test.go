package interop

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sluice "github.com/sluicehq/sluice"
)

// BenchmarkQueueEndToEnd: Go SDK producers (this process) → engine (its own
// process, SQLite store, data_sync normal) → Go SDK consumer (this process,
// its own connection). For 1, 16 and 64 producers (the queue's concurrency
// 64; and 64 producers with concurrency 256: by Little's law, 64 slots
// cap the consumer at 64 ÷ a job's time in its slot, which grows to
// milliseconds once both cores are busy): acknowledged enqueues/s,
// end-to-end jobs/s (first enqueue to last job consumed) and the p50/p99
// latency from enqueue call to consumer. The CPU time spent per job by the
// engine process and by this process (producers and consumer) does not
// depend on what else the machine runs: 2 cores' worth of microseconds
// (2,000,000) divided by their sum is the rate two idle cores could reach.
//
//	go test -run '^$' -bench QueueEndToEnd -benchtime 20000x ./interop/
func BenchmarkQueueEndToEnd(b *testing.B) {
	for _, c := range []struct{ producers, concurrency int }{{1, 64}, {16, 64}, {64, 64}, {64, 256}} {
		producers := c.producers
		name := fmt.Sprintf("producers=%d", producers)
		if c.concurrency != 64 {
			name += fmt.Sprintf(",concurrency=%d", c.concurrency) // not "/": -bench 'QueueEndToEnd/^producers=64$' picks one
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			cfg := filepath.Join(dir, "sluice.yaml")
			if err := os.WriteFile(cfg, []byte(fmt.Sprintf("queues:\n  bench:\n    concurrency: %d\n", c.concurrency)), 0o644); err != nil {
				b.Fatal(err)
			}
			e := startEngine(b, "127.0.0.1:0", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--log-level", "info")
			consumer := connectGo(b, e, "bench-consumer")
			n := b.N
			lat := make([]time.Duration, 0, n)
			var mu sync.Mutex
			var got atomic.Int64
			done := make(chan struct{})
			err := sluice.Register(consumer, "bench::job", func(ctx context.Context, in struct{ T int64 }) (any, error) {
				d := time.Since(time.Unix(0, in.T))
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
				if got.Add(1) == int64(n) {
					close(done)
				}
				return nil, nil
			})
			if err != nil {
				b.Fatal(err)
			}
			ctx := ctxFor(b, 5*time.Minute)
			waitFunctions(ctx, b, consumer, "bench::job")
			clients := make([]*sluice.Client, 0, 4)
			for range min(producers, 4) {
				clients = append(clients, connectGo(b, e, "bench-producer"))
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			engineCPU0, benchCPU0 := procCPU(b, e.pid()), selfCPU()
			engineIO0, benchIO0 := procSyscalls(e.pid()), procSyscalls(os.Getpid())
			var ms0 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			start := time.Now()
			for p := 0; p < producers; p++ {
				c := clients[p%len(clients)]
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(n) {
						if _, err := c.Enqueue(ctx, "bench", "bench::job", map[string]int64{"t": time.Now().UnixNano()}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			enqDur := time.Since(start)
			select {
			case <-done:
			case <-ctx.Done():
				b.Fatalf("consumed %d of %d", got.Load(), n)
			}
			e2e := time.Since(start)
			engineCPU, benchCPU := procCPU(b, e.pid())-engineCPU0, selfCPU()-benchCPU0
			engineIO, benchIO := procSyscalls(e.pid()).minus(engineIO0), procSyscalls(os.Getpid()).minus(benchIO0)
			var ms1 runtime.MemStats
			runtime.ReadMemStats(&ms1)
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(n)/enqDur.Seconds(), "enq/s")
			b.ReportMetric(float64(n)/e2e.Seconds(), "e2e-jobs/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			if engineCPU > 0 {
				b.ReportMetric(float64(engineCPU.Microseconds())/float64(n), "engine-cpu-µs/job")
			}
			b.ReportMetric(float64(benchCPU.Microseconds())/float64(n), "bench-cpu-µs/job")
			if engineIO.ok {
				b.ReportMetric(float64(engineIO.r)/float64(n), "engine-reads/job")
				b.ReportMetric(float64(engineIO.w)/float64(n), "engine-writes/job")
				b.ReportMetric(float64(benchIO.r)/float64(n), "bench-reads/job")
				b.ReportMetric(float64(benchIO.w)/float64(n), "bench-writes/job")
			}
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(n), "bench-allocs/job")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// syscalls counts a process's read and write system calls (syscr and
// syscw of /proc/<pid>/io: read, pread, readv; write, pwrite, writev —
// socket I/O and the store's WAL writes; not epoll or futex).
type syscalls struct {
	r, w int64
	ok   bool
}

func procSyscalls(pid int) syscalls {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return syscalls{}
	}
	var out syscalls
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "syscr":
			out.r, out.ok = n, true
		case "syscw":
			out.w = n
		}
	}
	return out
}

func (a syscalls) minus(b syscalls) syscalls {
	return syscalls{r: a.r - b.r, w: a.w - b.w, ok: a.ok && b.ok}
}

// BenchmarkQueueBacklogRSS enqueues SLUICE_BACKLOG jobs (default 200000)
// while the consumer holds every delivery, and reports the engine's
// resident memory with the backlog queued.
//
//	SLUICE_BACKLOG=1000000 go test -run '^$' -bench QueueBacklogRSS -benchtime 1x ./interop/
func BenchmarkQueueBacklogRSS(b *testing.B) {
	n := 200_000
	if v, err := strconv.Atoi(os.Getenv("SLUICE_BACKLOG")); err == nil && v > 0 {
		n = v
	}
	dir := b.TempDir()
	e := startEngine(b, "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"))
	consumer := connectGo(b, e, "rss-consumer")
	release := make(chan struct{})
	defer close(release)
	if err := sluice.Register(consumer, "rss::job", func(ctx context.Context, in struct{ N int }) (any, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	}); err != nil {
		b.Fatal(err)
	}
	ctx := ctxFor(b, 10*time.Minute)
	waitFunctions(ctx, b, consumer, "rss::job")
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for p := 0; p < 4; p++ {
		c := connectGo(b, e, "rss-producer")
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1); i <= int64(n); i = next.Add(1) {
					if _, err := c.Enqueue(ctx, "default", "rss::job", map[string]any{"n": i, "pad": strings.Repeat("x", 200)}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	took := time.Since(start)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.pid()))
	if err != nil {
		b.Skip("no /proc:", err)
	}
	var rssKB float64
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			v, _ := strconv.ParseFloat(f[1], 64)
			b.ReportMetric(v/1024, strings.TrimSuffix(f[0], ":")+"-MiB")
			rssKB = v
		}
	}
	_ = rssKB
	b.ReportMetric(float64(n), "jobs-queued")
	b.ReportMetric(float64(n)/took.Seconds(), "enq/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkQueueTopicVsUpstream: durable topic fan-in, side by side. 16 Go
// SDK producers publish (iii::durable::publish) to a topic one Go SDK
// consumer function subscribes to (durable:subscriber), on Sluice (SQLite
// store, durable) and on the upstream engine 0.22.1 (its built-in queue, in
// memory; ../shared/tools/upstream/start.sh queue, port 49234). Reported:
// publishes/s and end-to-end jobs/s for each, and Sluice's ratio.
//
//	cd interop && go test -run '^$' -bench QueueTopicVsUpstream -benchtime 2000x .
func BenchmarkQueueTopicVsUpstream(b *testing.B) {
	startScript := filepath.Join(interopDir, "..", "..", "..", "shared", "tools", "upstream", "start.sh")
	if _, err := os.Stat(startScript); err != nil {
		startScript = "/work/shared/tools/upstream/start.sh"
	}
	if _, err := os.Stat(startScript); err != nil {
		b.Skip("upstream engine not available:", err)
	}
	run := func(b *testing.B, url string) (pubPerS, e2ePerS float64) {
		n := b.N
		ctx := ctxFor(b, 10*time.Minute)
		connect := func(name string) *sluice.Client {
			for {
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				c, err := sluice.Connect(cctx, url, sluice.WithName(name), sluice.WithInvocationTimeout(callTimeout),
					sluice.WithLogger(slog.New(slog.DiscardHandler)))
				cancel()
				if err == nil {
					b.Cleanup(func() { _ = c.Close() })
					return c
				}
				select {
				case <-ctx.Done():
					b.Fatalf("connecting to %s: %v", url, err)
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
		consumer := connect("topic-consumer")
		var got atomic.Int64
		probe := make(chan struct{}, 1)
		done := make(chan struct{})
		if err := sluice.Register(consumer, "topicbench::sink", func(ctx context.Context, in struct{ N int }) (any, error) {
			if in.N < 0 {
				select {
				case probe <- struct{}{}:
				default:
				}
				return nil, nil
			}
			if got.Add(1) == int64(n) {
				close(done)
			}
			return nil, nil
		}); err != nil {
			b.Fatal(err)
		}
		if _, err := consumer.SubscribeDurable("bench-topic", "topicbench::sink", nil); err != nil {
			b.Fatal(err)
		}
		producer := connect("topic-producer")
		// Until a probe comes through, the subscription is not in place.
		for probed := false; !probed; {
			if err := producer.PublishDurable(ctx, "bench-topic", map[string]int{"n": -1}); err != nil {
				b.Fatal(err)
			}
			select {
			case <-probe:
				probed = true
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
				b.Fatal("subscription never delivered")
			}
		}
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1); i <= int64(n); i = next.Add(1) {
					if err := producer.PublishDurable(ctx, "bench-topic", map[string]int64{"n": i}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		pub := time.Since(start)
		select {
		case <-done:
		case <-ctx.Done():
			b.Fatalf("%s: consumed %d of %d", url, got.Load(), n)
		}
		return float64(n) / pub.Seconds(), float64(n) / time.Since(start).Seconds()
	}
	var oursE2E float64
	b.Run("sluice-durable", func(b *testing.B) {
		e := startEngine(b, "127.0.0.1:0", "--data-dir", filepath.Join(b.TempDir(), "data"))
		pub, e2e := run(b, e.URL)
		oursE2E = e2e
		b.ReportMetric(pub, "pub/s")
		b.ReportMetric(e2e, "e2e-jobs/s")
		b.ReportMetric(0, "ns/op")
	})
	b.Run("upstream-memory", func(b *testing.B) {
		cmd := exec.Command("bash", startScript, "queue")
		cmd.Env = append(os.Environ(), "III_LOG_LEVEL=warn")
		startProc(b, "upstream iii", cmd)
		pub, e2e := run(b, "ws://127.0.0.1:49234")
		b.ReportMetric(pub, "pub/s")
		b.ReportMetric(e2e, "e2e-jobs/s")
		if e2e > 0 && oursE2E > 0 {
			b.ReportMetric(oursE2E/e2e, "sluice-ratio")
		}
		b.ReportMetric(0, "ns/op")
	})
}
