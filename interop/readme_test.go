package interop

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// readmeCommand fails the test unless README.md shows cmd verbatim, so the
// commands these tests run are the ones a reader copies.
func readmeCommand(t *testing.T, cmd string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("\n"+cmd)) {
		t.Fatalf("README.md no longer shows the command %q", cmd)
	}
}

// goRunExample runs `go run ./examples/...` args from the repository root
// against e and returns its combined output and exit error.
func goRunExample(t *testing.T, e *engineProc, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(ctxFor(t, 2*startTimeout), "go", append([]string{"run"}, args...)...)
	cmd.Dir = moduleRoot
	cmd.Env = append(os.Environ(), "III_URL="+e.URL)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestReadmeChannelsGo runs the README's Go channel example: a file
// streams through a channel to files::process, which answers with its
// byte count and SHA-256; a missing file makes the call fail (the old
// snippet ignored os.Open's error and streamed 0 bytes "successfully").
func TestReadmeChannelsGo(t *testing.T) {
	readmeCommand(t, "go run ./examples/channels/go report.csv")
	e := startEngine(t, "127.0.0.1:0")

	data := bytes.Repeat([]byte("id,total\n1,42\n"), 20000) // 280 KB: several 64 KiB frames
	report := filepath.Join(t.TempDir(), "report.csv")
	if err := os.WriteFile(report, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	out, err := goRunExample(t, e, "./examples/channels/go", report)
	if err != nil {
		t.Fatalf("go run ./examples/channels/go: %v\n%s", err, out)
	}
	want := "files::process read 280000 bytes, sha256 " + hex.EncodeToString(sum[:])
	if !strings.Contains(out, want) {
		t.Fatalf("output lacks %q:\n%s", want, out)
	}

	missing := filepath.Join(t.TempDir(), "report.csv")
	out, err = goRunExample(t, e, "./examples/channels/go", missing)
	if err == nil {
		t.Fatalf("a missing file was reported as success:\n%s", out)
	}
	if !strings.Contains(out, "channel stream broken") || !strings.Contains(out, "no such file or directory") {
		t.Fatalf("the failure does not say the stream broke because the file is missing:\n%s", out)
	}
	if strings.Contains(out, "read 0 bytes") {
		t.Fatalf("a missing file was streamed as 0 bytes:\n%s", out)
	}
}

// TestReadmeQuickstart runs the README's quickstart: the Go worker
// (examples/quickstart/go) and the Node worker with the official iii-sdk
// 0.22.1 call each other and each prints the other's answer. The engine is
// the built binary on free ports (III_URL points the workers at it). The Go
// worker is built with `go build` of the README's package and run directly,
// so that stopping it reaches the worker rather than `go run`; the Node
// worker runs `node worker.mjs` in a copy of examples/quickstart/node whose
// node_modules is the one setup.sh installed for iii-sdk 0.22.1 (the
// README's `npm install` would fetch the same pinned version).
func TestReadmeQuickstart(t *testing.T) {
	readmeCommand(t, "go run ./examples/quickstart/go")
	readmeCommand(t, "cd examples/quickstart/node && npm install && node worker.mjs")
	f := flavourNamed("node-0.22.1")
	node := f.require(t)
	e := startEngine(t, "127.0.0.1:0")

	tmp := t.TempDir()
	bin := filepath.Join(tmp, "quickstart-go")
	build := exec.CommandContext(ctxFor(t, 2*startTimeout), "go", "build", "-o", bin, "./examples/quickstart/go")
	build.Dir = moduleRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/quickstart/go: %v\n%s", err, out)
	}
	nodeDir := filepath.Join(tmp, "node")
	if err := os.CopyFS(nodeDir, os.DirFS(filepath.Join(moduleRoot, "examples", "quickstart", "node"))); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(interopDir, f.Dir, "node_modules"), filepath.Join(nodeDir, "node_modules")); err != nil {
		t.Fatal(err)
	}

	goCmd := exec.Command(bin)
	goCmd.Env = append(os.Environ(), "III_URL="+e.URL)
	goW := startProc(t, "quickstart-go", goCmd)
	nodeCmd := exec.Command(node, "worker.mjs")
	nodeCmd.Dir = nodeDir
	nodeCmd.Env = append(os.Environ(), "III_URL="+e.URL, "OTEL_ENABLED=false")
	nodeW := startProc(t, "quickstart-node", nodeCmd)

	ctx := ctxFor(t, callTimeout)
	goW.waitLine(ctx, t, "node::shout answered: HI FROM GO")
	nodeW.waitLine(ctx, t, "go::greet answered: Hello, Node, from Go")
}
