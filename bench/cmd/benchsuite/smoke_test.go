package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
	for _, b := range []string{"nats-reqrep", "nats-pub", "same-node", "1-node"} {
		if !strings.Contains(s, "| "+b+" |") {
			t.Errorf("no baseline %s:\n%s", b, s)
		}
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
