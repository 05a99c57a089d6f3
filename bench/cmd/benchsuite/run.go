package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

type runOpts struct {
	sluice, upstreamGz string
	sluiceB            string
	reps               int
	only               *regexp.Regexp
	invokeN, tputN     int
	seqBatch           int
	httpDur            time.Duration
	chanBytes, dlBytes int64
	self               string
	tmp                string
	stateN, pubsubN    int
	streamN            int
	warm               []string      // invoke: warm-up flag
	httpWarm           time.Duration // httpload: warm-up
	strace             bool
	profile            string
	memprofile         bool // with profile: also an exact allocation profile
	gotrace            bool // with profile: also an execution trace
	clusterCPU         float64
	clusterClients     int
}

// endpoint is a running engine (or baseline) as the load processes see it.
type engine struct {
	name    string
	wsURL   string // worker socket (engines) or relay (baseline)
	httpURL string
	mid     []*child // the processes in the middle, whose CPU is counted
	ends    []*child // the far end (worker, echo, backend), counted too
	ctl     *ctlConn // engines: the driver's own connection, for channels
	stream  string   // the stream-client listener (host:port), where there is one

	cpu, endCPU time.Duration // of the last multi-target run
	switches    int64
}

func cmdRun(args []string) {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	var o runOpts
	var only string
	var big, smoke bool
	fs.StringVar(&o.sluice, "sluice", "", "the built sluice binary (required)")
	fs.StringVar(&o.sluiceB, "sluice-b", "", "a second Sluice binary (another build: before/after a change), measured as one more target; its rows give B ÷ A")
	fs.StringVar(&o.upstreamGz, "upstream", "/work/shared/tools/upstream/iii-0.22.1-linux-amd64.gz", `the upstream engine binary (gzipped, or plain); "" skips it`)
	fs.IntVar(&o.reps, "reps", 5, "interleaved repetitions of each workload (the ratio reported is the median)")
	fs.StringVar(&only, "only", "", "regexp: run only the workloads whose name matches")
	fs.IntVar(&o.invokeN, "invoke-n", 3000, "sequential round trips per run")
	fs.IntVar(&o.seqBatch, "seq-batch", 30, "invoke-seq: calls to one target before the next (fine interleaving: a shared machine's drifting load hits every target alike)")
	fs.IntVar(&o.tputN, "tput-n", 30000, "round trips per throughput run (128 in flight)")
	fs.IntVar(&o.stateN, "state-n", 5000, "state::set / state::get calls per run")
	fs.IntVar(&o.pubsubN, "pubsub-n", 200, "publishes per pubsub run (each reaches 100 subscriptions)")
	fs.IntVar(&o.streamN, "stream-n", 30, "stream::set calls per stream fan-out run (each reaches 1,000 clients)")
	fs.DurationVar(&o.httpDur, "http-dur", time.Second, "measured time per HTTP echo run")
	fs.Int64Var(&o.chanBytes, "chan-bytes", 256<<20, "bytes per channel run")
	fs.Int64Var(&o.dlBytes, "download-bytes", 256<<20, "bytes per download run")
	fs.BoolVar(&big, "big", false, "1 GiB channel and download runs")
	fs.BoolVar(&smoke, "smoke", false, "tiny sizes, one repetition: checks that every process works")
	fs.StringVar(&o.profile, "profile", "", "run Sluice's engine in process with a CPU profile, written to DIR/engine.cpu.pprof (the state workloads' engine: DIR/state.cpu.pprof; the HTTP floors: DIR/http-bare.cpu.pprof, DIR/http-ws.cpu.pprof) at the end (go tool pprof -top)")
	fs.BoolVar(&o.memprofile, "memprofile", false, "with -profile: also write DIR/<engine>.allocs.pprof, every allocation counted (go tool pprof -sample_index=alloc_objects -top; slows the engine)")
	fs.BoolVar(&o.gotrace, "gotrace", false, "with -profile: also write an execution trace, DIR/<engine>.trace (goroutine wake-ups: go tool trace -d=parsed FILE, transitions Waiting->Runnable)")
	fs.Float64Var(&o.clusterCPU, "cluster-node-cpu", 0.25, "cluster-http: CPU cores each node may use (cgroup CPU bandwidth; 0: unlimited)")
	fs.IntVar(&o.clusterClients, "cluster-http-clients", 48, "cluster-http: HTTP clients (spread over the nodes, or all on one)")
	fs.BoolVar(&o.strace, "strace", false, "count the middle processes' system calls per operation (strace -c -f; slows every run: ratios are then meaningless)")
	_ = fs.Parse(args)
	if o.sluice == "" {
		log.Fatal("run: -sluice BINARY is required (bench/run.sh builds it)")
	}
	if big {
		o.chanBytes, o.dlBytes = 1<<30, 1<<30
	}
	if smoke {
		o.reps, o.invokeN, o.tputN, o.httpDur, o.chanBytes, o.dlBytes, o.stateN, o.pubsubN, o.streamN = 1, 200, 1000, 100*time.Millisecond, 4<<20, 4<<20, 300, 20, 3
		o.warm = []string{"-warm", "20"}
		o.httpWarm = 20 * time.Millisecond
	}
	o.only = regexp.MustCompile(only)
	if o.httpWarm == 0 {
		o.httpWarm = 300 * time.Millisecond
	}
	var err error
	if o.self, err = os.Executable(); err != nil {
		log.Fatal(err)
	}
	if o.tmp, err = os.MkdirTemp("", "sluice-bench-"); err != nil {
		log.Fatal(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		killChildren()
		os.RemoveAll(o.tmp)
		os.Exit(1)
	}()
	err = run(&o)
	killChildren()
	os.RemoveAll(o.tmp)
	if err != nil {
		log.Fatal(err)
	}
}

func run(o *runOpts) error {
	start := time.Now()
	fmt.Printf("# multi-process suite, %s, reps=%d, channel %d MiB, download %d MiB\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), o.reps, o.chanBytes>>20, o.dlBytes>>20)
	var rows []row
	var tabs []cpuTable
	add := func(w workload) {
		if !o.only.MatchString(w.name) {
			return
		}
		rs, tab := measure(o, w)
		rows = append(rows, rs...)
		tabs = append(tabs, tab)
	}
	// The engines and baselines below serve these workloads only; the
	// others start their own.
	if slices.ContainsFunc(mainWorkloads, o.only.MatchString) || slices.ContainsFunc(moduleNames, o.only.MatchString) {
		if err := mainSuite(o, add); err != nil {
			return err
		}
	}
	observeWorkload(o, add)
	clusterWorkloads(o, add)
	printTable(rows)
	printCPUTable(tabs)
	printFloors(tabs)
	fmt.Printf("# took %v\n", time.Since(start).Round(time.Second))
	return nil
}

// mainWorkloads run on the engines mainSuite starts.
var mainWorkloads = []string{"invoke-seq", "invoke-tput", "http-echo-1", "http-echo-8", "http-echo-64", "channel", "download"}

func mainSuite(o *runOpts, add func(workload)) error {
	sl, err := startSluice(o)
	if err != nil {
		return err
	}
	var up *engine
	if o.upstreamGz != "" {
		if up, err = startUpstream(o); err != nil {
			return fmt.Errorf("upstream engine: %w", err)
		}
	}
	relay, proxy, copyRelay, spliceRelay, httpFloors, err := startBaselines(o)
	if err != nil {
		return err
	}
	engines := []*engine{sl}
	if up != nil {
		engines = append(engines, up)
	}
	if o.sluiceB != "" {
		b, err := startSluiceBin(o, o.sluiceB, "sluice-b", "--data-dir", "memory")
		if err != nil {
			return fmt.Errorf("-sluice-b: %w", err)
		}
		engines = append(engines, b)
	}
	invokeArgs := func(mode string, n, batch int) func([]*engine) ([]result, error) {
		return func(es []*engine) ([]result, error) {
			return runLoadAll(o, "invoke", 5*time.Minute, slices.Concat([]string{"-url", urls(es, false), "-mode", mode, "-n", fmt.Sprint(n), "-batch", fmt.Sprint(batch)}, pidArgs(es), o.warm)...)
		}
	}
	add(workload{name: "invoke-seq", targets: append([]*engine{relay}, engines...), runAll: invokeArgs("seq", o.invokeN, o.seqBatch),
		metric: "p50 µs", value: func(r result) float64 { return r.P50us }, lowerBetter: true, serial: true,
		goals: []goal{{"relay", 1.2}, {"upstream", 0.5}}})
	add(workload{name: "invoke-tput", targets: append([]*engine{relay}, engines...), runAll: invokeArgs("tput", o.tputN, 0),
		metric: "calls/s", value: func(r result) float64 { return r.Rate },
		goals: []goal{{"relay", 0.9}, {"upstream", 0}}})
	for _, clients := range []int{1, 8, 64} {
		add(workload{name: fmt.Sprintf("http-echo-%d", clients), targets: slices.Concat([]*engine{proxy}, httpFloors, engines),
			runAll: func(es []*engine) ([]result, error) {
				return runLoadAll(o, "httpload", 5*time.Minute, append([]string{"-url", urls(es, true), "-clients", fmt.Sprint(clients), "-dur", o.httpDur.String(), "-warm", o.httpWarm.String()}, pidArgs(es)...)...)
			},
			metric: "req/s", value: func(r result) float64 { return r.Rate }, serial: clients == 1,
			goals: []goal{{"proxy", 1.0}, {"upstream", 2.0}, {"http-bare", 0}, {"http-ws", 0}},
			least: []string{"http-bare", "http-ws"}})
	}
	add(workload{name: "channel", targets: append([]*engine{copyRelay, spliceRelay}, engines...),
		run:    func(e *engine) (result, error) { return runChannel(o, e) },
		metric: "MB/s", value: func(r result) float64 { return r.Rate },
		goals: []goal{{"copy-relay", 0.9}, {"splice-relay", 0}, {"upstream", 2.0}}})
	add(workload{name: "download", targets: append([]*engine{proxy}, engines...),
		run: func(e *engine) (result, error) {
			return runLoad(o, "download", 5*time.Minute, "-url", e.httpURL, "-n", fmt.Sprint(o.dlBytes))
		},
		metric: "MB/s", value: func(r result) float64 { return r.Rate },
		goals: []goal{{"proxy", 1.0}, {"upstream", 2.0}}})
	if up != nil { // their ratio is to upstream
		moduleWorkloads(o, add)
	}
	return nil
}

// runLoadAll runs one load process against several targets and returns
// its results, in order.
func runLoadAll(o *runOpts, sub string, timeout time.Duration, args ...string) ([]result, error) {
	c, err := startChild(sub, o.tmp, nil, o.self, append([]string{sub}, args...)...)
	if err != nil {
		return nil, err
	}
	return c.results(timeout)
}

func urls(es []*engine, http bool) string {
	var u []string
	for _, e := range es {
		if http {
			u = append(u, e.httpURL)
		} else {
			u = append(u, e.wsURL)
		}
	}
	return strings.Join(u, ",")
}

// runLoad runs one load process and returns its result.
func runLoad(o *runOpts, sub string, timeout time.Duration, args ...string) (result, error) {
	c, err := startChild(sub, o.tmp, nil, o.self, append([]string{sub}, args...)...)
	if err != nil {
		return result{}, err
	}
	r, err := c.result(timeout)
	if r.ClientCPUus == 0 && r.SelfCPUus == 0 { // the client: the whole process
		r.ClientCPUus = exitedCPU(c).Microseconds()
	}
	return r, err
}

// ---------------------------------------------------------------- targets

func startSluice(o *runOpts) (*engine, error) {
	if o.profile != "" {
		return startSluiceProfiled(o, "engine.cpu.pprof")
	}
	return startSluiceWith(o, "--data-dir", "memory")
}

// startSluiceProfiled runs the engine as this binary's `engine`
// subcommand, which writes a CPU profile when it is stopped.
func startSluiceProfiled(o *runOpts, file string, extra ...string) (*engine, error) {
	if err := os.MkdirAll(o.profile, 0o755); err != nil {
		return nil, err
	}
	args := []string{"engine", "-cpuprofile", filepath.Join(o.profile, file)}
	base := strings.TrimSuffix(file, ".cpu.pprof")
	if o.memprofile {
		args = append(args, "-memprofile", filepath.Join(o.profile, base+".allocs.pprof"))
	}
	if o.gotrace {
		args = append(args, "-trace", filepath.Join(o.profile, base+".trace"))
	}
	c, err := startChild("sluice", o.tmp, nil, o.self, append(args, extra...)...)
	if err != nil {
		return nil, err
	}
	return sluiceStarted(o, c)
}

func startSluiceWith(o *runOpts, extra ...string) (*engine, error) {
	return startSluiceBin(o, o.sluice, "sluice", extra...)
}

func startSluiceBin(o *runOpts, bin, name string, extra ...string) (*engine, error) {
	cfg := filepath.Join(o.tmp, "sluice.yaml")
	// No stream-client listener: its default port may be taken on a shared machine.
	if err := os.WriteFile(cfg, []byte("streams:\n  addr: \"\"\n"), 0o644); err != nil {
		return nil, err
	}
	c, err := startChild(name, o.tmp, []string{"SLUICE_CONFIG="}, bin, append([]string{"serve", "--config", cfg,
		"--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--console-addr", "off",
		"--log-level", "info"}, extra...)...)
	if err != nil {
		return nil, err
	}
	return sluiceStarted(o, c)
}

func sluiceStarted(o *runOpts, c *child) (*engine, error) {
	name := c.name
	re := regexp.MustCompile(`msg="engine started" worker_url=(ws://[^ ]+) http_url=(http://[^ ]+)`)
	streamRE := regexp.MustCompile(`msg="stream clients served" addr=(\S+)`)
	var stream string
	line, err := c.waitLine(c.stderr, 30*time.Second, func(s string) bool {
		if m := streamRE.FindStringSubmatch(s); m != nil {
			stream = m[1]
		}
		return re.MatchString(s)
	})
	if err != nil {
		return nil, err
	}
	if stream == "" { // logged right after the start, when it serves stream clients
		if l, err := c.waitLine(c.stderr, 500*time.Millisecond, streamRE.MatchString); err == nil {
			stream = streamRE.FindStringSubmatch(l)[1]
		}
	}
	m := re.FindStringSubmatch(line)
	e := &engine{name: name, wsURL: m[1], httpURL: m[2], mid: []*child{c}, stream: stream}
	return e, withWorker(o, e)
}

// startUpstream runs the upstream engine (0.22.1) with the modules of
// ../shared/tools/upstream/config-bench.yaml on free ports.
func startUpstream(o *runOpts) (*engine, error) {
	return startUpstreamWith(o, filepath.Join(o.tmp, "upstream"), "")
}

// startUpstreamWith runs the upstream engine in dir with the bench
// modules and the extra workers given (YAML list items).
func startUpstreamWith(o *runOpts, dir, extraWorkers string) (*engine, error) {
	bin, err := upstreamBinary(o.upstreamGz)
	if err != nil {
		return nil, err
	}
	wsPort, httpPort := freePort(), freePort()
	if err := os.MkdirAll(filepath.Join(dir, "home"), 0o755); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`workers:
  - name: iii-worker-manager
    config: {host: 127.0.0.1, port: %d}
  - name: iii-http
    config: {host: 127.0.0.1, port: %d, default_timeout: 2000, concurrency_request_limit: 1024}
  - name: configuration
    config:
      adapter: {name: fs, config: {directory: %s/config}}
      ttl_seconds: 0
  - name: iii-observability
    config: {enabled: false, exporter: memory, memory_max_spans: 1, metrics_enabled: false, logs_enabled: false, logs_console_output: false, level: warn}
  - name: iii-telemetry
    config: {enabled: false}
`, wsPort, httpPort, dir) + extraWorkers
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	c, err := startChild("upstream", dir, []string{"III_RUN_DIR=" + dir, "III_TELEMETRY_ENABLED=false",
		"IIIWORKER_DISABLE_BUILTIN_DAEMONS=1", "OTEL_ENABLED=false", "HOME=" + filepath.Join(dir, "home"), "III_LOG_LEVEL=warn"},
		bin, "--config", filepath.Join(dir, "config.yaml"))
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", wsPort)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			break
		}
		select {
		case <-c.done:
			return nil, fmt.Errorf("exited: %v\n%s", c.err, c.stderrTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("not listening on %s after 30 s:\n%s", addr, c.stderrTail())
		}
	}
	e := &engine{name: "upstream", wsURL: "ws://" + addr, httpURL: fmt.Sprintf("http://127.0.0.1:%d", httpPort), mid: []*child{c}}
	return e, withWorker(o, e)
}

