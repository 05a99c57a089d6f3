package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The load processes. Each runs one workload against one target and
// prints "RESULT <json>" on stdout.

type result struct {
	P50us   float64 `json:"p50_us,omitempty"`
	P99us   float64 `json:"p99_us,omitempty"`
	Rate    float64 `json:"rate,omitempty"` // operations/s or MB/s
	Ops     int64   `json:"ops"`
	Seconds float64 `json:"seconds"`
	Lost    int64   `json:"lost,omitempty"` // calls never answered, or failed requests
	// Measured by the load process itself over its measured phase only
	// (streamfan: not the clients' connecting and joining): the middle
	// processes' CPU and context switches, and the load process's own CPU.
	MidCPUus    int64 `json:"mid_cpu_us,omitempty"`
	MidSwitches int64 `json:"mid_switches,omitempty"`
	SelfCPUus   int64 `json:"self_cpu_us,omitempty"`
	// Over the measured window (a batchCounter's batches, or the load
	// processes' lives): the far end's CPU, the client processes' CPU,
	// the machine's busy time and the nice part of it, and the window's
	// wall time.
	EndCPUus      int64 `json:"end_cpu_us,omitempty"`
	ClientCPUus   int64 `json:"client_cpu_us,omitempty"`
	MachineCPUus  int64 `json:"machine_cpu_us,omitempty"`
	MachineNiceUs int64 `json:"machine_nice_us,omitempty"`
	WindowUs      int64 `json:"window_us,omitempty"`
	// streamfan: p50 over the stream::set calls of the time from a call to
	// its last client's receipt (every client reached).
	AllP50us float64 `json:"all_p50_us,omitempty"`
}

func report(r result) {
	b, _ := json.Marshal(r)
	fmt.Printf("RESULT %s\n", b)
}

var debug = os.Getenv("BENCH_DEBUG") != ""

func pct(d []time.Duration, p float64) float64 {
	slices.Sort(d)
	return float64(d[int(float64(len(d)-1)*p)].Nanoseconds()) / 1e3
}

func hexVal(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return 0
}

// httpload: -clients goroutines POST the JSON echo and check every
// answer. -url takes several targets (comma-separated), each one base URL
// or several joined by '|' (the clients are spread over them in turn, as a
// load balancer would: the cluster workload's nodes): the run
// alternates between them in slices of -slice, -dur in all per target
// (after -warm each), and prints one RESULT per target, in order: req/s,
// p50, p99.
func cmdHTTPLoad(args []string) {
	fs := flag.NewFlagSet("httpload", flag.ExitOnError)
	urls := fs.String("url", "", "base URLs, comma-separated")
	clients := fs.Int("clients", 1, "concurrent clients")
	dur := fs.Duration("dur", 2*time.Second, "measured duration per target")
	slice := fs.Duration("slice", 200*time.Millisecond, "time on one target before switching")
	warm := fs.Duration("warm", 300*time.Millisecond, "warm-up duration per target")
	midPids := fs.String("midpids", "", "per target (comma-separated, in -url order): the pids (joined by +) whose CPU and context switches are counted over that target's slices")
	endPids := fs.String("endpids", "", "per target, as -midpids: the far end's pids, whose CPU is counted over that target's slices")
	_ = fs.Parse(args)
	body := []byte(`{"id":42,"name":"widget","tags":["a","b","c"]}`)
	type target struct {
		bases   []string
		hc      *http.Client
		lat     []time.Duration
		failed  int64
		elapsed time.Duration
	}
	var ts []*target
	for _, u := range strings.Split(*urls, ",") {
		tr := &http.Transport{MaxIdleConns: *clients, MaxIdleConnsPerHost: *clients}
		ts = append(ts, &target{bases: strings.Split(u, "|"), hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}})
	}
	mids := parseCounters(*midPids, *endPids, len(ts))
	do := func(t *target, client int) error {
		res, err := t.hc.Post(t.bases[client%len(t.bases)]+"/echo/7", "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		defer res.Body.Close()
		raw, err := io.ReadAll(res.Body)
		var m echoMsg
		if err == nil {
			err = json.Unmarshal(raw, &m)
		}
		if err != nil || res.StatusCode != 200 || m.Where != "7" || m.ID != 42 {
			return fmt.Errorf("bad answer %d %q: %v", res.StatusCode, raw, err)
		}
		return nil
	}
	// run keeps the clients busy on t for d; measured: record latencies.
	run := func(t *target, d time.Duration, measured bool) {
		var stop atomic.Bool
		var failed atomic.Int64
		lat := make([][]time.Duration, *clients)
		var wg sync.WaitGroup
		start := time.Now()
		for i := range *clients {
			wg.Go(func() {
				for !stop.Load() {
					t0 := time.Now()
					if err := do(t, i); err != nil {
						if failed.Add(1) == 1 && t.failed == 0 {
							log.Print(err)
						}
						continue
					}
					lat[i] = append(lat[i], time.Since(t0))
				}
			})
		}
		time.Sleep(d)
		stop.Store(true)
		wg.Wait()
		if measured {
			// Requests in flight at the end finished after d: the time
			// is until the last one did.
			t.elapsed += time.Since(start)
			t.lat = append(t.lat, slices.Concat(lat...)...)
			t.failed += failed.Load()
		}
	}
	for _, t := range ts {
		run(t, *warm, false)
	}
	for spent := time.Duration(0); spent < *dur; spent += *slice {
		for ti, t := range ts {
			stop := mids[ti].start()
			run(t, min(*slice, *dur-spent), true)
			stop()
		}
	}
	for ti, t := range ts {
		if len(t.lat) == 0 {
			report(result{Lost: t.failed, Seconds: t.elapsed.Seconds()})
			continue
		}
		r := result{P50us: pct(t.lat, .5), P99us: pct(t.lat, .99), Rate: float64(len(t.lat)) / t.elapsed.Seconds(),
			Ops: int64(len(t.lat)), Seconds: t.elapsed.Seconds(), Lost: t.failed}
		mids[ti].fill(&r)
		report(r)
	}
}

