package engine

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

// lineSink sends each log line to a channel.
type lineSink chan string

func (l lineSink) Write(p []byte) (int, error) {
	select {
	case l <- string(p):
	default: // a test reads only the lines it waits for
	}
	return len(p), nil
}

// awaitLine returns the first line holding every part, failing after 5 s.
func awaitLine(t *testing.T, lines lineSink, parts ...string) string {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case l := <-lines:
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(l, p)
			}
			if ok {
				return l
			}
		case <-timeout:
			t.Fatalf("no log line with %q", parts)
		}
	}
}

// engine::log::* write a worker's line to the engine log at their level,
// with the worker's fields, each cut at 4 KiB; a level the log does not
// enable writes nothing.
func TestLogBuiltins(t *testing.T) {
	lines := make(lineSink, 256)
	cfg := DefaultConfig()
	cfg.Addr, cfg.HTTPAddr, cfg.ConsoleAddr, cfg.Streams.Addr, cfg.DataDir = "127.0.0.1:0", "", "", "", DataDirMemory
	e, err := New(cfg, slog.New(slog.NewTextHandler(lines, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	w := dialRaw(t, e)
	long := strings.Repeat("x", 5000)
	if res := w.call("l1", "engine::log::warn", `{"message":"disk `+long+`","data":{"free": 12},"trace_id":"abc","span_id":"def","service_name":"billing"}`); res.Error != nil {
		t.Fatal(res.Error)
	}
	line := awaitLine(t, lines, "level=WARN", "source=worker", "worker_id="+w.id, "service_name=billing", "trace_id=abc", "span_id=def", `data="{\"free\":12}"`)
	if strings.Contains(line, long) || !strings.Contains(line, "…") {
		t.Fatalf("a 5000-byte message was not cut: %d bytes", len(line))
	}
	// trace is below the log's debug level: nothing is written, and the
	// next line is the info one.
	w.call("l2", "engine::log::trace", `{"message":"very chatty"}`)
	w.call("l3", "engine::log::info", `{"message":"after trace"}`)
	if l := awaitLine(t, lines, "source=worker"); strings.Contains(l, "very chatty") || !strings.Contains(l, "after trace") {
		t.Fatalf("after a trace line below the level: %s", l)
	}
}

// The console listener serves /metrics and /healthz, and
// engine::health::check reports healthy with the metrics URL.
func TestConsoleAndHealth(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.ConsoleAddr = "127.0.0.1:0" })
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"f::counted"}`)
	waitFunction(t, w, "f::counted")
	if e.ConsoleURL() == "" {
		t.Fatal("no console URL")
	}
	res, err := http.Get(e.ConsoleURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{"sluice_workers_connected 1", "# TYPE sluice_invocations_total counter", "sluice_functions_registered"} {
		if res.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Fatalf("/metrics (%d) lacks %q:\n%s", res.StatusCode, want, b)
		}
	}
	if res, err := http.Get(e.ConsoleURL() + "/healthz"); err != nil || res.StatusCode != 200 {
		t.Fatalf("/healthz: %v %v", res, err)
	}
	var h healthStatus
	mustResult(t, w.call("h1", "engine::health::check", `{}`), &h)
	m := h.Components["metrics"]
	details, _ := m.Details.(map[string]any)
	if h.Status != "healthy" || h.Version != Version || m.Status != "healthy" || details["prometheus_url"] != e.ConsoleURL()+"/metrics" ||
		h.Components["otel"].Status != "disabled" || time.Since(time.UnixMilli(h.Timestamp)) > time.Minute {
		t.Fatalf("health = %+v", h)
	}
}

// ByteSize as a flag.Value and back to YAML; a missing config file is
// fs.ErrNotExist and says so.
func TestByteSizeFlag(t *testing.T) {
	var b ByteSize
	if err := b.Set("16MiB"); err != nil || b != 16<<20 {
		t.Fatalf("Set(16MiB) = %d, %v", b, err)
	}
	if err := b.Set("16MB"); err == nil || b != 16<<20 {
		t.Fatalf("Set(16MB) = %v, and changed the value to %d", err, b)
	}
	if v, err := b.MarshalYAML(); err != nil || v != "16MiB" {
		t.Fatalf("MarshalYAML = %v, %v", v, err)
	}
}
