package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clusterWorkloads: issue 15's cluster benchmarks. Three `sluice serve`
// processes form one cluster (embedded NATS routed to each other, as
// interop/cluster_test.go starts them), each with a worker process of its
// own; every hop is a process. The baselines are measured in the same run:
//
//	cluster-invoke-seq, -tput  caller → node 0 → worker on node 1 (bench::remote, served there only)
//	                           against caller → node 0 → worker on node 0 (bench::echo)
//	cluster-channel            writer → node 0 → node 1 → reader against writer → node 0 → reader,
//	                           and against the same bytes between two NATS client processes through
//	                           a cluster of three nats-server processes (client on server 0 →
//	                           client on server 1): requests with the bridge's window (4 MiB)
//	                           (nats-reqrep) and a raw publish stream (nats-pub)
//	cluster-http               HTTP clients spread over the three nodes against the same clients on
//	                           node 0 alone, each node's own worker serving the route; the nodes
//	                           CPU-limited (-cluster-node-cpu) while it runs
//
// The CPU columns count all three nodes (or all three nats-servers) for
// every target.
func clusterWorkloads(o *runOpts, add func(workload)) {
	if !slices.ContainsFunc(clusterNames, o.only.MatchString) {
		return
	}
	nodes, err := startCluster(o, 3)
	defer stopChildren(clusterChildren(nodes))
	if err != nil {
		fmt.Printf("cluster: FAILED to start: %v\n", err)
		return
	}
	var all []*child
	var pids []string
	for _, n := range nodes {
		all = append(all, n.proc)
		pids = append(pids, fmt.Sprint(n.proc.pid()))
	}
	allPids := strings.Join(pids, "+")
	workers := []*child{nodes[0].worker, nodes[1].worker}

	// The NATS baseline: three nats-servers routed to each other, and for
	// the invocations a responder on server 1.
	var servers []*child
	var surls []string
	if slices.ContainsFunc([]string{"cluster-invoke-seq", "cluster-invoke-tput", "cluster-channel"}, o.only.MatchString) {
		servers, surls, err = startNATSCluster(o, 3)
		defer stopChildren(servers)
		if err != nil {
			fmt.Printf("cluster: NATS baseline FAILED: %v\n", err)
			surls = nil
		}
	}
	var echo *child
	if surls != nil && o.only.MatchString("cluster-invoke") {
		if echo, err = startChild("natsread echo", o.tmp, nil, o.self, "natsread", "-url", surls[1], "-subject", "bench.echo", "-mode", "echo"); err == nil {
			defer stopChildren([]*child{echo})
			_, err = echo.ready()
		}
		if err != nil {
			fmt.Printf("cluster: NATS responder FAILED: %v\n", err)
			echo = nil
		}
	}

	same := &engine{name: "same-node", wsURL: nodes[0].ws, mid: all, ends: workers}
	cross := &engine{name: "cross-node", wsURL: nodes[0].ws, mid: all, ends: workers}
	natsRR := &engine{name: "nats-reqrep", mid: servers}
	if echo != nil {
		natsRR.ends = []*child{echo}
	}
	fnOf := map[*engine]string{same: "bench::echo", cross: "bench::remote"}
	invoke := func(mode string, n int) func([]*engine) ([]result, error) {
		return func(es []*engine) ([]result, error) {
			var ws []*engine
			var fns, mids []string
			for _, e := range es {
				if e != natsRR {
					ws, fns, mids = append(ws, e), append(fns, fnOf[e]), append(mids, allPids)
				}
			}
			var rs []result
			if len(ws) > 0 {
				var err error
				rs, err = runLoadAll(o, "invoke", 5*time.Minute, append([]string{"-url", urls(ws, false), "-fns", strings.Join(fns, ","),
					"-midpids", strings.Join(mids, ","), "-endpids", pidArgs(ws)[3], "-mode", mode, "-n", fmt.Sprint(n)}, o.warm...)...)
				if err != nil || len(ws) == len(es) {
					return rs, err
				}
			}
			// The NATS reference, a process of its own right after.
			nr, err := runLoad(o, "natscall", 5*time.Minute, append([]string{"-url", surls[0], "-subject", "bench.echo", "-mode", mode, "-n", fmt.Sprint(n)}, o.warm...)...)
			if err != nil {
				return nil, err
			}
			i := slices.Index(es, natsRR)
			return slices.Insert(rs, min(i, len(rs)), nr), nil
		}
	}
	targets := []*engine{same, cross}
	if echo != nil {
		targets = append(targets, natsRR)
	}
	seqW := workload{name: "cluster-invoke-seq", targets: targets, runAll: invoke("seq", o.invokeN), main: "cross-node",
		metric: "p50 µs", value: func(r result) float64 { return r.P50us }, lowerBetter: true, serial: true,
		goals: []goal{{"same-node", 2.0}, {"nats-reqrep", 0}}}
	tputW := workload{name: "cluster-invoke-tput", targets: targets, runAll: invoke("tput", o.tputN), main: "cross-node",
		metric: "calls/s", value: func(r result) float64 { return r.Rate },
		goals: []goal{{"same-node", 0.6}, {"nats-reqrep", 0}}}
	for _, w := range []*workload{&seqW, &tputW} {
		if o.strace { // one target per load process, so that strace counts each alone
			all := w.runAll
			w.runAll, w.run = nil, func(e *engine) (result, error) {
				rs, err := all([]*engine{e})
				if err != nil || len(rs) != 1 {
					return result{}, fmt.Errorf("%d results: %v", len(rs), err)
				}
				return rs[0], nil
			}
		}
		add(*w)
	}

	if o.only.MatchString("cluster-channel") {
		clusterChannel(o, add, nodes, all, servers, surls)
	}

	if o.only.MatchString("cluster-http") {
		var hs []string
		for _, n := range nodes {
			hs = append(hs, n.http)
		}
		three := &engine{name: "3-nodes", httpURL: strings.Join(hs, "|"), mid: all}
		one := &engine{name: "1-node", httpURL: nodes[0].http, mid: all}
		limit := newCPULimit(o, nodes)
		defer limit.remove()
		add(workload{name: "cluster-http", targets: []*engine{three, one}, main: "3-nodes",
			runAll: func(es []*engine) ([]result, error) {
				if err := limit.apply(); err != nil {
					return nil, err
				}
				defer limit.lift()
				return runLoadAll(o, "httpload", 5*time.Minute, "-url", urls(es, true), "-midpids", allPids+","+allPids,
					"-clients", fmt.Sprint(o.clusterClients), "-dur", o.httpDur.String(), "-warm", o.httpWarm.String())
			},
			metric: "req/s", value: func(r result) float64 { return r.Rate },
			goals: []goal{{"1-node", 2.0}}})
	}
}

