// Package wsframe is the RFC 6455 framing that internal/ws, the WebSocket
// implementation, is built on: word-wise masking, frame headers, and a
// frame reader that reads payloads straight into the caller's buffer.
//
// Frames are read only by internal/ws (ws.Conn's NextReader and
// FrameReader, the one place that interprets them). The one writer beside
// ws.Conn, internal/wsconn's (the engine's worker and stream sockets, the
// SDK's control socket), frames with PutHeader and Mask directly: it runs
// once per small JSON message and encodes the message straight into its
// frame buffer, where a general message API's costs are measurable.
package wsframe

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
)

// Opcodes (RFC 6455 §5.2).
const (
	OpContinuation = 0
	OpText         = 1
	OpBinary       = 2
	OpClose        = 8
	OpPing         = 9
	OpPong         = 10
)

// MaxHeader is the longest frame header: 2 bytes, a 64-bit length, a
// masking key.
const MaxHeader = 14

// Header is one frame's header.
type Header struct {
	Fin    bool
	Op     int
	Len    uint64
	Masked bool
	Key    [4]byte
}

// IsControl says whether op is a control opcode (close, ping, pong).
func IsControl(op int) bool { return op >= OpClose }

// PutHeader writes a final-or-not frame header into b (at least MaxHeader
// bytes) and returns its length. key is used when masked is true.
func PutHeader(b []byte, fin bool, op int, n int, masked bool, key [4]byte) int {
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	b[0] = b0
	var m byte
	if masked {
		m = 0x80
	}
	i := 2
	switch {
	case n <= 125:
		b[1] = m | byte(n)
	case n <= 0xffff:
		b[1] = m | 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
		i = 4
	default:
		b[1] = m | 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
		i = 10
	}
	if masked {
		copy(b[i:i+4], key[:])
		i += 4
	}
	return i
}

// Mask XORs b in place with key, starting at key[pos&3], and returns the
// position after b (RFC 6455 §5.3: each frame's mask starts at pos 0).
//
// Why norace: masking touches nothing but the caller's buffer, and under the
// race detector an instrumented loop costs ~40x (a 1 GiB stream: seconds to
// minutes). The buffers' hand-offs between goroutines stay instrumented.
//
//go:norace
func Mask(key [4]byte, pos int, b []byte) int {
	rk := rotate(key, pos)
	k32 := binary.LittleEndian.Uint32(rk[:])
	end := pos + len(b)
	if k32 == 0 {
		return end & 3
	}
	k := uint64(k32) | uint64(k32)<<32
	i := maskBulk(k, b)
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
		b[i] ^= byte(k >> (8 * (i & 3)))
	}
	return end & 3
}

// MaskCopy writes src XOR key (from key[0]) into dst, which must be at least
// as long: copying and masking in one pass, for a client that must not
// modify the caller's bytes.
//
//go:norace
func MaskCopy(dst, src []byte, key [4]byte) {
	dst = dst[:len(src)]
	k32 := binary.LittleEndian.Uint32(key[:])
	k := uint64(k32) | uint64(k32)<<32
	i := maskCopyBulk(k, dst, src)
	for ; i+32 <= len(src); i += 32 {
		s := src[i : i+32 : i+32]
		d := dst[i : i+32 : i+32]
		binary.LittleEndian.PutUint64(d[0:], binary.LittleEndian.Uint64(s[0:])^k)
		binary.LittleEndian.PutUint64(d[8:], binary.LittleEndian.Uint64(s[8:])^k)
		binary.LittleEndian.PutUint64(d[16:], binary.LittleEndian.Uint64(s[16:])^k)
		binary.LittleEndian.PutUint64(d[24:], binary.LittleEndian.Uint64(s[24:])^k)
	}
	for ; i+8 <= len(src); i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(src[i:])^k)
	}
	for ; i < len(src); i++ {
		dst[i] = src[i] ^ key[i&3]
	}
}

func rotate(key [4]byte, pos int) [4]byte {
	switch pos & 3 {
	case 1:
		return [4]byte{key[1], key[2], key[3], key[0]}
	case 2:
		return [4]byte{key[2], key[3], key[0], key[1]}
	case 3:
		return [4]byte{key[3], key[0], key[1], key[2]}
	}
	return key
}

// ProtocolError is a frame that breaks RFC 6455: the connection must be
// closed with CloseCode. It is the one protocol error of the repository's
// one frame reader (internal/ws), whoever reads through it.
type ProtocolError struct {
	Reason string
	// Code is the close code that answers the frame when it is not 1002
	// (protocol error): 1007 for text or a close reason that is not UTF-8.
	Code int
}

