package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice"
)

// TestAttackOTelStalledCollector: the collector accepts connections and
// never answers, while one client floods /otel with 10 MB of log payloads
// and another makes 400 calls, each of which makes an engine span. The
// calls must all succeed promptly, the flood must be read to its end, and
// what could not be queued must be dropped and counted, not held: at most
// otel.max_queue_spans spans and otel.max_queue_bytes of payloads wait.
// On 25c1da9 there was no export to attack; with otel.Exporter.End made
// blocking (its send without a default case) the 17th call hangs: "call
// 16 with the collector stalled: , TIMEOUT".
func TestAttackOTelStalledCollector(t *testing.T) {
	release := make(chan struct{})
	stuck := make(chan struct{}, 1) // an export is being held
	stalled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case stuck <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer stalled.Close()
	defer close(release) // before Close: the handlers return
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	must(t, os.WriteFile(cfg, []byte("otel:\n  max_queue_spans: 16\n  max_queue_bytes: 64KiB\n  timeout: 2m\n  flush_interval: 10ms\n"), 0o600))
	e := startEngine(t, "127.0.0.1:0", "--config", cfg, "--data-dir", "memory", "--otel-endpoint", stalled.URL)
	ctx := ctxFor(t, 90*time.Second)
	c := connectGo(t, e, "otel-attack-go")
	must(t, c.RegisterRaw("otelatk::echo", func(_ context.Context, inv *sluice.Invocation) (json.RawMessage, error) {
		return inv.Data, nil
	}))
	waitFunctions(ctx, t, c, "otelatk::echo")
	select { // the exporter holds the spans of the calls so far and sends nothing more
	case <-stuck:
	case <-ctx.Done():
		t.Fatal("the engine never exported to the collector")
	}

	flooded := make(chan error, 1)
	go func() {
		ws, _, err := websocket.DefaultDialer.DialContext(ctx, e.URL+"/otel", nil)
		if err != nil {
			flooded <- err
			return
		}
		defer ws.Close()
		frame := append([]byte(`LOGS{"resourceLogs":[{"pad":"`), bytes.Repeat([]byte("x"), 32<<10)...)
		frame = append(frame, `"}]}`...)
		for range 300 {
			if err := ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
				flooded <- err
				return
			}
		}
		// A ping answered: the engine read every frame before it.
		pong := make(chan struct{})
		ws.SetPongHandler(func(string) error { close(pong); return nil })
		go func() {
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
			}
		}()
		if err := ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(5*time.Second)); err != nil {
			flooded <- err
			return
		}
		select {
		case <-pong:
			flooded <- nil
		case <-ctx.Done():
			flooded <- ctx.Err()
		}
	}()

	start := time.Now()
	for i := range 400 {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		raw, err := c.Trigger(cctx, "otelatk::echo", i)
		cancel()
		if err != nil || string(raw) != otelItoa(i) {
			t.Fatalf("call %d with the collector stalled: %s, %v", i, raw, err)
		}
	}
	calls := time.Since(start)
	if err := <-flooded; err != nil {
		t.Fatalf("the /otel flood was not read to its end: %v", err)
	}
	raw, err := c.Trigger(ctx, "engine::health::check", nil)
	must(t, err)
	var h struct {
		Components map[string]struct {
			Status  string         `json:"status"`
			Details map[string]any `json:"details"`
		} `json:"components"`
	}
	must(t, json.Unmarshal(raw, &h))
	d := h.Components["otel"].Details
	// The exporter is stuck in one export: of the 400 calls' spans at
	// most the queue's 16 are held, the rest dropped.
	if sd, _ := d["spans_dropped"].(float64); sd < 400-16 {
		t.Errorf("spans dropped %v of 400 with a queue of 16 and a stalled collector: %v", sd, d)
	}
	if fd, _ := d["frames_dropped"].(float64); fd < 300-1 { // one 32 KiB payload fits in 64 KiB
		t.Errorf("frames dropped %v of 300 × 32 KiB with a 64 KiB budget: %v", fd, d)
	}
	if fw, _ := d["frames_forwarded"].(float64); fw != 0 {
		t.Errorf("%v frames forwarded to a collector that never answers", fw)
	}
	t.Logf("400 calls in %v with the collector stalled; otel %v", calls, d)
	if !strings.Contains(e.stderr.String(), "OTLP export on") || !strings.Contains(e.stderr.String(), "forwarded over OTLP") {
		t.Errorf("the engine did not log that export is on")
	}
}

func otelItoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
