package sluice_test

import (
	"os"
	"strings"
	"testing"
)

// readmeSection returns the README's text from the heading to the next
// "## " heading.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no %q section", heading)
	}
	s = s[i+len(heading)+2:]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	return s
}

// codeBlocks returns the bodies of the ```lang blocks in s.
func codeBlocks(s, lang string) []string {
	var out []string
	for {
		i := strings.Index(s, "```"+lang+"\n")
		if i < 0 {
			return out
		}
		s = s[i+len(lang)+4:]
		j := strings.Index(s, "```")
		if j < 0 {
			return out
		}
		out = append(out, s[:j])
		s = s[j+3:]
	}
}

// TestReadmeChannelSnippetCompiles keeps the README's Go channel snippets
// honest: every line of them is a line of examples/channels/go/main.go,
// which the build compiles and interop's TestReadmeChannelsGo runs.
func TestReadmeChannelSnippetCompiles(t *testing.T) {
	blocks := codeBlocks(readmeSection(t, "## Channels in Go"), "go")
	if len(blocks) != 2 {
		t.Fatalf("want the sending and the receiving snippet, found %d go blocks", len(blocks))
	}
	src, err := os.ReadFile("examples/channels/go/main.go")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, l := range strings.Split(string(src), "\n") {
		have[strings.TrimSpace(l)] = true
	}
	for _, b := range blocks {
		for _, l := range strings.Split(b, "\n") {
			if l = strings.TrimSpace(l); l != "" && !have[l] {
				t.Errorf("README line not in examples/channels/go/main.go: %s", l)
			}
		}
	}
	if !strings.Contains(blocks[0], "CloseWithError") {
		t.Error("the sending snippet does not show the error path (CloseWithError)")
	}
}

func TestLicense(t *testing.T) {
	b, err := os.ReadFile("LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Apache License", "Version 2.0, January 2004", "END OF TERMS AND CONDITIONS", "Copyright 2026 The Sluice Authors"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("LICENSE lacks %q", want)
		}
	}
	if !strings.Contains(readmeSection(t, "## License"), "[LICENSE](LICENSE)") {
		t.Error("README's License section does not link LICENSE")
	}
}
