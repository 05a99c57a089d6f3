package engine

import (
	"fmt"
	"path"
	"time"

	"github.com/sluicehq/sluice/internal/auth"
	"github.com/sluicehq/sluice/internal/httpfunc"
	"github.com/sluicehq/sluice/internal/registry"
)

// Config is everything an engine can be told. The zero value is not useful:
// start from DefaultConfig, which is what `sluice serve` runs with when no
// flag, environment variable or config file says otherwise.
type Config struct {
	// Addr is the worker listener (WebSocket: "/", "/otel", "/ws/channels/").
	Addr string `yaml:"addr"`
	// HTTPAddr is the listener for HTTP triggers.
	HTTPAddr string `yaml:"http_addr"`
	// MaxMessageSize bounds one frame on a worker socket.
	MaxMessageSize ByteSize `yaml:"max_message_size"`
	// AllowedOrigins lists the browser origins (scheme://host[:port], or
	// "*" for any) that may open WebSockets on the worker listener besides
	// local ones; a handshake with another Origin header is refused (403).
	// Workers send no Origin.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// ConsoleAddr is the admin listener (Prometheus /metrics, /healthz);
	// "" disables it. It is served without auth: keep it on loopback or a
	// private network.
	ConsoleAddr string `yaml:"console_addr"`
	// ShutdownTimeout bounds a graceful shutdown.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// MaxIDLength bounds function, trigger and trigger type ids, in bytes.
	MaxIDLength int `yaml:"max_id_length"`
	// MaxPendingBytesPerWorker bounds the bytes waiting to be written to
	// one worker socket. Past it, calls to the worker's functions fail at
	// once and results for it are replaced by errors (worker_congested);
	// at twice this it is disconnected as too slow. No reader ever waits
	// on another connection's socket.
	MaxPendingBytesPerWorker ByteSize `yaml:"max_pending_bytes_per_worker"`
	// InvocationTimeout is the engine's deadline for the result of an
	// invocation routed to a worker, answered with TIMEOUT; 0 disables it.
	InvocationTimeout time.Duration `yaml:"invocation_timeout"`
	// WorkerIdleTimeout disconnects a worker from which nothing (not even
	// a pong to the engine's pings) arrived for this long; 0 disables it.
	WorkerIdleTimeout time.Duration `yaml:"worker_idle_timeout"`
	// RegistrationNamespaceGrace is how long a connection that has not yet
	// declared its namespace (engine::workers::register) may keep a
	// registration that conflicts in the default namespace on hold before
	// the engine settles it there (docs/protocol.md#namespaces).
	RegistrationNamespaceGrace time.Duration `yaml:"registration_namespace_grace"`
	// Channels configures channel pipes.
	Channels ChannelsConfig `yaml:"channels"`
	// HTTP configures HTTP triggers.
	HTTP HTTPConfig `yaml:"http"`
	// TLS serves both listeners over TLS (wss://, https://) when set.
	TLS TLSConfig `yaml:"tls"`
	// Auth guards the main worker listener (Addr). Empty: no auth.
	Auth AuthConfig `yaml:"auth"`
	// WorkerListeners are further worker listeners, each with its own auth
	// (e.g. an RBAC listener for untrusted workers next to a trusted Addr).
	WorkerListeners []WorkerListenerConfig `yaml:"worker_listeners"`
	// DataDir holds the engine's durable store (queues). "memory" keeps
	// everything in RAM (tests, throwaway runs). The store file is created
	// on first use.
	DataDir string `yaml:"data_dir"`
	// DataSync is the store's commit durability: "normal" (survives a crash
	// of the engine) or "full" (fsync per group commit: survives power loss).
	DataSync string `yaml:"data_sync"`
	// Queues declares named queues; "default" always exists.
	Queues map[string]QueueConfig `yaml:"queues"`
	// State, Streams, PubSub and Cron are the platform modules (modules.go).
	State   StateConfig   `yaml:"state"`
	Streams StreamsConfig `yaml:"streams"`
	PubSub  PubSubConfig  `yaml:"pubsub"`
	Cron    ModuleConfig  `yaml:"cron"`
	// OTel exports traces, logs and metrics over OTLP/HTTP (otel.go).
	OTel OTelConfig `yaml:"otel"`
	// Observe bounds observers (observe.v1, observe.go).
	Observe ObserveConfig `yaml:"observe"`
	// HTTPFunctions governs HTTP-invoked functions (security.md#http-invoked-functions).
	HTTPFunctions HTTPFunctionsConfig `yaml:"http_functions"`
	// Cluster makes the engine a node of a cluster on NATS (cluster.go,
	// docs/cluster.md). Off by default: then nothing of NATS starts.
	Cluster ClusterConfig `yaml:"cluster"`
}

