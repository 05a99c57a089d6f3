package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"syscall"

	sluiceengine "github.com/sluicehq/sluice/engine"
)

// engine: the Sluice engine in this process, as `sluice serve` runs it
// with the suite's settings (memory store, no console or stream-client
// listener), writing a CPU profile of its whole life to -cpuprofile. The
// driver runs it instead of the built binary with `run -profile DIR`.
func cmdEngine(args []string) {
	fs := flag.NewFlagSet("engine", flag.ExitOnError)
	prof := fs.String("cpuprofile", "", "write a CPU profile here at exit")
	memProf := fs.String("memprofile", "", "write an allocation profile (every allocation counted) here at exit")
	traceOut := fs.String("trace", "", "write an execution trace of the whole run here (go tool trace; goroutine wake-ups)")
	dataDir := fs.String("data-dir", sluiceengine.DataDirMemory, "store directory")
	streams := fs.Bool("streams", false, "serve stream clients on a free port")
	nodeName := fs.String("node-name", "", "cluster: this node's name")
	clusterListen := fs.String("cluster-listen", "", "cluster: embedded NATS route listener (cluster mode when set)")
	clusterPeers := fs.String("cluster-peers", "", "cluster: the other nodes' route addresses, comma-separated")
	_ = fs.Parse(args)
	if *memProf != "" {
		runtime.MemProfileRate = 1 // exact counts (slower)
	}
	cfg := sluiceengine.DefaultConfig()
	cfg.Addr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.ConsoleAddr, cfg.Streams.Addr = "", ""
	cfg.DataDir = *dataDir
	if *streams {
		cfg.Streams.Addr = "127.0.0.1:0"
	}
	if *clusterListen != "" {
		cfg.Cluster.NodeName, cfg.Cluster.Listen, cfg.Cluster.Secret = *nodeName, *clusterListen, os.Getenv("SLUICE_CLUSTER_SECRET")
		cfg.Cluster.Peers = strings.Split(*clusterPeers, ",")
	}
	e, err := sluiceengine.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		log.Fatal(err)
	}
	if *prof != "" {
		defer startCPUProfile(*prof)()
	}
	if *traceOut != "" {
		f, err := os.Create(*traceOut)
		if err != nil {
			log.Fatal(err)
		}
		if err := trace.Start(f); err != nil {
			log.Fatal(err)
		}
		defer func() { trace.Stop(); f.Close() }()
	}
	if *memProf != "" {
		defer func() {
			f, err := os.Create(*memProf)
			if err != nil {
				log.Print(err)
				return
			}
			runtime.GC() // the profile is as of the last collection
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	if err := e.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	if a := e.StreamClientsAddr(); a != "" {
		fmt.Fprintf(os.Stderr, "msg=\"stream clients served\" addr=%s\n", a)
	}
	if *clusterListen != "" { // Start returned: the node is in its cluster
		fmt.Fprintf(os.Stderr, "msg=\"cluster node ready\" replicas=%d\n", min(3, len(cfg.Cluster.Peers)+1))
	}
	fmt.Fprintf(os.Stderr, "msg=\"engine started\" worker_url=%s http_url=%s\n", e.WorkerURL(), e.HTTPURL())
	<-sig
	_ = e.Shutdown(context.Background())
}
