package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// moduleWorkloads: issue 11's platform modules side by side with the
// upstream engine, on engines of their own started here and stopped at
// the end. Sluice keeps state in its SQLite store on disk (data_sync
// normal) and serves stream clients on a free port; upstream runs
// iii-state (file-based KV), iii-stream and iii-pubsub as in
// ../shared/tools/upstream/config-modules.yaml. Workloads: state::set /
// state::get over 1,000 keys, one at a time and 64 in flight; pubsub
// fan-out to 100 subscriptions; stream fan-out to 1,000 stream clients.
var moduleNames = []string{"state-set-1", "state-set-64", "state-get-1", "state-get-64", "pubsub-100", "stream-1000", "stream-1000-burst8"}

func moduleWorkloads(o *runOpts, add func(workload)) {
	if !slices.ContainsFunc(moduleNames, o.only.MatchString) {
		return
	}
	sl, err := startSluiceState(o, o.sluice, "sluice")
	if err != nil {
		fmt.Printf("state: Sluice: %v\n", err)
		return
	}
	targets := []*engine{sl}
	if o.sluiceB != "" { // the other build, on a store of its own
		b, err := startSluiceState(o, o.sluiceB, "sluice-b")
		if err != nil {
			fmt.Printf("state: -sluice-b: %v\n", err)
		} else {
			targets = append(targets, b)
		}
	}
	if o.upstreamGz != "" {
		up, err := startUpstreamModules(o)
		if err != nil {
			fmt.Printf("state: upstream: %v\n", err)
		} else {
			targets = append(targets, up)
		}
	}
	const setData = `{"scope":"bench","key":"k{i}","value":{"n":{i},"who":"ada"}}`
	const getData = `{"scope":"bench","key":"k{i}"}`
	for _, w := range []struct{ name, fn, data string }{
		{"state-set", "state::set", setData}, {"state-get", "state::get", getData},
	} {
		for _, inflight := range []int{1, 64} {
			mode := "seq"
			if inflight > 1 {
				mode = "tput"
			}
			add(workload{name: fmt.Sprintf("%s-%d", w.name, inflight), targets: targets,
				runAll: func(es []*engine) ([]result, error) {
					return runLoadAll(o, "invoke", 5*time.Minute, append([]string{"-url", urls(es, false), "-mode", mode,
						"-n", fmt.Sprint(o.stateN), "-inflight", fmt.Sprint(inflight), "-fn", w.fn, "-data", w.data,
						"-lost-after", "2s", "-reorder", "64"}, append(pidArgs(es), o.warm...)...)...)
				},
				metric: "ops/s", value: func(r result) float64 { return r.Rate }, serial: inflight == 1,
				goals: []goal{{"upstream", 2.0}}})
		}
	}
	if o.only.MatchString("pubsub-100") {
		pubsubWorkload(o, add, targets)
	}
	// stream-1000: one stream::set at a time, each awaited at every client
	// (issue 11's workload); stream-1000-burst8: 8 sent back to back per
	// round (no goal: how an engine handles changes that come faster than
	// one fan-out).
	for _, burst := range []int{1, 8} {
		name := "stream-1000"
		var goals []goal
		if burst == 1 {
			goals = []goal{{"upstream", 2.0}}
		} else {
			name, goals = fmt.Sprintf("stream-1000-burst%d", burst), []goal{{"upstream", 0}}
		}
		if !o.only.MatchString(name) {
			continue
		}
		add(workload{name: name, targets: targets,
			run: func(e *engine) (result, error) {
				if e.stream == "" {
					return result{}, fmt.Errorf("%s serves no stream clients", e.name)
				}
				var pids []string
				for _, c := range e.mid {
					pids = append(pids, fmt.Sprint(c.pid()))
				}
				return runLoad(o, "streamfan", 5*time.Minute, "-stream", e.stream, "-url", e.wsURL, "-clients", "1000",
					"-n", fmt.Sprint(o.streamN*burst), "-burst", fmt.Sprint(burst), "-pids", strings.Join(pids, ","))
			},
			metric: "receipts/s", value: func(r result) float64 { return r.Rate },
			goals: goals})
	}
	for _, t := range targets {
		for _, c := range append(t.mid, t.ends...) {
			_ = c.cmd.Process.Signal(syscall.SIGTERM) // the profiled engine writes its profile
			select {
			case <-c.done:
			case <-time.After(5 * time.Second):
				c.kill()
			}
		}
	}
}