// HTTPFunctionsConfig governs functions registered with an `invocation`
// object, which the engine calls over HTTP (docs/security.md#http-invoked-functions).
type HTTPFunctionsConfig struct {
	// Enabled: when false every such registration is refused.
	Enabled bool `yaml:"enabled"`
	// URLAllowlist: host globs a URL must match (empty: any host).
	URLAllowlist []string `yaml:"url_allowlist"`
	// BlockPrivateIPs refuses loopback, private, link-local (cloud
	// metadata), CGNAT and multicast addresses, on the IP dialled.
	BlockPrivateIPs bool `yaml:"block_private_ips"`
	// RequireHTTPS refuses http:// URLs.
	RequireHTTPS bool `yaml:"require_https"`
	// SecretEnvs: environment variables invocation.auth may name.
	SecretEnvs []string `yaml:"secret_envs"`
	// DefaultTimeout applies without timeout_ms; MaxTimeout caps timeout_ms.
	DefaultTimeout time.Duration `yaml:"default_timeout"`
	MaxTimeout     time.Duration `yaml:"max_timeout"`
	// MaxResponseBytes bounds a response body (http_response_too_large).
	MaxResponseBytes ByteSize `yaml:"max_response_bytes"`
	// MaxConcurrent bounds calls in flight (http_functions_busy beyond).
	MaxConcurrent int `yaml:"max_concurrent"`
}

func (c HTTPFunctionsConfig) executorConfig() httpfunc.Config {
	return httpfunc.Config{
		Enabled: c.Enabled, URLAllowlist: c.URLAllowlist, BlockPrivateIPs: c.BlockPrivateIPs,
		RequireHTTPS: c.RequireHTTPS, SecretEnvs: c.SecretEnvs, DefaultTimeout: c.DefaultTimeout,
		MaxTimeout: c.MaxTimeout, MaxResponseBytes: int64(c.MaxResponseBytes), MaxConcurrent: c.MaxConcurrent,
	}
}

// ObserveConfig bounds what workers can create with observe (security.md#observe).
type ObserveConfig struct {
	// MaxPerWorker observers one connection may hold (LIMIT_EXCEEDED past it).
	MaxPerWorker int `yaml:"max_observers_per_worker"`
	// Max observers in the engine.
	Max int `yaml:"max_observers"`
	// ReconnectGrace keeps the observers of a disconnected worker
	// (suspended) for it to replay them; then they are disposed.
	ReconnectGrace time.Duration `yaml:"reconnect_grace"`
}

// ClusterConfig is cluster mode: an embedded nats-server with routes to the
// other nodes, or an external NATS deployment (NATSURL). Queues and state
// then live in JetStream, shared by every node.
type ClusterConfig struct {
	// Enabled turns cluster mode on; Listen or NATSURL imply it. Enabled
	// alone runs a one-node embedded JetStream.
	Enabled bool `yaml:"enabled"`
	// NodeName is this node's stable name (lease owner, server name); ""
	// is the host name. Each node of a cluster needs its own.
	NodeName string `yaml:"node_name"`
	// Name is the embedded cluster's name; every node must use the same.
	Name string `yaml:"name"`
	// Listen is the embedded NATS route listener, host:port.
	Listen string `yaml:"listen"`
	// Peers are the other nodes' route listeners, host:port.
	Peers []string `yaml:"peers"`
	// Advertise is the route address the other nodes are told to reach
	// this node at (NATS gossip), host:port; "" is Listen. Set it when the
	// peers reach this node at another address (NAT, a proxy).
	Advertise string `yaml:"advertise"`
	// Secret, when set, authenticates the embedded NATS routes: every node
	// must have the same (at least 16 characters). File or environment
	// only, never a flag (ps shows flags).
	Secret string `yaml:"secret"`
	// RouteTLS encrypts the embedded NATS routes with mutual TLS: each node
	// presents CertFile/KeyFile and accepts only peers whose certificate
	// chains to CAFile (all three, or none: routes unencrypted).
	RouteTLS NATSTLSConfig `yaml:"route_tls"`
	// StoreDir is the embedded JetStream directory; "" is <data_dir>/nats.
	StoreDir string `yaml:"store_dir"`
	// NATSURL is an external NATS deployment (comma-separated URLs); no
	// server is embedded then.
	NATSURL string `yaml:"nats_url"`
	// NATSCreds is a credentials file for NATSURL.
	NATSCreds string `yaml:"nats_creds"`
	// NATSTLS is the client TLS for NATSURL (CA to trust, client certificate).
	NATSTLS NATSTLSConfig `yaml:"nats_tls"`
	// Replicas of the JetStream buckets; 0: 3 with three or more embedded
	// nodes, else 1 (set it for an external cluster).
	Replicas int `yaml:"replicas"`
	// StartTimeout bounds the wait at start for NATS and JetStream (a new
	// cluster must elect a leader, which needs a majority of the nodes).
	StartTimeout time.Duration `yaml:"start_timeout"`
	// NodeTimeout: a node not heard from for this long has left; the others
	// take over the queue jobs it held.
	NodeTimeout time.Duration `yaml:"node_timeout"`
}

