package channels

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/internal/natsnode/natstest"
	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/wire"
)

// clusterHub is a test hub on a node of an in-process NATS "cluster" (one
// server, one connection per node, as the engine's nodes each have).
type clusterTestHub struct {
	*testHub
	nc *nats.Conn
}

func newClusterHubs(t *testing.T, cfg Config, timeout time.Duration, names ...string) []*clusterTestHub {
	t.Helper()
	srv := natstest.Start(t)
	var out []*clusterTestHub
	for _, name := range names {
		nc, err := nats.Connect("", nats.InProcessServer(srv.Server))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		th := newTestHub(t, cfg, func(h *Hub) {
			if err := h.EnableCluster(ClusterConfig{Conn: nc, Node: name, NodeTimeout: timeout}); err != nil {
				t.Fatal(err)
			}
		})
		out = append(out, &clusterTestHub{testHub: th, nc: nc})
	}
	return out
}

// waitActive waits until an end of channel id is connected (a bridged end:
// once its remote socket's upgrade is confirmed).
func (th *testHub) waitActive(t testing.TB, id string, end int) {
	t.Helper()
	th.waitChannel(t, id, "the end never became active", func(ch *channel) bool {
		return ch != nil && ch.state[end] == endActive
	})
}

// dialStatus dials and returns the HTTP status of a refusal (0: connected).
func dialStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	c, resp, err := testDialer.Dial(url, nil)
	if err == nil {
		c.Close()
		return 0, ""
	}
	if resp == nil {
		t.Fatalf("dial: %v", err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	return resp.StatusCode, body.String()
}

// TestClusterBridgeOrder: a channel created on node a, its writer on one
// node and its reader on another (b to a, a to b, b to c): every frame
// arrives whole, in order, with its type, then close 1000.
func TestClusterBridgeOrder(t *testing.T) {
	hubs := newClusterHubs(t, Config{}, 5*time.Second, "a", "b", "c")
	a, b, c := hubs[0], hubs[1], hubs[2]
	want := mixedFrames()
	// One frame bigger than a bridge message, sent in several; a text
	// message split between messages in the middle of a character.
	big := make([]byte, 3*bridgeMsgMax+17)
	for i := range big {
		big[i] = byte(i * 31)
	}
	want = append(want, msg{websocket.BinaryMessage, big}, msg{websocket.TextMessage, []byte(strings.Repeat("é", bridgeMsgMax))})
	// Many small frames, ready together: they share messages.
	for i := range 300 {
		kind := websocket.BinaryMessage
		if i%3 == 0 {
			kind = websocket.TextMessage
		}
		want = append(want, msg{kind, []byte(strings.Repeat("s", i))})
	}
	for _, tc := range []struct {
		name   string
		wr, rd *clusterTestHub
	}{{"WriterRemote", b, a}, {"ReaderRemote", a, b}, {"BothRemote", b, c}} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := a.Create(0)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(res.Writer.ChannelID, ".YQ") { // base64url("a")
				t.Fatalf("channel id %q does not name its node", res.Writer.ChannelID)
			}
			r := tc.rd.dial(t, res.Reader, wire.DirRead)
			w := tc.wr.dial(t, res.Writer, wire.DirWrite)
			done := make(chan struct{})
			go func() {
				defer close(done)
				sendAll(t, w, want)
				closeWith(t, w, websocket.CloseNormalClosure, "")
			}()
			got, ce := readAll(t, r)
			<-done
			checkFrames(t, got, want)
			if ce.Code != wire.CloseNormal {
				t.Fatalf("reader ended with %d %q, want 1000", ce.Code, ce.Text)
			}
			a.waitLen(t, 0)
		})
	}
}

// TestClusterBridgeRefusals: the key is checked by the home node; a
// remote open is refused as a local one (404 wrong key, 409 taken end, 404
// for a channel of a node nobody runs).
func TestClusterBridgeRefusals(t *testing.T) {
	hubs := newClusterHubs(t, Config{}, 5*time.Second, "a", "b")
	a, b := hubs[0], hubs[1]
	res, err := a.Create(0)
	if err != nil {
		t.Fatal(err)
	}
	bad := res.Writer
	bad.AccessKey = "not-the-key"
	if st, body := dialStatus(t, b.url(bad, wire.DirWrite)); st != http.StatusNotFound || !strings.Contains(body, "Channel not found") {
		t.Fatalf("wrong key through node b: %d %q, want 404 Channel not found", st, body)
	}
	b.dial(t, res.Writer, wire.DirWrite)
	if st, _ := dialStatus(t, b.url(res.Writer, wire.DirWrite)); st != http.StatusConflict {
		t.Fatalf("second writer through node b: %d, want 409", st)
	}
	if st, _ := dialStatus(t, a.url(res.Writer, wire.DirWrite)); st != http.StatusConflict {
		t.Fatalf("second writer on node a: %d, want 409", st)
	}
	ghost := res.Reader
	ghost.ChannelID = strings.TrimSuffix(ghost.ChannelID, ".YQ") + ".eg" // node "z": nobody
	if st, _ := dialStatus(t, b.url(ghost, wire.DirRead)); st != http.StatusNotFound {
		t.Fatalf("channel of an absent node: %d, want 404", st)
	}
}

