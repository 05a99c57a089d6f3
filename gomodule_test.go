package sluice_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// goCmd runs the go command in dir, outside any workspace, and fails the
// test with its output if it fails.
func goCmd(t *testing.T, dir string, args ...string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	cmd := exec.CommandContext(t.Context(), goBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
}

// TestGoModuleFromOutside follows the README's "Using the Go SDK from your
// own module" steps in a fresh module outside this repository: the go.mod
// the README shows, its replace directive pointed at this clone, the
// program of examples/gomodule, then go mod tidy and go build. It uses the module cache and the
// configured GOPROXY for the SDK's dependencies.
func TestGoModuleFromOutside(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	// The go.mod the README shows, with its replace pointed at this clone.
	blocks := codeBlocks(readmeSection(t, "## Using the Go SDK from your own module"), "")
	if len(blocks) != 1 {
		t.Fatalf("want one go.mod block in the README section, found %d", len(blocks))
	}
	mod := blocks[0]
	const readmeReplace = "replace github.com/sluicehq/sluice => ../sluice"
	i := strings.Index(mod, readmeReplace)
	if i < 0 {
		t.Fatalf("the README's go.mod lacks %q:\n%s", readmeReplace, mod)
	}
	mod = mod[:i] + "replace github.com/sluicehq/sluice => " + root + "\n"
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("examples/gomodule/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src, 0o600); err != nil {
		t.Fatal(err)
	}
	goCmd(t, dir, "mod", "tidy")
	goCmd(t, dir, "build", "-o", os.DevNull, ".")
	// The committed example builds as it is, with its go.sum.
	goCmd(t, "examples/gomodule", "build", "-mod=readonly", "-o", os.DevNull, ".")
}
