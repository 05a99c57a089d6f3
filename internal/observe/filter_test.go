package observe

import (
	"errors"
	"strings"
	"testing"
)

func doc(t *testing.T, roots map[int]string) *Doc {
	t.Helper()
	d := &Doc{}
	for r, raw := range roots {
		d.Set(r, []byte(raw))
	}
	return d
}

func TestFilterMatches(t *testing.T) {
	d := doc(t, map[int]string{
		RootInput:  `{"amount":750,"tags":["a","vip"],"items":[{"sku":"x","qty":2}],"a.b":1,"nil":null}`,
		RootOutput: `{"charged":750}`,
		RootCaller: `{"worker_name":"checkout-1","function_id":"shop::checkout"}`,
	})
	cases := []struct {
		filter string
		want   bool
	}{
		{`{}`, true},
		{`{"input.amount":{"$gte":500}}`, true},
		{`{"input.amount":{"$gt":750}}`, false},
		{`{"input.amount":{"$lt":751,"$gte":750}}`, true},
		{`{"input.amount":{"$eq":750.0}}`, true},
		{`{"input.amount":{"$ne":750}}`, false},
		{`{"input.missing":{"$ne":1}}`, true},
		{`{"input.missing":{"$exists":false}}`, true},
		{`{"input.nil":{"$exists":true}}`, true},
		{`{"input.nil":{"$eq":null}}`, true},
		{`{"output.charged":{"$exists":true}}`, true},
		{`{"error.code":{"$exists":true}}`, false},
		{`{"caller.worker_name":{"$prefix":"checkout-"}}`, true},
		{`{"caller.worker_name":{"$in":["a","checkout-1"]}}`, true},
		{`{"caller.worker_name":{"$nin":["a","checkout-1"]}}`, false},
		{`{"input.tags.1":{"$eq":"vip"}}`, true},
		{`{"input.tags.01":{"$eq":"vip"}}`, false},
		{`{"input.tags":{"$any":{"$eq":"vip"}}}`, true},
		{`{"input.items":{"$any":{"@.qty":{"$gte":2},"@.sku":{"$eq":"x"}}}}`, true},
		{`{"input.items":{"$any":{"@.qty":{"$gte":3}}}}`, false},
		{`{"input.a\\.b":{"$eq":1}}`, true},
		{`{"$or":[{"input.amount":{"$lt":0}},{"caller.function_id":{"$eq":"shop::checkout"}}]}`, true},
		{`{"$not":{"input.amount":{"$gte":500}}}`, false},
		{`{"$and":[{"input.amount":{"$gte":500}},{"input.amount":{"$lte":500}}]}`, false},
		{`{"input.amount":{"$gt":"a"}}`, false},
		{`{"metadata.tenant":{"$exists":false}}`, true},
		{`{"input.amount":{"$lte":750},"caller.function_id":{"$eq":"shop::checkout"}}`, true},
		{`{"input.amount":{"$lt":750}}`, false},
		{`{"input.user":{"$eq":750}}`, false},
		{`{"caller.worker_name":{"$eq":"checkout-1"}}`, true},
		{`{"caller.worker_name":{"$prefix":"x"}}`, false},
	}
	for _, c := range cases {
		f, err := Compile([]byte(c.filter))
		if err != nil {
			t.Fatalf("%s: %v", c.filter, err)
		}
		if got := f.Matches(d); got != c.want {
			t.Errorf("%s: got %v, want %v", c.filter, got, c.want)
		}
		// The closure-free form of simple filters answers as the general one.
		if f.simple != nil && f.pred(d, nil) != c.want {
			t.Errorf("%s: the general evaluator disagrees", c.filter)
		}
	}
}