// NATSTLSConfig is TLS files: of the connection to an external NATS
// (nats_tls), or of the embedded NATS routes (route_tls).
type NATSTLSConfig struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// On reports whether cluster mode is on.
func (c ClusterConfig) On() bool { return c.Enabled || c.Listen != "" || c.NATSURL != "" }

func (c ClusterConfig) validate(dataDir string) error {
	if err := c.validateRouteTLS(); err != nil || !c.On() {
		return err
	}
	switch {
	case c.Listen != "" && c.NATSURL != "":
		return fmt.Errorf("config: cluster.listen (embedded NATS) and cluster.nats_url (external NATS) exclude each other")
	case len(c.Peers) > 0 && c.Listen == "":
		return fmt.Errorf("config: cluster.peers need cluster.listen")
	case c.Listen != "" && !validHostPort(c.Listen):
		return fmt.Errorf("config: cluster.listen %q: want host:port, e.g. 0.0.0.0:6222", c.Listen)
	case c.Listen != "" && len(c.Peers) == 0:
		// nats-server refuses a JetStream cluster without routes, and the
		// start would only time out.
		return fmt.Errorf("config: cluster.listen needs cluster.peers (the other nodes' route addresses); for one node alone use cluster mode without cluster.listen")
	case c.Advertise != "" && (c.Listen == "" || !validHostPort(c.Advertise)):
		return fmt.Errorf("config: cluster.advertise %q: want host:port, with cluster.listen set", c.Advertise)
	case c.NATSURL == "" && c.StoreDir == "" && dataDir == DataDirMemory:
		return fmt.Errorf("config: cluster mode with embedded NATS keeps JetStream on disk: set data_dir (or cluster.store_dir), not %q", DataDirMemory)
	case c.Secret != "" && len(c.Secret) < 16:
		return fmt.Errorf("config: cluster.secret must be at least 16 characters")
	case c.Replicas < 0 || c.Replicas > 5:
		return fmt.Errorf("config: cluster.replicas %d: want 0 (automatic) to 5", c.Replicas)
	case c.StartTimeout <= 0:
		return fmt.Errorf("config: cluster.start_timeout must be positive")
	case c.NodeTimeout < 500*time.Millisecond:
		return fmt.Errorf("config: cluster.node_timeout must be at least 500ms")
	case (c.NATSTLS.CertFile == "") != (c.NATSTLS.KeyFile == ""):
		return fmt.Errorf("config: cluster.nats_tls.cert_file and key_file must be set together")
	}
	for _, p := range c.Peers {
		if !validHostPort(p) {
			return fmt.Errorf("config: cluster.peers: %q: want host:port", p)
		}
	}
	return nil
}

// set reports whether any file is given.
func (t NATSTLSConfig) set() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