func upstreamBinary(path string) (string, error) {
	if !strings.HasSuffix(path, ".gz") {
		return path, nil
	}
	dir := filepath.Join(os.TempDir(), "sluice-bench-upstream")
	bin := filepath.Join(dir, strings.TrimSuffix(filepath.Base(path), ".gz"))
	if st, err := os.Stat(bin); err == nil && st.Mode()&0o100 != 0 {
		return bin, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "unpack-")
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(tmp, zr); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", err
	}
	tmp.Close()
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		return "", err
	}
	return bin, os.Rename(tmp.Name(), bin)
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// withWorker starts the raw-protocol worker on e, waits until its HTTP
// route answers (its functions were registered before it), and opens the
// driver's control connection.
func withWorker(o *runOpts, e *engine) error {
	w, err := startChild(e.name+" worker", o.tmp, nil, o.self, "worker", "-url", e.wsURL)
	if err != nil {
		return err
	}
	if _, err := w.ready(); err != nil {
		return err
	}
	e.ends = []*child{w}
	body := []byte(`{"id":42,"name":"widget","tags":["a","b","c"]}`)
	for deadline := time.Now().Add(30 * time.Second); ; {
		res, err := http.Post(e.httpURL+"/echo/7", "application/json", bytes.NewReader(body))
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: the worker's HTTP route never answered (%v)", e.name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.ctl, err = dialCtl(e.wsURL)
	return err
}

func startBaselines(o *runOpts) (relay, proxy, copyRelay, spliceRelay *engine, httpFloors []*engine, err error) {
	start := func(name string, args ...string) (*child, string) {
		if err != nil {
			return nil, ""
		}
		var c *child
		if c, err = startChild(name, o.tmp, nil, o.self, args...); err != nil {
			return nil, ""
		}
		var addr string
		addr, err = c.ready()
		return c, addr
	}
	ec, echoURL := start("wsecho", "wsecho")
	rc, relayURL := start("wsrelay", "wsrelay", "-target", echoURL)
	bc, backendURL := start("httpbackend", "httpbackend")
	pc, proxyURL := start("revproxy", "revproxy", "-target", backendURL)
	cc, copyAddr := start("tcprelay copy", "tcprelay", "-mode", "copy")
	sc, spliceAddr := start("tcprelay splice", "tcprelay", "-mode", "splice")
	// The HTTP echo's floors (httpbare.go), each with its own processes so
	// that -strace counts only theirs.
	profArgs := func(name string) []string {
		if o.profile == "" || os.MkdirAll(o.profile, 0o755) != nil {
			return nil
		}
		return []string{"-cpuprofile", filepath.Join(o.profile, name+".cpu.pprof")}
	}
	hb, bareURL := start("http-bare", append([]string{"httpbare"}, profArgs("http-bare")...)...)
	hec, hopEchoURL := start("http-ws echo", "wsecho")
	hw, hwURL := start("http-ws", append([]string{"httpbare", "-ws", hopEchoURL}, profArgs("http-ws")...)...)
	if err != nil {
		return
	}
	return &engine{name: "relay", wsURL: relayURL, mid: []*child{rc}, ends: []*child{ec}},
		&engine{name: "proxy", httpURL: proxyURL, mid: []*child{pc}, ends: []*child{bc}},
		&engine{name: "copy-relay", wsURL: copyAddr, mid: []*child{cc}},
		&engine{name: "splice-relay", wsURL: spliceAddr, mid: []*child{sc}},
		[]*engine{{name: "http-bare", httpURL: bareURL, mid: []*child{hb}},
			{name: "http-ws", httpURL: hwURL, mid: []*child{hw}, ends: []*child{hec}}}, nil
}

// ---------------------------------------------------------------- channels

// ctlConn is the driver's worker connection to an engine, used to create
// channels. A goroutine reads it all the time (answering the engine's
// pings).
type ctlConn struct {
	c       *websocket.Conn
	mu      sync.Mutex
	seq     int
	waiting map[string]chan json.RawMessage
}

func dialCtl(u string) (*ctlConn, error) {
	c, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		return nil, err
	}
	cc := &ctlConn{c: c, waiting: map[string]chan json.RawMessage{}}
	go func() {
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			var m struct {
				Type         string          `json:"type"`
				InvocationID string          `json:"invocation_id"`
				Result       json.RawMessage `json:"result"`
				Error        json.RawMessage `json:"error"`
			}
			if json.Unmarshal(b, &m) != nil || m.Type != "invocationresult" {
				continue
			}
			cc.mu.Lock()
			ch := cc.waiting[m.InvocationID]
			delete(cc.waiting, m.InvocationID)
			cc.mu.Unlock()
			if ch != nil {
				if m.Error != nil {
					ch <- append(json.RawMessage(`{"error":`), append(m.Error, '}')...)
				} else {
					ch <- m.Result
				}
			}
		}
	}()
	return cc, nil
}

