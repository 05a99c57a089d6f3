package interop

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runFindCargo runs setup.sh's cargo lookup (find_cargo.sh) alone, with
// PATH and HOME set to pathDir and home and nothing else from the
// environment but extra.
func runFindCargo(t *testing.T, pathDir, home string, extra ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("bash not found")
	}
	cmd := exec.CommandContext(ctxFor(t, callTimeout), bash, filepath.Join(interopDir, "find_cargo.sh"))
	cmd.Env = append([]string{"PATH=" + pathDir, "HOME=" + home}, extra...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		exitCode = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errb.String(), exitCode
}

// TestSetupMissingCargoMessage: without cargo, setup says what that means
// for the tests (the Rust ones fail under scripts/test.sh and CI) and how
// to install cargo; under SLUICE_INTEROP=1 it fails. On 8b50cfc setup.sh
// said "skipping the Rust worker (its interop tests will skip)", which is
// false under scripts/test.sh: it sets SLUICE_INTEROP=1, so they fail.
func TestSetupMissingCargoMessage(t *testing.T) {
	setup, err := os.ReadFile(filepath.Join(interopDir, "setup.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(setup, []byte(`bash "$here/find_cargo.sh"`)) || bytes.Contains(setup, []byte("will skip")) {
		t.Fatal("setup.sh does not look cargo up through find_cargo.sh")
	}

	empty := t.TempDir() // PATH without cargo; HOME without .cargo
	install := []string{"rustup", "https://sh.rustup.rs", "apt-get install cargo", "CARGO=", "1.85", "re-run interop/setup.sh"}
	for _, tc := range []struct {
		name     string
		env      []string
		wantCode int
		want     []string
	}{
		{name: "plain", wantCode: 0, want: []string{"cargo not found", "FAIL under scripts/test.sh and in CI (SLUICE_INTEROP=1)", "skips them"}},
		{name: "SLUICE_INTEROP=1", env: []string{"SLUICE_INTEROP=1"}, wantCode: 1, want: []string{"cargo not found", "they FAIL", "failing setup now"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runFindCargo(t, empty, empty, tc.env...)
			if code != tc.wantCode || stdout != "" {
				t.Errorf("exit %d, stdout %q; want exit %d and no cargo", code, stdout, tc.wantCode)
			}
			for _, w := range append(tc.want, install...) {
				if !strings.Contains(stderr, w) {
					t.Errorf("message lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// TestSetupFindsCargo: $CARGO first, then cargo on PATH, then
// ~/.cargo/bin/cargo, printed and silent.
func TestSetupFindsCargo(t *testing.T) {
	fake := func(dir string) string {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "cargo")
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	onPath := fake(filepath.Join(t.TempDir(), "bin"))
	home := t.TempDir()
	inHome := fake(filepath.Join(home, ".cargo", "bin"))
	empty := t.TempDir()
	for _, tc := range []struct {
		name, path, home string
		env              []string
		want             string
	}{
		{name: "CARGO", path: filepath.Dir(onPath), home: home, env: []string{"CARGO=/opt/x/cargo"}, want: "/opt/x/cargo"},
		{name: "PATH", path: filepath.Dir(onPath), home: home, want: onPath},
		{name: "HOME", path: empty, home: home, want: inHome},
	} {
		stdout, stderr, code := runFindCargo(t, tc.path, tc.home, tc.env...)
		if code != 0 || strings.TrimSpace(stdout) != tc.want || stderr != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want %s", tc.name, code, stdout, stderr, tc.want)
		}
	}
}
