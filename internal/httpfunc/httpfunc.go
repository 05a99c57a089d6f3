// Package httpfunc runs HTTP-invoked functions: a worker registers a function
// with an `invocation` object (url, method, timeout_ms, headers, auth) and the
// engine itself calls that URL for each invocation, instead of sending
// invokefunction to the worker (docs/security.md#http-invoked-functions).
//
// A worker thereby makes the engine send requests from the engine's network
// position, with secrets from the engine's environment: URLs are checked at
// registration and, for private addresses, again on every dial against the
// IP actually connected to; redirects are not followed; responses, timeouts,
// concurrency and the environment variables auth may read are bounded.
package httpfunc

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/wire"
)

// Config is what the operator allows.
type Config struct {
	// Enabled: when false, registrations with an invocation are refused.
	Enabled bool
	// URLAllowlist holds host globs (path.Match syntax, e.g. "*.example.com",
	// "127.0.0.1"); empty allows any host.
	URLAllowlist []string
	// BlockPrivateIPs refuses loopback, private, link-local (cloud metadata),
	// CGNAT, unspecified and multicast addresses, checked at dial time.
	BlockPrivateIPs bool
	// RequireHTTPS refuses http:// URLs.
	RequireHTTPS bool
	// SecretEnvs names the environment variables auth may reference
	// (token_key, secret_key, value_key); others are refused.
	SecretEnvs []string
	// DefaultTimeout applies when timeout_ms is absent; MaxTimeout caps it.
	DefaultTimeout time.Duration
	MaxTimeout     time.Duration
	// MaxResponseBytes bounds a response body.
	MaxResponseBytes int64
	// MaxConcurrent bounds requests in flight; beyond it calls fail at once.
	MaxConcurrent int
}

// Error codes beyond upstream's (http_request_failed, http_error, …).
const (
	CodeResponseTooLarge = "http_response_too_large"
	CodeBusy             = "http_functions_busy"
)

// Executor performs the HTTP calls of every HTTP-invoked function.
type Executor struct {
	cfg    Config
	client *http.Client
	slots  chan struct{}
	now    func() time.Time
}

// New returns an executor for cfg.
func New(cfg Config) *Executor {
	x := &Executor{cfg: cfg, now: time.Now}
	if cfg.MaxConcurrent < 1 {
		cfg.MaxConcurrent = 1
	}
	x.slots = make(chan struct{}, cfg.MaxConcurrent)
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if cfg.BlockPrivateIPs {
		// Control sees the address actually dialled, after resolution: a name
		// that resolved to a public address at registration and to a private
		// one now (DNS rebinding) is refused here.
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("httpfunc: unparsable dial address %q", address)
			}
			if Private(ap.Addr()) {
				return fmt.Errorf("%w: %s", errPrivate, ap.Addr())
			}
			return nil
		}
	}
	x.client = &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil, // a proxy would dial in our place, past the address check
			DialContext:            d.DialContext,
			MaxIdleConnsPerHost:    16,
			IdleConnTimeout:        90 * time.Second,
			TLSHandshakeTimeout:    10 * time.Second,
			ResponseHeaderTimeout:  0, // the per-request context bounds it
			MaxResponseHeaderBytes: 64 << 10,
		},
		// Redirects are not followed (as upstream): the Location could name
		// any address, and the function's answer is the response itself.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return x
}

var errPrivate = errors.New("private, loopback or link-local address refused (http_functions.block_private_ips)")

// Private reports whether a is an address a worker must not make the engine
// reach unless the operator allows it.
func Private(a netip.Addr) bool {
	a = a.Unmap()
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return true
	}
	for _, p := range blocked {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

var blocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"), // NAT64 embeds IPv4 addresses
}

// Spec is one function's invocation object, validated.
type Spec struct {
	FunctionID string
	URL        string
	Method     string
	Timeout    time.Duration
	Headers    map[string]string
	auth       auth
	x          *Executor
}

type auth struct {
	kind   string // "", bearer, hmac, api_key
	header string
	secret string
}

type wireSpec struct {
	URL       string            `json:"url"`
	Method    string            `json:"method"`
	TimeoutMS *int64            `json:"timeout_ms"`
	Headers   map[string]string `json:"headers"`
	Auth      *struct {
		Type      string `json:"type"`
		TokenKey  string `json:"token_key"`
		SecretKey string `json:"secret_key"`
		Header    string `json:"header"`
		ValueKey  string `json:"value_key"`
	} `json:"auth"`
}

