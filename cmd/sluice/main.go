// Command sluice runs the Sluice engine.
//
//	sluice                 # same as "sluice serve"
//	sluice serve [flags]   # run the engine
//	sluice version
//
// Settings come from, in increasing precedence: embedded defaults, an
// optional YAML file (--config or SLUICE_CONFIG), environment variables
// (SLUICE_ADDR, SLUICE_HTTP_ADDR, ...) and flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/engine"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "sluice:", err)
			var ee *exitError
			if errors.As(err, &ee) {
				os.Exit(ee.code)
			}
			os.Exit(1)
		}
	}
}

// run runs one command: version and help print to stdout, logs and flag
// errors go to stderr.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	} else if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		// The subcommands, then the flags of the default one, serve.
		fmt.Fprintln(stdout, usage)
		fmt.Fprintln(stdout)
		return serve(ctx, args, getenv, stderr)
	} else if len(args) == 1 && (args[0] == "--version" || args[0] == "-version") {
		cmd = "version"
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, getenv, stderr)
	case "version":
		fmt.Fprintln(stdout, "sluice", engine.Version)
		return nil
	case "help":
		fmt.Fprintln(stdout, usage)
		return nil
	case "completion":
		return completion(args, stdout)
	default:
		if _, ok := clientCommands[cmd]; ok {
			return runClient(ctx, cmd, args, getenv, stdout, stderr)
		}
		return &exitError{code: 2, err: fmt.Errorf("unknown command %q\n%s", cmd, usage)}
	}
}

const usage = `usage: sluice [serve] [flags]   run the engine (default)
       sluice version            print the version (also --version)
       sluice serve -h           list the engine's flags

Against a running engine (--url, env SLUICE_URL, default ws://127.0.0.1:49134;
--token or env SLUICE_TOKEN when auth is on; --json for machine output):
       sluice functions [list]          registered functions
       sluice functions info ID         one function and its triggers
       sluice workers                   connected workers
       sluice triggers [--types]        registered triggers (or trigger types)
       sluice trigger FUNCTION [JSON | - | key=value ...] [--void | --enqueue QUEUE] [--timeout D]
                                        call a function, print its result
       sluice queue stats [QUEUE]       durable queue depth, consumers, DLQ size
       sluice queue dlq [QUEUE]         dead-lettered queues, or a queue's dead letters
       sluice queue redrive QUEUE [ID]  put dead letters back on their queue
       sluice state get SCOPE KEY       a state value (state set SCOPE KEY VALUE, state delete SCOPE KEY)
       sluice state list [SCOPE]        the scopes, or a scope's values
       sluice stream list [STREAM [GROUP]]
                                        streams and their groups, a stream's groups, or a group's items
       sluice channel send [FILE|-]     create a channel, print its reader ref, stream FILE into it
       sluice channel recv REF [FILE|-] read a channel into FILE (or stdout)
       sluice pipe FUNCTION FILE|- [key=value ...]
                                        call FUNCTION with {"reader": REF, "name", "size"} while
                                        streaming FILE into it; print its result
                                        (channel and pipe draw progress when stderr is a terminal)
       sluice tail [--function ID] [--count N] [--console-url URL]
                                        follow invocations as they finish (function, caller,
                                        duration, outcome), from the console listener
                                        (env SLUICE_CONSOLE_URL, default http://127.0.0.1:3113)
       sluice completion bash           shell completion: source <(sluice completion bash)
       sluice COMMAND -h                a command's flags

Exit status: 0 ok, 1 an error from the engine or a function (its code is
printed), 2 a usage error.`

// options is what flags and environment variables can set.
type options struct {
	config        string
	logFormat     string
	logLevel      string
	addr          string
	httpAddr      string
	consoleAddr   string
	streamsAddr   string
	maxMessage    engine.ByteSize
	httpTimeout   time.Duration
	channelTTL    time.Duration
	maxChannels   int
	maxFrameSize  engine.ByteSize
	tlsCert       string
	tlsKey        string
	shutdown      time.Duration
	httpIdle      time.Duration
	httpMaxReqs   int
	httpJSONBuf   engine.ByteSize
	origins       string
	maxPending    engine.ByteSize
	invTimeout    time.Duration
	idleTimeout   time.Duration
	maxPerWorker  int
	maxChanMem    engine.ByteSize
	dataDir       string
	dataSync      string
	cluster       bool
	accessLog     bool
	nodeName      string
	clusterName   string
	clusterListen string
	clusterPeers  string
	clusterAdv    string
	natsURL       string
	natsCreds     string
	natsCA        string
	natsCert      string
	natsKey       string
	routeCA       string
	routeCert     string
	routeKey      string
	clusterStart  time.Duration
	otelEndpoint  string
	nodeTimeout   time.Duration
}

