package wsconn

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
)

// Data frames are written by rawWrite on both sides (masked by the
// client), interleaved with gorilla's control frames, and still flow after
// a control frame's write deadline has passed: gorilla's deadlines apply
// to its own writes only.
func TestRawWritesBesideControlFrames(t *testing.T) {
	server, peer := upgradedPair(t)
	if server.cc == nil || server.cc.client {
		t.Fatal("upgraded socket: want a server-side corkConn")
	}
	ctx := context.Background()
	big := bytes.Repeat([]byte("b"), rawMax+1) // over rawMax: rawWriteLarge
	for _, p := range [][]byte{[]byte("one"), bytes.Repeat([]byte("m"), 300), big, bytes.Repeat([]byte("l"), 70000)} {
		if err := server.Send(ctx, Binary, p, nil); err != nil {
			t.Fatal(err)
		}
		_, got, err := peer.ReadMessage()
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("frame of %d bytes: got %d bytes, %v", len(p), len(got), err)
		}
	}

	deadline := time.Now().Add(20 * time.Millisecond)
	if err := server.ws.WriteControl(websocket.PingMessage, []byte("p"), deadline); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(deadline) + 10*time.Millisecond) // the condition itself: a deadline in the past
	if err := server.Send(ctx, Text, []byte("after"), nil); err != nil {
		t.Fatal(err)
	}
	pinged := make(chan string, 1)
	peer.SetPingHandler(func(s string) error { pinged <- s; return nil })
	_, b, err := peer.ReadMessage() // handles the ping on the way
	if err != nil || string(b) != "after" {
		t.Fatalf("after the deadline: %q, %v", b, err)
	}
	if s := <-pinged; s != "p" {
		t.Fatalf("ping payload %q", s)
	}
}

// A client Conn (made by Dialer) masks what it writes.
func TestRawWritesFromClientAreMasked(t *testing.T) {
	recv := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var up websocket.Upgrader
		ws, err := up.Upgrade(w, r, nil) // gorilla rejects unmasked client frames
		if err != nil {
			return
		}
		_, b, err := ws.ReadMessage()
		if err == nil {
			recv <- b
		}
		ws.Close()
	}))
	defer srv.Close()
	ws, _, err := Dialer(nil).Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := New(ws, Options{})
	defer c.Abort()
	if c.cc == nil || !c.cc.client {
		t.Fatal("dialed socket: want a client-side corkConn")
	}
	msg := bytes.Repeat([]byte("0123456789"), 50)
	if err := c.Send(context.Background(), Text, msg, nil); err != nil {
		t.Fatal(err)
	}
	if b := <-recv; !bytes.Equal(b, msg) {
		t.Fatalf("server read %q", b)
	}
}
