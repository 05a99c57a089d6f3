// Command mutants is a small mutation-testing runner (issue 17) for the cases
// gremlins handles badly here: a line range of one file (to resume a run),
// mutants that do not compile reported as such instead of "killed", and
// several mutants tested at once without copying the tree (each mutant is
// given to `go test` as an -overlay). It makes gremlins' default mutations:
//
//	CONDITIONALS_BOUNDARY  <→<=  <=→<  >→>=  >=→>
//	CONDITIONALS_NEGATION  ==→!=  !=→==  <→>=  <=→>  >→<=  >=→<
//	ARITHMETIC_BASE        +→-  -→+  *→/  /→*  %→*
//	INCREMENT_DECREMENT    ++→--  --→++
//	INVERT_NEGATIVES       -x→+x
//
// Usage (from the module root):
//
//	go run ./scripts/mutants -pkg ./engine -file observe.go [-lines 100-400] \
//	    -run '^TestObserve' [-timeout 90s] [-parallel 2] [-list] [-schemata [-keep DIR]] \
//	    [-add new_test.go,...]
//
// -add puts test files into the package through the overlay, e.g. new
// tests kept out of the tree while a run of the code before them goes on.
//
// -schemata builds every mutant it can into one test binary and runs it
// once per mutant (schemata.go): minutes per file instead of one package
// build per mutant.
//
// A coverage run of the selected tests (-run; all of the package's without
// it) comes first: it is the baseline, which must pass, and mutants on lines
// it never executes are reported NOT_COVERED without being tested (run them
// again with a wider -run). Each other mutant's test binary is built, then
// run. Output: one line per mutant, then a summary; KILLED = a test failed,
// LIVED = all passed, TIMED_OUT = the tests outlasted -timeout (a hang:
// counts as detected; under heavy load check it by hand with a longer
// limit), NO_COMPILE = the compiler refused the mutated line (not a viable
// mutant), BUILD_TIMEOUT / BUILD_ERROR = the build outlasted its own limit
// or failed elsewhere (not scored: run it again). A test that fails by
// chance makes a mutant look KILLED: check surprising kills by hand.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type mutant struct {
	line, col int
	off       int // byte offset of the operator
	kind      string
	from, to  string
}

func main() {
	pkg := flag.String("pkg", "./engine", "package directory")
	file := flag.String("file", "", "file of the package to mutate (base name)")
	lines := flag.String("lines", "", "line range FROM-TO (inclusive; either may be empty)")
	run := flag.String("run", "", "go test -run pattern (also restricts the coverage run)")
	skip := flag.String("skip", "", "go test -skip pattern")
	timeout := flag.Duration("timeout", 90*time.Second, "limit per mutant's test run (build included)")
	parallel := flag.Int("parallel", 1, "mutants tested at once")
	list := flag.Bool("list", false, "only list the mutants")
	keep := flag.String("keep", "", "with -schemata: keep the schema source and test binary in this directory")
	add := flag.String("add", "", "comma-separated test files to add to the package (through the overlay) for this run, e.g. new tests not yet in the tree")
	schemata := flag.Bool("schemata", false, "build all mutants into one test binary, switched by SLUICE_MUTANT (schemata.go)")
	flag.Parse()
	if *file == "" {
		fatal(errors.New("-file is required"))
	}
	for _, a := range strings.Split(*add, ",") {
		if a == "" {
			continue
		}
		src, err := filepath.Abs(a)
		if err != nil {
			fatal(err)
		}
		dst, err := filepath.Abs(filepath.Join(*pkg, filepath.Base(a)))
		if err != nil {
			fatal(err)
		}
		extraFiles[dst] = src
	}
	path, err := filepath.Abs(filepath.Join(*pkg, *file))
	if err != nil {
		fatal(err)
	}
	src, err := os.ReadFile(path)
	if err != nil {
		fatal(err)
	}
	from, to := 0, 1<<30
	if *lines != "" {
		a, b, _ := strings.Cut(*lines, "-")
		if a != "" {
			from, _ = strconv.Atoi(a)
		}
		if b != "" {
			to, _ = strconv.Atoi(b)
		}
	}
	ms, err := find(path, src, from, to)
	if err != nil {
		fatal(err)
	}
	if *list {
		for _, m := range ms {
			fmt.Printf("%s:%d:%d\t%s\t%s→%s\n", *file, m.line, m.col, m.kind, m.from, m.to)
		}
		fmt.Printf("%d mutants\n", len(ms))
		return
	}
	// The coverage run is also the baseline: the tests must pass unmutated,
	// or every mutant would look killed.
	covered, err := coverage(*pkg, *file, *run, *skip)
	if err != nil {
		fatal(err)
	}
	tmp := *keep
	if tmp != "" {
		err = os.MkdirAll(tmp, 0o755)
	} else if tmp, err = os.MkdirTemp("", "mutants"); err == nil {
		defer os.RemoveAll(tmp)
	}
	if err != nil {
		fatal(err)
	}

	results := make([]string, len(ms))
	counts := map[string]int{}
	var mu sync.Mutex
	sem := make(chan struct{}, max(*parallel, 1))
	var wg sync.WaitGroup
	var handled []bool
	if *schemata {
		handled, err = runSchemata(tmp, *pkg, path, src, ms, covered, *run, *skip, *timeout, *parallel, func(i int, status string, took time.Duration) {
			report(&mu, results, counts, i, *file, ms[i], status, took)
		})
		if err != nil {
			fatal(err)
		}
	}
	for i, m := range ms {
		if handled != nil && handled[i] {
			continue
		}
		status, took := "NOT_COVERED", time.Duration(0)
		if !covered(m.line, m.col) {
			report(&mu, results, counts, i, *file, m, status, took)
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			t0 := time.Now()
			status := test(tmp, i, *pkg, path, src, m, *run, *skip, *timeout)
			report(&mu, results, counts, i, *file, m, status, time.Since(t0))
		}()
	}
	wg.Wait()
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, counts[k]))
	}
	detected := counts["KILLED"] + counts["TIMED_OUT"]
	viable := detected + counts["LIVED"]
	score := 0.0
	if viable > 0 {
		score = 100 * float64(detected) / float64(viable)
	}
	fmt.Printf("summary %s: %s; score (killed+timed out)/(those+lived) = %d/%d = %.1f %%\n",
		*file, strings.Join(parts, ", "), detected, viable, score)
}

