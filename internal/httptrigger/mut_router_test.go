package httptrigger

import (
	"errors"
	"testing"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/registry"
)

// Tests for the mutation survivors of router.go (docs/testing.md,
// "Mutation testing"): each fails with the mutant named applied.

// A trigger with no config at all lacks api_path; it is not a JSON error
// (router.go:105, len(Config) > 0 → >= 0, unmarshals an empty document).
func TestParseTriggerWithoutConfig(t *testing.T) {
	for _, cfg := range []jsontext.Value{nil, {}} {
		_, err := parseTrigger(&registry.Trigger{ID: "t", Type: "http", FunctionID: "f", Config: cfg})
		if !errors.Is(err, ErrAPIPathRequired) {
			t.Errorf("config %q: %v, want ErrAPIPathRequired", cfg, err)
		}
	}
}

// isIdent: a letter or underscore, then letters, digits or underscores;
// every boundary of the character ranges.
func TestIsIdent(t *testing.T) {
	for s, want := range map[string]bool{
		"": false, "_": true, "a": true, "z": true, "A": true, "Z": true,
		"a0": true, "a9": true, "_9": true, "0": false, "9a": false,
		"`": false, "{": false, "@": false, "[": false, "a/": false, "a:": false,
		"a-b": false, "é": false, "abcXYZ_019": true,
	} {
		if got := isIdent(s); got != want {
			t.Errorf("isIdent(%q) = %v, want %v", s, got, want)
		}
	}
}

// isToken: RFC 9110 token characters (visible ASCII without separators).
func TestIsToken(t *testing.T) {
	for s, want := range map[string]bool{
		"": false, "GET": true, "M-SEARCH": true, "!": true, "~": true,
		" ": false, "\x7f": false, "\x80": false, "\x00": false, "\t": false,
		"A B": false, "A\"": false, "A(": false, "A/": false, "A:": false, "A}": false,
		"A\\": false, "GET@": false, "x\x7e": true,
	} {
		if got := isToken(s); got != want {
			t.Errorf("isToken(%q) = %v, want %v", s, got, want)
		}
	}
}

// unhex of every hex digit, both cases.
func TestUnhex(t *testing.T) {
	const digits = "0123456789abcdef"
	for i := range 16 {
		if got := unhex(digits[i]); int(got) != i {
			t.Errorf("unhex(%q) = %d, want %d", digits[i], got, i)
		}
		if i >= 10 {
			u := digits[i] - 'a' + 'A'
			if got := unhex(u); int(got) != i {
				t.Errorf("unhex(%q) = %d, want %d", u, got, i)
			}
		}
	}
	for _, c := range []byte("0123456789abcdefABCDEF") {
		if !isHex(c) {
			t.Errorf("isHex(%q) = false", c)
		}
	}
	for _, c := range []byte("/:@`gG \x00\xff") {
		if isHex(c) {
			t.Errorf("isHex(%q) = true", c)
		}
	}
}

// decodeSegment: an escape at the very end, a truncated one, and the
// bytes that stay encoded.
func TestDecodeSegmentEdges(t *testing.T) {
	for s, want := range map[string]string{
		"%41":     "A",
		"a%41":    "aA",
		"%4":      "%4",
		"a%4":     "a%4",
		"%4g":     "%4g",
		"%g4":     "%g4",
		"%7e%7E":  "~~",
		"%2f%5c":  "%2f%5c",
		"%00":     "%00",
		"%25":     "%25",
		"%2e%2e.": "...",
		"%2E.":    "%2E.",
	} {
		if got := decodeSegment(s); got != want {
			t.Errorf("decodeSegment(%q) = %q, want %q", s, got, want)
		}
	}
}

// pathParams with parameters past the end of a shorter path (the mux
// never sends one, but the walker must not run past the end) and a rest
// parameter after others.
func TestPathParamsWalk(t *testing.T) {
	rt := &route{params: []param{{name: "a", seg: 0}, {name: "b", seg: 2}, {name: "r", seg: 3, rest: true}}}
	for path, want := range map[string]map[string]string{
		"/x/y/z/p/q": {"a": "x", "b": "z", "r": "p/q"},
		"/x/y/z/":    {"a": "x", "b": "z", "r": ""},
		"/x/y/z":     {"a": "x", "b": "z", "r": ""},
		"/x/y":       {"a": "x", "b": "", "r": ""},
		"/x":         {"a": "x", "b": "", "r": ""},
		"x/y/z%2Fw":  {"a": "x", "b": "z%2Fw", "r": ""},
	} {
		got := rt.pathParams(path)
		if len(got) != len(want) {
			t.Errorf("%s: %v, want %v", path, got, want)
			continue
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q (all: %v)", path, k, got[k], v, got)
			}
		}
	}
	if m := (&route{}).pathParams("/a/b"); m == nil || len(m) != 0 {
		t.Errorf("no params: %v", m)
	}
}

// convertPath's ServeMux patterns and normalized forms.
func TestConvertPath(t *testing.T) {
	for in, want := range map[string][2]string{
		"/":             {"/{$}", "/"},
		"":              {"/{$}", "/"},
		"//":            {"/{$}", "/"},
		"a":             {"/a", "/a"},
		"/a/":           {"/a/{$}", "/a/"},
		"a//b/":         {"/a/b/{$}", "/a/b/"},
		"/u/:id":        {"/u/{id}", "/u/:id"},
		"/f/*rest":      {"/f/{rest...}", "/f/*rest"},
		"/f/*rest/":     {"/f/{rest...}", "/f/*rest"},
		"/:a/x/:b/*c//": {"/{a}/x/{b}/{c...}", "/:a/x/:b/*c"},
	} {
		mux, _, norm, err := convertPath(in)
		if err != nil || mux != want[0] || norm != want[1] {
			t.Errorf("convertPath(%q) = %q, %q, %v; want %q, %q", in, mux, norm, err, want[0], want[1])
		}
	}
	_, params, _, _ := convertPath("/:a/x/:b/*c")
	wantP := []param{{"a", 0, false}, {"b", 2, false}, {"c", 3, true}}
	if len(params) != len(wantP) {
		t.Fatalf("params %v", params)
	}
	for i := range wantP {
		if params[i] != wantP[i] {
			t.Errorf("param %d = %+v, want %+v", i, params[i], wantP[i])
		}
	}
}
