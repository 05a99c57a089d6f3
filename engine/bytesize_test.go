package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
	}{
		{"0", 0}, {"1024", 1024}, {"1500B", 1500}, {"64KiB", 64 << 10}, {"16MiB", 16 << 20}, {"1GiB", 1 << 30},
		{"2TiB", 2 << 40}, {"16mib", 16 << 20}, {"16 MiB", 16 << 20}, {" 8KiB ", 8 << 10},
	} {
		got, err := ParseByteSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", "want a whole number of bytes"}, {"MiB", "want a whole number of bytes"}, {"-1", "want a whole number"},
		{"16MB", `unknown unit "MB"`}, {"1GB", `unknown unit "GB"`}, {"16k", `unknown unit "k"`},
		{"1.5MiB", "whole number"}, {"9999999TiB", "too large"}, {"99999999999999999999", "too large"},
	} {
		if _, err := ParseByteSize(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseByteSize(%q) error = %v, want one containing %q", tc.in, err, tc.want)
		}
	}
}

func TestByteSizeStringRoundTrips(t *testing.T) {
	for _, tc := range []struct {
		in   ByteSize
		want string
	}{{0, "0B"}, {1, "1B"}, {1500, "1500B"}, {1024, "1KiB"}, {64 << 20, "64MiB"}, {3 << 30, "3GiB"}, {1<<20 + 1024, "1025KiB"}} {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(tc.in), got, tc.want)
		}
		if back, err := ParseByteSize(tc.in.String()); err != nil || back != tc.in {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tc.in.String(), back, err, int64(tc.in))
		}
	}
}

func loadYAML(t *testing.T, doc string) (Config, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	err := c.LoadFile(p)
	return c, err
}

func TestLoadFileSizes(t *testing.T) {
	c, err := loadYAML(t, "max_message_size: 8MiB\nchannels:\n  max_frame_size: 65536\nhttp:\n  max_json_body: 1 MiB\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxMessageSize != 8<<20 || c.Channels.MaxFrameSize != 65536 || c.HTTP.MaxJSONBody != 1<<20 {
		t.Fatalf("sizes = %d, %d, %d", c.MaxMessageSize, c.Channels.MaxFrameSize, c.HTTP.MaxJSONBody)
	}
}

// TestLoadFileErrorsNameKeys: errors name the YAML keys a person wrote and
// the ones they could have, never a Go type.
func TestLoadFileErrorsNameKeys(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"adr: x\n", `line 1: unknown key "adr"; valid keys at the top level: addr, http_addr`},
		{"http:\n  timout: 1s\n", `line 2: unknown key "timout"; valid keys under http: timeout, max_json_body, `},
		{"http:\n  timout: 1s\n", `, cors (did you mean "timeout"?)`},
		{"http:\n  max_buffered_json_bytes: 64MB\n", `http.max_buffered_json_bytes: size "64MB": unknown unit "MB"`},
		{"http:\n  cors:\n    allowed_origin: [a]\n", `valid keys under http.cors: allowed_origins, allowed_methods (did you mean "allowed_origins"?)`},
		{"channels: 5\n", "line 1: channels: want a mapping with the keys default_buffer, max_buffer"},
		{"channels:\n  ttl: 5\n", `line 2: channels.ttl: "5" is not a duration`},
		{"shutdown_timeout: soon\n", `shutdown_timeout: "soon" is not a duration`},
		{"max_message_size: 64MB\n", `line 1: max_message_size: size "64MB": unknown unit "MB"`},
		{"http:\n  max_json_body: [1]\n", "line 2: want a size"},
	} {
		_, err := loadYAML(t, tc.doc)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.doc, err, tc.want)
			continue
		}
		for _, goName := range []string{"engine.", "time.Duration", "ByteSize", "int64"} {
			if strings.Contains(err.Error(), goName) {
				t.Errorf("%q: error %v names a Go type (%s)", tc.doc, err, goName)
			}
		}
	}
	// A section left empty keeps its defaults.
	if c, err := loadYAML(t, "channels:\nhttp:\n"); err != nil || c.Channels != DefaultConfig().Channels {
		t.Errorf("empty sections: %v, %+v", err, c.Channels)
	}
}

// The example sluice.yaml in docs/configuration.md loads.
func TestConfigurationDocExample(t *testing.T) {
	b, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, doc, ok := strings.Cut(string(b), "```yaml\n")
	doc, _, ok2 := strings.Cut(doc, "```")
	if !ok || !ok2 {
		t.Fatal("no yaml block in docs/configuration.md")
	}
	c, err := loadYAML(t, doc)
	if err != nil {
		t.Fatalf("the documented example does not load: %v\n%s", err, doc)
	}
	if c.MaxMessageSize != 16<<20 {
		t.Errorf("max_message_size = %v, want 16MiB", c.MaxMessageSize)
	}
}
