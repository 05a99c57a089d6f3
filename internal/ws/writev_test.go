package ws

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/ws/wsframe"
)

// TestWriteMessages: a server's batch reaches a client whole and in order
// over ws:// (one writev of every frame) and wss:// (frame by frame): big
// messages fragmented at WriteBufferSize, an empty one, text and binary.
// The headers and iovecs are kept: a steady batch allocates nothing.
func TestWriteMessages(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 10_000) // 160 kB: three fragments of 64 KiB
	msgs := []Message{
		{TextMessage, []byte("first")},
		{BinaryMessage, big},
		{BinaryMessage, nil},
		{TextMessage, []byte(strings.Repeat("é", 40_000))},
		{BinaryMessage, []byte("last")},
	}
	for _, scheme := range schemes() {
		t.Run(scheme, func(t *testing.T) {
			done := make(chan error, 1)
			var allocs float64
			up := &Upgrader{}
			srv := startServer(scheme, func(w http.ResponseWriter, r *http.Request) {
				c, err := up.Upgrade(w, r, nil)
				if err != nil {
					done <- err
					return
				}
				defer c.Close()
				if err := c.WriteMessages(msgs); err != nil {
					done <- err
					return
				}
				if _, tcp := c.NetConn().(*net.TCPConn); tcp {
					small := []Message{{BinaryMessage, []byte("a")}, {TextMessage, []byte("b")}}
					allocs = testing.AllocsPerRun(20, func() { _ = c.WriteMessages(small) })
				}
				done <- nil
				_, _, _ = c.NextReader() // until the client hangs up
			})
			defer srv.Close()
			d := &Dialer{HandshakeTimeout: 5 * time.Second}
			_, d.TLSClientConfig = conformanceTLS()
			c, _, err := d.Dial(scheme+"://"+srv.Listener.Addr().String()+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			for i, want := range msgs {
				op, b, err := c.ReadMessage()
				if err != nil || op != want.Op || !bytes.Equal(b, want.Data) {
					t.Fatalf("message %d: op %d, %d bytes, %v; want op %d, %d bytes", i, op, len(b), err, want.Op, len(want.Data))
				}
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if scheme == "ws" && allocs != 0 {
				t.Fatalf("a batch of two small messages allocated %v times", allocs)
			}
		})
	}
}

// TestWriteMessageFragmentsOnTheWire: a big message a server writes with
// writev goes out as frames of at most WriteBufferSize bytes: the first
// with the message's opcode, then continuations, the last one final.
func TestWriteMessageFragmentsOnTheWire(t *testing.T) {
	sc, peer := tcpPair(t)
	c := newConn(sc, true, sc, "", 0)
	defer c.Close()
	c.fragment = 5000
	if c.vectored() == nil {
		t.Fatal("a server on TCP does not write with writev")
	}
	data := bytes.Repeat([]byte("x"), 12_000)
	if err := c.WriteMessage(BinaryMessage, data); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	rd := wsframe.NewReader(peer, 4096)
	var got []string
	for total := 0; total < len(data); {
		h, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		p := make([]byte, h.Len)
		if err := rd.ReadPayload(p); err != nil || !bytes.Equal(p, data[:len(p)]) {
			t.Fatalf("payload of %+v: %v", h, err)
		}
		total += len(p)
		got = append(got, fmt.Sprintf("%v/%d/%d/%v", h.Fin, h.Op, h.Len, h.Masked))
	}
	want := []string{"false/2/5000/false", "false/0/5000/false", "true/0/2000/false"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("frames %v, want %v", got, want)
	}
}

// failAfter fails every Write after the first ok ones.
type failAfter struct {
	net.Conn
	ok, writes int
}

var errFailAfter = errors.New("test: write failed")

func (c *failAfter) Write(b []byte) (int, error) {
	if c.writes++; c.writes > c.ok {
		return 0, errFailAfter
	}
	return len(b), nil
}

// TestWriteMessagesStopsAtError: off TCP the messages go frame by frame,
// and the first failed write ends the batch: nothing after it is written.
// On TCP the writev keeps no reference to the payloads afterwards (the
// channel hub releases their buffers next).
func TestWriteMessagesStopsAtError(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	fc := &failAfter{Conn: a, ok: 2}
	c := newConn(fc, true, a, "", 0)
	msgs := make([]Message, 5)
	for i := range msgs {
		msgs[i] = Message{BinaryMessage, []byte{byte(i)}}
	}
	if err := c.WriteMessages(msgs); !errors.Is(err, errFailAfter) {
		t.Fatalf("WriteMessages: %v, want the write error", err)
	}
	if fc.writes != 3 {
		t.Fatalf("%d writes, want 3 (two frames, then the failed one)", fc.writes)
	}
	if err := c.WriteMessages([]Message{{PingMessage, nil}}); err == nil {
		t.Fatal("WriteMessages took a control opcode")
	}

	sc, peer := tcpPair(t)
	go func() { _, _ = io.Copy(io.Discard, peer) }()
	tc := newConn(sc, true, sc, "", 0)
	defer tc.Close()
	if err := tc.WriteMessages(msgs); err != nil {
		t.Fatal(err)
	}
	if len(tc.vec) == 0 {
		t.Fatal("the batch was not written with writev")
	}
	for i, v := range tc.vec {
		if v != nil {
			t.Fatalf("iovec %d still refers to a payload after the write", i)
		}
	}
}

// tcpPair is a loopback TCP connection: the accepted end and the dialled
// one, both closed when the test ends.
func tcpPair(t *testing.T) (server, peer net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return server, peer
}
