package sluice

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	websocket "github.com/sluicehq/sluice/internal/ws"

	"github.com/sluicehq/sluice/internal/wsconn"
	"github.com/sluicehq/sluice/wire"
)

// Client is a worker connection to an engine. It registers functions,
// triggers and trigger types, serves invocations of its functions and calls
// functions anywhere in the system.
//
// A Client reconnects by itself when its socket drops, with exponential
// backoff, and then replays everything it holds (trigger types, functions,
// triggers, in registration order) so the engine sees the same worker again.
// All methods are safe for concurrent use.
type Client struct {
	url    string
	cfg    config
	log    *slog.Logger
	dialer *websocket.Dialer
	// dialOpts are the connection settings of every socket, the channel
	// ends' included.
	dialOpts *dialOptions
	// decOpts decode handler input and call results.
	decOpts jsonv2.Options
	// rescues counts readers the watchdog started (readerRole).
	rescues atomic.Uint64
	// offline counts calls waiting for a connection (tests observe it).
	offline atomic.Int32

	// ctx ends on Close: it is the parent of every handler's context and
	// wakes everything that waits for a connection.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the connection loop has exited

	// regMu serialises registration changes with the replay on connect, so
	// every registration reaches each connection exactly once and in order.
	regMu sync.Mutex

	mu            sync.Mutex
	sess          *session      // nil while disconnected
	up            chan struct{} // closed when sess becomes non-nil
	closed        bool
	lastDialErr   error
	firstErr      chan error // run → Connect: a permanent failure of the first dial
	workerID      string
	reattachToken string
	seq           uint64 // registration order, for replay
	functions     map[string]*function
	triggers      map[string]*trigger
	triggerTypes  map[string]*triggerType
	pending       map[string]*pendingCall
	observers     map[string]*ObserveHandle
	// engineObserve: the engine's workerregistered listed observe.v1
	// (false before the first one, and for engines that do not).
	engineObserve bool
}

// session is one WebSocket connection: its reader role (whose holder can
// change) with its watchdog, and the wsconn writer goroutine.
type session struct {
	conn     *wsconn.Conn
	done     chan struct{} // closed (end) when a reader saw the socket end
	endOnce  sync.Once
	detached chan struct{} // closed when the client has forgotten the session
	role     readerRole    // who reads (reader.go)
}

func (s *session) end() { s.endOnce.Do(func() { close(s.done) }) }

func (s *session) send(ctx context.Context, b []byte) error {
	return s.conn.Send(ctx, wsconn.Text, b, nil)
}

// sendDeferred is send for a result that more results of the same input
// burst follow on this reader: it waits in the write buffer until the
// reader's burst ends (readFor flushes before it reads again), or until
// any other frame is written.
func (s *session) sendDeferred(ctx context.Context, b []byte, onWritten func([]byte)) error {
	return s.conn.SendDeferred(ctx, wsconn.Text, b, onWritten)
}

// Connect dials the engine at url (e.g. "ws://localhost:49134") and returns
// once the first connection is up, retrying with backoff until ctx ends.
// After that the Client reconnects on its own until Close; ctx only bounds
// this first attempt.
func Connect(ctx context.Context, rawURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("sluice: bad engine url: %w", err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return nil, fmt.Errorf("sluice: engine url %q: scheme must be ws or wss", rawURL)
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	dialOpts := cfg.dialOptions()
	c := &Client{
		url:          rawURL,
		cfg:          cfg,
		log:          cmp.Or(cfg.logger, slog.Default()),
		dialOpts:     dialOpts,
		done:         make(chan struct{}),
		up:           make(chan struct{}),
		functions:    make(map[string]*function),
		triggers:     make(map[string]*trigger),
		triggerTypes: make(map[string]*triggerType),
		pending:      make(map[string]*pendingCall),
		observers:    make(map[string]*ObserveHandle),
		decOpts:      decodeOptions(rawURL, dialOpts),
	}
	// wsconn.Dialer lets the writer batch frames queued under load into
	// one syscall. The dialer reads the handshake response only; ctlReader
	// reads the frames through the ws.Conn (whatever came with the
	// response first).
	c.dialer = wsconn.Dialer(dialOpts.dialer(websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		HandshakeTimeout: handshakeTimeout,
		ReadBufferSize:   1024,
	}))
	c.ctx, c.cancel = context.WithCancel(context.Background())
	first := make(chan struct{})
	c.firstErr = make(chan error, 1)
	go c.run(first)
	if c.cfg.invocationTimeout > 0 {
		go c.sweepLoop()
	}
	select {
	case <-first:
		return c, nil
	case err := <-c.firstErr:
		c.Close()
		return nil, fmt.Errorf("sluice: connect to %s: %w", rawURL, err)
	case <-ctx.Done():
		c.mu.Lock()
		last := c.lastDialErr
		c.mu.Unlock()
		c.Close()
		if last != nil {
			return nil, fmt.Errorf("sluice: connect to %s: %w (last attempt: %w)", rawURL, ctx.Err(), last)
		}
		return nil, fmt.Errorf("sluice: connect to %s: %w", rawURL, ctx.Err())
	}
}