func (e *ProtocolError) Error() string { return "websocket protocol error: " + e.Reason }

// CloseCode is the close code that answers e: Code, or 1002.
func (e *ProtocolError) CloseCode() int {
	if e.Code != 0 {
		return e.Code
	}
	return 1002
}

// Reader reads frames from a connection. Headers and short payloads go
// through a small buffer of its own; a payload read of directMin bytes or
// more goes straight into the caller's buffer, and picks up the next frame's
// header on the way when the caller's buffer has room for it (so a stream
// of full frames costs one read system call per frame, and no copy).
type Reader struct {
	src  io.Reader
	buf  []byte
	pend []byte // unread bytes of buf
	err  error  // sticky read error

	rem  uint64 // payload bytes of the current frame not yet read
	mask bool
	key  [4]byte
	pos  int
}

// directMin is the smallest payload read that bypasses the own buffer.
const directMin = 1024

// NewReader returns a Reader of src with a bufSize-byte buffer (at least
// 256; 4 KiB is plenty: big payloads do not go through it).
func NewReader(src io.Reader, bufSize int) *Reader {
	return &Reader{src: src, buf: make([]byte, max(bufSize, 256))}
}

// Reset makes r read from src, forgetting everything buffered.
func (r *Reader) Reset(src io.Reader) {
	*r = Reader{src: src, buf: r.buf}
}

// ClearTimeout forgets a read error that was a deadline passing, so that a
// read interrupted by a deadline can go on where it stopped. Any other
// error stays.
func (r *Reader) ClearTimeout() {
	if errors.Is(r.err, os.ErrDeadlineExceeded) {
		r.err = nil
	}
}

// Buffered returns how many bytes r holds that src has already delivered.
func (r *Reader) Buffered() int { return len(r.pend) }

// FrameBuffered reports whether, at a frame boundary, the whole next
// message is buffered already as one unfragmented text or binary frame:
// reading it needs no system call. A buffered control frame or fragment is
// not "more input" (its handling may block the reader).
//
// A read loop asks this before and after every message, so it reads the
// few header bits it needs rather than the whole header (ParseHeader).
func (r *Reader) FrameBuffered() bool {
	p := r.pend
	if r.rem > 0 || len(p) < 2 || p[0] != 0x80|OpText && p[0] != 0x80|OpBinary {
		return false // not final, reserved bits set, or not a data frame
	}
	hl := HeaderLen(p[0], p[1])
	if len(p) < hl {
		return false
	}
	var n uint64
	switch l := p[1] & 0x7f; l {
	case 126:
		n = uint64(binary.BigEndian.Uint16(p[2:]))
	case 127:
		n = binary.BigEndian.Uint64(p[2:]) // invalid from 1<<63: never buffered
	default:
		n = uint64(l)
	}
	return uint64(len(p)-hl) >= n
}

// Remaining is the number of payload bytes of the current frame not read.
func (r *Reader) Remaining() uint64 { return r.rem }

// Next reads the next frame header, skipping whatever is left of the
// current frame's payload. It checks the reserved bits, the length and the
// control frame rules, not whether frames should be masked (the caller
// knows which side it is). An EOF before any byte of the header is io.EOF;
// inside it, io.ErrUnexpectedEOF.
func (r *Reader) Next() (Header, error) {
	if r.rem > 0 {
		if err := r.skip(r.rem); err != nil {
			return Header{}, err
		}
	}
	if err := r.need(2); err != nil {
		if err == io.ErrUnexpectedEOF && len(r.pend) == 0 {
			err = io.EOF
		}
		return Header{}, err
	}
	hl := HeaderLen(r.pend[0], r.pend[1])
	if err := r.need(hl); err != nil {
		return Header{}, err
	}
	h, err := ParseHeader(r.pend[:hl])
	if err != nil {
		return h, err
	}
	r.pend = r.pend[hl:]
	r.rem, r.mask, r.key, r.pos = h.Len, h.Masked, h.Key, 0
	return h, nil
}

// HeaderLen returns the length of the frame header whose first two bytes
// are b0 and b1.
func HeaderLen(b0, b1 byte) int {
	hl := 2
	switch b1 & 0x7f {
	case 126:
		hl += 2
	case 127:
		hl += 8
	}
	if b1&0x80 != 0 {
		hl += 4 // the mask key
	}
	return hl
}