var clusterNames = []string{"cluster-invoke-seq", "cluster-invoke-tput", "cluster-channel", "cluster-http"}

type clusterNode struct {
	name      string
	proc      *child
	ws, http  string
	worker    *child
	ctl       *ctlConn
	routeAddr string
}

func clusterChildren(nodes []*clusterNode) []*child {
	var cs []*child
	for _, n := range nodes {
		if n.worker != nil {
			cs = append(cs, n.worker)
		}
	}
	for _, n := range nodes {
		if n.proc != nil {
			cs = append(cs, n.proc)
		}
	}
	return cs
}

// stopChildren ends cs with SIGTERM, in order (workers before engines),
// SIGKILL after 5 s.
func stopChildren(cs []*child) {
	for _, c := range cs {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			c.kill()
		}
	}
}

// startCluster starts n engine processes as one cluster, each with a
// worker: node 1's also serves bench::remote, which no other node does.
// It returns once every node answers its worker's HTTP route and node 0
// can call bench::remote.
func startCluster(o *runOpts, n int) ([]*clusterNode, error) {
	cfg := filepath.Join(o.tmp, "cluster.yaml")
	if err := os.WriteFile(cfg, []byte("streams:\n  addr: \"\"\n"), 0o644); err != nil {
		return nil, err
	}
	nodes := make([]*clusterNode, n)
	for i := range nodes {
		nodes[i] = &clusterNode{name: fmt.Sprintf("n%d", i), routeAddr: fmt.Sprintf("127.0.0.1:%d", freePort())}
	}
	for i, nd := range nodes {
		var peers []string
		for j, p := range nodes {
			if j != i {
				peers = append(peers, p.routeAddr)
			}
		}
		env := []string{"SLUICE_CONFIG=", "SLUICE_CLUSTER_SECRET=bench-route-secret-0123456789"}
		bin, args := o.sluice, []string{"serve", "--config", cfg, "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--console-addr", "off",
			"--log-level", "info"}
		if o.profile != "" { // the engine in this binary, writing a CPU profile
			if err := os.MkdirAll(o.profile, 0o755); err != nil {
				return nodes, err
			}
			bin, args = o.self, []string{"engine", "-cpuprofile", filepath.Join(o.profile, "cluster-"+nd.name+".cpu.pprof")}
		}
		args = append(args, "-data-dir", filepath.Join(o.tmp, "cluster-"+nd.name), "-node-name", nd.name,
			"-cluster-listen", nd.routeAddr, "-cluster-peers", strings.Join(peers, ","))
		c, err := startChild("cluster "+nd.name, o.tmp, env, bin, args...)
		if err != nil {
			return nodes, err
		}
		nd.proc = c
	}
	started := regexp.MustCompile(`msg="engine started" worker_url=(ws://[^ ]+) http_url=(http://[^ ]+)`)
	for _, nd := range nodes {
		var ready bool
		line, err := nd.proc.waitLine(nd.proc.stderr, 120*time.Second, func(s string) bool {
			if strings.Contains(s, `msg="cluster node ready"`) && strings.Contains(s, "replicas=3") {
				ready = true
			}
			return ready && started.MatchString(s)
		})
		if err != nil {
			return nodes, err
		}
		m := started.FindStringSubmatch(line)
		nd.ws, nd.http = m[1], m[2]
	}
	for i, nd := range nodes {
		args := []string{"worker", "-url", nd.ws}
		if i == 1 {
			args = append(args, "-also-echo", "bench::remote")
		}
		w, err := startChild(nd.name+" worker", o.tmp, nil, o.self, args...)
		if err != nil {
			return nodes, err
		}
		nd.worker = w
		if _, err := w.ready(); err != nil {
			return nodes, err
		}
	}
	body := []byte(`{"id":42,"name":"widget","tags":["a","b","c"]}`)
	for _, nd := range nodes {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			res, err := http.Post(nd.http+"/echo/7", "application/json", bytes.NewReader(body))
			if err == nil {
				res.Body.Close()
				if res.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				return nodes, fmt.Errorf("%s: the HTTP route never answered (%v)", nd.name, err)
			}
		}
		var err error
		if nd.ctl, err = dialCtl(nd.ws); err != nil {
			return nodes, err
		}
	}
	// bench::remote reaches node 0 once node 1's subscription travelled the routes.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r, err := nodes[0].ctl.call("bench::remote", `{"n":1}`)
		if err == nil && !bytes.HasPrefix(r, []byte(`{"error":`)) {
			break
		}
		if time.Now().After(deadline) {
			return nodes, fmt.Errorf("bench::remote not callable on n0: %s %v\nn0:\n%s\nn1:\n%s", r, err, nodes[0].proc.stderrTail(), nodes[1].proc.stderrTail())
		}
	}
	return nodes, nil
}