// TestClusterBridgeEnds: what each end sees when the other fails across
// nodes: the writer's TCP connection drops (reader 1011 after the frames
// already sent), the reader leaves (writer 1011 "reader closed"), the
// writer's node goes silent (reader 1011), the membership declares the
// reader's node gone (writer 1011).
func TestClusterBridgeEnds(t *testing.T) {
	const timeout = 400 * time.Millisecond
	hubs := newClusterHubs(t, Config{}, timeout, "a", "b")
	a, b := hubs[0], hubs[1]

	t.Run("WriterDrops", func(t *testing.T) {
		res, _ := a.Create(0)
		r := a.dial(t, res.Reader, wire.DirRead)
		w := b.dial(t, res.Writer, wire.DirWrite)
		sendAll(t, w, []msg{{websocket.BinaryMessage, []byte("before")}})
		w.NetConn().Close()
		got, ce := readAll(t, r)
		checkFrames(t, got, []msg{{websocket.BinaryMessage, []byte("before")}})
		if ce.Code != wire.CloseInternal || !strings.Contains(ce.Text, "writer connection lost") {
			t.Fatalf("reader: %d %q, want 1011 writer connection lost", ce.Code, ce.Text)
		}
	})
	t.Run("ReaderLeaves", func(t *testing.T) {
		res, _ := a.Create(0)
		w := a.dial(t, res.Writer, wire.DirWrite)
		r := b.dial(t, res.Reader, wire.DirRead)
		closeWith(t, r, websocket.CloseNormalClosure, "")
		expectClose(t, w, wire.CloseInternal, "reader closed")
	})
	t.Run("ReaderNodeLeft", func(t *testing.T) {
		res, _ := a.Create(0)
		w := a.dial(t, res.Writer, wire.DirWrite)
		b.dial(t, res.Reader, wire.DirRead)
		a.waitActive(t, res.Reader.ChannelID, dirRead)
		// A bridge that just heard from node b stays up (the membership's
		// verdict may be a stalled JetStream write)...
		if n := a.NodeLeft("b"); n != 0 {
			t.Fatalf("NodeLeft broke %d bridges that heard from the node just now, want 0", n)
		}
		// ...one that has not heard from it for two keepalive periods breaks
		// (node b's side of the bridge stops talking: it leaves b's table).
		b.cluster.mu.Lock()
		clear(b.cluster.bridges)
		b.cluster.mu.Unlock()
		a.cluster.mu.Lock()
		for _, br := range a.cluster.bridges {
			br.heard.Store(time.Now().Add(-3 * a.cluster.tick).UnixNano())
		}
		a.cluster.mu.Unlock()
		if n := a.NodeLeft("b"); n != 1 {
			t.Fatalf("NodeLeft broke %d bridges, want 1", n)
		}
		expectClose(t, w, wire.CloseInternal, "cluster node b left")
	})
	t.Run("WriterNodeSilent", func(t *testing.T) {
		res, _ := a.Create(0)
		r := a.dial(t, res.Reader, wire.DirRead)
		w := b.dial(t, res.Writer, wire.DirWrite)
		sendAll(t, w, []msg{{websocket.TextMessage, []byte("hello")}})
		_ = r.SetReadDeadline(time.Now().Add(testWait))
		if k, data, err := r.ReadMessage(); err != nil || k != websocket.TextMessage || string(data) != "hello" {
			t.Fatalf("first message: %d %q %v", k, data, err)
		}
		// Node b's NATS connection dies: node a hears nothing more.
		b.nc.Close()
		begin := time.Now()
		got, ce := readAll(t, r)
		checkFrames(t, got, nil)
		if ce.Code != wire.CloseInternal || !strings.Contains(ce.Text, "silent") {
			t.Fatalf("reader: %d %q, want 1011 (link silent)", ce.Code, ce.Text)
		}
		if d := time.Since(begin); d > 10*timeout {
			t.Fatalf("the reader learned of the silent node after %v (timeout %v)", d, timeout)
		}
	})
}

