package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// invoke: invokefunction messages (default bench::echo with a 50-byte
// JSON payload) over one WebSocket connection per target, and their
// answers. Against an engine the answers are invocationresults; against
// the relay they are the echoed messages themselves. -url takes several
// targets (comma-separated): the run alternates between them in batches,
// so that a shared machine's changing load hits all alike, and prints one
// RESULT per target, in order. -mode seq: one call at a time, p50/p99;
// -mode tput: -inflight outstanding, calls/s. A call not answered is
// counted lost and replaced (the upstream engine loses results; see
// docs/benchmarks.md).
func cmdInvoke(args []string) {
	fs := flag.NewFlagSet("invoke", flag.ExitOnError)
	urls := fs.String("url", "", "engine or relay WebSocket URLs, comma-separated")
	mode := fs.String("mode", "seq", "seq or tput")
	n := fs.Int("n", 5000, "calls measured per target")
	batch := fs.Int("batch", 0, "calls per batch before switching targets (default: n/10)")
	warm := fs.Int("warm", 500, "calls per target before measuring")
	inflight := fs.Int("inflight", 128, "calls in flight (tput)")
	reorder := fs.Int("reorder", 2, "a call is lost once calls made reorder×inflight later were answered")
	lostAfter := fs.Duration("lost-after", 300*time.Millisecond, "an answer not there after this, the socket silent, is lost")
	fn := fs.String("fn", "bench::echo", "function called")
	fnList := fs.String("fns", "", "functions called, one per -url (comma-separated; default -fn for all)")
	midPids := fs.String("midpids", "", "per target (comma-separated, in -url order): the pids (joined by +) whose CPU and context switches are counted over that target's batches")
	endPids := fs.String("endpids", "", "per target, as -midpids: the far end's pids, whose CPU is counted over that target's batches")
	tmpl := fs.String("data", `{"user":"ada","op":"echo","n":42,"tags":["a","b"]}`, "its data; {i} is replaced by the call number modulo 1000")
	_ = fs.Parse(args)
	var callers []*caller
	fns := strings.Split(*fnList, ",")
	for i, u := range strings.Split(*urls, ",") {
		ws, err := dialRaw(u)
		if err != nil {
			log.Fatal(err)
		}
		defer ws.c.Close()
		f := *fn
		if *fnList != "" && i < len(fns) {
			f = fns[i]
		}
		c := &caller{ws: ws, fn: f, reorder: uint64(*reorder), dataParts: strings.Split(*tmpl, "{i}"), lostAfter: *lostAfter,
			prefix: fmt.Sprintf("%08x-%04x-4%03x-8%03x-", rand.Uint32(), rand.Uint32()&0xffff, rand.Uint32()&0xfff, rand.Uint32()&0xfff)}
		c.idKey = []byte(`"invocation_id":"` + c.prefix)
		callers = append(callers, c)
	}
	for _, c := range callers {
		for range *warm {
			c.call()
		}
	}
	mids := parseCounters(*midPids, *endPids, len(callers))
	if *batch <= 0 {
		*batch = max(1, *n/10)
	}
	for done := 0; done < *n; done += *batch {
		k := min(*batch, *n-done)
		for ci, c := range callers {
			stop := mids[ci].start()
			t0 := time.Now()
			switch *mode {
			case "seq":
				for range k {
					t := time.Now()
					if c.call() {
						c.lat = append(c.lat, time.Since(t))
					} else {
						c.lost++
					}
				}
				c.elapsed += time.Since(t0)
			case "tput":
				c.window(k, *inflight)
			default:
				log.Fatalf("mode %q", *mode)
			}
			stop()
		}
	}
	for ci, c := range callers {
		r := result{Rate: float64(c.got+len(c.lat)) / c.elapsed.Seconds(), Ops: int64(c.got + len(c.lat)), Seconds: c.elapsed.Seconds(), Lost: int64(c.lost)}
		mids[ci].fill(&r)
		if len(c.lat) > 0 {
			r.P50us, r.P99us = pct(c.lat, .5), pct(c.lat, .99)
		}
		report(r)
	}
}

