package interop

import (
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The seed examples under examples/seeds/, as a user runs them (one
// command each, no test harness), against the built engine: the Node,
// Python and Rust ones with the official SDKs setup.sh installed (iii-sdk
// 0.22.1, 0.25.0, 0.25.0), the Go ones with this module's SDK.

// exampleSeedLang starts one of a language's four examples.
type exampleSeedLang struct {
	name  string
	start func(t *testing.T, e *engineProc, example string, env ...string) *proc
	// headers the download example sets; nil: the Node seed's
	headers map[string]string
}

// nodeExampleSeeds copies examples/seeds/node-0.22.1 into a temporary
// directory whose node_modules is the one setup.sh installed in
// interop/node-0.22.1 (the same pinned packages: checked here), as
// `npm install` there would.
func nodeExampleSeeds(t *testing.T) exampleSeedLang {
	f := flavourNamed("node-0.22.1")
	node := f.require(t)
	src := filepath.Join(moduleRoot, "examples", "seeds", "node-0.22.1")
	deps := func(dir string) map[string]any {
		b, err := os.ReadFile(filepath.Join(dir, "package.json"))
		if err != nil {
			t.Fatal(err)
		}
		var pkg struct{ Dependencies map[string]any }
		if err := json.Unmarshal(b, &pkg); err != nil {
			t.Fatal(err)
		}
		return pkg.Dependencies
	}
	if a, b := deps(src), deps(filepath.Join(interopDir, f.Dir)); !reflect.DeepEqual(a, b) {
		t.Fatalf("examples/seeds/node-0.22.1 depends on %v, interop/%s on %v: the test would run other packages than a user gets", a, f.Dir, b)
	}
	dir := filepath.Join(t.TempDir(), "node-0.22.1")
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(interopDir, f.Dir, "node_modules"), filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	return exampleSeedLang{name: "node-0.22.1", start: func(t *testing.T, e *engineProc, example string, env ...string) *proc {
		cmd := exec.Command(node, example+".mjs")
		cmd.Dir = dir
		cmd.Env = append(append(os.Environ(), "III_URL="+e.URL, "OTEL_ENABLED=false"), env...)
		return startProc(t, "node "+example+".mjs", cmd)
	}}
}

// pythonExampleSeeds runs examples/seeds/python-0.25 with the venv setup.sh
// installed from the same pinned requirements (checked here).
func pythonExampleSeeds(t *testing.T) exampleSeedLang {
	f := flavourNamed("python-0.25.0")
	py := f.require(t)
	dir := filepath.Join(moduleRoot, "examples", "seeds", "python-0.25")
	pins := func(path string) []string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var out []string // name==version and --hash lines, in order
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(l), "\\")); l != "" && !strings.HasPrefix(l, "#") {
				out = append(out, l)
			}
		}
		return out
	}
	if a, b := pins(filepath.Join(dir, "requirements.txt")), pins(filepath.Join(interopDir, "python", "requirements.txt")); !reflect.DeepEqual(a, b) {
		t.Fatalf("examples/seeds/python-0.25 pins %v, interop/python %v: the test would run other packages than a user gets", a, b)
	}
	return exampleSeedLang{name: "python-0.25", headers: map[string]string{"Content-Type": "application/pdf"},
		start: func(t *testing.T, e *engineProc, example string, env ...string) *proc {
			cmd := exec.Command(py, example+".py")
			cmd.Dir = dir
			cmd.Env = append(append(os.Environ(), "III_URL="+e.URL, "OTEL_ENABLED=false", "PYTHONDONTWRITEBYTECODE=1"), env...)
			return startProc(t, "python "+example+".py", cmd)
		}}
}

