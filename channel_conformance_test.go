package sluice

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testtls"
	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/internal/ws/wstest"
)

// TestConformanceChannelReader runs the RFC 6455 conformance suite against
// the SDK's ChannelReader as a client (dialed as a client's channel ends
// dial, with the client's TLS settings for wss://), consumed with Read and
// with WriteTo, over ws:// and wss://, the 101 and the frames apart and in
// one write. A read end does not write data, so it reports what it
// received (wstest.RunClientReceived): its text messages (OnMessage) and
// its bytes, a run of binary messages being one stream of bytes. The read
// limit is lowered to the suite's after the dial (the SDK sets
// channelMaxMessage). Beyond the suite, the stream must end with io.EOF
// exactly when the server closed with 1000 or no status, and with an
// ErrStreamBroken error otherwise. The one case that differs from a
// message-at-a-time client: over the limit in a later fragment ("fragments
// over the limit"), Read has already delivered the first fragments' bytes
// before the error; they are not counted as a message received.
func TestConformanceChannelReader(t *testing.T) {
	files, err := testtls.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, scheme := range []string{"ws", "wss"} {
		for _, together := range []bool{false, true} {
			for _, writeTo := range []bool{false, true} {
				name := scheme + "/apart"
				if together {
					name = scheme + "/together"
				}
				if writeTo {
					name += "/WriteTo"
				} else {
					name += "/Read"
				}
				t.Run(name, func(t *testing.T) {
					ln, err := net.Listen("tcp", "127.0.0.1:0")
					if err != nil {
						t.Fatal(err)
					}
					defer ln.Close()
					var opts *dialOptions
					if scheme == "wss" {
						ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
						opts = &dialOptions{tls: files.ClientConfig()}
					}
					engineURL := scheme + "://" + ln.Addr().String()
					wstest.RunClientReceived(t, ln, together, nil, func(t *testing.T, tc wstest.Case) []wstest.Msg {
						r := newChannelReader(engineURL, opts, ChannelRef{ChannelID: "c", AccessKey: "k"})
						return readChannelConformance(t, r, tc, writeTo)
					})
				})
			}
		}
	}
}

// readChannelConformance reads r to its end and returns what it received:
// each text message, and each run of bytes between them as one binary
// message.
func readChannelConformance(t *testing.T, r *ChannelReader, tc wstest.Case, writeTo bool) []wstest.Msg {
	var got []wstest.Msg
	var bin []byte
	inBin := false
	flush := func() {
		if inBin {
			got = append(got, wstest.Msg{Op: websocket.BinaryMessage, Data: string(bin)})
			bin, inBin = nil, false
		}
	}
	r.OnMessage(func(s string) {
		flush()
		got = append(got, wstest.Msg{Op: websocket.TextMessage, Data: s})
	})
	if _, err := r.Read(nil); err != nil { // connects
		t.Fatalf("connect: %v", err)
	}
	r.ws.SetReadLimit(wstest.Limit)
	var end error
	if writeTo {
		_, end = r.WriteTo(writerFunc(func(p []byte) (int, error) {
			bin, inBin = append(bin, p...), true
			return len(p), nil
		}))
		if end == nil {
			end = io.EOF
		}
	} else {
		buf := make([]byte, 1000)
		for end == nil {
			var n int
			n, end = r.Read(buf)
			if n > 0 {
				bin, inBin = append(bin, buf[:n]...), true
			}
		}
	}
	clean := tc.Close == websocket.CloseNormalClosure || tc.Close == websocket.CloseNoStatusReceived
	if !clean && inBin {
		// The binary message the stream broke in: Read streams, so its
		// first bytes are out before the error; they are not a message
		// received, but must stay within the limit.
		if len(bin) > wstest.Limit {
			t.Errorf("%d bytes of a broken message delivered, over the %d limit", len(bin), wstest.Limit)
		}
		inBin = false
	}
	flush()
	switch {
	case clean && end != io.EOF:
		t.Errorf("stream ended with %v, want io.EOF", end)
	case !clean && !errors.Is(end, ErrStreamBroken):
		t.Errorf("stream ended with %v, want an ErrStreamBroken error", end)
	}
	return got
}

// TestConformanceChannelWriterSocket runs the suite against the read side
// of the SDK's ChannelWriter socket (ws.Conn reading and answering pings,
// the writer's close handler echoing the close with TryWriteControl), over
// ws:// and wss://. Left out: the cases with data messages to echo (a
// write end reads and discards them; the engine sends none) and those
// whose failure is invalid UTF-8 in a text message (a discarded message is
// not UTF-8 checked, as with ws.Conn's NextReader), and the read-limit
// cases (the limit is channelMaxMessage, set before the read loop starts).
func TestConformanceChannelWriterSocket(t *testing.T) {
	files, err := testtls.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	skip := func(tc wstest.Case) bool {
		if len(tc.Echo) > 0 || tc.LimitCase {
			return true
		}
		for _, f := range tc.Frames {
			if f.Op < websocket.CloseMessage && tc.Close == websocket.CloseInvalidFramePayloadData {
				return true
			}
		}
		return false
	}
	for _, scheme := range []string{"ws", "wss"} {
		t.Run(scheme, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			var opts *dialOptions
			if scheme == "wss" {
				ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
				opts = &dialOptions{tls: files.ClientConfig()}
			}
			engineURL := scheme + "://" + ln.Addr().String()
			wstest.RunClientReceived(t, ln, false, skip, func(t *testing.T, tc wstest.Case) []wstest.Msg {
				w := newChannelWriter(engineURL, opts, ChannelRef{ChannelID: "c", AccessKey: "k"})
				c, err := w.connect()
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				select {
				case <-c.readDone: // the read loop has hung up
				case <-time.After(10 * time.Second):
					t.Fatal("the writer's read loop did not end")
				}
				return nil
			})
		})
	}
}
