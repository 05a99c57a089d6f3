package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/auth"
)

// TestValidateNamesTheSettingMore: the rules TestValidateNamesTheSetting
// does not list (console, per-worker bounds, timeouts, data dir, origins,
// auth, listeners, queues, state) name the setting they refuse, and their
// boundary values are accepted.
func TestValidateNamesTheSettingMore(t *testing.T) {
	listener := func(name, addr string) WorkerListenerConfig { return WorkerListenerConfig{Name: name, Addr: addr} }
	for _, c := range []struct {
		key    string
		mutate func(*Config)
	}{
		{"console_addr", func(c *Config) { c.ConsoleAddr = "localhost" }},
		{"max_pending_bytes_per_worker", func(c *Config) { c.MaxPendingBytesPerWorker = 64<<10 - 1 }},
		{"invocation_timeout", func(c *Config) { c.InvocationTimeout = -time.Second }},
		{"worker_idle_timeout", func(c *Config) { c.WorkerIdleTimeout = -time.Second }},
		{"worker_idle_timeout", func(c *Config) { c.WorkerIdleTimeout = 99 * time.Millisecond }},
		{"data_dir", func(c *Config) { c.DataDir = "" }},
		{"http_functions.default_timeout", func(c *Config) { c.HTTPFunctions.DefaultTimeout = 0 }},
		{"http_functions.default_timeout", func(c *Config) { c.HTTPFunctions.MaxTimeout = c.HTTPFunctions.DefaultTimeout - 1 }},
		{"http_functions.max_response_bytes", func(c *Config) { c.HTTPFunctions.MaxResponseBytes = 0 }},
		{"http_functions.max_concurrent", func(c *Config) { c.HTTPFunctions.MaxConcurrent = 0 }},
		{"http_functions.url_allowlist", func(c *Config) { c.HTTPFunctions.URLAllowlist = []string{"[bad"} }},
		{"data_sync", func(c *Config) { c.DataSync = "always" }},
		{"allowed_origins", func(c *Config) { c.AllowedOrigins = []string{"https://ok.example", "ok.example"} }},
		{"allowed_origins", func(c *Config) { c.AllowedOrigins = []string{"https://ok.example/path"} }},
		{"auth.tokens", func(c *Config) { c.Auth.Tokens = []string{"short"} }},
		{"auth.rbac", func(c *Config) { c.Auth.RBAC = &auth.RBAC{ExposeFunctions: []auth.Filter{{}}} }},
		{"worker_listeners[0].addr", func(c *Config) { c.WorkerListeners = []WorkerListenerConfig{listener("a", "")} }},
		{`worker_listeners[1].name "a" is used twice`, func(c *Config) {
			c.WorkerListeners = []WorkerListenerConfig{listener("a", "127.0.0.1:0"), listener("a", "127.0.0.1:0")}
		}},
		{"worker_listeners[0].auth.tokens", func(c *Config) {
			l := listener("a", "127.0.0.1:0")
			l.Auth.Tokens = []string{"0123456789abcde"}
			c.WorkerListeners = []WorkerListenerConfig{l}
		}},
		{`queue "q"`, func(c *Config) {
			q := DefaultQueueConfig()
			q.Concurrency = 0
			c.Queues = map[string]QueueConfig{"q": q}
		}},
		{"state.max_value_bytes", func(c *Config) { c.State.MaxValueBytes = -1 }},
	} {
		cfg := DefaultConfig()
		c.mutate(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%s: Validate() = %v, want an error naming it", c.key, err)
		}
	}
	for _, c := range []struct {
		what   string
		mutate func(*Config)
	}{
		{"worker_idle_timeout 0 (off)", func(c *Config) { c.WorkerIdleTimeout = 0 }},
		{"worker_idle_timeout 100ms", func(c *Config) { c.WorkerIdleTimeout = 100 * time.Millisecond }},
		{"max_pending_bytes_per_worker 64 KiB", func(c *Config) { c.MaxPendingBytesPerWorker = 64 << 10 }},
		{"invocation_timeout 0 (off)", func(c *Config) { c.InvocationTimeout = 0 }},
		{"data_sync full", func(c *Config) { c.DataSync = "full" }},
		{"console_addr empty (off)", func(c *Config) { c.ConsoleAddr = "" }},
		{"origins *, null and scheme://host:port/", func(c *Config) {
			c.AllowedOrigins = []string{"*", "null", "http://127.0.0.1:8080/"}
		}},
		{"a 16-character token", func(c *Config) { c.Auth.Tokens = []string{"0123456789abcdef"} }},
		{"two unnamed listeners", func(c *Config) {
			c.WorkerListeners = []WorkerListenerConfig{listener("", "127.0.0.1:0"), listener("", "127.0.0.1:0")}
		}},
		{"state.max_value_bytes 0", func(c *Config) { c.State.MaxValueBytes = 0 }},
	} {
		cfg := DefaultConfig()
		c.mutate(&cfg)
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: Validate() = %v, want it accepted", c.what, err)
		}
	}
}

// TestValidateOTel: with an endpoint set, each otel.* bound names its
// setting; without one, the bounds are not checked (export is off).
func TestValidateOTel(t *testing.T) {
	for _, c := range []struct {
		key    string
		mutate func(*OTelConfig)
	}{
		{"otel.endpoint", func(o *OTelConfig) { o.Endpoint = "localhost:4318" }},
		{"otel.max_queue_spans", func(o *OTelConfig) { o.MaxQueueSpans = 0 }},
		{"otel.max_queue_bytes", func(o *OTelConfig) { o.MaxQueueBytes = 64<<10 - 1 }},
		{"otel.flush_interval and otel.timeout", func(o *OTelConfig) { o.FlushInterval = 0 }},
		{"otel.flush_interval and otel.timeout", func(o *OTelConfig) { o.Timeout = -time.Second }},
	} {
		cfg := DefaultConfig()
		cfg.OTel.Endpoint = "http://127.0.0.1:4318"
		c.mutate(&cfg.OTel)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%s: Validate() = %v, want an error naming it", c.key, err)
		}
		cfg.OTel.Endpoint = ""
		if c.key != "otel.endpoint" {
			if err := cfg.Validate(); err != nil {
				t.Errorf("%s without an endpoint: %v, want it accepted (export off)", c.key, err)
			}
		}
	}
	cfg := DefaultConfig()
	cfg.OTel.Endpoint, cfg.OTel.MaxQueueBytes = "https://collector.example:4318", 64<<10
	if err := cfg.Validate(); err != nil {
		t.Errorf("an https endpoint with the smallest queue: %v", err)
	}
}
