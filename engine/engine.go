// Package engine is the Sluice engine, embeddable in any Go program or test:
// it accepts worker connections speaking the iii protocol, keeps the
// registry of functions and triggers, routes invocations, pipes channels
// and serves HTTP triggers.
//
//	e, err := engine.New(engine.DefaultConfig(), slog.Default())
//	if err := e.Start(ctx); err != nil { ... }
//	defer e.Shutdown(context.Background())
//
// The parts live in packages of their own (internal/registry,
// internal/invocation, internal/channels, internal/httptrigger); this
// package holds the worker protocol and wires the parts together.
package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"

	"github.com/sluicehq/sluice/internal/channels"
	"github.com/sluicehq/sluice/internal/httpfunc"
	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/metrics"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

// Version is the engine version reported to workers.
var Version = "0.1.0-dev"

// Engine is one Sluice engine. Create it with New, then Start it.
type Engine struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context // ends at shutdown
	cancel context.CancelFunc

	reg      *registry.Registry
	inv      *invocation.Local
	obs      *observeHub
	self     *invocation.EngineExecutor
	httpfn   *httpfunc.Executor // HTTP-invoked functions
	hub      *channels.Hub
	http     *httpProvider
	upgrader websocket.Upgrader

	providers map[string]*engineProvider // in-process trigger types
	metrics   *metrics.Metrics
	queues    *queueManager
	modules   modules      // state, pubsub, cron (modules.go)
	otel      otelState    // OTLP export (otel.go)
	cluster   *clusterNode // nil unless cluster mode is on (cluster.go)

	mu    sync.RWMutex
	conns map[string]*workerConn

	regWaitMu sync.Mutex
	regWaits  map[string]chan *wire.ErrorBody // engine::register_trigger acks

	fnChanged   chan struct{}
	remoteFnGen atomic.Uint64 // other nodes' function set changes seen (cluster)

	ln, httpLn     net.Listener
	tlsCfg         *tls.Config // nil: plain ws:// and http://
	srv, httpSrv   *http.Server
	consoleLn      net.Listener
	consoleSrv     *http.Server
	extra          []*http.Server // worker_listeners
	extraURL       map[string]string
	shutdownOnce   sync.Once
	shuttingDown   chan struct{}
	serveErr       chan error
	backgroundDone sync.WaitGroup
	started        time.Time
	consoleStreams atomic.Int32 // console event streams open

	// testHookHTTPClosed, when set (tests only), runs in drainHTTP right
	// after the requests still in flight were told to answer 503.
	testHookHTTPClosed func()
}

// New builds an engine from cfg. Nothing listens until Start.
func New(cfg Config, log *slog.Logger) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		cfg:          cfg,
		log:          log,
		ctx:          ctx,
		cancel:       cancel,
		reg:          registry.New(),
		self:         &invocation.EngineExecutor{},
		providers:    make(map[string]*engineProvider),
		conns:        make(map[string]*workerConn),
		regWaits:     make(map[string]chan *wire.ErrorBody),
		fnChanged:    make(chan struct{}, 1),
		shuttingDown: make(chan struct{}),
		serveErr:     make(chan error, 4+len(cfg.WorkerListeners)), // worker, HTTP, console, streams and extra worker listeners
		metrics:      metrics.New(),
		started:      time.Now(),
	}
	e.reg.SetMaxIDLength(cfg.MaxIDLength)
	e.inv = invocation.NewLocal(ctx, e.reg)
	e.obs = newObserveHub(e)
	e.inv.SetMetrics(e.metrics)
	e.httpfn = httpfunc.New(cfg.HTTPFunctions.executorConfig())
	if err := e.initOTel(); err != nil {
		cancel()
		return nil, err
	}
	e.upgrader = websocket.Upgrader{
		// Zero: worker sockets read frames through ws's 4 KiB buffer, in
		// which the read loop sees whether more input is buffered
		// (wsconn.NextFrameBuffered); big payloads bypass it.
		ReadBufferSize: 0,
	}
	e.upgrader.CheckOrigin = e.originAllowed // WorkerHandler refuses with a clearer answer first
	e.hub = newChannelHub(cfg.Channels, log.With("part", "channels"))
	e.http = &httpProvider{httpTriggers: newHTTPTriggers(e), e: e}
	e.queues = newQueueManager(e)
	e.registerBuiltins()
	e.registerEngineTriggerTypes()
	e.registerQueueBuiltins()
	e.registerModules()
	return e, nil
}

// Start listens on the configured addresses and serves in the background.
// Use ":0" ports to let the system pick; WorkerURL and HTTPURL tell which.
func (e *Engine) Start(ctx context.Context) error {
	if err := e.startCluster(ctx); err != nil {
		return err
	}
	if err := e.start(ctx); err != nil {
		e.stopCluster()
		return err
	}
	return nil
}

