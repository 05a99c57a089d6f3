package wsconn

import (
	"context"
	"encoding/binary"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
)

// encodeFrame is an enc for SendEncodedWithin appending nbFrame(i, size).
func encodeFrame(i, size int) func([]byte) ([]byte, error) {
	return func(dst []byte) ([]byte, error) { return append(dst, nbFrame(i, size)...), nil }
}

// nbClientPair is a non-blocking client Conn (masked frames) and the
// server end that reads them.
func nbClientPair(t *testing.T) (*Conn, *websocket.Conn) {
	t.Helper()
	ch := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		ch <- ws
	}))
	t.Cleanup(srv.Close)
	ws, _, err := Dialer(nil).Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := New(ws, Options{MaxQueuedBytes: 1 << 20})
	t.Cleanup(c.Abort)
	peer := <-ch
	t.Cleanup(func() { peer.Close() })
	return c, peer
}

// Frames encoded in place reach the peer intact, in order with frames sent
// otherwise, at every header size (7-bit, 16-bit and 64-bit lengths, the
// last over rawMax), from the server side and masked from the client side,
// written inline or corked by a batch.
func TestSendEncodedFrames(t *testing.T) {
	sizes := []int{5, 125, 126, 4000, 65535, 65536, rawMax + 1000}
	for _, client := range []bool{false, true} {
		var s *Conn
		var peer *websocket.Conn
		if client {
			s, peer = nbClientPair(t)
		} else {
			s, peer = nbPair(t, 1<<20)
		}
		ctx := context.Background()
		go func() {
			var b Batch
			for i, n := range sizes {
				var err error
				switch i % 3 {
				case 0:
					err = s.SendEncodedWithin(ctx, nil, Binary, encodeFrame(i, n), 1<<20)
				case 1:
					err = s.SendEncodedWithin(ctx, &b, Binary, encodeFrame(i, n), 1<<20)
				default:
					err = s.SendIn(ctx, &b, Binary, nbFrame(i, n), nil)
					b.Flush()
				}
				if err != nil {
					t.Error(err)
				}
			}
			b.Flush()
		}()
		for i, n := range sizes {
			checkNBFrame(t, peer, i, n)
		}
	}
}

// An encoding error is returned and nothing is sent; a frame over the
// budget while bytes are pending is refused with ErrCongested (as
// SendInWithin's); the blocking mode encodes and sends as SendIn does.
func TestSendEncodedErrorsAndBudget(t *testing.T) {
	s, peer := nbPair(t, 1<<20)
	bad := errors.New("no")
	if err := s.SendEncodedWithin(context.Background(), nil, Text, func(dst []byte) ([]byte, error) {
		return append(dst, "partial"...), bad
	}, 1<<20); err != bad {
		t.Fatalf("got %v, want the encoder's error", err)
	}
	s.cc.nb.queued.Store(100) // as if 100 bytes were pending
	if err := s.SendEncodedWithin(context.Background(), nil, Text, encodeFrame(0, 64), 150); !errors.Is(err, ErrCongested) {
		t.Fatalf("got %v, want ErrCongested", err)
	}
	s.cc.nb.queued.Store(0)
	if err := s.SendEncodedWithin(context.Background(), nil, Binary, encodeFrame(1, 64), 150); err != nil {
		t.Fatal(err)
	}
	checkNBFrame(t, peer, 1, 64) // neither the failed nor the refused frame came first

	b, c := upgradedPair(t)
	if err := b.SendEncodedWithin(context.Background(), nil, Binary, encodeFrame(2, 300), 0); err != nil {
		t.Fatal(err)
	}
	checkNBFrame(t, c, 2, 300)
}

// Encoding a small message in place allocates nothing per frame on an idle
// socket.
func TestSendEncodedAllocs(t *testing.T) {
	s, peer := nbPair(t, 1<<20)
	go func() {
		for {
			if _, _, err := peer.ReadMessage(); err != nil {
				return
			}
		}
	}()
	msg := []byte(`{"type":"invocationresult","invocation_id":"x","result":{"n":1}}`)
	enc := func(dst []byte) ([]byte, error) { return append(dst, msg...), nil }
	ctx := context.Background()
	_ = s.SendEncodedWithin(ctx, nil, Text, enc, 1<<20)
	allocs := testing.AllocsPerRun(200, func() {
		if err := s.SendEncodedWithin(ctx, nil, Text, enc, 1<<30); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per frame, want 0", allocs)
	}
}

// The encoders given for one Conn never run at once, in either mode, so
// they may share scratch space (the engine keeps one per worker socket):
// concurrent senders each get their own frame back intact.
func TestSendEncodedSerialisesEncoders(t *testing.T) {
	for _, nb := range []bool{false, true} {
		var s *Conn
		var peer *websocket.Conn
		if nb {
			s, peer = nbPair(t, 64<<20)
		} else {
			s, peer = upgradedPair(t)
		}
		var scratch []byte // shared by every encoder: -race reports overlap
		var inEnc atomic.Int32
		const senders, each = 4, 50
		done := make(chan struct{})
		for g := range senders {
			go func() {
				defer func() { done <- struct{}{} }()
				for i := range each {
					n := g*each + i
					err := s.SendEncodedWithin(context.Background(), nil, Binary, func(dst []byte) ([]byte, error) {
						if inEnc.Add(1) != 1 {
							t.Error("two encoders at once")
						}
						defer inEnc.Add(-1)
						scratch = append(scratch[:0], nbFrame(n, 64)...)
						runtime.Gosched() // let another sender reach its encoder if it can
						return append(dst, scratch...), nil
					}, 64<<20)
					if err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		seen := map[uint32]bool{}
		for range senders * each {
			_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, b, err := peer.ReadMessage()
			if err != nil || len(b) != 64 {
				t.Fatalf("non-blocking %v: %d bytes, %v", nb, len(b), err)
			}
			seen[binary.BigEndian.Uint32(b)] = true
		}
		for range senders {
			<-done
		}
		if len(seen) != senders*each {
			t.Fatalf("non-blocking %v: %d distinct frames, want %d", nb, len(seen), senders*each)
		}
	}
}
