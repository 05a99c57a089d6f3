package wsconn

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

func pair(t *testing.T) (server *Conn, client *websocket.Conn) {
	t.Helper()
	ch := make(chan *Conn, 1)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		ch <- New(ws, Options{Queue: 4})
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