// caller is one connection's calls.
type caller struct {
	ws        *rawWS
	fn        string
	dataParts []string
	prefix    string
	idKey     []byte
	lostAfter time.Duration
	reorder   uint64
	seq       uint64
	msg, buf  []byte
	frame     []byte

	lat       []time.Duration
	got, lost int
	elapsed   time.Duration
}

// send writes call number seq+1 and returns its number.
func (c *caller) send() uint64 {
	c.seq++
	m := append(c.msg[:0], `{"type":"invokefunction","invocation_id":"`...)
	m = append(m, c.prefix...)
	m = fmt.Appendf(m, "%012x", c.seq)
	m = append(m, `","function_id":"`...)
	m = append(m, c.fn...)
	m = append(m, `","data":`...)
	for i, p := range c.dataParts {
		if i > 0 {
			m = strconv.AppendUint(m, c.seq%1000, 10)
		}
		m = append(m, p...)
	}
	m = append(m, '}')
	c.msg = m
	c.frame = c.ws.appendFrame(c.frame[:0], 0x1, m)
	if err := c.ws.write(c.frame); err != nil {
		log.Fatal(err)
	}
	return c.seq
}

// recv reads the next answer and returns its call number, skipping
// engine messages that are not one (workerregistered); 0 when nothing
// came by deadline. It fails on an error result.
func (c *caller) recv(deadline time.Time) uint64 {
	for {
		var err error
		c.buf, err = c.ws.readMessage(c.buf, deadline)
		if err == errNoMessage {
			return 0
		}
		if err != nil {
			log.Fatal(err)
		}
		if debug {
			log.Printf("recv %s", c.buf)
		}
		b := c.buf
		i := bytes.Index(b, c.idKey)
		if i < 0 || !(bytes.HasPrefix(b, []byte(`{"type":"invocationresult"`)) || bytes.HasPrefix(b, []byte(`{"type":"invokefunction"`))) {
			continue
		}
		if bytes.Contains(b, []byte(`"error":{`)) {
			log.Fatalf("error result: %s", b)
		}
		i += len(c.idKey)
		if i+12 > len(b) {
			log.Fatalf("bad answer: %s", b)
		}
		var k uint64
		for _, ch := range b[i : i+12] {
			k = k<<4 | uint64(hexVal(ch))
		}
		return k
	}
}

// call makes one call and waits for its answer (false: lost).
func (c *caller) call() bool {
	id := c.send()
	deadline := time.Now().Add(c.lostAfter)
	for {
		switch got := c.recv(deadline); got {
		case 0:
			return false
		case id:
			return true
		} // a late answer to a lost call
	}
}

// window makes n calls with up to inflight outstanding and waits for all
// of them (answered or lost), adding to got, lost and elapsed.
func (c *caller) window(n, inflight int) {
	// sentAt[k-first] is when call k went out; zero once answered or
	// given up. oldest is the lowest call number still outstanding.
	first := c.seq + 1
	sentAt := make([]time.Time, n)
	start := time.Now()
	outstanding, got, lost := 0, 0, 0
	oldest := first
	top := func() {
		for outstanding < inflight && int(c.seq+1-first) < n {
			k := c.send()
			sentAt[k-first] = time.Now()
			outstanding++
		}
	}
	top()
	last := start
	var newest uint64 // the highest call number answered
	for got+lost < n {
		k := c.recv(time.Now().Add(c.lostAfter / 4))
		now := time.Now()
		if k >= first && k-first < uint64(n) && !sentAt[k-first].IsZero() {
			sentAt[k-first] = time.Time{}
			outstanding--
			got++
			last = now
			newest = max(newest, k)
		}
		// A call is lost when calls made reorder×inflight later were answered
		// (engines answer one connection's calls about in order), or
		// when the socket fell silent and it is older than lostAfter.
		for oldest < c.seq+1 {
			t := sentAt[oldest-first]
			if !t.IsZero() && oldest+c.reorder*uint64(inflight) > newest && (k != 0 || now.Sub(t) < c.lostAfter) {
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
	c.got += got
	c.lost += lost
	c.elapsed += last.Sub(start)
}
