package interop

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testtls"
)

// Set up by TestMain.
var (
	moduleRoot string // the repository root (go.mod)
	interopDir string // <moduleRoot>/interop
	engineBin  string // the built sluice binary
	buildErr   error  // why engineBin could not be built
)

// Bounds. Generous for a loaded 2-core machine; a healthy run stays far below.
const (
	startTimeout = 30 * time.Second // a process printing READY / the engine listening
	callTimeout  = 20 * time.Second // one call, including polling the engine
	stopTimeout  = 5 * time.Second  // SIGTERM to exit, then SIGKILL
	maxLogLines  = 4000             // per captured stream; older lines are dropped
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 1
	}
	interopDir = wd
	moduleRoot = filepath.Dir(wd)
	tmp, err := os.MkdirTemp("", "sluice-interop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	engineBin = filepath.Join(tmp, "sluice")
	buildErr = buildEngine(engineBin)
	return m.Run()
}

// buildEngine builds ./cmd/sluice into bin, with -race when
// SLUICE_ENGINE_RACE=1.
func buildEngine(bin string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	args := []string{"build", "-o", bin}
	if os.Getenv("SLUICE_ENGINE_RACE") == "1" {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/sluice")
	cmd := exec.Command(goBin, args...)
	cmd.Dir = moduleRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// ---------------------------------------------------------------- flavours

// flavour is one official SDK installation the tests run against.
type flavour struct {
	Name    string // subtest name: "node-0.11.6"
	Prefix  string // WORKER_PREFIX: the worker's function ids are <Prefix>::echo, ...
	Runtime string // what engine::workers::list reports: "node" or "python"
	Version string // the iii-sdk version installed
	Dir     string // script directory inside interop/ (Rust: the Cargo package)
	venv    string // Python: venv directory inside interop/
	// OTel leaves the SDK's OpenTelemetry on (its default): the worker
	// opens /otel and sends telemetry frames. The others run with it off.
	OTel bool
}

// rustWorkerBin is the worker binary setup.sh builds in interop/rust/.
func rustWorkerBin() string {
	return filepath.Join(interopDir, "rust", "target", rustProfile, "worker")
}

// rustProfile is the cargo profile setup.sh builds the Rust worker with.
const rustProfile = "debug"

// rustStamp is the hash setup.sh writes next to the Rust worker binary
// (worker.sluice-stamp): the SHA-256 of Cargo.toml, Cargo.lock and
// src/*.rs (sorted) concatenated.
func rustStamp() (string, error) {
	dir := filepath.Join(interopDir, "rust")
	src, err := filepath.Glob(filepath.Join(dir, "src", "*.rs"))
	if err != nil {
		return "", err
	}
	slices.Sort(src)
	h := sha256.New()
	for _, name := range append([]string{filepath.Join(dir, "Cargo.toml"), filepath.Join(dir, "Cargo.lock")}, src...) {
		b, err := os.ReadFile(name)
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

var flavours = []*flavour{
	{Name: "node-0.11.6", Prefix: "node11", Runtime: "node", Version: "0.11.6", Dir: "node-0.11.6"},
	{Name: "node-0.22.1", Prefix: "node22", Runtime: "node", Version: "0.22.1", Dir: "node-0.22.1", OTel: true},
	{Name: "python-0.25.0", Prefix: "py25", Runtime: "python", Version: "0.25.0", Dir: "python", venv: ".venv", OTel: true},
	{Name: "python-seed-0.11.6", Prefix: "pyseed", Runtime: "python", Version: "0.11.6", Dir: "python", venv: ".venv-seed"},
	{Name: "rust-0.25.0", Prefix: "rs", Runtime: "rust", Version: "0.25.0", Dir: "rust"},
}

func flavourNamed(name string) *flavour {
	for _, f := range flavours {
		if f.Name == name {
			return f
		}
	}
	panic("no flavour " + name)
}

// dependency returns the interpreter that runs f's scripts, or why it is
// not available.
func (f *flavour) dependency() (string, error) {
	switch f.Runtime {
	case "node":
		node, err := exec.LookPath("node")
		if err != nil {
			return "", errors.New("node not found on PATH")
		}
		pkg := filepath.Join(interopDir, f.Dir, "node_modules", "iii-sdk", "package.json")
		b, err := os.ReadFile(pkg)
		if err != nil {
			return "", fmt.Errorf("iii-sdk not installed in %s/node_modules (run interop/setup.sh)", f.Dir)
		}
		if !regexp.MustCompile(`"version"\s*:\s*"` + regexp.QuoteMeta(f.Version) + `"`).Match(b) {
			return "", fmt.Errorf("%s holds another iii-sdk version than %s (run interop/setup.sh)", pkg, f.Version)
		}
		return node, nil
	case "python":
		py := filepath.Join(interopDir, f.venv, "bin", "python")
		if _, err := os.Stat(py); err != nil {
			return "", fmt.Errorf("python venv interop/%s missing (run interop/setup.sh)", f.venv)
		}
		m, _ := filepath.Glob(filepath.Join(interopDir, f.venv, "lib", "python*", "site-packages", "iii_sdk-"+f.Version+".dist-info"))
		if len(m) == 0 {
			return "", fmt.Errorf("iii-sdk %s not installed in interop/%s (run interop/setup.sh)", f.Version, f.venv)
		}
		return py, nil
	case "rust":
		lock, err := os.ReadFile(filepath.Join(interopDir, f.Dir, "Cargo.lock"))
		if err != nil {
			return "", err
		}
		if !regexp.MustCompile(`name = "iii-sdk"\nversion = "` + regexp.QuoteMeta(f.Version) + `"`).Match(lock) {
			return "", fmt.Errorf("interop/%s/Cargo.lock does not pin iii-sdk %s", f.Dir, f.Version)
		}
		bin := rustWorkerBin()
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("rust worker not built: %s missing (run interop/setup.sh; needs cargo: see interop/find_cargo.sh)", bin)
		}
		want, err := rustStamp()
		if err != nil {
			return "", err
		}
		if got, _ := os.ReadFile(bin + ".sluice-stamp"); string(got) != want {
			return "", fmt.Errorf("rust worker %s is out of date with interop/%s (run interop/setup.sh)", bin, f.Dir)
		}
		return bin, nil
	}
	return "", fmt.Errorf("unknown runtime %q", f.Runtime)
}

// require returns f's interpreter, or skips the test (fails it when
// SLUICE_INTEROP=1) when f is not installed.
func (f *flavour) require(t testing.TB) string {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("building the engine: %v", buildErr)
	}
	interp, err := f.dependency()
	if err != nil {
		if os.Getenv("SLUICE_INTEROP") == "1" {
			t.Fatalf("%s: %v (SLUICE_INTEROP=1: missing dependencies fail)", f.Name, err)
		}
		t.Skipf("%s: %v (set SLUICE_INTEROP=1 to fail instead)", f.Name, err)
	}
	return interp
}

// ---------------------------------------------------------------- line logs

// lineLog collects the lines of a process stream and lets tests wait for
// one. Only the last maxLogLines are kept.
type lineLog struct {
	mu      sync.Mutex
	lines   []string
	dropped int
	changed chan struct{} // closed and replaced on every line and at close
	closed  bool
}

func newLineLog() *lineLog { return &lineLog{changed: make(chan struct{})} }

func (l *lineLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) >= maxLogLines {
		n := len(l.lines) / 4
		l.lines = slices.Delete(l.lines, 0, n)
		l.dropped += n
	}
	l.lines = append(l.lines, s)
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *lineLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.changed)
	}
}

