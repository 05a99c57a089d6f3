package sluice_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/sluicehq/sluice"
)

// Tests for survivors of the mutation run over client.go (docs/testing.md,
// "Mutation testing"). Each names the mutant it kills; each was applied by
// hand and the test failed on it.

// logRecorder keeps every log record, debug included.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}

// records returns the attributes of each record with this level and
// message.
func (h *logRecorder) records(level slog.Level, msg string) []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]string
	for _, r := range h.recs {
		if r.Level != level || r.Message != msg {
			continue
		}
		attrs := map[string]string{}
		r.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.String()
			return true
		})
		out = append(out, attrs)
	}
	return out
}

// A failed trigger registration is logged as a warning with the engine's
// error; a successful one is not. Kills client.go:294 CONDITIONALS_NEGATION
// (the success frame's nil error was formatted: a panic).
func TestTriggerRegistrationResultLogged(t *testing.T) {
	fe := newFakeEngine(t)
	logs := &logRecorder{}
	_, fc := connect(t, fe, sluice.WithLogger(slog.New(logs)))
	fc.sendRaw(`{"type":"triggerregistrationresult","id":"ok-1","trigger_type":"tick","function_id":"f"}`)
	fc.sendRaw(`{"type":"triggerregistrationresult","id":"bad-1","trigger_type":"tick","function_id":"f","error":{"code":"invalid_config","message":"no such field"}}`)
	fc.sync(t) // both frames were handled
	got := logs.records(slog.LevelWarn, "sluice: trigger registration failed")
	if len(got) != 1 || got[0]["trigger_id"] != "bad-1" || got[0]["err"] != "invalid_config: no such field" {
		t.Fatalf("warnings for the trigger registration results: %v", got)
	}
}
