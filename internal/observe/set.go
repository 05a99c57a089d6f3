package observe

import (
	"slices"
	"sort"
	"strconv"
	"sync"
	"unicode/utf8"
	"unsafe"
)

// Set is the filters of one function's observers compiled together, so
// that an invocation is matched against all of them at once: each path a
// filter reads is extracted from the raw JSON in one scan per root (no
// decoding, no allocation), single-clause number comparisons on a path
// share a sorted threshold list searched by bisection, and the other
// closure-free clauses compare typed values. Filters with clauses outside
// that subset ($or, $not, $in, $any, $ne, string ranges, …) use the general
// evaluator on a decoded Doc, as does every filter when a scan meets JSON
// the decoder would not read plainly (see scanner): the answer is always
// the one Filter.Matches gives (TestSetDifferential, FuzzSetMatch).
type Set struct {
	filters     []*Filter
	roots       int // roots any filter reads, 1<<RootX
	genericRoot int // roots the filters needing a Doc read
	always      []int32
	generic     []int32
	tries       [NumRoots]*pathNode
	nodes       int
	groups      []numGroup
	conj        []conjunction
	scratch     sync.Pool
}

// Source is the raw JSON of an invocation's roots; nil is absent.
type Source struct {
	Raw [NumRoots][]byte
}

type pathNode struct {
	id    int
	seg   string
	index int  // seg as a canonical array index, -1 if it is none
	leaf  bool // a clause reads this node's value
	kids  []*pathNode
	byKey map[string]*pathNode // kids by segment, when there are many
}

const manyKids = 8

func (n *pathNode) kid(seg string) *pathNode {
	if n.byKey != nil {
		return n.byKey[seg]
	}
	for _, k := range n.kids {
		if k.seg == seg {
			return k
		}
	}
	return nil
}

func (n *pathNode) kidAt(i int) *pathNode {
	for _, k := range n.kids {
		if k.index == i {
			return k
		}
	}
	return nil
}

// numGroup is the single-clause filters comparing one path with one
// operator, by ascending threshold.
type numGroup struct {
	node int
	op   byte
	thr  []float64
	idx  []int32
}

type typedClause struct {
	node int
	c    *simpleClause
}

type conjunction struct {
	idx     int32
	clauses []typedClause
}

// Kinds of an extracted value.
const (
	kAbsent = iota
	kNull
	kBool
	kNum
	kStr
	kObj
	kArr
)

type val struct {
	gen  uint32 // the scan that set it; older is absent
	kind uint8
	num  float64
	str  string // points into the scanned JSON: valid during Match only
}

type scratch struct {
	vals []val
	keys []seenKey // the keys of the objects being scanned, innermost last
	gen  uint32
}

type seenKey struct {
	hash uint32
	key  string
}

// maxObjectKeys bounds the duplicate check per object (quadratic in the
// worst case); larger objects go to the decoder.
const maxObjectKeys = 256

// NewSet compiles filters (nil is match-all); Match reports indexes into fs.
func NewSet(fs []*Filter) *Set {
	s := &Set{filters: fs}
	type gkey struct {
		node int
		op   byte
	}
	groups := map[gkey]int{}
	for i, f := range fs {
		s.roots |= f.RootMask()
		switch {
		case f.MatchAll():
			s.always = append(s.always, int32(i))
		case f.simple == nil:
			s.generic = append(s.generic, int32(i))
			s.genericRoot |= f.RootMask()
		case len(f.simple) == 1 && f.simple[0].op <= opEqNum:
			c := f.simple[0]
			k := gkey{s.node(c.root, c.segs), c.op}
			g, ok := groups[k]
			if !ok {
				g = len(s.groups)
				groups[k] = g
				s.groups = append(s.groups, numGroup{node: k.node, op: k.op})
			}
			s.groups[g].thr = append(s.groups[g].thr, c.num)
			s.groups[g].idx = append(s.groups[g].idx, int32(i))
		default:
			cj := conjunction{idx: int32(i)}
			for _, c := range f.simple {
				cj.clauses = append(cj.clauses, typedClause{s.node(c.root, c.segs), c})
			}
			s.conj = append(s.conj, cj)
		}
	}
	for gi := range s.groups {
		g := &s.groups[gi]
		sort.Stable(byThreshold{g})
	}
	s.scratch.New = func() any {
		return &scratch{vals: make([]val, s.nodes)}
	}
	return s
}

type byThreshold struct{ g *numGroup }

func (b byThreshold) Len() int           { return len(b.g.thr) }
func (b byThreshold) Less(i, j int) bool { return b.g.thr[i] < b.g.thr[j] }
func (b byThreshold) Swap(i, j int) {
	b.g.thr[i], b.g.thr[j] = b.g.thr[j], b.g.thr[i]
	b.g.idx[i], b.g.idx[j] = b.g.idx[j], b.g.idx[i]
}

