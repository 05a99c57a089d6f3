package observe

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
)

// reference is what a Set must answer: each filter's own Matches on the
// decoded document.
func reference(fs []*Filter, src *Source) []int32 {
	d := &Doc{}
	for r := 0; r < NumRoots; r++ {
		d.Set(r, src.Raw[r])
	}
	var out []int32
	for i, f := range fs {
		if f.Matches(d) {
			out = append(out, int32(i))
		}
	}
	return out
}

func mustCompile(t testing.TB, src string) *Filter {
	t.Helper()
	f, err := Compile([]byte(src))
	if err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	return f
}

func TestSetMatch(t *testing.T) {
	filters := []string{
		`{"input.n":{"$gt":10}}`,                                       // 0
		`{"input.n":{"$gt":50}}`,                                       // 1
		`{"input.n":{"$gte":42}}`,                                      // 2
		`{"input.n":{"$lt":42}}`,                                       // 3
		`{"input.n":{"$lte":42}}`,                                      // 4
		`{"input.n":{"$eq":42}}`,                                       // 5
		`{}`,                                                           // 6
		`{"input.user":{"$eq":"ada"}}`,                                 // 7
		`{"input.user":{"$prefix":"ad"}}`,                              // 8
		`{"input.tags.1":{"$eq":"b"}}`,                                 // 9
		`{"input.tags":{"$any":{"$eq":"a"}}}`,                          // 10: general evaluator
		`{"input.n":{"$gt":1},"caller.worker_name":{"$eq":"w"}}`,       // 11
		`{"input.missing":{"$exists":false}}`,                          // 12
		`{"input":{"$exists":true}}`,                                   // 13
		`{"output.ok":{"$eq":true}}`,                                   // 14: general ($eq true)
		`{"input.n":{"$in":[42,43]}}`,                                  // 15: general
		`{"$or":[{"input.n":{"$lt":0}},{"input.user":{"$eq":"ada"}}]}`, // 16: general
		`{"input.n":{"$gt":42}}`,                                       // 17
	}
	var fs []*Filter
	for _, s := range filters {
		fs = append(fs, mustCompile(t, s))
	}
	set := NewSet(fs)
	src := &Source{}
	src.Raw[RootInput] = []byte(`{"user":"ada","op":"echo","n":42,"tags":["a","b"]}`)
	src.Raw[RootCaller] = []byte(`{"worker_id":"x","worker_name":"w"}`)
	got := set.Match(src, nil)
	want := []int32{0, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16}
	if !slices.Equal(got, want) {
		t.Fatalf("matched %v, want %v", got, want)
	}
	if ref := reference(fs, src); !slices.Equal(got, ref) {
		t.Fatalf("matched %v, the filters one by one %v", got, ref)
	}
	// A root absent: only $exists:false, {} and filters not reading it.
	got = set.Match(&Source{}, nil)
	if want := []int32{6, 12}; !slices.Equal(got, want) {
		t.Fatalf("no roots: matched %v, want %v", got, want)
	}
}

// The benchmark's shape: 100 observers none of which matches. Matching is
// free of allocation then.
func TestSetNoMatchAllocatesNothing(t *testing.T) {
	var fs []*Filter
	for i := 0; i < 100; i++ {
		fs = append(fs, mustCompile(t, fmt.Sprintf(`{"input.n":{"$gt":%d}}`, 1000+i)))
	}
	fs = append(fs, mustCompile(t, `{"input.user":{"$eq":"bob"},"input.n":{"$lt":0}}`))
	set := NewSet(fs)
	src := &Source{}
	src.Raw[RootInput] = []byte(`{"user":"ada","op":"echo","n":42,"tags":["a","b"]}`)
	allocs := testing.AllocsPerRun(100, func() {
		if m := set.Match(src, nil); m != nil {
			t.Fatalf("matched %v", m)
		}
	})
	if allocs != 0 && !raceEnabled {
		t.Fatalf("%v allocations per match", allocs)
	}
	src.Raw[RootInput] = []byte(`{"n":1050.5}`)
	if m := set.Match(src, nil); len(m) != 51 || m[0] != 0 || m[50] != 50 {
		t.Fatalf("n=1050.5 matched %v, want observers 0..50", m)
	}
}