// send writes one frame.
func (cc *ctlConn) send(frame string) error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.c.WriteMessage(websocket.TextMessage, []byte(frame))
}

func (cc *ctlConn) call(fn string, data string) (json.RawMessage, error) {
	cc.mu.Lock()
	cc.seq++
	id := fmt.Sprintf("7e0c1a2b-3c4d-4e5f-8a6b-%012x", cc.seq)
	ch := make(chan json.RawMessage, 1)
	cc.waiting[id] = ch
	err := cc.c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"type":"invokefunction","invocation_id":%q,"function_id":%q,"data":%s}`, id, fn, data))
	cc.mu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("%s: no answer", fn)
	}
}

// createChannel creates a channel through ctl and returns the URLs of its
// writing end on writerBase and its reading end on readerBase (the same
// engine, or two nodes of a cluster).
func createChannel(ctl *ctlConn, writerBase, readerBase string) (writeURL, readURL string, err error) {
	raw, err := ctl.call("engine::channels::create", `{"buffer_size":64}`)
	if err != nil {
		return "", "", err
	}
	var refs struct {
		Writer, Reader struct {
			ChannelID string `json:"channel_id"`
			AccessKey string `json:"access_key"`
		}
	}
	if err := json.Unmarshal(raw, &refs); err != nil || refs.Reader.ChannelID == "" {
		return "", "", fmt.Errorf("engine::channels::create: %s (%v)", raw, err)
	}
	u := func(base, id, key, dir string) string {
		return fmt.Sprintf("%s/ws/channels/%s?key=%s&dir=%s", strings.TrimSuffix(base, "/"), id, key, dir)
	}
	return u(writerBase, refs.Writer.ChannelID, refs.Writer.AccessKey, "write"),
		u(readerBase, refs.Reader.ChannelID, refs.Reader.AccessKey, "read"), nil
}

// runChannel moves o.chanBytes writer process → e → reader process.
func runChannel(o *runOpts, e *engine) (result, error) {
	n := fmt.Sprint(o.chanBytes)
	var rargs, wargs []string
	if e.ctl == nil { // a TCP relay
		rargs = []string{"-tcp", e.wsURL, "-n", n}
		wargs = rargs
	} else {
		wu, ru, err := createChannel(e.ctl, e.wsURL, e.wsURL)
		if err != nil {
			return result{}, fmt.Errorf("%s: %w", e.name, err)
		}
		rargs = []string{"-url", ru, "-n", n}
		wargs = []string{"-url", wu, "-n", n}
	}
	return runPair(o, append([]string{"chanread"}, rargs...), append([]string{"chanwrite"}, wargs...))
}

// ---------------------------------------------------------------- measuring

type goal struct {
	baseline string
	ratio    float64 // Sluice ÷ baseline must be ≤ (lowerBetter) or ≥ this; 0: no goal
}

type workload struct {
	name    string
	targets []*engine
	run     func(*engine) (result, error)
	// runAll, when set, measures all targets in one load process that
	// alternates between them in short batches (results in order).
	runAll      func([]*engine) ([]result, error)
	metric      string
	value       func(result) float64
	lowerBetter bool
	goals       []goal
	// main is the target whose ratios to the goals' baselines the table
	// gives ("sluice" when empty).
	main string
	// least: targets whose middle does only part of what main's must do
	// (floors: their middle CPU per op is a lower bound for main's kind).
	least []string
	// serial: one operation in flight at a time (floors: CPU per op is no
	// bound then; the wall time per op the goal allows is shown instead).
	serial bool
}

type row struct {
	workload, metric, baseline string
	sluice, base               []float64 // per repetition
	ratios                     []float64
	cpuRatios                  []float64 // the middle process's CPU per op, Sluice ÷ baseline
	goal                       float64
	lowerBetter                bool
	extra                      string
}

// measure runs w's targets in turn, rep times, rotating the order each
// repetition so that no target always runs first (or right after
// another), and prints every run as it goes.
func measure(o *runOpts, w workload) ([]row, cpuTable) {
	vals := map[string][]float64{}
	cpus := map[string][]float64{} // the middle's CPU µs per op
	tab := cpuTable{w: w, unit: "op", per: map[string][]perOp{}, floorT: map[string]bool{}, value: map[string][]float64{}}
	if strings.HasSuffix(w.metric, "MB/s") {
		tab.unit = "MiB"
	}
	for _, t := range w.targets {
		tab.order = append(tab.order, t.name)
		tab.floorT[t.name] = t.ctl != nil // an engine: the worker is its far end
	}
	for rep := range o.reps {
		order := slices.Clone(w.targets)
		k := rep % len(order)
		order = append(order[k:], order[:k]...)
		var all []result
		var allErr error
		if w.runAll != nil {
			cpu0, end0, cs0 := map[*engine]time.Duration{}, map[*engine]time.Duration{}, map[*engine]int64{}
			sts := map[*engine]*straceRun{}
			for _, t := range order {
				if o.strace {
					sts[t] = startStrace(o, t)
				}
				cpu0[t], end0[t], cs0[t] = cpuOf(t.mid), cpuOf(t.ends), switchesOf(t.mid)
			}
			all, allErr = w.runAll(order)
			for ti, t := range order {
				if st := sts[t]; st != nil && allErr == nil && ti < len(all) {
					st.report(float64(all[ti].Ops), "op")
				}
			}
			for _, t := range order {
				t.cpu, t.endCPU, t.switches = cpuOf(t.mid)-cpu0[t], cpuOf(t.ends)-end0[t], switchesOf(t.mid)-cs0[t]
			}
			if allErr == nil && len(all) != len(order) {
				allErr = fmt.Errorf("%d results for %d targets", len(all), len(order))
			}
		}
		for ti, t := range order {
			var r result
			var err error
			var cpu, end, machine, nice, window time.Duration
			var cs int64
			var st *straceRun
			us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
			if w.runAll != nil {
				err, cpu, end, cs = allErr, t.cpu, t.endCPU, t.switches
				if err == nil {
					r = all[ti]
					if r.MidCPUus > 0 { // counted by the load process over this target's batches
						cpu, cs = us(r.MidCPUus), r.MidSwitches
					}
					if r.EndCPUus > 0 {
						end = us(r.EndCPUus)
					}
					machine, nice, window = us(r.MachineCPUus), us(r.MachineNiceUs), us(r.WindowUs)
				}
			} else {
				if o.strace {
					st = startStrace(o, t)
				}
				cpu0, end0, cs0 := snapAll(t.mid), snapAll(t.ends), switchesOf(t.mid)
				mach0, nice0 := machineCPU()
				t0 := time.Now()
				r, err = w.run(t)
				window = time.Since(t0)
				mach, nc := machineCPU()
				machine, nice = mach-mach0, nc-nice0
				cpu, end, cs = sinceAll(t.mid, cpu0), sinceAll(t.ends, end0), switchesOf(t.mid)-cs0
				if r.MidCPUus > 0 { // counted by the load process over its measured phase
					cpu, cs = us(r.MidCPUus), r.MidSwitches
				}
				if r.WindowUs > 0 { // the same
					machine, nice, window = us(r.MachineCPUus), us(r.MachineNiceUs), us(r.WindowUs)
					if r.EndCPUus > 0 {
						end = us(r.EndCPUus)
					}
				}
			}
			client := us(r.ClientCPUus)
			if client == 0 {
				client = us(r.SelfCPUus)
			}
			if err != nil {
				fmt.Printf("%-12s rep %d %-12s FAILED: %v\n", w.name, rep+1, t.name, err)
				vals[t.name] = append(vals[t.name], 0)
				cpus[t.name] = append(cpus[t.name], 0)
				continue
			}
			v := w.value(r)
			vals[t.name] = append(vals[t.name], v)
			line := fmt.Sprintf("%-12s rep %d %-12s %10.1f %s", w.name, rep+1, t.name, v, w.metric)
			if r.P99us > 0 {
				line += fmt.Sprintf("  p50 %.0f µs, p99 %.0f µs", r.P50us, r.P99us)
			}
			if r.AllP50us > 0 {
				line += fmt.Sprintf(", all reached p50 %.0f µs", r.AllP50us)
			}
			unit, per := "op", float64(r.Ops)
			if strings.HasSuffix(w.metric, "MB/s") {
				unit, per = "MiB", float64(r.Ops)/(1<<20)
			}
			cpus[t.name] = append(cpus[t.name], float64(cpu.Microseconds())/per)
			if r.Ops > 0 {
				line += fmt.Sprintf("  CPU/%s: middle %.1f µs", unit, float64(cpu.Microseconds())/per)
				if len(t.ends) > 0 {
					line += fmt.Sprintf(", end %.1f µs", float64(end.Microseconds())/per)
				}
				line += fmt.Sprintf("; middle ctx-switches/%s %.2f", unit, float64(cs)/per)
				if r.SelfCPUus > 0 {
					line += fmt.Sprintf("; load process CPU/%s %.1f µs", unit, float64(r.SelfCPUus)/per)
				}
				p := perOp{mid: float64(cpu.Microseconds()) / per, end: float64(end.Microseconds()) / per,
					client: float64(client.Microseconds()) / per, machine: float64(machine.Microseconds()) / per, nice: float64(nice.Microseconds()) / per}
				if client > 0 {
					line += fmt.Sprintf("; client %.1f µs", p.client)
				}
				if window > 0 && machine > 0 {
					p.busy = machine.Seconds() / (window.Seconds() * float64(runtime.NumCPU()))
					line += fmt.Sprintf("; machine %.1f µs (nice %.1f), %.0f%% busy", p.machine, p.nice, 100*p.busy)
				}
				tab.per[t.name] = append(tab.per[t.name], p)
				tab.value[t.name] = append(tab.value[t.name], v)
			}
			if r.Lost > 0 {
				line += fmt.Sprintf("  LOST/FAILED %d", r.Lost)
			}
			fmt.Println(line)
			if st != nil {
				st.report(per, unit)
			}
		}
	}
	var rows []row
	goals := w.goals
	if _, ok := vals["sluice-b"]; ok {
		goals = append(goals, goal{"sluice-b", 0})
	}
	for _, g := range goals {
		b, ok := vals[g.baseline]
		if !ok {
			continue
		}
		main := w.main
		if main == "" {
			main = "sluice"
		}
		s, sc := vals[main], cpus[main]
		bc := cpus[g.baseline]
		if g.baseline == "sluice-b" { // the other build: B ÷ A
			s, b, sc, bc = b, s, bc, sc
		}
		rw := row{workload: w.name, metric: w.metric, baseline: g.baseline, sluice: s, base: b, goal: g.ratio, lowerBetter: w.lowerBetter}
		if main != "sluice" {
			rw.workload = w.name + " (" + main + ")"
		}
		if g.baseline == "sluice-b" {
			rw.workload, rw.baseline = w.name+" (-sluice-b ÷ -sluice)", "sluice"
		}
		for i := range s {
			if b[i] > 0 && s[i] > 0 {
				rw.ratios = append(rw.ratios, s[i]/b[i])
			}
			if sc[i] > 0 && bc[i] > 0 {
				rw.cpuRatios = append(rw.cpuRatios, sc[i]/bc[i])
			}
		}
		rows = append(rows, rw)
	}
	return rows, tab
}

func cpuOf(cs []*child) time.Duration {
	var d time.Duration
	for _, c := range cs {
		d += procCPU(c.pid())
	}
	return d
}

func switchesOf(cs []*child) int64 {
	var n int64
	for _, c := range cs {
		n += procSwitches(c.pid())
	}
	return n
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func printTable(rows []row) {
	fmt.Println()
	fmt.Println("| workload | metric | Sluice (median) | baseline | baseline (median) | Sluice ÷ baseline, median (per rep) | goal | met | middle CPU/op, Sluice ÷ baseline |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		per := make([]string, len(r.ratios))
		for i, x := range r.ratios {
			per[i] = fmt.Sprintf("%.2f", x)
		}
		m := median(r.ratios)
		g, met := "—", "—"
		if r.goal > 0 {
			op := "≥"
			ok := m >= r.goal
			if r.lowerBetter {
				op, ok = "≤", m <= r.goal
			}
			g = fmt.Sprintf("%s %.1f", op, r.goal)
			met = map[bool]string{true: "yes", false: "**no**"}[ok]
			if len(r.ratios) == 0 {
				met = "not measured"
			}
		}
		fmt.Printf("| %s | %s | %.1f | %s | %.1f | **%.2f** (%s) | %s | %s | %.2f |\n",
			r.workload, r.metric, median(r.sluice), r.baseline, median(r.base), m, strings.Join(per, ", "), g, met, median(r.cpuRatios))
	}
}