// Write makes a lineLog an io.Writer (for loggers); each call is one line.
func (l *lineLog) Write(p []byte) (int, error) {
	l.add(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// feed copies r into l line by line until r ends, then closes l.
func (l *lineLog) feed(r io.Reader) {
	defer l.close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		l.add(sc.Text())
	}
}

// wait returns the first line (oldest kept first) for which match is
// true, waiting for it until ctx ends or the stream closes.
func (l *lineLog) wait(ctx context.Context, match func(string) bool) (string, error) {
	seen := 0
	for {
		l.mu.Lock()
		start := max(seen-l.dropped, 0)
		for _, s := range l.lines[start:] {
			if match(s) {
				l.mu.Unlock()
				return s, nil
			}
		}
		seen = l.dropped + len(l.lines)
		ch, closed := l.changed, l.closed
		l.mu.Unlock()
		if closed {
			return "", io.EOF
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	if l.dropped > 0 {
		fmt.Fprintf(&b, "    (%d earlier lines dropped)\n", l.dropped)
	}
	for _, s := range l.lines {
		b.WriteString("    ")
		b.WriteString(s)
		b.WriteByte('\n')
	}
	return b.String()
}

// dumpOnFailure logs the captured streams when t failed (always with
// SLUICE_INTEROP_VERBOSE=1). Register it before the process is stopped so
// that it runs after (cleanups run last-in first-out).
func dumpOnFailure(t testing.TB, name string, logs map[string]*lineLog) {
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("SLUICE_INTEROP_VERBOSE") != "1" {
			return
		}
		keys := make([]string, 0, len(logs))
		for k := range logs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			t.Logf("%s %s:\n%s", name, k, logs[k])
		}
	})
}

