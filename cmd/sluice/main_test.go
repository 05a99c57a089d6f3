package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
)

// boundedCtx ends run if a test that expects an error starts the engine
// after all (it would otherwise wait for a signal).
func boundedCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func envFunc(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// fileYAML sets every setting that also has a flag, to values distinct from
// the defaults, the environment and the flags below.
const fileYAML = `
addr: file:1
http_addr: file:2
max_message_size: 2048
allowed_origins: ["https://file.example"]
shutdown_timeout: 3s
max_pending_bytes_per_worker: 100 KiB
invocation_timeout: 4s
worker_idle_timeout: 5s
channels:
  ttl: 1m
  max_channels: 10
  max_frame_size: 4096
  default_buffer: 8
  max_buffer: 16
  max_buffer_bytes: 100000
  max_total_buffer_bytes: 200000
  max_per_worker: 5
http:
  timeout: 1s
  max_json_body: 1000
  idle_timeout: 7s
  max_concurrent_requests: 70
  max_buffered_json_bytes: 7000
  cors:
    allowed_origins: ["https://app.example.com"]
    allowed_methods: [GET, POST]
tls:
  cert_file: file.crt
  key_file: file.key
data_dir: file-data
data_sync: full
otel:
  endpoint: http://file.example:4318
cluster:
  node_name: file-node
  name: file-cluster
  listen: 127.0.0.1:6001
  peers: [127.0.0.1:6002]
  advertise: 127.0.0.1:6101
  replicas: 3
  start_timeout: 5s
  node_timeout: 4s
  secret: file-secret-0123456789
  route_tls:
    cert_file: file-route.pem
    key_file: file-route-key.pem
    ca_file: file-route-ca.pem
queues:
  payments:
    type: fifo
    message_group_field: account
`

func fromFile(c *engine.Config) {
	c.Addr, c.HTTPAddr, c.MaxMessageSize, c.ShutdownTimeout = "file:1", "file:2", 2048, 3*time.Second
	c.AllowedOrigins = []string{"https://file.example"}
	c.MaxPendingBytesPerWorker, c.InvocationTimeout, c.WorkerIdleTimeout = 100<<10, 4*time.Second, 5*time.Second
	c.Channels = engine.ChannelsConfig{TTL: time.Minute, MaxChannels: 10, MaxFrameSize: 4096, DefaultBuffer: 8, MaxBuffer: 16,
		MaxBufferBytes: 100000, MaxTotalBufferBytes: 200000, MaxPerWorker: 5}
	c.HTTP = engine.HTTPConfig{Timeout: time.Second, MaxJSONBody: 1000, IdleTimeout: 7 * time.Second,
		MaxConcurrentRequests: 70, MaxBufferedJSONBytes: 7000, CORS: &engine.CORSConfig{
			AllowedOrigins: []string{"https://app.example.com"}, AllowedMethods: []string{"GET", "POST"}}}
	c.TLS = engine.TLSConfig{CertFile: "file.crt", KeyFile: "file.key"}
	c.DataDir, c.DataSync = "file-data", "full"
	c.OTel.Endpoint = "http://file.example:4318"
	c.Cluster = engine.ClusterConfig{NodeName: "file-node", Name: "file-cluster", Listen: "127.0.0.1:6001", Advertise: "127.0.0.1:6101",
		Peers: []string{"127.0.0.1:6002"}, Replicas: 3, StartTimeout: 5 * time.Second, NodeTimeout: 4 * time.Second, Secret: "file-secret-0123456789",
		RouteTLS: engine.NATSTLSConfig{CertFile: "file-route.pem", KeyFile: "file-route-key.pem", CAFile: "file-route-ca.pem"}}
	payments := engine.DefaultQueueConfig()
	payments.Type, payments.MessageGroupField = "fifo", "account"
	c.Queues = map[string]engine.QueueConfig{"payments": payments}
}

var allEnv = map[string]string{
	"SLUICE_ADDR":             "env:1",
	"SLUICE_HTTP_ADDR":        "env:2",
	"SLUICE_MAX_MESSAGE_SIZE": "3072",
	"SLUICE_HTTP_TIMEOUT":     "2s",
	"SLUICE_CHANNEL_TTL":      "2m",
	"SLUICE_MAX_CHANNELS":     "20",
	"SLUICE_MAX_FRAME_SIZE":   "5120",
	"SLUICE_TLS_CERT_FILE":    "env.crt",
	"SLUICE_TLS_KEY_FILE":     "env.key",

	"SLUICE_SHUTDOWN_TIMEOUT":             "8s",
	"SLUICE_HTTP_IDLE_TIMEOUT":            "8s",
	"SLUICE_HTTP_MAX_CONCURRENT_REQUESTS": "80",
	"SLUICE_HTTP_MAX_BUFFERED_JSON_BYTES": "80000000",
	"SLUICE_ALLOWED_ORIGINS":              "https://env.example, http://env.example:8080",
	"SLUICE_MAX_PENDING_BYTES_PER_WORKER": "200KiB",
	"SLUICE_INVOCATION_TIMEOUT":           "6s",
	"SLUICE_WORKER_IDLE_TIMEOUT":          "7s",
	"SLUICE_MAX_CHANNELS_PER_WORKER":      "6",
	"SLUICE_MAX_CHANNEL_MEMORY":           "300000",
	"SLUICE_DATA_DIR":                     "env-data",
	"SLUICE_DATA_SYNC":                    "normal",
	"SLUICE_OTEL_ENDPOINT":                "http://env.example:4318",
	"SLUICE_CLUSTER":                      "true",
	"SLUICE_NODE_NAME":                    "env-node",
	"SLUICE_CLUSTER_NAME":                 "env-cluster",
	"SLUICE_CLUSTER_LISTEN":               "127.0.0.1:7001",
	"SLUICE_CLUSTER_PEERS":                "127.0.0.1:7002, 127.0.0.1:7003",
	"SLUICE_CLUSTER_ADVERTISE":            "127.0.0.1:7101",
	"SLUICE_CLUSTER_START_TIMEOUT":        "6s",
	"SLUICE_CLUSTER_NODE_TIMEOUT":         "5s",
	"SLUICE_CLUSTER_TLS_CERT":             "env-route.pem",
	"SLUICE_CLUSTER_TLS_KEY":              "env-route-key.pem",
	"SLUICE_CLUSTER_TLS_CA":               "env-route-ca.pem",
}

func fromEnv(c *engine.Config) {
	c.Addr, c.HTTPAddr, c.MaxMessageSize = "env:1", "env:2", 3072
	c.HTTP.Timeout, c.Channels.TTL, c.Channels.MaxChannels, c.Channels.MaxFrameSize = 2*time.Second, 2*time.Minute, 20, 5120
	c.TLS = engine.TLSConfig{CertFile: "env.crt", KeyFile: "env.key"}
	c.ShutdownTimeout, c.HTTP.IdleTimeout, c.HTTP.MaxConcurrentRequests, c.HTTP.MaxBufferedJSONBytes = 8*time.Second, 8*time.Second, 80, 80_000_000
	c.AllowedOrigins = []string{"https://env.example", "http://env.example:8080"}
	c.MaxPendingBytesPerWorker, c.InvocationTimeout, c.WorkerIdleTimeout = 200<<10, 6*time.Second, 7*time.Second
	c.Channels.MaxPerWorker, c.Channels.MaxTotalBufferBytes = 6, 300000
	c.DataDir, c.DataSync = "env-data", "normal"
	c.OTel.Endpoint = "http://env.example:4318"
	c.Cluster.Enabled, c.Cluster.NodeName, c.Cluster.Name = true, "env-node", "env-cluster"
	c.Cluster.Listen, c.Cluster.Peers, c.Cluster.StartTimeout = "127.0.0.1:7001", []string{"127.0.0.1:7002", "127.0.0.1:7003"}, 6*time.Second
	c.Cluster.NodeTimeout, c.Cluster.Advertise = 5*time.Second, "127.0.0.1:7101"
	c.Cluster.RouteTLS = engine.NATSTLSConfig{CertFile: "env-route.pem", KeyFile: "env-route-key.pem", CAFile: "env-route-ca.pem"}
}

var allFlags = []string{
	"--addr", "flag:1", "--http-addr=flag:2", "--max-message-size", "4096", "--http-timeout", "3s",
	"--channel-ttl", "3m", "--max-channels", "30", "--max-frame-size", "6144",
	"--tls-cert", "flag.crt", "--tls-key", "flag.key",
	"--shutdown-timeout", "9s", "--http-idle-timeout", "9s", "--http-max-concurrent-requests", "90",
	"--http-max-buffered-json-bytes", "90000000", "--allowed-origins", "https://flag.example",
	"--max-pending-bytes-per-worker", "300000", "--invocation-timeout", "8s", "--worker-idle-timeout", "9s",
	"--max-channels-per-worker", "7", "--max-channel-memory", "400000",
	"--data-dir", "flag-data", "--data-sync", "full", "--otel-endpoint", "https://flag.example:4318",
	"--cluster", "--node-name", "flag-node", "--cluster-name", "flag-cluster", "--cluster-listen", "127.0.0.1:8001",
	"--cluster-peers", "127.0.0.1:8002,127.0.0.1:8003", "--cluster-advertise", "127.0.0.1:8101",
	"--cluster-tls-cert", "flag-route.pem", "--cluster-tls-key", "flag-route-key.pem", "--cluster-tls-ca", "flag-route-ca.pem",
	"--cluster-start-timeout", "7s", "--cluster-node-timeout", "8s",
}

func fromFlags(c *engine.Config) {
	c.Addr, c.HTTPAddr, c.MaxMessageSize = "flag:1", "flag:2", 4096
	c.HTTP.Timeout, c.Channels.TTL, c.Channels.MaxChannels, c.Channels.MaxFrameSize = 3*time.Second, 3*time.Minute, 30, 6144
	c.TLS = engine.TLSConfig{CertFile: "flag.crt", KeyFile: "flag.key"}
	c.ShutdownTimeout, c.HTTP.IdleTimeout, c.HTTP.MaxConcurrentRequests, c.HTTP.MaxBufferedJSONBytes = 9*time.Second, 9*time.Second, 90, 90_000_000
	c.AllowedOrigins = []string{"https://flag.example"}
	c.MaxPendingBytesPerWorker, c.InvocationTimeout, c.WorkerIdleTimeout = 300000, 8*time.Second, 9*time.Second
	c.Channels.MaxPerWorker, c.Channels.MaxTotalBufferBytes = 7, 400000
	c.DataDir, c.DataSync = "flag-data", "full"
	c.OTel.Endpoint = "https://flag.example:4318"
	c.Cluster.Enabled, c.Cluster.NodeName, c.Cluster.Name, c.Cluster.Listen = true, "flag-node", "flag-cluster", "127.0.0.1:8001"
	c.Cluster.Peers, c.Cluster.Advertise = []string{"127.0.0.1:8002", "127.0.0.1:8003"}, "127.0.0.1:8101"
	c.Cluster.RouteTLS = engine.NATSTLSConfig{CertFile: "flag-route.pem", KeyFile: "flag-route-key.pem", CAFile: "flag-route-ca.pem"}
	c.Cluster.StartTimeout, c.Cluster.NodeTimeout = 7*time.Second, 8*time.Second
}

// natsFlags switch to an external NATS: they clear the embedded route
// settings (an explicitly empty flag wins) and set every --nats-* flag.
// They cannot apply over route TLS, which an external NATS refuses and an
// empty --cluster-tls-* flag does not clear (TestConfigureTLSNotBlanked).
var natsFlags = []string{
	"--cluster-listen", "", "--cluster-peers", "", "--cluster-advertise", "",
	"--nats-url", "nats://flag:4222", "--nats-creds", "flag.creds", "--nats-tls-ca", "flag-ca.pem",
	"--nats-tls-cert", "flag.pem", "--nats-tls-key", "flag-key.pem",
}

// natsEnv sets what natsFlags set, embedded routes included.
var natsEnv = map[string]string{
	"SLUICE_CLUSTER_LISTEN":    "127.0.0.1:7001",
	"SLUICE_CLUSTER_PEERS":     "127.0.0.1:7002",
	"SLUICE_CLUSTER_ADVERTISE": "127.0.0.1:7101",
	"SLUICE_NATS_URL":          "nats://env:4222",
	"SLUICE_NATS_CREDS":        "env.creds",
	"SLUICE_NATS_TLS_CA":       "env-ca.pem",
	"SLUICE_NATS_TLS_CERT":     "env.pem",
	"SLUICE_NATS_TLS_KEY":      "env-key.pem",
}

func fromNATSFlags(c *engine.Config) {
	c.Cluster.Listen, c.Cluster.Peers, c.Cluster.Advertise = "", nil, ""
	c.Cluster.NATSURL, c.Cluster.NATSCreds = "nats://flag:4222", "flag.creds"
	c.Cluster.NATSTLS = engine.NATSTLSConfig{CAFile: "flag-ca.pem", CertFile: "flag.pem", KeyFile: "flag-key.pem"}
}

func TestConfigurePrecedence(t *testing.T) {
	cfgPath := writeConfig(t, fileYAML)
	withFile := func(env map[string]string) map[string]string {
		out := map[string]string{"SLUICE_CONFIG": cfgPath}
		for k, v := range env {
			out[k] = v
		}
		return out
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []func(*engine.Config) // applied to the defaults, in order
	}{
		{name: "defaults"},
		{name: "file over defaults", args: []string{"--config", cfgPath}, want: []func(*engine.Config){fromFile}},
		{name: "file named by SLUICE_CONFIG", env: withFile(nil), want: []func(*engine.Config){fromFile}},
		{name: "environment over defaults", env: allEnv, want: []func(*engine.Config){fromEnv}},
		{name: "environment over file", env: withFile(allEnv), want: []func(*engine.Config){fromFile, fromEnv}},
		{name: "flags over defaults", args: allFlags, want: []func(*engine.Config){fromFlags}},
		{name: "flags over environment and file", env: withFile(allEnv), args: allFlags, want: []func(*engine.Config){fromFile, fromFlags}},
		{name: "external NATS flags over defaults", args: natsFlags, want: []func(*engine.Config){fromNATSFlags}},
		{name: "external NATS flags over environment", env: natsEnv, args: natsFlags, want: []func(*engine.Config){fromNATSFlags}},
		{
			// Nothing to clear: as if not given.
			name: "empty TLS flags without TLS",
			args: []string{"--tls-cert", "", "--tls-key", "", "--cluster-tls-cert", "", "--cluster-tls-key", "", "--cluster-tls-ca", "",
				"--nats-tls-ca", "", "--nats-tls-cert", "", "--nats-tls-key", ""},
		},
		{
			// The file sets listener and route TLS, not NATS TLS.
			name: "empty NATS TLS flags over a file without NATS TLS",
			env:  withFile(nil),
			args: []string{"--nats-tls-ca", "", "--nats-tls-cert", "", "--nats-tls-key", ""},
			want: []func(*engine.Config){fromFile},
		},
		{
			name: "layers mix per setting",
			env:  withFile(map[string]string{"SLUICE_HTTP_ADDR": "env:2", "SLUICE_CHANNEL_TTL": "2m"}),
			args: []string{"--channel-ttl", "3m"},
			want: []func(*engine.Config){fromFile, func(c *engine.Config) { c.HTTPAddr, c.Channels.TTL = "env:2", 3*time.Minute }},
		},
		{
			// An explicitly given flag wins even when it equals its zero value
			// or the default.
			name: "explicit flag with zero or default value still wins",
			env:  map[string]string{"SLUICE_ADDR": "env:1", "SLUICE_MAX_CHANNELS": "20", "SLUICE_ALLOWED_ORIGINS": "https://env.example"},
			args: []string{"--addr", engine.DefaultConfig().Addr, "--max-channels", "100000", "--allowed-origins", ""},
			want: nil,
		},
		{
			name: "cluster secret from the environment over the file",
			env:  withFile(map[string]string{"SLUICE_CLUSTER_SECRET": "env-secret-0123456789"}),
			want: []func(*engine.Config){fromFile, func(c *engine.Config) { c.Cluster.Secret = "env-secret-0123456789" }},
		},
		{
			name: "empty environment variables are ignored",
			env:  withFile(map[string]string{"SLUICE_ADDR": "", "SLUICE_HTTP_TIMEOUT": ""}),
			want: []func(*engine.Config){fromFile},
		},
		{
			name: "--config over SLUICE_CONFIG",
			env:  map[string]string{"SLUICE_CONFIG": filepath.Join(t.TempDir(), "missing.yaml")},
			args: []string{"--config", cfgPath},
			want: []func(*engine.Config){fromFile},
		},
		{
			name: "stream client listener from the environment",
			env:  map[string]string{"SLUICE_STREAMS_ADDR": "127.0.0.1:0"},
			want: []func(*engine.Config){func(c *engine.Config) { c.Streams.Addr = "127.0.0.1:0" }},
		},
		{
			name: "stream client listener flag over the environment",
			env:  withFile(map[string]string{"SLUICE_STREAMS_ADDR": "127.0.0.1:0"}),
			args: []string{"--streams-addr", "off"},
			want: []func(*engine.Config){fromFile, func(c *engine.Config) { c.Streams.Addr = "" }},
		},
		{
			name: "serve flag syntax with single dash",
			args: []string{"-addr", "flag:1"},
			want: []func(*engine.Config){func(c *engine.Config) { c.Addr = "flag:1" }},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			got, logger, err := configure(tc.args, envFunc(tc.env), &stderr)
			if err != nil {
				t.Fatalf("configure: %v (output %q)", err, stderr.String())
			}
			if logger == nil {
				t.Fatal("configure returned no logger")
			}
			want := engine.DefaultConfig()
			for _, f := range tc.want {
				f(&want)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("config\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestConfigureTLSNotBlanked: TLS files set by the config file or the
// environment (listener TLS, route TLS, the TLS of the connection to an
// external NATS) are not cleared by their flags given empty (say, a
// deployment template's unset variable), which would turn TLS off or
// weaken it without a word: the start is refused, naming the flags, what
// they would clear and how to turn that TLS off. Each group is checked on
// its own; empty variables are ignored, as every empty SLUICE_* variable.
func TestConfigureTLSNotBlanked(t *testing.T) {
	const routes = "cluster:\n  listen: 127.0.0.1:6001\n  peers: [127.0.0.1:6002]\n"
	const nats = "cluster:\n  nats_url: tls://127.0.0.1:4222\n"
	const listenerYAML = "tls:\n  cert_file: l.pem\n  key_file: l-key.pem\n"
	const routeYAML = routes + "  route_tls:\n    cert_file: r.pem\n    key_file: r-key.pem\n    ca_file: ca.pem\n"
	const natsYAML = nats + "  nats_tls:\n    ca_file: nca.pem\n    cert_file: n.pem\n    key_file: n-key.pem\n"
	listenerPath, routePath, natsPath := writeConfig(t, listenerYAML), writeConfig(t, routeYAML), writeConfig(t, natsYAML)
	// Every group at once: the file's listener TLS, route TLS and (not
	// used with routes, but set) NATS TLS.
	allPath := writeConfig(t, listenerYAML+routeYAML+"  nats_tls:\n    ca_file: nca.pem\n    cert_file: n.pem\n    key_file: n-key.pem\n")
	withConfig := func(path string, args ...string) []string { return append([]string{"--config", path}, args...) }

	blankListener := []string{"--tls-cert", "", "--tls-key", ""}
	blankRoute := []string{"--cluster-tls-cert", "", "--cluster-tls-key", "", "--cluster-tls-ca", ""}
	blankNATS := []string{"--nats-tls-ca", "", "--nats-tls-cert", "", "--nats-tls-key", ""}
	blankAll := slices.Concat(blankListener, blankRoute, blankNATS)
	const (
		listenerHowTo = "to serve them without TLS, remove tls from the config file and SLUICE_TLS_*_FILE from the environment"
		routeHowTo    = "to run them without TLS, remove cluster.route_tls from the config file and SLUICE_CLUSTER_TLS_* from the environment"
		natsHowTo     = "to connect without those files, remove cluster.nats_tls from the config file and SLUICE_NATS_TLS_* from the environment"
	)

	refused := []struct {
		name    string
		env     map[string]string
		args    []string
		want    []string
		notWant []string
	}{
		// Listener TLS: both listeners would serve ws:// and http://.
		{name: "listener: both over the file", args: withConfig(listenerPath, blankListener...),
			want: []string{"--tls-cert, --tls-key given empty would clear the listener TLS set by the config file " + listenerPath + " (tls: cert_file, key_file)",
				"serve the listeners unencrypted (ws://, http://): refused", listenerHowTo}},
		{name: "listener: both over the environment", env: map[string]string{"SLUICE_TLS_CERT_FILE": "e.pem", "SLUICE_TLS_KEY_FILE": "e-key.pem"}, args: blankListener,
			want: []string{"--tls-cert, --tls-key given empty", "set by SLUICE_TLS_CERT_FILE, SLUICE_TLS_KEY_FILE and serve", listenerHowTo}, notWant: []string{"(tls:"}},
		{name: "listener: the key alone", args: withConfig(listenerPath, "--tls-key", ""),
			want: []string{"--tls-key given empty", "(tls: key_file)"}, notWant: []string{"--tls-cert", "cert_file", "must be set together"}},
		{name: "listener: over the file and the environment", env: map[string]string{"SLUICE_TLS_KEY_FILE": "e-key.pem"}, args: withConfig(listenerPath, blankListener...),
			want: []string{"set by SLUICE_TLS_KEY_FILE and the config file " + listenerPath + " (tls: cert_file)"}},

		// Route TLS: the routes would run unencrypted.
		{name: "route: all three over the file", args: withConfig(routePath, blankRoute...),
			want: []string{"--cluster-tls-cert, --cluster-tls-key, --cluster-tls-ca given empty", "set by the config file " + routePath + " (cluster.route_tls: cert_file, key_file, ca_file)",
				"run the routes unencrypted: refused", routeHowTo}},
		{name: "route: all three over the environment", env: map[string]string{"SLUICE_CONFIG": writeConfig(t, routes),
			"SLUICE_CLUSTER_TLS_CERT": "e.pem", "SLUICE_CLUSTER_TLS_KEY": "e-key.pem", "SLUICE_CLUSTER_TLS_CA": "eca.pem"}, args: blankRoute,
			want: []string{"--cluster-tls-cert, --cluster-tls-key, --cluster-tls-ca given empty", "set by SLUICE_CLUSTER_TLS_CERT, SLUICE_CLUSTER_TLS_KEY, SLUICE_CLUSTER_TLS_CA and run", routeHowTo}},
		{name: "route: one of them", args: withConfig(routePath, "--cluster-tls-ca", ""),
			want: []string{"--cluster-tls-ca given empty", "(cluster.route_tls: ca_file)"}, notWant: []string{"--cluster-tls-cert", "cert_file"}},
		{name: "route: over the file and the environment", env: map[string]string{"SLUICE_CLUSTER_TLS_KEY": "e-key.pem"}, args: withConfig(routePath, blankRoute...),
			want: []string{"set by SLUICE_CLUSTER_TLS_KEY and the config file " + routePath + " (cluster.route_tls: cert_file, ca_file)"}},
		{name: "route: with a switch to external NATS", args: withConfig(routePath, slices.Concat(natsFlags, blankRoute)...),
			want: []string{"--cluster-tls-cert, --cluster-tls-key, --cluster-tls-ca given empty", routeHowTo}},

		// The connection to an external NATS: another CA trusted, no client
		// certificate, or no TLS.
		{name: "nats: all three over the file", args: withConfig(natsPath, blankNATS...),
			want: []string{"--nats-tls-ca, --nats-tls-cert, --nats-tls-key given empty would clear the TLS of the connection to NATS set by the config file " + natsPath +
				" (cluster.nats_tls: ca_file, cert_file, key_file)", "weaken that connection", ": refused", natsHowTo}},
		{name: "nats: all three over the environment", env: map[string]string{"SLUICE_CONFIG": writeConfig(t, nats),
			"SLUICE_NATS_TLS_CA": "eca.pem", "SLUICE_NATS_TLS_CERT": "e.pem", "SLUICE_NATS_TLS_KEY": "e-key.pem"}, args: blankNATS,
			want: []string{"set by SLUICE_NATS_TLS_CA, SLUICE_NATS_TLS_CERT, SLUICE_NATS_TLS_KEY and weaken", natsHowTo}},
		{name: "nats: the CA alone", args: withConfig(natsPath, "--nats-tls-ca", ""),
			want: []string{"--nats-tls-ca given empty", "(cluster.nats_tls: ca_file)", "the system's CAs trusted instead"}, notWant: []string{"--nats-tls-cert", "cert_file"}},
		{name: "nats: over the file and the environment", env: map[string]string{"SLUICE_NATS_TLS_CERT": "e.pem"}, args: withConfig(natsPath, blankNATS...),
			want: []string{"set by SLUICE_NATS_TLS_CERT and the config file " + natsPath + " (cluster.nats_tls: ca_file, key_file)"}},

		// Several groups: each reported.
		{name: "every group at once", args: withConfig(allPath, blankAll...),
			want: []string{"--tls-cert, --tls-key given empty", listenerHowTo, "--cluster-tls-cert, --cluster-tls-key, --cluster-tls-ca given empty", routeHowTo,
				"--nats-tls-ca, --nats-tls-cert, --nats-tls-key given empty", natsHowTo}},
		{name: "one group blanked, another empty with nothing to clear", args: withConfig(listenerPath, slices.Concat(blankListener, blankNATS)...),
			want: []string{"--tls-cert, --tls-key given empty", listenerHowTo}, notWant: []string{"--nats-tls", "NATS"}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			cfg, logger, err := configure(tc.args, envFunc(tc.env), &stderr)
			if err == nil {
				t.Fatalf("configure succeeded with listener TLS %+v, route TLS %+v, NATS TLS %+v", cfg.TLS, cfg.Cluster.RouteTLS, cfg.Cluster.NATSTLS)
			}
			if logger != nil {
				t.Error("configure returned a logger with its error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q mentions %q", err, w)
				}
			}
		})
	}

	t.Run("empty variables leave the file's TLS", func(t *testing.T) {
		env := map[string]string{"SLUICE_CONFIG": allPath, "SLUICE_TLS_CERT_FILE": "", "SLUICE_TLS_KEY_FILE": "",
			"SLUICE_CLUSTER_TLS_CERT": "", "SLUICE_CLUSTER_TLS_KEY": "", "SLUICE_CLUSTER_TLS_CA": "",
			"SLUICE_NATS_TLS_CA": "", "SLUICE_NATS_TLS_CERT": "", "SLUICE_NATS_TLS_KEY": ""}
		cfg, _, err := configure(nil, envFunc(env), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		want := [3]any{engine.TLSConfig{CertFile: "l.pem", KeyFile: "l-key.pem"},
			engine.NATSTLSConfig{CertFile: "r.pem", KeyFile: "r-key.pem", CAFile: "ca.pem"},
			engine.NATSTLSConfig{CAFile: "nca.pem", CertFile: "n.pem", KeyFile: "n-key.pem"}}
		if got := [3]any{cfg.TLS, cfg.Cluster.RouteTLS, cfg.Cluster.NATSTLS}; got != want {
			t.Fatalf("listener, route and NATS TLS %+v, want the file's %+v", got, want)
		}
	})

	t.Run("flags with files still replace the file's", func(t *testing.T) {
		args := withConfig(natsPath, "--tls-cert", "f.pem", "--tls-key", "f-key.pem", "--nats-tls-ca", "fca.pem", "--nats-tls-cert", "fn.pem", "--nats-tls-key", "fn-key.pem")
		cfg, _, err := configure(args, envFunc(nil), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if want := (engine.TLSConfig{CertFile: "f.pem", KeyFile: "f-key.pem"}); cfg.TLS != want {
			t.Errorf("listener TLS %+v, want %+v", cfg.TLS, want)
		}
		if want := (engine.NATSTLSConfig{CAFile: "fca.pem", CertFile: "fn.pem", KeyFile: "fn-key.pem"}); cfg.Cluster.NATSTLS != want {
			t.Errorf("NATS TLS %+v, want %+v", cfg.Cluster.NATSTLS, want)
		}
	})
}

// TestRunServeRefusesListenerTLSBlanked: the downgrade attempt through the
// whole command. Empty --tls-cert and --tls-key over the file's listener
// TLS stop the start: no listener comes up unencrypted (before the
// refusal, the engine served ws:// and http:// until the context ended).
func TestRunServeRefusesListenerTLSBlanked(t *testing.T) {
	path := writeConfig(t, "addr: 127.0.0.1:0\nhttp_addr: 127.0.0.1:0\ntls:\n  cert_file: /nonexistent/c.pem\n  key_file: /nonexistent/k.pem\n")
	var out bytes.Buffer
	err := run(boundedCtx(t), []string{"serve", "--config", path, "--tls-cert", "", "--tls-key", ""}, envFunc(nil), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "--tls-cert, --tls-key given empty would clear the listener TLS") {
		t.Fatalf("run = %v, want the refusal", err)
	}
	if strings.Contains(out.String(), "engine started") {
		t.Fatalf("the engine started:\n%s", out.String())
	}
}

// A config file with nothing in it (or only comments, as an example file
// with everything commented out) leaves the defaults in place.
func TestConfigureEmptyFile(t *testing.T) {
	for _, content := range []string{"", "# addr: 0.0.0.0:49134\n", "---\n"} {
		path := writeConfig(t, content)
		got, _, err := configure([]string{"--config", path}, envFunc(nil), io.Discard)
		if err != nil {
			t.Errorf("config file %q: %v", content, err)
			continue
		}
		if !reflect.DeepEqual(got, engine.DefaultConfig()) {
			t.Errorf("config file %q changed the config: %+v", content, got)
		}
	}
}

func TestConfigureErrors(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string // written to a file passed with --config when non-empty
		env   map[string]string
		args  []string
		want  []string // substrings of the error
		isErr error    // errors.Is target, if any
	}{
		{name: "unknown top-level key", yaml: "adr: 0.0.0.0:1\n", want: []string{"sluice.yaml", "line 1", `unknown key "adr"`,
			"valid keys at the top level: addr, http_addr, max_message_size, ", ", channels, http", `did you mean "addr"`}},
		{name: "unknown nested key", yaml: "channels:\n  tll: 1m\n", want: []string{"line 2", `unknown key "tll"`,
			"valid keys under channels: default_buffer, max_buffer, max_buffer_bytes, max_total_buffer_bytes, max_frame_size, max_channels, max_per_worker, ttl", `did you mean "ttl"`}},
		{name: "every unknown key is reported", yaml: "adr: x\nhttp:\n  cors:\n    origins: []\n", want: []string{`"adr"`, `line 4: unknown key "origins"`, "under http.cors: allowed_origins, allowed_methods"}},
		{name: "no Go type names", yaml: "channels:\n  frobnicate: 1\n", want: []string{`unknown key "frobnicate"`}},
		{name: "duration without unit in file", yaml: "http:\n  timeout: 30\n", want: []string{"sluice.yaml", "line 2", `http.timeout: "30" is not a duration`, "30s"}},
		{name: "decimal size unit in file", yaml: "channels:\n  max_frame_size: 16MB\n", want: []string{"line 2", "channels.max_frame_size", `unknown unit "MB"`, "16MiB"}},
		{name: "fractional size in file", yaml: "max_message_size: 1.5MiB\n", want: []string{"max_message_size", "whole number"}},
		{name: "wrong type in file", yaml: "addr: [a, b]\n", want: []string{"sluice.yaml", "line 1"}},
		{name: "invalid value in file", yaml: "max_message_size: 10\n", want: []string{"max_message_size 10 is below 1024"}},
		{name: "invalid nested value in file", yaml: "channels:\n  default_buffer: 0\n", want: []string{"channel buffers must be at least 1"}},
		{name: "id length below minimum", yaml: "max_id_length: 63\n", want: []string{"max_id_length 63 is below 64"}},
		{name: "cluster: embedded and external NATS at once", args: []string{"--cluster-listen", "127.0.0.1:6222", "--nats-url", "nats://x:4222"}, want: []string{"exclude each other"}},
		{name: "cluster: peers without a listener", args: []string{"--cluster", "--cluster-peers", "127.0.0.1:6223"}, want: []string{"cluster.peers need cluster.listen"}},
		{name: "cluster: embedded JetStream in memory", args: []string{"--cluster", "--data-dir", "memory"}, want: []string{"keeps JetStream on disk"}},
		{name: "cluster: bad peer", args: []string{"--cluster-listen", "127.0.0.1:6222", "--cluster-peers", "nohostport"}, want: []string{`cluster.peers: "nohostport"`}},
		{name: "cluster: short secret", env: map[string]string{"SLUICE_CLUSTER_SECRET": "short"}, args: []string{"--cluster-listen", "127.0.0.1:6222", "--cluster-peers", "127.0.0.1:6223"}, want: []string{"cluster.secret must be at least 16"}},
		{name: "cluster: route TLS without its CA", args: []string{"--cluster-listen", "127.0.0.1:6222", "--cluster-tls-cert", "r.pem", "--cluster-tls-key", "r-key.pem"},
			want: []string{"cluster.route_tls.cert_file, key_file and ca_file must be set together"}},
		{name: "cluster: route TLS key without its certificate", env: map[string]string{"SLUICE_CLUSTER_TLS_KEY": "r-key.pem", "SLUICE_CLUSTER_TLS_CA": "ca.pem"},
			args: []string{"--cluster-listen", "127.0.0.1:6222"}, want: []string{"must be set together"}},
		{name: "cluster: route TLS with an external NATS", args: []string{"--nats-url", "nats://x:4222", "--cluster-tls-cert", "r.pem", "--cluster-tls-key", "r-key.pem", "--cluster-tls-ca", "ca.pem"},
			want: []string{"cluster.route_tls is for the embedded NATS routes", "cluster.nats_tls"}},
		{name: "cluster: route TLS without routes", args: []string{"--cluster", "--cluster-tls-cert", "r.pem", "--cluster-tls-key", "r-key.pem", "--cluster-tls-ca", "ca.pem"},
			want: []string{"cluster.route_tls needs cluster.listen"}},
		{name: "cluster: route TLS without cluster mode", env: map[string]string{"SLUICE_CLUSTER_TLS_CERT": "r.pem"}, want: []string{"cluster.route_tls needs cluster.listen"}},
		{name: "cluster: bad SLUICE_CLUSTER", env: map[string]string{"SLUICE_CLUSTER": "maybe"}, want: []string{"SLUICE_CLUSTER"}},
		{name: "missing file", args: []string{"--config", "/nonexistent/sluice.yaml"}, isErr: fs.ErrNotExist, want: []string{"config file /nonexistent/sluice.yaml not found"}},
		{name: "missing file from SLUICE_CONFIG", env: map[string]string{"SLUICE_CONFIG": "/nonexistent/sluice.yaml"}, isErr: fs.ErrNotExist,
			want: []string{"config file /nonexistent/sluice.yaml not found (named by SLUICE_CONFIG)"}},
		{name: "invalid channel quota in file", yaml: "channels:\n  max_per_worker: 0\n", want: []string{"channels.max_per_worker must be at least 1"}},
		{name: "channel memory below a frame", env: map[string]string{"SLUICE_MAX_CHANNEL_MEMORY": "1000"}, want: []string{"channels.max_total_buffer_bytes 1000 is below channels.max_frame_size"}},

		{name: "decimal size unit in environment", env: map[string]string{"SLUICE_MAX_MESSAGE_SIZE": "64MB"}, want: []string{"SLUICE_MAX_MESSAGE_SIZE", `"64MB"`, `unknown unit "MB"`, "16MiB"}},
		{name: "bad max channels in environment", env: map[string]string{"SLUICE_MAX_CHANNELS": "many"}, want: []string{`SLUICE_MAX_CHANNELS="many"`, "whole number"}},
		{name: "bad frame size in environment", env: map[string]string{"SLUICE_MAX_FRAME_SIZE": "1.5"}, want: []string{"SLUICE_MAX_FRAME_SIZE", "whole number", "64KiB"}},
		{name: "duration without unit in environment", env: map[string]string{"SLUICE_HTTP_TIMEOUT": "30"}, want: []string{`SLUICE_HTTP_TIMEOUT="30"`, "duration with a unit", "30s"}},
		{name: "bad ttl in environment", env: map[string]string{"SLUICE_CHANNEL_TTL": "soon"}, want: []string{`SLUICE_CHANNEL_TTL="soon"`, "duration"}},
		{
			name: "every bad environment variable is reported",
			env:  map[string]string{"SLUICE_MAX_MESSAGE_SIZE": "x", "SLUICE_CHANNEL_TTL": "y"},
			want: []string{"SLUICE_MAX_MESSAGE_SIZE", "SLUICE_CHANNEL_TTL"},
		},
		{name: "invalid value in environment", env: map[string]string{"SLUICE_MAX_FRAME_SIZE": "100"}, want: []string{"channels.max_frame_size 100 is below 1024"}},
		{name: "bad environment variable overridden by a flag", env: map[string]string{"SLUICE_HTTP_TIMEOUT": "30"}, args: []string{"--http-timeout", "0s"}, want: []string{"http.timeout must be positive"}},

		{name: "bad duration flag", args: []string{"--channel-ttl", "soon"}, want: []string{"-channel-ttl", "invalid value"}},
		{name: "bad size flag", args: []string{"--max-message-size", "big"}, want: []string{"-max-message-size", "invalid value", "64KiB"}},
		{name: "decimal size unit flag", args: []string{"--max-frame-size", "1GB"}, want: []string{"-max-frame-size", `unknown unit "GB"`}},
		{name: "unknown flag", args: []string{"--adr", "x"}, want: []string{"flag provided but not defined: -adr"}},
		{name: "positional argument", args: []string{"--addr", "a:1", "extra"}, want: []string{`unexpected argument "extra"`}},
		{name: "empty addr flag", args: []string{"--addr", ""}, want: []string{"addr must not be empty"}},
		{name: "message size below minimum", args: []string{"--max-message-size", "1023"}, want: []string{"max_message_size 1023 is below 1024"}},
		{name: "zero ttl", args: []string{"--channel-ttl", "0s"}, want: []string{"channels.ttl must be positive"}},
		{name: "origin with a path", args: []string{"--allowed-origins", "https://a.example/app"}, want: []string{`allowed_origins entry "https://a.example/app"`}},
		{name: "origin without scheme in file", yaml: "allowed_origins: [a.example]\n", want: []string{`allowed_origins entry "a.example"`}},
		{name: "negative http timeout", args: []string{"--http-timeout", "-1s"}, want: []string{"http.timeout must be positive"}},
		{name: "tls cert without key", args: []string{"--tls-cert", "a.crt"}, want: []string{"tls.cert_file and tls.key_file must be set together"}},
		{name: "bad data sync", args: []string{"--data-sync", "sometimes"}, want: []string{"data_sync \"sometimes\""}},
		{name: "fifo queue without group field in file", yaml: "queues:\n  q:\n    type: fifo\n", want: []string{`queue "q" is of type "fifo" but message_group_field is not set`}},
		{name: "unknown queue key in file", yaml: "queues:\n  q:\n    retries: 2\n", want: []string{"retries"}},
		{name: "tls key without cert in file", yaml: "tls:\n  key_file: a.key\n", want: []string{"tls.cert_file and tls.key_file must be set together"}},
		{name: "zero idle timeout", args: []string{"--http-idle-timeout", "0s"}, want: []string{"http.idle_timeout must be positive"}},
		{name: "zero request cap", args: []string{"--http-max-concurrent-requests", "0"}, want: []string{"http.max_concurrent_requests must be at least 1"}},
		{name: "json budget below one body", args: []string{"--http-max-buffered-json-bytes", "1000"}, want: []string{"http.max_buffered_json_bytes 1000 is below http.max_json_body"}},
		{name: "zero shutdown timeout", env: map[string]string{"SLUICE_SHUTDOWN_TIMEOUT": "0s"}, want: []string{"shutdown_timeout must be positive"}},
		{name: "tiny pending budget", args: []string{"--max-pending-bytes-per-worker", "1000"}, want: []string{"max_pending_bytes_per_worker 1000 is below 64 KiB"}},
		{name: "negative invocation timeout", args: []string{"--invocation-timeout", "-1s"}, want: []string{"invocation_timeout must not be negative"}},
		{name: "tiny idle timeout", args: []string{"--worker-idle-timeout", "1ms"}, want: []string{"worker_idle_timeout must be 0 (off) or at least 100ms"}},

		{name: "bad log level flag", args: []string{"--log-level", "loud"}, want: []string{`log level "loud"`}},
		{name: "bad log level in environment", env: map[string]string{"SLUICE_LOG_LEVEL": "verbose"}, want: []string{`log level "verbose"`, "SLUICE_LOG_LEVEL", "debug, info, warn or error"}},
		{name: "bad log format flag", args: []string{"--log-format", "xml"}, want: []string{`log format "xml"`, "text or json"}},
		{name: "bad log format in environment", env: map[string]string{"SLUICE_LOG_FORMAT": "logfmt"}, want: []string{`log format "logfmt"`, "SLUICE_LOG_FORMAT", "text or json"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.yaml != "" {
				args = append([]string{"--config", writeConfig(t, tc.yaml)}, args...)
			}
			var stderr bytes.Buffer
			_, logger, err := configure(args, envFunc(tc.env), &stderr)
			if err == nil {
				t.Fatal("configure succeeded, want an error")
			}
			if logger != nil {
				t.Error("configure returned a logger with its error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) && !strings.Contains(stderr.String(), w) {
					t.Errorf("error %q (output %q) does not mention %q", err, stderr.String(), w)
				}
			}
			if tc.isErr != nil && !errors.Is(err, tc.isErr) {
				t.Errorf("error %v is not %v", err, tc.isErr)
			}
		})
	}
}

func TestConfigureLogger(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		args      []string
		json      bool
		wantLevel slog.Level // lowest enabled level
	}{
		{name: "defaults: text at info", wantLevel: slog.LevelInfo},
		{name: "environment", env: map[string]string{"SLUICE_LOG_FORMAT": "json", "SLUICE_LOG_LEVEL": "debug"}, json: true, wantLevel: slog.LevelDebug},
		{name: "flags", args: []string{"--log-format", "json", "--log-level", "warn"}, json: true, wantLevel: slog.LevelWarn},
		{
			name: "flags over environment",
			env:  map[string]string{"SLUICE_LOG_FORMAT": "json", "SLUICE_LOG_LEVEL": "debug"},
			args: []string{"--log-format", "text", "--log-level", "error"},
			json: false, wantLevel: slog.LevelError,
		},
		{name: "level is case-insensitive", args: []string{"--log-level", "WARN"}, wantLevel: slog.LevelWarn},
	}
	levels := []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			_, logger, err := configure(tc.args, envFunc(tc.env), &out)
			if err != nil {
				t.Fatal(err)
			}
			out.Reset() // the "config" record
			for _, lv := range levels {
				if got, want := logger.Enabled(context.Background(), lv), lv >= tc.wantLevel; got != want {
					t.Errorf("Enabled(%v) = %v, want %v", lv, got, want)
				}
			}
			logger.Error("hello", "k", "v")
			line := out.String()
			var rec map[string]any
			isJSON := json.Unmarshal([]byte(line), &rec) == nil
			if isJSON != tc.json {
				t.Fatalf("log line %q: JSON = %v, want %v", line, isJSON, tc.json)
			}
			if isJSON && (rec["msg"] != "hello" || rec["k"] != "v") {
				t.Errorf("JSON log record = %v", rec)
			}
			if !isJSON && !strings.Contains(line, "msg=hello k=v") {
				t.Errorf("text log line = %q", line)
			}
		})
	}
}

func TestRunCommands(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string // substring; "" for success
		wantOut []string
	}{
		{name: "version", args: []string{"version"}, wantOut: []string{"sluice " + engine.Version + "\n"}},
		{name: "help", args: []string{"help"}, wantOut: []string{"usage: sluice", "sluice version", "sluice serve -h"}},
		{name: "unknown command", args: []string{"frobnicate"}, wantErr: `unknown command "frobnicate"`},
		{name: "unknown command lists usage", args: []string{"start"}, wantErr: "usage: sluice"},
		{name: "serve with a bad flag does not start", args: []string{"serve", "--max-channels", "x"}, wantErr: "-max-channels"},
		{name: "bare flags mean serve", args: []string{"--log-level", "loud"}, wantErr: `log level "loud"`},
		{name: "zero channels refused", args: []string{"serve", "--max-channels", "0"}, wantErr: "channels.max_channels must be at least 1"},
		{name: "missing tls files refused", args: []string{"serve", "--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"}, wantErr: "tls: loading"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			// Listeners on free ports, in case a command starts the engine.
			env := map[string]string{"SLUICE_ADDR": "127.0.0.1:0", "SLUICE_HTTP_ADDR": "127.0.0.1:0"}
			err := run(boundedCtx(t), tc.args, envFunc(env), &out, &out)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("run: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("run error = %v, want one containing %q", err, tc.wantErr)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output %q does not contain %q", out.String(), w)
				}
			}
		})
	}
}

