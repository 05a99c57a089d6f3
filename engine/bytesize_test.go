package engine

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
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

// The config types decode from YAML without this package importing a YAML
// library (cmd/sluice reads the file): sizes as integers or with a unit,
// queue entries from the queue defaults.
func TestConfigTypesFromYAML(t *testing.T) {
	var v struct {
		A, B ByteSize
		Q    map[string]QueueConfig
	}
	if err := yaml.Unmarshal([]byte("a: 65536\nb: 16MiB\nq:\n  jobs:\n    concurrency: 2\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v.A != 64<<10 || v.B != 16<<20 {
		t.Errorf("sizes = %d, %d", v.A, v.B)
	}
	want := DefaultQueueConfig()
	want.Concurrency = 2
	if v.Q["jobs"] != want {
		t.Errorf("queue = %+v, want %+v", v.Q["jobs"], want)
	}
	for doc, msg := range map[string]string{
		"a: 64MB\n": `size "64MB": unknown unit "MB"`,
		"a: [1]\n":  "line 1: want a size",
	} {
		if err := yaml.Unmarshal([]byte(doc), &v); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: error %v, want one containing %q", doc, err, msg)
		}
	}
}
