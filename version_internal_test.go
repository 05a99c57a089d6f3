package sluice

import (
	"runtime/debug"
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
