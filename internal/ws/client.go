package ws

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Dialer opens client connections (the client's opening handshake, RFC
// 6455 §4.1), through an HTTP CONNECT proxy if Proxy names one.
type Dialer struct {
	// NetDialContext dials the TCP connection (to the proxy, if any); nil:
	// net.Dialer.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// NetDialTLSContext, if set, dials wss:// connections without a proxy
	// itself, TLS handshake included; TLSClientConfig is then unused.
	NetDialTLSContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Proxy returns the proxy for a request (http.ProxyFromEnvironment, say);
	// nil or a nil URL: none. Only http:// proxies are supported.
	Proxy func(*http.Request) (*url.URL, error)
	// TLSClientConfig for wss://; nil: the defaults. ServerName defaults to
	// the URL's host.
	TLSClientConfig *tls.Config
	// HandshakeTimeout bounds dialing and the handshake (0: none beyond the
	// context).
	HandshakeTimeout time.Duration
	// ReadBufferSize is the buffer the handshake response is read with
	// (default 4096); it reads nothing past the response's header block
	// that is not kept for the frame reader.
	ReadBufferSize int
	// WriteBufferSize is the largest frame payload WriteMessage writes;
	// longer messages are fragmented. 0: 64 KiB.
	WriteBufferSize int
	// Subprotocols to ask for.
	Subprotocols []string
}

// DefaultDialer is a Dialer with ProxyFromEnvironment and a 45 s handshake
// timeout.
var DefaultDialer = &Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: 45 * time.Second}

// Dial is DialContext with context.Background.
func (d *Dialer) Dial(urlStr string, h http.Header) (*Conn, *http.Response, error) {
	return d.DialContext(context.Background(), urlStr, h)
}