// ParseHeader parses the complete frame header p (HeaderLen bytes). It
// checks the reserved bits, the length and the control frame rules, not
// whether the frame should be masked (the caller knows which side it is).
func ParseHeader(p []byte) (Header, error) {
	var h Header
	b0, b1 := p[0], p[1]
	h.Fin, h.Op, h.Masked = b0&0x80 != 0, int(b0&0x0f), b1&0x80 != 0
	hl := len(p)
	switch n := b1 & 0x7f; n {
	case 126:
		h.Len = uint64(binary.BigEndian.Uint16(p[2:]))
	case 127:
		if h.Len = binary.BigEndian.Uint64(p[2:]); h.Len>>63 != 0 {
			return h, &ProtocolError{Reason: "invalid payload length"}
		}
	default:
		h.Len = uint64(n)
	}
	if h.Masked {
		h.Key = [4]byte(p[hl-4 : hl])
	}
	switch {
	case b0&0x70 != 0:
		return h, &ProtocolError{Reason: "reserved bits set"}
	case h.Op > OpBinary && h.Op < OpClose, h.Op > OpPong:
		return h, &ProtocolError{Reason: "unknown opcode"}
	case IsControl(h.Op) && (!h.Fin || h.Len > 125):
		return h, &ProtocolError{Reason: "fragmented or oversized control frame"}
	}
	return h, nil
}

// need makes at least n (<= MaxHeader) bytes available in pend.
func (r *Reader) need(n int) error {
	if len(r.pend) >= n {
		return nil
	}
	k := copy(r.buf, r.pend)
	for k < n {
		if r.err != nil {
			r.pend = r.buf[:k]
			return noEOF(r.err)
		}
		m, err := r.src.Read(r.buf[k:])
		k += m
		r.err = err
	}
	r.pend = r.buf[:k]
	return nil
}

// Read reads payload of the current frame into p, unmasked, and returns
// io.EOF at the end of the frame. It may use p beyond the bytes it reports
// (up to MaxHeader more) as scratch space.
func (r *Reader) Read(p []byte) (int, error) {
	if r.rem == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	want := len(p)
	if uint64(want) > r.rem {
		want = int(r.rem)
	}
	var n int
	switch {
	case len(r.pend) > 0:
		n = copy(p[:want], r.pend)
		r.pend = r.pend[n:]
	case r.err != nil:
		return 0, noEOF(r.err)
	case want >= directMin:
		// Straight into p, with the next header if p has room for it.
		lim := want + min(len(p)-want, MaxHeader)
		m, err := r.src.Read(p[:lim])
		r.err = err
		n = min(m, want)
		if m > want {
			r.pend = r.buf[:copy(r.buf, p[want:m])]
		}
	default:
		m, err := r.src.Read(r.buf)
		r.err = err
		r.pend = r.buf[:m]
		n = copy(p[:want], r.pend)
		r.pend = r.pend[n:]
	}
	if r.mask {
		r.pos = Mask(r.key, r.pos, p[:n])
	}
	r.rem -= uint64(n)
	if n == 0 && r.err != nil {
		return 0, noEOF(r.err)
	}
	return n, nil
}

// ReadPayload reads the whole rest of the current frame into b[:len(b)]
// (which must be exactly Remaining() long; cap(b) beyond it is scratch).
func (r *Reader) ReadPayload(b []byte) error {
	full := b[:cap(b)]
	for got := 0; got < len(b); {
		n, err := r.Read(full[got:min(cap(b), len(b)+MaxHeader)])
		got += n
		if err != nil && got < len(b) {
			return noEOF(err)
		}
	}
	return nil
}

// Discard skips the rest of the current frame's payload. Interrupted by an
// error, it can be called again to go on.
func (r *Reader) Discard() error { return r.skip(r.rem) }

// Skip drops the next n (at most Remaining()) payload bytes of the current
// frame; what Read returns after them is unmasked from the right place.
// Interrupted by an error, it has dropped what Remaining no longer counts.
func (r *Reader) Skip(n uint64) error { return r.skip(min(n, r.rem)) }

// skip discards n payload bytes of the current frame.
func (r *Reader) skip(n uint64) error {
	for n > 0 {
		if len(r.pend) == 0 {
			if r.err != nil {
				return noEOF(r.err)
			}
			m, err := r.src.Read(r.buf)
			r.err = err
			r.pend = r.buf[:m]
			continue
		}
		k := min(uint64(len(r.pend)), n)
		r.pend = r.pend[k:]
		n -= k
		r.rem -= k
		r.pos = (r.pos + int(k&3)) & 3
	}
	return nil
}

// noEOF turns an EOF inside a frame into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ValidCloseCode says whether a peer may send code in a close frame
// (RFC 6455 §7.4, IANA registry).
func ValidCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