// node returns the id of the path's node, adding it.
func (s *Set) node(root int, segs []string) int {
	if s.tries[root] == nil {
		s.tries[root] = &pathNode{id: s.nodes, index: -1}
		s.nodes++
	}
	n := s.tries[root]
	for _, seg := range segs {
		k := n.kid(seg)
		if k == nil {
			k = &pathNode{id: s.nodes, seg: seg, index: -1}
			if i, ok := canonicalIndex(seg); ok {
				k.index = i
			}
			s.nodes++
			n.kids = append(n.kids, k)
			if len(n.kids) > manyKids {
				if n.byKey == nil {
					n.byKey = map[string]*pathNode{}
					for _, x := range n.kids {
						n.byKey[x.seg] = x
					}
				}
				n.byKey[seg] = k
			}
		}
		n = k
	}
	n.leaf = true
	return n.id
}

// Len is the number of filters.
func (s *Set) Len() int { return len(s.filters) }

// Roots is the set of roots any filter reads, as 1<<RootX bits: only those
// need to be in a Source.
func (s *Set) Roots() int { return s.roots }

// Match appends to dst, in ascending order, the indexes of the filters
// that accept src. It allocates nothing when no filter matches and every
// filter is closure-free.
func (s *Set) Match(src *Source, dst []int32) []int32 {
	start := len(dst)
	if len(s.always) > 0 {
		dst = append(dst, s.always...)
	}
	if s.nodes > 0 {
		sc := s.scratch.Get().(*scratch)
		sc.gen++
		if sc.gen == 0 { // wrapped: forget every older stamp
			clear(sc.vals)
			sc.gen = 1
		}
		for r, t := range s.tries {
			if t == nil || src.Raw[r] == nil {
				continue
			}
			p := scanner{b: src.Raw[r], sc: sc}
			sc.keys = sc.keys[:0]
			if !p.doc(t) {
				clear(sc.keys)
				s.scratch.Put(sc)
				return s.slow(src, dst[:start])
			}
		}
		dst = s.matchTyped(sc, dst)
		clear(sc.keys) // they point into src
		sc.keys = sc.keys[:0]
		s.scratch.Put(sc)
	}
	if len(s.generic) > 0 {
		doc := s.decode(src, s.genericRoot)
		for _, i := range s.generic {
			if s.filters[i].Matches(doc) {
				dst = append(dst, i)
			}
		}
	}
	if len(dst)-start > 1 {
		slices.Sort(dst[start:])
	}
	return dst
}

func (s *Set) matchTyped(sc *scratch, dst []int32) []int32 {
	for gi := range s.groups {
		g := &s.groups[gi]
		v := sc.vals[g.node]
		if v.gen != sc.gen || v.kind != kNum {
			continue
		}
		x := v.num
		above := func(i int) bool { return g.thr[i] > x } // first threshold above x
		switch g.op {
		case opGt: // thresholds below x
			dst = append(dst, g.idx[:sort.SearchFloat64s(g.thr, x)]...)
		case opGte:
			dst = append(dst, g.idx[:sort.Search(len(g.thr), above)]...)
		case opLt:
			dst = append(dst, g.idx[sort.Search(len(g.thr), above):]...)
		case opLte:
			dst = append(dst, g.idx[sort.SearchFloat64s(g.thr, x):]...)
		case opEqNum:
			dst = append(dst, g.idx[sort.SearchFloat64s(g.thr, x):sort.Search(len(g.thr), above)]...)
		}
	}
	for ci := range s.conj {
		cj := &s.conj[ci]
		all := true
		for _, tc := range cj.clauses {
			if !typedMatch(tc.c, sc.vals[tc.node], sc.gen) {
				all = false
				break
			}
		}
		if all {
			dst = append(dst, cj.idx)
		}
	}
	return dst
}

// typedMatch is simpleClause.match on an extracted value.
func typedMatch(c *simpleClause, v val, gen uint32) bool {
	kind := v.kind
	if v.gen != gen {
		kind = kAbsent
	}
	switch c.op {
	case opExists:
		return (kind != kAbsent) == c.flag
	case opPrefix:
		return kind == kStr && len(v.str) >= len(c.str) && v.str[:len(c.str)] == c.str
	case opEqStr:
		return kind == kStr && v.str == c.str
	}
	if kind != kNum {
		return false
	}
	switch c.op {
	case opGt:
		return v.num > c.num
	case opGte:
		return v.num >= c.num
	case opLt:
		return v.num < c.num
	case opLte:
		return v.num <= c.num
	case opEqNum:
		return v.num == c.num
	}
	return false
}

func (s *Set) decode(src *Source, roots int) *Doc {
	d := &Doc{}
	for r := 0; r < NumRoots; r++ {
		if roots&(1<<r) != 0 {
			d.Set(r, src.Raw[r])
		}
	}
	return d
}

// slow is the general evaluator for every filter.
func (s *Set) slow(src *Source, dst []int32) []int32 {
	doc := s.decode(src, s.roots)
	for i, f := range s.filters {
		if f.Matches(doc) {
			dst = append(dst, int32(i))
		}
	}
	return dst
}