func (c ClusterConfig) validateRouteTLS() error {
	switch t := c.RouteTLS; {
	case !t.set():
		return nil
	case c.NATSURL != "":
		return fmt.Errorf("config: cluster.route_tls is for the embedded NATS routes; an external NATS (cluster.nats_url) has its own TLS configuration (cluster.nats_tls for the engine's connection)")
	case c.Listen == "":
		return fmt.Errorf("config: cluster.route_tls needs cluster.listen (routes to encrypt)")
	case t.CertFile == "" || t.KeyFile == "" || t.CAFile == "":
		return fmt.Errorf("config: cluster.route_tls.cert_file, key_file and ca_file must be set together (mutual TLS: each node verifies the others' certificates against the CA)")
	}
	return nil
}

// AuthConfig is the authentication and authorization of a worker listener.
type AuthConfig struct {
	// Tokens: when not empty, a worker must present one of them
	// (Authorization: Bearer <token>, or ?token=<token>) or gets HTTP 401.
	Tokens []string `yaml:"tokens"`
	// RBAC, when set, subjects every connection to the upstream engine's
	// worker RBAC (auth function, expose filters, registration hooks).
	RBAC *auth.RBAC `yaml:"rbac"`
}

// enabled reports whether the listener checks anything.
func (a *AuthConfig) enabled() bool { return len(a.Tokens) > 0 || a.RBAC != nil }

// WorkerListenerConfig is one extra worker listener.
type WorkerListenerConfig struct {
	// Name labels the listener in logs.
	Name string `yaml:"name"`
	// Addr is where it listens.
	Addr string     `yaml:"addr"`
	Auth AuthConfig `yaml:"auth"`
}

// DataDirMemory is the DataDir value that keeps queues in memory only.
const DataDirMemory = "memory"

// QueueConfig is one named queue (upstream's queue_configs entry). Fields
// left out of a YAML entry keep their defaults (DefaultQueueConfig).
type QueueConfig struct {
	// MaxRetries is how many deliveries a job gets before it goes to the
	// dead-letter queue.
	MaxRetries int `yaml:"max_retries" json:"max_retries"`
	// BackoffMS is the base retry delay: backoff_ms × 2^(attempt−1).
	BackoffMS int64 `yaml:"backoff_ms" json:"backoff_ms"`
	// Concurrency bounds the jobs delivered at once (FIFO: message groups
	// served at once, each one job at a time).
	Concurrency int `yaml:"concurrency" json:"concurrency"`
	// Type is "standard" or "fifo".
	Type string `yaml:"type" json:"type"`
	// MessageGroupField names the payload field whose value is a FIFO
	// job's message group (required for fifo).
	MessageGroupField string `yaml:"message_group_field" json:"message_group_field,omitempty"`
	// VisibilityTimeoutMS bounds one delivery: no answer by then counts as
	// a failed attempt.
	VisibilityTimeoutMS int64 `yaml:"visibility_timeout_ms" json:"visibility_timeout_ms"`
	// DelayMS delays a job's first delivery.
	DelayMS int64 `yaml:"delay_ms" json:"delay_ms"`
	// DedupField names a payload field: a job whose field value was already
	// enqueued on this queue within DedupWindowMS is not stored again, and
	// the first job's receipt is returned.
	DedupField string `yaml:"dedup_field" json:"dedup_field,omitempty"`
	// DedupWindowMS is how long a deduplication value is remembered.
	DedupWindowMS int64 `yaml:"dedup_window_ms" json:"dedup_window_ms"`
}

// DefaultQueueConfig is the configuration of the default queue and of
// every field a queue entry leaves out.
func DefaultQueueConfig() QueueConfig {
	return QueueConfig{MaxRetries: 3, BackoffMS: 1000, Concurrency: 10, Type: "standard", VisibilityTimeoutMS: 30_000, DedupWindowMS: 300_000}
}

// UnmarshalYAML starts from the defaults so that a partial entry is valid.
// It has the legacy form of yaml's Unmarshaler (a decode function, not a
// node), so that this package needs no YAML library (cmd/sluice reads the
// file; its key check covers the entry's keys).
func (q *QueueConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*q = DefaultQueueConfig()
	type plain QueueConfig
	return unmarshal((*plain)(q))
}

