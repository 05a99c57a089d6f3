package httptrigger

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/channels"
	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/registry"
)

// syncEcho answers like the benchmark suite's worker: the JSON body back,
// buffered, on the calling goroutine.
type syncEcho struct{}

func (syncEcho) Invoke(req *invocation.Request, done invocation.Completion) {
	var in struct {
		Body jsontext.Value `json:"body"`
	}
	_ = json.Unmarshal(req.Data, &in)
	done(invocation.Result{Value: append(append([]byte(`{"status_code":200,"headers":{"content-type":"application/json"},"body":`), in.Body...), '}')})
}

// BenchmarkBufferedExchange is one POST with a small JSON body through the
// trigger server and a real channel hub, answered from the result: the
// engine's own share of the suite's http-echo workloads (allocs/op).
func BenchmarkBufferedExchange(b *testing.B) {
	hub := channels.NewHub(channels.Config{}, slog.New(slog.DiscardHandler))
	srv := New(Config{Logger: slog.New(slog.DiscardHandler)}, syncEcho{}, hubChannels{hub})
	defer srv.Close()
	cfg, _ := json.Marshal(map[string]any{"api_path": "echo/:id", "http_method": "POST"})
	if err := srv.RegisterTrigger(&registry.Trigger{ID: "t", Type: "http", FunctionID: "fn", Config: cfg}); err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"user":"ada","op":"echo","n":42,"tags":["a","b"]}`)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/echo/7", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	if n := hub.Len(); n != 0 {
		b.Fatalf("%d channels left", n)
	}
}
