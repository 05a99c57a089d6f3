package interop

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// cliResult is one run of the sluice binary as a client.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs `sluice args...` against e (SLUICE_URL) and returns its
// output and exit status. env adds variables.
func runCLI(t *testing.T, e *engineProc, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, engineBin, args...)
	cmd.Env = append(os.Environ(), "SLUICE_TOKEN=")
	if e != nil {
		cmd.Env = append(cmd.Env, "SLUICE_URL="+e.URL)
	}
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("sluice %v: %v", args, err)
	}
	return r
}

// ok runs the CLI and fails the test unless it exits 0.
func cliOK(t *testing.T, e *engineProc, args ...string) string {
	t.Helper()
	r := runCLI(t, e, nil, args...)
	if r.code != 0 {
		t.Fatalf("sluice %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func cliJSON[T any](t *testing.T, e *engineProc, args ...string) T {
	t.Helper()
	var v T
	out := cliOK(t, e, append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("sluice %v --json: %v in %q", args, err, out)
	}
	return v
}

// cliFails runs the CLI expecting exit code want and, with --json, the
// error code on stdout.
func cliFails(t *testing.T, e *engineProc, want int, wantCode string, args ...string) cliResult {
	t.Helper()
	r := runCLI(t, e, nil, args...)
	if r.code != want {
		t.Fatalf("sluice %v: exit %d, want %d\nstdout: %s\nstderr: %s", args, r.code, want, r.stdout, r.stderr)
	}
	if wantCode != "" {
		var v struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Error.Code != wantCode {
			t.Fatalf("sluice %v: stdout %q, want a JSON error with code %q (%v)", args, r.stdout, wantCode, err)
		}
		if !strings.Contains(r.stderr, wantCode) {
			t.Fatalf("sluice %v: stderr %q does not name the code %q", args, r.stderr, wantCode)
		}
	}
	return r
}

// TestCLI drives every client subcommand of the built binary against an
// engine serving a Go SDK worker and a Node SDK 0.22.1 worker. On f9f823a
// every client subcommand was "unknown command".
func TestCLI(t *testing.T) {
	e := startEngine(t, "127.0.0.1:0", "--data-dir", "memory")
	ctx := ctxFor(t, 60*time.Second)
	gw := connectGo(t, e, "cli-go")
	failed := make(chan string, 4)
	must(t, gw.RegisterRaw("cligo::add", func(_ context.Context, inv *sluice.Invocation) (json.RawMessage, error) {
		var in struct{ X, Y int }
		if err := json.Unmarshal(inv.Data, &in); err != nil {
			return nil, err
		}
		b, _ := json.Marshal(in.X + in.Y)
		return b, nil
	}, sluice.WithFunctionDescription("adds x and y")))
	must(t, gw.RegisterRaw("cligo::bad", func(_ context.Context, inv *sluice.Invocation) (json.RawMessage, error) {
		failed <- string(inv.Data)
		return nil, &sluice.Error{Code: "bad_input", Message: "always fails"}
	}))
	type countIn struct {
		Reader *sluice.ChannelReader `json:"reader"`
		Name   string                `json:"name"`
		Size   int64                 `json:"size"`
		Tag    string                `json:"tag"`
	}
	type countOut struct {
		Bytes  int64  `json:"bytes"`
		SHA256 string `json:"sha256"`
		Name   string `json:"name"`
		Size   int64  `json:"size"`
		Tag    string `json:"tag"`
	}
	must(t, sluice.Register(gw, "cligo::count", func(_ context.Context, in countIn) (countOut, error) {
		h := sha256.New()
		n, err := io.Copy(h, in.Reader)
		return countOut{Bytes: n, SHA256: hex.EncodeToString(h.Sum(nil)), Name: in.Name, Size: in.Size, Tag: in.Tag}, err
	}))
	_, err := gw.RegisterTrigger(sluice.TriggerSpec{Type: "http", FunctionID: "cligo::add", Config: map[string]any{"api_path": "/cli/add", "http_method": "POST"}})
	must(t, err)
	nw := startWorker(t, flavourNamed("node-0.22.1"), e, "worker.mjs", "clinode", "SEEDS=0")
	waitFunctions(ctx, t, gw, "cligo::add", "cligo::bad", "clinode::echo", "clinode::mark")

	t.Run("help and version", func(t *testing.T) {
		out := cliOK(t, nil, "-h")
		for _, sub := range []string{"serve", "version", "functions", "functions info", "workers", "triggers", "trigger", "queue stats", "queue dlq", "queue redrive",
			"channel send", "channel recv", "pipe", "--json", "--url", "SLUICE_TOKEN"} {
			if !strings.Contains(out, sub) {
				t.Errorf("-h does not mention %q:\n%s", sub, out)
			}
		}
		if v := cliOK(t, nil, "--version"); !strings.HasPrefix(v, "sluice ") {
			t.Errorf("--version printed %q", v)
		}
		if r := runCLI(t, nil, nil, "trigger", "-h"); r.code != 0 || !strings.Contains(r.stderr, "--enqueue") && !strings.Contains(r.stderr, "-enqueue") {
			t.Errorf("trigger -h: exit %d, %q", r.code, r.stderr)
		}
		cliFails(t, nil, 2, "", "frobnicate")
	})

	t.Run("bash completion", func(t *testing.T) {
		bash, err := exec.LookPath("bash")
		if err != nil {
			t.Skip("no bash")
		}
		script := cliOK(t, nil, "completion", "bash")
		complete := func(words ...string) string {
			t.Helper()
			src := script + fmt.Sprintf("\nCOMP_WORDS=(%s); COMP_CWORD=%d; _sluice; echo \"${COMPREPLY[*]}\"\n", strings.Join(words, " "), len(words)-1)
			cmd := exec.CommandContext(ctx, bash, "--norc", "-c", src)
			cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(engineBin)+":"+os.Getenv("PATH"), "SLUICE_URL="+e.URL, "SLUICE_TOKEN=")
			out, err := cmd.Output()
			must(t, err)
			return strings.TrimSpace(string(out))
		}
		if got := complete("sluice", "que"); got != "queue" {
			t.Errorf("sluice que<TAB> = %q", got)
		}
		if got := complete("sluice", "queue", "re"); got != "redrive" {
			t.Errorf("sluice queue re<TAB> = %q", got)
		}
		if got := complete("sluice", "trigger", "clinode::ec"); got != "clinode::echo" {
			t.Errorf("sluice trigger clinode::ec<TAB> = %q (function ids from the engine)", got)
		}
		cliFails(t, nil, 2, "", "completion", "fish")
	})

	t.Run("functions", func(t *testing.T) {
		fns := cliJSON[[]functionRow](t, e, "functions")
		byID := map[string]functionRow{}
		for _, f := range fns {
			byID[f.FunctionID] = f
		}
		if f := byID["cligo::add"]; f.WorkerName != "cli-go" || f.Description != "adds x and y" {
			t.Errorf("cligo::add listed as %+v", f)
		}
		if f := byID["clinode::echo"]; f.WorkerName != "clinode" {
			t.Errorf("clinode::echo listed as %+v", f)
		}
		if _, ok := byID["engine::functions::list"]; ok {
			t.Errorf("engine functions listed without --all")
		}
		if all := cliJSON[[]functionRow](t, e, "functions", "list", "--all"); !slices.ContainsFunc(all, func(f functionRow) bool { return f.FunctionID == "engine::functions::list" }) {
			t.Errorf("--all leaves out the engine's functions")
		}
		table := cliOK(t, e, "functions")
		if !strings.HasPrefix(table, "FUNCTION") || !strings.Contains(table, "clinode::echo") || !strings.Contains(table, "adds x and y") {
			t.Errorf("functions table:\n%s", table)
		}
		info := cliJSON[struct {
			FunctionID string `json:"function_id"`
			Triggers   []struct {
				TriggerType string `json:"trigger_type"`
			} `json:"registered_triggers"`
		}](t, e, "functions", "info", "cligo::add")
		if info.FunctionID != "cligo::add" || len(info.Triggers) != 1 || info.Triggers[0].TriggerType != "http" {
			t.Errorf("functions info cligo::add: %+v", info)
		}
		if out := cliOK(t, e, "functions", "info", "cligo::add"); !strings.Contains(out, "/cli/add") {
			t.Errorf("functions info table lacks the trigger:\n%s", out)
		}
		cliFails(t, e, 1, "NOT_FOUND", "functions", "info", "no::such", "--json")
		cliFails(t, e, 2, "", "functions", "info")
	})

	t.Run("workers", func(t *testing.T) {
		ws := cliJSON[[]workerRow](t, e, "workers")
		var names []string
		for _, w := range ws {
			if w.Name != nil {
				names = append(names, *w.Name)
			}
			if w.Name != nil && *w.Name == "clinode" && (w.Runtime == nil || *w.Runtime != "node" || w.FunctionCount < 6) {
				t.Errorf("node worker listed as %+v", w)
			}
		}
		if !slices.Contains(names, "cli-go") || !slices.Contains(names, "clinode") || slices.Contains(names, "sluice-cli") {
			t.Errorf("workers: %v", names)
		}
		if out := cliOK(t, e, "workers"); !strings.HasPrefix(out, "ID") || !strings.Contains(out, "clinode") {
			t.Errorf("workers table:\n%s", out)
		}
	})

	t.Run("triggers", func(t *testing.T) {
		trs := cliJSON[[]struct {
			TriggerType string `json:"trigger_type"`
			FunctionID  string `json:"function_id"`
		}](t, e, "triggers")
		if len(trs) != 1 || trs[0].TriggerType != "http" || trs[0].FunctionID != "cligo::add" {
			t.Errorf("triggers: %+v", trs)
		}
		types := cliJSON[[]struct {
			ID string `json:"id"`
		}](t, e, "triggers", "--types")
		if !slices.ContainsFunc(types, func(x struct {
			ID string `json:"id"`
		}) bool {
			return x.ID == "http"
		}) {
			t.Errorf("trigger types: %+v", types)
		}
	})

	t.Run("trigger", func(t *testing.T) {
		if got := cliOK(t, e, "trigger", "cligo::add", "x=2", "y=40"); got != "42\n" {
			t.Errorf("cligo::add x=2 y=40 printed %q", got)
		}
		echo := cliJSON[map[string]any](t, e, "trigger", "clinode::echo", `{"a":[1,2],"b":"c"}`)
		delete(echo, "_caller_worker_id") // the engine adds it to object payloads
		if b, _ := json.Marshal(echo); string(b) != `{"a":[1,2],"b":"c"}` {
			t.Errorf("echo returned %s", b)
		}
		kv := cliJSON[map[string]any](t, e, "trigger", "--timeout", "10s", "clinode::echo", "n=7", "s=text", "o={\"k\":true}")
		delete(kv, "_caller_worker_id")
		if b, _ := json.Marshal(kv); string(b) != `{"n":7,"o":{"k":true},"s":"text"}` {
			t.Errorf("key=value input echoed as %s", b)
		}
		r := cliFails(t, e, 1, "invocation_failed", "trigger", "clinode::fail", "--json")
		if !strings.Contains(r.stdout, "boom from clinode") {
			t.Errorf("the function's message is not shown: %q", r.stdout)
		}
		cliFails(t, e, 1, "bad_input", "trigger", "cligo::bad", "--json")
		<-failed
		cliFails(t, e, 1, "function_not_found", "trigger", "no::such", "--json")
		if r := cliFails(t, e, 1, "", "trigger", "no::such"); !strings.Contains(r.stderr, "function_not_found") {
			t.Errorf("stderr without --json: %q", r.stderr)
		}
		cliFails(t, e, 1, "TIMEOUT", "trigger", "clinode::hang", "tag=cli", "--timeout", "300ms", "--json")
		cliFails(t, e, 2, "", "trigger")
		cliFails(t, e, 2, "", "trigger", "clinode::echo", "{not json")
		cliFails(t, e, 2, "", "trigger", "clinode::echo", "--void", "--enqueue", "default")

		cliOK(t, e, "trigger", "clinode::mark", "value=void1", "--void")
		nw.waitLine(ctx, t, `MARK "void1"`)
		receipt := cliJSON[map[string]string](t, e, "trigger", "clinode::mark", "value=queued1", "--enqueue", "default")
		if receipt["messageReceiptId"] == "" {
			t.Errorf("enqueue printed %v", receipt)
		}
		nw.waitLine(ctx, t, `MARK "queued1"`)
		cliFails(t, e, 1, "enqueue_error", "trigger", "clinode::mark", "--enqueue", "no-such-queue", "--json")
	})

	t.Run("pretty on a terminal, compact in a pipe", func(t *testing.T) {
		piped := cliOK(t, e, "trigger", "clinode::echo", "k=v")
		if strings.Count(piped, "\n") != 1 || !strings.Contains(piped, `"k":"v"`) {
			t.Errorf("piped output not one compact line: %q", piped)
		}
		scriptBin, err := exec.LookPath("script") // util-linux: runs a command on a pseudo-terminal
		if err != nil {
			t.Skip("no script(1) to provide a pseudo-terminal")
		}
		pctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		cmd := exec.CommandContext(pctx, scriptBin, "-qec", engineBin+" trigger clinode::echo k=v", "/dev/null")
		cmd.Env = append(os.Environ(), "SLUICE_URL="+e.URL, "SLUICE_TOKEN=")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("under script: %v, %q", err, out)
		}
		if !strings.Contains(strings.ReplaceAll(string(out), "\r\n", "\n"), "{\n  \"") {
			t.Errorf("terminal output not indented: %q", out)
		}
	})

	t.Run("channel and pipe", func(t *testing.T) {
		dir := t.TempDir()
		data := make([]byte, 3<<20+12345)
		for i := range data {
			data[i] = byte(i * 7)
		}
		sum := sha256.Sum256(data)
		file := filepath.Join(dir, "in.bin")
		must(t, os.WriteFile(file, data, 0o600))

		res := cliJSON[countOut](t, e, "pipe", "cligo::count", file, "tag=t1")
		if res.Bytes != int64(len(data)) || res.SHA256 != hex.EncodeToString(sum[:]) || res.Name != "in.bin" || res.Size != int64(len(data)) || res.Tag != "t1" {
			t.Errorf("pipe: %+v", res)
		}
		r := runCLI(t, e, nil, "pipe", "cligo::count", file)
		if r.code != 0 || strings.Contains(r.stderr, "\r") {
			t.Errorf("pipe without a terminal: exit %d, stderr %q (want no progress)", r.code, r.stderr)
		}
		cliFails(t, e, 1, "", "pipe", "cligo::count", filepath.Join(dir, "missing"))
		cliFails(t, e, 2, "", "pipe", "cligo::count")

		// send in one process, recv in another.
		sendCtx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		send := exec.CommandContext(sendCtx, engineBin, "channel", "send", file)
		send.Env = append(os.Environ(), "SLUICE_URL="+e.URL, "SLUICE_TOKEN=")
		stdout, err := send.StdoutPipe()
		must(t, err)
		var sendErr bytes.Buffer
		send.Stderr = &sendErr
		must(t, send.Start())
		ref, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			t.Fatalf("channel send printed no ref: %v (%s)", err, sendErr.String())
		}
		out := filepath.Join(dir, "out.bin")
		cliOK(t, e, "channel", "recv", strings.TrimSpace(ref), out)
		if err := send.Wait(); err != nil {
			t.Errorf("channel send: %v (%s)", err, sendErr.String())
		}
		got, err := os.ReadFile(out)
		must(t, err)
		if !bytes.Equal(got, data) {
			t.Errorf("recv wrote %d bytes, not the %d sent", len(got), len(data))
		}
		cliFails(t, e, 2, "", "channel", "recv", "not-a-ref")

		// On a terminal: a progress line with rate and ETA.
		scriptBin, err := exec.LookPath("script")
		if err != nil {
			t.Skip("no script(1) to provide a pseudo-terminal")
		}
		pctx, cancel2 := context.WithTimeout(ctx, callTimeout)
		defer cancel2()
		cmd := exec.CommandContext(pctx, scriptBin, "-qec", engineBin+" pipe cligo::count "+file, "/dev/null")
		cmd.Env = append(os.Environ(), "SLUICE_URL="+e.URL, "SLUICE_TOKEN=")
		tty, err := cmd.Output()
		if err != nil {
			t.Fatalf("pipe under script: %v, %q", err, tty)
		}
		if s := string(tty); !strings.Contains(s, "100%") || !strings.Contains(s, "iB/s") || !strings.Contains(s, "ETA") {
			t.Errorf("no progress on a terminal: %q", tty)
		}
	})

	t.Run("queue", func(t *testing.T) {
		cliOK(t, e, "trigger", "queue::define", "name=clidlq", "max_retries=1", "backoff_ms=1")
		cliOK(t, e, "trigger", "cligo::bad", "n=1", "--enqueue", "clidlq")
		<-failed
		var dlq []struct {
			ID         string `json:"id"`
			FunctionID string `json:"function_id"`
		}
		for ctx.Err() == nil { // the job reaches the DLQ just after its failure
			if dlq = cliJSON[[]struct {
				ID         string `json:"id"`
				FunctionID string `json:"function_id"`
			}](t, e, "queue", "dlq", "clidlq"); len(dlq) > 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(dlq) != 1 || dlq[0].FunctionID != "cligo::bad" {
			t.Fatalf("dlq clidlq: %+v", dlq)
		}
		stats := cliJSON[[]map[string]any](t, e, "queue", "stats")
		found := false
		for _, s := range stats {
			if s["name"] == "clidlq" {
				found = true
				if s["dlq_depth"] != 1.0 {
					t.Errorf("clidlq stats: %v", s)
				}
			}
		}
		if !found {
			t.Errorf("queue stats lacks clidlq: %v", stats)
		}
		if out := cliOK(t, e, "queue", "dlq"); !strings.Contains(out, "clidlq") {
			t.Errorf("queue dlq table:\n%s", out)
		}
		red := cliJSON[map[string]any](t, e, "queue", "redrive", "clidlq", dlq[0].ID)
		if red["redriven"] != 1.0 {
			t.Errorf("redrive: %v", red)
		}
		<-failed // redriven: it runs (and fails) again
		cliFails(t, e, 2, "", "queue", "bogus")
	})

	t.Run("unreachable engine", func(t *testing.T) {
		r := runCLI(t, nil, []string{"SLUICE_URL=ws://127.0.0.1:1"}, "workers", "--timeout", "300ms")
		if r.code != 1 || !strings.Contains(r.stderr, "connect") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

// TestCLIToken: with auth on, the CLI needs SLUICE_TOKEN (or --token).
func TestCLIToken(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	must(t, os.WriteFile(cfg, []byte("auth:\n  tokens: [cli-secret-token-0123456789]\n"), 0o600))
	e := startEngine(t, "127.0.0.1:0", "--config", cfg, "--data-dir", "memory")
	if r := runCLI(t, e, nil, "workers", "--timeout", "500ms"); r.code != 1 {
		t.Errorf("without a token: exit %d, stderr %q", r.code, r.stderr)
	}
	r := runCLI(t, e, []string{"SLUICE_TOKEN=cli-secret-token-0123456789"}, "functions", "--all", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, "engine::functions::list") {
		t.Errorf("with SLUICE_TOKEN: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, e, nil, "functions", "--token", "cli-secret-token-0123456789"); r.code != 0 {
		t.Errorf("with --token: exit %d, stderr %q", r.code, r.stderr)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