// Validate reports a queue setting that cannot work.
func (q QueueConfig) Validate(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("queue name must not be empty")
	case q.Type != "standard" && q.Type != "fifo":
		return fmt.Errorf("queue %q has invalid type %q: must be \"standard\" or \"fifo\"", name, q.Type)
	case q.Type == "fifo" && q.MessageGroupField == "":
		return fmt.Errorf("queue %q is of type \"fifo\" but message_group_field is not set", name)
	case q.Concurrency < 1:
		return fmt.Errorf("queue %q: concurrency must be at least 1", name)
	case q.MaxRetries < 1:
		return fmt.Errorf("queue %q: max_retries must be at least 1 (it counts deliveries)", name)
	case q.BackoffMS < 0 || q.DelayMS < 0 || q.DedupWindowMS < 0:
		return fmt.Errorf("queue %q: backoff_ms, delay_ms and dedup_window_ms must not be negative", name)
	case q.VisibilityTimeoutMS < 1:
		return fmt.Errorf("queue %q: visibility_timeout_ms must be positive", name)
	}
	return nil
}

// TLSConfig is the certificate both listeners present. Both files are
// PEM; the certificate file may hold the chain after the leaf. They are read
// once, by New: replacing them takes a restart.
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether the listeners serve TLS.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// ChannelsConfig configures channels.
type ChannelsConfig struct {
	// DefaultBuffer is the buffer of a channel created without buffer_size, in frames.
	DefaultBuffer int `yaml:"default_buffer"`
	// MaxBuffer clamps buffer_size, in frames.
	MaxBuffer int `yaml:"max_buffer"`
	// MaxBufferBytes bounds the bytes one channel buffers (a frame larger
	// than it still passes, alone); its writer waits beyond it.
	MaxBufferBytes ByteSize `yaml:"max_buffer_bytes"`
	// MaxTotalBufferBytes bounds the bytes all channels buffer together;
	// writers wait beyond it (each channel may still move one frame of up
	// to 64 KiB at a time).
	MaxTotalBufferBytes ByteSize `yaml:"max_total_buffer_bytes"`
	// MaxFrameSize bounds one frame on a channel socket.
	MaxFrameSize ByteSize `yaml:"max_frame_size"`
	// MaxChannels bounds the number of open channels.
	MaxChannels int `yaml:"max_channels"`
	// MaxPerWorker bounds the open channels created through
	// engine::channels::create by one worker connection.
	MaxPerWorker int `yaml:"max_per_worker"`
	// TTL is how long a channel may wait for one of its ends to connect.
	TTL time.Duration `yaml:"ttl"`
}

// HTTPConfig configures HTTP triggers.
type HTTPConfig struct {
	// Timeout bounds the wait for a function's response headers.
	Timeout time.Duration `yaml:"timeout"`
	// MaxJSONBody bounds a JSON request body parsed into "body".
	MaxJSONBody ByteSize `yaml:"max_json_body"`
	// IdleTimeout closes a keep-alive connection idle that long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxConcurrentRequests bounds the requests served at once; more are
	// answered 503 at once.
	MaxConcurrentRequests int `yaml:"max_concurrent_requests"`
	// MaxBufferedJSONBytes bounds the bytes of all JSON bodies read whole at
	// once; at least MaxJSONBody.
	MaxBufferedJSONBytes ByteSize `yaml:"max_buffered_json_bytes"`
	// CORS configures cross-origin requests; nil means permissive.
	CORS *CORSConfig `yaml:"cors"`
	// AccessLog logs every request at Info; off, a request that ended
	// normally is logged at Debug (abnormal ones are always logged at Warn).
	AccessLog bool `yaml:"access_log"`
}

// CORSConfig restricts cross-origin requests. An empty list or "*" allows any.
type CORSConfig struct {
	AllowedOrigins []string `yaml:"allowed_origins"`
	AllowedMethods []string `yaml:"allowed_methods"`
}

// minIDLength is the smallest max_id_length: the engine's own ids and the
// SDKs' UUID trigger ids must fit.
const minIDLength = 64

