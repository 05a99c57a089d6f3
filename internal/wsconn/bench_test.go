package wsconn

import (
	"bytes"
	"net/http"
	"testing"

	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/internal/ws/wsframe"
)

// loopConn is a fuzzConn whose input never ends: it reads stream over and
// over, as from a worker that keeps sending the same message.
type loopConn struct {
	fuzzConn
	stream []byte
	off    int
}

func (c *loopConn) Read(p []byte) (int, error) {
	n := copy(p, c.stream[c.off:])
	c.off = (c.off + n) % len(c.stream)
	return n, nil
}

// BenchmarkReadFrame is the engine's read loop on a worker socket made by
// Upgrade (NextFrameBuffered, ReadFrame into a reused buffer,
// NextFrameBuffered) over an in-memory connection, so that it measures
// the reader's own cost per message, not the system calls'. Run with
//
//	go test -run '^$' -bench ReadFrame -benchmem ./internal/wsconn/
func BenchmarkReadFrame(b *testing.B) {
	json := []byte(`{"type":"invocationresult","invocation_id":"0a1b2c3d","function_id":"math.add","result":{"n":1}}`)
	for _, bc := range []struct {
		name string
		msg  []byte
		frag int
	}{
		{"small", json, 0},
		{"2KiB", bytes.Repeat([]byte("x"), 2<<10), 0},
		{"64KiB", bytes.Repeat([]byte("x"), 64<<10), 0},
		{"64KiB-in-4KiB-fragments", bytes.Repeat([]byte("x"), 64<<10), 4 << 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var stream []byte
			for len(stream) < 1<<20 {
				stream = append(stream, clientFrames(wsframe.OpText, bc.msg, bc.frag)...)
			}
			ws := upgradeOver(b, &loopConn{stream: stream}, func(w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
				return Upgrade(&websocket.Upgrader{}, w, r, nil)
			})
			buf := make([]byte, 0, 4096)
			b.SetBytes(int64(len(bc.msg)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				NextFrameBuffered(ws)
				kind, data, err := ReadFrame(ws, buf[:0], 1<<20)
				if err != nil || kind != Text || len(data) != len(bc.msg) {
					b.Fatalf("kind %d, %d bytes, %v", kind, len(data), err)
				}
				buf = data[:0]
				NextFrameBuffered(ws)
			}
		})
	}
}
