// Package httptrigger serves the engine's "http" trigger type: every http
// trigger becomes a route on the engine's HTTP listener, and every request
// on a route invokes the trigger's function with the iii request payload
// (PROTOCOL.md §6.2), a channel that streams the request body to the
// function and a channel the function may stream its response through.
//
// The function answers either with its result (buffered mode, §6.4) or
// through the response channel: JSON control messages as text frames
// (set_status, set_headers), then the body as binary frames, each written
// and flushed to the client as it arrives (streamed mode, §6.5). See
// docs/http-triggers.md for the rules, in particular when a streamed
// response's headers go out.
//
// The package depends on the engine only through three seams: the route
// table comes from RegisterTrigger/UnregisterTrigger, invocations go
// through an invocation.Invoker, and channels come from a Channels
// implementation.
package httptrigger

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

// Config configures a Server. Zero values take the defaults.
type Config struct {
	// Timeout bounds the time from the request's arrival to the start of
	// its response (status line and headers); default 30 s. A streamed body
	// may take as long as it likes after that.
	Timeout time.Duration
	// MaxJSONBody bounds a JSON request body parsed into "body"; bigger
	// bodies are refused with 413. Default 16 MiB.
	MaxJSONBody int64
	// MaxConcurrent bounds the requests served at once; one more is
	// answered 503 TOO_MANY_REQUESTS with Retry-After at once (not queued).
	// Default 4096.
	MaxConcurrent int
	// MaxBufferedJSON bounds the bytes of all JSON bodies being read whole
	// (and held until their request ends) at once; a JSON body that would
	// go over it is answered 503 BODY_BUDGET_EXHAUSTED with Retry-After.
	// Raised to MaxJSONBody if below it; default 64 MiB.
	MaxBufferedJSON int64
	// Observe, if set, is told each request's route (its display form,
	// "" when none matched), status and duration when it ends.
	Observe func(route string, status int, d time.Duration)
	// Trace, if set, is called as each request starts (it may rewrite the
	// request's Traceparent header, which invocations continue); the
	// function it returns, if any, when the request ends.
	Trace func(r *http.Request) (end func(route string, status int))
	// CORS restricts cross-origin requests; nil allows any origin, method
	// and header.
	CORS *CORS
	// HeaderSettle is how long headers set by control messages are held
	// back, after the function returned without a result, for more
	// control messages or the first body frame; default 20 ms. See
	// docs/http-triggers.md.
	HeaderSettle time.Duration
	// ChannelBuffer is the buffer of the request and response channels, in
	// frames; default 64 (as the reference engine).
	ChannelBuffer int
	// Logger receives one line per request; nil means slog.Default().
	Logger *slog.Logger
	// AccessLog puts the line of a request that ended normally at Info;
	// otherwise it is at Debug (a line per request is a write per request:
	// off by default, as in most HTTP servers). Abnormal ends are at Warn.
	AccessLog bool
}

// CORS lists what cross-origin requests may use. An empty list or one
// containing "*" allows any value. Request headers are always allowed.
type CORS struct {
	AllowedOrigins []string
	AllowedMethods []string
}

// Channels creates the two channels of one HTTP request. The engine keeps
// one end of each; the function gets a ref to the other.
type Channels interface {
	// RequestBody creates a channel the engine writes the request body
	// into; readerRef is the end handed to the function.
	RequestBody(bufferSize int) (readerRef wire.ChannelRef, w BodyWriter, err error)
	// Response creates a channel the function writes its response into;
	// writerRef is the end handed to the function.
	Response(bufferSize int) (writerRef wire.ChannelRef, r ResponseReader, err error)
}

// BodyWriter is the engine's writing end of a request body channel.
type BodyWriter interface {
	// WriteFrame queues one frame, blocking while the channel is full. It
	// must not retain data after it returns.
	WriteFrame(ctx context.Context, text bool, data []byte) error
	// CopyFrom streams r into the channel as binary frames of at most
	// wire.FrameSize bytes, one per Read, until io.EOF (it does not close).
	CopyFrom(ctx context.Context, r io.Reader) (int64, error)
	// Close ends the stream cleanly.
	Close()
	// Abort ends the stream as broken.
	Abort(reason string)
}

// ResponseReader is the engine's reading end of a response channel.
type ResponseReader interface {
	// Next returns the next frame; data is valid until the next call.
	// io.EOF reports a clean end, any other error a broken one.
	Next(ctx context.Context) (text bool, data []byte, err error)
	// Close abandons the channel: the function's writer fails.
	Close()
}

// ReadyNotifier may be implemented by a ResponseReader and a BodyWriter: f
// is to be called, once and without blocking, when the function's end
// connected or the channel ended. The exchange reads a response channel
// only from then on, sparing a goroutine per buffered answer, and holds a
// JSON body back until then (most functions take it parsed and never
// connect).
type ReadyNotifier interface {
	OnReady(f func())
}

// FrameTrier may be implemented by a BodyWriter: TryWriteFrame writes a
// frame only if it can at once, without waiting for the channel's buffer or
// memory; ok false says nothing was written.
type FrameTrier interface {
	TryWriteFrame(text bool, data []byte) (ok bool, err error)
}

