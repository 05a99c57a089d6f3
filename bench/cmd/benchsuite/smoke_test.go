package main

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestSmoke builds the engine and the suite and runs every workload once
// at tiny sizes against Sluice and the baselines (not the upstream
// engine), the cluster workloads on three engine processes and three
// nats-servers: each process of the suite starts, serves and reports. It
// checks that nothing failed, not the numbers.
func TestSmoke(t *testing.T) {
	dir := t.TempDir()
	for _, b := range [][2]string{{"sluice", "../../../cmd/sluice"}, {"benchsuite", "."}} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, b[0]), b[1]).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b[1], err, out)
		}
	}
	out, err := exec.Command(filepath.Join(dir, "benchsuite"), "run", "-smoke", "-upstream", "", "-sluice", filepath.Join(dir, "sluice")).CombinedOutput()
	s := string(out)
	if err != nil {
		t.Fatalf("benchsuite run -smoke: %v\n%s", err, s)
	}
	if strings.Contains(s, "FAILED") || strings.Contains(s, "LOST") {
		t.Fatalf("a run failed:\n%s", s)
	}
	for _, w := range []string{"invoke-seq", "invoke-tput", "http-echo-1", "http-echo-8", "http-echo-64", "channel", "download", "observe-100",
		"cluster-invoke-seq (cross-node)", "cluster-invoke-tput (cross-node)", "cluster-channel (cross-node)", "cluster-http (3-nodes)"} {
		if !strings.Contains(s, "| "+w+" |") {
			t.Errorf("no ratio for %s:\n%s", w, s)
		}
	}
	for _, b := range []string{"nats-reqrep", "nats-pub", "same-node", "1-node", "http-bare", "http-ws"} {
		if !strings.Contains(s, "| "+b+" |") {
			t.Errorf("no baseline %s:\n%s", b, s)
		}
	}
	checkCPUColumns(t, s)
}

// checkCPUColumns checks the client and machine CPU per op of the suite's
// output: every run counts its client's CPU, the CPU table has a row for
// each main workload's targets with a client, and the machine, counted
// from /proc/stat in 10 ms units over short windows, is at least the sum
// of the processes counted in it over the whole table, less a tolerance
// (the smoke runs' windows are a few ms: each row is one sample).
func checkCPUColumns(t *testing.T, s string) {
	t.Helper()
	runs := 0
	for _, line := range strings.Split(s, "\n") {
		if !strings.Contains(line, " rep ") || !strings.Contains(line, "CPU/") {
			continue
		}
		runs++
		m := regexp.MustCompile(`; client ([0-9.]+) µs`).FindStringSubmatch(line)
		if m == nil || m[1] == "0.0" {
			t.Errorf("no client CPU in %q", line)
		}
	}
	if runs < 20 {
		t.Errorf("%d runs with CPU counts", runs)
	}
	_, tab, ok := strings.Cut(s, "CPU per op: client / middle / far end / machine")
	if !ok {
		t.Fatalf("no CPU table:\n%s", s)
	}
	tab, floors, ok := strings.Cut(tab, "## floors:")
	if !ok {
		t.Fatalf("no floors:\n%s", s)
	}
	rows := map[string]bool{}
	var machine, counted float64
	for _, line := range strings.Split(tab, "\n") {
		f := strings.Split(line, " | ")
		if len(f) != 11 || f[2] == "per" || strings.HasPrefix(f[2], "-") {
			continue
		}
		rows[strings.TrimPrefix(f[0], "| ")+" "+f[1]] = true
		num := func(i int) float64 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				t.Errorf("column %d of %q: %v", i, line, err)
			}
			return v
		}
		if num(3) <= 0 {
			t.Errorf("client CPU not counted: %q", line)
		}
		if sum := num(3) + num(4) + num(5); math.Abs(sum-num(6)) > 0.2 {
			t.Errorf("counted %v is not client + middle + far end (%v): %q", num(6), sum, line)
		}
		if f[7] != "—" {
			machine += num(7)
			counted += num(6)
		}
	}
	for _, r := range []string{"invoke-seq relay", "invoke-seq sluice", "http-echo-64 proxy", "http-echo-64 sluice", "http-echo-64 http-bare", "http-echo-64 http-ws",
		"channel copy-relay", "channel sluice", "download proxy", "download sluice"} {
		if !rows[r] {
			t.Errorf("no CPU table row %q:\n%s", r, tab)
		}
	}
	if counted <= 0 || machine < 0.5*counted {
		t.Errorf("the machine's CPU %.0f is implausibly below the processes' counted in it, %.0f:\n%s", machine, counted, tab)
	}
	for _, w := range []string{"http-echo-64 vs proxy", "download vs proxy", "invoke-seq vs relay"} {
		if !strings.Contains(floors, "- "+w+" (goal") {
			t.Errorf("no floor for %s:\n%s", w, floors)
		}
	}
	if !regexp.MustCompile(`(?m)^ +against this budget, -?[0-9.]+ µs/op: http-bare's middle [0-9.]+ (is|leaves) .*\n(.*\n)* +the least such a middle does \(http-bare's middle, [0-9.]+ µs/op\): .* ⇒ ratio ≤ [0-9.]+`).MatchString(floors) {
		t.Errorf("no http-bare floor:\n%s", floors)
	}
	if !regexp.MustCompile(`bound \(the [0-9]+ cores all the suite's\): client [0-9.]+ \+ far end [0-9.]+ = [0-9.]+ µs/op .* ⇒ ratio ≤ [0-9.]+`).MatchString(floors) {
		t.Errorf("no bound's arithmetic:\n%s", floors)
	}
}

