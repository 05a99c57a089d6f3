package ws

import (
	"bufio"
	"context"
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
	"unicode/utf8"

	"github.com/sluicehq/sluice/internal/ws/wstest"
)

// TestTruncateReason: a close reason is cut to 123 bytes on a rune
// boundary and made valid UTF-8 (the old wsconn cut at byte 120, which
// could split a rune and make the peer fail the close with 1007).
func TestTruncateReason(t *testing.T) {
	for _, reason := range []string{
		strings.Repeat("é", 100),       // 2-byte runes: 61 fit
		strings.Repeat("a", 122) + "€", // a 3-byte rune across the limit
		strings.Repeat("😀", 40),        // 4-byte runes
		"bad \xff utf-8",
		"short",
	} {
		got := TruncateReason(reason)
		if len(got) > MaxCloseReason || !utf8.ValidString(got) {
			t.Errorf("TruncateReason(%.20q...) = %d bytes, valid %v", reason, len(got), utf8.ValidString(got))
		}
		if utf8.ValidString(reason) && !strings.HasPrefix(reason, got) {
			t.Errorf("TruncateReason(%.20q...) is not a prefix", reason)
		}
		if len(reason) <= MaxCloseReason && utf8.ValidString(reason) && got != reason {
			t.Errorf("a short valid reason changed: %q", got)
		}
		msg := FormatCloseMessage(CloseGoingAway, reason)
		if len(msg) > 125 {
			t.Errorf("close payload of %d bytes", len(msg))
		}
	}
	for _, tc := range []struct {
		reason string
		want   int // bytes kept
	}{
		{strings.Repeat("é", 100), 122}, // 61 whole runes
		{strings.Repeat("a", 123), 123},
		{strings.Repeat("a", 200), 123},
		{strings.Repeat("a", 122) + "é", 122}, // é would end at byte 124
		{strings.Repeat("a", 121) + "é", 123},
	} {
		if got := TruncateReason(tc.reason); len(got) != tc.want {
			t.Errorf("TruncateReason(%d bytes) cut at %d bytes, want %d", len(tc.reason), len(got), tc.want)
		}
	}
}

// TestUpgradeRefusals: requests that are not RFC 6455 §4.2.1 handshakes are
// refused with an HTTP error and never hijacked.
func TestUpgradeRefusals(t *testing.T) {
	up := &Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := up.Upgrade(w, r, nil); err == nil {
			c.Close()
		}
	}))
	defer srv.Close()
	good := func() http.Header {
		return http.Header{
			"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"},
			"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="},
		}
	}
	cases := []struct {
		name   string
		method string
		edit   func(http.Header)
		status int
	}{
		{"ok", "GET", func(http.Header) {}, 101},
		{"POST", "POST", func(http.Header) {}, 405},
		{"no Upgrade", "GET", func(h http.Header) { h.Del("Upgrade") }, 400},
		{"no Connection upgrade", "GET", func(h http.Header) { h.Set("Connection", "close") }, 400},
		{"version 8", "GET", func(h http.Header) { h.Set("Sec-Websocket-Version", "8") }, 400},
		{"short key", "GET", func(h http.Header) { h.Set("Sec-Websocket-Key", "c2hvcnQ=") }, 400},
		{"no key", "GET", func(h http.Header) { h.Del("Sec-Websocket-Key") }, 400},
		{"cross origin", "GET", func(h http.Header) { h.Set("Origin", "http://evil.example") }, 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL, nil)
			req.Header = good()
			tc.edit(req.Header)
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if err := req.Write(conn); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == 101 && resp.Header.Get("Sec-Websocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
				t.Fatalf("accept %q: not RFC 6455's example answer", resp.Header.Get("Sec-Websocket-Accept"))
			}
		})
	}
}

// TestDialRefusesBadAccept: a 101 whose Sec-WebSocket-Accept does not
// match the key is not a WebSocket server (§4.1).
func TestDialRefusesBadAccept(t *testing.T) {
	addr := serveOnce(t, func(c net.Conn, _ *http.Request) {
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
		io.Copy(io.Discard, c)
	})
	d := &Dialer{HandshakeTimeout: 5 * time.Second}
	if _, _, err := d.Dial("ws://"+addr+"/", nil); !errors.Is(err, ErrBadHandshake) {
		t.Fatalf("err %v, want ErrBadHandshake", err)
	}
}

