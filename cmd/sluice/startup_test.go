package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
)

// TestRunServeLogsSettings: before "engine started", one "config" record
// says which listeners, which config file (or none), the data directory
// (none yet) and the limits in force, from every layer of settings.
func TestRunServeLogsSettings(t *testing.T) {
	cfgPath := writeConfig(t, "channels:\n  max_channels: 77\nhttp:\n  timeout: 7s\n")
	for _, tc := range []struct {
		name     string
		args     []string
		wantFile string
	}{
		{name: "with a config file", args: []string{"--config", cfgPath}, wantFile: cfgPath},
		{name: "without", wantFile: "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			sink := &logSink{records: make(chan []byte, 64)}
			env := map[string]string{"SLUICE_HTTP_ADDR": "127.0.0.1:0", "SLUICE_LOG_FORMAT": "json", "SLUICE_MAX_FRAME_SIZE": "4096", "SLUICE_CONSOLE_ADDR": "off", "SLUICE_STREAMS_ADDR": "off"}
			runErr := make(chan error, 1)
			go func() {
				runErr <- run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0", "--max-message-size", "2048"}, tc.args...), envFunc(env), sink, sink)
			}()
			sink.waitFor(t, "engine started", runErr)
			cancel()
			<-runErr

			var rec map[string]any
			var order []string
			for _, l := range strings.Split(strings.TrimSpace(sink.String()), "\n") {
				var r map[string]any
				if err := json.Unmarshal([]byte(l), &r); err != nil {
					t.Fatalf("log line %q: %v", l, err)
				}
				msg := r["msg"].(string)
				order = append(order, msg)
				if r["msg"] == "config" {
					rec = r
				}
			}
			if len(order) < 2 || order[0] != "config" || order[1] != "engine started" {
				t.Fatalf("log records %q, want config then engine started", order)
			}
			dur := func(d time.Duration) any { return float64(d) } // JSON logs durations in nanoseconds
			want := map[string]any{
				"addr": "127.0.0.1:0", "http_addr": "127.0.0.1:0", "config_file": tc.wantFile, "data_dir": engine.DefaultConfig().DataDir, "data_sync": "normal", "tls": "off",
				"max_message_size": 2048.0, "max_id_length": float64(engine.DefaultConfig().MaxIDLength), "max_frame_size": 4096.0, "channel_buffer": 64.0, "channel_max_buffer": 1024.0,
				"channel_ttl": dur(5 * time.Minute), "http_max_json_body": float64(16 << 20),
				"http_max_buffered_json":       float64(engine.DefaultConfig().HTTP.MaxBufferedJSONBytes),
				"http_max_concurrent_requests": float64(engine.DefaultConfig().HTTP.MaxConcurrentRequests),
				"http_idle_timeout":            dur(engine.DefaultConfig().HTTP.IdleTimeout), "shutdown_timeout": dur(10 * time.Second),
				"max_channels": 100000.0, "http_timeout": dur(30 * time.Second),
				"max_pending_bytes_per_worker": float64(32 << 20), "invocation_timeout": dur(30 * time.Second),
				"worker_idle_timeout": dur(60 * time.Second), "streams_addr": "off", "console_addr": "",
				"http_functions": "on", "http_functions_private_ips": "blocked", "http_functions_require_https": true,
				"http_functions_max_concurrent": float64(engine.DefaultConfig().HTTPFunctions.MaxConcurrent),
			}
			if tc.wantFile != "none" {
				want["max_channels"], want["http_timeout"] = 77.0, dur(7*time.Second)
			}
			for k, v := range want {
				if rec[k] != v {
					t.Errorf("config record %s = %v, want %v (record %v)", k, rec[k], v, rec)
				}
			}
		})
	}
}

// TestCPUProfile: SLUICE_CPUPROFILE's file holds a profile once stopped,
// and an unwritable path is refused before the engine starts.
func TestCPUProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.prof")
	stop, err := startCPUProfile(path)
	if err != nil {
		t.Fatal(err) // also when the test binary itself runs with -cpuprofile: one CPU profile at a time
	}
	stop()
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("profile file: %v, %v", fi, err)
	}
	dir := t.TempDir()
	stop, err = startCPUProfile(filepath.Join(dir, "cpu-%p.prof"))
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("cpu-%d.prof", os.Getpid()))); err != nil {
		t.Fatalf("%%p is not the process id: %v", err)
	}
	if _, err := startCPUProfile(filepath.Join(t.TempDir(), "missing", "cpu.prof")); err == nil || !strings.Contains(err.Error(), "SLUICE_CPUPROFILE") {
		t.Fatalf("unwritable path: %v", err)
	}
}