func TestFilterRefusesInvalid(t *testing.T) {
	for _, bad := range []string{
		`[]`, `{"input.op":"insert"}`, `{"input.op":{}}`, `{"nope.x":{"$eq":1}}`, `{"input..x":{"$eq":1}}`,
		`{"$eq":1}`, `{"$xor":[]}`, `{"$or":[]}`, `{"$not":1}`, `{"input.a":{"$in":1}}`, `{"input.a":{"$gt":true}}`,
		`{"input.a":{"$exists":1}}`, `{"input.a":{"$prefix":1}}`, `{"input.a":{"$bogus":1}}`, `{"@.a":{"$eq":1}}`,
		`{"input.a":{"$any":{"input.b":{"$eq":1}}}}`, `{"input.a":{"$eq":9007199254740993}}`, `{"input.a\\x":{"$eq":1}}`,
		`{"input.a":{"$and":[]}}`, `not json`,
		`{"input.a":{"$eq":"` + strings.Repeat("x", MaxFilterBytes) + `"}}`,
		`{"input.` + strings.Repeat("a.", MaxPathSegments) + `a":{"$eq":1}}`,
	} {
		_, err := Compile([]byte(bad))
		var fe *FilterError
		if !errors.As(err, &fe) || fe.Code() != "INVALID_FILTER" {
			t.Errorf("%.60s: err %v, want INVALID_FILTER", bad, err)
		}
	}
	// 65 operators exceed the node budget.
	var b strings.Builder
	b.WriteString(`{"$or":[`)
	for i := 0; i < 64; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"input.a":{"$eq":1}}`)
	}
	b.WriteString(`]}`)
	if _, err := Compile([]byte(b.String())); err == nil {
		t.Error("65 nodes accepted")
	}
	// Nine nested levels exceed the depth limit.
	deep := `{"input.a":{"$eq":1}}`
	for i := 0; i < 8; i++ {
		deep = `{"$not":` + deep + `}`
	}
	if _, err := Compile([]byte(deep)); err == nil {
		t.Error("depth 9 accepted")
	}
}

// The normal form is what the 0.25 SDKs expect in functionregistered and
// observeradded: clauses sorted, flattened into one $and, deduplicated.
func TestFilterNormalForm(t *testing.T) {
	for src, want := range map[string]string{
		`{}`:                     `{}`,
		`null`:                   `{}`,
		`{"input.n":{"$gte":2}}`: `{"$and":[{"input.n":{"$gte":2}}]}`,
		`{"b.x":{"$eq":1}}`:      ``,
		`{"output.z":{"$lt":3,"$gt":1},"input.a":{"$eq":"x"},"$and":[{"input.a":{"$eq":"x"}}]}`: `{"$and":[{"input.a":{"$eq":"x"}},{"output.z":{"$gt":1,"$lt":3}}]}`,
		`{"$or":[{"input.b":{"$eq":1}},{"input.a":{"$eq":2}}]}`:                                 `{"$and":[{"$or":[{"$and":[{"input.b":{"$eq":1}}]},{"$and":[{"input.a":{"$eq":2}}]}]}]}`,
	} {
		f, err := Compile([]byte(src))
		if want == "" {
			if err == nil {
				t.Errorf("%s accepted", src)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if string(f.Source) != want {
			t.Errorf("%s: normal form %s, want %s", src, f.Source, want)
		}
		// The normal form compiles to itself.
		g, err := Compile(f.Source)
		if err != nil || string(g.Source) != want {
			t.Errorf("%s: normal form not stable: %s %v", src, g.Source, err)
		}
	}
	f, _ := Compile([]byte(`{"input.a":{"$eq":1},"caller.x":{"$exists":true}}`))
	if f.RootMask() != 1<<RootInput|1<<RootCaller {
		t.Errorf("roots %b", f.RootMask())
	}
}

func TestCheckArgs(t *testing.T) {
	schema := []byte(`{"type":"object","additionalProperties":false,"required":["expression"],"properties":{"expression":{"type":"string"},"n":{"type":"integer"}}}`)
	for args, ok := range map[string]bool{
		`{"expression":"*/5"}`:         true,
		`{"expression":"*/5","n":3}`:   true,
		`{}`:                           false,
		`{"expression":1}`:             false,
		`{"expression":"x","n":1.5}`:   false,
		`{"expression":"x","other":1}`: false,
		``:                             false,
	} {
		err := CheckArgs(schema, []byte(args))
		if (err == nil) != ok {
			t.Errorf("%s: err %v, want ok=%v", args, err, ok)
		}
	}
	if err := CheckArgs(nil, []byte(`{"any":1}`)); err != nil {
		t.Errorf("no schema: %v", err)
	}
}

// A filter mixing closure-free clauses with others checks every clause. On
// 501b74f the closure-free ones sorted first were kept as the whole test:
// {"caller.worker_name": {"$eq": "c"}, "output.ok": {"$eq": true}} accepted
// output.ok false.
func TestFilterMixedSimpleClauses(t *testing.T) {
	for _, c := range []struct {
		filter string
		out    string
		want   bool
	}{
		{`{"caller.worker_name":{"$eq":"c"},"output.ok":{"$eq":true}}`, `{"ok":false}`, false},
		{`{"caller.worker_name":{"$eq":"c"},"output.ok":{"$eq":true}}`, `{"ok":true}`, true},
		{`{"caller.worker_name":{"$eq":"c"},"output.ok":{"$in":[1,2]}}`, `{"ok":3}`, false},
		{`{"caller.worker_name":{"$eq":"c"},"output.ok":{"$ne":null}}`, `{"ok":null}`, false},
		{`{"caller.worker_name":{"$eq":"c"},"output.n":{"$gte":1}}`, `{"n":0}`, false},
		{`{"caller.worker_name":{"$eq":"c"},"output.n":{"$gte":1}}`, `{"n":1}`, true},
	} {
		f, err := Compile([]byte(c.filter))
		if err != nil {
			t.Fatal(err)
		}
		d := doc(t, map[int]string{RootCaller: `{"worker_name":"c"}`, RootOutput: c.out})
		if got := f.Matches(d); got != c.want {
			t.Errorf("%s on output %s: %v, want %v", c.filter, c.out, got, c.want)
		}
	}
}
