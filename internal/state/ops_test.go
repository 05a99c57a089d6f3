package state

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestApplyOps(t *testing.T) {
	for _, c := range []struct {
		name, old, ops, want string
		errCodes             []string
	}{
		{"increment missing key starts at by", "", `[{"type":"increment","path":"n","by":2}]`, `{"n":2}`, nil},
		{"increment root of missing value", "", `[{"type":"increment","path":"","by":5}]`, `5`, nil},
		{"decrement existing", `{"n":10}`, `[{"type":"decrement","path":"n","by":3}]`, `{"n":7}`, nil},
		{"increment keeps int64 exact", `{"n":9007199254740993}`, `[{"type":"increment","path":"n","by":1}]`, `{"n":9007199254740994}`, nil},
		{"increment float", `{"n":1.5}`, `[{"type":"increment","path":"n","by":1}]`, `{"n":2.5}`, nil},
		{"increment not a number", `{"n":"x"}`, `[{"type":"increment","path":"n","by":1}]`, `{"n":"x"}`, []string{"increment.not_number"}},
		{"increment overflow", `{"n":9223372036854775807}`, `[{"type":"increment","path":"n","by":1}]`, `{"n":9223372036854775807}`, []string{"increment.not_number"}},
		{"set field and root", `{"a":1}`, `[{"type":"set","path":"b","value":{"x":1}}]`, `{"a":1,"b":{"x":1}}`, nil},
		{"set root", `{"a":1}`, `[{"type":"set","path":"","value":[1]}]`, `[1]`, nil},
		{"set on non-object", `3`, `[{"type":"set","path":"a","value":1}]`, `3`, []string{"set.target_not_object"}},
		{"dots are literal", `{}`, `[{"type":"set","path":"a.b","value":1}]`, `{"a.b":1}`, nil},
		{"merge root", `{"a":1,"b":2}`, `[{"type":"merge","value":{"b":3,"c":4}}]`, `{"a":1,"b":3,"c":4}`, nil},
		{"merge nested creates", `{"a":1}`, `[{"type":"merge","path":["x","y"],"value":{"z":1}}]`, `{"a":1,"x":{"y":{"z":1}}}`, nil},
		{"merge non-object value", `{}`, `[{"type":"merge","value":[1]}]`, `{}`, []string{"merge.value.not_an_object"}},
		{"merge proto key", `{}`, `[{"type":"merge","value":{"__proto__":{}}}]`, `{}`, []string{"merge.value.proto_polluted"}},
		{"merge proto path", `{}`, `[{"type":"merge","path":["constructor"],"value":{}}]`, `{}`, []string{"merge.path.proto_polluted"}},
		{"append array", `{"l":[1]}`, `[{"type":"append","path":"l","value":2}]`, `{"l":[1,2]}`, nil},
		{"append string", `{"s":"ab"}`, `[{"type":"append","path":"s","value":"cd"}]`, `{"s":"abcd"}`, nil},
		{"append missing string field", `{}`, `[{"type":"append","path":"s","value":"x"}]`, `{"s":"x"}`, nil},
		{"append missing nested is array", `{}`, `[{"type":"append","path":["a","s"],"value":"x"}]`, `{"a":{"s":["x"]}}`, nil},
		{"append mismatch", `{"n":1}`, `[{"type":"append","path":"n","value":2}]`, `{"n":1}`, []string{"append.type_mismatch"}},
		{"append root of missing", "", `[{"type":"append","value":1}]`, `[1]`, nil},
		{"remove", `{"a":1,"b":2}`, `[{"type":"remove","path":"a"}]`, `{"b":2}`, nil},
		{"empty segment", `{}`, `[{"type":"merge","path":["a",""],"value":{}}]`, `{}`, []string{"merge.path.empty_segment"}},
		{"later ops apply after a failed one", `{"n":"x"}`, `[{"type":"increment","path":"n","by":1},{"type":"set","path":"m","value":1}]`, `{"m":1,"n":"x"}`, []string{"increment.not_number"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var ops []Op
			if err := json.Unmarshal([]byte(c.ops), &ops); err != nil {
				t.Fatal(err)
			}
			got, errs, err := ApplyOps([]byte(c.old), c.old != "", ops)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Errorf("got %s, want %s", got, c.want)
			}
			if len(errs) != len(c.errCodes) {
				t.Fatalf("errors %+v, want codes %v", errs, c.errCodes)
			}
			for i, e := range errs {
				if e.Code != c.errCodes[i] {
					t.Errorf("error %d: %s, want %s", i, e.Code, c.errCodes[i])
				}
			}
		})
	}
}

