package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
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
}

func report(r result) {
	b, _ := json.Marshal(r)
	fmt.Printf("RESULT %s\n", b)
}

func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

var debug = os.Getenv("BENCH_DEBUG") != ""

func pct(d []time.Duration, p float64) float64 {
	slices.Sort(d)
	return float64(d[int(float64(len(d)-1)*p)].Nanoseconds()) / 1e3
}

// invoke: one WebSocket connection sends invokefunction messages for
// bench::echo (a 50-byte JSON payload) and reads their answers. Against
// an engine the answers are invocationresults; against the relay they are
// the echoed messages themselves. -mode seq: one at a time, p50/p99;
// -mode tput: -inflight outstanding, messages/s. A call not answered
// within -lost-after is counted lost and replaced (the upstream engine
// loses results; see docs/benchmarks.md).
func cmdInvoke(args []string) {
	fs := flag.NewFlagSet("invoke", flag.ExitOnError)
	u := fs.String("url", "", "engine or relay WebSocket URL")
	mode := fs.String("mode", "seq", "seq or tput")
	n := fs.Int("n", 5000, "round trips measured")
	warm := fs.Int("warm", 500, "round trips before measuring")
	inflight := fs.Int("inflight", 128, "messages in flight (tput)")
	lostAfter := fs.Duration("lost-after", 300*time.Millisecond, "an answer not there after this, the socket silent, is lost")
	_ = fs.Parse(args)
	ws, err := dialRaw(*u)
	if err != nil {
		log.Fatal(err)
	}
	defer ws.c.Close()
	prefix := fmt.Sprintf("%08x-%04x-4%03x-8%03x-", rand.Uint32(), rand.Uint32()&0xffff, rand.Uint32()&0xfff, rand.Uint32()&0xfff)
	var seq uint64
	msg := make([]byte, 0, 256)
	frame := make([]byte, 0, 256)
	// send writes call number seq+1 and returns its number.
	send := func() uint64 {
		seq++
		msg = append(msg[:0], `{"type":"invokefunction","invocation_id":"`...)
		msg = append(msg, prefix...)
		msg = fmt.Appendf(msg, "%012x", seq)
		msg = append(msg, `","function_id":"bench::echo","data":{"user":"ada","op":"echo","n":42,"tags":["a","b"]}}`...)
		frame = ws.appendFrame(frame[:0], 0x1, msg)
		if err := ws.write(frame); err != nil {
			log.Fatal(err)
		}
		return seq
	}
	buf := make([]byte, 0, 4096)
	idKey := []byte(`"invocation_id":"` + prefix)
	// recv reads the next answer and returns its call number, skipping
	// engine messages that are not one (workerregistered); 0 when nothing
	// came by deadline. It fails on an error result.
	recv := func(deadline time.Time) uint64 {
		for {
			var err error
			buf, err = ws.readMessage(buf, deadline)
			if err == errNoMessage {
				return 0
			}
			if err != nil {
				log.Fatal(err)
			}
			if debug {
				log.Printf("recv %s", buf)
			}
			i := bytes.Index(buf, idKey)
			if i < 0 || !(bytes.HasPrefix(buf, []byte(`{"type":"invocationresult"`)) || bytes.HasPrefix(buf, []byte(`{"type":"invokefunction"`))) {
				continue
			}
			if bytes.Contains(buf, []byte(`"error":{`)) {
				log.Fatalf("error result: %s", buf)
			}
			i += len(idKey)
			var k uint64
			if i+12 > len(buf) {
				log.Fatalf("bad answer: %s", buf)
			}
			for _, c := range buf[i : i+12] {
				k = k<<4 | uint64(hexVal(c))
			}
			return k
		}
	}
	// call makes one call and waits for its answer (false: lost).
	call := func() bool {
		id := send()
		deadline := time.Now().Add(*lostAfter)
		for {
			switch got := recv(deadline); got {
			case 0:
				return false
			case id:
				return true
			} // a late answer to a lost call
		}
	}
	for range *warm {
		call()
	}
	switch *mode {
	case "seq":
		lat := make([]time.Duration, 0, *n)
		start := time.Now()
		for range *n {
			t0 := time.Now()
			if call() {
				lat = append(lat, time.Since(t0))
			}
		}
		el := time.Since(start)
		report(result{P50us: pct(lat, .5), P99us: pct(lat, .99), Rate: float64(len(lat)) / el.Seconds(),
			Ops: int64(len(lat)), Seconds: el.Seconds(), Lost: int64(*n - len(lat))})
	case "tput":
		// sentAt[k-first] is when call k went out; zero once answered or
		// given up. oldest is the lowest call number still outstanding.
		first := seq + 1
		sentAt := make([]time.Time, *n)
		start := time.Now()
		outstanding, got, lost := 0, 0, 0
		oldest := first
		top := func() {
			for outstanding < *inflight && int(seq+1-first) < *n {
				k := send()
				sentAt[k-first] = time.Now()
				outstanding++
			}
		}
		top()
		last := start
		var newest uint64 // the highest call number answered
		for got+lost < *n {
			k := recv(time.Now().Add(*lostAfter / 4))
			now := time.Now()
			if k >= first && k-first < uint64(*n) && !sentAt[k-first].IsZero() {
				sentAt[k-first] = time.Time{}
				outstanding--
				got++
				last = now
				newest = max(newest, k)
			}
			// A call is lost when calls made 2×inflight later were
			// answered (engines answer one connection's calls about in
			// order), or when the socket fell silent and it is older than
			// -lost-after.
			for oldest < seq+1 {
				t := sentAt[oldest-first]
				if !t.IsZero() && oldest+2*uint64(*inflight) > newest && (k != 0 || now.Sub(t) < *lostAfter) {
					break
				}
				if !t.IsZero() {
					sentAt[oldest-first] = time.Time{}
					outstanding--
					lost++
				}
				oldest++
			}
			top()
		}
		el := last.Sub(start)
		report(result{Rate: float64(got) / el.Seconds(), Ops: int64(got), Seconds: el.Seconds(), Lost: int64(lost)})
	default:
		log.Fatalf("mode %q", *mode)
	}
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

// httpload: -clients goroutines POST the JSON echo for -dur (after
// -warm) and check every answer; req/s, p50, p99.
func cmdHTTPLoad(args []string) {
	fs := flag.NewFlagSet("httpload", flag.ExitOnError)
	base := fs.String("url", "", "base URL")
	clients := fs.Int("clients", 1, "concurrent clients")
	dur := fs.Duration("dur", 2*time.Second, "measured duration")
	warm := fs.Duration("warm", 300*time.Millisecond, "warm-up duration")
	_ = fs.Parse(args)
	tr := &http.Transport{MaxIdleConns: *clients, MaxIdleConnsPerHost: *clients}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	body := []byte(`{"id":42,"name":"widget","tags":["a","b","c"]}`)
	do := func() error {
		res, err := hc.Post(*base+"/echo/7", "application/json", bytes.NewReader(body))
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
	var measuring atomic.Bool
	var stop atomic.Bool
	var failed atomic.Int64
	lat := make([][]time.Duration, *clients)
	var wg sync.WaitGroup
	for i := range *clients {
		wg.Go(func() {
			for !stop.Load() {
				t0 := time.Now()
				if err := do(); err != nil {
					if failed.Add(1) == 1 {
						log.Print(err)
					}
					continue
				}
				if measuring.Load() {
					lat[i] = append(lat[i], time.Since(t0))
				}
			}
		})
	}
	time.Sleep(*warm)
	measuring.Store(true)
	start := time.Now()
	time.Sleep(*dur)
	measuring.Store(false)
	el := time.Since(start)
	stop.Store(true)
	wg.Wait()
	all := slices.Concat(lat...)
	report(result{P50us: pct(all, .5), P99us: pct(all, .99), Rate: float64(len(all)) / el.Seconds(), Ops: int64(len(all)), Seconds: el.Seconds(), Lost: failed.Load()})
}

// download: GET base/blob?n=BYTES, read to the end; MB/s.
func cmdDownload(args []string) {
	fs := flag.NewFlagSet("download", flag.ExitOnError)
	base := fs.String("url", "", "base URL")
	n := fs.Int64("n", 1<<30, "bytes")
	_ = fs.Parse(args)
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
	report(result{Rate: float64(*n) / el.Seconds() / 1e6, Ops: *n, Seconds: el.Seconds()})
}

// chanwrite: writes -n bytes in 64 KiB binary frames to a channel URL
// (ws://) or, with -tcp, raw to a TCP relay.
func cmdChanWrite(args []string) {
	fs := flag.NewFlagSet("chanwrite", flag.ExitOnError)
	u := fs.String("url", "", "channel writer URL")
	tcp := fs.String("tcp", "", "TCP relay address instead")
	n := fs.Int64("n", 1<<30, "bytes")
	_ = fs.Parse(args)
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
				start = time.Now()
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
				start = time.Now()
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
	report(result{Rate: float64(got) / el.Seconds() / 1e6, Ops: got, Seconds: el.Seconds()})
}