func report(mu *sync.Mutex, results []string, counts map[string]int, i int, file string, m mutant, status string, took time.Duration) {
	mu.Lock()
	defer mu.Unlock()
	results[i] = status
	counts[status]++
	fmt.Printf("%-11s %s:%d:%d\t%s\t%s→%s\t%.0fs\n", status, file, m.line, m.col, m.kind, m.from, m.to, took.Seconds())
}

// find lists the mutants of the file between lines from and to.
func find(path string, src []byte, from, to int) ([]mutant, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var ms []mutant
	add := func(pos token.Pos, kind, from0, to0 string) {
		p := fset.Position(pos)
		if p.Line < from || p.Line > to {
			return
		}
		ms = append(ms, mutant{line: p.Line, col: p.Column, off: p.Offset, kind: kind, from: from0, to: to0})
	}
	boundary := map[token.Token]string{token.LSS: "<=", token.LEQ: "<", token.GTR: ">=", token.GEQ: ">"}
	negation := map[token.Token]string{token.EQL: "!=", token.NEQ: "==", token.LSS: ">=", token.LEQ: ">", token.GTR: "<=", token.GEQ: "<"}
	arith := map[token.Token]string{token.ADD: "-", token.SUB: "+", token.MUL: "/", token.QUO: "*", token.REM: "*"}
	assignArith := map[token.Token]string{token.ADD_ASSIGN: "-=", token.SUB_ASSIGN: "+=", token.MUL_ASSIGN: "/=", token.QUO_ASSIGN: "*=", token.REM_ASSIGN: "*="}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.BinaryExpr:
			op := n.Op.String()
			if to0, ok := boundary[n.Op]; ok {
				add(n.OpPos, "CONDITIONALS_BOUNDARY", op, to0)
			}
			if to0, ok := negation[n.Op]; ok {
				add(n.OpPos, "CONDITIONALS_NEGATION", op, to0)
			}
			if to0, ok := arith[n.Op]; ok {
				add(n.OpPos, "ARITHMETIC_BASE", op, to0)
			}
		case *ast.AssignStmt:
			if to0, ok := assignArith[n.Tok]; ok {
				add(n.TokPos, "ARITHMETIC_BASE", n.Tok.String(), to0)
			}
		case *ast.IncDecStmt:
			to0 := "--"
			if n.Tok == token.DEC {
				to0 = "++"
			}
			add(n.TokPos, "INCREMENT_DECREMENT", n.Tok.String(), to0)
		case *ast.UnaryExpr:
			if n.Op == token.SUB {
				add(n.OpPos, "INVERT_NEGATIVES", "-", "+")
			}
		}
		return true
	})
	sort.Slice(ms, func(i, j int) bool {
		if ms[i].off != ms[j].off {
			return ms[i].off < ms[j].off
		}
		return ms[i].kind < ms[j].kind
	})
	return ms, nil
}

