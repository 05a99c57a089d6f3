package channels

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testtls"
	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/internal/ws/wsframe"
	"github.com/sluicehq/sluice/internal/ws/wstest"
	"github.com/sluicehq/sluice/wire"
)

// TestConformanceHubWriter runs the RFC 6455 conformance suite (internal/ws/
// wstest) against the hub's writer-socket reader (frameReader, driven by
// runWriter), over ws:// and wss://, with MaxFrameSize at the suite's limit
// (the limit cases included: over it the hub closes with 1009). Each suite
// connection is served as the write end of a fresh channel, through
// Hub.ServeHTTP; the messages its read end receives are what the writer
// socket echoes (hubEchoConn), and the read end must end with 1000 exactly
// when the writer socket closed cleanly (else 1011). Cases run
// concurrently: after a protocol error the hub waits closeWait before it
// drops the connection, as the suite's raw peer neither answers nor hangs
// up first. With the UTF-8 check of frameReader removed, 8 cases per
// scheme fail.
func TestConformanceHubWriter(t *testing.T) {
	files, err := testtls.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, scheme := range []string{"ws", "wss"} {
		t.Run(scheme, func(t *testing.T) {
			addr := serveHubConformance(t, Config{MaxFrameSize: wstest.Limit}, scheme, &tls.Config{Certificates: []tls.Certificate{cert}}, files.ClientConfig())
			runServerConcurrently(t, scheme, addr, files.ClientConfig(), nil)
		})
	}
}

// runServerConcurrently runs the suite's cases at the same time (t.Run
// from one goroutine each, not t.Parallel: -parallel is GOMAXPROCS, and a
// protocol-error case takes closeWait).
func runServerConcurrently(t *testing.T, scheme, addr string, cfg *tls.Config, skip func(wstest.Case) bool) {
	var wg sync.WaitGroup
	for _, tc := range wstest.Cases {
		if skip != nil && skip(tc) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			wstest.RunServer(t, scheme, addr, cfg, func(c wstest.Case) bool { return c.Name != tc.Name })
		}()
	}
	wg.Wait()
}

// serveHubConformance serves a hub at /ws/channels/ and, at "/", turns each
// WebSocket handshake into the write end of a new channel whose read end
// (dialed by the handler) echoes onto the writer socket. It returns the
// server's address; everything is shut down when t ends.
func serveHubConformance(t *testing.T, cfg Config, scheme string, srvTLS, cliTLS *tls.Config) string {
	h := NewHub(cfg, nil)
	mux := http.NewServeMux()
	mux.Handle("/ws/channels/", h)
	var handlers sync.WaitGroup
	var base atomic.Value // scheme://addr, once started
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		handlers.Add(1)
		defer handlers.Done()
		serveEchoChannel(t, h, base.Load().(string), cliTLS, w, r)
	})
	srv := httptest.NewUnstartedServer(mux)
	if scheme == "wss" {
		srv.TLS = srvTLS
		srv.StartTLS()
	} else {
		srv.Start()
	}
	base.Store(scheme + "://" + srv.Listener.Addr().String())
	t.Cleanup(func() {
		handlers.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		srv.Close()
	})
	return srv.Listener.Addr().String()
}

// serveEchoChannel serves r as the write end of a new channel.
func serveEchoChannel(t *testing.T, h *Hub, base string, cliTLS *tls.Config, w http.ResponseWriter, r *http.Request) {
	res, err := h.Create(0)
	if err != nil {
		t.Errorf("Create: %v", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h.mu.Lock()
	ch := h.chans[res.Writer.ChannelID]
	h.mu.Unlock()
	d := *testDialer
	d.TLSClientConfig = cliTLS
	rd, _, err := d.Dial(base+"/ws/channels/"+res.Reader.ChannelID+"?dir=read&key="+url.QueryEscape(res.Reader.AccessKey), nil)
	if err != nil {
		t.Errorf("dial the read end: %v", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer rd.Close()
	ec := &hubEchoConn{forwarded: &ch.frames, echoed: make(chan struct{}, 1)}
	readDone := make(chan struct{})
	var readEnd error
	go func() {
		defer close(readDone)
		_ = rd.SetReadDeadline(time.Now().Add(testWait))
		for {
			op, data, err := rd.ReadMessage()
			if err != nil {
				readEnd = err
				return
			}
			ec.echo(op, data)
		}
	}()
	wr := r.Clone(r.Context())
	wr.URL.Path = "/ws/channels/" + res.Writer.ChannelID
	wr.URL.RawQuery = "dir=write&key=" + url.QueryEscape(res.Writer.AccessKey)
	h.ServeHTTP(hijackWrap{w, ec}, wr)
	select {
	case <-readDone:
	case <-time.After(testWait):
		t.Errorf("the read end did not finish")
		return
	}
	// The read end ends cleanly exactly when the writer did.
	want := wire.CloseInternal
	if code := int(ec.closeCode.Load()); code != 0 && cleanClose(code) {
		want = wire.CloseNormal
	}
	var ce *websocket.CloseError
	if !errors.As(readEnd, &ce) || ce.Code != want {
		t.Errorf("writer socket closed with %d: the read end got %v, want close %d", ec.closeCode.Load(), readEnd, want)
	}
}

// hijackWrap hands the hub a hubEchoConn instead of the hijacked
// connection.
type hijackWrap struct {
	http.ResponseWriter
	ec *hubEchoConn
}

func (hw hijackWrap) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(hw.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	hw.ec.Conn = c
	return hw.ec, brw, nil
}

// hubEchoConn is the writer socket as the hub sees it. The read end's
// messages are written to it as server data frames (each one Write, as the
// hub's own control frames are). The hub's close frame waits until every
// message the hub forwarded before it has been echoed, so that the suite
// sees the echo before the close, as from a server that echoes in order.
type hubEchoConn struct {
	net.Conn
	forwarded *atomic.Uint64 // the channel's frames from the writer socket
	n         atomic.Uint64  // echoed
	echoed    chan struct{}  // pulsed on each echo
	closeCode atomic.Int32   // of the hub's close frame (1005: no code)
}

func (c *hubEchoConn) echo(op int, data []byte) {
	b := make([]byte, wsframe.MaxHeader+len(data))
	n := wsframe.PutHeader(b, true, op, len(data), false, [4]byte{})
	copy(b[n:], data)
	_, _ = c.Conn.Write(b[:n+len(data)])
	c.n.Add(1)
	select {
	case c.echoed <- struct{}{}:
	default:
	}
}

func (c *hubEchoConn) Write(b []byte) (int, error) {
	if len(b) > 0 && b[0] == 0x80|wsframe.OpClose { // a close frame (not the 101 before the frames)
		code := int32(websocket.CloseNoStatusReceived)
		if len(b) >= 4 && b[1]&0x7f >= 2 { // an unmasked server frame: the code follows the 2-byte header
			code = int32(binary.BigEndian.Uint16(b[2:]))
		}
		c.closeCode.CompareAndSwap(0, code)
		deadline := time.NewTimer(testWait)
		defer deadline.Stop()
		for c.n.Load() < c.forwarded.Load() {
			select {
			case <-c.echoed:
			case <-deadline.C:
				return c.Conn.Write(b) // the suite reports the missing echo
			}
		}
	}
	return c.Conn.Write(b)
}