// TestApplyOpsRejects: each invalid operation is skipped with its code and
// a message naming what was found (the others still apply), and the
// bounds on paths and merged values hold at their limits.
func TestApplyOpsRejects(t *testing.T) {
	deep := func(n int) string { // {"a":{"a":...1...}} nested n deep
		return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n)
	}
	segs := func(n int) string {
		return `["` + strings.Repeat(`s","`, n-1) + `s"]`
	}
	keys := func(n int) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `"k%04d":1`, i) // sorted as encoding/json writes them
		}
		b.WriteString("}")
		return b.String()
	}
	for _, c := range []struct {
		name, old, ops, want string
		code, msg            string // the one error's code and a part of its message; "" for none
	}{
		{name: "path a number", old: `{}`, ops: `[{"type":"set","path":3,"value":1}]`, want: `{}`,
			code: "set.path.invalid", msg: "string or a list"},
		{name: "list path only for merge and append", old: `{}`, ops: `[{"type":"set","path":["a"],"value":1}]`, want: `{}`,
			code: "set.path.invalid"},
		{name: "list of non-strings", old: `{}`, ops: `[{"type":"merge","path":[1],"value":{}}]`, want: `{}`,
			code: "merge.path.invalid"},
		{name: "null path is the root", old: `{"a":1}`, ops: `[{"type":"merge","path":null,"value":{"b":2}}]`, want: `{"a":1,"b":2}`},
		{name: "path at the depth limit", old: `{}`, ops: `[{"type":"merge","path":` + segs(32) + `,"value":{}}]`,
			want: `{"s":` + strings.Repeat(`{"s":`, 31) + "{}" + strings.Repeat("}", 32)},
		{name: "path past the depth limit", old: `{}`, ops: `[{"type":"merge","path":` + segs(33) + `,"value":{}}]`, want: `{}`,
			code: "merge.path.too_deep", msg: "33 exceeds maximum of 32"},
		{name: "segment at the length limit", old: `{}`, ops: `[{"type":"set","path":"` + strings.Repeat("x", 256) + `","value":1}]`,
			want: `{"` + strings.Repeat("x", 256) + `":1}`},
		{name: "segment past the length limit", old: `{}`, ops: `[{"type":"set","path":"` + strings.Repeat("x", 257) + `","value":1}]`, want: `{}`,
			code: "set.path.segment_too_long", msg: "257 bytes"},
		{name: "proto key as a set path", old: `{}`, ops: `[{"type":"set","path":"prototype","value":1}]`, want: `{}`,
			code: "set.path.proto_polluted", msg: "'prototype'"},
		{name: "merge at the key limit", old: `{}`, ops: `[{"type":"merge","value":` + keys(1024) + `}]`, want: keys(1024)},
		{name: "merge past the key limit", old: `{}`, ops: `[{"type":"merge","value":` + keys(1025) + `}]`, want: `{}`,
			code: "merge.value.too_many_keys", msg: "1025"},
		{name: "merge at the depth limit", old: `{}`, ops: `[{"type":"merge","value":` + deep(16) + `}]`, want: deep(16)},
		{name: "merge past the depth limit", old: `{}`, ops: `[{"type":"merge","value":` + deep(17) + `}]`, want: `{}`,
			code: "merge.value.too_deep", msg: "depth 17 exceeds maximum of 16"},
		{name: "merge depth counts arrays", old: `{}`, ops: `[{"type":"merge","value":{"a":` + strings.Repeat("[", 16) + strings.Repeat("]", 16) + `}}]`, want: `{}`,
			code: "merge.value.too_deep"},
		{name: "merge into a non-object root is a no-op", old: `[1]`, ops: `[{"type":"merge","value":{"a":1}}]`, want: `[1]`},
		{name: "merge path replaces a non-object on the way", old: `{"x":5}`, ops: `[{"type":"merge","path":["x","y"],"value":{"z":1}}]`, want: `{"x":{"y":{"z":1}}}`},
		{name: "merge path over a non-object root", old: `"s"`, ops: `[{"type":"merge","path":["x"],"value":{"z":1}}]`, want: `{"x":{"z":1}}`},
		{name: "increment a non-object", old: `[1]`, ops: `[{"type":"increment","path":"n","by":1}]`, want: `[1]`,
			code: "increment.target_not_object", msg: "target is array"},
		{name: "increment the root that is not a number", old: `{"a":1}`, ops: `[{"type":"increment","by":1}]`, want: `{"a":1}`,
			code: "increment.not_number", msg: "got object"},
		{name: "increment the root", old: `41`, ops: `[{"type":"increment","by":1}]`, want: `42`},
		{name: "increment without by adds nothing", old: `{"n":3}`, ops: `[{"type":"increment","path":"n"}]`, want: `{"n":3}`},
		{name: "decrement missing key", old: `{}`, ops: `[{"type":"decrement","path":"n","by":4}]`, want: `{"n":-4}`},
		{name: "decrement by the smallest int64", old: `{"n":0}`, ops: `[{"type":"decrement","path":"n","by":-9223372036854775808}]`, want: `{"n":0}`,
			code: "decrement.not_number", msg: "out of range"},
		{name: "decrement underflow", old: `{"n":-9223372036854775808}`, ops: `[{"type":"decrement","path":"n","by":1}]`, want: `{"n":-9223372036854775808}`,
			code: "decrement.not_number"},
		{name: "increment a boolean", old: `{"b":true}`, ops: `[{"type":"increment","path":"b","by":1}]`, want: `{"b":true}`,
			code: "increment.not_number", msg: "got boolean"},
		{name: "increment null", old: `{"b":null}`, ops: `[{"type":"increment","path":"b","by":1}]`, want: `{"b":null}`,
			code: "increment.not_number", msg: "got null"},
		{name: "append string to a string root", old: `"ab"`, ops: `[{"type":"append","value":"c"}]`, want: `"abc"`},
		{name: "append a number to a string", old: `{"s":"ab"}`, ops: `[{"type":"append","path":"s","value":1}]`, want: `{"s":"ab"}`,
			code: "append.type_mismatch", msg: "got number"},
		{name: "append to an object", old: `{"o":{}}`, ops: `[{"type":"append","path":"o","value":1}]`, want: `{"o":{}}`,
			code: "append.type_mismatch", msg: "target is object"},
		{name: "append to a root number", old: `7`, ops: `[{"type":"append","value":1}]`, want: `7`,
			code: "append.type_mismatch", msg: "path 'root'"},
		{name: "append to a field of a non-object", old: `"s"`, ops: `[{"type":"append","path":"a","value":1}]`, want: `"s"`,
			code: "append.target_not_object", msg: "target is string"},
		{name: "append to null field", old: `{"a":null}`, ops: `[{"type":"append","path":"a","value":1}]`, want: `{"a":[1]}`},
		{name: "append string to null field", old: `{"a":null}`, ops: `[{"type":"append","path":"a","value":"x"}]`, want: `{"a":"x"}`},
		{name: "append into an existing nested array", old: `{"a":{"l":[1]}}`, ops: `[{"type":"append","path":["a","l"],"value":2}]`, want: `{"a":{"l":[1,2]}}`},
		{name: "remove the root", old: `{"a":1}`, ops: `[{"type":"remove"}]`, want: `null`},
		{name: "remove from a non-object", old: `[1]`, ops: `[{"type":"remove","path":"a"}]`, want: `[1]`,
			code: "remove.target_not_object", msg: "'a'"},
		{name: "unknown type", old: `{}`, ops: `[{"type":"multiply","path":"a"}]`, want: `{}`,
			code: "op.unknown_type", msg: `"multiply"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var ops []Op
			if err := json.Unmarshal([]byte(c.ops), &ops); err != nil {
				t.Fatal(err)
			}
			got, errs, err := ApplyOps([]byte(c.old), c.old != "", ops)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Errorf("got %.200s, want %.200s", got, c.want)
			}
			switch {
			case c.code == "" && len(errs) > 0:
				t.Errorf("errors %+v, want none", errs)
			case c.code != "" && (len(errs) != 1 || errs[0].Code != c.code || errs[0].OpIndex != 0 || errs[0].DocURL == ""):
				t.Errorf("errors %+v, want one %s", errs, c.code)
			case c.code != "" && !strings.Contains(errs[0].Message, c.msg):
				t.Errorf("message %q, want it to contain %q", errs[0].Message, c.msg)
			}
		})
	}
}

// TestApplyOpsLabelsListPaths: an error at a list path names the whole
// path, not only its first segment.
func TestApplyOpsLabelsListPaths(t *testing.T) {
	if got := label([]string{"a", "b"}); got != "[a, b]" {
		t.Errorf("label = %q", got)
	}
	if got := label(nil); got != "root" {
		t.Errorf("label of the root = %q", got)
	}
}

// TestApplyOpsBadJSON: a stored value or an operation value that is not
// JSON fails the whole update (an error, not an OpError), naming which.
func TestApplyOpsBadJSON(t *testing.T) {
	if _, _, err := ApplyOps([]byte(`{"a":`), true, nil); err == nil || !strings.Contains(err.Error(), "stored value is not JSON") {
		t.Errorf("stored value not JSON: %v", err)
	}
	ops := []Op{{Type: "set", Path: json.RawMessage(`"a"`), Value: json.RawMessage(`1`)}, {Type: "set", Path: json.RawMessage(`"b"`), Value: json.RawMessage(`{nope`)}}
	if _, _, err := ApplyOps([]byte(`{}`), true, ops); err == nil || !strings.Contains(err.Error(), "ops[1].value") {
		t.Errorf("op value not JSON: %v", err)
	}
}
