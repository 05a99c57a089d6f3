package sluice_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/engine"
)

// HTTP benchmarks: the same handler served through Sluice (engine + Go
// worker + HTTP adapter) and, as the baseline measured in the same run, by
// a plain net/http server behind httputil.ReverseProxy with a pooled
// transport. Run with:
//
//	go test -run '^$' -bench 'BenchmarkHTTP' -benchtime 2s .
//
// SLUICE_LONG=1 makes the download 1 GiB.

// target serves h at pattern ("METHOD /path/:param") one way or the
// other and returns the base URL. Each sub-benchmark gets a fresh one.
type target struct {
	name  string
	serve func(b *testing.B, pattern string, h http.Handler) string
}

var targets = []target{{"sluice", sluiceTarget}, {"proxy", proxyTarget}}

// sluiceTarget: engine + Go worker serving h through the HTTP adapter.
func sluiceTarget(b *testing.B, pattern string, h http.Handler) string {
	b.Helper()
	cfg := engine.DefaultConfig()
	cfg.Addr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.ConsoleAddr, cfg.Streams.Addr = "", "" // no admin or stream-client listener: their default ports would be shared by every test engine
	cfg.DataDir = engine.DataDirMemory
	e, err := engine.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	c, err := sluice.Connect(context.Background(), e.WorkerURL(), sluice.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if err := c.HandleHTTP(pattern, "bench::handler", h); err != nil {
		b.Fatal(err)
	}
	// The route exists once the engine has processed the registrations.
	if err := c.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	return e.HTTPURL()
}

// proxyTarget: the baseline, a plain net/http server behind
// httputil.ReverseProxy with a pooled transport.
func proxyTarget(b *testing.B, pattern string, h http.Handler) string {
	b.Helper()
	mux := http.NewServeMux()
	mux.Handle(strings.ReplaceAll(pattern, ":id", "{id}"), h)
	backend := httptest.NewServer(mux)
	b.Cleanup(backend.Close)
	u, _ := url.Parse(backend.URL)
	tr := &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512}
	b.Cleanup(tr.CloseIdleConnections)
	proxy := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u) },
		Transport: tr,
	})
	b.Cleanup(proxy.Close)
	return proxy.URL
}

// BenchmarkHTTPJSONEcho: a small JSON body decoded and encoded back, at 1,
// 8 and 64 concurrent clients; req/s, p50 and p99 latency.
func BenchmarkHTTPJSONEcho(b *testing.B) {
	type msg struct {
		ID    int      `json:"id"`
		Name  string   `json:"name"`
		Tags  []string `json:"tags"`
		Where string   `json:"where"`
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m msg
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		m.Where = r.PathValue("id")
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(m)
	})
	body := []byte(`{"id":42,"name":"widget","tags":["a","b","c"]}`)
	for _, tg := range targets {
		for _, clients := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/clients=%d", tg.name, clients), func(b *testing.B) {
				base := tg.serve(b, "POST /echo/:id", h)
				load(b, clients, func(hc *http.Client) error {
					res, err := hc.Post(base+"/echo/7", "application/json", bytes.NewReader(body))
					if err != nil {
						return err
					}
					defer res.Body.Close()
					raw, err := io.ReadAll(res.Body)
					var m msg
					if err == nil {
						err = json.Unmarshal(raw, &m)
					}
					if err != nil || res.StatusCode != 200 || m.Where != "7" {
						return fmt.Errorf("bad answer %d %v %q: %v", res.StatusCode, res.Header, raw, err)
					}
					return nil
				})
			})
		}
	}
}

// load runs b.N requests from clients goroutines and reports throughput
// and latency percentiles.
func load(b *testing.B, clients int, do func(*http.Client) error) {
	tr := &http.Transport{MaxIdleConns: clients, MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ResetTimer()
	start := time.Now()
	for i := range clients {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := do(hc); err != nil {
					failed.Store(err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) }
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}

// BenchmarkHTTPDownload streams a body from a handler to a client.
func BenchmarkHTTPDownload(b *testing.B) {
	size := 64 << 20
	if os.Getenv("SLUICE_LONG") == "1" {
		size = 1 << 30
	}
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := w.Write(chunk[:min(len(chunk), size-sent)]); err != nil {
				return
			}
		}
	})
	for _, tg := range targets {
		b.Run(fmt.Sprintf("%s/MiB=%d", tg.name, size>>20), func(b *testing.B) {
			base := tg.serve(b, "GET /blob", h)
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr}
			b.SetBytes(int64(size))
			for b.Loop() {
				res, err := hc.Get(base + "/blob")
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if err != nil || n != int64(size) {
					b.Fatalf("%d bytes, %v", n, err)
				}
			}
		})
	}
}
