package channels

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/wire"
)

// Tests for the mutation survivors of hub.go (docs/testing.md, "Mutation
// testing"): each fails with the mutant named applied.

// A zero or negative setting takes its default; a positive one is kept
// (hub.go:156–178, each "<= 0" → "< 0" kept a zero).
func TestNewHubDefaults(t *testing.T) {
	want := Config{
		DefaultBuffer: defaultBuffer, MaxBuffer: defaultMaxBuffer, MaxBufferBytes: defaultMaxBufferBytes,
		MaxTotalBufferBytes: defaultMaxTotalBufferBytes, MaxFrameSize: defaultMaxFrameSize,
		MaxChannels: defaultMaxChannels, MaxPerOwner: defaultMaxPerOwner, TTL: defaultTTL,
	}
	for _, in := range []Config{{}, {DefaultBuffer: -1, MaxBuffer: -1, MaxBufferBytes: -1, MaxTotalBufferBytes: -1, MaxFrameSize: -1,
		MaxChannels: -1, MaxPerOwner: -1, TTL: -1}} {
		if got := NewHub(in, nil).cfg; got != want {
			t.Errorf("NewHub(%+v).cfg = %+v, want %+v", in, got, want)
		}
	}
	one := Config{DefaultBuffer: 1, MaxBuffer: 1, MaxBufferBytes: 1, MaxTotalBufferBytes: 1, MaxFrameSize: 1,
		MaxChannels: 1, MaxPerOwner: 1, TTL: time.Nanosecond}
	if got := NewHub(one, nil).cfg; got != one {
		t.Errorf("NewHub(%+v).cfg = %+v", one, got)
	}
}

// An owner whose last channel left the hub leaves no entry behind: the
// owner map is keyed by connection ids, so a leftover set per departed
// connection would grow for ever (hub.go:397, len(set) == 0 negated).
func TestOwnerEntryRemovedWithLastChannel(t *testing.T) {
	fire := make(chan func(), 2)
	th := newTestHub(t, Config{}, func(h *Hub) {
		h.afterFunc = func(_ time.Duration, f func()) func() bool { fire <- f; return func() bool { return true } }
	})
	for range 2 {
		if _, err := th.CreateFor("conn-1", 0); err != nil {
			t.Fatal(err)
		}
	}
	first, second := <-fire, <-fire
	first()
	th.mu.Lock()
	_, kept := th.owned["conn-1"]
	th.mu.Unlock()
	if !kept || th.Owned("conn-1") != 1 {
		t.Fatalf("after one of two channels expired: owner entry %v, %d owned", kept, th.Owned("conn-1"))
	}
	second()
	th.mu.Lock()
	n := len(th.owned)
	th.mu.Unlock()
	if n != 0 || th.Len() != 0 {
		t.Fatalf("after the owner's last channel expired: %d owner entries, %d channels", n, th.Len())
	}
}

// The TTL timer of a channel stops as soon as both ends are connected, not
// when the stream ends: a long stream holds no timer (hub.go:496,
// >= endActive → > endActive, left it running until the end).
func TestTTLTimerStopsWhenBothEndsConnect(t *testing.T) {
	stopped := make(chan struct{})
	th := newTestHub(t, Config{}, func(h *Hub) {
		h.afterFunc = func(time.Duration, func()) func() bool {
			return func() bool { close(stopped); return true }
		}
	})
	ref, lw, err := th.CreateWithLocalWriter(0)
	if err != nil {
		t.Fatal(err)
	}
	r := th.dial(t, ref, "read")
	select {
	case <-stopped:
	case <-time.After(testWait):
		t.Fatal("the TTL timer still runs with both ends connected")
	}
	lw.Close()
	if _, ce := readAll(t, r); ce == nil || ce.Code != 1000 {
		t.Fatalf("close %v", ce)
	}
}

