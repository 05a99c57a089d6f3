package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// The NATS baselines of the cluster workloads (issue 15): a cluster of
// plain nats-server processes routed to each other, as the engines' embedded
// servers are, and two client processes moving the channel workload's bytes
// through it, one connected to each of two servers.

// natsserver: one nats-server of a cluster (core NATS, no JetStream),
// clients on a free loopback port, routes on -cluster to -routes. Prints
// READY nats://addr once it has a route to every peer.
func cmdNATSServer(args []string) {
	fs := flag.NewFlagSet("natsserver", flag.ExitOnError)
	name := fs.String("name", "", "server name")
	listen := fs.String("cluster", "", "route listener host:port")
	routes := fs.String("routes", "", "the other servers' route addresses, comma-separated")
	_ = fs.Parse(args)
	host, port, err := net.SplitHostPort(*listen)
	if err != nil {
		log.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	// MaxPending 1 GiB: the raw publish stream (no flow control) is not cut
	// as a slow consumer when its reader falls behind on a loaded machine.
	opts := &server.Options{ServerName: *name, Host: "127.0.0.1", Port: -1, NoSigs: true, MaxPayload: 8 << 20, MaxPending: 1 << 30,
		Cluster: server.ClusterOpts{Name: "bench", Host: host, Port: p}}
	var peers []string
	for _, r := range strings.Split(*routes, ",") {
		if r != "" {
			peers = append(peers, "nats://"+r)
		}
	}
	opts.Routes = server.RoutesFromStr(strings.Join(peers, ","))
	s, err := server.NewServer(opts)
	if err != nil {
		log.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		log.Fatal("natsserver: not ready")
	}
	for deadline := time.Now().Add(60 * time.Second); s.NumRoutes() < len(peers); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			log.Fatalf("natsserver: %d of %d routes", s.NumRoutes(), len(peers))
		}
	}
	ready(s.ClientURL())
	s.WaitForShutdown()
}

const (
	natsMsg    = 256 << 10 // the bridge's largest message (internal/channels/cluster.go bridgeMsgMax)
	natsWindow = 4 << 20   // and its window (bridgeWindow), each message counted with 64 bytes more
)