// rustExampleSeeds builds examples/seeds/rust-0.25 (`cargo build --locked`,
// offline: setup.sh fetched the same crates for interop/rust, whose
// Cargo.lock this one matches) into $CARGO_TARGET_DIR, by default the
// target directory setup.sh builds the Rust worker in, so that only the
// examples themselves compile.
func rustExampleSeeds(t *testing.T) exampleSeedLang {
	dir := filepath.Join(moduleRoot, "examples", "seeds", "rust-0.25")
	find := exec.CommandContext(ctxFor(t, callTimeout), "bash", filepath.Join(interopDir, "find_cargo.sh"))
	var msg strings.Builder
	find.Stderr = &msg
	out, err := find.Output()
	cargo := strings.TrimSpace(string(out))
	if err != nil || cargo == "" {
		if os.Getenv("SLUICE_INTEROP") == "1" {
			t.Fatalf("rust examples: no cargo (SLUICE_INTEROP=1: missing dependencies fail)\n%s", msg.String())
		}
		t.Skipf("rust examples: no cargo (set SLUICE_INTEROP=1 to fail instead)\n%s", msg.String())
	}
	target := os.Getenv("CARGO_TARGET_DIR")
	if target == "" {
		target = filepath.Join(interopDir, "rust", "target")
	}
	build := exec.CommandContext(ctxFor(t, 10*time.Minute), cargo, "build", "--locked", "--offline", "--quiet", "--bins")
	build.Dir = dir
	build.Env = append(os.Environ(), "CARGO_TARGET_DIR="+target)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("cargo build in examples/seeds/rust-0.25: %v\n%s", err, out)
	}
	return exampleSeedLang{name: "rust-0.25", start: func(t *testing.T, e *engineProc, example string, env ...string) *proc {
		cmd := exec.Command(filepath.Join(target, "debug", example))
		cmd.Env = append(append(os.Environ(), "III_URL="+e.URL, "OTEL_ENABLED=false"), env...)
		return startProc(t, "cargo run --bin "+example, cmd)
	}}
}

// goExampleSeeds builds examples/seeds/go/... (what `go run` would run).
func goExampleSeeds(t *testing.T) exampleSeedLang {
	bin := t.TempDir()
	build := exec.CommandContext(ctxFor(t, 2*startTimeout), "go", "build", "-o", bin+string(filepath.Separator), "./examples/seeds/go/...")
	build.Dir = moduleRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/seeds/go/...: %v\n%s", err, out)
	}
	return exampleSeedLang{name: "go", start: func(t *testing.T, e *engineProc, example string, env ...string) *proc {
		cmd := exec.Command(filepath.Join(bin, example))
		cmd.Env = append(append(os.Environ(), "III_URL="+e.URL), env...)
		return startProc(t, "go run ./examples/seeds/go/"+example, cmd)
	}}
}

// writeExampleFile writes size random bytes to <dir>/seedFileName.
func writeExampleFile(t *testing.T, size int64) seedFile {
	t.Helper()
	dir := t.TempDir()
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	data, _ := io.ReadAll(io.LimitReader(rand.NewChaCha8(seed), size))
	if err := os.WriteFile(filepath.Join(dir, seedFileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return seedFile{dir: dir, size: size, sha256: hex.EncodeToString(sum[:])}
}

// answer waits for the stdout line "<fn> answered: <json>" and decodes it.
func answer(t *testing.T, p *proc, fn string, v any) {
	t.Helper()
	prefix := fn + " answered: "
	line, err := p.stdout.wait(ctxFor(t, callTimeout), func(s string) bool { return strings.HasPrefix(s, prefix) })
	if err != nil {
		t.Fatalf("%s printed no answer from %s: %v", p.name, fn, p.exitNote(err))
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, prefix)), v); err != nil {
		t.Fatalf("%s: %q: %v", p.name, line, err)
	}
}