// DialContext connects to a ws:// or wss:// URL with the extra request
// headers h. A server that does not upgrade gives ErrBadHandshake and its
// response (the body's first 1 KiB readable).
func (d *Dialer) DialContext(ctx context.Context, urlStr string, h http.Header) (*Conn, *http.Response, error) {
	if d == nil {
		d = &Dialer{}
	}
	u, err := url.Parse(urlStr)
	if err != nil {
		return nil, nil, err
	}
	secure := false
	switch u.Scheme {
	case "ws":
	case "wss":
		secure = true
	default:
		return nil, nil, errors.New("websocket: bad scheme " + u.Scheme)
	}
	if u.User != nil {
		return nil, nil, errors.New("websocket: user info in URL is not supported")
	}
	if d.HandshakeTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.HandshakeTimeout)
		defer cancel()
	}
	hostPort := u.Host
	if u.Port() == "" {
		if secure {
			hostPort = net.JoinHostPort(u.Hostname(), "443")
		} else {
			hostPort = net.JoinHostPort(u.Hostname(), "80")
		}
	}

	var keyBytes [16]byte
	_, _ = rand.Read(keyBytes[:])
	key := base64.StdEncoding.EncodeToString(keyBytes[:])
	req := &http.Request{
		Method:     http.MethodGet,
		URL:        &url.URL{Scheme: map[bool]string{false: "http", true: "https"}[secure], Host: u.Host, Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{},
		Host:       u.Host,
	}
	for k, vs := range h {
		switch http.CanonicalHeaderKey(k) {
		case "Host":
			if len(vs) > 0 {
				req.Host = vs[0]
			}
			continue
		case "Upgrade", "Connection", "Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Extensions":
			return nil, nil, errors.New("websocket: duplicate header not allowed: " + k)
		}
		req.Header[http.CanonicalHeaderKey(k)] = vs
	}
	req.Header["Upgrade"] = []string{"websocket"}
	req.Header["Connection"] = []string{"Upgrade"}
	req.Header["Sec-WebSocket-Key"] = []string{key}
	req.Header["Sec-WebSocket-Version"] = []string{"13"}
	if len(d.Subprotocols) > 0 {
		req.Header["Sec-WebSocket-Protocol"] = []string{strings.Join(d.Subprotocols, ", ")}
	}

	dial := d.NetDialContext
	if dial == nil {
		var nd net.Dialer
		dial = nd.DialContext
	}
	var proxyURL *url.URL
	if d.Proxy != nil {
		if proxyURL, err = d.Proxy(req); err != nil {
			return nil, nil, err
		}
	}
	var conn net.Conn
	switch {
	case proxyURL != nil:
		conn, err = dialProxy(ctx, dial, proxyURL, hostPort)
	case secure && d.NetDialTLSContext != nil:
		conn, err = d.NetDialTLSContext(ctx, "tcp", hostPort)
		secure = false // done
	default:
		conn, err = dial(ctx, "tcp", hostPort)
	}
	if err != nil {
		return nil, nil, err
	}
	// The context bounds the handshake: a deadline, and a close on cancel.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*Conn, *http.Response, error) {
		stop()
		conn.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w (%w)", ctxErr, err)
		} else if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			// The socket's deadline (the context's) can pass before the
			// context's own timer has marked it done.
			err = fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
		}
		return nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if secure {
		cfg := &tls.Config{}
		if d.TLSClientConfig != nil {
			cfg = d.TLSClientConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(err)
		}
		conn = tc
	}
	if err := req.Write(conn); err != nil {
		return fail(err)
	}
	br := bufio.NewReaderSize(conn, max(d.ReadBufferSize, 1024))
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return fail(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols ||
		!headerHasToken(resp.Header, "Upgrade", "websocket") ||
		!headerHasToken(resp.Header, "Connection", "upgrade") ||
		resp.Header.Get("Sec-Websocket-Accept") != acceptKey(key) {
		body := make([]byte, 1024)
		n, _ := io.ReadFull(resp.Body, body)
		resp.Body = io.NopCloser(bytes.NewReader(body[:n]))
		stop()
		conn.Close()
		return nil, resp, ErrBadHandshake
	}
	if resp.Header.Get("Sec-Websocket-Extensions") != "" {
		_, _, err := fail(errors.New("websocket: server asked for an extension"))
		return nil, resp, err
	}
	subproto := resp.Header.Get("Sec-Websocket-Protocol")
	resp.Body = io.NopCloser(bytes.NewReader(nil))
	if !stop() {
		conn.Close()
		return nil, resp, ctx.Err()
	}
	_ = conn.SetDeadline(time.Time{})
	var src readSource = conn
	if n := br.Buffered(); n > 0 { // frames that came with the response
		pre, _ := br.Peek(n)
		src = io.MultiReader(bytes.NewReader(bytes.Clone(pre)), conn)
	}
	c := newConn(conn, false, src, subproto, 0)
	c.fragment = d.WriteBufferSize
	return c, resp, nil
}

// dialProxy connects to target through an HTTP CONNECT proxy.
func dialProxy(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), proxy *url.URL, target string) (net.Conn, error) {
	if proxy.Scheme != "http" {
		return nil, errors.New("websocket: unsupported proxy scheme " + proxy.Scheme)
	}
	addr := proxy.Host
	if proxy.Port() == "" {
		addr = net.JoinHostPort(proxy.Hostname(), "80")
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: target}, Host: target, Header: http.Header{}}
	if proxy.User != nil {
		pw, _ := proxy.User.Password()
		cred := base64.StdEncoding.EncodeToString([]byte(proxy.User.Username() + ":" + pw))
		req.Header.Set("Proxy-Authorization", "Basic "+cred)
	}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	// Read the answer a byte at a time up to its blank line: nothing the
	// target sends afterwards may be swallowed here.
	var head []byte
	var one [1]byte
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		if len(head) > 8<<10 {
			conn.Close()
			return nil, errors.New("websocket: proxy answer too long")
		}
		if _, err := io.ReadFull(conn, one[:]); err != nil {
			conn.Close()
			return nil, err
		}
		head = append(head, one[0])
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, errors.New("websocket: proxy refused CONNECT: " + resp.Status)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}