func TestRunHelpFlagListsFlags(t *testing.T) {
	for _, args := range [][]string{{"serve", "-h"}, {"-h"}, {"serve", "--help"}} {
		var out bytes.Buffer
		err := run(boundedCtx(t), args, envFunc(map[string]string{"SLUICE_ADDR": "127.0.0.1:0", "SLUICE_HTTP_ADDR": "127.0.0.1:0"}), &out, &out)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("run %v = %v, want flag.ErrHelp", args, err)
		}
		for _, name := range []string{"-addr", "-http-addr", "-console-addr", "SLUICE_CONSOLE_ADDR", "-streams-addr", "SLUICE_STREAMS_ADDR", "-config", "-log-format", "-log-level", "-max-message-size",
			"-http-timeout", "-channel-ttl", "-max-channels", "-max-frame-size", "-tls-cert", "-tls-key",
			"-max-pending-bytes-per-worker", "-invocation-timeout", "-worker-idle-timeout",
			"-data-dir", "-data-sync", "SLUICE_DATA_DIR", "SLUICE_DATA_SYNC",
			"SLUICE_ADDR", "SLUICE_CONFIG", "SLUICE_TLS_CERT_FILE", "SLUICE_TLS_KEY_FILE"} {
			if !strings.Contains(out.String(), name) {
				t.Errorf("run %v output does not list %s", args, name)
			}
		}
	}
}

