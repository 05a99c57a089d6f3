package sluice

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
)

// Defaults, matching the official SDKs.
const (
	DefaultInvocationTimeout = 30 * time.Second
	DefaultReconnectMin      = time.Second
	DefaultReconnectMax      = 30 * time.Second

	pingInterval     = 20 * time.Second
	idleTimeout      = 60 * time.Second
	handshakeTimeout = 10 * time.Second
	closeTimeout     = 2 * time.Second
	maxFrameSize     = 64 << 20
	keepReadBuffer   = 1 << 20
)

// Option configures a Client.
type Option func(*config)

type config struct {
	name, description string
	logger            *slog.Logger
	invocationTimeout time.Duration
	backoffMin        time.Duration
	backoffMax        time.Duration
	header            http.Header
	netDial           func(ctx context.Context, network, addr string) (net.Conn, error)
	proxy             func(*http.Request) (*url.URL, error)
	tlsConfig         *tls.Config

	// Keepalive, adjustable by tests only.
	pingInterval time.Duration
	idleTimeout  time.Duration
	// keepFreeRole stops the watchdog from starting a reader when the
	// reader role is free (tests only: it makes callers read for
	// themselves deterministically).
	keepFreeRole bool
}

func defaultConfig() config {
	return config{
		invocationTimeout: DefaultInvocationTimeout,
		backoffMin:        DefaultReconnectMin,
		backoffMax:        DefaultReconnectMax,
		pingInterval:      pingInterval,
		idleTimeout:       idleTimeout,
	}
}

// WithName sets the worker name shown by the engine (default: env
// III_WORKER_NAME, else "hostname:pid").
func WithName(name string) Option { return func(c *config) { c.name = name } }

// WithDescription sets the worker description shown by the engine.
func WithDescription(d string) Option { return func(c *config) { c.description = d } }

// WithLogger sets the logger for connection events and dropped messages
// (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithInvocationTimeout bounds calls whose context has no deadline (default
// 30 s, as in the official SDKs): Trigger, Call and Enqueue until the
// answer, TriggerVoid until it is sent. Zero or negative means no bound.
// The bound is checked periodically (every twentieth of d, at most every
// second), so a call fails up to that much later than d; use a ctx
// deadline where precision matters.
func WithInvocationTimeout(d time.Duration) Option {
	return func(c *config) { c.invocationTimeout = d }
}

// WithReconnectBackoff sets the delay between connection attempts: it
// starts at min, doubles per failed attempt up to max, and is jittered by
// ±30 % (default 1 s → 30 s).
func WithReconnectBackoff(min, max time.Duration) Option {
	return func(c *config) {
		if min > 0 {
			c.backoffMin = min
		}
		if max >= c.backoffMin {
			c.backoffMax = max
		} else {
			c.backoffMax = c.backoffMin
		}
	}
}

// WithHeader adds HTTP headers to the WebSocket handshakes of the worker
// socket and of the channel ends the client hands out, e.g. for
// authentication.
func WithHeader(h http.Header) Option { return func(c *config) { c.header = h.Clone() } }

// WithToken authenticates the worker socket (and the client's channel
// ends) with a static engine token (Authorization: Bearer <token>). Apply
// it after any WithHeader.
func WithToken(token string) Option {
	return func(c *config) {
		if c.header == nil {
			c.header = http.Header{}
		}
		c.header.Set("Authorization", "Bearer "+token)
	}
}

// WithNetDialer sets how the client opens TCP connections (to the engine,
// or to the proxy): the worker socket and every channel end the client
// hands out. The default is a net.Dialer; pass (&net.Dialer{...}).DialContext
// to tune it, or a function of your own (a tunnel, a Unix socket).
func WithNetDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(c *config) { c.netDial = dial }
}

// WithProxy sets the HTTP CONNECT proxy for the worker socket and every
// channel end the client hands out: proxy returns the proxy's URL for a
// request (http:// proxies), or nil for none. The default is
// http.ProxyFromEnvironment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY; never for
// localhost).
func WithProxy(proxy func(*http.Request) (*url.URL, error)) Option {
	return func(c *config) { c.proxy = proxy }
}

// WithTLSConfig sets the TLS settings of wss:// connections: the worker
// socket and every channel end the client hands out (created, or decoded
// from handler input and HTTP requests). Use it to trust a private CA
// (RootCAs) or present a client certificate. Without it, wss:// uses the
// system's roots, as do ends made with NewChannelReader and
// NewChannelWriter.
func WithTLSConfig(c *tls.Config) Option { return func(o *config) { o.tlsConfig = c } }

// dialOptions are a client's connection settings, which every socket it
// opens uses alike: the worker socket and each channel end it hands out.
// nil means the defaults.
type dialOptions struct {
	netDial func(ctx context.Context, network, addr string) (net.Conn, error)
	proxy   func(*http.Request) (*url.URL, error)
	tls     *tls.Config
	header  http.Header
}

func (c *config) dialOptions() *dialOptions {
	return &dialOptions{netDial: c.netDial, proxy: c.proxy, tls: c.tlsConfig, header: c.header}
}

// dialer returns a copy of base with o applied.
func (o *dialOptions) dialer(base websocket.Dialer) *websocket.Dialer {
	if o != nil {
		if o.netDial != nil {
			base.NetDialContext = o.netDial
		}
		if o.proxy != nil {
			base.Proxy = o.proxy
		}
		if o.tls != nil {
			base.TLSClientConfig = o.tls
		}
	}
	return &base
}

func (o *dialOptions) headers() http.Header {
	if o == nil {
		return nil
	}
	return o.header
}

// FunctionOption configures a function registration.
type FunctionOption func(*functionConfig)

type functionConfig struct {
	description    string
	metadata       any
	requestFormat  any
	responseFormat any
}

// WithFunctionDescription sets the description the engine lists.
func WithFunctionDescription(d string) FunctionOption {
	return func(f *functionConfig) { f.description = d }
}

// WithMetadata attaches arbitrary JSON metadata to the function
// (metadata {"internal": true} hides it from engine::functions::list).
func WithMetadata(v any) FunctionOption { return func(f *functionConfig) { f.metadata = v } }

// WithRequestFormat attaches a JSON schema (or any JSON) describing the
// input; the engine reports it as request_schema.
func WithRequestFormat(v any) FunctionOption { return func(f *functionConfig) { f.requestFormat = v } }

// WithResponseFormat attaches a JSON schema (or any JSON) describing the
// output; the engine reports it as response_schema.
func WithResponseFormat(v any) FunctionOption {
	return func(f *functionConfig) { f.responseFormat = v }
}

// CallOption configures one call.
type CallOption func(*callConfig)

type callConfig struct {
	metadata    any
	traceparent string
	baggage     string
	traceSet    bool
}

// WithCallMetadata sends metadata alongside the payload; the callee sees it
// as Invocation.Metadata.
func WithCallMetadata(v any) CallOption { return func(c *callConfig) { c.metadata = v } }

// WithTraceContext sets the W3C traceparent and baggage of the call. Without
// it, a call made inside a handler carries the handler's incoming trace
// context.
func WithTraceContext(traceparent, baggage string) CallOption {
	return func(c *callConfig) { c.traceparent, c.baggage, c.traceSet = traceparent, baggage, true }
}
