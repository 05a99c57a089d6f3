package channels

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/wire"
)

// testWait bounds every wait for an event, so that a bug fails the test
// instead of hanging it.
const testWait = 10 * time.Second

type testHub struct {
	*Hub
	base    string        // ws://127.0.0.1:port
	changed chan struct{} // pulsed when an end finishes or a channel expires
}

// newTestHub serves a hub the way the engine mounts it. hooks may set test
// seams before the hub is used.
func newTestHub(t testing.TB, cfg Config, hooks ...func(*Hub)) *testHub {
	t.Helper()
	h := NewHub(cfg, nil)
	th := &testHub{Hub: h, changed: make(chan struct{}, 1)}
	h.onChanged = func() {
		select {
		case th.changed <- struct{}{}:
		default:
		}
	}
	for _, f := range hooks {
		f(h)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws/channels/", h)
	srv := httptest.NewServer(mux)
	th.base = "ws" + strings.TrimPrefix(srv.URL, "http")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		srv.Close()
	})
	return th
}

func (th *testHub) url(ref wire.ChannelRef, dir string) string {
	return th.base + "/ws/channels/" + ref.ChannelID + "?key=" + url.QueryEscape(ref.AccessKey) + "&dir=" + dir
}

var testDialer = &websocket.Dialer{ReadBufferSize: wire.FrameSize, WriteBufferSize: wire.FrameSize, HandshakeTimeout: testWait}

func (th *testHub) dial(t testing.TB, ref wire.ChannelRef, dir string) *websocket.Conn {
	t.Helper()
	c, resp, err := testDialer.Dial(th.url(ref, dir), nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", dir, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitLen waits until the hub holds n channels.
func (th *testHub) waitLen(t testing.TB, n int) {
	t.Helper()
	deadline := time.NewTimer(testWait)
	defer deadline.Stop()
	for th.Len() != n {
		select {
		case <-th.changed:
		case <-deadline.C:
			t.Fatalf("hub holds %d channels, want %d", th.Len(), n)
		}
	}
}

// waitWriterDone waits until the write end of channel id has finished.
func (th *testHub) waitWriterDone(t testing.TB, id string) {
	t.Helper()
	th.waitChannel(t, id, "the write end did not finish", func(ch *channel) bool {
		return ch == nil || ch.state[dirWrite] == endDone
	})
}

// waitChannel waits until ok holds for channel id (nil once gone), read
// under the hub lock; it fails with msg after testWait.
func (th *testHub) waitChannel(t testing.TB, id, msg string, ok func(ch *channel) bool) {
	t.Helper()
	deadline := time.NewTimer(testWait)
	defer deadline.Stop()
	for {
		th.mu.Lock()
		done := ok(th.chans[id])
		th.mu.Unlock()
		if done {
			return
		}
		select {
		case <-th.changed:
		case <-deadline.C:
			t.Fatal(msg)
		}
	}
}

func (th *testHub) channel(id string) *channel {
	th.mu.Lock()
	defer th.mu.Unlock()
	return th.chans[id]
}

// closeWith sends a close frame and waits for the engine's reply.
func closeWith(t testing.TB, c *websocket.Conn, code int, reason string) {
	t.Helper()
	var msg []byte
	if code != websocket.CloseNoStatusReceived {
		msg = websocket.FormatCloseMessage(code, reason)
	}
	if err := c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(testWait)); err != nil {
		t.Fatalf("write close: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(testWait))
	for {
		if _, _, err := c.NextReader(); err != nil {
			return
		}
	}
}

// expectClose reads until the socket ends and checks its close code (and
// reason, if not empty).
func expectClose(t testing.TB, c *websocket.Conn, code int, reason string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(testWait))
	for {
		_, r, err := c.NextReader()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("want close %d, got %v", code, err)
			}
			if ce.Code != code || (reason != "" && !strings.Contains(ce.Text, reason)) {
				t.Fatalf("want close %d %q, got %d %q", code, reason, ce.Code, ce.Text)
			}
			return
		}
		_, _ = io.Copy(io.Discard, r)
	}
}

type msg struct {
	kind int
	data []byte
}

// readAll reads frames until the socket ends and returns them with the
// close error.
func readAll(t testing.TB, c *websocket.Conn) ([]msg, *websocket.CloseError) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(testWait))
	var out []msg
	for {
		k, b, err := c.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("read: %v", err)
			}
			return out, ce
		}
		out = append(out, msg{k, b})
	}
}