// logSink collects log output and hands each record (one Write per record,
// as slog handlers do) to a channel, so a test can wait for an event.
type logSink struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	records chan []byte
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.buf.Write(p)
	s.mu.Unlock()
	select {
	case s.records <- bytes.Clone(p):
	default: // nobody waiting for more; the buffer keeps everything
	}
	return len(p), nil
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// waitFor returns the first JSON log record whose msg is msg.
func (s *logSink) waitFor(t *testing.T, msg string, runErr <-chan error) map[string]any {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case p := <-s.records:
			var rec map[string]any
			if json.Unmarshal(p, &rec) == nil && rec["msg"] == msg {
				return rec
			}
		case err := <-runErr:
			t.Fatalf("run returned %v before logging %q; log:\n%s", err, msg, s.String())
		case <-timeout:
			t.Fatalf("no %q log record; log:\n%s", msg, s.String())
		}
	}
}

func TestRunServeStartsAndShutsDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink := &logSink{records: make(chan []byte, 64)}
	env := map[string]string{"SLUICE_HTTP_ADDR": "127.0.0.1:0", "SLUICE_LOG_FORMAT": "json"}
	runErr := make(chan error, 1)
	go func() {
		runErr <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0"}, envFunc(env), sink, sink)
	}()

	started := sink.waitFor(t, "engine started", runErr)
	if started["version"] != engine.Version {
		t.Errorf("started record version = %v, want %s", started["version"], engine.Version)
	}
	workerURL, _ := started["worker_url"].(string)
	httpURL, _ := started["http_url"].(string)
	if !strings.HasPrefix(workerURL, "ws://127.0.0.1:") || !strings.HasPrefix(httpURL, "http://127.0.0.1:") {
		t.Fatalf("engine started with worker_url %q, http_url %q", workerURL, httpURL)
	}
	resp, err := http.Get("http://" + strings.TrimPrefix(workerURL, "ws://") + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("/healthz = %d %q", resp.StatusCode, body)
	}

	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Errorf("run after cancel = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
	if !strings.Contains(sink.String(), `"msg":"shutting down"`) {
		t.Errorf("no shutdown record in the log:\n%s", sink.String())
	}
}

func TestRunServeListenerInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "worker port", args: []string{"--addr", ln.Addr().String(), "--http-addr", "127.0.0.1:0"}, want: "worker listener"},
		{name: "http port", args: []string{"--addr", "127.0.0.1:0", "--http-addr", ln.Addr().String()}, want: "http listener"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"SLUICE_ADDR": "127.0.0.1:0", "SLUICE_HTTP_ADDR": "127.0.0.1:0"} // overridden by the flags
			err := run(boundedCtx(t), append([]string{"serve"}, tc.args...), envFunc(env), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run = %v, want a %s error", err, tc.want)
			}
		})
	}
}

func TestVersionGoesToStdout(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(boundedCtx(t), []string{"version"}, envFunc(nil), &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stdout.String(), "sluice ") || stderr.Len() != 0 {
		t.Fatalf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
}

func TestConfigureAuthTokensFromEnv(t *testing.T) {
	got, _, err := configure(nil, envFunc(map[string]string{"SLUICE_AUTH_TOKENS": " tok-0123456789abcdef , tok-fedcba9876543210,"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"tok-0123456789abcdef", "tok-fedcba9876543210"}; !slices.Equal(got.Auth.Tokens, want) {
		t.Fatalf("tokens %q, want %q", got.Auth.Tokens, want)
	}
	if _, _, err := configure(nil, envFunc(map[string]string{"SLUICE_AUTH_TOKENS": "short"}), io.Discard); err == nil {
		t.Fatal("a 5-character token was accepted")
	}
}

func TestConfigureWorkerListenersFromFile(t *testing.T) {
	path := writeConfig(t, `
auth:
  tokens: [main-token-0123456789]
worker_listeners:
  - name: rbac
    addr: 127.0.0.1:0
    auth:
      rbac:
        auth_function_id: my::auth
        on_function_registration_function_id: my::on-fn
        expose_functions:
          - match("api::*")
          - metadata:
              public: true
              tier: match("free*")
`)
	got, _, err := configure([]string{"--config", path}, envFunc(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.WorkerListeners) != 1 || got.WorkerListeners[0].Auth.RBAC == nil {
		t.Fatalf("worker_listeners = %+v", got.WorkerListeners)
	}
	r := got.WorkerListeners[0].Auth.RBAC
	if r.AuthFunctionID != "my::auth" || r.OnFunctionRegistrationFunctionID != "my::on-fn" || len(r.ExposeFunctions) != 2 {
		t.Fatalf("rbac = %+v", r)
	}
	if !r.ExposeFunctions[0].Matches("api::x", nil) || !r.ExposeFunctions[1].Matches("x", []byte(`{"public":true,"tier":"free-2"}`)) {
		t.Fatalf("filters do not match: %+v", r.ExposeFunctions)
	}
	bad := writeConfig(t, "worker_listeners:\n  - addr: 127.0.0.1:0\n    auth:\n      rbac:\n        expose_functions: [\"api::*\"]\n")
	if _, _, err := configure([]string{"--config", bad}, envFunc(nil), io.Discard); err == nil {
		t.Fatal("a bare pattern (not match(\"...\")) was accepted")
	}
}
