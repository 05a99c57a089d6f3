package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/engine"
)

// More of the client subcommands in process: channels and pipe, the
// queue's dead letters, help and usage errors, and the output helpers.

// cliWorker connects one more worker to the engine at url.
func cliWorker(t *testing.T, url, name string) *sluice.Client {
	t.Helper()
	w, err := sluice.Connect(t.Context(), url, sluice.WithName(name), sluice.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// countInput is what pipe sends: the channel's reader, the file's base
// name and size, and the key=value pairs.
type countInput struct {
	Reader *sluice.ChannelReader `json:"reader"`
	Name   string                `json:"name"`
	Size   *int64                `json:"size"`
	Tag    string                `json:"tag"`
}

type countOutput struct {
	Name   string `json:"name"`
	Size   *int64 `json:"size"`
	Tag    string `json:"tag"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// registerCount registers demo::count, which reads its channel to the end.
func registerCount(t *testing.T, w *sluice.Client) {
	t.Helper()
	if err := sluice.Register(w, "demo::count", func(_ context.Context, in countInput) (countOutput, error) {
		h := sha256.New()
		n, err := io.Copy(h, in.Reader)
		if err != nil {
			return countOutput{}, err
		}
		return countOutput{Name: in.Name, Size: in.Size, Tag: in.Tag, Bytes: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// tempData writes n random bytes to a file and returns its path and hash.
func tempData(t *testing.T, n int) (path, sum string) {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	path = filepath.Join(t.TempDir(), "data.bin")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return path, hex.EncodeToString(h[:])
}

// lineWriter hands the first line written to it to first.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	first chan string
	sent  bool
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if i := bytes.IndexByte(w.buf.Bytes(), '\n'); i >= 0 && !w.sent {
		w.sent = true
		w.first <- string(w.buf.Bytes()[:i])
	}
	return len(p), nil
}

// TestCLIChannelSendRecv: channel send prints a reader ref and streams the
// file; channel recv of that ref writes the same bytes, while the send is
// still running (the file is larger than the channel's buffer).
func TestCLIChannelSendRecv(t *testing.T) {
	url := cliEngine(t)
	u := "--url=" + url
	in, sum := tempData(t, 6<<20)
	out := filepath.Join(t.TempDir(), "out.bin")

	stdout := &lineWriter{first: make(chan string, 1)}
	sent := make(chan error, 1)
	go func() {
		sent <- run(t.Context(), []string{"channel", "send", in, u}, func(string) string { return "" }, stdout, io.Discard)
	}()
	var ref string
	select {
	case ref = <-stdout.first:
	case err := <-sent:
		t.Fatalf("channel send ended before printing a ref: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("channel send printed no ref")
	}
	var r sluice.ChannelRef
	if err := json.Unmarshal([]byte(ref), &r); err != nil || r.ChannelID == "" || r.Direction != "read" {
		t.Fatalf("ref %q: %v", ref, err)
	}
	if _, errs, code := cli(t, "channel", "recv", ref, out, u); code != 0 {
		t.Fatalf("channel recv: exit %d %s", code, errs)
	}
	if err := <-sent; err != nil {
		t.Fatalf("channel send: %v", err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if h := sha256.Sum256(b); hex.EncodeToString(h[:]) != sum || len(b) != 6<<20 {
		t.Fatalf("received %d bytes, not what was sent", len(b))
	}
}

// TestCLIPipe: the function gets the channel's reader, the file's base
// name and size and the key=value pairs, reads every byte the CLI
// streams, and its result is printed.
func TestCLIPipe(t *testing.T) {
	url := cliEngine(t)
	registerCount(t, cliWorker(t, url, "pipe-worker"))
	in, sum := tempData(t, 300<<10)

	out, errs, code := cli(t, "pipe", "demo::count", in, "tag=x", "--url="+url)
	if code != 0 {
		t.Fatalf("pipe: exit %d %s", code, errs)
	}
	var res countOutput
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("pipe printed %q: %v", out, err)
	}
	if res.Name != "data.bin" || res.Size == nil || *res.Size != 300<<10 || res.Tag != "x" || res.Bytes != 300<<10 || res.SHA256 != sum {
		t.Fatalf("the function saw %+v (size %v), want data.bin, 307200 bytes, tag x, sha %s", res, res.Size, sum)
	}
}

// TestCLIChannelUsageErrors: wrong arguments are usage errors (exit 2), a
// file that cannot be opened is an error (exit 1), before connecting.
func TestCLIChannelUsageErrors(t *testing.T) {
	u := "--url=ws://127.0.0.1:1" // nothing listens: none of these may get as far as dialing
	missing := filepath.Join(t.TempDir(), "missing")
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"channel"}, 2, "usage: sluice channel"},
		{[]string{"channel", "open"}, 2, "usage: sluice channel"},
		{[]string{"channel", "recv"}, 2, "usage: sluice channel"},
		{[]string{"channel", "recv", "not-json"}, 2, "want a reader ref"},
		{[]string{"channel", "recv", `{"access_key":"k"}`}, 2, "want a reader ref"},
		{[]string{"channel", "send", missing}, 1, "no such file"},
		{[]string{"channel", "recv", `{"channel_id":"c","access_key":"k","direction":"read"}`, filepath.Join(missing, "out")}, 1, "no such file"},
		{[]string{"pipe", "demo::count"}, 2, "usage: sluice pipe"},
		{[]string{"pipe", "demo::count", missing}, 1, "no such file"},
		{[]string{"pipe", "demo::count", missing, "novalue"}, 2, `argument "novalue": want key=value`},
		{[]string{"channel", "send", "--bogus"}, 2, "flag provided but not defined"},
	} {
		_, errs, code := cli(t, append(c.args, u)...)
		if code != c.code || !strings.Contains(errs, c.msg) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", c.args, code, errs, c.code, c.msg)
		}
	}
}

// cliQueueEngine is cliEngine with a queue "fragile" that dead-letters a
// job after one failed delivery, and demo::flaky, which fails its first
// call only.
func cliQueueEngine(t *testing.T) (url string, calls *atomic.Int32) {
	t.Helper()
	e := startCLIEngine(t, func(cfg *engine.Config) {
		q := engine.DefaultQueueConfig()
		q.MaxRetries, q.BackoffMS = 1, 0
		cfg.Queues = map[string]engine.QueueConfig{"fragile": q}
	})
	w := cliWorker(t, e.WorkerURL(), "queue-worker")
	calls = new(atomic.Int32)
	if err := sluice.Register(w, "demo::flaky", func(context.Context, json.RawMessage) (string, error) {
		if calls.Add(1) == 1 {
			return "", &sluice.Error{Code: "flaky", Message: "first call fails"}
		}
		return "ok", nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	return e.WorkerURL(), calls
}

// cliUntil runs a command until its stdout satisfies ok (the queue's
// state has no event a CLI test can wait on), failing after 10 s.
func cliUntil(t *testing.T, what string, ok func(string) bool, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, errs, code := cli(t, args...)
		if code == 0 && ok(out) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: last %q exit %d: %s %s", what, args, code, out, errs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCLIQueueDeadLetters: a job that failed its only delivery is listed
// by queue dlq (queues, then the queue's messages, as tables and JSON),
// counted by queue stats, and queue redrive of its id runs it again.
func TestCLIQueueDeadLetters(t *testing.T) {
	url, calls := cliQueueEngine(t)
	u := "--url=" + url
	if _, errs, code := cli(t, "trigger", "demo::flaky", `{"n":1}`, "--enqueue", "fragile", u); code != 0 {
		t.Fatalf("enqueue: exit %d %s", code, errs)
	}
	var dead []struct {
		ID, FunctionID, Error string `json:",omitempty"`
		Retries               int
	}
	out := cliUntil(t, "the job dead-lettered", func(s string) bool { return strings.Contains(s, `"function_id":"demo::flaky"`) },
		"queue", "dlq", "fragile", u, "--json")
	if err := json.Unmarshal([]byte(out), &dead); err != nil || len(dead) != 1 || dead[0].ID == "" {
		t.Fatalf("queue dlq fragile --json: %s (%v)", out, err)
	}
	if !strings.Contains(dead[0].Error, "first call fails") || dead[0].Retries != 1 {
		t.Errorf("dead letter %+v: want the function's error and 1 delivery", dead[0])
	}

	out, _, code := cli(t, "queue", "dlq", "fragile", u)
	if code != 0 || !strings.Contains(out, "FAILED_AT") || !strings.Contains(out, dead[0].ID) || !strings.Contains(out, "demo::flaky") ||
		!strings.Contains(out, time.Now().UTC().Format("2006-01-02T")) {
		t.Errorf("queue dlq fragile (table): %d\n%s", code, out)
	}
	out, _, code = cli(t, "queue", "dlq", u)
	if code != 0 || !strings.Contains(out, "MESSAGES") || !strings.Contains(out, "fragile") {
		t.Errorf("queue dlq (table): %d\n%s", code, out)
	}
	if out, _, code = cli(t, "queue", "dlq", u, "--json"); code != 0 || !strings.Contains(out, `"fragile"`) {
		t.Errorf("queue dlq --json: %d %s", code, out)
	}
	out, _, code = cli(t, "queue", "stats", u)
	if code != 0 || !strings.Contains(out, "DLQ") || !strings.Contains(out, "fragile") || !strings.Contains(out, "default") {
		t.Errorf("queue stats (table): %d\n%s", code, out)
	}
	if out, _, code = cli(t, "queue", "stats", "fragile", u); code != 0 || !strings.Contains(out, `"dlq_depth":1`) {
		t.Errorf("queue stats fragile: %d %s", code, out)
	}

	if out, _, code = cli(t, "queue", "redrive", "fragile", "no-such-id", u); code != 0 || strings.TrimSpace(out) != "redriven: 0" {
		t.Errorf("redrive of an unknown id: %d %q", code, out)
	}
	if out, _, code = cli(t, "queue", "redrive", "fragile", dead[0].ID, u); code != 0 || strings.TrimSpace(out) != "redriven: 1" {
		t.Fatalf("redrive of the dead letter: %d %q", code, out)
	}
	cliUntil(t, "the redriven job run and the DLQ empty", func(s string) bool { return strings.TrimSpace(s) == "[]" && calls.Load() == 2 },
		"queue", "dlq", "fragile", u, "--json")
	if out, _, code = cli(t, "queue", "redrive", "fragile", u, "--json"); code != 0 || !strings.Contains(out, `"redriven":0`) {
		t.Errorf("redrive of an empty DLQ --json: %d %q", code, out)
	}
	if _, errs, code := cli(t, "queue", "frob", u); code != 2 || !strings.Contains(errs, "usage: sluice queue") {
		t.Errorf("queue frob: exit %d %s", code, errs)
	}
}

// TestCLIHelpAndUsage: -h prints the command's synopsis and flags and is
// not an error exit; wrong arguments are usage errors (exit 2) naming
// what is wrong; "--" ends the flags.
func TestCLIHelpAndUsage(t *testing.T) {
	url := cliEngine(t)
	u := "--url=" + url

	var out, errb bytes.Buffer
	err := run(t.Context(), []string{"functions", "-h"}, func(string) string { return "" }, &out, &errb)
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(errb.String(), "usage: sluice functions [list] | functions info FUNCTION_ID [flags]") ||
		!strings.Contains(errb.String(), "-timeout") || !strings.Contains(errb.String(), "SLUICE_URL") {
		t.Errorf("functions -h: %v\n%s", err, errb.String())
	}
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"functions", "list", "extra"}, "functions list takes no arguments"},
		{[]string{"functions", "info"}, "usage: sluice functions info"},
		{[]string{"functions", "frob"}, `unknown action "frob"`},
		{[]string{"functions", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"workers", "extra"}, "workers takes no arguments"},
		{[]string{"triggers", "extra"}, "triggers takes no arguments"},
		{[]string{"trigger", "demo::echo", "{not json"}, "is not JSON"},
		{[]string{"trigger", "demo::echo", "=1"}, `argument "=1": want key=value`},
		{[]string{"trigger", "demo::echo", "a=1", "b"}, `argument "b": want key=value`},
		{[]string{"completion", "zsh"}, "usage: sluice completion bash"},
	} {
		if _, errs, code := cli(t, append(c.args, u)...); code != 2 || !strings.Contains(errs, c.msg) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", c.args, code, errs, c.msg)
		}
	}

	// After "--" an argument starting with "-" is input, not a flag.
	if out, errs, code := cli(t, "trigger", "demo::echo", u, "--", "-x=1"); code != 0 || strings.TrimSpace(out) != `{"-x":1}` {
		t.Errorf(`trigger -- -x=1: %d %q %s`, code, out, errs)
	}
	// One argument with "=" that is JSON as a whole is JSON.
	if out, errs, code := cli(t, "trigger", "demo::echo", `{"eq":"a=b"}`, u); code != 0 || strings.TrimSpace(out) != `{"eq":"a=b"}` {
		t.Errorf("trigger JSON containing '=': %d %q %s", code, out, errs)
	}
	if out, _, code := cli(t, "trigger", "demo::echo", "--void", "--json", u); code != 0 || strings.TrimSpace(out) != `{"sent":true}` {
		t.Errorf("--void --json: %d %q", code, out)
	}
	if out, _, code := cli(t, "trigger", "demo::echo", "--enqueue", "default", "--json", u); code != 0 || !strings.Contains(out, `"messageReceiptId":"`) {
		t.Errorf("--enqueue --json: %d %q", code, out)
	}
	if out, _, code := cli(t, "trigger", "nope::missing", "--json", u); code != 1 || !strings.Contains(out, `{"error":{"code":"function_not_found"`) {
		t.Errorf("an unknown function, --json: %d %q", code, out)
	}
	if out, _, code := cli(t, "functions", "--url=ws://127.0.0.1:1", "--timeout=200ms", "--json"); code != 1 || !strings.Contains(out, `{"error":{"code":"","message":"`) {
		t.Errorf("an unreachable engine, --json: %d %q", code, out)
	}

	out2, _, code := cli(t, "functions", "info", "demo::echo", u)
	if code != 0 || !strings.Contains(out2, "function_id:") || !strings.Contains(out2, "demo::echo") || !strings.Contains(out2, "triggers:") {
		t.Errorf("functions info (table): %d\n%s", code, out2)
	}
	out2, _, code = cli(t, "functions", "info", "demo::http", u)
	if code != 0 || !regexp.MustCompile(`(?m)^triggers:\s+1$`).MatchString(out2) || !strings.Contains(out2, "/cli/hello") {
		t.Errorf("functions info of a function with an HTTP trigger: %d\n%s", code, out2)
	}
	if _, errs, code := cli(t, "functions", "info", "nope::missing", u); code != 1 || errs == "" {
		t.Errorf("functions info of an unknown function: %d %s", code, errs)
	}
	if out2, _, code = cli(t, "functions", "--all", u); code != 0 || !strings.Contains(out2, "engine::functions::list") {
		t.Errorf("functions --all: %d\n%s", code, out2)
	}
	if out2, _, code = cli(t, "functions", u); code != 0 || strings.Contains(out2, "engine::functions::list") {
		t.Errorf("functions without --all lists the engine's own: %d\n%s", code, out2)
	}
	out2, _, code = cli(t, "triggers", u)
	if code != 0 || !strings.Contains(out2, "FUNCTION") || !strings.Contains(out2, "demo::http") || !strings.Contains(out2, "http") {
		t.Errorf("triggers (table): %d\n%s", code, out2)
	}
	if out2, _, code = cli(t, "triggers", "--types", "--json", u); code != 0 || !strings.Contains(out2, `"id":"http"`) {
		t.Errorf("triggers --types --json: %d\n%s", code, out2)
	}
}

// TestCLIPayloadFromStdin: "-" reads one JSON value from stdin; anything
// else there is a usage error.
func TestCLIPayloadFromStdin(t *testing.T) {
	for _, c := range []struct {
		stdin, want string
		code        int
	}{
		{`{"a": [1, 2]}`, `{"a": [1, 2]}`, 0},
		{`  "s"  `, `  "s"  `, 0},
		{`{"a":`, "", 2},
		{``, "", 2},
	} {
		cc := &clientCmd{stdin: strings.NewReader(c.stdin)}
		got, err := cc.payload([]string{"-"})
		var ee *exitError
		switch {
		case c.code == 0 && (err != nil || string(got) != c.want):
			t.Errorf("stdin %q: %s, %v", c.stdin, got, err)
		case c.code != 0 && (!errors.As(err, &ee) || ee.code != c.code || !strings.Contains(err.Error(), "stdin is not one JSON value")):
			t.Errorf("stdin %q: %v, want a usage error", c.stdin, err)
		}
	}
	cc := &clientCmd{stdin: iotestErrReader{}}
	if _, err := cc.payload([]string{"-"}); err == nil || !strings.Contains(err.Error(), "read broke") {
		t.Errorf("a failing stdin: %v", err)
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("read broke") }

// TestPrintJSON: indented on a terminal, compact otherwise; nothing is
// null; what is not JSON is printed as it came.
func TestPrintJSON(t *testing.T) {
	for _, c := range []struct {
		tty       bool
		raw, want string
	}{
		{false, `{ "a" : 1 }`, "{\"a\":1}\n"},
		{true, `{"a":1}`, "{\n  \"a\": 1\n}\n"},
		{false, ``, "null\n"},
		{false, `not json`, "not json\n"},
	} {
		var b bytes.Buffer
		cc := &clientCmd{stdout: &b, tty: c.tty}
		if err := cc.printJSON(json.RawMessage(c.raw)); err != nil || b.String() != c.want {
			t.Errorf("printJSON(%q, tty %v) = %q, %v; want %q", c.raw, c.tty, b.String(), err, c.want)
		}
	}
}

// TestStr: table cells: nothing and empty strings are "-", numbers as
// they are, anything else as JSON.
func TestStr(t *testing.T) {
	for _, c := range []struct {
		v    any
		want string
	}{
		{nil, "-"}, {"", "-"}, {"x", "x"}, {float64(3), "3"}, {1.5, "1.5"},
		{map[string]any{"a": true}, `{"a":true}`}, {[]any{1, "b"}, `[1,"b"]`}, {false, "false"},
	} {
		if got := str(c.v); got != c.want {
			t.Errorf("str(%#v) = %q, want %q", c.v, got, c.want)
		}
	}
}

// TestProgress: sizes in binary units; the line shows bytes, rate,
// percentage and ETA when the total is known, and only bytes and rate
// when not; nothing is drawn when stderr is not a terminal.
func TestProgress(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536 << 10, "1.5 MiB"}, {5 << 30, "5.0 GiB"}, {1 << 40, "1.0 TiB"},
	} {
		if got := human(c.n); got != c.want {
			t.Errorf("human(%d) = %q, want %q", c.n, got, c.want)
		}
	}

	draw := func(total, n int64) string {
		var b bytes.Buffer
		p := &progress{w: &b, total: total, start: time.Now().Add(-2 * time.Second)}
		p.n.Store(n)
		p.draw()
		return b.String()
	}
	if got := draw(4<<20, 1<<20); !strings.Contains(got, "1.0 MiB / 4.0 MiB") || !strings.Contains(got, " 25%") ||
		!strings.Contains(got, "512.0 KiB/s") || !strings.Contains(got, "ETA 6s") || !strings.HasPrefix(got, "\r") {
		t.Errorf("known total: %q", got)
	}
	if got := draw(0, 0); !strings.Contains(got, "100%") || !strings.Contains(got, "ETA ?") {
		t.Errorf("empty input: %q", got)
	}
	if got := draw(-1, 3<<10); strings.Contains(got, "%") || strings.Contains(got, "ETA") || !strings.Contains(got, "3.0 KiB  1.5 KiB/s") {
		t.Errorf("unknown total: %q", got)
	}

	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, w := range []io.Writer{&bytes.Buffer{}, f} {
		p := startProgress(w, 10)
		_, _ = p.Write(make([]byte, 10))
		p.end()
		if p.w != nil || p.n.Load() != 10 {
			t.Errorf("%T: drawing %v, counted %d", w, p.w != nil, p.n.Load())
		}
	}
	if st, _ := f.Stat(); st.Size() != 0 {
		t.Errorf("progress drawn on a file that is not a terminal: %d bytes", st.Size())
	}
}
