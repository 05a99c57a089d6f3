package channels

import (
	"errors"
	"io"
	"net"
	"sync"
	"unicode/utf8"

	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/internal/ws/wsframe"
	"github.com/sluicehq/sluice/internal/wsconn"
)

// frameReader reads the data messages a channel writer sends (RFC 6455 §5,
// client to server) straight from the connection, into the caller's pooled
// buffer, handling control frames on the way.
//
// Why not ws.Conn's NextReader: this reader charges the channel's memory
// budget for each frame before reading its payload (and waits for room),
// which is the hub's backpressure; it parses and masks with the same
// wsframe code. ws.Conn does the handshake and writes the control replies
// (WriteControl is safe alongside this reader). Reading beside ws.Conn is
// sound because its Upgrader refuses a client that sent data before the
// handshake completed, so nothing is buffered when this takes over, and
// nothing calls ws.Conn's read methods on a writer socket afterwards.
type frameReader struct {
	r     *wsframe.Reader
	limit int64                           // largest message, 0 = none
	reply func(op int, data []byte) error // control frames back to the peer
	mem   *chanMem                        // charged for each frame; nil = not accounted
	stop  <-chan struct{}                 // ends a wait for memory
	ctrl  [125 + wsframe.MaxHeader]byte
}

const (
	opContinuation = wsframe.OpContinuation
	opText         = wsframe.OpText
	opBinary       = wsframe.OpBinary
	opClose        = wsframe.OpClose
	opPing         = wsframe.OpPing
	opPong         = wsframe.OpPong
)

// A 4 KiB buffer holds headers and small frames; a payload of 1 KiB or
// more is read straight into the frame buffer (see wsframe.Reader).
var frPool = sync.Pool{New: func() any { return wsframe.NewReader(nil, 4096) }}

func newFrameReader(r io.Reader, limit int64, reply func(int, []byte) error) *frameReader {
	wr := frPool.Get().(*wsframe.Reader)
	wr.Reset(r)
	return &frameReader{r: wr, limit: limit, reply: reply}
}

func (fr *frameReader) release() {
	fr.r.Reset(nil)
	frPool.Put(fr.r)
	fr.r = nil
}

// errStopped: a reservation was cut short by frameReader.stop (the channel
// can take no more frames).
var errStopped = errors.New("channels: stopped")

