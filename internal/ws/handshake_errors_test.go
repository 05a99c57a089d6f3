package ws

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// handshakeRequest is a valid opening handshake (RFC 6455 §1.3's key).
func handshakeRequest() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://example.test/ws", nil)
	r.Header = http.Header{
		"Connection": {"Upgrade"}, "Upgrade": {"websocket"},
		"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="},
	}
	return r
}

// TestUpgradeServerRefusals: a response header asking for an extension,
// and a ResponseWriter that cannot be hijacked, are refused with 500
// through the Error hook (with the version header), never upgraded.
func TestUpgradeServerRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    http.Header
		want string
	}{
		{"extension", http.Header{"Sec-Websocket-Extensions": {"permessage-deflate"}}, "Sec-WebSocket-Extensions"},
		{"not hijackable", nil, "hijack: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var status int
			var reason error
			up := &Upgrader{Error: func(w http.ResponseWriter, r *http.Request, s int, err error) {
				status, reason = s, err
				w.WriteHeader(s)
			}}
			rec := httptest.NewRecorder() // not a Hijacker
			c, err := up.Upgrade(rec, handshakeRequest(), tc.h)
			if c != nil || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("conn %v err %v, want a refusal naming %q", c, err, tc.want)
			}
			if status != 500 || reason == nil || reason.Error() != err.Error() || rec.Code != 500 {
				t.Fatalf("hook saw %d %v, response %d", status, reason, rec.Code)
			}
			if rec.Header().Get("Sec-Websocket-Version") != "13" {
				t.Fatal("no Sec-WebSocket-Version in the refusal")
			}
		})
	}
}

// rawHandshake sends req (plus extra bytes in the same write) to addr and
// returns the connection and its reader.
func rawHandshake(t *testing.T, addr string, req *http.Request, extra []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	if err := req.Write(&b); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(append([]byte(b.String()), extra...)); err != nil {
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

// TestUpgradeEarlyData: a client that sends frames before the 101 is not
// upgraded: the connection is closed without an answer.
func TestUpgradeEarlyData(t *testing.T) {
	errs := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&Upgrader{}).Upgrade(w, r, nil)
		if c != nil {
			c.Close()
		}
		errs <- err
	}))
	defer srv.Close()
	req := handshakeRequest()
	req.RequestURI, req.Host = "", srv.Listener.Addr().String()
	_, br := rawHandshake(t, srv.Listener.Addr().String(), req, []byte{0x81, 0x80, 1, 2, 3, 4})
	if err := <-errs; err == nil || !strings.Contains(err.Error(), "sent data before handshake") {
		t.Fatalf("Upgrade: %v", err)
	}
	if line, err := br.ReadString('\n'); err != io.EOF || line != "" {
		t.Fatalf("client read %q %v, want the connection closed without an answer", line, err)
	}
}

// TestUpgradeResponse: the 101 carries the headers the server adds,
// except a value with CR or LF (emptied: no header injection); a write of
// the 101 that misses HandshakeTimeout fails the upgrade.
func TestUpgradeResponse(t *testing.T) {
	errs := make(chan error, 1)
	up := &Upgrader{HandshakeTimeout: 10 * time.Second}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, http.Header{"X-Ok": {"1"}, "X-Bad": {"v\r\nInjected: yes"}})
		if c != nil {
			c.Close()
		}
		errs <- err
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	req := handshakeRequest()
	req.RequestURI, req.Host = "", addr
	_, br := rawHandshake(t, addr, req, nil)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("X-Ok") != "1" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	if v, ok := resp.Header["X-Bad"]; !ok || v[0] != "" || resp.Header.Get("Injected") != "" {
		t.Fatalf("headers %v: the CR/LF value was not emptied", resp.Header)
	}

	up.HandshakeTimeout = time.Nanosecond // passed before the 101 is written
	_, br = rawHandshake(t, addr, req, nil)
	var ne net.Error
	if err := <-errs; !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Upgrade with a passed handshake deadline: %v", err)
	}
	if line, err := br.ReadString('\n'); err != io.EOF || line != "" {
		t.Fatalf("client read %q %v, want the connection closed", line, err)
	}
}