// URL returns the engine URL exactly as passed to Connect; channel sockets
// are opened relative to it.
func (c *Client) URL() string { return c.url }

// WorkerID returns the id the engine gave this worker on the current (or
// most recent) connection, or "" before the engine has sent one.
func (c *Client) WorkerID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.workerID
}

// Close shuts the client down: calls still waiting for a result fail with
// ErrClosed, running handlers see their context cancelled, and the socket
// is closed with a close frame. Close does not wait for handlers to return.
// It is safe to call more than once.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.done
		return nil
	}
	c.closed = true
	pending := c.pending
	c.pending = make(map[string]*pendingCall)
	s := c.sess
	c.mu.Unlock()
	for _, p := range pending {
		p.ch <- callResult{err: ErrClosed}
	}
	if s != nil {
		s.role.interrupt() // a caller reading for itself sees ErrClosed now
	}
	c.cancel()
	<-c.done
	return nil
}

func (c *Client) dial() (*session, error) {
	ctx, cancel := context.WithTimeout(c.ctx, handshakeTimeout)
	defer cancel()
	ws, resp, err := c.dialer.DialContext(ctx, c.url, c.cfg.header)
	if err != nil {
		if resp != nil {
			return nil, &dialStatusError{err: err, code: resp.StatusCode, status: resp.Status}
		}
		return nil, err
	}
	s := &session{conn: wsconn.New(ws, wsconn.Options{}), done: make(chan struct{}), detached: make(chan struct{})}
	s.role.init(c, s, controlReader(ws, c.cfg.idleTimeout))
	s.role.start()
	return s, nil
}

// serve keeps s alive with pings until its reader ends, or closes it
// gracefully when the client is closed.
func (c *Client) serve(s *session) {
	t := time.NewTicker(c.cfg.pingInterval)
	defer t.Stop()
	ws := s.conn.WS()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			// WriteControl may run concurrently with the wsconn writer.
			_ = ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second))
		case <-c.ctx.Done():
			// Someone must read the engine's close frame (or the error).
			s.role.readIfFree()
			s.conn.Close(websocket.CloseNormalClosure, "")
			ct := time.NewTimer(closeTimeout)
			select {
			case <-s.done:
			case <-ct.C:
				s.conn.Abort()
				// The socket is closed; do not depend on a reader to
				// notice (nobody reads while the role is free).
				s.end()
			}
			ct.Stop()
			return
		}
	}
}

func (c *Client) dispatch(s *session, m *wire.Message) {
	switch m.Type {
	case wire.TypeWorkerRegistered:
		c.mu.Lock()
		c.workerID, c.reattachToken = m.WorkerID, m.ReattachToken
		c.engineObserve = bytes.Contains(m.Features, []byte(`"observe.v1"`))
		c.mu.Unlock()
		c.log.Debug("sluice: worker registered", "worker_id", m.WorkerID)
	case wire.TypeRegisterTrigger:
		c.providerRegister(s, m)
	case wire.TypeUnregisterTrigger:
		c.providerUnregister(m)
	case wire.TypeTriggerRegistrationResult:
		if m.Error != nil {
			c.log.Warn("sluice: trigger registration failed", "trigger_id", m.ID,
				"trigger_type", m.TriggerType, "function_id", m.FunctionID, "err", m.Error.Error())
		}
	case wire.TypeRegistrationRejected:
		// The engine serves none of this function's calls here (e.g. an
		// engine:: id, which only the engine may register).
		c.log.Warn("sluice: the engine refused a function registration", "function_id", m.FunctionID)
	default:
		// Unknown and informational types are ignored, as the other SDKs do.
	}
}