// Documents the scan hands to the decoder must give the decoder's answer.
func TestSetAwkwardDocuments(t *testing.T) {
	var fs []*Filter
	for _, s := range []string{
		`{"input.a":{"$eq":"x"}}`, `{"input.a":{"$exists":true}}`, `{"input.a":{"$gt":1}}`,
		`{"input.b.c":{"$eq":1}}`, `{"input.b.0":{"$exists":true}}`, `{"input":{"$exists":true}}`,
		`{"input.é":{"$exists":true}}`, `{"input.a":{"$prefix":"é"}}`,
	} {
		fs = append(fs, mustCompile(t, s))
	}
	set := NewSet(fs)
	for _, doc := range []string{
		`{"a":"x"}`, `{"\u0061":"x"}`, `{"a":"\u0078"}`, `{"a":"x","a":"y"}`, `{"a":1,"a":2}`,
		`{"b":{"c":1},"b":{"c":2}}`, `{"b":[0]}`, `{"b":{"0":1}}`, `{"a":1e400}`, `{"z":1e400}`,
		`{"a":1e2}`, `{"a":"é"}`, `{"a":"\xff"}`, `{"\xff":1}`, `{"é":1}`, `{"a":"x"`, `{"a":"x"} x`,
		` {"a" : "x" } `, `{"a":01}`, `{"a":-}`, `{"a":"\x01"}`, `{"a":"\q"}`, `{"a":"\u12"}`,
		`[` + strings.Repeat(`[`, 200) + strings.Repeat(`]`, 200) + `]`, `{"z":` + strings.Repeat(`[`, 130) + strings.Repeat(`]`, 130) + `}`,
		`null`, `"a"`, `{"a":2.5e0}`, `{"a":` + strings.Repeat("9", 400) + `}`, `{"z":` + strings.Repeat("9", 400) + `}`,
		`{"a":tru}`, `{"a":nul}`, `{"a":[1,]}`, `{"a":{"x":1,}}`, `{}`, `{"b":{"c":1.0}}`, `{"b":{"c":"1"}}`,
		``,
	} {
		src := &Source{}
		if doc != "" {
			src.Raw[RootInput] = []byte(doc)
		}
		if got, want := set.Match(src, nil), reference(fs, src); !slices.Equal(got, want) {
			t.Errorf("%q: set %v, filters %v", doc, got, want)
		}
	}
}

// --- differential: random filters and documents --------------------------

var (
	fuzzKeys   = []string{"a", "b", "n", "0", "1", "é", "x.y"}
	fuzzScalar = []string{`0`, `1`, `-1`, `2.5`, `42`, `1e3`, `-0`, `"a"`, `"ab"`, `"b"`, `""`, `"é"`, `true`, `false`, `null`}
)

func randPath(r *rand.Rand, roots []string) string {
	var b strings.Builder
	b.WriteString(roots[r.Intn(len(roots))])
	for n := r.Intn(3); n > 0; n-- {
		b.WriteByte('.')
		b.WriteString(strings.ReplaceAll(fuzzKeys[r.Intn(len(fuzzKeys))], ".", `\\.`))
	}
	return b.String()
}

func randClause(r *rand.Rand, depth int) string {
	path := randPath(r, []string{"input", "input", "input", "output", "caller", "metadata"})
	num := []string{`0`, `1`, `-1`, `2.5`, `42`, `1000`, `-0`}[r.Intn(7)]
	switch k := r.Intn(12); {
	case k < 5:
		op := []string{"$gt", "$gte", "$lt", "$lte", "$eq"}[k]
		return fmt.Sprintf(`{%q:{%q:%s}}`, path, op, num)
	case k == 5:
		return fmt.Sprintf(`{%q:{"$eq":%s}}`, path, []string{`"a"`, `"ab"`, `""`, `"é"`}[r.Intn(4)])
	case k == 6:
		return fmt.Sprintf(`{%q:{"$prefix":%s}}`, path, []string{`"a"`, `""`, `"é"`}[r.Intn(3)])
	case k == 7:
		return fmt.Sprintf(`{%q:{"$exists":%v}}`, path, r.Intn(2) == 0)
	case k == 8:
		return fmt.Sprintf(`{%q:{"$gt":%s,"$lt":%s}}`, path, num, `100`)
	case k == 9:
		return fmt.Sprintf(`{%q:{"$in":[%s,%s]}}`, path, fuzzScalar[r.Intn(len(fuzzScalar))], num)
	case k == 10 && depth < 2:
		return fmt.Sprintf(`{"$or":[%s,%s]}`, randClause(r, depth+1), randClause(r, depth+1))
	case k == 11 && depth < 2:
		return fmt.Sprintf(`{"$not":%s}`, randClause(r, depth+1))
	}
	return fmt.Sprintf(`{%q:{"$ne":%s}}`, path, fuzzScalar[r.Intn(len(fuzzScalar))])
}

func randFilter(r *rand.Rand) string {
	switch n := r.Intn(6); n {
	case 0:
		return `{}`
	case 1, 2, 3:
		return randClause(r, 0)
	default:
		var parts []string
		for i := 0; i < n-2; i++ {
			parts = append(parts, randClause(r, 0))
		}
		return `{"$and":[` + strings.Join(parts, ",") + `]}`
	}
}