// DefaultConfig returns the embedded defaults.
func DefaultConfig() Config {
	return Config{
		Addr:            "127.0.0.1:49134",
		HTTPAddr:        "127.0.0.1:3111",
		ConsoleAddr:     "127.0.0.1:3113",
		MaxMessageSize:  64 << 20,
		ShutdownTimeout: 10 * time.Second,
		MaxIDLength:     registry.DefaultMaxIDLength,

		MaxPendingBytesPerWorker:   32 << 20,
		InvocationTimeout:          30 * time.Second,
		WorkerIdleTimeout:          60 * time.Second,
		RegistrationNamespaceGrace: 5 * time.Second,
		Channels: ChannelsConfig{
			DefaultBuffer:       64,
			MaxBuffer:           1024,
			MaxBufferBytes:      4 << 20,
			MaxTotalBufferBytes: 256 << 20,
			MaxFrameSize:        16 << 20,
			MaxChannels:         100_000,
			MaxPerWorker:        1000,
			TTL:                 5 * time.Minute,
		},
		HTTP: HTTPConfig{
			Timeout:               30 * time.Second,
			MaxJSONBody:           16 << 20,
			IdleTimeout:           2 * time.Minute,
			MaxConcurrentRequests: 4096,
			MaxBufferedJSONBytes:  64 << 20,
		},
		DataDir:  "./sluice-data",
		DataSync: "normal",
		State:    defaultStateConfig(),
		Streams:  defaultStreamsConfig(),
		PubSub:   defaultPubSubConfig(),
		Cron:     ModuleConfig{Enabled: true},
		OTel:     defaultOTelConfig(),
		Observe:  ObserveConfig{MaxPerWorker: 1000, Max: 10000, ReconnectGrace: 60 * time.Second},
		HTTPFunctions: HTTPFunctionsConfig{
			Enabled: true, BlockPrivateIPs: true, RequireHTTPS: true,
			DefaultTimeout: 30 * time.Second, MaxTimeout: 60 * time.Second,
			MaxResponseBytes: 1 << 20, MaxConcurrent: 64,
		},
		Cluster: ClusterConfig{Name: "sluice", StartTimeout: time.Minute, NodeTimeout: 10 * time.Second},
	}
}