// TestClusterBridgeBackpressure: a reader on node b that does not read; the
// writer on node a stalls, and what both hubs hold stays within their
// buffers plus one bridge window; then every byte arrives in order.
func TestClusterBridgeBackpressure(t *testing.T) {
	cfg := Config{MaxBufferBytes: 1 << 20}
	hubs := newClusterHubs(t, cfg, 5*time.Second, "a", "b")
	a, b := hubs[0], hubs[1]
	res, _ := a.Create(8)
	r := b.dial(t, res.Reader, wire.DirRead)
	w := a.dial(t, res.Writer, wire.DirWrite)
	const frame = 32 << 10
	const total = 32 << 20
	var written atomic.Int64
	wrote := make(chan error, 1)
	go func() {
		buf := make([]byte, frame)
		for seq := 0; seq*frame < total; seq++ {
			binary.LittleEndian.PutUint64(buf, uint64(seq))
			if err := w.WriteMessage(websocket.BinaryMessage, buf); err != nil {
				wrote <- err
				return
			}
			written.Add(frame)
		}
		wrote <- w.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(testWait))
	}()
	// Stalled: no progress for 200 ms.
	deadline := time.Now().Add(testWait)
	last, since := int64(-1), time.Now()
	for time.Since(since) < 200*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatal("the writer never stalled")
		}
		select {
		case err := <-wrote:
			t.Fatalf("the writer finished (%v) with nobody reading", err)
		case <-time.After(10 * time.Millisecond):
		}
		if n := written.Load(); n != last {
			last, since = n, time.Now()
		}
	}
	held := a.BufferedBytes() + b.BufferedBytes()
	// Each hub: the channel's byte bound (plus one frame); the bridge
	// window between them; the rest is in the sockets' TCP buffers.
	if limit := int64(2*(cfg.MaxBufferBytes+bufCap) + bridgeWindow); held > limit {
		t.Fatalf("the hubs hold %d bytes for a stalled reader, bound %d", held, limit)
	}
	t.Logf("stalled after %d KiB written; hubs hold %d KiB", last>>10, held>>10)
	h := sha256.New()
	var got int64
	for seq := 0; ; seq++ {
		_ = r.SetReadDeadline(time.Now().Add(testWait))
		_, data, err := r.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != wire.CloseNormal {
				t.Fatalf("reader after %d bytes: %v", got, err)
			}
			break
		}
		if len(data) != frame || binary.LittleEndian.Uint64(data) != uint64(seq) {
			t.Fatalf("frame %d: %d bytes, sequence %d", seq, len(data), binary.LittleEndian.Uint64(data))
		}
		h.Write(data)
		got += int64(len(data))
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if got != total {
		t.Fatalf("read %d bytes, want %d", got, total)
	}
}

// TestClusterBridgeLostMessage: a data message that skips a sequence
// number (what a route that broke and came back would leave) breaks the
// stream (1011) instead of delivering a stream with a hole.
func TestClusterBridgeLostMessage(t *testing.T) {
	hubs := newClusterHubs(t, Config{}, 5*time.Second, "a", "b")
	a, b := hubs[0], hubs[1]
	res, _ := a.Create(0)
	r := a.dial(t, res.Reader, wire.DirRead)
	w := b.dial(t, res.Writer, wire.DirWrite)
	sendAll(t, w, []msg{{websocket.BinaryMessage, []byte("one")}})
	_ = r.SetReadDeadline(time.Now().Add(testWait))
	if _, data, err := r.ReadMessage(); err != nil || string(data) != "one" {
		t.Fatalf("first frame: %q %v", data, err)
	}
	a.cluster.mu.Lock()
	var subj string
	for _, br := range a.cluster.bridges {
		subj = br.subject
	}
	a.cluster.mu.Unlock()
	forged := binary.BigEndian.AppendUint64([]byte{kindData, 0}, 3) // seq 2 never came
	forged = binary.BigEndian.AppendUint32(append(forged, flagFin), 5)
	if err := b.nc.Publish(subj, append(forged, "three"...)); err != nil {
		t.Fatal(err)
	}
	got, ce := readAll(t, r)
	checkFrames(t, got, nil)
	if ce.Code != wire.CloseInternal || !strings.Contains(ce.Text, "lost messages") {
		t.Fatalf("reader: %d %q, want 1011 lost messages", ce.Code, ce.Text)
	}
}

// TestClusterBridgeHomeEnds: the home node ends the channel while one end
// is on another node: the channel expires (the reader never came: the
// remote writer gets 1011 with that reason), or the home shuts down (the
// remote reader gets 1011 "node a shutting down").
func TestClusterBridgeHomeEnds(t *testing.T) {
	hubs := newClusterHubs(t, Config{TTL: 300 * time.Millisecond}, 5*time.Second, "a", "b")
	a, b := hubs[0], hubs[1]
	res, _ := a.Create(0)
	w := b.dial(t, res.Writer, wire.DirWrite)
	expectClose(t, w, wire.CloseInternal, "channel expired: the reader never connected")

	res, _ = a.Create(0)
	aw := a.dial(t, res.Writer, wire.DirWrite)
	r := b.dial(t, res.Reader, wire.DirRead)
	a.waitActive(t, res.Reader.ChannelID, dirRead)
	go func() { _, _, _ = aw.ReadMessage() }() // answers the shutdown's close frame
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		shut <- a.Shutdown(ctx)
	}()
	expectClose(t, r, wire.CloseInternal, "node a shutting down")
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}
