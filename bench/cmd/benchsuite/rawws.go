package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// rawWS is the channel client of the suite: a minimal RFC 6455 client
// that writes pre-masked binary frames and reads frames without copying
// their payload anywhere, so that the client processes cost the same
// (and little) whichever engine they talk to. Control sockets use gorilla.
type rawWS struct {
	c   net.Conn
	r   *bufio.Reader
	key [4]byte
}

func dialRaw(rawURL string) (*rawWS, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		return nil, err
	}
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
		u.RequestURI(), u.Host, base64.StdEncoding.EncodeToString(nonce[:]))
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(c, 256<<10)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, fmt.Errorf("%s: HTTP %d", rawURL, res.StatusCode)
	}
	ws := &rawWS{c: c, r: br}
	_, _ = rand.Read(ws.key[:])
	return ws, nil
}

// frame builds one masked client frame of payload with this socket's key.
// The same bytes can be written again and again: the mask starts over at
// every frame.
func (ws *rawWS) frame(op byte, payload []byte) []byte {
	return ws.appendFrame(nil, op, payload)
}

func (ws *rawWS) appendFrame(h []byte, op byte, payload []byte) []byte {
	h = append(h, 0x80|op, 0)
	switch n := len(payload); {
	case n < 126:
		h[len(h)-1] = 0x80 | byte(n)
	case n <= 0xffff:
		h[len(h)-1] = 0x80 | 126
		h = binary.BigEndian.AppendUint16(h, uint16(n))
	default:
		h[len(h)-1] = 0x80 | 127
		h = binary.BigEndian.AppendUint64(h, uint64(n))
	}
	h = append(h, ws.key[:]...)
	start := len(h)
	h = append(h, payload...)
	for i := range payload {
		h[start+i] ^= ws.key[i&3]
	}
	return h
}

func (ws *rawWS) write(b []byte) error {
	_, err := ws.c.Write(b)
	return err
}

// closeAndWait sends a normal close frame and waits (bounded by the
// caller's deadline on the socket) for the server to end the connection.
func (ws *rawWS) closeAndWait() {
	_ = ws.write(ws.frame(0x8, []byte{0x03, 0xe8}))
	_, _ = io.Copy(io.Discard, ws.r)
	ws.c.Close()
}

// discardFrames reads frames until a close frame or EOF, calling onData
// with the payload size of each data frame (the payload itself is
// skipped). It answers pings.
func (ws *rawWS) discardFrames(onData func(n int64)) error {
	var hdr [14]byte
	for {
		if _, err := io.ReadFull(ws.r, hdr[:2]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		op := hdr[0] & 0x0f
		n := int64(hdr[1] & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(ws.r, hdr[2:4]); err != nil {
				return err
			}
			n = int64(binary.BigEndian.Uint16(hdr[2:4]))
		case 127:
			if _, err := io.ReadFull(ws.r, hdr[2:10]); err != nil {
				return err
			}
			n = int64(binary.BigEndian.Uint64(hdr[2:10]))
		}
		if hdr[1]&0x80 != 0 {
			return errors.New("masked frame from the server")
		}
		switch op {
		case 0x8:
			return nil
		case 0x9:
			p := make([]byte, n)
			if _, err := io.ReadFull(ws.r, p); err != nil {
				return err
			}
			if err := ws.write(ws.frame(0xA, p)); err != nil {
				return err
			}
			continue
		}
		if _, err := ws.r.Discard(int(n)); err != nil {
			return err
		}
		if op == 0x0 || op == 0x1 || op == 0x2 {
			onData(n)
		}
	}
}

var errNoMessage = errors.New("no message within the deadline")

// readMessage reads the next data message into buf (answering pings). If
// nothing at all arrives by deadline it returns errNoMessage and the socket
// stays usable (no byte of a frame was consumed).
func (ws *rawWS) readMessage(buf []byte, deadline time.Time) ([]byte, error) {
	_ = ws.c.SetReadDeadline(deadline)
	if _, err := ws.r.Peek(1); err != nil {
		ne, ok := err.(net.Error)
		if !ok || !ne.Timeout() {
			return buf, err
		}
		// A deadline that passed while this process was not running
		// fails the read without looking at the socket: look once more.
		_ = ws.c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := ws.r.Peek(1); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return buf, errNoMessage
			}
			return buf, err
		}
	}
	_ = ws.c.SetReadDeadline(time.Time{})
	buf = buf[:0]
	var hdr [10]byte
	for {
		if _, err := io.ReadFull(ws.r, hdr[:2]); err != nil {
			return buf, err
		}
		op, fin := hdr[0]&0x0f, hdr[0]&0x80 != 0
		n := int(hdr[1] & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(ws.r, hdr[2:4]); err != nil {
				return buf, err
			}
			n = int(binary.BigEndian.Uint16(hdr[2:4]))
		case 127:
			if _, err := io.ReadFull(ws.r, hdr[2:10]); err != nil {
				return buf, err
			}
			n = int(binary.BigEndian.Uint64(hdr[2:10]))
		}
		if op >= 0x8 {
			p := make([]byte, n)
			if _, err := io.ReadFull(ws.r, p); err != nil {
				return buf, err
			}
			switch op {
			case 0x8:
				return buf, io.EOF
			case 0x9:
				if err := ws.write(ws.frame(0xA, p)); err != nil {
					return buf, err
				}
			}
			continue
		}
		start := len(buf)
		buf = slices.Grow(buf, n)[:start+n]
		if _, err := io.ReadFull(ws.r, buf[start:]); err != nil {
			return buf, err
		}
		if fin {
			return buf, nil
		}
	}
}
