package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/engine"
)

// The client subcommands against an engine in this process (coverage of
// the command code; interop.TestCLI drives the built binary against
// official-SDK workers).

// startCLIEngine starts an in-memory engine on loopback ports, its
// config changed by mutate, with a silent log, until the test ends.
func startCLIEngine(t *testing.T, mutate func(*engine.Config)) *engine.Engine {
	t.Helper()
	cfg := engine.DefaultConfig()
	cfg.Addr, cfg.HTTPAddr, cfg.ConsoleAddr, cfg.Streams.Addr, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", "", "", engine.DataDirMemory
	if mutate != nil {
		mutate(&cfg)
	}
	e, err := engine.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
	})
	return e
}

func cliEngine(t *testing.T) (url string) {
	t.Helper()
	e := startCLIEngine(t, nil)
	w, err := sluice.Connect(t.Context(), e.WorkerURL(), sluice.WithName("cli-worker"), sluice.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	ran := make(chan string, 16)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(sluice.Register(w, "demo::echo", func(_ context.Context, in map[string]any) (map[string]any, error) {
		delete(in, "_caller_worker_id")
		ran <- "echo"
		return in, nil
	}))
	must(sluice.Register(w, "demo::fail", func(context.Context, struct{}) (struct{}, error) {
		return struct{}{}, &sluice.Error{Code: "bad_input", Message: "name is required"}
	}))
	must(w.HandleHTTPFunc("GET /cli/hello", "demo::http", nil))
	must(w.Sync(t.Context()))
	return e.WorkerURL()
}

// cli runs one command as main does: its output, its stderr with main's
// "sluice: <error>" line, and its exit code.
func cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(t.Context(), args, func(string) string { return "" }, &out, &errb)
	var ee *exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.code
		errb.WriteString("sluice: " + err.Error())
	default:
		code = -1
		errb.WriteString("sluice: " + err.Error())
	}
	return out.String(), errb.String(), code
}

func TestCLIInProcess(t *testing.T) {
	url := cliEngine(t)
	u := "--url=" + url

	out, errs, code := cli(t, "functions", u, "--json")
	var fl []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &fl) != nil || !strings.Contains(out, `"demo::echo"`) || !strings.Contains(out, `"demo::fail"`) {
		t.Fatalf("functions --json: %d %s %s", code, out, errs)
	}
	if out, _, code := cli(t, "functions", u); code != 0 || !strings.Contains(out, "demo::echo") || !strings.Contains(out, "cli-worker") {
		t.Fatalf("functions (table): %d %s", code, out)
	}
	if out, _, code := cli(t, "functions", "info", "demo::echo", u, "--json"); code != 0 || !strings.Contains(out, `"function_id":"demo::echo"`) {
		t.Fatalf("functions info: %d %s", code, out)
	}
	if out, _, code := cli(t, "workers", u, "--json"); code != 0 || !strings.Contains(out, `"cli-worker"`) {
		t.Fatalf("workers: %d %s", code, out)
	}
	if out, _, code := cli(t, "workers", u); code != 0 || !strings.Contains(out, "cli-worker") {
		t.Fatalf("workers (table): %d %s", code, out)
	}
	if out, _, code := cli(t, "triggers", u, "--json"); code != 0 || !strings.Contains(out, "/cli/hello") {
		t.Fatalf("triggers: %d %s", code, out)
	}
	if out, _, code := cli(t, "triggers", "--types", u); code != 0 || !strings.Contains(out, "http") {
		t.Fatalf("triggers --types: %d %s", code, out)
	}

	if out, errs, code := cli(t, "trigger", "demo::echo", `{"a":1}`, u); code != 0 || strings.TrimSpace(out) != `{"a":1}` {
		t.Fatalf("trigger JSON: %d %q %s", code, out, errs)
	}
	if out, _, code := cli(t, "trigger", "demo::echo", "a=1", "b=x", u); code != 0 || !strings.Contains(out, `"a":1`) || !strings.Contains(out, `"b":"x"`) {
		t.Fatalf("trigger k=v: %d %s", code, out)
	}
	if _, errs, code := cli(t, "trigger", "demo::fail", u); code != 1 || !strings.Contains(errs, "bad_input") || !strings.Contains(errs, "name is required") {
		t.Fatalf("a failing function: exit %d, stderr %s", code, errs)
	}
	if out, _, code := cli(t, "trigger", "demo::fail", u, "--json"); code != 1 || !strings.Contains(out, `"code":"bad_input"`) {
		t.Fatalf("a failing function, --json: exit %d, %s", code, out)
	}
	if _, errs, code := cli(t, "trigger", "nope::missing", u); code != 1 || !strings.Contains(errs, "function_not_found") {
		t.Fatalf("an unknown function: exit %d, %s", code, errs)
	}
	if _, _, code := cli(t, "trigger", "demo::echo", "--void", "--enqueue", "default", u); code != 2 {
		t.Fatalf("--void with --enqueue: exit %d, want 2 (usage)", code)
	}
	if _, _, code := cli(t, "trigger", u); code != 2 {
		t.Fatalf("trigger without a function: exit %d, want 2", code)
	}
	if _, errs, code := cli(t, "trigger", "demo::echo", "--void", u); code != 0 {
		t.Fatalf("--void: exit %d %s", code, errs)
	}
	if out, errs, code := cli(t, "trigger", "demo::echo", `{"q":1}`, "--enqueue", "default", u); code != 0 || len(strings.TrimSpace(out)) != 36 { // the receipt id
		t.Fatalf("--enqueue: exit %d %s %s", code, out, errs)
	}
	if out, errs, code := cli(t, "queue", "stats", u, "--json"); code != 0 || !strings.Contains(out, "default") {
		t.Fatalf("queue stats: exit %d %s %s", code, out, errs)
	}
	if _, errs, code := cli(t, "queue", "dlq", "default", u); code != 0 {
		t.Fatalf("queue dlq: exit %d %s", code, errs)
	}
	if _, _, code := cli(t, "queue", u); code != 2 {
		t.Fatalf("queue without a verb: exit %d, want 2", code)
	}
	if out, _, code := cli(t, "completion", "bash"); code != 0 || !strings.Contains(out, "functions") {
		t.Fatalf("completion bash: %d %s", code, out)
	}
	if _, _, code := cli(t, "nonsense"); code != 2 {
		t.Fatalf("an unknown command: exit %d, want 2", code)
	}
	if _, errs, code := cli(t, "functions", "--url=ws://127.0.0.1:1", "--timeout=300ms"); code != 1 || errs == "" {
		t.Fatalf("an unreachable engine: exit %d %s", code, errs)
	}
}