func (e *Engine) start(ctx context.Context) error {
	if e.cfg.TLS.Enabled() {
		c, err := serverTLS(e.cfg.TLS)
		if err != nil {
			return err
		}
		e.tlsCfg = c
	}
	ln, srv, err := e.listen(ctx, e.cfg.Addr, e.WorkerHandler())
	if err != nil {
		return fmt.Errorf("worker listener: %w", err)
	}
	e.ln, e.srv = ln, srv
	if err := e.startWorkerListeners(ctx); err != nil {
		_ = srv.Close()
		return err
	}
	if e.cfg.HTTPAddr != "" {
		hln, hsrv, err := e.listen(ctx, e.cfg.HTTPAddr, e.HTTPHandler())
		if err != nil {
			_ = srv.Close()
			e.closeWorkerListeners()
			return fmt.Errorf("http listener: %w", err)
		}
		e.httpLn, e.httpSrv = hln, hsrv
	}
	if err := e.queues.start(ctx); err != nil {
		_ = srv.Close()
		e.closeWorkerListeners()
		if e.httpSrv != nil {
			_ = e.httpSrv.Close()
		}
		return fmt.Errorf("queue store: %w", err)
	}
	e.startConsole(ctx)
	if e.cluster != nil {
		e.startRouting()
		mctx, cancel := context.WithTimeout(ctx, e.cfg.Cluster.StartTimeout)
		err := e.startMembership(mctx)
		cancel()
		if err != nil {
			_ = srv.Close()
			e.closeWorkerListeners()
			e.stopConsole()
			if e.httpSrv != nil {
				_ = e.httpSrv.Close()
			}
			return fmt.Errorf("cluster membership: %w", err)
		}
	}
	e.backgroundDone.Add(1)
	go e.watchFunctions()
	if iv := e.inv.Pending().SetTimeout(e.cfg.InvocationTimeout); iv > 0 {
		e.backgroundDone.Add(1)
		go func() {
			defer e.backgroundDone.Done()
			e.inv.Pending().RunSweeper(e.ctx, iv)
		}()
	}
	if e.cfg.WorkerIdleTimeout > 0 {
		e.backgroundDone.Add(1)
		go e.heartbeatLoop(e.cfg.WorkerIdleTimeout)
	}
	e.log.Info("engine started", "worker_url", e.WorkerURL(), "http_url", e.HTTPURL(), "auth", onOff(e.cfg.Auth.enabled()), "version", Version, "console_url", e.ConsoleURL())
	e.warnExposed(e.cfg.authEnabled())
	e.startModules()
	return nil
}

// listen serves h on addr; the server's end is reported on serveErr.
func (e *Engine) listen(ctx context.Context, addr string, h http.Handler) (net.Listener, *http.Server, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	ln = e.wrapTLS(ln)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		// Keep-alive connections between requests (hijacked worker and
		// channel sockets are not affected).
		IdleTimeout: e.cfg.HTTP.IdleTimeout,
		ErrorLog:    slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
	}
	go func() { e.serveErr <- serveOrClosed(srv, ln) }()
	return ln, srv, nil
}

func serveOrClosed(s *http.Server, ln net.Listener) error {
	if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Err returns a channel that yields a listener's fatal error (the worker,
// HTTP, console and stream-client listeners'), or nil when one was closed.
func (e *Engine) Err() <-chan error { return e.serveErr }

// WorkerURL is the WebSocket URL workers connect to, e.g. ws://127.0.0.1:49134
// (wss:// with TLS).
func (e *Engine) WorkerURL() string {
	if e.ln == nil {
		return ""
	}
	return e.scheme("ws://", "wss://") + e.ln.Addr().String()
}

// HTTPURL is the base URL of HTTP triggers, e.g. http://127.0.0.1:3111
// (https:// with TLS).
func (e *Engine) HTTPURL() string {
	if e.httpLn == nil {
		return ""
	}
	return e.scheme("http://", "https://") + e.httpLn.Addr().String()
}

// WorkerHandler serves the worker port: "/" (worker protocol), "/otel"
// (telemetry, read and discarded), "/ws/channels/{id}" (channel ends) and
// "/healthz". Mount it yourself to embed the engine in another server.
// The WebSocket endpoints refuse browser pages (origin.go).
func (e *Engine) WorkerHandler() http.Handler {
	return e.workerHandler(&listenerAuth{name: "main", cfg: e.cfg.Auth})
}

func (e *Engine) workerHandler(la *listenerAuth) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", e.checkOrigin(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { e.serveWorker(la, rw, r) })))
	mux.Handle("GET /otel", e.checkOrigin(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { e.serveOTel(la, rw, r) })))
	mux.Handle("/ws/channels/", e.checkOrigin(e.hub))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// HTTPHandler serves HTTP triggers.
func (e *Engine) HTTPHandler() http.Handler { return e.http }

