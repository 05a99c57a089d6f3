package main

import (
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// streamfan: issue 11's stream fan-out. -clients stream WebSocket clients
// (gorilla, this process) join one group of stream "bench" on the
// engine's stream-client listener; then -n stream::set calls, one after
// another over the raw protocol, each awaited at every client. Reported:
// p50/p99 from a set's call to each client's receipt, and receipts/s.
func cmdStreamFan(args []string) {
	fs := flag.NewFlagSet("streamfan", flag.ExitOnError)
	streamAddr := fs.String("stream", "", "stream-client listener host:port")
	u := fs.String("url", "", "engine worker URL")
	clients := fs.Int("clients", 1000, "stream clients")
	n := fs.Int("n", 50, "stream::set calls")
	burst := fs.Int("burst", 1, "stream::set calls sent back to back per round (each round awaited at every client)")
	pidList := fs.String("pids", "", "the engine's process ids (comma-separated): their CPU and context switches are counted over the stream::set phase only")
	_ = fs.Parse(args)
	var pids []*child
	for _, f := range strings.Split(*pidList, ",") {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, &child{cmd: &exec.Cmd{Process: &os.Process{Pid: pid}}})
		}
	}
	var mu sync.Mutex
	var lat []time.Duration
	var sent atomic.Int64
	received := make(chan struct{}, *clients*(*burst+3))
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	for i := range *clients {
		ws, _, err := d.Dial("ws://"+*streamAddr+"/", nil)
		// The engine may open its stream listener a moment after its
		// worker listener.
		for deadline := time.Now().Add(10 * time.Second); err != nil && i == 0 && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			ws, _, err = d.Dial("ws://"+*streamAddr+"/", nil)
		}
		if err != nil {
			log.Fatal(err)
		}
		defer ws.Close()
		if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"join","data":{"subscriptionId":"s","streamName":"bench","groupId":"g"}}`)); err != nil {
			log.Fatal(err)
		}
		go func() {
			first := true
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
				if !first {
					d := time.Since(time.Unix(0, sent.Load()))
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
				first = false
				received <- struct{}{}
			}
		}()
	}
	missing := 0
	wait := func(want int) {
		t := time.NewTimer(10 * time.Second)
		defer t.Stop()
		for i := range want {
			select {
			case <-received:
			case <-t.C:
				missing += want - i
				return
			}
		}
	}
	wait(*clients) // every client's sync
	if missing > 0 {
		log.Fatalf("%d of %d stream clients got no sync after joining", missing, *clients)
	}
	ws, err := dialRaw(*u)
	if err != nil {
		log.Fatal(err)
	}
	c := &caller{ws: ws, fn: "stream::set", dataParts: strings.Split(`{"stream_name":"bench","group_id":"g","item_id":"x","data":{"n":{i}}}`, "{i}"),
		lostAfter: 5 * time.Second, reorder: 1,
		prefix: fmt.Sprintf("%08x-%04x-4%03x-8%03x-", rand.Uint32(), rand.Uint32()&0xffff, rand.Uint32()&0xfff, rand.Uint32()&0xfff)}
	c.idKey = []byte(`"invocation_id":"` + c.prefix)
	cpu0, cs0, self0 := cpuOf(pids), switchesOf(pids), procCPU(os.Getpid())
	ph := startPhase()
	start := time.Now()
	var all []time.Duration // per round: until every client had all of it
	for range *n / *burst {
		t0 := time.Now()
		sent.Store(t0.UnixNano())
		if *burst == 1 {
			if !c.call() {
				log.Fatal("stream::set got no answer")
			}
		} else {
			last := uint64(0)
			for range *burst {
				last = c.send()
			}
			for deadline := time.Now().Add(c.lostAfter); ; {
				got := c.recv(deadline)
				if got == 0 {
					log.Fatal("stream::set got no answer")
				}
				if got == last {
					break
				}
			}
		}
		wait(*clients * *burst)
		all = append(all, time.Since(t0))
	}
	el := time.Since(start)
	cpu, cs, self := cpuOf(pids)-cpu0, switchesOf(pids)-cs0, procCPU(os.Getpid())-self0
	mu.Lock()
	defer mu.Unlock()
	r := result{P50us: pct(lat, .5), P99us: pct(lat, .99), Rate: float64(len(lat)) / el.Seconds(),
		Ops: int64(len(lat)), Seconds: el.Seconds(), Lost: int64(missing),
		MidCPUus: cpu.Microseconds(), MidSwitches: cs, SelfCPUus: self.Microseconds(), AllP50us: pct(all, .5)}
	ph.fill(&r) // the client's CPU exact, and the machine's, over the same phase
	report(r)
}
