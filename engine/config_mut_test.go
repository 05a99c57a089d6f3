package engine

import (
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/auth"
)

// validateCase is one setting change: refused naming key, or accepted
// (key "").
type validateCase struct {
	what   string
	key    string
	mutate func(*Config)
}

func checkValidate(t *testing.T, cases []validateCase) {
	t.Helper()
	for _, c := range cases {
		cfg := DefaultConfig()
		c.mutate(&cfg)
		err := cfg.Validate()
		switch {
		case c.key == "" && err != nil:
			t.Errorf("%s: Validate() = %v, want it accepted", c.what, err)
		case c.key != "" && (err == nil || !strings.Contains(err.Error(), c.key)):
			t.Errorf("%s: Validate() = %v, want an error naming %q", c.what, err, c.key)
		}
	}
}

// TestValidateBoundaries: each bound of Config.Validate and
// HTTPFunctionsConfig.validate refuses the value just past it and accepts
// the value on it. Kills config.go:427–475 and :534–539
// CONDITIONALS_BOUNDARY / CONDITIONALS_NEGATION (e.g. `MaxMessageSize <
// 1024` → `<= 1024` refuses 1024; `Max < MaxPerWorker` → `<=` refuses
// equal bounds).
func TestValidateBoundaries(t *testing.T) {
	checkValidate(t, []validateCase{
		{"observe per worker 0", "observe.max_observers_per_worker", func(c *Config) { c.Observe.MaxPerWorker = 0 }},
		{"observe per worker 1", "", func(c *Config) { c.Observe.MaxPerWorker = 1 }},
		{"observe max below per worker", "observe.max_observers_per_worker", func(c *Config) { c.Observe.Max = c.Observe.MaxPerWorker - 1 }},
		{"observe max equal to per worker", "", func(c *Config) { c.Observe.Max = c.Observe.MaxPerWorker }},
		{"reconnect grace 999ms", "observe.reconnect_grace", func(c *Config) { c.Observe.ReconnectGrace = time.Second - time.Millisecond }},
		{"reconnect grace 1s", "", func(c *Config) { c.Observe.ReconnectGrace = time.Second }},
		{"addr set", "", func(c *Config) { c.Addr = "127.0.0.1:0" }},
		{"console_addr valid", "", func(c *Config) { c.ConsoleAddr = "127.0.0.1:0" }},
		{"max_message_size 1023", "max_message_size", func(c *Config) { c.MaxMessageSize = 1023 }},
		{"max_message_size 1024", "", func(c *Config) { c.MaxMessageSize = 1024 }},
		{"default buffer 1", "", func(c *Config) { c.Channels.DefaultBuffer = 1 }},
		{"max buffer 1", "", func(c *Config) { c.Channels.MaxBuffer = 1 }},
		{"max_frame_size 1023", "channels.max_frame_size", func(c *Config) { c.Channels.MaxFrameSize = 1023 }},
		{"max_frame_size 1024", "", func(c *Config) { c.Channels.MaxFrameSize = 1024 }},
		{"ttl 1ns", "", func(c *Config) { c.Channels.TTL = 1 }},
		{"ttl negative", "channels.ttl", func(c *Config) { c.Channels.TTL = -1 }},
		{"max_channels 1", "", func(c *Config) { c.Channels.MaxChannels = 1 }},
		{"max_per_worker 1", "", func(c *Config) { c.Channels.MaxPerWorker = 1 }},
		{"max_buffer_bytes 64 KiB - 1", "channels.max_buffer_bytes", func(c *Config) { c.Channels.MaxBufferBytes = 64<<10 - 1 }},
		{"max_buffer_bytes 64 KiB", "", func(c *Config) { c.Channels.MaxBufferBytes = 64 << 10 }},
		{"total buffer equal to frame size", "", func(c *Config) { c.Channels.MaxTotalBufferBytes = c.Channels.MaxFrameSize }},
		{"http.timeout 1ns", "", func(c *Config) { c.HTTP.Timeout = 1 }},
		{"http.timeout negative", "http.timeout", func(c *Config) { c.HTTP.Timeout = -1 }},
		{"max_json_body 0", "", func(c *Config) { c.HTTP.MaxJSONBody = 0 }},
		{"idle_timeout 1ns", "", func(c *Config) { c.HTTP.IdleTimeout = 1 }},
		{"idle_timeout negative", "http.idle_timeout", func(c *Config) { c.HTTP.IdleTimeout = -1 }},
		{"max_concurrent_requests 1", "", func(c *Config) { c.HTTP.MaxConcurrentRequests = 1 }},
		{"buffered json equal to max body", "", func(c *Config) { c.HTTP.MaxBufferedJSONBytes = c.HTTP.MaxJSONBody }},
		{"shutdown_timeout 1ns", "", func(c *Config) { c.ShutdownTimeout = 1 }},
		{"shutdown_timeout negative", "shutdown_timeout", func(c *Config) { c.ShutdownTimeout = -1 }},
		{"tls key only", "tls.cert_file and tls.key_file", func(c *Config) { c.TLS.KeyFile = "key.pem" }},
		{"tls both files", "", func(c *Config) { c.TLS.CertFile, c.TLS.KeyFile = "cert.pem", "key.pem" }},
		{"max_id_length 63", "max_id_length", func(c *Config) { c.MaxIDLength = minIDLength - 1 }},
		{"max_id_length 64", "", func(c *Config) { c.MaxIDLength = minIDLength }},
		{"invocation_timeout 1ns", "", func(c *Config) { c.InvocationTimeout = 1 }},
		{"worker_idle_timeout 1h", "", func(c *Config) { c.WorkerIdleTimeout = time.Hour }},
		{"worker_idle_timeout 1ns", "worker_idle_timeout", func(c *Config) { c.WorkerIdleTimeout = 1 }},
		{"namespace grace 10ms - 1ns", "registration_namespace_grace", func(c *Config) { c.RegistrationNamespaceGrace = 10*time.Millisecond - 1 }},
		{"namespace grace 10ms", "", func(c *Config) { c.RegistrationNamespaceGrace = 10 * time.Millisecond }},
		{"namespace grace 1m", "", func(c *Config) { c.RegistrationNamespaceGrace = time.Minute }},
		{"namespace grace 1m + 1ns", "registration_namespace_grace", func(c *Config) { c.RegistrationNamespaceGrace = time.Minute + 1 }},
		{"data_dir memory", "", func(c *Config) { c.DataDir = DataDirMemory }},
		{"data_sync normal", "", func(c *Config) { c.DataSync = "normal" }},
		{"data_sync empty", "data_sync", func(c *Config) { c.DataSync = "" }},
		{"http_functions default 1ns", "", func(c *Config) { c.HTTPFunctions.DefaultTimeout = 1 }},
		{"http_functions default negative", "http_functions.default_timeout", func(c *Config) { c.HTTPFunctions.DefaultTimeout = -1 }},
		{"http_functions max equal to default", "", func(c *Config) { c.HTTPFunctions.MaxTimeout = c.HTTPFunctions.DefaultTimeout }},
		{"http_functions max_response_bytes 1", "", func(c *Config) { c.HTTPFunctions.MaxResponseBytes = 1 }},
		{"http_functions max_concurrent 1", "", func(c *Config) { c.HTTPFunctions.MaxConcurrent = 1 }},
		{"http_functions allowlist", "", func(c *Config) { c.HTTPFunctions.URLAllowlist = []string{"https://*.example.com/*"} }},
		{"a queue", "", func(c *Config) { c.Queues = map[string]QueueConfig{"q": DefaultQueueConfig()} }},
		{"listener token 16 chars", "", func(c *Config) {
			c.WorkerListeners = []WorkerListenerConfig{{Name: "a", Addr: "127.0.0.1:0", Auth: AuthConfig{Tokens: []string{"0123456789abcdef"}}}}
		}},
		{"listener token 15 chars", "worker_listeners[0].auth.tokens", func(c *Config) {
			c.WorkerListeners = []WorkerListenerConfig{{Name: "a", Addr: "127.0.0.1:0", Auth: AuthConfig{Tokens: []string{"0123456789abcde"}}}}
		}},
		{"two named listeners", "", func(c *Config) {
			c.WorkerListeners = []WorkerListenerConfig{{Name: "a", Addr: "127.0.0.1:0"}, {Name: "b", Addr: "127.0.0.1:0"}}
		}},
		{"rbac valid", "", func(c *Config) {
			c.Auth.RBAC = &auth.RBAC{ExposeFunctions: []auth.Filter{{Pattern: "public::*"}}}
		}},
		{"otel bad", "otel.", func(c *Config) { c.OTel.Endpoint, c.OTel.MaxQueueSpans = "http://127.0.0.1:4318", 0 }},
		{"cluster bad", "cluster.", func(c *Config) { c.Cluster.Enabled, c.Cluster.Replicas = true, -1 }},
	})
}

