package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/engine"
)

func loadYAML(t *testing.T, doc string) (engine.Config, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	c := engine.DefaultConfig()
	err := loadConfigFile(&c, p)
	return c, err
}

func TestConfigFileSizes(t *testing.T) {
	c, err := loadYAML(t, "max_message_size: 8MiB\nchannels:\n  max_frame_size: 65536\nhttp:\n  max_json_body: 1 MiB\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxMessageSize != 8<<20 || c.Channels.MaxFrameSize != 65536 || c.HTTP.MaxJSONBody != 1<<20 {
		t.Fatalf("sizes = %d, %d, %d", c.MaxMessageSize, c.Channels.MaxFrameSize, c.HTTP.MaxJSONBody)
	}
}

// TestConfigFileErrorsNameKeys: errors name the YAML keys a person wrote and
// the ones they could have, never a Go type.
func TestConfigFileErrorsNameKeys(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"adr: x\n", `line 1: unknown key "adr"; valid keys at the top level: addr, http_addr`},
		{"http:\n  timout: 1s\n", `line 2: unknown key "timout"; valid keys under http: timeout, max_json_body, `},
		{"http:\n  timout: 1s\n", `, access_log (did you mean "timeout"?)`},
		{"http:\n  max_buffered_json_bytes: 64MB\n", `http.max_buffered_json_bytes: size "64MB": unknown unit "MB"`},
		{"http:\n  cors:\n    allowed_origin: [a]\n", `valid keys under http.cors: allowed_origins, allowed_methods (did you mean "allowed_origins"?)`},
		{"channels: 5\n", "line 1: channels: want a mapping with the keys default_buffer, max_buffer"},
		{"channels:\n  ttl: 5\n", `line 2: channels.ttl: "5" is not a duration`},
		{"shutdown_timeout: soon\n", `shutdown_timeout: "soon" is not a duration`},
		{"max_message_size: 64MB\n", `line 1: max_message_size: size "64MB": unknown unit "MB"`},
		{"http:\n  max_json_body: [1]\n", "line 2: want a size"},
		{"auth:\n  rbac:\n    expose_functions:\n      - namesapce: x\n", `line 4: unknown key "namesapce" in expose_functions entry (want match or metadata)`},
		{"auth:\n  rbac:\n    expose_functions:\n      - api::*\n", `line 4: expose_functions entry "api::*": want match("pattern")`},
		{"queues:\n  jobs:\n    retries: 2\n", `line 3: unknown key "retries"; valid keys under queues.jobs: max_retries, backoff_ms`},
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
	// A queue entry starts from the queue defaults.
	if c, err := loadYAML(t, "queues:\n  jobs:\n    concurrency: 2\n"); err != nil || c.Queues["jobs"].MaxRetries != engine.DefaultQueueConfig().MaxRetries || c.Queues["jobs"].Concurrency != 2 {
		t.Errorf("partial queue entry: %v, %+v", err, c.Queues["jobs"])
	}
	// A section left empty keeps its defaults.
	if c, err := loadYAML(t, "channels:\nhttp:\n"); err != nil || c.Channels != engine.DefaultConfig().Channels {
		t.Errorf("empty sections: %v, %+v", err, c.Channels)
	}
}

// The example sluice.yaml in docs/configuration.md loads.
func TestConfigurationDocExample(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
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

func TestConfigFileMissing(t *testing.T) {
	c := engine.DefaultConfig()
	err := loadConfigFile(&c, t.TempDir()+"/nope.yaml")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "config file") || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("loadConfigFile of a missing file: %v", err)
	}
}