// next reads the next data message into a frame of its own: a pooled
// buffer, or a bigBuf once the message outgrows it. With fr.mem set, each
// growth of the frame's buffer is charged before the payload is read,
// waiting while the channel or the hub's budget is full (mem.go): the
// socket is then not read and TCP holds the writer back. The caller owns
// the returned frame even on error (Release it). The error is a
// *websocket.CloseError when the peer sent a close frame (already
// answered), a *websocket.ProtocolError (answered with its CloseCode), wsconn.ErrFrameTooLarge (before reading the
// payload), errStopped, or the read error.
func (fr *frameReader) next() (f Frame, err error) {
	bp := getBuf()
	f = Frame{Data: (*bp)[:0], buf: bp, mem: fr.mem}
	started := false
	for {
		h, err := fr.header()
		if err != nil {
			return f, fr.endMessage(err)
		}
		switch h.Op {
		case opContinuation:
			if !started {
				return f, fr.endMessage(&websocket.ProtocolError{Reason: "continuation frame outside a message"})
			}
		case opText, opBinary:
			if started {
				return f, fr.endMessage(&websocket.ProtocolError{Reason: "new message inside a fragmented one"})
			}
			started, f.Text = true, h.Op == opText
		default: // control
			if err := fr.control(h); err != nil {
				return f, fr.endMessage(err)
			}
			continue
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
				return f, fr.endMessage(websocket.ErrTextUTF8)
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

// header reads one frame header of a client: masked, or a protocol error.
func (fr *frameReader) header() (wsframe.Header, error) {
	h, err := fr.r.Next()
	if err != nil {
		var pe *websocket.ProtocolError
		if errors.As(err, &pe) {
			return h, pe
		}
		if err == io.EOF {
			return h, err
		}
		return h, noEOF(err)
	}
	if !h.Masked {
		return h, &websocket.ProtocolError{Reason: "unmasked client frame"}
	}
	return h, nil
}

// drain discards frames until the peer's close frame or a read error.
func (fr *frameReader) drain() {
	for {
		h, err := fr.header()
		if err != nil {
			return
		}
		if wsframe.IsControl(h.Op) && fr.control(h) != nil {
			return
		}
		// Data payloads are skipped by the next header read.
	}
}

// control handles a control frame: ping gets its pong, close gets its
// echo and ends the read with a *websocket.CloseError.
func (fr *frameReader) control(h wsframe.Header) error {
	p := fr.ctrl[:h.Len]
	if err := fr.r.ReadPayload(p); err != nil {
		return err
	}
	switch h.Op {
	case opPing:
		_ = fr.reply(websocket.PongMessage, p)
		return nil
	case opPong:
		return nil
	}
	code, reason, perr := websocket.ParseClose(p)
	if perr != nil {
		return perr
	}
	_ = fr.reply(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""))
	return &websocket.CloseError{Code: code, Text: reason}
}

// noEOF turns an EOF inside a frame into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// frameWriter writes the data frames of a reader socket (server to client:
// not masked). On a TCP connection the header and the payload go out in one
// writev, without copying the payload into a buffer first; elsewhere (TLS)
// they are copied into one buffer and written at once. Writes are atomic
// with respect to ws.Conn's WriteControl (each is one Write on the
// connection, and the net package serialises whole Writes).
type frameWriter struct {
	conn net.Conn
	tcp  *net.TCPConn
	hdr  [wsframe.MaxHeader]byte
	vec  [2][]byte
	bufs net.Buffers
	buf  []byte // non-TCP connections only
	// writeBatch's headers and iovecs, kept between calls (TCP only).
	hdrs [maxBatchFrames][wsframe.MaxHeader]byte
	bvec [2 * maxBatchFrames][]byte
}

// A reader socket's batch: the frames already queued when the reader
// goroutine takes one go out with it in one writev, up to this many frames
// or bytes (see Hub.runReader).
const (
	maxBatchFrames = 16
	maxBatchBytes  = 1 << 20
)

func newFrameWriter(conn net.Conn) *frameWriter {
	fw := &frameWriter{conn: conn}
	fw.tcp, _ = conn.(*net.TCPConn)
	return fw
}

func (fw *frameWriter) write(text bool, data []byte) error {
	op := opBinary
	if text {
		op = opText
	}
	n := wsframe.PutHeader(fw.hdr[:], true, op, len(data), false, [4]byte{})
	if fw.tcp != nil {
		fw.vec = [2][]byte{fw.hdr[:n], data}
		fw.bufs = fw.vec[:]
		_, err := fw.bufs.WriteTo(fw.tcp)
		fw.vec = [2][]byte{}
		return err
	}
	if size := n + len(data); size > maxPooledCap {
		// A big frame's copy goes back to the system as soon as it is out.
		b := bigBuf(size)[:size]
		copy(b[copy(b, fw.hdr[:n]):], data)
		_, err := fw.conn.Write(b)
		freeBig(b)
		return err
	}
	fw.buf = append(append(fw.buf[:0], fw.hdr[:n]...), data...)
	_, err := fw.conn.Write(fw.buf)
	return err
}

// writeBatch writes frames (at most maxBatchFrames) in order. On TCP all
// headers and payloads go out in one writev: one system call instead of one
// per frame, and the frames pack into full segments (a lone 64 KiB frame
// plus its header is just over the loopback MSS, so it leaves as a full
// segment and a tiny one). Elsewhere each frame is written as by write.
func (fw *frameWriter) writeBatch(frames []Frame) error {
	if fw.tcp == nil || len(frames) == 1 {
		for i := range frames {
			if err := fw.write(frames[i].Text, frames[i].Data); err != nil {
				return err
			}
		}
		return nil
	}
	vec := fw.bvec[:0]
	for i := range frames {
		op := opBinary
		if frames[i].Text {
			op = opText
		}
		n := wsframe.PutHeader(fw.hdrs[i][:], true, op, len(frames[i].Data), false, [4]byte{})
		vec = append(vec, fw.hdrs[i][:n])
		if len(frames[i].Data) > 0 {
			vec = append(vec, frames[i].Data)
		}
	}
	fw.bufs = vec
	_, err := fw.bufs.WriteTo(fw.tcp)
	fw.bufs = nil
	// Drop the references to the payloads: their buffers are released next.
	clear(fw.bvec[:len(vec)])
	return err
}
