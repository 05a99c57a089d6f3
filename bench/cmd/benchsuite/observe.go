package main

import (
	"encoding/json"
	"fmt"
	"syscall"
	"time"
)

// observeWorkload: issue 12's "with 100 observers on a function, its call
// rate ≥ 0.8× unobserved", every hop its own process. A Sluice engine of
// its own, a worker process serving bench::plain and bench::observed (both
// echo) and bench::sink; the driver attaches 100 observers to
// bench::observed whose filters ({"input.n": {"$gt": 1000+i}}) match none
// of the calls (n is 42), so each call is matched against all 100 and
// nothing is activated. One invoke process alternates between the two
// functions in batches (two connections); the ratio is observed ÷
// unobserved calls/s. Afterwards it fails if any observer fired, and
// checks that one call with n=1050.5 fires exactly 51 of them. One engine
// serves both targets: its CPU is counted over each target's batches. With
// run -profile DIR the engine's CPU profile is DIR/observe.cpu.pprof.
func observeWorkload(o *runOpts, add func(workload)) {
	const name, observers = "observe-100", 100
	if !o.only.MatchString(name) {
		return
	}
	var sl *engine
	var err error
	if o.profile != "" {
		sl, err = startSluiceProfiled(o, "observe.cpu.pprof")
	} else {
		sl, err = startSluiceWith(o, "--data-dir", "memory")
	}
	if err != nil {
		fmt.Printf("%s: Sluice: %v\n", name, err)
		return
	}
	defer func() {
		for _, c := range append(sl.mid, sl.ends...) {
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.done:
			case <-time.After(5 * time.Second):
				c.kill()
			}
		}
	}()
	w, err := startChild("observe worker", o.tmp, nil, o.self, "worker", "-url", sl.wsURL, "-observed")
	if err == nil {
		_, err = w.ready()
	}
	if err != nil {
		fmt.Printf("%s: worker: %v\n", name, err)
		return
	}
	sl.ends = append(sl.ends, w)
	for i := range observers {
		err := sl.ctl.send(fmt.Sprintf(`{"type":"observe","id":"bench-obs-%03d","source":{"function_id":"bench::observed","filters":{"input.n":{"$gt":%d}},"deliver":"input"},"target":{"function_id":"bench::sink"}}`, i, 1000+i))
		if err != nil {
			fmt.Printf("%s: observe: %v\n", name, err)
			return
		}
	}
	// Pending until the worker's functions are registered.
	if err := waitObservers(sl.ctl, func(active, fires int) bool { return active == observers }, 30*time.Second); err != nil {
		fmt.Printf("%s: FAILED: the observers never all became active: %v\n", name, err)
		return
	}
	plain := &engine{name: "unobserved", wsURL: sl.wsURL, mid: sl.mid, ends: sl.ends}
	observed := &engine{name: "sluice", wsURL: sl.wsURL, mid: sl.mid, ends: sl.ends}
	fnOf := map[*engine]string{plain: "bench::plain", observed: "bench::observed"}
	add(workload{name: name, targets: []*engine{plain, observed},
		runAll: func(es []*engine) ([]result, error) {
			fns := ""
			for i, e := range es {
				if i > 0 {
					fns += ","
				}
				fns += fnOf[e]
			}
			return runLoadAll(o, "invoke", 5*time.Minute, append([]string{"-url", urls(es, false), "-fns", fns, "-mode", "tput",
				"-n", fmt.Sprint(o.tputN)}, append(pidArgs(es), o.warm...)...)...)
		},
		metric: "calls/s", value: func(r result) float64 { return r.Rate },
		goals: []goal{{"unobserved", 0.8}}})
	if err := waitObservers(sl.ctl, func(_, fires int) bool { return true }, time.Second); err != nil {
		fmt.Printf("%s: FAILED: %v\n", name, err)
		return
	}
	_, fires, err := observersState(sl.ctl)
	if err != nil || fires != 0 {
		fmt.Printf("%s: FAILED: %d activations while measuring (the filters match no call) %v\n", name, fires, err)
		return
	}
	if _, err := sl.ctl.call("bench::observed", `{"n":1050.5}`); err != nil {
		fmt.Printf("%s: FAILED: %v\n", name, err)
		return
	}
	// Observers 0..50 accept n=1050.5 (n > 1000+i).
	if err := waitObservers(sl.ctl, func(_, fires int) bool { return fires >= 51 }, 10*time.Second); err != nil {
		fmt.Printf("%s: FAILED: a matching call: %v\n", name, err)
		return
	}
	if _, fires, err := observersState(sl.ctl); err != nil || fires != 51 {
		fmt.Printf("%s: FAILED: a call with n=1050.5 fired %d observers, want 51 (%v)\n", name, fires, err)
		return
	}
	fmt.Printf("%s: checked: no activation while measuring; n=1050.5 fired exactly the 51 observers it passes\n", name)
}

// observersState is the number of active observers of bench::observed and
// their fires, from engine::observers::list.
func observersState(cc *ctlConn) (active, fires int, err error) {
	raw, err := cc.call("engine::observers::list", `{"function_id":"bench::observed"}`)
	if err != nil {
		return 0, 0, err
	}
	var l struct {
		Observers []struct {
			State string `json:"state"`
			Fires int    `json:"fires"`
		} `json:"observers"`
	}
	if err := json.Unmarshal(raw, &l); err != nil {
		return 0, 0, fmt.Errorf("engine::observers::list: %s", raw)
	}
	for _, ob := range l.Observers {
		if ob.State == "active" {
			active++
		}
		fires += ob.Fires
	}
	return active, fires, nil
}

// waitObservers polls observersState until ok (bounded by timeout).
func waitObservers(cc *ctlConn, ok func(active, fires int) bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		active, fires, err := observersState(cc)
		if err != nil {
			return err
		}
		if ok(active, fires) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %d active, %d fires", timeout, active, fires)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
