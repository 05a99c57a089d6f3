//go:build unix

package channels

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
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
