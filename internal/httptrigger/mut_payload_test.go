package httptrigger

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/wire"
)

// Tests for the mutation survivors of payload.go and the small helpers of
// exchange.go (docs/testing.md, "Mutation testing").

func TestQueryParams(t *testing.T) {
	r := httptest.NewRequest("GET", "/x", nil)
	if m := queryParams(r); m == nil || len(m) != 0 {
		t.Errorf("no query: %v", m)
	}
	r = httptest.NewRequest("GET", "/x?a=1&a=2&a=3&b=&c&d=%zz&e=x", nil)
	m := queryParams(r)
	if m["a"] != "3" || m["b"] != "" || m["e"] != "x" || len(m) != 4 {
		t.Errorf("query: %v", m) // c and b empty, d unparsable
	}
	if _, ok := m["c"]; !ok {
		t.Errorf("c missing: %v", m)
	}
}

func TestHeaderMap(t *testing.T) {
	r := httptest.NewRequest("POST", "http://example.test/x", nil)
	r.RemoteAddr = "192.0.2.1:5555"
	r.Header = http.Header{
		"X-One":           {"1"},
		"X-Two":           {"a", "b"},
		"Cookie":          {"a=1", "b=2"},
		"X-Forwarded-For": {"10.0.0.1", "10.0.0.2"},
	}
	r.TransferEncoding = []string{"gzip", "chunked"}
	m := headerMap(r)
	want := map[string]string{
		"host": "example.test", "transfer-encoding": "gzip, chunked", "x-one": "1", "x-two": "a, b",
		"cookie": "a=1; b=2", "x-forwarded-for": "10.0.0.1, 10.0.0.2, 192.0.2.1",
	}
	if len(m) != len(want) {
		t.Errorf("headers %v, want %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}

	// No host, no transfer coding, an address without a port, no XFF.
	r = httptest.NewRequest("GET", "/x", nil)
	r.Host = ""
	r.RemoteAddr = "pipe"
	r.Header = http.Header{"Cookie": {"only=1"}}
	m = headerMap(r)
	if len(m) != 1 || m["cookie"] != "only=1" {
		t.Errorf("bare request: %v", m)
	}
	// XFF from the client address alone.
	r.RemoteAddr = "[2001:db8::1]:80"
	if m = headerMap(r); m["x-forwarded-for"] != "2001:db8::1" {
		t.Errorf("client address only: %v", m)
	}
	// XFF from the header alone.
	r.RemoteAddr = "pipe"
	r.Header.Set("X-Forwarded-For", "10.1.1.1")
	if m = headerMap(r); m["x-forwarded-for"] != "10.1.1.1" {
		t.Errorf("header only: %v", m)
	}
}

func TestAppendPayloadShape(t *testing.T) {
	rt := &route{apiPath: "/a/:b", method: "GET"}
	b := appendPayload(nil, map[string]string{"q": "1", "r": "2"}, map[string]string{"b": "x"}, map[string]string{},
		rt, "HEAD", nil, nil, &wire.ChannelRef{ChannelID: "c", AccessKey: "k", Direction: "write"})
	if !jsontext.Value(b).IsValid() {
		t.Fatalf("invalid JSON: %s", b)
	}
	var v struct {
		Query   map[string]string `json:"query_params"`
		Params  map[string]string `json:"path_params"`
		Headers map[string]string `json:"headers"`
		Path    string            `json:"path"`
		Method  string            `json:"method"`
		Body    jsontext.Value    `json:"body"`
		Trigger map[string]string `json:"trigger"`
		ReqBody *wire.ChannelRef  `json:"request_body"`
		Resp    *wire.ChannelRef  `json:"response"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if v.Query["q"] != "1" || v.Query["r"] != "2" || v.Params["b"] != "x" || v.Path != "/a/:b" || v.Method != "HEAD" ||
		string(v.Body) != "null" || v.Trigger["method"] != "GET" || v.ReqBody != nil || v.Resp == nil || v.Resp.ChannelID != "c" {
		t.Errorf("payload %s", b)
	}
}

func TestMiddlewareResponse(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{}`, `{"body":null,"headers":["Content-Type: application/json"]}`},
		{`null`, `{"body":null,"headers":["Content-Type: application/json"]}`},
		{`{"status_code":401,"body":{"e":1}}`, `{"body":{"e":1},"status_code":401,"headers":["Content-Type: application/json"]}`},
		{`{"headers":{"content-type":"text/plain","X-A":"1","X-B":2}}`, `{"body":null,"headers":["X-A: 1","Content-Type: application/json"]}`},
		{`{"headers":"x"}`, `{"body":null,"headers":["Content-Type: application/json"]}`},
	} {
		if got := string(middlewareResponse(jsontext.Value(c.in))); got != c.want {
			t.Errorf("%s: %s, want %s", c.in, got, c.want)
		}
	}
}

func TestIsJSONContentType(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/json": true, "Application/JSON; charset=utf-8": true, "application/jsonx": true,
		"application/jso": false, "text/plain": false, "": false, "application/problem+json": false,
	} {
		if got := isJSONContentType(ct); got != want {
			t.Errorf("isJSONContentType(%q) = %v", ct, got)
		}
	}
	for v, want := range map[string]bool{"": true, " null ": true, "nul": false, "0": false, `"null"`: false} {
		if got := isNull(jsontext.Value(v)); got != want {
			t.Errorf("isNull(%q) = %v", v, got)
		}
	}
}