func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, logger, err := configure(args, getenv, stderr)
	if err != nil {
		return err
	}
	e, err := engine.New(cfg, logger)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if path := getenv("SLUICE_CPUPROFILE"); path != "" {
		stopProfile, err := startCPUProfile(path)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	if err := e.Start(ctx); err != nil {
		return err
	}
	// A listener that fails makes the exit status non-zero (with
	// Shutdown's error, if any), so that a supervisor restarts the engine.
	var lnErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	case err := <-e.Err():
		if err != nil {
			logger.Error("listener failed", "err", err)
			lnErr = fmt.Errorf("listener failed: %w", err)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	return errors.Join(lnErr, e.Shutdown(sctx))
}

// startCPUProfile writes a CPU profile of the whole run to path (a
// debugging aid for measuring the engine as users run it, in its own
// process; read it with `go tool pprof`). It ends with a graceful shutdown.
func startCPUProfile(path string) (func(), error) {
	// %p: the process id, so that several engines (a cluster's nodes) can
	// share one setting.
	path = strings.ReplaceAll(path, "%p", strconv.Itoa(os.Getpid()))
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("SLUICE_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("SLUICE_CPUPROFILE: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// configure builds the engine config and logger from defaults, the config
// file, the environment and flags, in that order of precedence, and logs
// the settings in force.
func configure(args []string, getenv func(string) string, stderr io.Writer) (engine.Config, *slog.Logger, error) {
	cfg := engine.DefaultConfig()
	fs := flag.NewFlagSet("sluice serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.config, "config", getenv("SLUICE_CONFIG"), "optional YAML config file (env SLUICE_CONFIG)")
	fs.StringVar(&o.logFormat, "log-format", envOr(getenv, "SLUICE_LOG_FORMAT", "text"), "log format: text or json (env SLUICE_LOG_FORMAT)")
	fs.StringVar(&o.logLevel, "log-level", envOr(getenv, "SLUICE_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env SLUICE_LOG_LEVEL)")
	fs.StringVar(&o.addr, "addr", "", "worker listener address (env SLUICE_ADDR; default "+cfg.Addr+")")
	fs.StringVar(&o.httpAddr, "http-addr", "", "HTTP trigger listener address (env SLUICE_HTTP_ADDR; default "+cfg.HTTPAddr+")")
	fs.StringVar(&o.consoleAddr, "console-addr", "", "admin listener serving Prometheus /metrics; \"off\" (or empty) disables it (env SLUICE_CONSOLE_ADDR; default "+cfg.ConsoleAddr+")")
	fs.StringVar(&o.streamsAddr, "streams-addr", "", "stream client WebSocket listener; \"off\" (or empty) disables it (env SLUICE_STREAMS_ADDR; default "+cfg.Streams.Addr+")")
	fs.Var(&o.maxMessage, "max-message-size", "largest worker message, a `size`: bytes, or with a unit as in 64KiB, 16MiB (env SLUICE_MAX_MESSAGE_SIZE; default 64MiB)")
	fs.DurationVar(&o.httpTimeout, "http-timeout", 0, "how long an HTTP trigger waits for its function's response (env SLUICE_HTTP_TIMEOUT; default 30s)")
	fs.DurationVar(&o.channelTTL, "channel-ttl", 0, "how long a channel waits for an end to connect (env SLUICE_CHANNEL_TTL; default 5m)")
	fs.IntVar(&o.maxChannels, "max-channels", 0, "most channels open at once (env SLUICE_MAX_CHANNELS; default 100000)")
	fs.Var(&o.maxFrameSize, "max-frame-size", "largest channel frame, a `size`: bytes, or with a unit as in 64KiB, 16MiB (env SLUICE_MAX_FRAME_SIZE; default 16MiB)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate (chain) file: both listeners serve TLS, wss:// and https:// (env SLUICE_TLS_CERT_FILE; needs --tls-key)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key file of --tls-cert (env SLUICE_TLS_KEY_FILE)")
	fs.DurationVar(&o.shutdown, "shutdown-timeout", 0, "bound on a graceful shutdown; HTTP requests in flight may finish within it (env SLUICE_SHUTDOWN_TIMEOUT; default 10s)")
	fs.DurationVar(&o.httpIdle, "http-idle-timeout", 0, "close HTTP keep-alive connections idle this long (env SLUICE_HTTP_IDLE_TIMEOUT; default 2m)")
	fs.IntVar(&o.httpMaxReqs, "http-max-concurrent-requests", 0, "most HTTP requests served at once; more get 503 (env SLUICE_HTTP_MAX_CONCURRENT_REQUESTS; default 4096)")
	fs.Var(&o.httpJSONBuf, "http-max-buffered-json-bytes", "most bytes of JSON request bodies read whole at once, a `size`; more get 503 (env SLUICE_HTTP_MAX_BUFFERED_JSON_BYTES; default 64MiB)")
	fs.StringVar(&o.origins, "allowed-origins", "", "comma-separated browser origins allowed to open worker-port WebSockets besides local ones, \"*\" for any (env SLUICE_ALLOWED_ORIGINS; default none)")
	fs.Var(&o.maxPending, "max-pending-bytes-per-worker", "bytes that may wait to be written to one worker, a `size`; past it calls to it fail worker_congested (env SLUICE_MAX_PENDING_BYTES_PER_WORKER; default 32MiB)")
	fs.DurationVar(&o.invTimeout, "invocation-timeout", 0, "engine deadline for a worker's result, answered TIMEOUT; 0 disables (env SLUICE_INVOCATION_TIMEOUT; default 30s)")
	fs.DurationVar(&o.idleTimeout, "worker-idle-timeout", 0, "disconnect a worker silent this long, pings unanswered; 0 disables (env SLUICE_WORKER_IDLE_TIMEOUT; default 60s)")
	fs.IntVar(&o.maxPerWorker, "max-channels-per-worker", 0, "most open channels one worker connection may create (env SLUICE_MAX_CHANNELS_PER_WORKER; default 1000)")
	fs.Var(&o.maxChanMem, "max-channel-memory", "bytes all channels may buffer together, a `size`; writers wait beyond it (env SLUICE_MAX_CHANNEL_MEMORY; default 256MiB)")
	fs.StringVar(&o.dataDir, "data-dir", "", "directory of the durable queue store, or \"memory\" (env SLUICE_DATA_DIR; default "+cfg.DataDir+")")
	fs.BoolVar(&o.accessLog, "http-access-log", false, "log every HTTP trigger request at info (env SLUICE_HTTP_ACCESS_LOG=true; default off: at debug, abnormal ends at warn)")
	fs.BoolVar(&o.cluster, "cluster", false, "run as a node of a cluster on NATS; implied by --cluster-listen or --nats-url (env SLUICE_CLUSTER=true; default off: nothing of NATS starts)")
	fs.StringVar(&o.nodeName, "node-name", "", "this node's stable name in the cluster (env SLUICE_NODE_NAME; default the host name)")
	fs.StringVar(&o.clusterName, "cluster-name", "", "name of the embedded NATS cluster, the same on every node (env SLUICE_CLUSTER_NAME; default sluice)")
	fs.StringVar(&o.clusterListen, "cluster-listen", "", "embedded NATS route listener, host:port (env SLUICE_CLUSTER_LISTEN)")
	fs.StringVar(&o.clusterPeers, "cluster-peers", "", "comma-separated route addresses (host:port) of the other nodes (env SLUICE_CLUSTER_PEERS)")
	fs.StringVar(&o.clusterAdv, "cluster-advertise", "", "route address (host:port) the other nodes reach this node at, when not --cluster-listen: NAT, a proxy (env SLUICE_CLUSTER_ADVERTISE)")
	fs.StringVar(&o.routeCert, "cluster-tls-cert", "", "PEM certificate this node presents on its embedded NATS routes (env SLUICE_CLUSTER_TLS_CERT; needs --cluster-tls-key and --cluster-tls-ca; default off: routes unencrypted)")
	fs.StringVar(&o.routeKey, "cluster-tls-key", "", "PEM key of --cluster-tls-cert (env SLUICE_CLUSTER_TLS_KEY)")
	fs.StringVar(&o.routeCA, "cluster-tls-ca", "", "PEM CA every node's route certificate must chain to (env SLUICE_CLUSTER_TLS_CA)")
	fs.StringVar(&o.natsURL, "nats-url", "", "external NATS servers (comma-separated URLs) instead of the embedded one (env SLUICE_NATS_URL)")
	fs.StringVar(&o.natsCreds, "nats-creds", "", "NATS credentials file for --nats-url (env SLUICE_NATS_CREDS)")
	fs.StringVar(&o.natsCA, "nats-tls-ca", "", "PEM CA file to trust for --nats-url (env SLUICE_NATS_TLS_CA)")
	fs.StringVar(&o.natsCert, "nats-tls-cert", "", "PEM client certificate for --nats-url (env SLUICE_NATS_TLS_CERT; needs --nats-tls-key)")
	fs.StringVar(&o.natsKey, "nats-tls-key", "", "PEM key of --nats-tls-cert (env SLUICE_NATS_TLS_KEY)")
	fs.DurationVar(&o.clusterStart, "cluster-start-timeout", 0, "how long to wait at start for NATS and JetStream (env SLUICE_CLUSTER_START_TIMEOUT; default 1m)")
	fs.DurationVar(&o.nodeTimeout, "cluster-node-timeout", 0, "a node not heard from this long has left; the others take over its queue jobs (env SLUICE_CLUSTER_NODE_TIMEOUT; default 10s)")
	fs.StringVar(&o.dataSync, "data-sync", "", "store commit durability: normal (survives an engine crash) or full (fsync: survives power loss) (env SLUICE_DATA_SYNC; default normal)")
	fs.StringVar(&o.otelEndpoint, "otel-endpoint", "", "OTLP/HTTP collector base URL (e.g. http://localhost:4318) to export traces, logs and metrics to; \"off\" disables (env SLUICE_OTEL_ENDPOINT, or OTEL_EXPORTER_OTLP_ENDPOINT; default off)")
	if err := fs.Parse(args); err != nil {
		return cfg, nil, err
	}
	if fs.NArg() > 0 {
		return cfg, nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.config != "" {
		if err := loadConfigFile(&cfg, o.config); err != nil {
			if errors.Is(err, iofs.ErrNotExist) && !flagSet(fs, "config") {
				err = fmt.Errorf("%w (named by SLUICE_CONFIG)", err)
			}
			return cfg, nil, err
		}
	}
	// Environment, then flags that were set explicitly.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	// Before the environment and flags apply: cfg holds the file's TLS.
	errs := []error{refuseTLSBlanked(set, getenv, o, cfg)}
	str := func(flagName, env string, dst *string, v string) {
		if set[flagName] {
			*dst = v
		} else if ev := getenv(env); ev != "" {
			*dst = ev
		}
	}
	i64 := func(flagName, env string, dst *int64, v int64) {
		if set[flagName] {
			*dst = v
		} else if ev := getenv(env); ev != "" {
			n, err := strconv.ParseInt(ev, 10, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: want a whole number, e.g. 1000", env, ev))
			}
			*dst = n
		}
	}
	dur := func(flagName, env string, dst *time.Duration, v time.Duration) {
		if set[flagName] {
			*dst = v
		} else if ev := getenv(env); ev != "" {
			d, err := time.ParseDuration(ev)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: want a duration with a unit, e.g. 30s, 5m, 1h30m", env, ev))
			}
			*dst = d
		}
	}
	size := func(flagName, env string, dst *engine.ByteSize, v engine.ByteSize) {
		if set[flagName] {
			*dst = v
		} else if ev := getenv(env); ev != "" {
			n, err := engine.ParseByteSize(ev)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
			*dst = n
		}
	}
	str("addr", "SLUICE_ADDR", &cfg.Addr, o.addr)
	str("http-addr", "SLUICE_HTTP_ADDR", &cfg.HTTPAddr, o.httpAddr)
	str("console-addr", "SLUICE_CONSOLE_ADDR", &cfg.ConsoleAddr, o.consoleAddr)
	if cfg.ConsoleAddr == "off" {
		cfg.ConsoleAddr = ""
	}
	str("streams-addr", "SLUICE_STREAMS_ADDR", &cfg.Streams.Addr, o.streamsAddr)
	if cfg.Streams.Addr == "off" {
		cfg.Streams.Addr = ""
	}
	size("max-message-size", "SLUICE_MAX_MESSAGE_SIZE", &cfg.MaxMessageSize, o.maxMessage)
	dur("http-timeout", "SLUICE_HTTP_TIMEOUT", &cfg.HTTP.Timeout, o.httpTimeout)
	dur("channel-ttl", "SLUICE_CHANNEL_TTL", &cfg.Channels.TTL, o.channelTTL)
	size("max-frame-size", "SLUICE_MAX_FRAME_SIZE", &cfg.Channels.MaxFrameSize, o.maxFrameSize)
	str("tls-cert", "SLUICE_TLS_CERT_FILE", &cfg.TLS.CertFile, o.tlsCert)
	str("tls-key", "SLUICE_TLS_KEY_FILE", &cfg.TLS.KeyFile, o.tlsKey)
	list := func(flagName, env string, dst *[]string, v string) {
		s := v
		if !set[flagName] {
			if s = getenv(env); s == "" {
				return
			}
		}
		*dst = nil
		for _, e := range strings.Split(s, ",") {
			if e = strings.TrimSpace(e); e != "" {
				*dst = append(*dst, e)
			}
		}
	}
	list("allowed-origins", "SLUICE_ALLOWED_ORIGINS", &cfg.AllowedOrigins, o.origins)
	str("data-dir", "SLUICE_DATA_DIR", &cfg.DataDir, o.dataDir)
	str("data-sync", "SLUICE_DATA_SYNC", &cfg.DataSync, o.dataSync)
	mc := int64(cfg.Channels.MaxChannels)
	i64("max-channels", "SLUICE_MAX_CHANNELS", &mc, int64(o.maxChannels))
	cfg.Channels.MaxChannels = int(mc)
	dur("shutdown-timeout", "SLUICE_SHUTDOWN_TIMEOUT", &cfg.ShutdownTimeout, o.shutdown)
	dur("http-idle-timeout", "SLUICE_HTTP_IDLE_TIMEOUT", &cfg.HTTP.IdleTimeout, o.httpIdle)
	mr := int64(cfg.HTTP.MaxConcurrentRequests)
	i64("http-max-concurrent-requests", "SLUICE_HTTP_MAX_CONCURRENT_REQUESTS", &mr, int64(o.httpMaxReqs))
	cfg.HTTP.MaxConcurrentRequests = int(mr)
	size("http-max-buffered-json-bytes", "SLUICE_HTTP_MAX_BUFFERED_JSON_BYTES", &cfg.HTTP.MaxBufferedJSONBytes, o.httpJSONBuf)
	// Tokens only from the environment or the file: a flag would show them in ps.
	if ev := getenv("SLUICE_AUTH_TOKENS"); ev != "" {
		cfg.Auth.Tokens = nil
		for _, t := range strings.Split(ev, ",") {
			if t = strings.TrimSpace(t); t != "" {
				cfg.Auth.Tokens = append(cfg.Auth.Tokens, t)
			}
		}
	}
	size("max-pending-bytes-per-worker", "SLUICE_MAX_PENDING_BYTES_PER_WORKER", &cfg.MaxPendingBytesPerWorker, o.maxPending)
	dur("invocation-timeout", "SLUICE_INVOCATION_TIMEOUT", &cfg.InvocationTimeout, o.invTimeout)
	dur("worker-idle-timeout", "SLUICE_WORKER_IDLE_TIMEOUT", &cfg.WorkerIdleTimeout, o.idleTimeout)
	mw := int64(cfg.Channels.MaxPerWorker)
	i64("max-channels-per-worker", "SLUICE_MAX_CHANNELS_PER_WORKER", &mw, int64(o.maxPerWorker))
	cfg.Channels.MaxPerWorker = int(mw)
	size("max-channel-memory", "SLUICE_MAX_CHANNEL_MEMORY", &cfg.Channels.MaxTotalBufferBytes, o.maxChanMem)
	errs = append(errs, otelFromEnv(&cfg, getenv))
	str("otel-endpoint", "SLUICE_OTEL_ENDPOINT", &cfg.OTel.Endpoint, o.otelEndpoint)
	if cfg.OTel.Endpoint == "off" || (!set["otel-endpoint"] && strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true")) {
		cfg.OTel.Endpoint = ""
	}
	if set["http-access-log"] {
		cfg.HTTP.AccessLog = o.accessLog
	} else if ev := getenv("SLUICE_HTTP_ACCESS_LOG"); ev != "" {
		b, err := strconv.ParseBool(ev)
		if err != nil {
			errs = append(errs, fmt.Errorf("SLUICE_HTTP_ACCESS_LOG=%q: want true or false", ev))
		}
		cfg.HTTP.AccessLog = b
	}
	if set["cluster"] {
		cfg.Cluster.Enabled = o.cluster
	} else if ev := getenv("SLUICE_CLUSTER"); ev != "" {
		b, err := strconv.ParseBool(ev)
		if err != nil {
			errs = append(errs, fmt.Errorf("SLUICE_CLUSTER=%q: want true or false", ev))
		}
		cfg.Cluster.Enabled = b
	}
	cl := &cfg.Cluster
	str("node-name", "SLUICE_NODE_NAME", &cl.NodeName, o.nodeName)
	str("cluster-name", "SLUICE_CLUSTER_NAME", &cl.Name, o.clusterName)
	str("cluster-listen", "SLUICE_CLUSTER_LISTEN", &cl.Listen, o.clusterListen)
	list("cluster-peers", "SLUICE_CLUSTER_PEERS", &cl.Peers, o.clusterPeers)
	str("cluster-advertise", "SLUICE_CLUSTER_ADVERTISE", &cl.Advertise, o.clusterAdv)
	if ev := getenv("SLUICE_CLUSTER_SECRET"); ev != "" { // no flag: ps would show it
		cl.Secret = ev
	}
	str("cluster-tls-cert", "SLUICE_CLUSTER_TLS_CERT", &cl.RouteTLS.CertFile, o.routeCert)
	str("cluster-tls-key", "SLUICE_CLUSTER_TLS_KEY", &cl.RouteTLS.KeyFile, o.routeKey)
	str("cluster-tls-ca", "SLUICE_CLUSTER_TLS_CA", &cl.RouteTLS.CAFile, o.routeCA)
	str("nats-url", "SLUICE_NATS_URL", &cl.NATSURL, o.natsURL)
	str("nats-creds", "SLUICE_NATS_CREDS", &cl.NATSCreds, o.natsCreds)
	str("nats-tls-ca", "SLUICE_NATS_TLS_CA", &cl.NATSTLS.CAFile, o.natsCA)
	str("nats-tls-cert", "SLUICE_NATS_TLS_CERT", &cl.NATSTLS.CertFile, o.natsCert)
	str("nats-tls-key", "SLUICE_NATS_TLS_KEY", &cl.NATSTLS.KeyFile, o.natsKey)
	dur("cluster-start-timeout", "SLUICE_CLUSTER_START_TIMEOUT", &cl.StartTimeout, o.clusterStart)
	dur("cluster-node-timeout", "SLUICE_CLUSTER_NODE_TIMEOUT", &cl.NodeTimeout, o.nodeTimeout)
	if err := errors.Join(errs...); err != nil {
		return cfg, nil, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, nil, err
	}
	logger, err := newLogger(o.logFormat, o.logLevel, stderr)
	if err != nil {
		return cfg, nil, err
	}
	logSettings(logger, cfg, o.config)
	return cfg, logger, nil
}

// tlsFiles is a group of flags whose files turn TLS on, for
// refuseTLSBlanked: what they protect, the config file's section and the
// variables that also set them, and what clearing them would do.
type tlsFiles struct {
	what    string // "route TLS"
	section string // "cluster.route_tls"
	envs    string // "SLUICE_CLUSTER_TLS_*", in the way to turn it off
	effect  string // "run the routes unencrypted"
	off     string // "run them without TLS"
	files   []tlsFile
}

// tlsFile is one flag of a tlsFiles group.
type tlsFile struct {
	flag, env, key string // the flag, its variable and its key in the section
	val, file      string // the flag's value, the config file's
}

// refuseTLSBlanked refuses TLS file flags given empty (say, a deployment
// template's unset variable) over files set by the config file (file: the
// config with only the file applied) or the environment: clearing them
// would turn TLS off, or weaken it, without a word, so TLS is turned off
// only where it was turned on. An empty flag with nothing to clear is as
// if not given. One error per group.
func refuseTLSBlanked(set map[string]bool, getenv func(string) string, o options, file engine.Config) error {
	groups := []tlsFiles{{
		what: "listener TLS", section: "tls", envs: "SLUICE_TLS_*_FILE",
		effect: "serve the listeners unencrypted (ws://, http://)", off: "serve them without TLS",
		files: []tlsFile{
			{"tls-cert", "SLUICE_TLS_CERT_FILE", "cert_file", o.tlsCert, file.TLS.CertFile},
			{"tls-key", "SLUICE_TLS_KEY_FILE", "key_file", o.tlsKey, file.TLS.KeyFile},
		},
	}, {
		what: "route TLS", section: "cluster.route_tls", envs: "SLUICE_CLUSTER_TLS_*",
		effect: "run the routes unencrypted", off: "run them without TLS",
		files: []tlsFile{
			{"cluster-tls-cert", "SLUICE_CLUSTER_TLS_CERT", "cert_file", o.routeCert, file.Cluster.RouteTLS.CertFile},
			{"cluster-tls-key", "SLUICE_CLUSTER_TLS_KEY", "key_file", o.routeKey, file.Cluster.RouteTLS.KeyFile},
			{"cluster-tls-ca", "SLUICE_CLUSTER_TLS_CA", "ca_file", o.routeCA, file.Cluster.RouteTLS.CAFile},
		},
	}, {
		what: "TLS of the connection to NATS", section: "cluster.nats_tls", envs: "SLUICE_NATS_TLS_*",
		effect: "weaken that connection (the system's CAs trusted instead of the CA, no client certificate, or no TLS at all)",
		off:    "connect without those files",
		files: []tlsFile{
			{"nats-tls-ca", "SLUICE_NATS_TLS_CA", "ca_file", o.natsCA, file.Cluster.NATSTLS.CAFile},
			{"nats-tls-cert", "SLUICE_NATS_TLS_CERT", "cert_file", o.natsCert, file.Cluster.NATSTLS.CertFile},
			{"nats-tls-key", "SLUICE_NATS_TLS_KEY", "key_file", o.natsKey, file.Cluster.NATSTLS.KeyFile},
		},
	}}
	var errs []error
	for _, g := range groups {
		var blanked, envs, keys []string
		for _, f := range g.files {
			if !set[f.flag] || f.val != "" {
				continue
			}
			switch {
			case getenv(f.env) != "":
				envs = append(envs, f.env)
			case f.file != "":
				keys = append(keys, f.key)
			default:
				continue
			}
			blanked = append(blanked, "--"+f.flag)
		}
		if len(blanked) == 0 {
			continue
		}
		from := strings.Join(envs, ", ")
		if len(keys) > 0 {
			if from != "" {
				from += " and "
			}
			from += fmt.Sprintf("the config file %s (%s: %s)", o.config, g.section, strings.Join(keys, ", "))
		}
		errs = append(errs, fmt.Errorf("%s given empty would clear the %s set by %s and %s: refused; "+
			"to %s, remove %s from the config file and %s from the environment",
			strings.Join(blanked, ", "), g.what, from, g.effect, g.off, g.section, g.envs))
	}
	return errors.Join(errs...)
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

func newLogger(format, level string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q (--log-level, SLUICE_LOG_LEVEL): want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log format %q (--log-format, SLUICE_LOG_FORMAT): want text or json", format)
	}
}

// otelFromEnv applies the standard OpenTelemetry exporter variables
// (below SLUICE_OTEL_ENDPOINT and --otel-endpoint): OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_HEADERS (key=value,... with URL-encoded values) and
// OTEL_SERVICE_NAME.
func otelFromEnv(cfg *engine.Config, getenv func(string) string) error {
	if ev := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); ev != "" {
		cfg.OTel.Endpoint = ev
	}
	if ev := getenv("OTEL_SERVICE_NAME"); ev != "" {
		cfg.OTel.ServiceName = ev
	}
	ev := getenv("OTEL_EXPORTER_OTLP_HEADERS")
	if ev == "" {
		return nil
	}
	h := map[string]string{}
	for _, kv := range strings.Split(ev, ",") {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		dv, err := url.QueryUnescape(strings.TrimSpace(v))
		if !ok || k == "" || err != nil {
			return fmt.Errorf("OTEL_EXPORTER_OTLP_HEADERS: %q is not key=value", kv)
		}
		h[k] = dv
	}
	cfg.OTel.Headers = h
	return nil
}
