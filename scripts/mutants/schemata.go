package main

// Schemata mode (-schemata): every mutant of the file is compiled into ONE
// test binary, each behind a switch on a package variable set from the
// environment (SLUICE_MUTANT), and the binary is then run once per mutant.
// On a loaded machine building the engine's test binary takes 1-2 minutes
// and running a file's tests a few seconds, so this tests a file's mutants
// in minutes instead of hours. Each mutated expression `X op Y` becomes
//
//	func() T { switch zzMutant { case N: return X op' Y }; return X op Y }()
//
// which evaluates X and Y once, as the original does. Mutants it cannot
// put in a schema (a constant expression, a type outside the package, a
// unary minus) are tested one build each, as without -schemata. A `+` or
// `+=` between strings made `-` does not compile: it is reported
// NO_COMPILE from the type checker, without a build.

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

const schemaVar = "zzMutant"

// typeCheck type-checks the package's non-test files (from the build cache's
// export data for its imports) and returns the info and the file's AST.
func typeCheck(pkg, path string) (*token.FileSet, *ast.File, *types.Info, error) {
	out, err := exec.Command("go", "list", "-export", "-deps", "-f", "{{.ImportPath}}\t{{.Export}}", pkg).Output()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("go list -export: %v", err)
	}
	exports := map[string]string{}
	for _, ln := range strings.Split(string(out), "\n") {
		if p, e, ok := strings.Cut(ln, "\t"); ok && e != "" {
			exports[p] = e
		}
	}
	gf, err := exec.Command("go", "list", "-f", "{{join .GoFiles \"\\n\"}}", pkg).Output()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("go list: %v", err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	var target *ast.File
	dir := filepath.Dir(path)
	for _, name := range strings.Fields(string(gf)) {
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, nil, nil, err
		}
		if filepath.Join(dir, name) == path {
			target = f
		}
		files = append(files, f)
	}
	if target == nil {
		return nil, nil, nil, fmt.Errorf("%s is not among the package's files", path)
	}
	imp := importer.ForCompiler(fset, "gc", func(p string) (io.ReadCloser, error) {
		e, ok := exports[p]
		if !ok {
			return nil, fmt.Errorf("no export data for %s", p)
		}
		return os.Open(e)
	})
	info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}}
	conf := types.Config{Importer: imp}
	if _, err := conf.Check("p", fset, files, info); err != nil {
		return nil, nil, nil, fmt.Errorf("type check: %v", err)
	}
	return fset, target, info, nil
}

// schemaPlan sorts the mutants into those in the schema, those to build one
// by one, and those that cannot compile.
type schemaPlan struct {
	wrap      map[ast.Expr][]int // expression → indexes of its mutants
	typeOf    map[ast.Expr]string
	incdec    map[*ast.IncDecStmt]int
	assign    map[*ast.AssignStmt]int
	single    map[int]bool
	noCompile map[int]bool
}