// TestClusterConfigValidate: every rule of ClusterConfig.validate refuses
// what it names and accepts its boundary. Kills config.go:183–213 (On's
// three conditions, each switch case's comparisons: listen with nats_url,
// peers, listen, advertise, the memory data dir, the secret's 16
// characters, replicas 0–5, start_timeout, node_timeout ≥ 500ms, nats_tls,
// each peer). Before it, only cmd/sluice's tests reached three of them.
func TestClusterConfigValidate(t *testing.T) {
	on := func(f func(*Config)) func(*Config) {
		return func(c *Config) {
			c.DataDir = t.TempDir()
			c.Cluster.Listen, c.Cluster.Peers = "127.0.0.1:6222", []string{"127.0.0.1:6223"}
			f(c)
		}
	}
	checkValidate(t, []validateCase{
		{"off: nothing checked", "", func(c *Config) { c.Cluster.Replicas, c.Cluster.StartTimeout = 99, 0 }},
		{"enabled alone is on", "cluster.replicas", func(c *Config) { c.Cluster.Enabled, c.Cluster.Replicas = true, 6 }},
		{"listen alone is on", "cluster.replicas", on(func(c *Config) { c.Cluster.Replicas = 6 })},
		{"nats_url alone is on", "cluster.replicas", func(c *Config) { c.Cluster.NATSURL, c.Cluster.Replicas = "nats://127.0.0.1:4222", 6 }},
		{"embedded, listening", "", on(func(*Config) {})},
		{"external nats, memory data dir", "", func(c *Config) { c.DataDir, c.Cluster.NATSURL = DataDirMemory, "nats://127.0.0.1:4222" }},
		{"listen and nats_url", "exclude each other", on(func(c *Config) { c.Cluster.NATSURL = "nats://127.0.0.1:4222" })},
		{"peers without listen", "cluster.peers need cluster.listen", func(c *Config) {
			c.DataDir, c.Cluster.Enabled, c.Cluster.Peers = t.TempDir(), true, []string{"127.0.0.1:6223"}
		}},
		{"listen without peers", "cluster.listen needs cluster.peers", on(func(c *Config) { c.Cluster.Peers = nil })},
		{"peers with listen", "", on(func(c *Config) { c.Cluster.Peers = []string{"127.0.0.1:6223", "10.0.0.2:6222"} })},
		{"a bad peer", `cluster.peers: "nohostport"`, on(func(c *Config) { c.Cluster.Peers = []string{"127.0.0.1:6223", "nohostport"} })},
		{"listen not host:port", "cluster.listen", func(c *Config) { c.DataDir, c.Cluster.Listen = t.TempDir(), "6222" }},
		{"advertise without listen", "cluster.advertise", func(c *Config) {
			c.DataDir, c.Cluster.Enabled, c.Cluster.Advertise = t.TempDir(), true, "10.0.0.1:6222"
		}},
		{"advertise not host:port", "cluster.advertise", on(func(c *Config) { c.Cluster.Advertise = "10.0.0.1" })},
		{"advertise with listen", "", on(func(c *Config) { c.Cluster.Advertise = "10.0.0.1:6222" })},
		{"embedded in memory", "keeps JetStream on disk", on(func(c *Config) { c.DataDir = DataDirMemory })},
		{"embedded in memory with a store dir", "", on(func(c *Config) { c.DataDir, c.Cluster.StoreDir = DataDirMemory, t.TempDir() })},
		{"secret 15 characters", "cluster.secret", on(func(c *Config) { c.Cluster.Secret = strings.Repeat("s", 15) })},
		{"secret 16 characters", "", on(func(c *Config) { c.Cluster.Secret = strings.Repeat("s", 16) })},
		{"replicas -1", "cluster.replicas", on(func(c *Config) { c.Cluster.Replicas = -1 })},
		{"replicas 0", "", on(func(c *Config) { c.Cluster.Replicas = 0 })},
		{"replicas 5", "", on(func(c *Config) { c.Cluster.Replicas = 5 })},
		{"replicas 6", "cluster.replicas", on(func(c *Config) { c.Cluster.Replicas = 6 })},
		{"start_timeout 0", "cluster.start_timeout", on(func(c *Config) { c.Cluster.StartTimeout = 0 })},
		{"start_timeout 1ns", "", on(func(c *Config) { c.Cluster.StartTimeout = 1 })},
		{"node_timeout 500ms - 1ns", "cluster.node_timeout", on(func(c *Config) { c.Cluster.NodeTimeout = 500*time.Millisecond - 1 })},
		{"node_timeout 500ms", "", on(func(c *Config) { c.Cluster.NodeTimeout = 500 * time.Millisecond })},
		{"nats_tls cert only", "cluster.nats_tls", on(func(c *Config) { c.Cluster.NATSTLS.CertFile = "c.pem" })},
		{"nats_tls key only", "cluster.nats_tls", on(func(c *Config) { c.Cluster.NATSTLS.KeyFile = "k.pem" })},
		{"nats_tls both", "", on(func(c *Config) { c.Cluster.NATSTLS.CertFile, c.Cluster.NATSTLS.KeyFile = "c.pem", "k.pem" })},
	})
}

