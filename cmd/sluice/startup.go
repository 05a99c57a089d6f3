package main

import (
	"log/slog"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/otel"
)

// logSettings logs, in one "config" record before the engine starts, what
// it will run with: the listeners as configured (the "engine started"
// record then gives the bound URLs), where the settings came from, and the
// limits in force.
func logSettings(logger *slog.Logger, cfg engine.Config, configFile string) {
	if configFile == "" {
		configFile = "none"
	}
	logger.Info("config",
		"addr", cfg.Addr,
		"http_addr", cfg.HTTPAddr,
		"console_addr", cfg.ConsoleAddr,
		"streams_addr", streamsAddr(cfg),
		"config_file", configFile,
		"data_dir", cfg.DataDir, // the queue store, created on first use
		"data_sync", cfg.DataSync,
		"queues", len(cfg.Queues),
		"tls", onOff(cfg.TLS.Enabled()),
		"auth", onOff(len(cfg.Auth.Tokens) > 0 || cfg.Auth.RBAC != nil), // never the tokens
		"worker_listeners", len(cfg.WorkerListeners),
		"max_message_size", cfg.MaxMessageSize,
		"max_id_length", cfg.MaxIDLength,
		"max_frame_size", cfg.Channels.MaxFrameSize,
		"max_channels", cfg.Channels.MaxChannels,
		"channel_buffer", cfg.Channels.DefaultBuffer,
		"channel_max_buffer", cfg.Channels.MaxBuffer,
		"channel_ttl", cfg.Channels.TTL,
		"channel_max_buffer_bytes", cfg.Channels.MaxBufferBytes,
		"channel_max_total_buffer_bytes", cfg.Channels.MaxTotalBufferBytes,
		"channels_max_per_worker", cfg.Channels.MaxPerWorker,
		"http_timeout", cfg.HTTP.Timeout,
		"http_max_json_body", cfg.HTTP.MaxJSONBody,
		"http_max_buffered_json", cfg.HTTP.MaxBufferedJSONBytes,
		"http_max_concurrent_requests", cfg.HTTP.MaxConcurrentRequests,
		"http_idle_timeout", cfg.HTTP.IdleTimeout,
		"shutdown_timeout", cfg.ShutdownTimeout,
		"max_pending_bytes_per_worker", cfg.MaxPendingBytesPerWorker,
		"invocation_timeout", cfg.InvocationTimeout,
		"worker_idle_timeout", cfg.WorkerIdleTimeout,
		"http_functions", onOff(cfg.HTTPFunctions.Enabled),
		"http_functions_private_ips", blockedAllowed(cfg.HTTPFunctions.BlockPrivateIPs),
		"http_functions_require_https", cfg.HTTPFunctions.RequireHTTPS,
		"http_functions_max_concurrent", cfg.HTTPFunctions.MaxConcurrent,
		"otel_endpoint", otelEndpoint(cfg),
		"cluster", onOff(cfg.Cluster.On()),
	)
}

// streamsAddr is the stream client listener as configured: "off" when the
// module or the listener is off.
func streamsAddr(cfg engine.Config) string {
	if !cfg.Streams.Enabled || cfg.Streams.Addr == "" {
		return "off"
	}
	return cfg.Streams.Addr
}

func blockedAllowed(blocked bool) string {
	if blocked {
		return "blocked"
	}
	return "allowed"
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func otelEndpoint(cfg engine.Config) string {
	if cfg.OTel.Endpoint == "" {
		return "off"
	}
	return otel.Redacted(cfg.OTel.Endpoint)
}
