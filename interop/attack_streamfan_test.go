package interop

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// streamFanEngine starts an engine serving stream clients on a free port
// and returns it with that port's address.
func streamFanEngine(t *testing.T) (*engineProc, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("streams:\n  addr: 127.0.0.1:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := startEngine(t, "127.0.0.1:0", "--config", cfg, "--data-dir", filepath.Join(dir, "data"))
	line, err := e.stderr.wait(ctxFor(t, 30*time.Second), func(s string) bool { return strings.Contains(s, "stream clients served") })
	if err != nil {
		t.Fatal(err)
	}
	return e, regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)[1]
}

// streamFanJoin dials a stream client (with a receive buffer of rcvbuf
// bytes when positive), joins group g of stream "fan" and reads its sync.
func streamFanJoin(t *testing.T, addr string, rcvbuf int) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	if rcvbuf > 0 {
		nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			}); err != nil {
				return err
			}
			return serr
		}}
		d.NetDial = nd.Dial
	}
	ws, _, err := d.Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	if err := ws.WriteJSON(map[string]any{"type": "join", "data": map[string]any{"subscriptionId": "s", "streamName": "fan", "groupId": "g"}}); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, b, err := ws.ReadMessage(); err != nil || !strings.Contains(string(b), `"sync"`) {
		t.Fatalf("sync: %s %v", b, err)
	}
	return ws
}

// TestAttackStreamClientNeverReads: a stream client that joins a group and
// then never reads, while 80 items of 256 KiB are written to the group
// (20 MiB), is disconnected once more than streamClientMaxPending (1 MiB)
// waits for it beyond its socket buffers, instead of the engine holding
// every message for it; a client of the same group that reads gets every
// message, in order, and the engine keeps answering calls.
// On ec5ac0d (before the non-blocking stream writes): the engine queued up
// to 1,024 messages per client whatever their size; the stalled client,
// reading afterwards, got all 80 of 80 (20 MiB held for it), its socket
// still open.
func TestAttackStreamClientNeverReads(t *testing.T) {
	e, addr := streamFanEngine(t)
	c := connectGo(t, e, "streamfan-writer")
	ctx := ctxFor(t, 90*time.Second)
	slow := streamFanJoin(t, addr, 4096)
	fast := streamFanJoin(t, addr, 0)
	const n = 80
	big := strings.Repeat("x", 256<<10)
	got := make(chan error, 1)
	go func() {
		for i := 1; i <= n; i++ {
			_ = fast.SetReadDeadline(time.Now().Add(60 * time.Second))
			var m struct {
				ID    string `json:"id"`
				Event struct {
					Type string `json:"type"`
					Data struct {
						N int `json:"n"`
					} `json:"data"`
				} `json:"event"`
			}
			if err := fast.ReadJSON(&m); err != nil {
				got <- err
				return
			}
			if m.Event.Type != "create" && m.Event.Type != "update" || m.Event.Data.N != i {
				got <- &streamFanOrderError{i, m.Event.Type, m.Event.Data.N}
				return
			}
		}
		got <- nil
	}()
	for i := 1; i <= n; i++ {
		if _, err := c.Trigger(ctx, "stream::set", map[string]any{"stream_name": "fan", "group_id": "g", "item_id": "big", "data": map[string]any{"n": i, "pad": big}}); err != nil {
			t.Fatalf("stream::set %d: %v", i, err)
		}
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("the reading client: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the reading client did not get every message")
	}
	// The engine still serves calls.
	if v, err := c.Trigger(ctx, "stream::get", map[string]any{"stream_name": "fan", "group_id": "g", "item_id": "big"}); err != nil || !strings.Contains(string(v), `"n":80`) {
		t.Fatalf("stream::get after the burst: %.60s %v", v, err)
	}
	// The stalled client reads now: what its socket buffers held, then
	// the end of a connection the engine cut.
	read := 0
	_ = slow.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		_, _, err := slow.ReadMessage()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the stalled client's socket is still open after %d of %d messages (engine holds the rest)", read, n)
			}
			break
		}
		read++
	}
	if read >= n {
		t.Fatalf("the stalled client got all %d messages (%d MiB held for it); want it cut off", read, n*256>>10)
	}
	t.Logf("stalled client: %d of %d messages, then disconnected", read, n)
}

type streamFanOrderError struct {
	want    int
	typ     string
	gotSeqN int
}

func (e *streamFanOrderError) Error() string {
	return "message " + strconv.Itoa(e.want) + ": got " + e.typ + " n=" + strconv.Itoa(e.gotSeqN)
}