// ReleaseOwner of a departed connection with unconnected channels: their
// TTL timers stop, one log line says how many were released, and a hub
// with no test seam set does not trip over it; with none to release it
// logs nothing (hub.go:367, stopTimer != nil negated: the timer ran on to
// the TTL; :378, len(gone) > 0 → >= 0 or negated: a line for nothing, or
// none; :380, onChanged != nil negated: a nil call).
func TestReleaseOwnerStopsTimersAndLogs(t *testing.T) {
	var logs mutLogBuffer
	h := NewHub(Config{}, slog.New(slog.NewTextHandler(&logs, nil)))
	defer h.Shutdown(context.Background())
	stops := make(chan struct{}, 4)
	h.afterFunc = func(time.Duration, func()) func() bool {
		return func() bool { stops <- struct{}{}; return true }
	}
	for range 2 {
		if _, err := h.CreateFor("conn-1", 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := h.ReleaseOwner("conn-2"); n != 0 {
		t.Fatalf("released %d of an owner with none", n)
	}
	if s := logs.String(); s != "" {
		t.Fatalf("logged for an owner with nothing to release: %s", s)
	}
	if n := h.ReleaseOwner("conn-1"); n != 2 {
		t.Fatalf("released %d, want 2", n)
	}
	if len(stops) != 2 {
		t.Fatalf("%d TTL timers stopped, want 2", len(stops))
	}
	if s := logs.String(); strings.Count(s, "departed creator released") != 1 || !strings.Contains(s, "channels=2") {
		t.Fatalf("log: %s", s)
	}
}

type mutLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *mutLogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *mutLogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The TTL passes while one end is mid-upgrade and the other connected (a
// local end: connected from the start); the upgrade then fails: the
// channel expires at that moment, and the connected end learns that its
// peer never came (hub.go:412, w == endClaimed negated: with the writer
// mid-upgrade and the reader connected nothing was due, so the reader
// waited for ever).
func TestTTLPassedDuringFailedUpgrade(t *testing.T) {
	for _, upgrading := range []string{wire.DirWrite, wire.DirRead} {
		t.Run(upgrading+" upgrading", func(t *testing.T) {
			fire := make(chan func(), 1)
			th := newTestHub(t, Config{}, func(h *Hub) {
				h.afterFunc = func(_ time.Duration, f func()) func() bool { fire <- f; return func() bool { return true } }
			})
			var ref wire.ChannelRef
			var lr *LocalReader
			var lw *LocalWriter
			var err error
			end, never := dirWrite, "writer"
			if upgrading == wire.DirWrite {
				ref, lr, err = th.CreateWithLocalReader(0)
			} else {
				end, never = dirRead, "reader"
				ref, lw, err = th.CreateWithLocalWriter(0)
			}
			if err != nil {
				t.Fatal(err)
			}
			expire := <-fire
			// What ServeHTTP does around an upgrade, with the TTL passing
			// in between.
			ch, status, msg := th.claim(ref.ChannelID, ref.AccessKey, end)
			if ch == nil {
				t.Fatalf("claim: %d %s", status, msg)
			}
			expire()
			if th.Len() != 1 {
				t.Fatal("expired while an end was mid-upgrade")
			}
			th.unclaim(ch, end) // the upgrade failed
			ctx, cancel := context.WithTimeout(context.Background(), testWait)
			defer cancel()
			if lr != nil {
				_, err = lr.Next(ctx)
			} else {
				err = lw.WriteFrame(ctx, false, []byte("x"))
			}
			var ae *AbortError
			if !errors.As(err, &ae) || ae.Reason != "channel expired: the "+never+" never connected" {
				t.Fatalf("the connected end got %v", err)
			}
			if th.Len() != 0 {
				t.Fatal("expired channel still registered")
			}
		})
	}
}

// Retire of a channel whose remote end never connected stops its TTL timer
// and needs no test seam (hub.go:442, stopTimer != nil negated: the timer
// ran on; :448, onChanged != nil negated: a nil call).
func TestRetireStopsTimer(t *testing.T) {
	h := NewHub(Config{}, nil)
	defer h.Shutdown(context.Background())
	stops := make(chan struct{}, 2)
	h.afterFunc = func(time.Duration, func()) func() bool {
		return func() bool { stops <- struct{}{}; return true }
	}
	_, lw, err := h.CreateWithLocalWriter(0)
	if err != nil {
		t.Fatal(err)
	}
	lw.Retire()
	if len(stops) != 1 || h.Len() != 0 {
		t.Fatalf("after Retire: %d timers stopped, %d channels", len(stops), h.Len())
	}
}

// A finished socket end leaves the hub's socket set, which Shutdown walks
// (hub.go:511, ws != nil negated: every socket stayed in it).
func TestFinishedSocketsLeaveTheHub(t *testing.T) {
	th := newTestHub(t, Config{})
	res, err := th.Create(0)
	if err != nil {
		t.Fatal(err)
	}
	r := th.dial(t, res.Reader, wire.DirRead)
	w := th.dial(t, res.Writer, wire.DirWrite)
	if err := w.WriteMessage(2, []byte("x")); err != nil {
		t.Fatal(err)
	}
	closeWith(t, w, 1000, "")
	if got, ce := readAll(t, r); len(got) != 1 || ce.Code != wire.CloseNormal {
		t.Fatalf("stream: %v %v", got, ce)
	}
	th.waitLen(t, 0)
	th.mu.Lock()
	n := len(th.socks)
	th.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d sockets still registered after both ends finished", n)
	}
}