// TestSubprotocols: the server picks the first subprotocol of the
// client's list that it speaks (none: no header); without a list of its
// own it answers what the caller put in the response header. Both ends'
// Subprotocol report the choice, and the connection's addresses mirror.
func TestSubprotocols(t *testing.T) {
	if got := Subprotocols(&http.Request{Header: http.Header{"Sec-Websocket-Protocol": {"a, b", " ,c "}}}); strings.Join(got, "|") != "a|b|c" {
		t.Fatalf("Subprotocols %q", got)
	}
	for _, tc := range []struct {
		name   string
		server []string
		h      http.Header
		client []string
		want   string
	}{
		{"first of the client's", []string{"a", "b"}, nil, []string{"c", "b", "a"}, "b"},
		{"none in common", []string{"a"}, nil, []string{"x"}, ""},
		{"client asks none", []string{"a"}, nil, nil, ""},
		{"set by the caller", nil, http.Header{"Sec-Websocket-Protocol": {"iii"}}, []string{"iii"}, "iii"},
		{"neither", nil, nil, []string{"x"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srvConns := make(chan *Conn, 1)
			up := &Upgrader{Subprotocols: tc.server}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := up.Upgrade(w, r, tc.h)
				if err != nil {
					t.Error(err)
					close(srvConns)
					return
				}
				srvConns <- c
			}))
			defer srv.Close()
			d := &Dialer{Subprotocols: tc.client, HandshakeTimeout: 5 * time.Second}
			c, resp, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s := <-srvConns
			if s == nil {
				t.FailNow()
			}
			defer s.Close()
			if c.Subprotocol() != tc.want || s.Subprotocol() != tc.want {
				t.Fatalf("client %q server %q, want %q", c.Subprotocol(), s.Subprotocol(), tc.want)
			}
			if n := len(resp.Header.Values("Sec-Websocket-Protocol")); n != min(1, len(tc.want)) {
				t.Fatalf("%d Sec-WebSocket-Protocol headers", n)
			}
			if c.LocalAddr().String() != s.RemoteAddr().String() || c.RemoteAddr().String() != s.LocalAddr().String() ||
				c.NetConn().LocalAddr() != c.LocalAddr() || s.NetConn() == nil {
				t.Fatalf("addresses: client %v->%v, server %v->%v", c.LocalAddr(), c.RemoteAddr(), s.LocalAddr(), s.RemoteAddr())
			}
		})
	}
}

// recordDial is a NetDialContext that records the address and fails.
type recordDial struct{ addrs []string }

var errNoNetwork = errors.New("no network in this test")

func (r *recordDial) dial(_ context.Context, _, addr string) (net.Conn, error) {
	r.addrs = append(r.addrs, addr)
	return nil, errNoNetwork
}

// TestDialRefusesBadRequests: URLs and headers Dial cannot use are refused
// before anything is dialled.
func TestDialRefusesBadRequests(t *testing.T) {
	rd := &recordDial{}
	d := &Dialer{NetDialContext: rd.dial}
	for _, tc := range []struct {
		url  string
		h    http.Header
		want string
	}{
		{"ws://[::1", nil, "missing ']'"},
		{"http://example.test/", nil, "bad scheme http"},
		{"ws://user:pw@example.test/", nil, "user info"},
		{"ws://example.test/", http.Header{"upgrade": {"x"}}, "duplicate header not allowed: upgrade"},
		{"ws://example.test/", http.Header{"Sec-WebSocket-Key": {"x"}}, "duplicate header not allowed"},
		{"ws://example.test/", http.Header{"Sec-Websocket-Extensions": {"x"}}, "duplicate header not allowed"},
	} {
		c, _, err := d.Dial(tc.url, tc.h)
		if c != nil || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Dial(%q, %v): %v, want %q", tc.url, tc.h, err, tc.want)
		}
	}
	if len(rd.addrs) != 0 {
		t.Fatalf("dialled %v", rd.addrs)
	}
}

