package interop

import (
	"regexp"
	"strings"
	"testing"
)

// TestStartupLogWorkerLines checks that the engine's log says who
// connected and who left: a "worker registered" line once the worker has
// announced itself (engine::workers::register) and a "worker disconnected"
// line, both with the worker's name, runtime and version, for the official
// Node SDK and the Go SDK. On 8b50cfc: neither line named the worker (the
// "worker connected" line is logged before the worker has said who it is).
func TestStartupLogWorkerLines(t *testing.T) {
	e := startEngine(t, "127.0.0.1:0")
	ctx := ctxFor(t, callTimeout)

	// wait returns the engine log line matching re.
	wait := func(what string, re *regexp.Regexp) string {
		t.Helper()
		line, err := e.stderr.wait(ctx, re.MatchString)
		if err != nil {
			t.Fatalf("no %s line in the engine log: %v", what, err)
		}
		return line
	}
	workerID := func(line string) string {
		return regexp.MustCompile(`worker_id=(\S+)`).FindStringSubmatch(line)[1]
	}

	c := connectGo(t, e, "startup-log-go")
	reg := wait("worker registered (Go)", regexp.MustCompile(`msg="worker registered" worker_id=\S+ name=startup-log-go runtime=go version=\S+`))
	id := workerID(reg)
	c.Close()
	wait("worker disconnected (Go)", regexp.MustCompile(`msg="worker disconnected" worker_id=`+regexp.QuoteMeta(id)+` name=startup-log-go runtime=go version=\S+ reason=`))

	f := flavourNamed("node-0.22.1")
	w := startWorker(t, f, e, "worker.mjs", "startuplog", "SEEDS=0")
	reg = wait("worker registered (Node)", regexp.MustCompile(`msg="worker registered" worker_id=\S+ name=startuplog runtime=node version=0\.22\.1`))
	id = workerID(reg)
	w.stop(t)
	line := wait("worker disconnected (Node)", regexp.MustCompile(`msg="worker disconnected" worker_id=`+regexp.QuoteMeta(id)+` `))
	if !strings.Contains(line, " name=startuplog runtime=node version=0.22.1 ") {
		t.Errorf("disconnect line does not name the worker: %s", line)
	}
}