// TestFramesKeepFramesOfTheResponse: a frame the server sends in the same
// write as its 101 is read by the dialer's buffer with the response; the
// frame-by-frame reader (Frames) reads it before what the connection
// delivers next. Reading NetConn instead would lose it.
func TestFramesKeepFramesOfTheResponse(t *testing.T) {
	addr := serveOnce(t, func(c net.Conn, req *http.Request) {
		first := wstest.Frame{Fin: true, Op: TextMessage, Payload: []byte("with the 101")}.Encode(false)
		if _, err := c.Write(append([]byte(wstest.Response101(req)), first...)); err != nil {
			return
		}
		_, _ = c.Write(wstest.Frame{Fin: true, Op: TextMessage, Payload: []byte("after it")}.Encode(false))
		_, _ = io.Copy(io.Discard, c)
	})
	d := &Dialer{HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	fr := c.Frames()
	for _, want := range []string{"with the 101", "after it"} {
		h, err := fr.Next()
		if err != nil {
			t.Fatalf("frame %q: %v", want, err)
		}
		p := make([]byte, h.Len)
		if err := fr.ReadPayload(p); err != nil || string(p) != want {
			t.Fatalf("frame %q %v, want %q", p, err, want)
		}
	}
}

// TestDialRefusalBody: a refused handshake returns the response with its
// body readable (the SDK reports the engine's reason from it).
func TestDialRefusalBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such channel", http.StatusNotFound)
	}))
	defer srv.Close()
	_, resp, err := DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if !errors.Is(err, ErrBadHandshake) || resp == nil || resp.StatusCode != 404 {
		t.Fatalf("err %v resp %v", err, resp)
	}
	body, _ := io.ReadAll(resp.Body)
	if strings.TrimSpace(string(body)) != "no such channel" {
		t.Fatalf("body %q", body)
	}
}

// TestDialOptions: the dialer's NetDialContext, headers and proxy are used
// for the connection (the SDK's options apply to every socket through
// them), and frames the server sends right after the 101 are not lost.
func TestDialOptions(t *testing.T) {
	up := &Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.WriteMessage(TextMessage, []byte("hdr="+r.Header.Get("X-Test")))
		_, _, _ = c.ReadMessage()
	}))
	defer srv.Close()
	target := srv.Listener.Addr().String()

	// A CONNECT proxy that counts its tunnels.
	var tunnels atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect || r.Host != target || r.Header.Get("Proxy-Authorization") == "" {
			http.Error(w, "bad proxy request", http.StatusBadRequest)
			return
		}
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		tunnels.Add(1)
		w.WriteHeader(http.StatusOK)
		down, brw, _ := http.NewResponseController(w).Hijack()
		go func() { io.Copy(up, brw); up.Close() }()
		io.Copy(down, up)
		down.Close()
	}))
	defer proxy.Close()
	proxyURL, _ := url.Parse(proxy.URL)
	proxyURL.User = url.UserPassword("u", "p")

	var dialed atomic.Int32
	d := &Dialer{
		HandshakeTimeout: 5 * time.Second,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dialed.Add(1)
			var nd net.Dialer
			return nd.DialContext(ctx, network, addr)
		},
	}
	for _, viaProxy := range []bool{false, true} {
		if viaProxy {
			d.Proxy = http.ProxyURL(proxyURL)
		}
		c, _, err := d.Dial("ws://"+target+"/x", http.Header{"X-Test": {"yes"}})
		if err != nil {
			t.Fatalf("proxy %v: %v", viaProxy, err)
		}
		_, msg, err := c.ReadMessage()
		if err != nil || string(msg) != "hdr=yes" {
			t.Fatalf("proxy %v: %q %v", viaProxy, msg, err)
		}
		c.Close()
	}
	if dialed.Load() != 2 || tunnels.Load() != 1 {
		t.Fatalf("NetDialContext used %d times, proxy tunnels %d; want 2 and 1", dialed.Load(), tunnels.Load())
	}
}

// TestReadDeadlineResumes: a read cut by its deadline in the middle of a
// frame goes on where it stopped once a new deadline is set (the SDK's
// reader role hands the socket between goroutines this way).
func TestReadDeadlineResumes(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := newConn(a, false, a, "", 0)
	timedOut := make(chan struct{})
	go func() {
		frame := wstest.Frame{Fin: true, Op: BinaryMessage, Payload: []byte("hello world")}.Encode(false)
		b.Write(frame[:1]) // inside the header
		<-timedOut
		b.Write(frame[1:5]) // inside the payload
		<-timedOut
		b.Write(frame[5:])
	}()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	var rd io.Reader
	var err error
	for range 2 {
		if _, rd, err = c.NextReader(); err == nil {
			break
		}
		if !isTimeout(err) {
			t.Fatalf("header read: %v, want a timeout", err)
		}
		timedOut <- struct{}{}
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	}
	if rd == nil {
		t.Fatal("no message")
	}
	var msg []byte
	buf := make([]byte, 64)
	for tries := 0; ; tries++ {
		n, err := rd.Read(buf)
		msg = append(msg, buf[:n]...)
		if err == io.EOF {
			break
		}
		if isTimeout(err) && tries < 100 {
			if tries == 0 || len(msg) == 3 {
				select {
				case timedOut <- struct{}{}:
				default:
				}
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(msg) != "hello world" {
		t.Fatalf("got %q", msg)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