func planSchema(fset *token.FileSet, f *ast.File, info *types.Info, ms []mutant) schemaPlan {
	p := schemaPlan{wrap: map[ast.Expr][]int{}, typeOf: map[ast.Expr]string{}, incdec: map[*ast.IncDecStmt]int{},
		assign: map[*ast.AssignStmt]int{}, single: map[int]bool{}, noCompile: map[int]bool{}}
	byOff := map[int][]int{}
	for i, m := range ms {
		byOff[m.off] = append(byOff[m.off], i)
	}
	local := func(t types.Type) (string, bool) {
		switch t := types.Unalias(t).(type) {
		case *types.Basic:
			if t.Info()&types.IsUntyped != 0 {
				return "", false
			}
			return t.Name(), true
		case *types.Named:
			if t.Obj().Pkg() != nil && t.Obj().Pkg().Path() == "p" && t.TypeArgs() == nil {
				return t.Obj().Name(), true
			}
		}
		return "", false
	}
	isString := func(e ast.Expr) bool {
		tv, ok := info.Types[e]
		if !ok {
			return false
		}
		b, ok := tv.Type.Underlying().(*types.Basic)
		return ok && b.Info()&types.IsString != 0
	}
	var inConst []ast.Node
	header := map[ast.Stmt]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if n == nil {
			return true
		}
		if g, ok := n.(*ast.GenDecl); ok && g.Tok == token.CONST {
			inConst = append(inConst, g)
		}
		constant := func(pos token.Pos) bool {
			for _, g := range inConst {
				if g.Pos() <= pos && pos < g.End() {
					return true
				}
			}
			return false
		}
		switch n := n.(type) {
		case *ast.BinaryExpr:
			idx := byOff[fset.Position(n.OpPos).Offset]
			if len(idx) == 0 {
				return true
			}
			tv := info.Types[n]
			for _, i := range idx {
				if ms[i].kind == "ARITHMETIC_BASE" && ms[i].from == "+" && isString(n) {
					p.noCompile[i] = true
				}
			}
			t, ok := local(tv.Type)
			switch n.Op {
			case token.EQL, token.NEQ, token.LSS, token.LEQ, token.GTR, token.GEQ:
				t, ok = "bool", true
			}
			if tv.Value != nil || constant(n.Pos()) || !ok {
				for _, i := range idx {
					if !p.noCompile[i] {
						p.single[i] = true
					}
				}
				return true
			}
			for _, i := range idx {
				if !p.noCompile[i] {
					p.wrap[n] = append(p.wrap[n], i)
				}
			}
			p.typeOf[n] = t
		case *ast.ForStmt:
			header[n.Init], header[n.Post] = true, true
		case *ast.IfStmt:
			header[n.Init] = true
		case *ast.SwitchStmt:
			header[n.Init] = true
		case *ast.IncDecStmt:
			for _, i := range byOff[fset.Position(n.TokPos).Offset] {
				if header[n] {
					p.single[i] = true // a statement header takes no if
				} else {
					p.incdec[n] = i
				}
			}
		case *ast.AssignStmt:
			for _, i := range byOff[fset.Position(n.TokPos).Offset] {
				switch {
				case ms[i].from == "+=" && len(n.Lhs) == 1 && isString(n.Lhs[0]):
					p.noCompile[i] = true
				case header[n] || len(n.Lhs) != 1:
					p.single[i] = true
				default:
					p.assign[n] = i
				}
			}
		case *ast.UnaryExpr:
			for _, i := range byOff[fset.Position(n.OpPos).Offset] {
				p.single[i] = true
			}
		}
		return true
	})
	return p
}

// schemaSource writes the file with every planned mutant behind the switch.
func schemaSource(fset *token.FileSet, src []byte, p schemaPlan, ms []mutant) []byte {
	type span struct {
		pos, end int
		text     func(emit func(a, b int) string) string
	}
	var spans []span
	off := func(pos token.Pos) int { return fset.Position(pos).Offset }
	for e, idx := range p.wrap {
		b := e.(*ast.BinaryExpr)
		x0, x1, y0, y1 := off(b.X.Pos()), off(b.X.End()), off(b.Y.Pos()), off(b.Y.End())
		op := b.Op.String()
		t := p.typeOf[e]
		spans = append(spans, span{off(b.Pos()), off(b.End()), func(emit func(a, b int) string) string {
			x, y := "("+emit(x0, x1)+")", "("+emit(y0, y1)+")"
			var sb strings.Builder
			fmt.Fprintf(&sb, "func() %s { switch %s {", t, schemaVar)
			for _, i := range idx {
				fmt.Fprintf(&sb, " case %d: return %s %s %s;", i, x, ms[i].to, y)
			}
			fmt.Fprintf(&sb, " }; return %s %s %s }()", x, op, y)
			return sb.String()
		}})
	}
	for s, i := range p.incdec {
		x0, x1 := off(s.X.Pos()), off(s.X.End())
		tok := s.Tok.String()
		spans = append(spans, span{off(s.Pos()), off(s.End()), func(emit func(a, b int) string) string {
			x := emit(x0, x1)
			return fmt.Sprintf("if %s == %d { %s%s } else { %s%s }", schemaVar, i, x, ms[i].to, x, tok)
		}})
	}
	for s, i := range p.assign {
		l0, l1, r0, r1 := off(s.Lhs[0].Pos()), off(s.Lhs[0].End()), off(s.Rhs[0].Pos()), off(s.Rhs[0].End())
		tok := s.Tok.String()
		spans = append(spans, span{off(s.Pos()), off(s.End()), func(emit func(a, b int) string) string {
			l, r := emit(l0, l1), emit(r0, r1)
			return fmt.Sprintf("if %s == %d { %s %s %s } else { %s %s %s }", schemaVar, i, l, ms[i].to, r, l, tok, r)
		}})
	}
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].pos != spans[j].pos {
			return spans[i].pos < spans[j].pos
		}
		return spans[i].end > spans[j].end
	})
	var emit func(a, b int) string
	emit = func(a, b int) string {
		var sb strings.Builder
		at := a
		for k := 0; k < len(spans); k++ {
			s := spans[k]
			if s.pos < at || s.end > b || s.pos >= b {
				continue
			}
			sb.Write(src[at:s.pos])
			sb.WriteString(s.text(emit))
			at = s.end
		}
		sb.Write(src[at:b])
		return sb.String()
	}
	return []byte(emit(0, len(src)))
}

