// Command benchsuite is Sluice's multi-process benchmark suite: every hop
// is a process of its own, for Sluice, for the plain baselines and for the
// upstream engine, and the ratios come from one run with the targets
// interleaved. bench/run.sh builds it and the engine and runs it:
//
//	bash bench/run.sh                  # everything, a few minutes
//	bash bench/run.sh -reps 2 -only 'invoke|http'
//
// The same binary is every process of the suite (the driver starts itself
// with a subcommand):
//
//	run        the driver (default)
//	worker     raw-protocol worker: bench::echo, the HTTP echo, the blob
//	invoke     invocation caller (sequential p50/p99, or throughput)
//	httpload   HTTP JSON echo clients
//	download   HTTP download client
//	chanwrite  channel (or TCP relay) writer
//	chanread   channel (or TCP relay) reader
//	streamfan  1,000 stream clients and the stream::set calls they receive
//	loopwrite  the CPU of one small loopback write (a fan-out's floor)
//	wsecho, wsrelay, tcprelay, httpbackend, revproxy   the baselines
//	httpbare   the HTTP echo's floors: net/http alone, and with one WebSocket hop
//	engine     the Sluice engine in process, with a CPU profile (run -profile)
//	natsserver, natsread, natswrite, natscall   the cluster workloads' NATS baselines
package main

import (
	"fmt"
	"os"
)

func main() {
	cmds := map[string]func([]string){
		"run":         cmdRun,
		"worker":      cmdWorker,
		"invoke":      cmdInvoke,
		"httpload":    cmdHTTPLoad,
		"download":    cmdDownload,
		"chanwrite":   cmdChanWrite,
		"chanread":    cmdChanRead,
		"wsecho":      cmdWSEcho,
		"wsrelay":     cmdWSRelay,
		"tcprelay":    cmdTCPRelay,
		"httpbackend": cmdHTTPBackend,
		"revproxy":    cmdRevProxy,
		"httpbare":    cmdHTTPBare,
		"engine":      cmdEngine,
		"streamfan":   cmdStreamFan,
		"natsserver":  cmdNATSServer,
		"natsread":    cmdNATSRead,
		"natswrite":   cmdNATSWrite,
		"natscall":    cmdNATSCall,
		"loopwrite":   cmdLoopWrite,
	}
	args := os.Args[1:]
	name := "run"
	if len(args) > 0 && cmds[args[0]] != nil {
		name, args = args[0], args[1:]
	}
	if f := cmds[name]; f != nil {
		f(args)
		return
	}
	fmt.Fprintf(os.Stderr, "benchsuite: unknown subcommand %q\n", name)
	os.Exit(2)
}