// TestDialAddresses: a URL without a port dials 80 (ws) or 443 (wss); a
// proxy without a port is dialled on 80; the dialler's error is returned;
// a proxy function's error, and a proxy that is not http://, end Dial
// before dialling.
func TestDialAddresses(t *testing.T) {
	for _, tc := range []struct {
		url   string
		proxy string
		want  string
	}{
		{"ws://example.test/x", "", "example.test:80"},
		{"wss://example.test/x", "", "example.test:443"},
		{"ws://example.test:8080/x", "", "example.test:8080"},
		{"ws://[::1]/x", "", "[::1]:80"},
		{"wss://example.test/x", "http://proxy.test", "proxy.test:80"},
		{"ws://example.test/x", "http://proxy.test:3128", "proxy.test:3128"},
	} {
		rd := &recordDial{}
		d := &Dialer{NetDialContext: rd.dial}
		if tc.proxy != "" {
			u, _ := url.Parse(tc.proxy)
			d.Proxy = http.ProxyURL(u)
		}
		if _, _, err := d.Dial(tc.url, nil); err != errNoNetwork {
			t.Errorf("%s: %v, want the dialler's error", tc.url, err)
		}
		if len(rd.addrs) != 1 || rd.addrs[0] != tc.want {
			t.Errorf("%s via %q dialled %v, want %s", tc.url, tc.proxy, rd.addrs, tc.want)
		}
	}
	rd := &recordDial{}
	proxyErr := errors.New("no proxy config")
	d := &Dialer{NetDialContext: rd.dial, Proxy: func(*http.Request) (*url.URL, error) { return nil, proxyErr }}
	if _, _, err := d.Dial("ws://example.test/", nil); err != proxyErr {
		t.Errorf("proxy function error: %v", err)
	}
	d.Proxy = http.ProxyURL(&url.URL{Scheme: "socks5", Host: "proxy.test:1080"})
	if _, _, err := d.Dial("ws://example.test/", nil); err == nil || !strings.Contains(err.Error(), "unsupported proxy scheme socks5") {
		t.Errorf("socks5 proxy: %v", err)
	}
	if len(rd.addrs) != 0 {
		t.Errorf("dialled %v", rd.addrs)
	}
}

// TestDialNilDialerAndHost: a nil *Dialer dials with the defaults; a Host
// header replaces the request's host.
func TestDialNilDialerAndHost(t *testing.T) {
	hosts := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hosts <- r.Host
		if c, err := (&Upgrader{}).Upgrade(w, r, nil); err == nil {
			c.Close()
		}
	}))
	defer srv.Close()
	var d *Dialer
	c, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), http.Header{"Host": {"virtual.test"}, "X-Other": {"1"}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if h := <-hosts; h != "virtual.test" {
		t.Fatalf("server saw host %q", h)
	}
}

// serveOnce accepts one connection on a new listener, reads the request
// and runs answer on it.
func serveOnce(t *testing.T, answer func(c net.Conn, req *http.Request)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		answer(c, req)
	}()
	return ln.Addr().String()
}

// TestDialBadAnswers: an answer that is not HTTP, and a 101 asking for an
// extension we did not offer, fail Dial (the latter with the response).
func TestDialBadAnswers(t *testing.T) {
	d := &Dialer{HandshakeTimeout: 5 * time.Second}
	addr := serveOnce(t, func(c net.Conn, _ *http.Request) { io.WriteString(c, "SSH-2.0-OpenSSH\r\n\r\n") })
	if c, _, err := d.Dial("ws://"+addr+"/", nil); c != nil || err == nil || !strings.Contains(err.Error(), "malformed HTTP") {
		t.Errorf("not HTTP: %v", err)
	}
	addr = serveOnce(t, func(c net.Conn, req *http.Request) {
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+
			acceptKey(req.Header.Get("Sec-Websocket-Key"))+"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
		io.Copy(io.Discard, c)
	})
	c, resp, err := d.Dial("ws://"+addr+"/", nil)
	if c != nil || err == nil || !strings.Contains(err.Error(), "server asked for an extension") || resp == nil || resp.StatusCode != 101 {
		t.Errorf("extension: %v %v", resp, err)
	}
}

