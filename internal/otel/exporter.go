package otel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Signal is one of OTLP's signals.
type Signal uint8

// The signals, with their OTLP/HTTP paths.
const (
	Traces Signal = iota
	Metrics
	Logs
)

var signalPath = [...]string{Traces: "/v1/traces", Metrics: "/v1/metrics", Logs: "/v1/logs"}

func (s Signal) String() string { return [...]string{"traces", "metrics", "logs"}[s] }

// FrameSignal maps an SDK telemetry frame's 4-byte prefix to its signal.
func FrameSignal(prefix []byte) (Signal, bool) {
	switch string(prefix) {
	case "OTLP":
		return Traces, true
	case "MTRC":
		return Metrics, true
	case "LOGS":
		return Logs, true
	}
	return 0, false
}

// Config configures an Exporter.
type Config struct {
	// Endpoint is the collector's OTLP/HTTP base URL
	// (http://collector:4318); signals go to its /v1/traces, /v1/metrics
	// and /v1/logs.
	Endpoint string
	// Headers are added to every export (e.g. an API key).
	Headers map[string]string
	// ServiceName, ServiceVersion and InstanceID describe the engine in
	// the resource of its own spans.
	ServiceName, ServiceVersion, InstanceID string
	// MaxQueueSpans bounds the engine's spans waiting for export, and
	// separately its log records; more are dropped and counted.
	MaxQueueSpans int
	// MaxBatchSpans is the most spans in one export.
	MaxBatchSpans int
	// MaxQueueBytes bounds the bytes of SDK payloads waiting to be
	// forwarded; more are dropped and counted.
	MaxQueueBytes int64
	// FlushInterval is the longest a span waits for its batch to fill.
	FlushInterval time.Duration
	// Timeout bounds one export request.
	Timeout time.Duration
	// Logger gets export failures (rate limited); nil discards them.
	Logger *slog.Logger
	// Client sends the exports; nil: a client of its own.
	Client *http.Client
}

// Stats are an exporter's counters.
type Stats struct {
	SpansExported, SpansDropped    uint64
	FramesForwarded, FramesDropped uint64
	LogsExported, LogsDropped      uint64
	ExportFailures                 uint64
}

// Exporter batches spans and forwards SDK payloads to an OTLP/HTTP
// collector from one goroutine. Its methods never block on the network.
type Exporter struct {
	cfg    Config
	base   string // endpoint without a trailing slash
	shown  string // base with any password masked, for logs
	client *http.Client
	log    *slog.Logger

	// Ended spans wait in queued (at most MaxQueueSpans), appended under
	// spanMu: no goroutine is woken per span. kick wakes the exporter
	// when a batch is full; else its ticker collects them.
	spanMu      sync.Mutex
	queued      []*Span
	kick        chan struct{}
	logs        chan LogRecord
	frames      chan frame
	queuedBytes atomic.Int64
	flushReq    chan chan struct{}
	stop        chan struct{}
	done        chan struct{}
	closeOnce   sync.Once

	spansExported, spansDropped    atomic.Uint64
	framesForwarded, framesDropped atomic.Uint64
	logsExported, logsDropped      atomic.Uint64
	exportFailures                 atomic.Uint64
	lastFailureLog                 atomic.Int64 // unix ns
	resource                       []byte       // the encoded resource of the engine's spans
}

type frame struct {
	sig  Signal
	body []byte
}

// Defaults of Config's bounds.
const (
	DefaultMaxQueueSpans = 8192
	DefaultMaxBatchSpans = 512
	DefaultMaxQueueBytes = 16 << 20
	DefaultFlushInterval = time.Second
	DefaultTimeout       = 10 * time.Second
)

// ValidateEndpoint checks an OTLP/HTTP base URL.
func ValidateEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want an http:// or https:// URL such as http://localhost:4318", s)
	}
	return nil
}