func startSluiceState(o *runOpts, bin, name string) (*engine, error) {
	dir := filepath.Join(o.tmp, name+"-state")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if o.profile != "" && bin == o.sluice {
		return startSluiceProfiled(o, "state.cpu.pprof", "-data-dir", filepath.Join(dir, "data"), "-streams")
	}
	cfg := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("streams:\n  addr: 127.0.0.1:0\n"), 0o644); err != nil {
		return nil, err
	}
	// The later --config wins over the shared one.
	return startSluiceBin(o, bin, name, "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--data-sync", "normal")
}

func startUpstreamModules(o *runOpts) (*engine, error) {
	dir := filepath.Join(o.tmp, "upstream-modules")
	streamPort := freePort()
	e, err := startUpstreamWith(o, dir, fmt.Sprintf(`  - name: iii-state
    config:
      adapter: {name: kv, config: {store_method: file_based, file_path: %[1]s/state}}
  - name: iii-stream
    config:
      host: 127.0.0.1
      port: %[2]d
      adapter: {name: kv, config: {store_method: file_based, file_path: %[1]s/stream}}
  - name: iii-pubsub
    config:
      adapter: {name: local}
`, dir, streamPort))
	if e != nil {
		e.stream = fmt.Sprintf("127.0.0.1:%d", streamPort)
	}
	return e, err
}

// pubsubWorkload: issue 11's pubsub fan-out. A subscriber worker binds
// bench::sub to topic benchps 100 times; a caller publishes o.pubsubN
// messages (8 in flight); the rate is deliveries/s from the first publish
// to the last delivery.
func pubsubWorkload(o *runOpts, add func(workload), targets []*engine) {
	const fanout = 100
	counts := map[*engine]*atomic.Int64{}
	for _, t := range targets {
		w, err := startChild(t.name+" subscriber", o.tmp, nil, o.self, "worker", "-url", t.wsURL, "-subscribe", fmt.Sprint(fanout))
		if err != nil {
			fmt.Printf("pubsub: %v\n", err)
			return
		}
		if _, err := w.ready(); err != nil {
			fmt.Printf("pubsub: %v\n", err)
			return
		}
		t.ends = append(t.ends, w)
		n := new(atomic.Int64)
		counts[t] = n
		go func() {
			for line := range w.stdout {
				if v, ok := strings.CutPrefix(line, "DELIVERED "); ok {
					k, _ := strconv.ParseInt(v, 10, 64)
					n.Store(k)
				}
			}
		}()
		// The bindings are in place once a probe publish reaches all of them.
		deadline := time.Now().Add(30 * time.Second)
		for n.Load() < fanout {
			if _, err := t.ctl.call("publish", `{"topic":"benchps","data":{"n":-1}}`); err != nil {
				fmt.Printf("pubsub: %s: publish: %v\n", t.name, err)
				return
			}
			time.Sleep(100 * time.Millisecond)
			if time.Now().After(deadline) {
				fmt.Printf("pubsub: %s: the subscriptions never delivered (%d)\n", t.name, n.Load())
				return
			}
		}
	}
	add(workload{name: fmt.Sprintf("pubsub-%d", fanout), targets: targets,
		run: func(e *engine) (result, error) {
			n := counts[e]
			time.Sleep(200 * time.Millisecond) // probes still in flight land first
			base := n.Load()
			start := time.Now()
			pub, err := runLoad(o, "invoke", 2*time.Minute, "-url", e.wsURL, "-mode", "tput", "-inflight", "8",
				"-n", fmt.Sprint(o.pubsubN), "-fn", "publish", "-data", `{"topic":"benchps","data":{"n":{i}}}`,
				"-warm", "0", "-lost-after", "2s", "-reorder", "64")
			if err != nil {
				return result{}, err
			}
			// Until all arrived (the count is printed per 100), or none
			// for a second: an engine may drop deliveries under load
			// (Sluice bounds those in flight); they are reported lost.
			want := base + int64(o.pubsubN*fanout) - 100
			last, lastAt := n.Load(), time.Now()
			for last < want && time.Since(lastAt) < time.Second {
				time.Sleep(time.Millisecond)
				if v := n.Load(); v != last {
					last, lastAt = v, time.Now()
				}
			}
			el := lastAt.Sub(start)
			got := last - base
			lost := int64(o.pubsubN*fanout) - got
			if lost <= 100 {
				lost = 0 // below the count's resolution
			}
			return result{Rate: float64(got) / el.Seconds(), Ops: got, Seconds: el.Seconds(), Lost: lost, ClientCPUus: pub.ClientCPUus}, nil
		},
		metric: "deliveries/s", value: func(r result) float64 { return r.Rate },
		goals: []goal{{"upstream", 2.0}}})
}