// TestExampleSeeds runs the four seed examples of examples/seeds/ in Node
// (iii-sdk 0.22.1), Python (iii-sdk 0.25.0), Rust (iii-sdk 0.25.0) and Go,
// each against its own engine: the download's
// bytes and SHA-256, the SSE events' content and pacing, the pipeline's
// count and total, the transform's result and progress messages.
func TestExampleSeeds(t *testing.T) {
	if buildErr != nil {
		t.Fatalf("building the engine: %v", buildErr)
	}
	file := writeExampleFile(t, 8<<20)
	for _, l := range []struct {
		name  string
		setup func(*testing.T) exampleSeedLang
	}{{"go", goExampleSeeds}, {"node-0.22.1", nodeExampleSeeds}, {"python-0.25", pythonExampleSeeds}, {"rust-0.25", rustExampleSeeds}} {
		t.Run(l.name, func(t *testing.T) {
			lang := l.setup(t) // skips (fails under SLUICE_INTEROP=1) without the SDK
			t.Run("download", func(t *testing.T) {
				e := startEngine(t, "127.0.0.1:0")
				lang.start(t, e, "download", "DATA_DIR="+file.dir)
				waitHTTPTrigger(ctxFor(t, startTimeout), t, connectGo(t, e, "probe"), "files::download")
				headers := lang.headers
				if headers == nil {
					headers = map[string]string{
						"Content-Type":        "application/octet-stream",
						"Content-Disposition": `attachment; filename="` + seedFileName + `"`,
					}
				}
				checkDownload(t, e, e.HTTPURL+"/files/"+seedFileName, headers, file)
			})
			t.Run("sse", func(t *testing.T) {
				e := startEngine(t, "127.0.0.1:0")
				lang.start(t, e, "sse", fmt.Sprintf("SSE_DELAY_MS=%d", sseGap.Milliseconds()))
				waitHTTPTrigger(ctxFor(t, startTimeout), t, connectGo(t, e, "probe"), "events::stream")
				checkSSE(t, e, e.HTTPURL+"/events/stream", map[string]string{
					"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "Connection": "keep-alive",
				}, nil)
			})
			t.Run("pipeline", func(t *testing.T) {
				e := startEngine(t, "127.0.0.1:0")
				p := lang.start(t, e, "pipeline")
				var got map[string]any
				answer(t, p, "pipeline::producer", &got)
				if want := map[string]any{"label": "batch-001", "count": 3.0, "total": 60.0}; !reflect.DeepEqual(got, want) {
					t.Errorf("pipeline::producer = %v, want %v", got, want)
				}
			})
			t.Run("transform", func(t *testing.T) {
				e := startEngine(t, "127.0.0.1:0")
				p := lang.start(t, e, "transform")
				var got struct {
					Result   string `json:"result"`
					Progress []struct {
						Type   string `json:"type"`
						Chunks int    `json:"chunks"`
					} `json:"progress"`
				}
				answer(t, p, "transform::coordinator", &got)
				if got.Result != "HELLO, SLUICE" || len(got.Progress) == 0 {
					t.Fatalf("transform::coordinator = %+v, want the text upper-cased and progress", got)
				}
				for i, pr := range got.Progress {
					if pr.Type != "progress" || pr.Chunks != i+1 {
						t.Errorf("progress %d = %+v, want {progress %d}", i, pr, i+1)
					}
				}
			})
		})
	}
}

// seedBody is a Node seed script without its header comments, imports and
// what follows the seed (the interop harness footer, the examples' "try
// it" block), with the interop copies' WORKER_PREFIX prefixes (${P},
// ${ROUTE}) taken out; and its imports, the harness's dropped.
func seedBody(t *testing.T, path string) (body string, imports []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, marker := range []string{"// --- harness footer", "// --- try it"} {
		if i := strings.Index(s, marker); i >= 0 {
			s = s[:i]
		}
	}
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		switch {
		case strings.HasPrefix(l, "import "):
			if !strings.Contains(l, "harness.mjs") {
				imports = append(imports, l)
			}
			lines = lines[:0] // the body starts after the last import
		case len(lines) == 0 && (l == "" || strings.HasPrefix(l, "//")):
		default:
			lines = append(lines, l)
		}
	}
	body = strings.TrimSpace(strings.Join(lines, "\n"))
	body = regexp.MustCompile("`\\$\\{(?:P|ROUTE)\\}([^`$]*)`").ReplaceAllString(body, "'$1'")
	return body, imports
}

// TestExampleSeedsMatchInterop: the interop suite's Node 0.22.1 seed
// scripts (which run with a WORKER_PREFIX so that flavours can share an
// engine) are the examples' code, prefixes aside; a change to one must be
// made to the other.
func TestExampleSeedsMatchInterop(t *testing.T) {
	for example, seed := range map[string]string{"download": "seed_download", "sse": "seed_sse", "pipeline": "seed_pipeline", "transform": "seed_transform"} {
		ex, exImports := seedBody(t, filepath.Join(moduleRoot, "examples", "seeds", "node-0.22.1", example+".mjs"))
		in, inImports := seedBody(t, filepath.Join(interopDir, "node-0.22.1", seed+".mjs"))
		if ex != in {
			t.Errorf("examples/seeds/node-0.22.1/%s.mjs and interop/node-0.22.1/%s.mjs differ:\n--- example\n%s\n--- interop\n%s", example, seed, ex, in)
		}
		if !reflect.DeepEqual(exImports, inImports) {
			t.Errorf("%s: imports differ: %q vs %q", example, exImports, inImports)
		}
	}
}
