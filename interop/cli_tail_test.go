package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tailProc is a running `sluice tail`.
type tailProc struct {
	cmd    *exec.Cmd
	stdout *bytes.Buffer
	stderr *lineLog
	done   chan error
}

// startTail runs `sluice tail args...` against console and waits until it
// follows the feed (its "following" line: the engine subscribed it before
// answering).
func startTail(t *testing.T, ctx context.Context, console string, env []string, args ...string) *tailProc {
	t.Helper()
	cmd := exec.CommandContext(ctx, engineBin, append([]string{"tail", "--console-url", console}, args...)...)
	cmd.Env = append(append(os.Environ(), "SLUICE_TOKEN=", "SLUICE_CONSOLE_URL="), env...)
	tp := &tailProc{cmd: cmd, stdout: &bytes.Buffer{}, stderr: newLineLog(), done: make(chan error, 1)}
	cmd.Stdout = tp.stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	setPdeathsig(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go tp.stderr.feed(errPipe)
	go func() { tp.done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	dumpOnFailure(t, "sluice tail", map[string]*lineLog{"stderr": tp.stderr})
	if _, err := tp.stderr.wait(ctx, func(s string) bool { return strings.Contains(s, "following invocations") }); err != nil {
		t.Fatalf("sluice tail did not start following: %v", err)
	}
	return tp
}

// wait waits for the process to exit (--count reached) and returns its
// exit error and stdout.
func (tp *tailProc) wait(ctx context.Context, t *testing.T) string {
	t.Helper()
	select {
	case err := <-tp.done:
		if err != nil {
			t.Fatalf("sluice tail: %v\nstdout: %s", err, tp.stdout)
		}
	case <-ctx.Done():
		t.Fatalf("sluice tail did not exit\nstdout: %s", tp.stdout)
	}
	return tp.stdout.String()
}

// TestCLITail drives `sluice tail` (the built binary) against an engine
// with a Node SDK 0.22.1 worker: --json lines carry function, caller (the
// Go client's and the Node worker's names), duration and outcome;
// --function filters exactly or by prefix; the text form shows errors
// with their code; --count exits.
func TestCLITail(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	e := startEngine(t, "127.0.0.1:0", "--data-dir", "memory")
	line, err := e.stderr.wait(ctx, consoleRE.MatchString)
	if err != nil {
		t.Fatal(err)
	}
	console := consoleRE.FindStringSubmatch(line)[1]
	c := connectGo(t, e, "tail-go")
	f := flavourNamed("node-0.22.1")
	startWorker(t, f, e, f.script("worker"), "tl", "SEEDS=0")
	waitFunctions(ctx, t, c, "tl::echo", "tl::fail", "tl::call")

	// --json, exact filter: the Go client's call, then the Node worker's.
	tp := startTail(t, ctx, console, nil, "--json", "--function", "tl::echo", "--count", "2")
	if _, err := c.Trigger(ctx, "tl::fail", nil); err == nil {
		t.Fatal("tl::fail succeeded")
	}
	if _, err := c.Trigger(ctx, "tl::echo", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Trigger(ctx, "tl::call", map[string]any{"function_id": "tl::echo", "payload": 2}); err != nil {
		t.Fatal(err)
	}
	out := tp.wait(ctx, t)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", out)
	}
	callers := []string{"tail-go", "tl"}
	for i, l := range lines {
		var ev struct {
			Time       time.Time `json:"time"`
			FunctionID string    `json:"function_id"`
			Caller     string    `json:"caller"`
			CallerName string    `json:"caller_name"`
			DurationMS float64   `json:"duration_ms"`
			Outcome    string    `json:"outcome"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if ev.FunctionID != "tl::echo" || ev.CallerName != callers[i] || ev.Caller == "" || ev.Outcome != "ok" || ev.DurationMS <= 0 || time.Since(ev.Time) > time.Minute {
			t.Fatalf("line %d: %+v, want tl::echo from %s", i, ev, callers[i])
		}
	}

	// Text, prefix filter: the error with its code, then an ok.
	tp = startTail(t, ctx, console, nil, "--function", "tl::*", "--count", "2")
	if _, err := c.Trigger(ctx, "engine::health::check", nil); err != nil { // filtered out
		t.Fatal(err)
	}
	if _, err := c.Trigger(ctx, "tl::fail", nil); err == nil {
		t.Fatal("tl::fail succeeded")
	}
	if _, err := c.Trigger(ctx, "tl::echo", "x"); err != nil {
		t.Fatal(err)
	}
	out = tp.wait(ctx, t)
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "tl::fail") || !strings.Contains(lines[0], "error") || !strings.Contains(lines[0], "← tail-go") ||
		!strings.Contains(lines[1], "tl::echo") || !strings.Contains(lines[1], " ok ") || !strings.Contains(lines[1], "ms") {
		t.Fatalf("text output:\n%s", out)
	}

	// Errors: a usage error exits 2; an unreachable console exits 1.
	if r := runCLI(t, nil, nil, "tail", "extra"); r.code != 2 {
		t.Errorf("tail extra: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runCLI(t, nil, nil, "tail", "--console-url", "http://127.0.0.1:1", "--timeout", "2s"); r.code != 1 || !strings.Contains(r.stderr, "127.0.0.1:1") {
		t.Errorf("unreachable console: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestCLITailToken: with auth.tokens, tail without a token is refused
// (exit 1, the console's AUTH_ERROR message); SLUICE_TOKEN lets it follow.
func TestCLITailToken(t *testing.T) {
	ctx := ctxFor(t, 30*time.Second)
	const tok = "tail-secret-token-0123456789"
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	must(t, os.WriteFile(cfg, []byte("auth:\n  tokens: ["+tok+"]\n"), 0o600))
	e := startEngine(t, "127.0.0.1:0", "--config", cfg, "--data-dir", "memory")
	line, err := e.stderr.wait(ctx, consoleRE.MatchString)
	if err != nil {
		t.Fatal(err)
	}
	console := consoleRE.FindStringSubmatch(line)[1]
	if r := runCLI(t, nil, nil, "tail", "--console-url", console); r.code != 1 || !strings.Contains(r.stderr, "missing or invalid token") || !strings.Contains(r.stderr, "401") {
		t.Errorf("without a token: exit %d, stderr %q", r.code, r.stderr)
	}
	tp := startTail(t, ctx, console, []string{"SLUICE_TOKEN=" + tok}, "--json", "--count", "1")
	r := runCLI(t, e, []string{"SLUICE_TOKEN=" + tok}, "trigger", "engine::health::check")
	if r.code != 0 {
		t.Fatalf("trigger: %d %s", r.code, r.stderr)
	}
	sc := bufio.NewScanner(strings.NewReader(tp.wait(ctx, t)))
	if !sc.Scan() || !strings.Contains(sc.Text(), `"function_id"`) {
		t.Fatalf("tail with SLUICE_TOKEN printed %q", sc.Text())
	}
}
