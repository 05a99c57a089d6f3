package sluice_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/testtls"
)

// connectProxy is an HTTP CONNECT proxy that counts its tunnels.
func connectProxy(t *testing.T) (*url.URL, *atomic.Int32) {
	t.Helper()
	var tunnels atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		tunnels.Add(1)
		w.WriteHeader(http.StatusOK)
		down, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		go func() { _, _ = io.Copy(up, brw); up.Close() }()
		_, _ = io.Copy(down, up)
		down.Close()
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u, &tunnels
}

// TestDialOptionsReachChannelSockets: WithNetDialer and WithProxy apply to
// the worker socket and to both channel ends alike, over ws:// and wss://.
// On 5685f05 the SDK had only WithDialer(*websocket.Dialer) (a gorilla
// type), whose dial function and proxy channel ends ignored.
// channelRoundTrip connects to url with opts, creates a channel and sends
// msg from its writer to its reader, which must read it whole.
func channelRoundTrip(t *testing.T, url string, opts []sluice.Option, msg string) *sluice.Channel {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	c, err := sluice.Connect(ctx, url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ch, err := c.CreateChannel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_, _ = ch.Writer.Write([]byte(msg))
		_ = ch.Writer.Close()
	}()
	if b, err := ch.Reader.ReadAll(); err != nil || string(b) != msg {
		t.Fatalf("read %q, %v", b, err)
	}
	return ch
}

func TestDialOptionsReachChannelSockets(t *testing.T) {
	for _, scheme := range []string{"ws", "wss"} {
		t.Run(scheme, func(t *testing.T) {
			var e *engine.Engine
			opts := []sluice.Option{sluice.WithName("dialopts"), sluice.WithLogger(quietLogger())}
			if scheme == "wss" {
				te, f := startTLSEngine(t)
				e = te
				opts = append(opts, sluice.WithTLSConfig(f.ClientConfig()))
			} else {
				e = startEngine(t)
			}
			proxyURL, tunnels := connectProxy(t)
			var dials atomic.Int32
			opts = append(opts,
				sluice.WithProxy(http.ProxyURL(proxyURL)),
				sluice.WithNetDialer(func(ctx context.Context, network, addr string) (net.Conn, error) {
					if addr != proxyURL.Host {
						t.Errorf("dialed %s, not the proxy %s", addr, proxyURL.Host)
					}
					dials.Add(1)
					var d net.Dialer
					return d.DialContext(ctx, network, addr)
				}))
			channelRoundTrip(t, e.WorkerURL(), opts, "through the proxy")
			// All three sockets have dialed: the reader read the writer's bytes.
			if dials.Load() != 3 || tunnels.Load() != 3 {
				t.Fatalf("%d dials, %d proxy tunnels; want 3 and 3 (worker socket, writer, reader)", dials.Load(), tunnels.Load())
			}
		})
	}
}

// TestHeaderReachesChannelSockets: WithHeader's headers, and WithToken's,
// reach the handshakes of the worker socket and of both channel ends, over
// ws:// and wss:// (where WithTLSConfig reaches them too): a reverse proxy
// in front of the engine records the handshakes it forwards. With the
// channel ends dialed without the client's headers, the two channel rows
// come out empty.
func TestHeaderReachesChannelSockets(t *testing.T) {
	for _, scheme := range []string{"ws", "wss"} {
		t.Run(scheme, func(t *testing.T) {
			var e *engine.Engine
			var files testtls.Files
			if scheme == "wss" {
				e, files = startTLSEngine(t)
			} else {
				e = startEngine(t)
			}
			target, err := url.Parse("http" + strings.TrimPrefix(e.WorkerURL(), "ws"))
			if err != nil {
				t.Fatal(err)
			}
			rp := httputil.NewSingleHostReverseProxy(target)
			var mu sync.Mutex
			var seen []string // path?dir and the headers, per handshake
			front := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				seen = append(seen, fmt.Sprintf("%s?%s %s|%s", r.URL.Path, r.URL.Query().Get("dir"), r.Header.Get("X-Test"), r.Header.Get("Authorization")))
				mu.Unlock()
				rp.ServeHTTP(w, r)
			}))
			opts := []sluice.Option{sluice.WithName("headers"), sluice.WithLogger(quietLogger()),
				sluice.WithHeader(http.Header{"X-Test": {"on every socket"}}), sluice.WithToken("t0ken")}
			if scheme == "wss" {
				rp.Transport = &http.Transport{TLSClientConfig: files.ClientConfig()}
				cert, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
				if err != nil {
					t.Fatal(err)
				}
				front.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
				front.StartTLS()
				opts = append(opts, sluice.WithTLSConfig(files.ClientConfig()))
			} else {
				front.Start()
			}
			defer front.Close()
			ch := channelRoundTrip(t, scheme+"://"+front.Listener.Addr().String(), opts, "through the front")
			path := "/ws/channels/" + ch.Reader.Ref().ChannelID
			want := map[string]bool{
				"/? on every socket|Bearer t0ken":            false,
				path + "?read on every socket|Bearer t0ken":  false,
				path + "?write on every socket|Bearer t0ken": false,
			}
			mu.Lock()
			defer mu.Unlock()
			for _, s := range seen {
				if _, ok := want[s]; ok {
					want[s] = true
				}
			}
			for w, ok := range want {
				if !ok {
					t.Errorf("no handshake %q; the front saw %q", w, seen)
				}
			}
		})
	}
}
