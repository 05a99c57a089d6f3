package httptrigger

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/channels"
	"github.com/sluicehq/sluice/internal/registry"
)

// TestAccessLogLevel: a request that ended normally is logged at Debug
// unless AccessLog is on (then Info), so that an Info-level logger writes
// no line per request with the default config.
func TestAccessLogLevel(t *testing.T) {
	for _, on := range []bool{false, true} {
		var logs bytes.Buffer
		h := slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})
		hub := channels.NewHub(channels.Config{}, slog.New(slog.DiscardHandler))
		srv := New(Config{Logger: slog.New(h), AccessLog: on}, syncEcho{}, hubChannels{hub})
		cfg, _ := json.Marshal(map[string]any{"api_path": "echo/:id", "http_method": "POST"})
		if err := srv.RegisterTrigger(&registry.Trigger{ID: "t", Type: "http", FunctionID: "fn", Config: cfg}); err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest("POST", "/echo/7", strings.NewReader(`{"n":1}`))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		srv.Close()
		if w.Code != http.StatusOK {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		want := "level=DEBUG"
		if on {
			want = "level=INFO"
		}
		line := logs.String()
		if !strings.Contains(line, `msg="http request"`) || !strings.Contains(line, want) || !strings.Contains(line, "status=200") {
			t.Fatalf("access_log=%v: log %q, want an http request line at %s", on, line, want)
		}
	}
}
