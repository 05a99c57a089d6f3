package channels

import (
	"errors"
	"io"
	"unicode/utf8"

	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/internal/ws/wsframe"
	"github.com/sluicehq/sluice/internal/wsconn"
)

// frameReader reads the data messages a channel writer sends into frames
// of the pipe. The protocol is ws.Conn's (its FrameReader: control frames
// answered, masking and message order enforced, protocol errors answered
// with their close code, a peer that hangs up mapped to close 1006); this
// keeps the hub's policy for a message's bytes: each goes into a pooled
// buffer, or a bigBuf once it outgrows it; a message over the limit is
// refused before its payload is read; and each growth of the buffer is
// charged to the channel's memory budget before the payload is read,
// waiting for room (mem.go) — the hub's backpressure, which NextReader,
// telling no frame's length before its payload is read, could not give.
type frameReader struct {
	r     *websocket.FrameReader
	limit int64           // largest message, 0 = none
	mem   *chanMem        // charged for each frame; nil = not accounted
	stop  <-chan struct{} // ends a wait for memory
}

const (
	opText   = wsframe.OpText
	opBinary = wsframe.OpBinary
)

func newFrameReader(c *websocket.Conn, limit int64) *frameReader {
	return &frameReader{r: c.Frames(), limit: limit}
}

// errStopped: a reservation was cut short by frameReader.stop (the channel
// can take no more frames).
var errStopped = errors.New("channels: stopped")

// next reads the next data message into a frame of its own: a pooled
// buffer, or a bigBuf once the message outgrows it. With fr.mem set, each
// growth of the frame's buffer is charged before the payload is read,
// waiting while the channel or the hub's budget is full (mem.go): the
// socket is then not read and TCP holds the writer back. The caller owns
// the returned frame even on error (Release it). The error is
// wsconn.ErrFrameTooLarge (before the payload is read; not answered),
// errStopped, or FrameReader's: a *websocket.CloseError for the peer's
// close frame (echoed) or for the peer hanging up (1006), a
// *websocket.ProtocolError (answered with its close code, invalid UTF-8
// in a text message included), or a read deadline passing.
func (fr *frameReader) next() (f Frame, err error) {
	bp := getBuf()
	f = Frame{Data: (*bp)[:0], buf: bp, mem: fr.mem}
	for {
		h, err := fr.r.Next()
		if err != nil {
			return f, fr.endMessage(err)
		}
		if h.Op != wsframe.OpContinuation { // FrameReader checked the order
			f.Text = h.Op == opText
		}
		n := h.Len
		if fr.limit > 0 && uint64(len(f.Data))+n > uint64(fr.limit) {
			return f, fr.endMessage(wsconn.ErrFrameTooLarge)
		}
		start := len(f.Data)
		end := start + int(n)
		newCap := cap(f.Data)
		if end > newCap {
			newCap = growCap(newCap, end, fr.limit)
		}
		if fr.mem != nil && int64(newCap) > f.cost {
			if !fr.mem.reserve(int64(newCap)-f.cost, f.cost, fr.stop, nil) {
				return f, fr.endMessage(errStopped)
			}
			f.cost = int64(newCap)
		}
		if end > cap(f.Data) {
			grown := bigBuf(newCap)[:start]
			copy(grown, f.Data)
			f.releaseBuf()
			f.Data, f.big = grown, true
		}
		f.Data = f.Data[:end]
		if err := fr.r.ReadPayload(f.Data[start:end:cap(f.Data)]); err != nil {
			f.Data = f.Data[:start]
			return f, fr.endMessage(err)
		}
		if h.Fin {
			if f.Text && !utf8.Valid(f.Data) {
				return f, fr.endMessage(fr.r.FailText())
			}
			return f, fr.endMessage(nil)
		}
	}
}

// endMessage hands on the budget's overdraft if this message held it.
func (fr *frameReader) endMessage(err error) error {
	if fr.mem != nil {
		fr.mem.endMessage()
	}
	return err
}

// drain reads what a writer still sends after the hub's close frame, so
// that closing the connection does not turn into a reset (unread bytes at
// close do) that could destroy the close frame on its way: frames, their
// data skipped, up to the writer's close reply, a read error or the read
// deadline the close frame set. After a protocol error (the one that
// ended the read, or one met here) frames are no longer processed (RFC
// 6455 §7.1.7): the bytes are discarded until the writer hangs up or the
// deadline passes.
func drain(c *websocket.Conn) {
	fr := c.Frames()
	for {
		_, err := fr.Next()
		if err == nil {
			continue // its payload is skipped by the next Next
		}
		var pe *websocket.ProtocolError
		if errors.As(err, &pe) {
			_, _ = io.Copy(io.Discard, c.NetConn())
		}
		return
	}
}

// A reader socket's batch: the frames already queued when the reader
// goroutine takes one go out with it in one writev, up to this many frames
// or bytes (see Hub.runReader).
const (
	maxBatchFrames = 16
	maxBatchBytes  = 1 << 20
)