// natsread: subscribes to -subject and counts -n bytes of messages; an
// empty message ends the stream. -mode req answers every message (empty
// reply: the grant), -mode pub only reads. It subscribes to -subject.ctl
// after the data subject and answers there, so that a writer whose request
// on .ctl is answered knows the data subscription reached its server too.
func cmdNATSRead(args []string) {
	fs := flag.NewFlagSet("natsread", flag.ExitOnError)
	u := fs.String("url", "", "NATS URL")
	subj := fs.String("subject", "bench.stream", "subject")
	n := fs.Int64("n", 1<<30, "bytes")
	mode := fs.String("mode", "pub", "pub, req, or echo (answer every request with its data until killed)")
	_ = fs.Parse(args)
	lost := make(chan error, 1)
	fail := func(err error) {
		select {
		case lost <- err:
		default:
		}
	}
	nc, err := nats.Connect(*u, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { fail(err) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { fail(fmt.Errorf("disconnected: %v", err)) }))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	if *mode == "echo" {
		sub, err := nc.Subscribe(*subj, func(m *nats.Msg) { _ = m.Respond(m.Data) })
		if err != nil {
			log.Fatal(err)
		}
		_ = sub.SetPendingLimits(-1, -1)
		if err := nc.Flush(); err != nil {
			log.Fatal(err)
		}
		fmt.Println("READY")
		select {}
	}
	var got atomic.Int64
	var start, last time.Time
	done := make(chan struct{})
	sub, err := nc.Subscribe(*subj, func(m *nats.Msg) {
		if len(m.Data) == 0 {
			close(done)
			return
		}
		if got.Load() == 0 {
			start = time.Now()
		}
		got.Add(int64(len(m.Data)))
		last = time.Now()
		if *mode == "req" {
			_ = m.Respond(nil)
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if _, err := nc.Subscribe(*subj+".ctl", func(m *nats.Msg) { _ = m.Respond(nil) }); err != nil {
		log.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("READY")
	select {
	case <-done:
	case err := <-lost: // a slow consumer: NATS dropped messages or the connection
		log.Fatalf("natsread: %v after %d of %d bytes", err, got.Load(), *n)
	case <-time.After(5 * time.Minute):
		log.Fatalf("natsread: %d of %d bytes after 5 min", got.Load(), *n)
	}
	if got.Load() != *n {
		if d, err := sub.Dropped(); err == nil && d > 0 {
			log.Printf("natsread: %d messages dropped", d)
		}
		log.Fatalf("natsread: %d of %d bytes", got.Load(), *n)
	}
	el := last.Sub(start)
	report(result{Rate: float64(*n) / el.Seconds() / 1e6, Ops: *n, Seconds: el.Seconds()})
}

// natswrite: sends -n bytes to -subject in messages of 256 KiB. -mode pub
// publishes them as fast as the connection takes them (a raw stream, no
// flow control); -mode req sends them as requests with at most 4 MiB (64
// bytes counted per message) not yet answered, the cluster bridge's
// window. An empty message ends the stream.
func cmdNATSWrite(args []string) {
	fs := flag.NewFlagSet("natswrite", flag.ExitOnError)
	u := fs.String("url", "", "NATS URL")
	subj := fs.String("subject", "bench.stream", "subject")
	n := fs.Int64("n", 1<<30, "bytes")
	mode := fs.String("mode", "pub", "pub or req")
	_ = fs.Parse(args)
	nc, err := nats.Connect(*u)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	// Wait until the reader's subscriptions reached this server.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := nc.Request(*subj+".ctl", nil, time.Second); err == nil {
			break
		}
		if time.Now().After(deadline) {
			log.Fatal("natswrite: the reader never answered")
		}
	}
	payload := make([]byte, natsMsg)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	switch *mode {
	case "pub":
		for sent := int64(0); sent < *n; {
			k := min(int64(natsMsg), *n-sent)
			if err := nc.Publish(*subj, payload[:k]); err != nil {
				log.Fatal(err)
			}
			sent += k
		}
	case "req":
		inbox := nats.NewInbox()
		grants := make(chan struct{}, *n/natsMsg+2)
		rs, err := nc.Subscribe(inbox, func(*nats.Msg) { grants <- struct{}{} })
		if err != nil {
			log.Fatal(err)
		}
		_ = rs.SetPendingLimits(-1, -1)
		const cost = natsMsg + 64
		inflight := 0
		for sent := int64(0); sent < *n; {
			for (inflight+1)*cost > natsWindow {
				select {
				case <-grants:
					inflight--
				case <-time.After(30 * time.Second):
					log.Fatal("natswrite: no reply for 30 s")
				}
			}
			k := min(int64(natsMsg), *n-sent)
			if err := nc.PublishRequest(*subj, inbox, payload[:k]); err != nil {
				log.Fatal(err)
			}
			inflight++
			sent += k
		}
		for ; inflight > 0; inflight-- {
			select {
			case <-grants:
			case <-time.After(30 * time.Second):
				log.Fatal("natswrite: no reply for 30 s")
			}
		}
	default:
		log.Fatalf("natswrite: mode %q", *mode)
	}
	if err := nc.Publish(*subj, nil); err != nil {
		log.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		log.Fatal(err)
	}
}

// natscall: NATS request/reply round trips to -subject (a natsread -mode
// echo on another server), the invocation workloads' reference: -mode seq
// one at a time (p50, p99), -mode tput -inflight outstanding (calls/s).
// The payload is the invocation workloads' data.
func cmdNATSCall(args []string) {
	fs := flag.NewFlagSet("natscall", flag.ExitOnError)
	u := fs.String("url", "", "NATS URL")
	subj := fs.String("subject", "bench.echo", "subject")
	mode := fs.String("mode", "seq", "seq or tput")
	n := fs.Int("n", 5000, "calls measured")
	warm := fs.Int("warm", 500, "calls before measuring")
	inflight := fs.Int("inflight", 128, "calls in flight (tput)")
	_ = fs.Parse(args)
	nc, err := nats.Connect(*u)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	data := []byte(`{"user":"ada","op":"echo","n":42,"tags":["a","b"]}`)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := nc.Request(*subj, data, time.Second); err == nil {
			break
		}
		if time.Now().After(deadline) {
			log.Fatal("natscall: no responder")
		}
	}
	for range *warm {
		if _, err := nc.Request(*subj, data, 5*time.Second); err != nil {
			log.Fatal(err)
		}
	}
	switch *mode {
	case "seq":
		lat := make([]time.Duration, 0, *n)
		start := time.Now()
		for range *n {
			t := time.Now()
			if _, err := nc.Request(*subj, data, 5*time.Second); err != nil {
				log.Fatal(err)
			}
			lat = append(lat, time.Since(t))
		}
		el := time.Since(start)
		report(result{P50us: pct(lat, .5), P99us: pct(lat, .99), Rate: float64(*n) / el.Seconds(), Ops: int64(*n), Seconds: el.Seconds()})
	case "tput":
		inbox := nats.NewInbox()
		got := make(chan struct{}, *inflight)
		sub, err := nc.Subscribe(inbox, func(*nats.Msg) { got <- struct{}{} })
		if err != nil {
			log.Fatal(err)
		}
		_ = sub.SetPendingLimits(-1, -1)
		start := time.Now()
		out := 0
		for sent := 0; sent < *n || out > 0; {
			if sent < *n && out < *inflight {
				if err := nc.PublishRequest(*subj, inbox, data); err != nil {
					log.Fatal(err)
				}
				sent++
				out++
				continue
			}
			select {
			case <-got:
				out--
			case <-time.After(5 * time.Second):
				log.Fatal("natscall: no reply for 5 s")
			}
		}
		el := time.Since(start)
		report(result{Rate: float64(*n) / el.Seconds(), Ops: int64(*n), Seconds: el.Seconds()})
	default:
		log.Fatalf("natscall: mode %q", *mode)
	}
}
