package engine

import (
	"strings"
	"testing"
)

// Mutation tests for logfns.go (issue 17); each was checked to fail with
// its mutant applied.

// engine::log::* writes a data attribute only for data that is given and
// not null, and cuts the message at exactly maxLogField bytes: 4096 bytes
// are written whole, 4097 cut. Kills logfns.go:52:20 (`len(in.Data) > 0` →
// `>= 0`: data="" written for a call without data) and :64:12 (`len(s) <=
// n` → `<`: a message of exactly 4096 bytes cut).
func TestLogMutDataAndBound(t *testing.T) {
	e, logs := startEngineLogged(t)
	w := dialRaw(t, e)
	exact := strings.Repeat("y", maxLogField)
	lineOf := func(marker string) string {
		t.Helper()
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "source=worker") && strings.Contains(l, marker) {
				return l
			}
		}
		t.Fatalf("no worker line holding %.20s…:\n%.2000s", marker, logs.String())
		return ""
	}
	for i, c := range []struct{ in, marker, has, hasNot string }{
		{`{"message":"plain1"}`, "msg=plain1 ", "", " data="},
		{`{"message":"plain2","data":null}`, "msg=plain2 ", "", " data="},
		{`{"message":"plain3","data":{"a":1}}`, "msg=plain3 ", ` data="{\"a\":1}"`, ""},
		{`{"message":"` + exact + `"}`, "msg=" + exact + " ", "", "…"},
		{`{"message":"` + exact + `z"}`, "msg=" + exact + "…", "", "z"},
	} {
		if res := w.call("l"+string(rune('0'+i)), "engine::log::info", c.in); res.Error != nil {
			t.Fatal(res.Error)
		}
		l := lineOf(c.marker)
		if c.has != "" && !strings.Contains(l, c.has) || c.hasNot != "" && strings.Contains(l, c.hasNot) {
			t.Errorf("%.40s: line %.200s… (%d bytes): want %q in it and %q not", c.in, l, len(l), c.has, c.hasNot)
		}
	}
}