// New starts an exporter; Shutdown stops it.
func New(cfg Config) (*Exporter, error) {
	if err := ValidateEndpoint(cfg.Endpoint); err != nil {
		return nil, err
	}
	if cfg.MaxQueueSpans <= 0 {
		cfg.MaxQueueSpans = DefaultMaxQueueSpans
	}
	if cfg.MaxBatchSpans <= 0 {
		cfg.MaxBatchSpans = DefaultMaxBatchSpans
	}
	if cfg.MaxQueueBytes <= 0 {
		cfg.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.ServiceName == "" {
		cfg.ServiceName = "sluice"
	}
	x := &Exporter{
		cfg:      cfg,
		base:     strings.TrimRight(cfg.Endpoint, "/"),
		client:   cfg.Client,
		log:      cfg.Logger,
		kick:     make(chan struct{}, 1),
		logs:     make(chan LogRecord, cfg.MaxQueueSpans),
		frames:   make(chan frame, 1024),
		flushReq: make(chan chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if x.client == nil {
		x.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if x.log == nil {
		x.log = slog.New(slog.DiscardHandler)
	}
	x.shown = Redacted(x.base)
	x.resource = encodeResource(cfg)
	go x.run()
	return x, nil
}

// Endpoint returns the collector's base URL, a password in it masked.
func (x *Exporter) Endpoint() string { return x.shown }

// Redacted returns an endpoint URL with any password masked.
func Redacted(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Redacted()
}

// Stats returns the exporter's counters.
func (x *Exporter) Stats() Stats {
	return Stats{
		SpansExported: x.spansExported.Load(), SpansDropped: x.spansDropped.Load(),
		FramesForwarded: x.framesForwarded.Load(), FramesDropped: x.framesDropped.Load(),
		LogsExported: x.logsExported.Load(), LogsDropped: x.logsDropped.Load(),
		ExportFailures: x.exportFailures.Load(),
	}
}

// StartSpan starts a span continuing parent (a traceparent, "" for a new
// trace) and returns it with the traceparent that continues it. A parent
// that is not sampled is not recorded: StartSpan returns nil and parent.
func (x *Exporter) StartSpan(name, target string, kind Kind, parent string) (*Span, string) {
	var sc SpanContext
	p, ok := ParseTraceparent(parent)
	if ok {
		if !p.Sampled {
			return nil, parent
		}
		sc.Trace = p.Trace
	} else {
		sc.Trace = newTraceID()
	}
	sc.Span, sc.Sampled = newSpanID(), true
	s := spanPool.Get().(*Span)
	s.SpanContext, s.Name, s.Target, s.Kind, s.StartTime, s.x = sc, name, target, kind, time.Now(), x
	if ok {
		s.Parent = p.Span
	}
	return s, sc.Traceparent()
}

// End finishes s (now, unless End is already set) and queues it for
// export; a full queue drops it. s must not be used afterwards.
func (x *Exporter) End(s *Span) {
	if s == nil {
		return
	}
	if s.EndTime.IsZero() {
		s.EndTime = time.Now()
	}
	x.spanMu.Lock()
	n := len(x.queued)
	if n >= x.cfg.MaxQueueSpans {
		x.spanMu.Unlock()
		x.spansDropped.Add(1)
		s.reset()
		spanPool.Put(s)
		return
	}
	x.queued = append(x.queued, s)
	x.spanMu.Unlock()
	if n+1 == min(x.cfg.MaxBatchSpans, x.cfg.MaxQueueSpans) {
		select {
		case x.kick <- struct{}{}:
		default:
		}
	}
}

// Forward queues an SDK's OTLP/JSON payload for sig (copied: body may be
// reused by the caller). Beyond MaxQueueBytes it is dropped and counted.
func (x *Exporter) Forward(sig Signal, body []byte) bool {
	n := int64(len(body))
	if x.queuedBytes.Add(n) > x.cfg.MaxQueueBytes {
		x.queuedBytes.Add(-n)
		x.framesDropped.Add(1)
		return false
	}
	f := frame{sig: sig, body: bytes.Clone(body)}
	select {
	case x.frames <- f:
		return true
	default:
		x.queuedBytes.Add(-n)
		x.framesDropped.Add(1)
		return false
	}
}

// Flush exports what is queued now and returns when that is done or ctx
// ends.
func (x *Exporter) Flush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case x.flushReq <- ack:
	case <-x.done:
		return errors.New("otel: exporter stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what is queued (within ctx) and stops the exporter.
func (x *Exporter) Shutdown(ctx context.Context) error {
	x.closeOnce.Do(func() { close(x.stop) })
	select {
	case <-x.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (x *Exporter) run() {
	defer close(x.done)
	tick := time.NewTicker(x.cfg.FlushInterval)
	defer tick.Stop()
	var spare []*Span // the other half of the double buffer
	var buf []byte
	// flushSpans exports every span queued now, in batches.
	flushSpans := func() {
		x.spanMu.Lock()
		all := x.queued
		x.queued = spare[:0]
		x.spanMu.Unlock()
		for q := all; len(q) > 0; {
			batch := q[:min(len(q), x.cfg.MaxBatchSpans)]
			q = q[len(batch):]
			buf = x.encodeSpans(buf[:0], batch)
			if x.post(Traces, buf) {
				x.spansExported.Add(uint64(len(batch)))
			} else {
				x.spansDropped.Add(uint64(len(batch)))
			}
			for _, s := range batch {
				s.reset()
				spanPool.Put(s)
			}
			if cap(buf) > 4<<20 {
				buf = nil
			}
		}
		clear(all)
		spare = all[:0]
	}
	logBatch := make([]LogRecord, 0, x.cfg.MaxBatchSpans)
	flushLogs := func() {
		if len(logBatch) == 0 {
			return
		}
		buf = x.encodeLogs(buf[:0], logBatch)
		if x.post(Logs, buf) {
			x.logsExported.Add(uint64(len(logBatch)))
		} else {
			x.logsDropped.Add(uint64(len(logBatch)))
		}
		clear(logBatch)
		logBatch = logBatch[:0]
	}
	addLog := func(r LogRecord) {
		logBatch = append(logBatch, r)
		if len(logBatch) >= x.cfg.MaxBatchSpans {
			flushLogs()
		}
	}
	forward := func(f frame) {
		if x.post(f.sig, f.body) {
			x.framesForwarded.Add(1)
		} else {
			x.framesDropped.Add(1)
		}
		x.queuedBytes.Add(-int64(len(f.body)))
	}
	// drain takes everything queued now.
	drain := func() {
		for {
			select {
			case f := <-x.frames:
				forward(f)
			case r := <-x.logs:
				addLog(r)
			default:
				flushSpans()
				flushLogs()
				return
			}
		}
	}
	for {
		select {
		case <-x.kick:
			flushSpans()
		case f := <-x.frames:
			forward(f)
		case r := <-x.logs:
			addLog(r)
		case <-tick.C:
			flushSpans()
			flushLogs()
		case ack := <-x.flushReq:
			drain()
			close(ack)
		case <-x.stop:
			drain()
			return
		}
	}
}

// post sends one export; false: it failed (counted and logged).
func (x *Exporter) post(sig Signal, body []byte) bool {
	ctx, cancel := context.WithTimeout(context.Background(), x.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.base+signalPath[sig], bytes.NewReader(body))
	if err != nil {
		x.failed(sig, err)
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sluice/"+x.cfg.ServiceVersion)
	for k, v := range x.cfg.Headers {
		req.Header.Set(k, v)
	}
	resp, err := x.client.Do(req)
	if err != nil {
		x.failed(sig, err)
		return false
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		x.failed(sig, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg)))
		return false
	}
	return true
}

// failed counts an export failure and logs at most one every 10 s.
func (x *Exporter) failed(sig Signal, err error) {
	x.exportFailures.Add(1)
	now := time.Now().UnixNano()
	last := x.lastFailureLog.Load()
	if now-last < int64(10*time.Second) || !x.lastFailureLog.CompareAndSwap(last, now) {
		return
	}
	x.log.Warn("OTLP export failed (data dropped)", "signal", sig.String(), "endpoint", x.shown+signalPath[sig], "err", err,
		"export_failures", x.exportFailures.Load())
}