// TestDialContextBounds: a server that never answers the handshake is
// given up on at HandshakeTimeout, and on the context's cancellation; the
// error wraps the context's. Before the timeout case was fixed (on 7bf40b1)
// it failed 4 of 10 runs: the socket's deadline, the context's, passed
// before the context's timer marked it done, and the error was a bare i/o
// timeout.
func TestDialContextBounds(t *testing.T) {
	silent := func(c net.Conn, _ *http.Request) { io.Copy(io.Discard, c) }
	d := &Dialer{HandshakeTimeout: 100 * time.Millisecond}
	start := time.Now()
	_, _, err := d.Dial("ws://"+serveOnce(t, silent)+"/", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("silent server with a 100 ms handshake timeout: %v", err)
	}
	if dt := time.Since(start); dt > 5*time.Second {
		t.Fatalf("gave up after %v", dt)
	}

	ctx, cancel := context.WithCancel(context.Background())
	addr := serveOnce(t, func(c net.Conn, _ *http.Request) { cancel(); io.Copy(io.Discard, c) })
	_, _, err = (&Dialer{}).DialContext(ctx, "ws://"+addr+"/", nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled during the handshake: %v", err)
	}
}

// TestDialTLS: wss:// goes through NetDialTLSContext when set (its own
// TLS), else through a TLS handshake with TLSClientConfig; a handshake
// with a server that does not speak TLS fails Dial.
func TestDialTLS(t *testing.T) {
	srvCfg, cliCfg := conformanceTLS()
	up := &Upgrader{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := up.Upgrade(w, r, nil); err == nil {
			_ = c.WriteMessage(TextMessage, []byte("over tls"))
			c.Close()
		}
	}))
	srv.TLS = srvCfg
	srv.StartTLS()
	defer srv.Close()
	var tlsDials atomic.Int32
	d := &Dialer{HandshakeTimeout: 5 * time.Second, NetDialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		tlsDials.Add(1)
		return (&tls.Dialer{Config: cliCfg}).DialContext(ctx, network, addr)
	}}
	c, _, err := d.Dial("wss://"+srv.Listener.Addr().String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "over tls" || tlsDials.Load() != 1 {
		t.Fatalf("%q %v, %d TLS dials", msg, err, tlsDials.Load())
	}
	c.Close()

	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	d = &Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: cliCfg}
	if c, _, err := d.Dial("wss://"+plain.Listener.Addr().String()+"/", nil); c != nil || err == nil {
		t.Fatalf("wss to a plaintext server: %v", err)
	}
}

// TestDialProxyAnswers: a CONNECT the proxy refuses, an answer that never
// ends its header (cut at 8 KiB), one cut short and one that is not HTTP
// each fail Dial with the reason.
func TestDialProxyAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer string
		want   string
	}{
		{"refused", "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", "proxy refused CONNECT: 407 Proxy Authentication Required"},
		{"too long", "HTTP/1.1 200 OK\r\nX-Pad: " + strings.Repeat("a", 9<<10), "proxy answer too long"},
		{"cut short", "HTTP/1.1 200 OK\r\n", "EOF"},
		{"not HTTP", "hello\r\n\r\n", "malformed HTTP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			connects := make(chan string, 1)
			addr := serveOnce(t, func(c net.Conn, req *http.Request) {
				connects <- req.Method + " " + req.Host
				io.WriteString(c, tc.answer)
			})
			u, _ := url.Parse("http://" + addr)
			d := &Dialer{HandshakeTimeout: 5 * time.Second, Proxy: http.ProxyURL(u)}
			c, _, err := d.Dial("ws://target.test:81/", nil)
			if c != nil || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want %q", err, tc.want)
			}
			if got := <-connects; got != "CONNECT target.test:81" {
				t.Fatalf("proxy saw %q", got)
			}
		})
	}
}