// runSchemata tests the mutants through one schema build; it returns the
// statuses (indexes it did not handle: "").
func runSchemata(tmp, pkg, path string, src []byte, ms []mutant, covered func(int, int) bool, run, skip string, timeout time.Duration,
	parallel int, reportFn func(i int, status string, took time.Duration)) ([]bool, error) {
	fset, f, info, err := typeCheck(pkg, path)
	if err != nil {
		return nil, err
	}
	p := planSchema(fset, f, info, ms)
	done := make([]bool, len(ms))
	for i := range ms {
		if p.noCompile[i] {
			reportFn(i, "NO_COMPILE", 0)
			done[i] = true
		}
	}
	mfile := filepath.Join(tmp, "schema.go")
	vfile := filepath.Join(tmp, "schema_var.go")
	if err := os.WriteFile(mfile, schemaSource(fset, src, p, ms), 0o644); err != nil {
		return nil, err
	}
	pkgName := f.Name.Name
	vsrc := fmt.Sprintf("package %s\n\nimport (\n\t\"os\"\n\t\"strconv\"\n)\n\nvar %s = func() int { n, err := strconv.Atoi(os.Getenv(\"SLUICE_MUTANT\")); if err != nil { return -1 }; return n }()\n", pkgName, schemaVar)
	if err := os.WriteFile(vfile, []byte(vsrc), 0o644); err != nil {
		return nil, err
	}
	ov, _ := json.Marshal(map[string]map[string]string{"Replace": withExtra(map[string]string{path: mfile, filepath.Join(filepath.Dir(path), "zz_mutant_schema.go"): vfile})})
	ofile := filepath.Join(tmp, "schema.json")
	if err := os.WriteFile(ofile, ov, 0o644); err != nil {
		return nil, err
	}
	bin := filepath.Join(tmp, "schema.test")
	t0 := time.Now()
	out, err := exec.Command("go", "test", "-c", "-o", bin, "-overlay", ofile, "-vet=off", pkg).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("schema build failed (kept in %s): %v\n%s", mfile, err, out)
	}
	fmt.Printf("schema build: %.0fs\n", time.Since(t0).Seconds())
	dir, _ := filepath.Abs(pkg)
	exec1 := func(id int) string {
		return runTestBinary(bin, dir, []string{fmt.Sprintf("SLUICE_MUTANT=%d", id)}, run, skip, timeout)
	}
	if s := exec1(-1); s != "LIVED" {
		return nil, fmt.Errorf("the schema binary fails its tests with no mutant active (%s)", s)
	}
	sem := make(chan struct{}, max(parallel, 1))
	var wg sync.WaitGroup
	for i, m := range ms {
		if done[i] || p.single[i] {
			continue
		}
		done[i] = true
		if !covered(m.line, m.col) {
			reportFn(i, "NOT_COVERED", 0)
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			t0 := time.Now()
			reportFn(i, exec1(i), time.Since(t0))
		}()
	}
	wg.Wait()
	return done, nil
}
