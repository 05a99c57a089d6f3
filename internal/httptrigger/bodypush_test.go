package httptrigger

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice/internal/channels"
	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

// stallReaders serves a hub whose reader sockets (dir=read) accept their
// upgrade and then never take a byte more: frames written to them stay
// charged to the hub's memory, as with a function that connected to read
// its body and stalled.
type stallReaders struct {
	hub     *channels.Hub
	stalled chan struct{} // a write to a reader socket blocked
	mu      sync.Mutex
	conns   []*stallConn
}

func (s *stallReaders) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("dir") == wire.DirRead {
		w = &stallHijacker{ResponseWriter: w, s: s}
	}
	s.hub.ServeHTTP(w, r)
}

// close unblocks every stalled write.
func (s *stallReaders) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

type stallHijacker struct {
	http.ResponseWriter
	s *stallReaders
}

func (h *stallHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	sc := &stallConn{Conn: c, closed: make(chan struct{}), stalled: h.s.stalled}
	h.s.mu.Lock()
	h.s.conns = append(h.s.conns, sc)
	h.s.mu.Unlock()
	return sc, brw, nil
}

// stallConn lets its first write (the upgrade's answer) through and blocks
// every later one until it is closed.
type stallConn struct {
	net.Conn
	mu      sync.Mutex
	writes  int
	once    sync.Once
	closed  chan struct{}
	stalled chan<- struct{}
}

func (c *stallConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	first := c.writes == 1
	c.mu.Unlock()
	if first {
		return c.Conn.Write(p)
	}
	select {
	case c.stalled <- struct{}{}:
	default:
	}
	<-c.closed
	return 0, net.ErrClosed
}

func (c *stallConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// A JSON body held back until its function connects is pushed without
// stopping the request's clock: when the engine's channel memory is spent
// by another channel and the function's reader stalls, the body's second
// frame waits for memory, yet the request still gets its 504 at
// http.timeout, and the shutdown still ends a request waiting so.
// On d798691 both requests hung until the client gave up (5 s here): the
// respond loop sat in the blocking push of the body.
func TestHeldBodyPushKeepsTimeoutAndShutdown(t *testing.T) {
	// The budget is below one frame's buffer: the other channel's one
	// frame spends it (a channel holding nothing may always take one).
	hub := channels.NewHub(channels.Config{MaxTotalBufferBytes: 32 << 10}, slog.New(slog.DiscardHandler))
	stall := &stallReaders{hub: hub, stalled: make(chan struct{}, 1)}
	hubSrv := httptest.NewServer(stall)
	defer hubSrv.Close()
	defer hub.Shutdown(context.Background())
	defer stall.close() // first: the hub waits for its sockets
	_, hog, err := hub.CreateWithLocalWriter(4)
	if err != nil {
		t.Fatal(err)
	}
	if err := hog.WriteFrame(context.Background(), false, make([]byte, 1<<10)); err != nil {
		t.Fatal(err)
	}
	if used := hub.BufferedBytes(); used < 32<<10 {
		t.Fatalf("the other channel holds %d bytes, want the whole budget", used)
	}

	inv := &wsInvoker{hubURL: "ws" + strings.TrimPrefix(hubSrv.URL, "http")}
	const timeout = 200 * time.Millisecond
	srv := New(Config{Logger: slog.New(slog.DiscardHandler), Timeout: timeout}, inv, hubChannels{hub})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	if err := srv.RegisterTrigger(&registry.Trigger{ID: "t", Type: "http", FunctionID: "f",
		Config: []byte(`{"api_path":"/b","http_method":"POST"}`)}); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	defer close(release)
	inv.fn = func(in wire.HTTPRequest, dial func(*wire.ChannelRef) *websocket.Conn) invocation.Result {
		body := dial(in.RequestBody) // connects, never reads
		defer body.Close()
		<-release
		return invocation.Result{Value: []byte(`null`)}
	}
	// Two frames: the first goes in (the channel holds nothing), the
	// second waits for memory.
	payload := `{"a":"` + strings.Repeat("x", wire.FrameSize+1000) + `"}`
	post := func(ctx context.Context, url string) (int, string, time.Duration, error) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second) // turns a hang into a failure
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", url+"/b", strings.NewReader(payload))
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", time.Since(start), err
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		return res.StatusCode, string(b), time.Since(start), err
	}

	status, body, took, err := post(context.Background(), ts.URL)
	if err != nil || status != http.StatusGatewayTimeout || !strings.Contains(body, wire.CodeTimeout) {
		t.Fatalf("after %s: %d %s %v, want 504 %s at the %s timeout", took, status, body, err, wire.CodeTimeout, timeout)
	}
	select {
	case <-stall.stalled: // the first frame is on its way to the function
	default:
		t.Fatal("no body frame ever reached the function's socket")
	}

	// The same wait, ended by the shutdown instead (the timeout is far).
	srv2 := New(Config{Logger: slog.New(slog.DiscardHandler), Timeout: time.Minute}, inv, hubChannels{hub})
	ts2 := httptest.NewServer(srv2)
	defer ts2.Close()
	if err := srv2.RegisterTrigger(&registry.Trigger{ID: "t", Type: "http", FunctionID: "f",
		Config: []byte(`{"api_path":"/b","http_method":"POST"}`)}); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		status int
		body   string
		took   time.Duration
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		status, body, took, err := post(context.Background(), ts2.URL)
		done <- answer{status, body, took, err}
	}()
	select {
	case <-stall.stalled: // the push has begun: its second frame waits
	case a := <-done:
		t.Fatalf("answered before the body reached the function: %+v", a)
	}
	srv2.Close()
	a := <-done
	if a.err != nil || a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, wire.CodeEngineShuttingDown) {
		t.Fatalf("after %s: %d %s %v, want 503 %s", a.took, a.status, a.body, a.err, wire.CodeEngineShuttingDown)
	}
	srv.Close()
}
