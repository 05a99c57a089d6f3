package httptrigger

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

// Tests for the mutation survivors of response.go (docs/testing.md,
// "Mutation testing"): the boundaries of statuses, numbers and header
// characters, each checked on both sides.

func TestIntValue(t *testing.T) {
	for in, want := range map[string]int{
		"0": 0, "201": 201, "201.0": 201, " 7 ": 7, "1000000": 1000000, "1e6": 1000000,
		"9": 9, "-0": 0,
	} {
		if got, ok := intValue(jsontext.Value(in)); !ok || got != want {
			t.Errorf("intValue(%s) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"", " ", "-1", "1000001", "2.5", `"200"`, "true", "null", "/", ":", "x1", "-x"} {
		if got, ok := intValue(jsontext.Value(in)); ok {
			t.Errorf("intValue(%q) = %d, true; want not a status", in, got)
		}
	}
}

func TestValidHeader(t *testing.T) {
	for _, c := range []struct {
		k, v string
		ok   bool
	}{
		{"X-A", "plain", true},
		{"X-A", "", true},
		{"X-A", "tab\there", true},
		{"X-A", " ", true},
		{"X-A", "~", true},
		{"X-A", "\x80utf", true},
		{"X-A", "a\x1fb", false},
		{"X-A", "a\rb", false},
		{"X-A", "a\nb", false},
		{"X-A", "\x00", false},
		{"X-A", "a\x7f", false},
		{"Transfer-Encoding", "chunked", false},
		{"transfer-encoding", "chunked", false},
		{"X A", "v", false},
		{"", "v", false},
	} {
		if got := validHeader(c.k, c.v); got != c.ok {
			t.Errorf("validHeader(%q, %q) = %v, want %v", c.k, c.v, got, c.ok)
		}
	}
}

func TestStringValue(t *testing.T) {
	for in, want := range map[string]string{
		`""`:          "",
		`"a"`:         "a",
		`"a\"b"`:      `a"b`,
		`"\u00e9"`:    "é",
		`"x\\"`:       `x\`,
		`"no escape"`: "no escape",
	} {
		if got, ok := stringValue(jsontext.Value(in)); !ok || got != want {
			t.Errorf("stringValue(%s) = %q, %v; want %q", in, got, ok, want)
		}
	}
	// A malformed escape keeps what decoded before it; with nothing before
	// it the value is not a string.
	if got, ok := stringValue(jsontext.Value(`"a\q"`)); !ok || got != "a" {
		t.Errorf(`stringValue("a\q") = %q, %v; want "a", true`, got, ok)
	}
	for _, in := range []string{``, `"`, `5`, `null`, `{"a":1}`, `["a"]`, `"\q"`, `"\u12"`} {
		if got, ok := stringValue(jsontext.Value(in)); ok {
			t.Errorf("stringValue(%s) = %q, true; want not a string", in, got)
		}
	}
}

func TestMembers(t *testing.T) {
	var got []string
	ok := members([]byte(`{"a":1,"b":{"c":[2]},"a":"x"}`), func(n string, v jsontext.Value) {
		got = append(got, n+"="+string(v))
	})
	if !ok || strings.Join(got, " ") != `a=1 b={"c":[2]} a="x"` {
		t.Errorf("members = %v, %v", got, ok)
	}
	for _, in := range []string{``, `[]`, `5`, `{"a":1`, `{"a"}`, `{"a":1}x`, `{"a":1}{}`, `{1:2}`, `{"a":}`} {
		if members([]byte(in), func(string, jsontext.Value) {}) {
			t.Errorf("members(%s) = true; want malformed", in)
		}
	}
	if !members([]byte(` {} `), func(string, jsontext.Value) { t.Error("member of {}") }) {
		t.Error("members({}) = false")
	}
}

// bufferedResult answers v as a buffered result and returns what the
// client got.
func bufferedResult(v string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	x := &exchange{w: recorder{ResponseWriter: w}}
	x.buffered(jsontext.Value(v))
	return w
}

func TestBufferedStatusBounds(t *testing.T) {
	for code, want := range map[string]int{
		"199": 200, "200": 200, "201": 201, "599": 599, "600": 600, "999": 999, "1000": 200, "-5": 200,
	} {
		if w := bufferedResult(`{"status_code":` + code + `}`); w.Code != want {
			t.Errorf("status_code %s: %d, want %d", code, w.Code, want)
		}
	}
}

func TestBufferedBodies(t *testing.T) {
	for _, c := range []struct{ in, ct, body string }{
		{``, "application/json", "{}"},
		{`null`, "application/json", "{}"},
		{`"text"`, "application/json", "{}"},
		{`{}`, "application/json", "{}"},
		{`{"body":null}`, "application/json", "null"},
		{`{"body":{"a":1}}`, "application/json", `{"a":1}`},
		{`{"body":"hi"}`, "application/json", `"hi"`},
		{`{"body":"hi","headers":{"Content-Type":"text/plain"}}`, "text/plain", "hi"},
		{`{"body":"a\"b","headers":["content-type: text/plain"]}`, "text/plain", `a"b`},
		{`{"body":null,"headers":{"Content-Type":"text/plain"}}`, "text/plain", ""},
		{`{"body":[1],"headers":{"Content-Type":"text/csv"}}`, "text/csv", "[1]"},
		{`{"headers":{"Content-Type":"text/plain"}}`, "text/plain", "{}"},
	} {
		w := bufferedResult(c.in)
		if w.Header().Get("Content-Type") != c.ct || w.Body.String() != c.body {
			t.Errorf("%s: %q %q; want %q %q", c.in, w.Header().Get("Content-Type"), w.Body.String(), c.ct, c.body)
		}
		if cl := w.Header().Get("Content-Length"); cl != strconv.Itoa(len(c.body)) {
			t.Errorf("%s: Content-Length %s, body %d bytes", c.in, cl, len(c.body))
		}
	}
}

func TestApplyResultHeaders(t *testing.T) {
	for _, c := range []struct {
		raw  string
		want http.Header
		ct   bool
	}{
		{``, http.Header{}, false},
		{`  `, http.Header{}, false},
		{`null`, http.Header{}, false},
		{`{"X-A":" v ","Content-Type":"text/x","Bad Name":"v","X-B":5,"X-C":"a\nb"}`,
			http.Header{"X-A": {"v"}, "Content-Type": {"text/x"}}, true},
		{`["Set-Cookie: a=1","Set-Cookie: b=2",5,"nocolon","X-D:  d "]`,
			http.Header{"Set-Cookie": {"a=1", "b=2"}, "X-D": {"d"}}, false},
		{`["content-type:text/y"]`, http.Header{"Content-Type": {"text/y"}}, true},
		{`[1,`, http.Header{}, false},
	} {
		h := http.Header{}
		ct := applyResultHeaders(h, jsontext.Value(c.raw))
		if ct != c.ct || !sameHeader(h, c.want) {
			t.Errorf("%s: %v %v; want %v %v", c.raw, h, ct, c.want, c.ct)
		}
	}
}

func sameHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, vs := range b {
		if strings.Join(a[k], "\x00") != strings.Join(vs, "\x00") {
			return false
		}
	}
	return true
}

// control: set_status within 200–599 only; set_headers strings and
// arrays; the event-stream test on the content type's prefix.
func TestControlMessages(t *testing.T) {
	x := &exchange{}
	for code, want := range map[string]int{"199": 0, "200": 200, "599": 599, "600": 0, "204.0": 204, `"201"`: 0} {
		st := streamState{}
		x.control(&st, []byte(`{"type":"set_status","status_code":`+code+`}`))
		if st.status != want || st.controls != (want != 0) {
			t.Errorf("set_status %s: status %d controls %v; want %d", code, st.status, st.controls, want)
		}
	}
	for _, c := range []struct {
		msg  string
		want http.Header
		sse  bool
	}{
		{`{"type":"set_headers","headers":{"X-A":"1","x-b":["2","3"],"X-C":5,"X-D":[],"X-E":"\ud800"}}`,
			http.Header{"X-A": {"1"}, "X-B": {"2", "3"}, "X-E": {"\ufffd"}}, false},
		{`{"type":"set_headers","headers":{"Content-Type":" Text/Event-Stream; charset=utf-8"}}`,
			http.Header{"Content-Type": {" Text/Event-Stream; charset=utf-8"}}, true},
		{`{"type":"set_headers","headers":{"Content-Type":"text/event-strea"}}`,
			http.Header{"Content-Type": {"text/event-strea"}}, false},
		{`{"type":"set_headers","headers":{"Content-Type":"text/event-stream"}}`,
			http.Header{"Content-Type": {"text/event-stream"}}, true},
		{`{"type":"set_headers","headers":{"X-F":["a",1]}}`, nil, false},
		{`{"type":"other","headers":{"X-A":"1"}}`, nil, false},
		{`not json`, nil, false},
	} {
		st := streamState{}
		sse := x.control(&st, []byte(c.msg))
		if sse != c.sse || !sameHeader(st.header, c.want) || st.controls != (len(c.want) > 0) {
			t.Errorf("%s: header %v sse %v controls %v; want %v %v", c.msg, st.header, sse, st.controls, c.want, c.sse)
		}
	}
}

// writeError: a 5xx answer carries an error_id, a 4xx one does not.
func TestWriteErrorID(t *testing.T) {
	for status, withID := range map[int]bool{499: false, 500: true, 503: true, 404: false} {
		w := httptest.NewRecorder()
		writeError(w, status, "C", "m")
		if got := strings.Contains(w.Body.String(), `"error_id":"`); got != withID || w.Code != status {
			t.Errorf("%d: %d %s", status, w.Code, w.Body.String())
		}
		if w.Header().Get("Content-Length") != strconv.Itoa(w.Body.Len()) {
			t.Errorf("%d: Content-Length %s, body %d", status, w.Header().Get("Content-Length"), w.Body.Len())
		}
	}
}