// TestQueueConfigValidateBoundaries: QueueConfig.Validate's bounds, each
// refused just past it and accepted on it. Kills config.go:292–304
// (`name == ""` negated, the type checks, fifo's group field, `Concurrency
// < 1` / `MaxRetries < 1` / `VisibilityTimeoutMS < 1` → `<= 1`, the three
// `< 0` of backoff, delay and dedup window → `<= 0`).
func TestQueueConfigValidateBoundaries(t *testing.T) {
	for _, c := range []struct {
		what, name, want string // want "": accepted
		mutate           func(*QueueConfig)
	}{
		{"defaults", "q", "", func(*QueueConfig) {}},
		{"no name", "", "queue name must not be empty", func(*QueueConfig) {}},
		{"type fifo with a group field", "q", "", func(q *QueueConfig) { q.Type, q.MessageGroupField = "fifo", "g" }},
		{"type fifo without", "q", "message_group_field", func(q *QueueConfig) { q.Type = "fifo" }},
		{"type other", "q", "invalid type", func(q *QueueConfig) { q.Type = "lifo" }},
		{"standard with a group field", "q", "", func(q *QueueConfig) { q.MessageGroupField = "g" }},
		{"concurrency 0", "q", "concurrency", func(q *QueueConfig) { q.Concurrency = 0 }},
		{"concurrency 1", "q", "", func(q *QueueConfig) { q.Concurrency = 1 }},
		{"max_retries 0", "q", "max_retries", func(q *QueueConfig) { q.MaxRetries = 0 }},
		{"max_retries 1", "q", "", func(q *QueueConfig) { q.MaxRetries = 1 }},
		{"backoff -1", "q", "must not be negative", func(q *QueueConfig) { q.BackoffMS = -1 }},
		{"delay -1", "q", "must not be negative", func(q *QueueConfig) { q.DelayMS = -1 }},
		{"dedup window -1", "q", "must not be negative", func(q *QueueConfig) { q.DedupWindowMS = -1 }},
		{"backoff, delay, dedup window 0", "q", "", func(q *QueueConfig) { q.BackoffMS, q.DelayMS, q.DedupWindowMS = 0, 0, 0 }},
		{"visibility 0", "q", "visibility_timeout_ms", func(q *QueueConfig) { q.VisibilityTimeoutMS = 0 }},
		{"visibility 1", "q", "", func(q *QueueConfig) { q.VisibilityTimeoutMS = 1 }},
	} {
		q := DefaultQueueConfig()
		c.mutate(&q)
		err := q.Validate(c.name)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: Validate = %v, want it accepted", c.what, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: Validate = %v, want an error with %q", c.what, err, c.want)
		}
	}
}