// scanner walks one root's JSON, validating it and recording the values of
// the read paths; false means "use the decoder". It accepts only what the
// decoder reads plainly: the decoder merges or refuses repeated keys and
// refuses invalid UTF-8 and numbers out of range anywhere in the document
// (the root is then absent), so those, and escaped keys, which might
// repeat another key, make it give up.
type scanner struct {
	b  []byte
	i  int
	sc *scratch
}

func (p *scanner) doc(t *pathNode) bool {
	p.ws()
	if !p.value(t, 0) {
		return false
	}
	p.ws()
	return p.i == len(p.b)
}

func (p *scanner) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *scanner) set(n *pathNode, v val) {
	if n != nil && n.leaf {
		v.gen = p.sc.gen
		p.sc.vals[n.id] = v
	}
}

// value scans one value; n is its node (nil: no read path goes through it).
func (p *scanner) value(n *pathNode, depth int) bool {
	if p.i >= len(p.b) || depth > maxDecodeDepth {
		return false
	}
	switch c := p.b[p.i]; {
	case c == '{':
		p.set(n, val{kind: kObj})
		return p.object(n, depth)
	case c == '[':
		p.set(n, val{kind: kArr})
		return p.array(n, depth)
	case c == '"':
		s, esc, ok := p.str()
		if !ok {
			return false
		}
		if n != nil && n.leaf {
			if esc {
				return false
			}
			p.set(n, val{kind: kStr, str: s})
		}
		return true
	case c == 't':
		p.set(n, val{kind: kBool})
		return p.lit("true")
	case c == 'f':
		p.set(n, val{kind: kBool})
		return p.lit("false")
	case c == 'n':
		p.set(n, val{kind: kNull})
		return p.lit("null")
	case c == '-' || c >= '0' && c <= '9':
		return p.number(n)
	}
	return false
}

func (p *scanner) object(n *pathNode, depth int) bool {
	p.i++
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return true
	}
	search := n != nil && len(n.kids) > 0
	base := len(p.sc.keys)
	for {
		p.ws()
		key, esc, ok := p.str()
		if !ok || esc {
			return false
		}
		h := uint32(2166136261)
		for i := 0; i < len(key); i++ {
			h = (h ^ uint32(key[i])) * 16777619
		}
		if len(p.sc.keys)-base >= maxObjectKeys {
			return false
		}
		for _, k := range p.sc.keys[base:] {
			if k.hash == h && k.key == key {
				return false
			}
		}
		p.sc.keys = append(p.sc.keys, seenKey{h, key})
		var kid *pathNode
		if search {
			kid = n.kid(key)
		}
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return false
		}
		p.i++
		p.ws()
		if !p.value(kid, depth+1) {
			return false
		}
		p.ws()
		if p.i >= len(p.b) {
			return false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			clear(p.sc.keys[base:])
			p.sc.keys = p.sc.keys[:base]
			return true
		default:
			return false
		}
	}
}

func (p *scanner) array(n *pathNode, depth int) bool {
	p.i++
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return true
	}
	search := n != nil && len(n.kids) > 0
	for at := 0; ; at++ {
		p.ws()
		var kid *pathNode
		if search {
			kid = n.kidAt(at)
		}
		if !p.value(kid, depth+1) {
			return false
		}
		p.ws()
		if p.i >= len(p.b) {
			return false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return true
		default:
			return false
		}
	}
}

func (p *scanner) lit(s string) bool {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// str scans a string; s is its raw content, valid while p.b is, and its
// value unless esc (it has escapes). Invalid UTF-8 is not ok.
func (p *scanner) str() (s string, esc, ok bool) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return "", false, false
	}
	start := p.i + 1
	ascii := true
	for j := start; j < len(p.b); j++ {
		c := p.b[j]
		switch {
		case c == '"':
			raw := p.b[start:j]
			if !ascii && !utf8.Valid(raw) {
				return "", false, false
			}
			p.i = j + 1
			if len(raw) == 0 {
				return "", esc, true
			}
			return unsafe.String(&raw[0], len(raw)), esc, true
		case c == '\\':
			esc = true
			if j+1 >= len(p.b) {
				return "", false, false
			}
			switch p.b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j++
			case 'u':
				if j+5 >= len(p.b) {
					return "", false, false
				}
				for _, h := range p.b[j+2 : j+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return "", false, false
					}
				}
				j += 5
			default:
				return "", false, false
			}
		case c < 0x20:
			return "", false, false
		case c >= 0x80:
			ascii = false
		}
	}
	return "", false, false
}

// number scans a JSON number; it is parsed when read, or when it could be
// out of a double's range (the decoder refuses those).
func (p *scanner) number(n *pathNode) bool {
	b := p.b
	start := p.i
	i, exp, ok := numberEnd(b, start)
	if !ok {
		return false
	}
	p.i = i
	if n != nil && n.leaf || exp || i-start > 300 {
		f, err := strconv.ParseFloat(unsafe.String(&b[start], i-start), 64)
		if err != nil {
			return false
		}
		p.set(n, val{kind: kNum, num: f})
	}
	return true
}
