package observe

import (
	"reflect"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
)

// decodeAny agrees with the reference decoder whenever it accepts.
func TestDecodeAnyAgrees(t *testing.T) {
	for _, s := range []string{
		`{"user":"ada","n":42,"f":-1.5e3,"tags":["a","b"],"o":{"x":null,"t":true,"f":false},"e":{},"a":[]}`,
		` [1, 2.5 ,"x"] `, `"plain"`, `0`, `-0.0`, `1E2`, `null`,
	} {
		got, ok := decodeAny([]byte(s))
		var want any
		if err := jsonv2.Unmarshal([]byte(s), &want); err != nil {
			t.Fatal(err)
		}
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %#v (%v), want %#v", s, got, ok, want)
		}
	}
	for _, s := range []string{
		`{"a":1,"a":2}`, `"esc\n"`, `01`, `1.`, `-`, `{"a" 1}`, `[1,]`, `tru`, `{"a":1}x`, "\"\xff\"", `1e`, `+1`,
	} {
		if _, ok := decodeAny([]byte(s)); ok {
			t.Errorf("%q accepted", s)
		}
	}
	// What it refuses still decodes through the fallback.
	if v, ok := DecodeValue([]byte(`{"s":"a\"b"}`)); !ok || v.(map[string]any)["s"] != `a"b` {
		t.Errorf("fallback: %v %v", v, ok)
	}
}

func BenchmarkDecodeValue(b *testing.B) {
	raw := []byte(`{"user":"ada","op":"echo","n":42,"tags":["a","b"]}`)
	for i := 0; i < b.N; i++ {
		DecodeValue(raw)
	}
}