// Validate reports settings that cannot work.
func (c *Config) Validate() error {
	if err := c.HTTPFunctions.validate(); err != nil {
		return err
	}
	switch {
	case c.Observe.MaxPerWorker < 1 || c.Observe.Max < c.Observe.MaxPerWorker:
		return fmt.Errorf("config: observe.max_observers_per_worker (%d) must be at least 1 and at most observe.max_observers (%d)",
			c.Observe.MaxPerWorker, c.Observe.Max)
	case c.Observe.ReconnectGrace < time.Second:
		return fmt.Errorf("config: observe.reconnect_grace %s is below 1s", c.Observe.ReconnectGrace)
	case c.Addr == "":
		return fmt.Errorf("config: addr must not be empty")
	case c.ConsoleAddr != "" && !validHostPort(c.ConsoleAddr):
		return fmt.Errorf("config: console_addr %q: want host:port, e.g. 127.0.0.1:3113 (empty disables it)", c.ConsoleAddr)
	case c.MaxMessageSize < 1024:
		return fmt.Errorf("config: max_message_size %d is below 1024 bytes", c.MaxMessageSize)
	case c.Channels.DefaultBuffer < 1 || c.Channels.MaxBuffer < 1:
		return fmt.Errorf("config: channel buffers must be at least 1 frame")
	case c.Channels.MaxFrameSize < 1024:
		return fmt.Errorf("config: channels.max_frame_size %d is below 1024 bytes", c.Channels.MaxFrameSize)
	case c.Channels.TTL <= 0:
		return fmt.Errorf("config: channels.ttl must be positive")
	case c.Channels.MaxChannels < 1:
		return fmt.Errorf("config: channels.max_channels must be at least 1")
	case c.Channels.MaxPerWorker < 1:
		return fmt.Errorf("config: channels.max_per_worker must be at least 1")
	case c.Channels.MaxBufferBytes < 64<<10:
		return fmt.Errorf("config: channels.max_buffer_bytes %d is below 64 KiB", c.Channels.MaxBufferBytes)
	case c.Channels.MaxTotalBufferBytes < c.Channels.MaxFrameSize:
		return fmt.Errorf("config: channels.max_total_buffer_bytes %d is below channels.max_frame_size %d", c.Channels.MaxTotalBufferBytes, c.Channels.MaxFrameSize)
	case c.HTTP.Timeout <= 0:
		return fmt.Errorf("config: http.timeout must be positive")
	case c.HTTP.MaxJSONBody < 0:
		return fmt.Errorf("config: http.max_json_body must not be negative")
	case c.HTTP.IdleTimeout <= 0:
		return fmt.Errorf("config: http.idle_timeout must be positive")
	case c.HTTP.MaxConcurrentRequests < 1:
		return fmt.Errorf("config: http.max_concurrent_requests must be at least 1")
	case c.HTTP.MaxBufferedJSONBytes < c.HTTP.MaxJSONBody:
		return fmt.Errorf("config: http.max_buffered_json_bytes %d is below http.max_json_body %d", c.HTTP.MaxBufferedJSONBytes, c.HTTP.MaxJSONBody)
	case c.ShutdownTimeout <= 0:
		return fmt.Errorf("config: shutdown_timeout must be positive")
	case c.TLS.Enabled() && (c.TLS.CertFile == "" || c.TLS.KeyFile == ""):
		return fmt.Errorf("config: tls.cert_file and tls.key_file must be set together")
	case c.MaxIDLength < minIDLength:
		// Every engine id and a UUID must fit.
		return fmt.Errorf("config: max_id_length %d is below %d bytes", c.MaxIDLength, minIDLength)
	case c.MaxPendingBytesPerWorker < 64<<10:
		return fmt.Errorf("config: max_pending_bytes_per_worker %d is below 64 KiB", c.MaxPendingBytesPerWorker)
	case c.InvocationTimeout < 0:
		return fmt.Errorf("config: invocation_timeout must not be negative (0 disables it)")
	case c.WorkerIdleTimeout < 0 || c.WorkerIdleTimeout > 0 && c.WorkerIdleTimeout < 100*time.Millisecond:
		return fmt.Errorf("config: worker_idle_timeout must be 0 (off) or at least 100ms")
	case c.RegistrationNamespaceGrace < 10*time.Millisecond || c.RegistrationNamespaceGrace > time.Minute:
		return fmt.Errorf("config: registration_namespace_grace must be between 10ms and 1m")
	case c.DataDir == "":
		return fmt.Errorf("config: data_dir must not be empty (use %q for no files)", DataDirMemory)
	case c.DataSync != "normal" && c.DataSync != "full":
		return fmt.Errorf("config: data_sync %q: must be \"normal\" or \"full\"", c.DataSync)
	}
	for _, o := range c.AllowedOrigins {
		if err := validOrigin(o); err != nil {
			return err
		}
	}
	if err := c.Auth.validate("auth"); err != nil {
		return err
	}
	names := map[string]bool{}
	for i := range c.WorkerListeners {
		l := &c.WorkerListeners[i]
		if l.Addr == "" {
			return fmt.Errorf("config: worker_listeners[%d].addr must not be empty", i)
		}
		if l.Name != "" && names[l.Name] {
			return fmt.Errorf("config: worker_listeners[%d].name %q is used twice", i, l.Name)
		}
		names[l.Name] = true
		if err := l.Auth.validate(fmt.Sprintf("worker_listeners[%d].auth", i)); err != nil {
			return err
		}
	}
	for name, q := range c.Queues {
		if err := q.Validate(name); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	if err := c.OTel.validate(); err != nil {
		return err
	}
	if err := c.Cluster.validate(c.DataDir); err != nil {
		return err
	}
	return c.validateModules()
}

func (a *AuthConfig) validate(where string) error {
	for _, t := range a.Tokens {
		if len(t) < 16 {
			return fmt.Errorf("config: %s.tokens: a token must be at least 16 characters", where)
		}
	}
	if a.RBAC != nil {
		if err := a.RBAC.Validate(); err != nil {
			return fmt.Errorf("config: %s.rbac: %w", where, err)
		}
	}
	return nil
}

func (c *HTTPFunctionsConfig) validate() error {
	switch {
	case c.DefaultTimeout <= 0 || c.MaxTimeout < c.DefaultTimeout:
		return fmt.Errorf("config: http_functions.default_timeout (%s) must be positive and at most http_functions.max_timeout (%s)",
			c.DefaultTimeout, c.MaxTimeout)
	case c.MaxResponseBytes < 1:
		return fmt.Errorf("config: http_functions.max_response_bytes must be at least 1")
	case c.MaxConcurrent < 1:
		return fmt.Errorf("config: http_functions.max_concurrent must be at least 1")
	}
	for _, p := range c.URLAllowlist {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("config: http_functions.url_allowlist %q: %v", p, err)
		}
	}
	return nil
}
