package engine

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/metrics"
	"github.com/sluicehq/sluice/wire"
)

const fnHealthCheck = "engine::health::check"

func validHostPort(s string) bool {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}

// MetricsHandler serves the Prometheus text format of the engine's
// metrics (docs/operations.md). The console listener mounts it at
// /metrics; mount it yourself to embed the engine in another server.
func (e *Engine) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_ = e.metrics.Write(w, e.gauges(r.Context()))
		e.writeOTelMetrics(w)
	})
}

// gauges reads the values the engine keeps anyway.
func (e *Engine) gauges(ctx context.Context) metrics.Gauges {
	st := e.Stats()
	g := metrics.Gauges{Workers: st.Workers, Functions: st.Functions, Channels: st.Channels, ChannelBufferedBytes: e.hub.BufferedBytes()}
	g.ChannelFrames, g.ChannelBytes, g.ChannelsAborted = e.hub.Counters()
	if s := e.queues.current(); s != nil {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		for _, t := range e.queueKeys(ctx) {
			key := t.Name
			if t.BrokerType == "topic" {
				key = topicQueuePrefix + t.Name
			}
			if qs, err := s.Stats(ctx, key); err == nil {
				g.Queues = append(g.Queues, metrics.QueueGauge{Name: key, Depth: qs.Pending, InFlight: qs.Leased, DLQ: qs.Dead})
			}
		}
	}
	return g
}

// consoleHandler is the admin listener's mux.
func (e *Engine) consoleHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", e.MetricsHandler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	e.mountConsole(mux)
	return mux
}

// startConsole starts the admin listener. A failure to listen is logged,
// not fatal: the data plane must not stay down because the metrics port is
// taken.
func (e *Engine) startConsole(ctx context.Context) {
	if e.cfg.ConsoleAddr == "" {
		return
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", e.cfg.ConsoleAddr)
	if err != nil {
		e.log.Error("console listener not started: /metrics unavailable", "console_addr", e.cfg.ConsoleAddr, "err", err)
		return
	}
	e.consoleLn = ln
	e.consoleSrv = &http.Server{Handler: e.consoleHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: e.cfg.HTTP.IdleTimeout}
	go func() { e.serveErr <- serveOrClosed(e.consoleSrv, ln) }()
}

// ConsoleURL is the admin listener's base URL, e.g. http://127.0.0.1:3113,
// or "" when it is off.
func (e *Engine) ConsoleURL() string {
	if e.consoleLn == nil {
		return ""
	}
	return "http://" + e.consoleLn.Addr().String()
}

func (e *Engine) stopConsole() {
	if e.consoleSrv != nil {
		_ = e.consoleSrv.Close()
	}
}

// healthComponent is one part of engine::health::check's answer.
type healthComponent struct {
	Status  string `json:"status"` // healthy or disabled
	Details any    `json:"details"`
}

type healthStatus struct {
	Status     string                     `json:"status"`
	Components map[string]healthComponent `json:"components"`
	Timestamp  int64                      `json:"timestamp"` // unix ms
	Version    string                     `json:"version"`
}

// healthCheck implements engine::health::check with upstream's shape:
// status "healthy" ("degraded" once the engine is shutting down), and the
// observability components: otel is healthy with its counters when OTLP
// export is on (otel.go), else disabled; logs and spans are disabled (the
// engine keeps no store of them); metrics are healthy, with the
// /metrics URL when the console listener runs.
func (e *Engine) healthCheck(context.Context, *invocation.Request, struct{}) (healthStatus, *wire.ErrorBody) {
	st := "healthy"
	if e.isShuttingDown() {
		st = "degraded"
	}
	disabled := healthComponent{Status: "disabled"}
	var url any
	if u := e.ConsoleURL(); u != "" {
		url = u + "/metrics"
	}
	s := e.Stats()
	return healthStatus{
		Status: st,
		Components: map[string]healthComponent{
			"otel": e.otelHealth(), "logs": disabled, "spans": disabled,
			"metrics": {Status: "healthy", Details: map[string]any{"prometheus_url": url, "workers": s.Workers, "functions": s.Functions,
				"invocations_in_flight": e.metrics.InFlight()}},
		},
		Timestamp: time.Now().UnixMilli(),
		Version:   Version,
	}, nil
}
