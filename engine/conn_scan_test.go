package engine

import (
	"strings"
	"testing"
)

// TestScanString: the fields of an oversized frame's kept ends are found
// without parsing: a string value after the key and a colon (spaces
// allowed), at the key's first or last occurrence; anything else (no key,
// no colon, not a string, an escape, no closing quote, over 200 bytes) is
// "".
func TestScanString(t *testing.T) {
	const key = `"invocation_id"`
	v200, v201 := strings.Repeat("a", 200), strings.Repeat("a", 201)
	for _, c := range []struct {
		in   string
		last bool
		want string
	}{
		{`{"invocation_id":"abc","x":1}`, false, "abc"},
		{`{"invocation_id" :` + "\t\n" + ` "abc"}`, false, "abc"},
		{`{"invocation_id":"first"} ... {"invocation_id":"second"}`, false, "first"},
		{`{"invocation_id":"first"} ... {"invocation_id":"second"}`, true, "second"},
		{`{"function_id":"abc"}`, false, ""},
		{`{"invocation_id"`, false, ""},
		{`{"invocation_id" `, false, ""},
		{`{"invocation_id" "abc"}`, false, ""},
		{`{"invocation_id":`, false, ""},
		{`{"invocation_id": `, false, ""},
		{`{"invocation_id":42}`, false, ""},
		{`{"invocation_id":"a\"b"}`, false, ""},
		{`{"invocation_id":"unterminated`, false, ""},
		{`{"invocation_id":""}`, false, ""},
		{`{"invocation_id":"` + v200 + `"}`, false, v200},
		{`{"invocation_id":"` + v201 + `"}`, false, ""},
	} {
		if got := scanString([]byte(c.in), key, c.last); got != c.want {
			t.Errorf("scanString(%.60q, last %v) = %.40q, want %.40q", c.in, c.last, got, c.want)
		}
	}
}

// TestIsTelemetryFrame: the SDKs' binary telemetry frames start with a
// 4-byte tag; a frame that is only the tag counts, anything shorter or
// differently tagged does not.
func TestIsTelemetryFrame(t *testing.T) {
	for in, want := range map[string]bool{
		"OTLP": true, "OTLP{...}": true, "MTRC{}": true, "LOGS{}": true,
		"OTL": false, "": false, "otlp{}": false, "XOTLP": false, `{"type":"x"}`: false,
	} {
		if got := isTelemetryFrame([]byte(in)); got != want {
			t.Errorf("isTelemetryFrame(%q) = %v, want %v", in, got, want)
		}
	}
}