// download: GET base/blob?n=BYTES, read to the end; MB/s.
func cmdDownload(args []string) {
	fs := flag.NewFlagSet("download", flag.ExitOnError)
	base := fs.String("url", "", "base URL")
	n := fs.Int64("n", 1<<30, "bytes")
	_ = fs.Parse(args)
	ph := startPhase()
	start := time.Now()
	res, err := http.Get(fmt.Sprintf("%s/blob?n=%d", *base, *n))
	if err != nil {
		log.Fatal(err)
	}
	got, err := io.CopyBuffer(io.Discard, res.Body, make([]byte, 256<<10))
	res.Body.Close()
	if err != nil || got != *n || res.StatusCode != 200 {
		log.Fatalf("download: HTTP %d, %d of %d bytes: %v", res.StatusCode, got, *n, err)
	}
	el := time.Since(start)
	r := result{Rate: float64(*n) / el.Seconds() / 1e6, Ops: *n, Seconds: el.Seconds()}
	ph.fill(&r)
	report(r)
}

// chanwrite: writes -n bytes in 64 KiB binary frames to a channel URL
// (ws://) or, with -tcp, raw to a TCP relay.
func cmdChanWrite(args []string) {
	fs := flag.NewFlagSet("chanwrite", flag.ExitOnError)
	u := fs.String("url", "", "channel writer URL")
	tcp := fs.String("tcp", "", "TCP relay address instead")
	n := fs.Int64("n", 1<<30, "bytes")
	_ = fs.Parse(args)
	// Its own CPU over the writing, for the driver's client count.
	ph := startPhase()
	defer func() {
		var r result
		ph.fill(&r)
		report(result{ClientCPUus: r.ClientCPUus})
	}()
	if *tcp != "" {
		c, err := net.Dial("tcp", *tcp)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := c.Write([]byte{'W'}); err != nil {
			log.Fatal(err)
		}
		for sent := int64(0); sent < *n; sent += int64(len(blobChunk)) {
			if _, err := c.Write(blobChunk[:min(int64(len(blobChunk)), *n-sent)]); err != nil {
				log.Fatal(err)
			}
		}
		c.Close()
		return
	}
	ws, err := dialRaw(*u)
	if err != nil {
		log.Fatal(err)
	}
	full := ws.frame(0x2, blobChunk)
	for sent := int64(0); sent < *n; sent += int64(len(blobChunk)) {
		f := full
		if k := *n - sent; k < int64(len(blobChunk)) {
			f = ws.frame(0x2, blobChunk[:k])
		}
		if err := ws.write(f); err != nil {
			log.Fatal(err)
		}
	}
	_ = ws.c.SetDeadline(time.Now().Add(5 * time.Second))
	ws.closeAndWait()
}

// chanread: reads a channel (or, with -tcp, a TCP relay) until it ends
// and checks it got -n bytes; MB/s from the first byte to the last.
func cmdChanRead(args []string) {
	fs := flag.NewFlagSet("chanread", flag.ExitOnError)
	u := fs.String("url", "", "channel reader URL")
	tcp := fs.String("tcp", "", "TCP relay address instead")
	n := fs.Int64("n", 1<<30, "bytes")
	_ = fs.Parse(args)
	var got int64
	var start time.Time
	var ph phase // from the first byte, as the rate
	if *tcp != "" {
		c, err := net.Dial("tcp", *tcp)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := c.Write([]byte{'R'}); err != nil {
			log.Fatal(err)
		}
		fmt.Println("READY")
		buf := make([]byte, 64<<10)
		for got < *n {
			k, err := c.Read(buf)
			if got == 0 {
				start, ph = time.Now(), startPhase()
			}
			got += int64(k)
			if err != nil {
				break
			}
		}
	} else {
		ws, err := dialRaw(*u)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("READY")
		err = ws.discardFrames(func(k int64) {
			if got == 0 {
				start, ph = time.Now(), startPhase()
			}
			got += k
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	el := time.Since(start)
	if got != *n {
		fmt.Fprintf(os.Stderr, "chanread: %d of %d bytes\n", got, *n)
		os.Exit(1)
	}
	r := result{Rate: float64(got) / el.Seconds() / 1e6, Ops: got, Seconds: el.Seconds()}
	ph.fill(&r)
	report(r)
}
