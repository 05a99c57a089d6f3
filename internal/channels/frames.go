package channels

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/sluicehq/sluice/internal/wsconn"
)

// frameReader reads the data messages a channel writer sends (RFC 6455 §5,
// client to server) straight from the connection, into the caller's pooled
// buffer, handling control frames on the way.
//
// Why not gorilla's NextReader: it allocates a reader object per message,
// and this is the one loop that runs for every frame the engine forwards.
// gorilla still does the handshake and writes the control replies
// (WriteControl is safe alongside this reader). Reading around gorilla is
// sound because its Upgrade refuses a client that sent data before the
// handshake completed, so its own buffer is empty when this takes over, and
// nothing calls gorilla's read methods on a writer socket afterwards.
type frameReader struct {
	br    *bufio.Reader
	limit int64                           // largest message, 0 = none
	reply func(op int, data []byte) error // control frames back to the peer
	hdr   [8]byte
	ctrl  [125]byte
}

// protocolError is a frame that breaks RFC 6455; the socket is closed with
// Code (1002).
type protocolError struct{ reason string }

func (e *protocolError) Error() string { return "channels: websocket protocol error: " + e.reason }

const (
	opContinuation = 0
	opText         = 1
	opBinary       = 2
	opClose        = 8
	opPing         = 9
	opPong         = 10
)

var brPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// newFrameReader takes a pooled 4 KiB bufio.Reader: reads of a whole frame
// payload are larger than that, so bufio hands them to the socket directly
// and the payload lands in the frame buffer without a copy.
func newFrameReader(r io.Reader, limit int64, reply func(int, []byte) error) *frameReader {
	br := brPool.Get().(*bufio.Reader)
	br.Reset(r)
	return &frameReader{br: br, limit: limit, reply: reply}
}

func (fr *frameReader) release() {
	fr.br.Reset(nil)
	brPool.Put(fr.br)
	fr.br = nil
}

// next reads the next data message, appended to buf[:0] (grown only if
// it does not fit). It returns a *websocket.CloseError when the peer sent
// a close frame (already answered), a *protocolError,
// wsconn.ErrFrameTooLarge (before reading the payload), or the read error.
func (fr *frameReader) next(buf []byte) (text bool, data []byte, err error) {
	data = buf[:0]
	started := false
	for {
		fin, op, n, key, err := fr.header()
		if err != nil {
			return false, data, err
		}
		switch op {
		case opContinuation:
			if !started {
				return false, data, &protocolError{"continuation frame outside a message"}
			}
		case opText, opBinary:
			if started {
				return false, data, &protocolError{"new message inside a fragmented one"}
			}
			started, text = true, op == opText
		case opClose, opPing, opPong:
			if err := fr.control(fin, op, n, key); err != nil {
				return false, data, err
			}
			continue
		default:
			return false, data, &protocolError{"unknown opcode"}
		}
		if fr.limit > 0 && uint64(len(data))+n > uint64(fr.limit) {
			return false, data, wsconn.ErrFrameTooLarge
		}
		start := len(data)
		end := start + int(n)
		if end > cap(data) {
			grown := make([]byte, start, max(end, 2*cap(data)))
			copy(grown, data)
			data = grown
		}
		data = data[:end]
		if _, err := io.ReadFull(fr.br, data[start:]); err != nil {
			return false, data[:start], noEOF(err)
		}
		mask(key, data[start:])
		if fin {
			return text, data, nil
		}
	}
}

// drain discards frames until the peer's close frame or a read error.
func (fr *frameReader) drain() {
	for {
		fin, op, n, key, err := fr.header()
		if err != nil {
			return
		}
		if op == opClose || op == opPing || op == opPong {
			if fr.control(fin, op, n, key) != nil {
				return
			}
			continue
		}
		for n > 0 {
			k := min(n, 1<<30)
			if _, err := fr.br.Discard(int(k)); err != nil {
				return
			}
			n -= k
		}
	}
}

// header reads one frame header.
func (fr *frameReader) header() (fin bool, op int, n uint64, key [4]byte, err error) {
	h := fr.hdr[:2]
	if _, err = io.ReadFull(fr.br, h); err != nil {
		return
	}
	fin, op = h[0]&0x80 != 0, int(h[0]&0x0f)
	if h[0]&0x70 != 0 {
		err = &protocolError{"reserved bits set"}
		return
	}
	if h[1]&0x80 == 0 {
		err = &protocolError{"unmasked client frame"}
		return
	}
	switch n = uint64(h[1] & 0x7f); n {
	case 126:
		if _, err = io.ReadFull(fr.br, fr.hdr[:2]); err != nil {
			err = noEOF(err)
			return
		}
		n = uint64(binary.BigEndian.Uint16(fr.hdr[:2]))
	case 127:
		if _, err = io.ReadFull(fr.br, fr.hdr[:8]); err != nil {
			err = noEOF(err)
			return
		}
		if n = binary.BigEndian.Uint64(fr.hdr[:8]); n>>63 != 0 {
			err = &protocolError{"invalid payload length"}
			return
		}
	}
	// Read into fr.hdr, not key: a slice of a local passed to an io.Reader
	// escapes, which would cost an allocation per frame.
	if _, err = io.ReadFull(fr.br, fr.hdr[:4]); err != nil {
		err = noEOF(err)
		return
	}
	key = [4]byte(fr.hdr[:4])
	return
}

// control handles a control frame: ping gets its pong, close gets its
// echo and ends the read with a *websocket.CloseError.
func (fr *frameReader) control(fin bool, op int, n uint64, key [4]byte) error {
	if !fin || n > 125 {
		return &protocolError{"fragmented or oversized control frame"}
	}
	p := fr.ctrl[:n]
	if _, err := io.ReadFull(fr.br, p); err != nil {
		return noEOF(err)
	}
	mask(key, p)
	switch op {
	case opPing:
		_ = fr.reply(websocket.PongMessage, p)
		return nil
	case opPong:
		return nil
	}
	code, reason := websocket.CloseNoStatusReceived, ""
	switch {
	case n == 1:
		return &protocolError{"close frame of one byte"}
	case n >= 2:
		code, reason = int(binary.BigEndian.Uint16(p)), string(p[2:])
		if !validCloseCode(code) || !utf8.ValidString(reason) {
			return &protocolError{"invalid close frame"}
		}
	}
	_ = fr.reply(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""))
	return &websocket.CloseError{Code: code, Text: reason}
}

// validCloseCode: codes a peer may send (RFC 6455 §7.4, IANA registry).
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// noEOF turns an EOF inside a frame into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// mask XORs b with the frame's masking key, eight bytes at a time (each
// frame's mask starts at key[0]).
func mask(key [4]byte, b []byte) {
	k32 := binary.LittleEndian.Uint32(key[:])
	if k32 == 0 {
		return
	}
	k := uint64(k32) | uint64(k32)<<32
	i := 0
	for ; i+32 <= len(b); i += 32 {
		v := b[i : i+32 : i+32]
		binary.LittleEndian.PutUint64(v[0:], binary.LittleEndian.Uint64(v[0:])^k)
		binary.LittleEndian.PutUint64(v[8:], binary.LittleEndian.Uint64(v[8:])^k)
		binary.LittleEndian.PutUint64(v[16:], binary.LittleEndian.Uint64(v[16:])^k)
		binary.LittleEndian.PutUint64(v[24:], binary.LittleEndian.Uint64(v[24:])^k)
	}
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k)
	}
	for ; i < len(b); i++ {
		b[i] ^= key[i&3]
	}
}
