package sluice_test

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestExamplesUsePublicAPI: godoc shows the examples as code to copy, so
// they may import only what a user of the module can import (no internal/
// package; on 04c1a7a ExampleChannelWriter used internal/channels).
func TestExamplesUsePublicAPI(t *testing.T) {
	files, err := filepath.Glob("example_*_test.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example files (%v)", err)
	}
	for _, name := range files {
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.Contains(p, "/internal/") || strings.HasSuffix(p, "/internal") {
				t.Errorf("%s imports %s, which users of the module cannot import", name, p)
			}
		}
	}
}
