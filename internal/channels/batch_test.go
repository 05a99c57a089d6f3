//go:build unix

package channels

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/internal/ws/wsframe"
	"github.com/sluicehq/sluice/wire"
)

// batchFrames: more than two batches of mixed text and binary frames,
// empty ones included, several over the loopback MSS.
func batchFrames() []msg {
	var out []msg
	for i := range 2*maxBatchFrames + 5 {
		n := []int{0, 1, 700, wire.FrameSize, wire.FrameSize + 3, 90_000}[i%6]
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(i*31 + j)
		}
		kind := websocket.BinaryMessage
		if i%3 == 1 {
			kind, b = websocket.TextMessage, fmt.Appendf(b[:0], "text %d", i)
		}
		out = append(out, msg{kind, b})
	}
	return out
}

// TestWriteBatchTCP: one writev carries the frames in order, each with its
// own unmasked header and type, and the writer keeps no reference to the
// payloads afterwards (they are released next).
func TestWriteBatchTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := <-acc
	if server == nil {
		t.Fatal("accept failed")
	}
	defer server.Close()

	want := batchFrames()[:maxBatchFrames]
	frames := make([]Frame, len(want))
	for i, m := range want {
		frames[i] = Frame{Text: m.kind == websocket.TextMessage, Data: m.data}
	}
	fw := newFrameWriter(server)
	if fw.tcp == nil {
		t.Fatal("not a TCP connection")
	}
	errc := make(chan error, 1)
	go func() { errc <- fw.writeBatch(frames) }()

	_ = client.SetReadDeadline(time.Now().Add(testWait))
	r := wsframe.NewReader(client, 4096)
	for i, m := range want {
		h, err := r.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		wantOp := opBinary
		if m.kind == websocket.TextMessage {
			wantOp = opText
		}
		if !h.Fin || h.Masked || h.Op != wantOp || h.Len != uint64(len(m.data)) {
			t.Fatalf("frame %d: header %+v, want op %d len %d", i, h, wantOp, len(m.data))
		}
		p := make([]byte, h.Len, int(h.Len)+wsframe.MaxHeader)
		if err := r.ReadPayload(p); err != nil {
			t.Fatalf("frame %d payload: %v", i, err)
		}
		if !bytes.Equal(p, m.data) {
			t.Fatalf("frame %d: payload differs", i)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for i, v := range fw.bvec {
		if v != nil {
			t.Fatalf("iovec %d still refers to a payload", i)
		}
	}
}

// failAfterConn fails every Write after the first ok ones.
type failAfterConn struct {
	net.Conn
	ok     int
	writes int
}

var errTestWrite = errors.New("test: write failed")

func (c *failAfterConn) Write(b []byte) (int, error) {
	c.writes++
	if c.writes > c.ok {
		return 0, errTestWrite
	}
	return len(b), nil
}

// TestWriteBatchStopsAtError: off TCP the frames go one by one, and the
// first failed write ends the batch: nothing after it is written.
func TestWriteBatchStopsAtError(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &failAfterConn{Conn: a, ok: 2}
	fw := newFrameWriter(c)
	frames := make([]Frame, 5)
	for i := range frames {
		frames[i] = Frame{Data: []byte{byte(i)}}
	}
	if err := fw.writeBatch(frames); !errors.Is(err, errTestWrite) {
		t.Fatalf("writeBatch: %v, want the write error", err)
	}
	if c.writes != 3 {
		t.Fatalf("%d writes, want 3 (two frames, then the failed one)", c.writes)
	}
}

// TestBatchOrderAndTypes: frames queued before the reader connects leave in
// batches (the first Recv finds the rest queued); order, types and contents
// survive across batches, the stream ends 1000, and the memory the frames
// held is back.
func TestBatchOrderAndTypes(t *testing.T) {
	batches := make(chan int, 64)
	th := newTestHub(t, Config{}, func(h *Hub) { h.onReaderBatch = func(n int) { batches <- n } })
	res, _ := th.Create(0) // 64 frames: all of them fit
	want := batchFrames()
	w := th.dial(t, res.Writer, wire.DirWrite)
	sendAll(t, w, want)
	closeWith(t, w, websocket.CloseNormalClosure, "done")
	th.waitWriterDone(t, res.Writer.ChannelID)
	if got := th.channel(res.Writer.ChannelID).pipe.Len(); got != len(want) {
		t.Fatalf("%d frames queued, want %d", got, len(want))
	}

	r := th.dial(t, res.Reader, wire.DirRead)
	got, ce := readAll(t, r)
	checkFrames(t, got, want)
	if ce.Code != wire.CloseNormal {
		t.Fatalf("reader ended with %d %q, want 1000", ce.Code, ce.Text)
	}
	r.Close()
	th.waitLen(t, 0)
	if n := th.BufferedBytes(); n != 0 {
		t.Fatalf("%d bytes still charged after the stream", n)
	}
	close(batches)
	var sizes []int
	total := 0
	for n := range batches {
		sizes = append(sizes, n)
		total += n
	}
	if total != len(want) || len(sizes) < 3 || sizes[0] != maxBatchFrames {
		t.Fatalf("batches %v, want %d frames, the first batch %d frames", sizes, len(want), maxBatchFrames)
	}
}

// TestBatchWriteErrorEndsStream: the reader's connection is reset just as
// the engine starts writing the second batch. The failed write ends the
// stream: the writer gets 1011 "reader closed", the frames of the batch
// and those still queued are released, and the hub serves the next
// channel.
func TestBatchWriteErrorEndsStream(t *testing.T) {
	readerConn := make(chan *websocket.Conn, 1)
	calls, broke := 0, make(chan struct{})
	th := newTestHub(t, Config{}, func(h *Hub) {
		h.onReaderBatch = func(n int) { // the reader goroutine only
			if calls++; calls != 2 {
				return
			}
			select {
			case r := <-readerConn:
				_ = r.NetConn().(*net.TCPConn).SetLinger(0)
				r.NetConn().Close() // a reset: the writev fails
			case <-time.After(testWait):
			}
			close(broke)
		}
	})
	res, _ := th.Create(0)
	w := th.dial(t, res.Writer, wire.DirWrite)
	frame := bytes.Repeat([]byte{0xa5}, wire.FrameSize)
	const n = 40 // three batches
	for range n {
		if err := w.WriteMessage(websocket.BinaryMessage, frame); err != nil {
			t.Fatal(err)
		}
	}
	pipe := th.channel(res.Writer.ChannelID).pipe
	th.waitChannel(t, res.Writer.ChannelID, "frames not queued", func(*channel) bool { return pipe.Len() == n })

	readerConn <- th.dial(t, res.Reader, wire.DirRead)
	select {
	case <-broke:
	case <-time.After(testWait):
		t.Fatal("no second batch")
	}
	expectClose(t, w, wire.CloseInternal, "reader closed")
	w.Close()
	th.waitLen(t, 0)
	if b := th.BufferedBytes(); b != 0 {
		t.Fatalf("%d bytes still charged after the write error", b)
	}
	if calls != 2 {
		t.Fatalf("%d batches written, want the stream to end at the second", calls)
	}

	// The hub still serves.
	res2, _ := th.Create(0)
	w2 := th.dial(t, res2.Writer, wire.DirWrite)
	r2 := th.dial(t, res2.Reader, wire.DirRead)
	sendAll(t, w2, []msg{{websocket.TextMessage, []byte("after")}})
	closeWith(t, w2, websocket.CloseNormalClosure, "")
	got, ce := readAll(t, r2)
	checkFrames(t, got, []msg{{websocket.TextMessage, []byte("after")}})
	if ce.Code != wire.CloseNormal {
		t.Fatalf("second reader ended with %d", ce.Code)
	}
}