// ---------------------------------------------------------------- processes

// proc is a child process (engine or SDK worker) with captured output.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdout *lineLog
	stderr *lineLog
	exited chan struct{} // closed once the process has exited and its output is drained
	err    error         // Wait's result, valid after exited
	// afterStop, if set, runs when the test ends, once the process has
	// been stopped and before its output is dumped.
	afterStop func(t testing.TB)
}

// startProc starts cmd, capturing stdout and stderr, and stops it (SIGTERM,
// then SIGKILL) when the test ends.
func startProc(t testing.TB, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{name: name, cmd: cmd, stdout: newLineLog(), stderr: newLineLog(), exited: make(chan struct{})}
	setPdeathsig(cmd)
	outR, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.stdout.feed(outR) }()
	go func() { defer wg.Done(); p.stderr.feed(errR) }()
	go func() {
		wg.Wait() // Wait must follow the pipe reads
		p.err = cmd.Wait()
		close(p.exited)
	}()
	dumpOnFailure(t, name, map[string]*lineLog{"stdout": p.stdout, "stderr": p.stderr})
	t.Cleanup(func() {
		p.stop(t)
		if p.afterStop != nil {
			p.afterStop(t)
		}
	})
	return p
}

// stop ends the process: SIGTERM, then SIGKILL after stopTimeout.
func (p *proc) stop(t testing.TB) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		if !strings.HasPrefix(p.name, "engine") {
			t.Logf("%s did not exit %v after SIGTERM; killing it", p.name, stopTimeout)
			p.kill()
			<-p.exited
			return
		}
		// The Go runtime writes every goroutine's stack on SIGQUIT: log
		// what the shutdown waits on.
		_ = p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-p.exited:
		case <-time.After(stopTimeout):
			p.kill()
			<-p.exited
		}
		t.Logf("%s did not exit %v after SIGTERM; its goroutines at SIGQUIT:\n%s", p.name, stopTimeout, goroutineDump(p.stderr.String()))
	}
}

// goroutineDump is the part of an engine's stderr from its SIGQUIT dump on
// (what is kept of it).
func goroutineDump(stderr string) string {
	if i := strings.Index(stderr, "SIGQUIT"); i >= 0 {
		return stderr[i:]
	}
	return stderr
}

// kill sends SIGKILL.
func (p *proc) kill() { _ = p.cmd.Process.Kill() }

func (p *proc) pid() int { return p.cmd.Process.Pid }

// waitLine waits for a stdout line equal to line.
func (p *proc) waitLine(ctx context.Context, t testing.TB, line string) {
	t.Helper()
	if _, err := p.stdout.wait(ctx, func(s string) bool { return s == line }); err != nil {
		t.Fatalf("%s: waiting for stdout line %q: %v", p.name, line, p.exitNote(err))
	}
}

// exitNote explains err (a wait error) with the process state.
func (p *proc) exitNote(err error) error {
	select {
	case <-p.exited:
		return fmt.Errorf("%w (process exited: %v)", err, p.err)
	default:
		return err
	}
}

// ---------------------------------------------------------------- engine

// engineProc is a running sluice binary.
type engineProc struct {
	*proc
	Addr    string // host:port of the worker listener
	URL     string // ws://Addr (wss:// with TLS)
	HTTPURL string
	// tls is the CA and certificate the engine serves, nil without TLS.
	// Clients started by connectGo, startWorker and seedHTTPClient trust
	// the CA.
	tls *testtls.Files
}

var startedRE = regexp.MustCompile(`msg="engine started" worker_url=(wss?://([^ ]+)) http_url=(https?://[^ ]+)`)

