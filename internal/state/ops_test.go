package state

import (
	"encoding/json"
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