// clusterChannel: o.chanBytes writer → node 0 → reader on node 1 (the
// channel's home is node 0, where it is created), against the reader on
// node 0 and against the NATS baselines.
func clusterChannel(o *runOpts, add func(workload), nodes []*clusterNode, all, servers []*child, surls []string) {
	same := &engine{name: "same-node", mid: all}
	cross := &engine{name: "cross-node", mid: all}
	readerOn := map[*engine]*clusterNode{same: nodes[0], cross: nodes[1]}
	targets := []*engine{same, cross}
	if surls != nil {
		targets = append(targets, &engine{name: "nats-reqrep", wsURL: "req", mid: servers}, &engine{name: "nats-pub", wsURL: "pub", mid: servers})
	}
	seq := 0
	add(workload{name: "cluster-channel", targets: targets, main: "cross-node",
		run: func(e *engine) (result, error) {
			n := fmt.Sprint(o.chanBytes)
			if rn := readerOn[e]; rn != nil {
				wu, ru, err := createChannel(nodes[0].ctl, nodes[0].ws, rn.ws)
				if err != nil {
					return result{}, err
				}
				return runPair(o, []string{"chanread", "-url", ru, "-n", n}, []string{"chanwrite", "-url", wu, "-n", n})
			}
			seq++
			subj := fmt.Sprintf("bench.stream.%d", seq)
			return runPair(o, []string{"natsread", "-url", surls[1], "-subject", subj, "-mode", e.wsURL, "-n", n},
				[]string{"natswrite", "-url", surls[0], "-subject", subj, "-mode", e.wsURL, "-n", n})
		},
		metric: "MB/s", value: func(r result) float64 { return r.Rate },
		goals: []goal{{"same-node", 0.5}, {"nats-reqrep", 0.8}, {"nats-pub", 0.8}}})
}

// runPair starts the reader process, then the writer, and returns the
// reader's result.
func runPair(o *runOpts, rargs, wargs []string) (result, error) {
	r, err := startChild(rargs[0], o.tmp, nil, o.self, rargs...)
	if err != nil {
		return result{}, err
	}
	if _, err := r.ready(); err != nil {
		return result{}, err
	}
	w, err := startChild(wargs[0], o.tmp, nil, o.self, wargs...)
	if err != nil {
		r.kill()
		return result{}, err
	}
	res, err := r.result(5 * time.Minute)
	// The writer's CPU over its writing, where it reports it (chanwrite).
	var wr result
	if line, e := w.waitLine(w.stdout, 10*time.Second, func(s string) bool { return strings.HasPrefix(s, "RESULT ") }); e == nil {
		_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "RESULT ")), &wr)
	}
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		w.kill()
	}
	if err == nil && w.err != nil {
		err = fmt.Errorf("%s: %v:\n%s", wargs[0], w.err, w.stderrTail())
	}
	// Where a side does not count its own phase, its whole life.
	rc, wc := res.ClientCPUus, wr.ClientCPUus
	if rc == 0 {
		rc = exitedCPU(r).Microseconds()
	}
	if wc == 0 {
		wc = exitedCPU(w).Microseconds()
	}
	res.ClientCPUus = rc + wc
	return res, err
}