// Retirer may be implemented by the ends Channels returns. Retire is
// called once the exchange is over: a remote end that has not connected by
// then never will, so the channel can leave the registry at once (later
// connections get 404, as in the reference engine) instead of waiting for
// the channel TTL. Without it, every buffered response and every unread
// body leaves a channel behind until the TTL.
type Retirer interface {
	Retire()
}

// Server serves HTTP triggers. It implements http.Handler.
type Server struct {
	cfg    Config
	inv    invocation.Invoker
	ch     Channels
	log    *slog.Logger
	router *router
	remote atomic.Pointer[router] // routes served by other nodes (SetRemoteRoutes)
	cors   corsPolicy

	ctx    context.Context // ends at Close
	cancel context.CancelFunc

	active   atomic.Int64 // requests being served
	jsonHeld budget       // bytes of JSON bodies read whole
}

// budget is a byte count that may not go over max.
type budget struct {
	max  int64
	used atomic.Int64
}

// take reserves n bytes, or reports that they would exceed the budget.
func (b *budget) take(n int64) bool {
	if b.used.Add(n) > b.max {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *budget) give(n int64) { b.used.Add(-n) }

// Defaults.
const (
	DefaultTimeout         = 30 * time.Second
	DefaultMaxJSONBody     = 16 << 20
	DefaultHeaderSettle    = 20 * time.Millisecond
	DefaultChannelBuffer   = 64
	DefaultMaxConcurrent   = 4096
	DefaultMaxBufferedJSON = 64 << 20
)

// New returns a Server that invokes functions through inv and creates
// request channels with ch.
func New(cfg Config, inv invocation.Invoker, ch Channels) *Server {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxJSONBody <= 0 {
		cfg.MaxJSONBody = DefaultMaxJSONBody
	}
	if cfg.HeaderSettle <= 0 {
		cfg.HeaderSettle = DefaultHeaderSettle
	}
	if cfg.ChannelBuffer <= 0 {
		cfg.ChannelBuffer = DefaultChannelBuffer
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = DefaultMaxConcurrent
	}
	if cfg.MaxBufferedJSON <= 0 {
		cfg.MaxBufferedJSON = DefaultMaxBufferedJSON
	}
	cfg.MaxBufferedJSON = max(cfg.MaxBufferedJSON, cfg.MaxJSONBody) // a lone body always fits
	s := &Server{cfg: cfg, inv: inv, ch: ch, log: cfg.Logger, router: newRouter(), cors: newCORSPolicy(cfg.CORS)}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.jsonHeld.max = cfg.MaxBufferedJSON
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// RegisterTrigger starts serving an http trigger. It fails when the config
// has no api_path, is malformed, or its route conflicts with a route of
// another shape (e.g. GET /a/:x against GET /a/:y). An identical route of
// another trigger is replaced (last wins) if both have the same holder (the
// same worker); another worker's route is ErrRouteTaken.
func (s *Server) RegisterTrigger(t *registry.Trigger) error {
	rt, err := parseTrigger(t)
	if err != nil {
		return err
	}
	if err := s.remoteConflict(rt); err != nil {
		return err
	}
	if err := s.router.add(rt); err != nil {
		return err
	}
	s.log.Debug("http route added", "route", rt.display, "function_id", rt.functionID, "trigger_id", rt.triggerID)
	return nil
}

// UnregisterTrigger stops serving t's route if t still owns it.
func (s *Server) UnregisterTrigger(t *registry.Trigger) {
	s.router.remove(t.ID)
}

// SetRemoteRoutes replaces the routes of http triggers registered on other
// nodes of a cluster: this server serves them too, invoking their
// functions through its Invoker like any other, but a route of its own
// always wins (a remote route is looked up only when no local one
// matches). Triggers are added in order; one that conflicts with an
// earlier one is skipped and reported.
func (s *Server) SetRemoteRoutes(ts []*registry.Trigger) []error {
	r := newRouter()
	var errs []error
	for _, t := range ts {
		rt, err := parseTrigger(t)
		if err == nil {
			err = r.add(rt)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("trigger %s: %w", t.ID, err))
		}
	}
	if len(r.routes) == 0 {
		r = nil
	}
	if old := s.remote.Swap(r); old != nil {
		old.close()
	}
	return errs
}

// remoteConflict refuses a route that would take requests from another
// node's route to a different function: local routes win on their node,
// so without this a worker on one node could re-point another worker's
// endpoint there. A route to the same function (the same worker code
// running on several nodes) is accepted.
func (s *Server) remoteConflict(rt *route) error {
	remote := s.remote.Load()
	if remote == nil {
		return nil
	}
	remote.mu.Lock()
	others := make([]*route, 0, len(remote.routes))
	for _, o := range remote.routes {
		if o.functionID != rt.functionID || nsKey(o.namespace) != nsKey(rt.namespace) {
			others = append(others, o)
		}
	}
	remote.mu.Unlock()
	if len(others) == 0 {
		return nil
	}
	mux := http.NewServeMux()
	for _, o := range others {
		_ = handle(mux, o.pattern, http.NotFoundHandler()) // accepted together already
	}
	if handle(mux, rt.pattern, http.NotFoundHandler()) == nil {
		return nil
	}
	for _, o := range others {
		if o.pattern == rt.pattern || handle(newMuxWith(o.pattern), rt.pattern, http.NotFoundHandler()) != nil {
			return fmt.Errorf("%w: %s would take the requests of route %s, served on another node by trigger %s (function %s); only a route to the same function may be added on another node",
				ErrRouteTaken, rt.display, o.display, o.triggerID, o.functionID)
		}
	}
	return fmt.Errorf("%w: %s conflicts with a route served on another node", ErrRouteTaken, rt.display)
}

func newMuxWith(pattern string) *http.ServeMux {
	m := http.NewServeMux()
	_ = handle(m, pattern, http.NotFoundHandler())
	return m
}

func nsKey(ns string) string {
	if ns == "" {
		return registry.DefaultNamespace
	}
	return ns
}

// RemoteRoutes returns the number of other nodes' routes served.
func (s *Server) RemoteRoutes() int {
	if r := s.remote.Load(); r != nil {
		return r.len()
	}
	return 0
}

// lookup finds the route for req: this server's, else another node's.
func (s *Server) lookup(req *http.Request) (*route, http.Handler) {
	rt, h := s.router.lookup(req)
	if rt != nil {
		return rt, nil
	}
	remote := s.remote.Load()
	if remote == nil {
		return nil, h
	}
	rrt, rh := remote.lookup(req)
	if rrt != nil {
		return rrt, nil
	}
	// Neither serves it: the more telling miss (405 or a redirect over 404).
	c := captureWriter{h: http.Header{}}
	h.ServeHTTP(&c, req)
	if c.status == http.StatusNotFound || c.status == 0 {
		return nil, rh
	}
	return nil, h
}

// Routes returns the number of routes served.
func (s *Server) Routes() int { return s.router.len() }

// Close ends every request in flight: one still waiting for its response
// gets 503 engine_shutting_down, a streamed one is cut; requests that
// arrive later get 503 too. To let requests in flight finish first, stop
// the listener gracefully (http.Server.Shutdown) and call Close when its
// time is up.
func (s *Server) Close() {
	s.cancel()
	s.router.close()
	if r := s.remote.Load(); r != nil {
		r.close()
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := exchange{s: s, start: time.Now(), req: r}
	x.w.ResponseWriter = w
	if tr := s.cfg.Trace; tr != nil {
		x.traceEnd = tr(r)
	}
	defer x.logRequest()
	if s.active.Add(1) > int64(s.cfg.MaxConcurrent) {
		s.active.Add(-1)
		x.outcome = "too many requests"
		w.Header().Set("Retry-After", "1")
		writeError(&x.w, http.StatusServiceUnavailable, CodeTooManyRequests,
			fmt.Sprintf("the engine is serving its maximum of %d concurrent HTTP requests; retry later", s.cfg.MaxConcurrent))
		return
	}
	defer s.active.Add(-1)
	if s.cors.apply(&x.w, r) {
		return // preflight answered
	}
	rt, h := s.lookup(r)
	if rt == nil {
		s.miss(&x.w, r, h)
		return
	}
	x.rt = rt
	if s.ctx.Err() != nil {
		x.shuttingDown()
		return
	}
	x.serve()
}

// Codes of the engine's own 503 answers.
const (
	CodeTooManyRequests     = "TOO_MANY_REQUESTS"
	CodeBodyBudgetExhausted = "BODY_BUDGET_EXHAUSTED"
)

// Active returns the number of requests being served.
func (s *Server) Active() int { return int(s.active.Load()) }

// BufferedJSON returns the bytes of JSON bodies currently held whole.
func (s *Server) BufferedJSON() int64 { return s.jsonHeld.used.Load() }

// miss answers a request no route takes, in the JSON envelope.
func (s *Server) miss(w http.ResponseWriter, r *http.Request, h http.Handler) {
	c := captureWriter{h: http.Header{}}
	h.ServeHTTP(&c, r)
	switch c.status {
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", c.h.Get("Allow"))
		writeError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "Method Not Allowed")
	case http.StatusNotFound, 0:
		writeError(w, http.StatusNotFound, wire.CodeNotFound, "Not Found")
	default: // a redirect to the clean path
		for k, v := range c.h {
			w.Header()[k] = v
		}
		w.WriteHeader(c.status)
	}
}

// captureWriter records what ServeMux would answer on a miss.
type captureWriter struct {
	h      http.Header
	status int
}

func (c *captureWriter) Header() http.Header         { return c.h }
func (c *captureWriter) Write(b []byte) (int, error) { return len(b), nil }
func (c *captureWriter) WriteHeader(code int)        { c.status = code }

// recorder counts what goes to the client, for the request log.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// FlushError sends buffered data to the client now.
func (r *recorder) FlushError() error {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return http.NewResponseController(r.ResponseWriter).Flush()
}

// Flush implements http.Flusher.
func (r *recorder) Flush() { _ = r.FlushError() }

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