// startPlainEngine is startEngine on a free loopback port, without TLS.
func startPlainEngine(t testing.TB) *engineProc { return startEngine(t, "127.0.0.1:0") }

// startEngine runs the engine on addr ("127.0.0.1:0" for a free port) and
// waits until it listens.
func startEngine(t testing.TB, addr string, extraArgs ...string) *engineProc {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("building the engine: %v", buildErr)
	}
	// The console and the stream client listener on free ports too: parallel
	// engines must not race for 3113 and 3112 (a later --streams-addr wins).
	args := append([]string{"serve", "--addr", addr, "--http-addr", "127.0.0.1:0", "--console-addr", "127.0.0.1:0", "--streams-addr", "127.0.0.1:0", "--log-level", "info"}, extraArgs...)
	cmd := exec.Command(engineBin, args...)
	cmd.Env = append(os.Environ(), "SLUICE_CONFIG=")
	p := startProc(t, "engine", cmd)
	// With SLUICE_ENGINE_RACE=1 the binary reports data races on stderr.
	p.afterStop = func(t testing.TB) {
		if _, err := p.stderr.wait(context.Background(), func(s string) bool { return strings.Contains(s, "WARNING: DATA RACE") }); err == nil {
			t.Errorf("the engine reported a data race (see its stderr below)")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	line, err := p.stderr.wait(ctx, startedRE.MatchString)
	if err != nil {
		t.Fatalf("engine did not start: %v", p.exitNote(err))
	}
	m := startedRE.FindStringSubmatch(line)
	return &engineProc{proc: p, URL: m[1], Addr: m[2], HTTPURL: m[3]}
}

// ---------------------------------------------------------------- workers

// worker is an SDK process started from one of the interop scripts.
type worker struct {
	*proc
	f      *flavour
	Prefix string
}

// startWorker runs script (relative to f.Dir) with III_URL and
// WORKER_PREFIX and waits for READY. It does not wait for the
// registrations to reach the engine: use waitFunctions.
func startWorker(t testing.TB, f *flavour, e *engineProc, script, prefix string, env ...string) *worker {
	t.Helper()
	interp := f.require(t)
	cmd := exec.Command(interp, script)
	if f.Runtime == "rust" {
		// interp is the compiled worker; a "script" is one of its modes
		// (rust/src/main.rs): "worker" (no argument), "stream" or
		// "cluster_modules".
		switch script {
		case "worker":
			cmd = exec.Command(interp)
		case "stream", "cluster_modules":
			cmd = exec.Command(interp, script)
		default:
			t.Fatalf("%s: no script %q (the Rust worker binary has the modes worker, stream and cluster_modules)", f.Name, script)
		}
	}
	cmd.Dir = filepath.Join(interopDir, f.Dir)
	cmd.Env = append(os.Environ(),
		"III_URL="+e.URL,
		"WORKER_PREFIX="+prefix,
		"OTEL_ENABLED="+strconv.FormatBool(f.OTel),
		"PYTHONUNBUFFERED=1",
		"PYTHONDONTWRITEBYTECODE=1",
	)
	if e.tls != nil {
		// The SDKs trust the test CA through their runtimes' standard
		// variables: Node adds NODE_EXTRA_CA_CERTS to its roots; Python's
		// default SSL context (websockets) and Rust's rustls-native-certs
		// (tokio-tungstenite) read SSL_CERT_FILE instead of the system's.
		cmd.Env = append(cmd.Env, "NODE_EXTRA_CA_CERTS="+e.tls.CAFile, "SSL_CERT_FILE="+e.tls.CAFile)
	}
	cmd.Env = append(cmd.Env, env...)
	w := &worker{proc: startProc(t, f.Name+"/"+prefix+"/"+script, cmd), f: f, Prefix: prefix}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	w.waitLine(ctx, t, "READY")
	return w
}

// testFunctions are the ids worker.mjs / worker.py register.
func testFunctions(prefix string) []string {
	var ids []string
	for _, n := range []string{"echo", "fail", "hang", "mark", "call", "pid"} {
		ids = append(ids, prefix+"::"+n)
	}
	return ids
}

// seedFunctions are the ids the seed examples loaded by the worker script
// register (on connections of their own) unless SEEDS=0.
func seedFunctions(f *flavour, prefix string) []string {
	var names []string
	switch f.Runtime {
	case "node", "rust": // rust: rust/src/seeds.rs, a port (the seed has no Rust code)
		names = []string{"pipeline::consumer", "pipeline::producer", "transform::worker", "transform::coordinator"}
	default:
		names = []string{"pipeline::consumer", "pipeline::producer", "pipeline_fixed::consumer", "pipeline_fixed::producer"}
	}
	for i, n := range names {
		names[i] = prefix + "." + n
	}
	return names
}

// ---------------------------------------------------------------- Go client

// connectGo connects a Go SDK client to e, closed when the test ends. Its
// log is captured and shown on failure.
func connectGo(t testing.TB, e *engineProc, name string) *sluice.Client {
	t.Helper()
	logs := newLineLog()
	dumpOnFailure(t, "go client "+name, map[string]*lineLog{"log": logs})
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	opts := []sluice.Option{
		sluice.WithName(name),
		sluice.WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		sluice.WithReconnectBackoff(50*time.Millisecond, 500*time.Millisecond),
		sluice.WithInvocationTimeout(callTimeout),
	}
	if e.tls != nil {
		opts = append(opts, sluice.WithTLSConfig(e.tls.ClientConfig()))
	}
	c, err := sluice.Connect(ctx, e.URL, opts...)
	if err != nil {
		t.Fatalf("connecting the Go client to %s: %v", e.URL, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// functionRow is one row of engine::functions::list.
type functionRow struct {
	FunctionID  string `json:"function_id"`
	WorkerName  string `json:"worker_name"`
	Description string `json:"description"`
}

// workerRow is one row of engine::workers::list.
type workerRow struct {
	Name          *string `json:"name"`
	Version       *string `json:"version"`
	ID            string  `json:"id"`
	Runtime       *string `json:"runtime"`
	Status        string  `json:"status"`
	FunctionCount int     `json:"function_count"`
}

func listFunctions(ctx context.Context, c *sluice.Client, in map[string]any) ([]functionRow, error) {
	out, err := sluice.Call[struct {
		Functions []functionRow `json:"functions"`
	}](ctx, c, "engine::functions::list", in)
	return out.Functions, err
}

func listWorkers(ctx context.Context, c *sluice.Client) ([]workerRow, error) {
	out, err := sluice.Call[struct {
		Workers []workerRow `json:"workers"`
	}](ctx, c, "engine::workers::list", map[string]any{})
	return out.Workers, err
}

// waitFunctions polls engine::functions::list (bounded by ctx) until every
// id is registered, and returns all rows by id.
func waitFunctions(ctx context.Context, t testing.TB, c *sluice.Client, ids ...string) map[string]functionRow {
	t.Helper()
	return waitOwned(ctx, t, c, "", ids...)
}

// waitOwned is waitFunctions that also waits until each of ids is listed
// with worker_name owner (when owner is not ""): a worker's name is only
// known once its engine::workers::register call, sent after its
// registrations, has arrived.
func waitOwned(ctx context.Context, t testing.TB, c *sluice.Client, owner string, ids ...string) map[string]functionRow {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last []functionRow
	var lastErr error
	for {
		rows, err := listFunctions(ctx, c, map[string]any{})
		if err == nil {
			got := map[string]functionRow{}
			for _, r := range rows {
				got[r.FunctionID] = r
			}
			missing := 0
			for _, id := range ids {
				if r, ok := got[id]; !ok || (owner != "" && r.WorkerName != owner) {
					missing++
				}
			}
			if missing == 0 {
				return got
			}
			last = rows
		}
		lastErr = err
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("functions %v not all registered (owner %q): %v (last list %v, last error %v)", ids, owner, ctx.Err(), last, lastErr)
			return nil
		}
	}
}

// asError returns err as *sluice.Error, failing the test otherwise.
func asError(t testing.TB, err error) *sluice.Error {
	t.Helper()
	var se *sluice.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not a *sluice.Error", err, err)
	}
	return se
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// missingDependency skips the test, or fails it when SLUICE_INTEROP=1
// (scripts/test.sh and CI, where interop/setup.sh installed everything).
func missingDependency(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("SLUICE_INTEROP") == "1" {
		t.Fatalf("missing %s (SLUICE_INTEROP=1: missing dependencies fail; run interop/setup.sh)", what)
	}
	t.Skipf("missing %s (run interop/setup.sh; set SLUICE_INTEROP=1 to fail instead)", what)
}