// startNATSCluster starts n nats-server processes routed to each other and
// returns them with their client URLs once each has all its routes.
func startNATSCluster(o *runOpts, n int) ([]*child, []string, error) {
	routes := make([]string, n)
	for i := range routes {
		routes[i] = fmt.Sprintf("127.0.0.1:%d", freePort())
	}
	var cs []*child
	for i := range n {
		var peers []string
		for j, r := range routes {
			if j != i {
				peers = append(peers, r)
			}
		}
		c, err := startChild(fmt.Sprintf("natsserver s%d", i), o.tmp, nil, o.self, "natsserver", "-name", fmt.Sprintf("s%d", i),
			"-cluster", routes[i], "-routes", strings.Join(peers, ","))
		if err != nil {
			return cs, nil, err
		}
		cs = append(cs, c)
	}
	var us []string
	for _, c := range cs {
		u, err := c.ready()
		if err != nil {
			return cs, nil, err
		}
		us = append(us, u)
	}
	return cs, us, nil
}

// cpuLimit caps each node's CPU (cgroup CPU bandwidth) while applied:
// each node then stands for a machine of o.clusterCPU cores, so that three
// of them fit on this 2-core machine beside the workers and the load.
type cpuLimit struct {
	o      *runOpts
	nodes  []*clusterNode
	dirs   []string
	v2     bool
	err    error
	once   sync.Once
	logged bool
}

func newCPULimit(o *runOpts, nodes []*clusterNode) *cpuLimit {
	return &cpuLimit{o: o, nodes: nodes}
}

const cgroupV1CPU = "/sys/fs/cgroup/cpu"

// setup makes one cgroup per node and moves the node into it.
func (l *cpuLimit) setup() error {
	if l.o.clusterCPU <= 0 {
		return errors.New("no limit asked (-cluster-node-cpu 0)")
	}
	root := cgroupV1CPU
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		root, l.v2 = "/sys/fs/cgroup", true
	}
	for _, n := range l.nodes {
		d := filepath.Join(root, fmt.Sprintf("sluice-bench-%d-%s", os.Getpid(), n.name))
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
		l.dirs = append(l.dirs, d)
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(fmt.Sprint(n.proc.pid())), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (l *cpuLimit) write(quotaUS int) error {
	const periodUS = 10000
	for _, d := range l.dirs {
		var err error
		if l.v2 {
			q := "max"
			if quotaUS > 0 {
				q = fmt.Sprint(quotaUS)
			}
			err = os.WriteFile(filepath.Join(d, "cpu.max"), fmt.Appendf(nil, "%s %d", q, periodUS), 0o644)
		} else {
			if err = os.WriteFile(filepath.Join(d, "cpu.cfs_period_us"), fmt.Append(nil, periodUS), 0o644); err == nil {
				err = os.WriteFile(filepath.Join(d, "cpu.cfs_quota_us"), fmt.Append(nil, quotaUS), 0o644)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// apply caps every node at o.clusterCPU cores. Without a writable cgroup
// the nodes run unlimited, and the run says so.
func (l *cpuLimit) apply() error {
	l.once.Do(func() { l.err = l.setup() })
	if l.err == nil {
		l.err = l.write(int(l.o.clusterCPU * 10000))
	}
	if !l.logged {
		l.logged = true
		if l.err != nil {
			fmt.Printf("cluster-http: nodes NOT CPU-limited (%v): 3 nodes share this machine's cores with the workers and the load\n", l.err)
		} else {
			fmt.Printf("cluster-http: each node limited to %.2f CPU (cgroup CPU bandwidth, %s); workers and load processes unlimited\n", l.o.clusterCPU, filepath.Dir(l.dirs[0]))
		}
	}
	return nil
}

func (l *cpuLimit) lift() {
	if l.err == nil && len(l.dirs) > 0 {
		_ = l.write(-1)
	}
}

// remove moves the nodes back to the root group and deletes the groups.
func (l *cpuLimit) remove() {
	if len(l.dirs) == 0 {
		return
	}
	root := filepath.Dir(l.dirs[0])
	for _, n := range l.nodes {
		_ = os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(fmt.Sprint(n.proc.pid())), 0o644)
	}
	for _, d := range l.dirs {
		_ = os.Remove(d)
	}
}