var methods = []string{"GET", "POST", "PUT", "PATCH", "DELETE"}

// Register validates a registerfunction's invocation object for functionID.
// The error says why a registration is refused; it is meant for the log.
func (x *Executor) Register(ctx context.Context, functionID string, raw jsontext.Value, getenv func(string) (string, bool)) (*Spec, error) {
	if !x.cfg.Enabled {
		return nil, errors.New("HTTP-invoked functions are disabled (http_functions.enabled: false)")
	}
	var w wireSpec
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, fmt.Errorf("invalid invocation object: %v", err)
	}
	s := &Spec{FunctionID: functionID, URL: w.URL, Method: strings.ToUpper(w.Method), Headers: w.Headers, x: x}
	if s.Method == "" {
		s.Method = "POST"
	}
	if !slices.Contains(methods, s.Method) {
		return nil, fmt.Errorf("invocation.method %q: want one of %s", w.Method, strings.Join(methods, ", "))
	}
	s.Timeout = x.cfg.DefaultTimeout
	if w.TimeoutMS != nil {
		if *w.TimeoutMS <= 0 {
			return nil, fmt.Errorf("invocation.timeout_ms %d: must be positive", *w.TimeoutMS)
		}
		s.Timeout = time.Duration(min(*w.TimeoutMS, int64(24*time.Hour/time.Millisecond))) * time.Millisecond
	}
	s.Timeout = min(s.Timeout, x.cfg.MaxTimeout)
	for k, v := range w.Headers {
		if !validHeaderName(k) || strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("invocation.headers: invalid header %q", k)
		}
	}
	if a := w.Auth; a != nil {
		key := ""
		switch a.Type {
		case "bearer":
			key = a.TokenKey
		case "hmac":
			key = a.SecretKey
		case "api_key":
			key = a.ValueKey
			if !validHeaderName(a.Header) {
				return nil, fmt.Errorf("invocation.auth.header %q: invalid header name", a.Header)
			}
		default:
			return nil, fmt.Errorf("invocation.auth.type %q: want bearer, hmac or api_key", a.Type)
		}
		if !slices.Contains(x.cfg.SecretEnvs, key) {
			return nil, fmt.Errorf("invocation.auth names environment variable %q, which is not in http_functions.secret_envs", key)
		}
		v, ok := getenv(key)
		if !ok {
			return nil, fmt.Errorf("invocation.auth: environment variable %q is not set", key)
		}
		s.auth = auth{kind: a.Type, header: a.Header, secret: v}
	}
	if err := x.checkURL(ctx, w.URL); err != nil { // last: it may resolve a name
		return nil, err
	}
	return s, nil
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return !strings.EqualFold(k, "Host") && !strings.EqualFold(k, "Content-Length") && !strings.EqualFold(k, "Transfer-Encoding")
}

// checkURL applies scheme, allowlist and (for names, on what they resolve to
// now) private-address rules.
func (x *Executor) checkURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("invocation.url %q: want an absolute http(s) URL", raw)
	}
	if u.User != nil {
		return fmt.Errorf("invocation.url: credentials in the URL are not accepted")
	}
	if x.cfg.RequireHTTPS && u.Scheme != "https" {
		return fmt.Errorf("invocation.url %q: https is required (http_functions.require_https)", raw)
	}
	host := u.Hostname()
	if len(x.cfg.URLAllowlist) > 0 && !slices.ContainsFunc(x.cfg.URLAllowlist, func(p string) bool {
		ok, _ := path.Match(strings.ToLower(p), strings.ToLower(host))
		return ok
	}) {
		return fmt.Errorf("invocation.url host %q is not in http_functions.url_allowlist", host)
	}
	if !x.cfg.BlockPrivateIPs {
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if Private(a) {
			return fmt.Errorf("invocation.url host %s: %w", host, errPrivate)
		}
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(rctx, "ip", host)
	if err != nil {
		return fmt.Errorf("invocation.url host %q: DNS lookup failed: %v", host, err)
	}
	for _, a := range addrs {
		if Private(a) {
			return fmt.Errorf("invocation.url host %q resolves to %s: %w", host, a, errPrivate)
		}
	}
	return nil
}

