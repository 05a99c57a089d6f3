package channels

import (
	"errors"
	"testing"

	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/wire"
)

// TestCleanClose: a writer that closes with normal, going away, no status
// or an application code (3000-4999) finished its stream; the RFC 6455
// error codes mean it failed.
func TestCleanClose(t *testing.T) {
	for code, want := range map[int]bool{
		websocket.CloseNormalClosure: true, websocket.CloseGoingAway: true, websocket.CloseNoStatusReceived: true,
		3000: true, 4000: true, 4999: true,
		websocket.CloseProtocolError: false, websocket.CloseAbnormalClosure: false, websocket.CloseInternalServerErr: false,
		websocket.CloseMessageTooBig: false, 2999: false, 5000: false,
	} {
		if got := cleanClose(code); got != want {
			t.Errorf("cleanClose(%d) = %v, want %v", code, got, want)
		}
	}
}

// TestWriterKillCode: the close frame a writer gets says why its pipe
// takes no more frames.
func TestWriterKillCode(t *testing.T) {
	for _, tc := range []struct {
		cause  error
		code   int
		reason string
	}{
		{errShutdown, wire.CloseGoingAway, "engine shutting down"},
		{ErrReaderGone, wire.CloseInternal, "reader closed"},
		{&AbortError{Reason: "upstream request cancelled"}, wire.CloseInternal, "upstream request cancelled"},
		{errors.New("disk on fire"), wire.CloseInternal, "disk on fire"},
		{nil, wire.CloseInternal, "channel closed"},
	} {
		code, reason := writerKillCode(tc.cause)
		if code != tc.code || reason != tc.reason {
			t.Errorf("writerKillCode(%v) = %d %q, want %d %q", tc.cause, code, reason, tc.code, tc.reason)
		}
	}
}
