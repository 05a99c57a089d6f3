package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// stateWorkloads: issue 11's state round trips side by side with the
// upstream engine. Sluice keeps state in its SQLite store on disk
// (data_sync normal); upstream runs iii-state (file-based KV), iii-stream
// and iii-pubsub as in ../shared/tools/upstream/config-modules.yaml. The
// same raw-protocol caller calls state::set / state::get over 1,000 keys,
// one at a time and 64 in flight. Both engines are started here, apart
// from the others, and stopped at the end.
func stateWorkloads(o *runOpts, add func(workload)) {
	sl, err := startSluiceState(o)
	if err != nil {
		fmt.Printf("state: Sluice: %v\n", err)
		return
	}
	targets := []*engine{sl}
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
						"-lost-after", "2s", "-reorder", "64"}, o.warm...)...)
				},
				metric: "ops/s", value: func(r result) float64 { return r.Rate },
				goals: []goal{{"upstream", 2.0}}})
		}
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

func startSluiceState(o *runOpts) (*engine, error) {
	dir := filepath.Join(o.tmp, "sluice-state")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if o.profile != "" {
		return startSluiceProfiled(o, "state.cpu.pprof", "-data-dir", filepath.Join(dir, "data"))
	}
	return startSluiceWith(o, "--data-dir", filepath.Join(dir, "data"), "--data-sync", "normal")
}

func startUpstreamModules(o *runOpts) (*engine, error) {
	dir := filepath.Join(o.tmp, "upstream-modules")
	streamPort := freePort()
	return startUpstreamWith(o, dir, fmt.Sprintf(`  - name: iii-state
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
}