// TestCPUCounters: with this process burning CPU on two threads, the
// machine's busy time, the exact per-thread count and getrusage agree.
func TestCPUCounters(t *testing.T) {
	tasks0, self0 := taskRuntimes(os.Getpid()), selfCPU()
	mach0, _ := machineCPU()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			threadCPU := func() time.Duration {
				var ru syscall.Rusage
				_ = syscall.Getrusage(1, &ru) // RUSAGE_THREAD
				return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			}
			for t0 := threadCPU(); threadCPU()-t0 < 150*time.Millisecond; {
			}
		})
	}
	wg.Wait()
	self := selfCPU() - self0
	tasks := runtimeSince(os.Getpid(), tasks0)
	mach, _ := machineCPU()
	if self < 250*time.Millisecond {
		t.Fatalf("getrusage: %v of CPU for two threads busy for 150 ms each", self)
	}
	// A thread that ended since loses its share: the per-thread count
	// may only be lower.
	if tasks > self+20*time.Millisecond {
		t.Errorf("per-thread count %v above getrusage %v", tasks, self)
	}
	// 10 ms units, several fields: 50 ms of slack.
	if m := mach - mach0; m < self-50*time.Millisecond {
		t.Errorf("machine busy %v, less than this process alone (%v)", m, self)
	}
}

func TestScanInvocation(t *testing.T) {
	var inv invocation
	for _, c := range []struct {
		in           string
		ok           bool
		id, fn, data string
	}{
		{`{"type":"invokefunction","invocation_id":"a-1","function_id":"bench::echo","data":{"x":[1,"}"],"y":"\"{"}}`, true, "a-1", "bench::echo", `{"x":[1,"}"],"y":"\"{"}`},
		{`{"data":[1,{"a":null}] , "function_id":"f","invocation_id":"b","type":"invokefunction","metadata":{"m":1}}`, true, "b", "f", `[1,{"a":null}]`},
		{`{"type":"invokefunction","invocation_id":"c","function_id":"f"}`, true, "c", "f", `null`},
		{`{"type":"workerregistered","worker_id":"w"}`, false, "", "", ""},
		{`{"type":"invokefunction","data":{"a":1}`, false, "", "", ""},
	} {
		ok := scanInvocation([]byte(c.in), &inv)
		if ok != c.ok || (ok && (string(inv.id) != c.id || string(inv.fn) != c.fn || string(inv.data) != c.data)) {
			t.Errorf("%s: %v %q %q %q", c.in, ok, inv.id, inv.fn, inv.data)
		}
	}
}