// Shutdown stops the engine gracefully: the HTTP listener stops accepting
// and the HTTP requests in flight get their function's answer if it comes
// before the shutdown's deadline (ctx's, else shutdown_timeout), the
// others 503; then the worker listener closes, every invocation still in
// flight is answered invocation_stopped, every worker socket gets a close
// frame (1012, service restart), channels end. ctx bounds the wait: the
// sockets still open when it ends (a peer that stopped reading, so that
// their frames cannot be written) are cut, and Shutdown, having stopped
// everything, returns an error wrapping ctx.Err(), as
// net/http.Server.Shutdown does.
func (e *Engine) Shutdown(ctx context.Context) error {
	var err error
	e.shutdownOnce.Do(func() {
		close(e.shuttingDown) // refuses new worker connections
		e.queues.stopDispatch()
		// HTTP first, while the workers that answer it are still connected
		// and the worker listener still takes their channel connections.
		e.drainHTTP(ctx)
		if e.srv != nil {
			_ = e.srv.Close() // hijacked sockets are ours to close below
		}
		e.closeWorkerListeners()
		e.mu.RLock()
		conns := make([]*workerConn, 0, len(e.conns))
		for _, c := range e.conns {
			conns = append(conns, c)
		}
		e.mu.RUnlock()
		stopped := &wire.ErrorBody{Code: wire.CodeInvocationStopped, Message: "Invocation stopped: engine shutting down"}
		for _, c := range conns {
			e.inv.Pending().HaltExecutor(c.id, stopped)
		}
		// 1012 (service restart), not 1001: the Python SDK 0.11.x never
		// reconnects after a 1000/1001 close, and a restarted engine wants
		// its workers back.
		for _, c := range conns {
			c.conn.Close(websocket.CloseServiceRestart, "engine shutting down")
		}
		aborted := 0
		for _, c := range conns {
			select {
			case <-c.conn.Done():
				continue // closed: not counted even when ctx has ended too
			default:
			}
			select {
			case <-c.conn.Done():
			case <-ctx.Done():
				c.conn.Abort()
				aborted++
			}
		}
		if aborted > 0 {
			e.log.Warn("worker sockets still open at the shutdown deadline: cut", "workers", aborted)
			err = fmt.Errorf("engine shutdown: worker sockets still open at the deadline were cut (%d): %w", aborted, ctx.Err())
		}
		if herr := e.hub.Shutdown(ctx); herr != nil {
			err = errors.Join(err, fmt.Errorf("engine shutdown: channel sockets cut at the deadline: %w", herr))
		}
		e.stopModules()
		e.cancel()
		e.backgroundDone.Wait()
		e.queues.close(ctx)
		e.stopCluster()
		e.stopConsole()
		e.stopOTel(ctx)
		e.log.Info("engine stopped")
	})
	return err
}

// drainHTTP stops the HTTP listener (idle keep-alive connections close at
// once) and waits for the requests in flight until a grace period before
// the deadline; the requests still waiting then are answered 503
// engine_shutting_down (streamed ones are cut), with the grace period to
// write it. Requests served through HTTPHandler on another server get 503
// at once.
func (e *Engine) drainHTTP(ctx context.Context) {
	if e.httpSrv == nil {
		e.http.Close()
		return
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(e.cfg.ShutdownTimeout)
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	grace := min(time.Until(deadline)/10, time.Second)
	drain, stop := context.WithDeadline(ctx, deadline.Add(-grace))
	defer stop()
	drained := make(chan error, 1)
	go func() { drained <- e.httpSrv.Shutdown(drain) }()
	// net/http waits up to 5 s for connections that never sent a request
	// (browsers open them ahead of time); once no handler runs, nothing
	// is owed to anyone.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case err := <-drained:
			if err == nil {
				e.http.Close()
				return
			}
			done = true
		case <-tick.C:
			if e.http.Active() == 0 {
				stop()
			}
		}
	}
	// Counted before Close: once told, a handler writes its 503 into
	// net/http's buffer and returns (no longer active) before net/http
	// sends it; closing the connections then would lose the answer.
	n := e.http.Active()
	if n > 0 {
		e.log.Warn("http requests still in flight at the shutdown deadline: answering 503", "requests", n)
	}
	e.http.Close()
	if e.testHookHTTPClosed != nil {
		e.testHookHTTPClosed()
	}
	// The handlers return once they have written their 503; Shutdown then
	// sees their connections close (net/http closes them after the reply).
	if n == 0 || e.httpSrv.Shutdown(ctx) != nil {
		_ = e.httpSrv.Close()
	}
}

func (e *Engine) isShuttingDown() bool {
	select {
	case <-e.shuttingDown:
		return true
	default:
		return false
	}
}

// Stats is a snapshot of the engine's load, for tests and monitoring.
type Stats struct {
	Workers            int
	Functions          int
	PendingInvocations int
	Channels           int
}

// Stats returns current counts.
func (e *Engine) Stats() Stats {
	e.mu.RLock()
	n := len(e.conns)
	e.mu.RUnlock()
	return Stats{
		Workers:            n,
		Functions:          len(e.reg.Functions()),
		PendingInvocations: e.inv.Pending().Len(),
		Channels:           e.hub.Len(),
	}
}
