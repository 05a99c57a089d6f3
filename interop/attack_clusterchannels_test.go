package interop

import (
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/wire"
)

// clChAtkDial dials a channel end on node e with a raw WebSocket client and
// returns the connection, or the HTTP status and body of a refusal.
func clChAtkDial(t *testing.T, e *engineProc, id, key, dir string) (*websocket.Conn, int, string) {
	t.Helper()
	u := e.URL + "/ws/channels/" + url.PathEscape(id) + "?key=" + url.QueryEscape(key) + "&dir=" + dir
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, resp, err := d.Dial(u, nil)
	if err == nil {
		t.Cleanup(func() { ws.Close() })
		return ws, 0, ""
	}
	if resp == nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	body, _ := io.ReadAll(resp.Body)
	return nil, resp.StatusCode, strings.TrimSpace(string(body))
}

// TestAttackClusterChannelKey: an end connecting on node 1 to a channel of
// node 0 with a wrong key (the key of another channel, an empty-looking
// one, a forged id naming another node) is refused before the upgrade with
// 404 "Channel not found", exactly as on node 0, 200 times in a row; the
// key is checked by the home node, and the channel then still works across
// nodes with its real key (node 1 keeps serving).
// On 04c1a7a (before the bridge) channel ids named no node and every end
// connecting on another node than the channel's, real key or not, got 404.
func TestAttackClusterChannelKey(t *testing.T) {
	nodes := startClusterEngines(t, 3)
	ctx := ctxFor(t, 90*time.Second)
	c0 := connectGo(t, nodes[0], "key-attack-client-0")
	ch, err := c0.CreateChannel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other, err := c0.CreateChannel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := ch.WriterRef.ChannelID
	dot := strings.LastIndexByte(id, '.')
	if dot < 0 {
		t.Fatalf("channel id %q does not name its node", id)
	}
	forged := id[:dot+1] + base64.RawURLEncoding.EncodeToString([]byte("node-2")) // same id, another home
	attempts := []struct{ what, id, key string }{
		{"wrong key", id, "0123456789abcdef0123456789abcdef0123"},
		{"another channel's key", id, other.WriterRef.AccessKey},
		{"a one-byte key", id, "x"},
		{"an id naming node 2", forged, ch.WriterRef.AccessKey},
		{"an id naming no node", id[:dot+1] + "bm93aGVyZQ", ch.WriterRef.AccessKey},
	}
	// On the home node, for reference.
	if _, st, body := clChAtkDial(t, nodes[0], id, "wrong", wire.DirWrite); st != http.StatusNotFound || body != "Channel not found" {
		t.Fatalf("wrong key on the home node: %d %q", st, body)
	}
	for i := range 200 {
		a := attempts[i%len(attempts)]
		dir := wire.DirWrite
		if i%2 == 1 {
			dir = wire.DirRead
		}
		ws, st, body := clChAtkDial(t, nodes[1], a.id, a.key, dir)
		if ws != nil || st != http.StatusNotFound || body != "Channel not found" {
			t.Fatalf("%s (%s) through node 1: connected=%v, HTTP %d %q; want 404 Channel not found", a.what, dir, ws != nil, st, body)
		}
	}
	// The channel is intact: its real key works across nodes.
	reader := sluice.NewChannelReader(nodes[1].URL, ch.ReaderRef)
	defer reader.Close()
	go func() {
		_, _ = ch.Writer.Write([]byte("still here"))
		_ = ch.Writer.Close()
	}()
	got, err := io.ReadAll(reader)
	if err != nil || string(got) != "still here" {
		t.Fatalf("after the attempts, the reader on node 1 got %q, %v", got, err)
	}
}
