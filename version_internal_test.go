package sluice

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// TestVersionFrom: the version a worker reports is the module's own
// version when it is the main module, its dependency version when a
// program imports it, and "devel" when neither is known.
func TestVersionFrom(t *testing.T) {
	dep := func(path, v string) *debug.Module { return &debug.Module{Path: path, Version: v} }
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{"no build info", nil, false, "devel"},
		{"main, tagged", &debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "v1.2.3"}}, true, "v1.2.3"},
		{"main, devel", &debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "(devel)"}}, true, "devel"},
		{"main, no version", &debug.BuildInfo{Main: debug.Module{Path: modulePath}}, true, "devel"},
		{"dependency", &debug.BuildInfo{Main: debug.Module{Path: "example.com/app", Version: "v9.9.9"},
			Deps: []*debug.Module{dep("example.com/other", "v0.1.0"), dep(modulePath, "v0.4.0")}}, true, "v0.4.0"},
		{"not linked", &debug.BuildInfo{Main: debug.Module{Path: "example.com/app", Version: "v9.9.9"},
			Deps: []*debug.Module{dep("example.com/other", "v0.1.0")}}, true, "devel"},
	} {
		if got := versionFrom(tc.bi, tc.ok); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestWorkerName: WithName wins, then III_WORKER_NAME, then host:pid.
func TestWorkerName(t *testing.T) {
	c := &Client{}
	c.cfg.name = "named"
	t.Setenv("III_WORKER_NAME", "from-env")
	if got := c.workerName(); got != "named" {
		t.Errorf("with a name: %q", got)
	}
	c.cfg.name = ""
	if got := c.workerName(); got != "from-env" {
		t.Errorf("from the environment: %q", got)
	}
	t.Setenv("III_WORKER_NAME", "")
	host, _ := os.Hostname()
	if got, want := c.workerName(), host+":"+strconv.Itoa(os.Getpid()); got != want {
		t.Errorf("default: %q, want %q", got, want)
	}
}

// TestOSString: "os release (arch)" as Node reports it, the release read
// from the kernel where it can be.
func TestOSString(t *testing.T) {
	want := runtime.GOOS
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		want += " " + strings.TrimSpace(string(b))
	} else {
		t.Logf("no kernel release here: %v", err)
	}
	want += " (" + runtime.GOARCH + ")"
	if got := osString(); got != want {
		t.Errorf("osString() = %q, want %q", got, want)
	}
}

// TestLanguage: the POSIX locale becomes a BCP 47 tag; C and POSIX locales
// are skipped, and en-US is the default.
func TestLanguage(t *testing.T) {
	for _, tc := range []struct{ all, messages, lang, want string }{
		{"", "", "de_DE.UTF-8@euro", "de-DE"},
		{"C", "", "fr_FR", "fr-FR"},
		{"POSIX", "C.UTF-8", "pt_BR.UTF-8", "pt-BR"},
		{"", "es_ES@latin", "fr_FR", "es-ES"},
		{"ja_JP.UTF-8", "es_ES", "fr_FR", "ja-JP"},
		{"", "", "", "en-US"},
		{"C", "POSIX", "C.UTF-8", "en-US"},
	} {
		t.Setenv("LC_ALL", tc.all)
		t.Setenv("LC_MESSAGES", tc.messages)
		t.Setenv("LANG", tc.lang)
		if got := language(); got != tc.want {
			t.Errorf("LC_ALL=%q LC_MESSAGES=%q LANG=%q: %q, want %q", tc.all, tc.messages, tc.lang, got, tc.want)
		}
	}
}