// test builds and runs the package's tests with the mutant in place of the
// file, through an overlay.
func test(tmp string, i int, pkg, path string, src []byte, m mutant, run, skip string, timeout time.Duration) string {
	mutated := make([]byte, 0, len(src)+2)
	mutated = append(mutated, src[:m.off]...)
	mutated = append(mutated, m.to...)
	mutated = append(mutated, src[m.off+len(m.from):]...)
	mfile := filepath.Join(tmp, fmt.Sprintf("m%d.go", i))
	ofile := filepath.Join(tmp, fmt.Sprintf("m%d.json", i))
	if err := os.WriteFile(mfile, mutated, 0o644); err != nil {
		fatal(err)
	}
	ov, _ := json.Marshal(map[string]map[string]string{"Replace": withExtra(map[string]string{path: mfile})})
	if err := os.WriteFile(ofile, ov, 0o644); err != nil {
		fatal(err)
	}
	// Build first, then run: a build that outlasts the limit under load
	// is not a detected mutant (no test ran), and a compiler that failed
	// for another reason than the mutant is not a NO_COMPILE.
	bin := filepath.Join(tmp, fmt.Sprintf("m%d.test", i))
	defer os.Remove(bin)
	bctx, bcancel := context.WithTimeout(context.Background(), max(10*time.Minute, 4*timeout))
	defer bcancel()
	build := exec.CommandContext(bctx, "go", "test", "-c", "-o", bin, "-overlay", ofile, "-vet=off", pkg)
	build.Env = append(os.Environ(), "GOFLAGS=")
	killGroup(build)
	out, err := build.CombinedOutput()
	switch {
	case bctx.Err() != nil:
		return "BUILD_TIMEOUT"
	case err != nil && (bytes.Contains(out, []byte(fmt.Sprintf("%s:%d:", filepath.Base(mfile), m.line))) ||
		bytes.Contains(out, []byte(fmt.Sprintf("%s:%d:", filepath.Base(path), m.line)))): // the overlay's name, or the file's
		return "NO_COMPILE"
	case err != nil:
		fmt.Fprintf(os.Stderr, "mutants: building %s:%d failed for another reason:\n%s\n", filepath.Base(path), m.line, out)
		return "BUILD_ERROR"
	}
	dir, _ := filepath.Abs(pkg)
	return runTestBinary(bin, dir, nil, run, skip, timeout)
}

// runTestBinary runs a built test binary in the package's directory:
// LIVED (passed), TIMED_OUT (outlasted timeout: a hang, detected) or
// KILLED (a test failed).
func runTestBinary(bin, dir string, env []string, run, skip string, timeout time.Duration) string {
	args := []string{"-test.count=1", "-test.failfast", "-test.timeout", timeout.String()}
	if run != "" {
		args = append(args, "-test.run", run)
	}
	if skip != "" {
		args = append(args, "-test.skip", skip)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	killGroup(cmd)
	out, err := cmd.CombinedOutput()
	switch {
	case err == nil:
		return "LIVED"
	case ctx.Err() != nil || bytes.Contains(out, []byte("panic: test timed out")):
		return "TIMED_OUT"
	default:
		return "KILLED"
	}
}

// killGroup makes cmd's cancellation kill its whole process group (the
// compiler under go, the engines a test started), not only cmd.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
}

// coverage runs the selected tests once with a cover profile and returns
// whether a position is in a statement they executed. A position in no
// block at all (a case expression, a declaration) counts as covered.
func coverage(pkg, file, run, skip string) (func(line, col int) bool, error) {
	prof, err := os.CreateTemp("", "mutants-cover")
	if err != nil {
		return nil, err
	}
	prof.Close()
	defer os.Remove(prof.Name())
	args := []string{"test", "-count=1", "-vet=off", "-coverprofile", prof.Name()}
	if run != "" {
		args = append(args, "-run", run)
	}
	if len(extraFiles) > 0 {
		ov, _ := json.Marshal(map[string]map[string]string{"Replace": withExtra(map[string]string{})})
		ofile := prof.Name() + ".overlay.json"
		if err := os.WriteFile(ofile, ov, 0o644); err != nil {
			return nil, err
		}
		defer os.Remove(ofile)
		args = append(args, "-overlay", ofile)
	}
	if skip != "" {
		args = append(args, "-skip", skip)
	}
	args = append(args, pkg)
	t0 := time.Now()
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("coverage run failed (the tests must pass unmutated): %v\n%s", err, out)
	}
	fmt.Printf("coverage run: %.0fs\n", time.Since(t0).Seconds())
	type block struct{ l0, c0, l1, c1, n int }
	var blocks []block
	f, err := os.Open(prof.Name())
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	suffix := "/" + file + ":"
	for sc.Scan() {
		ln := sc.Text()
		i := strings.Index(ln, suffix)
		if i < 0 {
			continue
		}
		var b block
		var stmts int
		if _, err := fmt.Sscanf(ln[i+len(suffix):], "%d.%d,%d.%d %d %d", &b.l0, &b.c0, &b.l1, &b.c1, &stmts, &b.n); err != nil {
			continue
		}
		blocks = append(blocks, b)
	}
	before := func(l0, c0, l1, c1 int) bool { return l0 < l1 || (l0 == l1 && c0 <= c1) }
	return func(line, col int) bool {
		in, hit := false, false
		for _, b := range blocks {
			if before(b.l0, b.c0, line, col) && before(line, col, b.l1, b.c1) {
				in = true
				if b.n > 0 {
					hit = true
				}
			}
		}
		return !in || hit
	}, nil
}

// extraFiles are the -add files: their path in the package → their source.
var extraFiles = map[string]string{}

func withExtra(m map[string]string) map[string]string {
	for k, v := range extraFiles {
		m[k] = v
	}
	return m
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "mutants:", err)
	os.Exit(2)
}
