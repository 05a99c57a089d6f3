package interop

import (
	"context"
	"strings"
	"testing"
	"time"
)

// refused409 is how the Node SDK (the ws package) words a handshake
// answered 409; a bare "409" could match a byte count or an id.
const refused409 = "Unexpected server response: 409"

// TestChannelEndTaken: the official Node SDK (0.22.1) opening a channel end
// that a Go end already holds is refused with HTTP 409 (the reference
// engine upgrades and closes at once instead, which the Node SDK takes for
// an empty stream), and the stream between the two Go ends is unharmed.
//
// How the Node SDK reports the refusal differs by end. A reader's stream
// fails, so the function fails with "Unexpected server response: 409". A
// writer's socket error escapes as an uncaught exception (the worker
// harness prints "UNCAUGHT Error: Unexpected server response: 409") and the
// write that triggered the connection never settles. So the test accepts
// the 409 in the call's error or in the worker's stderr.
func TestChannelEndTaken(t *testing.T) {
	f := flavourNamed("node-0.22.1")
	f.require(t)
	e := startEngine(t, "127.0.0.1:0")
	c := connectGo(t, e, "go-taken")

	for _, end := range []string{"write", "read"} {
		t.Run(end, func(t *testing.T) {
			prefix := f.Prefix + "taken" + end
			w := startWorker(t, f, e, f.script("stream"), prefix)
			ctx := ctxFor(t, 2*callTimeout)
			ch, err := c.CreateChannel(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var fn string
			var in map[string]any
			if end == "write" {
				if _, err := ch.Writer.Write([]byte("from go")); err != nil { // the Go writer takes the end
					t.Fatal(err)
				}
				fn, in = prefix+"::stream_write", map[string]any{"writer": ch.WriterRef, "size": 1024}
			} else {
				if _, err := ch.Reader.Read(nil); err != nil { // the Go reader takes the end
					t.Fatal(err)
				}
				fn, in = prefix+"::stream_read", map[string]any{"reader": ch.ReaderRef}
			}
			waitFunctions(ctx, t, c, fn)
			callCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			res := callAsync[streamReport](callCtx, c, fn, in)
			logged := make(chan string, 1)
			go func() {
				if s, err := w.stderr.wait(callCtx, func(s string) bool { return strings.Contains(s, refused409) }); err == nil {
					logged <- s
				}
			}()
			select {
			case r := <-res:
				if r.err == nil || !strings.Contains(r.err.Error(), refused409) {
					t.Fatalf("%s on a channel whose %s end Go holds: %+v, %v; want the engine's 409 refusal", fn, end, r.out, r.err)
				}
				t.Logf("%s failed: %v", fn, r.err)
			case s := <-logged:
				t.Logf("the Node SDK was refused: %s", strings.TrimSpace(s))
			case <-time.After(callTimeout):
				t.Fatalf("%s: neither an error nor a 409 in the worker's log", fn)
			}
			cancel()
			if end == "read" {
				if _, err := ch.Writer.Write([]byte("from go")); err != nil {
					t.Fatal(err)
				}
			}
			if err := ch.Writer.Close(); err != nil {
				t.Fatal(err)
			}
			if got, err := ch.Reader.ReadAll(); err != nil || string(got) != "from go" {
				t.Fatalf("the Go ends' stream after the refusal: %q, %v", got, err)
			}
		})
	}
}