func randJSON(r *rand.Rand, depth int) string {
	switch k := r.Intn(10); {
	case k < 4 || depth > 3:
		return fuzzScalar[r.Intn(len(fuzzScalar))]
	case k < 7:
		var parts []string
		for n := r.Intn(4); n > 0; n-- {
			key := fuzzKeys[r.Intn(len(fuzzKeys))]
			if r.Intn(10) == 0 {
				key = `\u0061` // an escaped "a"
			}
			parts = append(parts, `"`+key+`":`+randJSON(r, depth+1))
		}
		return "{" + strings.Join(parts, ",") + "}"
	default:
		var parts []string
		for n := r.Intn(4); n > 0; n-- {
			parts = append(parts, randJSON(r, depth+1))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
}

// mangle makes some documents invalid or odd in ways the scan must hand
// over to the decoder.
func mangle(r *rand.Rand, s string) string {
	switch r.Intn(12) {
	case 0:
		if len(s) > 1 {
			return s[:r.Intn(len(s))]
		}
	case 1:
		return s + " "
	case 2:
		return strings.Replace(s, `"a"`, `"\xff"`, 1)
	case 3:
		return strings.Replace(s, `1`, `1e999`, 1)
	}
	return s
}

func checkDifferential(t *testing.T, fs []*Filter, src *Source, what string) {
	t.Helper()
	set := NewSet(fs)
	got := set.Match(src, nil)
	want := reference(fs, src)
	if !slices.Equal(got, want) {
		var b strings.Builder
		for i, f := range fs {
			fmt.Fprintf(&b, "\n  %d: %s", i, f.Source)
		}
		t.Fatalf("%s: set %v, filters one by one %v; filters:%s", what, got, want, b.String())
	}
}

// TestSetDifferential: random filter sets (closure-free and general ones
// mixed) on random documents answer exactly as each filter's Matches.
func TestSetDifferential(t *testing.T) {
	r := rand.New(rand.NewSource(12))
	for round := 0; round < 3000; round++ {
		var fs []*Filter
		for n := 1 + r.Intn(12); n > 0; n-- {
			fs = append(fs, mustCompile(t, randFilter(r)))
		}
		src := &Source{}
		for root := 0; root < NumRoots; root++ {
			if r.Intn(4) > 0 {
				src.Raw[root] = []byte(mangle(r, randJSON(r, 0)))
			}
		}
		checkDifferential(t, fs, src, fmt.Sprintf("round %d, roots %q", round, src.Raw))
	}
}

// FuzzSetMatch: any input document, against a fixed mix of filters.
func FuzzSetMatch(f *testing.F) {
	for _, s := range []string{`{"a":"x","n":42,"b":{"c":[1,2]}}`, `{"a":1,"a":2}`, `{"\u0061":1}`, `[1]`, `"é"`, `{"n":1e400}`} {
		f.Add([]byte(s), int64(1))
	}
	f.Fuzz(func(t *testing.T, doc []byte, seed int64) {
		r := rand.New(rand.NewSource(seed))
		var fs []*Filter
		for n := 1 + r.Intn(8); n > 0; n-- {
			fs = append(fs, mustCompile(t, randFilter(r)))
		}
		src := &Source{}
		src.Raw[RootInput] = doc
		src.Raw[RootOutput] = doc
		checkDifferential(t, fs, src, fmt.Sprintf("doc %q", doc))
	})
}

func BenchmarkSetNoMatch(b *testing.B) {
	var fs []*Filter
	for i := 0; i < 100; i++ {
		fs = append(fs, mustCompile(b, fmt.Sprintf(`{"input.n":{"$gt":%d}}`, 1000+i)))
	}
	set := NewSet(fs)
	src := &Source{}
	src.Raw[RootInput] = []byte(`{"user":"ada","op":"echo","n":42,"tags":["a","b"]}`)
	b.ReportAllocs()
	for b.Loop() {
		set.Match(src, nil)
	}
}

// The general evaluator on the same shape, for comparison.
func BenchmarkFiltersNoMatch(b *testing.B) {
	var fs []*Filter
	for i := 0; i < 100; i++ {
		fs = append(fs, mustCompile(b, fmt.Sprintf(`{"input.n":{"$gt":%d}}`, 1000+i)))
	}
	raw := []byte(`{"user":"ada","op":"echo","n":42,"tags":["a","b"]}`)
	b.ReportAllocs()
	for b.Loop() {
		d := &Doc{}
		d.Set(RootInput, raw)
		for _, f := range fs {
			f.Matches(d)
		}
	}
}