// TestConfigPredicates: AuthConfig.enabled and TLSConfig.Enabled. Kills
// config.go:230 (`len(Tokens) > 0` → `>= 0`, `RBAC != nil` negated) and
// :319 (either `!= ""` negated).
func TestConfigPredicates(t *testing.T) {
	for _, c := range []struct {
		a    AuthConfig
		want bool
	}{
		{AuthConfig{}, false},
		{AuthConfig{Tokens: []string{"t"}}, true},
		{AuthConfig{RBAC: &auth.RBAC{}}, true},
	} {
		if got := c.a.enabled(); got != c.want {
			t.Errorf("%+v.enabled() = %v, want %v", c.a, got, c.want)
		}
	}
	for _, c := range []struct {
		t    TLSConfig
		want bool
	}{
		{TLSConfig{}, false},
		{TLSConfig{CertFile: "c"}, true},
		{TLSConfig{KeyFile: "k"}, true},
	} {
		if got := c.t.Enabled(); got != c.want {
			t.Errorf("%+v.Enabled() = %v, want %v", c.t, got, c.want)
		}
	}
}

// TestDefaultConfigMatchesDocs: every duration, size, number and switch in
// docs/configuration.md's table is DefaultConfig's value for that key.
// Kills config.go:380–417 ARITHMETIC_BASE (`10 * time.Second` → `10 /
// time.Second`, and so on for each default duration: a zero default
// nothing else checks).
func TestDefaultConfigMatchesDocs(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]reflect.Value{}
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		for i := 0; i < v.NumField(); i++ {
			tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			f := v.Field(i)
			if f.Kind() == reflect.Struct && f.Type() != reflect.TypeOf(time.Duration(0)) {
				walk(prefix+tag+".", f)
				continue
			}
			fields[prefix+tag] = f
		}
	}
	walk("", reflect.ValueOf(DefaultConfig()))
	checked := map[string]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		cols := strings.Split(line, "|")
		if len(cols) < 6 {
			continue
		}
		key := strings.Trim(strings.TrimSpace(cols[3]), "`")
		def := strings.Trim(strings.TrimSpace(cols[4]), "`")
		f, ok := fields[key]
		if !ok {
			continue
		}
		var got, want any
		switch {
		case f.Type() == reflect.TypeOf(time.Duration(0)):
			d, err := time.ParseDuration(def)
			if err != nil {
				continue
			}
			got, want = f.Interface(), d
		case f.Type() == reflect.TypeOf(ByteSize(0)):
			b, err := ParseByteSize(def)
			if err != nil {
				continue
			}
			got, want = f.Interface(), b
		case f.Kind() == reflect.Int || f.Kind() == reflect.Int64:
			n, err := strconv.ParseInt(def, 10, 64)
			if err != nil {
				continue
			}
			got, want = f.Int(), n
		case f.Kind() == reflect.Bool:
			b, err := strconv.ParseBool(def)
			if err != nil {
				continue
			}
			got, want = f.Bool(), b
		default:
			continue
		}
		checked[key] = true
		if got != want {
			t.Errorf("%s: DefaultConfig has %v, docs/configuration.md says %s", key, got, def)
		}
	}
	for _, key := range []string{"max_message_size", "invocation_timeout", "worker_idle_timeout", "registration_namespace_grace",
		"shutdown_timeout", "channels.ttl", "http.timeout", "http.idle_timeout", "observe.max_observers", "observe.reconnect_grace",
		"http_functions.default_timeout", "http_functions.max_timeout", "cluster.start_timeout", "cluster.node_timeout"} {
		if !checked[key] {
			t.Errorf("%s: not found in docs/configuration.md's table with a default the test can read", key)
		}
	}
}
