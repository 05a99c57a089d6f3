package wsconn

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
)

// pair returns a Conn over a plain gorilla upgrade (queue of 4) and the
// client end.
func pair(t *testing.T) (server *Conn, client *websocket.Conn) {
	t.Helper()
	return newPair(t, func(u *websocket.Upgrader, w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
		return u.Upgrade(w, r, nil)
	}, Options{Queue: 4})
}

// upgradedPair is pair with the server side upgraded by Upgrade, so that
// its writes can be corked and its read buffer inspected.
func upgradedPair(t *testing.T) (server *Conn, client *websocket.Conn) {
	t.Helper()
	return newPair(t, func(u *websocket.Upgrader, w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
		return Upgrade(u, w, r, nil)
	}, Options{})
}

func newPair(t *testing.T, upgrade func(*websocket.Upgrader, http.ResponseWriter, *http.Request) (*websocket.Conn, error), o Options) (*Conn, *websocket.Conn) {
	t.Helper()
	ch := make(chan *Conn, 1)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := upgrade(&up, w, r)
		if err != nil {
			t.Error(err)
			return
		}
		ch <- New(ws, o)
	}))
	t.Cleanup(srv.Close)
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return <-ch, c
}

func TestSendOrderAndClose(t *testing.T) {
	s, c := pair(t)
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		if err := s.Send(ctx, Binary, []byte{byte(i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	s.Close(4001, "bye")
	for i := 0; i < 100; i++ {
		_, b, err := c.ReadMessage()
		if err != nil || len(b) != 1 || b[0] != byte(i) {
			t.Fatalf("frame %d: %v %v", i, b, err)
		}
	}
	_, _, err := c.ReadMessage()
	code, reason, ok := IsCloseError(err)
	if !ok || code != 4001 || reason != "bye" {
		t.Fatalf("close: %v", err)
	}
	<-s.Done()
	if err := s.Send(ctx, Text, []byte("x"), nil); err == nil {
		t.Fatal("Send after close succeeded")
	}
}

// TestCloseReasonWholeRunes: Close cuts a long reason where a close frame
// must (123 bytes), on a rune boundary, and leaves one that fits alone.
// On 29b91b1 it cut every reason at byte 120 first: a rune across that
// byte became U+FFFD, though the whole reason fitted.
func TestCloseReasonWholeRunes(t *testing.T) {
	for _, tc := range []struct{ reason, want string }{
		{strings.Repeat("a", 119) + "€", strings.Repeat("a", 119) + "€"},
		{strings.Repeat("a", 121) + "é", strings.Repeat("a", 121) + "é"},
		{strings.Repeat("é", 70), strings.Repeat("é", 61)},
	} {
		s, c := pair(t)
		s.Close(4001, tc.reason)
		_, _, err := c.ReadMessage()
		if code, reason, ok := IsCloseError(err); !ok || code != 4001 || reason != tc.want {
			t.Errorf("Close(4001, %d bytes): got %v, want reason %q", len(tc.reason), err, tc.want)
		}
		<-s.Done()
	}
}

func TestReadFrameLimit(t *testing.T) {
	s, c := pair(t)
	if err := c.WriteMessage(websocket.BinaryMessage, bytes.Repeat([]byte("a"), 100)); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	_, _, err := ReadFrame(s.WS(), make([]byte, 0, 8), 50)
	if err != ErrFrameTooLarge {
		t.Fatalf("want ErrFrameTooLarge, got %v", err)
	}
	kind, data, err := ReadFrame(s.WS(), nil, 50)
	if err != nil || kind != Text || string(data) != "ok" {
		t.Fatalf("next frame after oversized one: %d %q %v", kind, data, err)
	}
}

// A peer that stops reading makes the server's writes stall; the watchdog
// aborts the connection once a write has made no progress for the write
// timeout, and Send then reports ErrWriteTimeout.
func TestWriteTimeoutWatchdog(t *testing.T) {
	s, _ := pair(t) // the client never reads
	s.writeWait = time.Minute
	big := bytes.Repeat([]byte("x"), 1<<20)
	sent := make(chan error, 2)
	for range 2 { // one writes inline, the other queues behind it
		go func() {
			for {
				if err := s.Send(context.Background(), Binary, big, nil); err != nil {
					sent <- err
					return
				}
			}
		}()
	}
	// Wait until a write is stuck: the queue is full behind it and its
	// sequence number stops moving once the socket buffers are full.
	t0 := time.Now()
	var seq uint64
	for stable := time.Now(); ; runtime.Gosched() {
		if time.Since(t0) > 20*time.Second {
			t.Fatal("writes never stalled")
		}
		cur := s.wseq.Load()
		if cur&1 == 0 || cur != seq || s.queued.Load() < 4 {
			seq, stable = cur, time.Now()
			continue
		}
		if time.Since(stable) > 200*time.Millisecond {
			break
		}
	}
	if got := abortStalled(t0, nil); slices.Contains(got, s) {
		t.Fatal("aborted on the first look")
	}
	if got := abortStalled(t0.Add(30*time.Second), nil); slices.Contains(got, s) {
		t.Fatal("aborted before the write timeout")
	}
	if got := abortStalled(t0.Add(2*time.Minute), nil); !slices.Contains(got, s) {
		t.Fatal("stalled connection not aborted after the write timeout")
	}
	for range 2 {
		if err := <-sent; !errors.Is(err, ErrWriteTimeout) {
			t.Fatalf("Send error %v, want ErrWriteTimeout", err)
		}
	}
	<-s.Done()
}

func TestWatchdogSeesProgress(t *testing.T) {
	c := &Conn{writeWait: time.Second}
	watchdog.mu.Lock()
	if watchdog.conns == nil {
		watchdog.conns = make(map[*Conn]*watchState)
	}
	watchdog.conns[c] = &watchState{}
	watchdog.mu.Unlock()
	defer unwatch(c)
	t0 := time.Now()
	has := func(now time.Time) bool { return slices.Contains(checkWrites(now, nil), c) }
	if has(t0) || has(t0.Add(time.Hour)) {
		t.Fatal("idle connection reported stalled")
	}
	c.wseq.Add(1) // a write begins
	if has(t0.Add(time.Hour + 500*time.Millisecond)) {
		t.Fatal("reported before the write timeout")
	}
	if !has(t0.Add(time.Hour + 1500*time.Millisecond)) {
		t.Fatal("stalled write not reported")
	}
	c.wseq.Add(2) // that write ended and another began: progress
	if has(t0.Add(time.Hour + 1600*time.Millisecond)) {
		t.Fatal("progress not seen")
	}
}