// Run implements invocation.External: it must not block, so the request
// runs on its own goroutine; done is called once (never for a void req).
func (s *Spec) Run(ctx context.Context, req *invocation.Request, done func(jsontext.Value, *wire.ErrorBody)) {
	x := s.x
	select {
	case x.slots <- struct{}{}:
	default:
		if done != nil {
			done(nil, &wire.ErrorBody{Code: CodeBusy, Message: "too many HTTP-invoked function calls in flight (http_functions.max_concurrent " +
				strconv.Itoa(cap(x.slots)) + "); try again later"})
		}
		return
	}
	go func() {
		v, err := s.Call(ctx, req)
		<-x.slots // before done: whoever done wakes may call again at once
		if done != nil {
			done(v, err)
		}
	}()
}

// Call performs one invocation synchronously.
func (s *Spec) Call(ctx context.Context, req *invocation.Request) (jsontext.Value, *wire.ErrorBody) {
	x := s.x
	body := []byte(req.Data)
	if len(body) == 0 {
		body = []byte("null")
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, s.Method, s.URL, bytes.NewReader(body))
	if err != nil {
		return nil, &wire.ErrorBody{Code: "http_request_failed", Message: err.Error()}
	}
	ts := strconv.FormatInt(x.now().Unix(), 10)
	for k, v := range s.Headers {
		hr.Header.Set(k, v)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("x-iii-Function-Path", s.FunctionID)
	hr.Header.Set("x-iii-Invocation-ID", req.InvocationID)
	hr.Header.Set("x-iii-Timestamp", ts)
	if req.Traceparent != "" {
		hr.Header.Set("traceparent", req.Traceparent)
	}
	switch s.auth.kind {
	case "bearer":
		hr.Header.Set("Authorization", "Bearer "+s.auth.secret)
	case "api_key":
		hr.Header.Set(s.auth.header, s.auth.secret)
	case "hmac":
		hr.Header.Set("x-iii-Signature", Sign(body, s.auth.secret, ts))
	}
	resp, err := x.client.Do(hr)
	if err != nil {
		msg := err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			msg = "HTTP request to " + s.FunctionID + " timed out after " + s.Timeout.String()
		}
		return nil, &wire.ErrorBody{Code: "http_request_failed", Message: msg}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, x.cfg.MaxResponseBytes+1))
	if err != nil {
		msg := err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			msg = "HTTP response of " + s.FunctionID + " not complete after " + s.Timeout.String()
		}
		return nil, &wire.ErrorBody{Code: "http_response_failed", Message: msg}
	}
	if int64(len(b)) > x.cfg.MaxResponseBytes {
		return nil, &wire.ErrorBody{Code: CodeResponseTooLarge, Message: "HTTP response of " + s.FunctionID +
			" exceeds http_functions.max_response_bytes (" + strconv.FormatInt(x.cfg.MaxResponseBytes, 10) + ")"}
	}
	b = bytes.TrimSpace(b)
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		if len(b) == 0 {
			return nil, nil
		}
		if !jsontext.Value(b).IsValid() {
			return nil, &wire.ErrorBody{Code: "invalid_response", Message: "HTTP response of " + s.FunctionID + " is not JSON"}
		}
		return jsontext.Value(b), nil
	case resp.StatusCode < 400:
		// 1xx/3xx: not an error, not a result (upstream's rule).
		if len(b) > 0 && jsontext.Value(b).IsValid() {
			return jsontext.Value(b), nil
		}
		return nil, nil
	}
	var e struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != nil {
		body := &wire.ErrorBody{Code: e.Error.Code, Message: e.Error.Message}
		if body.Code == "" {
			body.Code = "http_error"
		}
		if body.Message == "" {
			body.Message = "HTTP request failed"
		}
		return nil, body
	}
	return nil, &wire.ErrorBody{Code: "http_error", Message: "HTTP " + resp.Status}
}

// Sign is the x-iii-Signature of body: "sha256=" and the hex HMAC-SHA256,
// keyed by secret, of "<timestamp>:<base64(body)>" (upstream's scheme).
func Sign(body []byte, secret, timestamp string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp + ":" + base64.StdEncoding.EncodeToString(body)))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}
