package benchrelay

import (
	"bytes"
	"testing"

	"github.com/gorilla/websocket"
)

// TestRelayEchoes: a message sent through the relay comes back from the
// echo server unchanged, text and binary, and in order; closing the relay's
// client ends its upstream pump too.
func TestRelayEchoes(t *testing.T) {
	echo, err := StartEcho()
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	relay, err := StartRelay(echo.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	c, _, err := websocket.DefaultDialer.Dial(relay.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msgs := []struct {
		kind int
		data []byte
	}{
		{websocket.TextMessage, []byte(`{"n":1}`)},
		{websocket.BinaryMessage, bytes.Repeat([]byte{7}, 100_000)},
		{websocket.TextMessage, []byte(`{"n":3}`)},
	}
	for _, m := range msgs {
		if err := c.WriteMessage(m.kind, m.data); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range msgs {
		kind, data, err := c.ReadMessage()
		if err != nil || kind != m.kind || !bytes.Equal(data, m.data) {
			t.Fatalf("message %d: kind %d, %d bytes, %v; want kind %d, %d bytes", i, kind, len(data), err, m.kind, len(m.data))
		}
	}
}

// TestRelayUpstreamDown: a relay whose target is down refuses the client.
func TestRelayUpstreamDown(t *testing.T) {
	echo, err := StartEcho()
	if err != nil {
		t.Fatal(err)
	}
	url := echo.URL
	echo.Close()
	relay, err := StartRelay(url)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	c, _, err := websocket.DefaultDialer.Dial(relay.URL, nil)
	if err == nil {
		// Upgraded before dialling upstream: the relay must then hang up.
		defer c.Close()
		if _, _, err := c.ReadMessage(); err == nil {
			t.Fatal("relay to a dead upstream delivered a message")
		}
	}
}
