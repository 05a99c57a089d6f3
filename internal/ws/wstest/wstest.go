// Package wstest is the RFC 6455 conformance suite (§5 framing, §6 data,
// §7 closing) shared by every implementation in the repository: the ws
// package's server and client, the engine's worker-socket reader
// (internal/wsconn), the channel hub's writer-socket reader and the SDK's
// control and channel readers. Each case is the bytes a peer puts on the
// wire and what the side under test must answer: the messages it echoes
// (or, for a read-only client, reports received), the pongs it sends and
// its close frame. The raw peer also checks that frames are
// masked exactly when the side under test is the client (§5.1, §5.3).
package wstest

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

const (
	opText   = 1
	opBinary = 2
	opClose  = 8
	opPing   = 9
	opPong   = 10
)

func acceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// AcceptKey is the Sec-WebSocket-Accept answer to key.
func AcceptKey(key string) string { return acceptKey(key) }

// Response101 is a server's minimal answer to the opening handshake req:
// the 101, for a test that plays the server by hand.
func Response101(req *http.Request) string {
	return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		acceptKey(req.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n"
}

// Limit is the read limit the side under test must enforce.
const Limit = 4096

type Frame struct {
	Fin     bool
	Rsv     byte // bits 0x70
	Op      int
	Payload []byte
	// ForceMask: 0 as the role says, 1 masked, -1 unmasked, 2 the wrong
	// way for the sender's role.
	ForceMask int
	// LenOverride replaces the 64-bit length (for the MSB test).
	LenOverride uint64
}

func fr(op int, p string) Frame { return Frame{Fin: true, Op: op, Payload: []byte(p)} }
func frag(op int, p string) Frame {
	return Frame{Fin: false, Op: op, Payload: []byte(p)}
}
func closeFrame(code int, reason string) Frame {
	p := binary.BigEndian.AppendUint16(nil, uint16(code))
	return Frame{Fin: true, Op: opClose, Payload: append(p, reason...)}
}

// encode puts f on the wire as a peer that masks iff masked.
func (f Frame) Encode(masked bool) []byte {
	switch f.ForceMask {
	case 1:
		masked = true
	case -1:
		masked = false
	case 2:
		masked = !masked
	}
	b0 := byte(f.Op) | f.Rsv
	if f.Fin {
		b0 |= 0x80
	}
	var m byte
	if masked {
		m = 0x80
	}
	out := []byte{b0}
	n := len(f.Payload)
	switch {
	case f.LenOverride != 0:
		out = append(out, m|127)
		out = binary.BigEndian.AppendUint64(out, f.LenOverride)
	case n <= 125:
		out = append(out, m|byte(n))
	case n <= 0xffff:
		out = append(out, m|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, m|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	p := bytes.Clone(f.Payload)
	if masked {
		key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
		out = append(out, key[:]...)
		for i := range p {
			p[i] ^= key[i&3]
		}
	}
	return append(out, p...)
}

type Msg struct {
	Op   int
	Data string
}

type Case struct {
	Name   string
	Frames []Frame
	Echo   []Msg    // messages our side must send back, in order
	Pongs  []string // pong payloads our side must send
	Close  int      // close code our side must send; 1005: an empty close payload
	// Limit marks a case about the read limit (Limit bytes).
	LimitCase bool
}

func repeat(n int, c byte) string { return strings.Repeat(string(c), n) }

var Cases = []Case{
	// §5.2, §5.6: data frames and their length encodings.
	{Name: "text", Frames: []Frame{fr(opText, "hello"), closeFrame(1000, "")}, Echo: []Msg{{opText, "hello"}}, Close: 1000},
	{Name: "binary", Frames: []Frame{fr(opBinary, "\x00\xff\x80"), closeFrame(1000, "")}, Echo: []Msg{{opBinary, "\x00\xff\x80"}}, Close: 1000},
	{Name: "empty text", Frames: []Frame{fr(opText, ""), closeFrame(1000, "")}, Echo: []Msg{{opText, ""}}, Close: 1000},
	{Name: "length 125", Frames: []Frame{fr(opBinary, repeat(125, 'a')), closeFrame(1000, "")}, Echo: []Msg{{opBinary, repeat(125, 'a')}}, Close: 1000},
	{Name: "length 126 (16-bit)", Frames: []Frame{fr(opBinary, repeat(126, 'b')), closeFrame(1000, "")}, Echo: []Msg{{opBinary, repeat(126, 'b')}}, Close: 1000},
	{LimitCase: true, Name: "length 4096 (16-bit, at the limit)", Frames: []Frame{fr(opText, repeat(Limit, 'c')), closeFrame(1000, "")}, Echo: []Msg{{opText, repeat(Limit, 'c')}}, Close: 1000},
	// §5.4: fragmentation, control frames between fragments.
	{Name: "fragmented text", Frames: []Frame{frag(opText, "fra"), frag(0, "gme"), fr(0, "nted"), closeFrame(1000, "")}, Echo: []Msg{{opText, "fragmented"}}, Close: 1000},
	{Name: "fragments with empty frames", Frames: []Frame{frag(opBinary, ""), frag(0, "x"), fr(0, ""), closeFrame(1000, "")}, Echo: []Msg{{opBinary, "x"}}, Close: 1000},
	{Name: "ping between fragments", Frames: []Frame{frag(opText, "a"), fr(opPing, "p1"), fr(0, "b"), closeFrame(1000, "")}, Pongs: []string{"p1"}, Echo: []Msg{{opText, "ab"}}, Close: 1000},
	{Name: "pong between fragments", Frames: []Frame{frag(opBinary, "a"), fr(opPong, "unsolicited"), fr(0, "b"), closeFrame(1000, "")}, Echo: []Msg{{opBinary, "ab"}}, Close: 1000},
	{Name: "two messages in a row", Frames: []Frame{fr(opText, "one"), frag(opBinary, "t"), fr(0, "wo"), closeFrame(1000, "")}, Echo: []Msg{{opText, "one"}, {opBinary, "two"}}, Close: 1000},
	{Name: "continuation outside a message", Frames: []Frame{fr(0, "x")}, Close: 1002},
	{Name: "text inside a fragmented message", Frames: []Frame{frag(opText, "a"), fr(opText, "b")}, Close: 1002},
	// §5.5: control frames.
	{Name: "ping", Frames: []Frame{fr(opPing, "hi"), closeFrame(1000, "")}, Pongs: []string{"hi"}, Close: 1000},
	{Name: "ping 125 bytes", Frames: []Frame{fr(opPing, repeat(125, 'p')), closeFrame(1000, "")}, Pongs: []string{repeat(125, 'p')}, Close: 1000},
	{Name: "ping 126 bytes", Frames: []Frame{fr(opPing, repeat(126, 'p'))}, Close: 1002},
	{Name: "fragmented ping", Frames: []Frame{frag(opPing, "x")}, Close: 1002},
	// §5.2: reserved bits, opcodes, lengths; §5.1: masking.
	{Name: "RSV1 set", Frames: []Frame{{Fin: true, Rsv: 0x40, Op: opText, Payload: []byte("x")}}, Close: 1002},
	{Name: "RSV3 set on a ping", Frames: []Frame{{Fin: true, Rsv: 0x10, Op: opPing}}, Close: 1002},
	{Name: "opcode 3", Frames: []Frame{fr(3, "")}, Close: 1002},
	{Name: "opcode 11", Frames: []Frame{fr(11, "")}, Close: 1002},
	{Name: "64-bit length with the top bit", Frames: []Frame{{Fin: true, Op: opBinary, LenOverride: 1 << 63}}, Close: 1002},
	{Name: "wrong masking", Frames: []Frame{{Fin: true, Op: opText, Payload: []byte("x"), ForceMask: 2}}, Close: 1002},
	// §8.1 (checked in §5.6, §7.1.6): UTF-8 of text messages.
	{Name: "invalid UTF-8", Frames: []Frame{fr(opText, "ab\xffcd")}, Close: 1007},
	{Name: "rune split across fragments", Frames: []Frame{frag(opText, "κό\xcf"), frag(0, "\x83"), fr(0, "με"), closeFrame(1000, "")}, Echo: []Msg{{opText, "κόσμε"}}, Close: 1000},
	{Name: "rune split 1+3 across fragments", Frames: []Frame{frag(opText, "\xf0"), fr(0, "\x9f\x98\x80"), closeFrame(1000, "")}, Echo: []Msg{{opText, "😀"}}, Close: 1000},
	{Name: "message ends inside a rune", Frames: []Frame{frag(opText, "ok"), fr(0, "\xe2\x82")}, Close: 1007},
	{Name: "invalid UTF-8 in a later fragment", Frames: []Frame{frag(opText, "ok"), fr(0, "\xc0\x80")}, Close: 1007},
	// Invalid sequences that straddle fragments, and one after a rune that
	// did: a reader that checks each fragment alone, or mishandles the
	// rune it holds at a fragment's end, lets these through.
	{Name: "invalid sequence split across fragments", Frames: []Frame{frag(opText, "ok\xe2\x82"), fr(0, "(ok")}, Close: 1007},
	{Name: "surrogate split across fragments", Frames: []Frame{frag(opText, "\xed"), fr(0, "\xa0\x80")}, Close: 1007},
	{Name: "invalid after a rune split across fragments", Frames: []Frame{frag(opText, "\xf0\x9f"), frag(0, "\x98\x80"), fr(0, "\xff")}, Close: 1007},
	{Name: "surrogate", Frames: []Frame{fr(opText, "\xed\xa0\x80")}, Close: 1007},
	{Name: "beyond U+10FFFF", Frames: []Frame{fr(opText, "\xf4\x90\x80\x80")}, Close: 1007},
	{Name: "binary is not UTF-8 checked", Frames: []Frame{fr(opBinary, "\xff\xfe"), closeFrame(1000, "")}, Echo: []Msg{{opBinary, "\xff\xfe"}}, Close: 1000},
	// §7: the closing handshake and close codes.
	{Name: "close with reason", Frames: []Frame{closeFrame(1001, "going")}, Close: 1001},
	{Name: "close without payload", Frames: []Frame{fr(opClose, "")}, Close: 1005},
	{Name: "close 3000", Frames: []Frame{closeFrame(3000, "")}, Close: 3000},
	{Name: "close 4999", Frames: []Frame{closeFrame(4999, "")}, Close: 4999},
	{Name: "close payload of 1 byte", Frames: []Frame{fr(opClose, "\x03")}, Close: 1002},
	{Name: "close 999", Frames: []Frame{closeFrame(999, "")}, Close: 1002},
	{Name: "close 1004", Frames: []Frame{closeFrame(1004, "")}, Close: 1002},
	{Name: "close 1005 on the wire", Frames: []Frame{closeFrame(1005, "")}, Close: 1002},
	{Name: "close 1006 on the wire", Frames: []Frame{closeFrame(1006, "")}, Close: 1002},
	{Name: "close 1015", Frames: []Frame{closeFrame(1015, "")}, Close: 1002},
	{Name: "close 2000", Frames: []Frame{closeFrame(2000, "")}, Close: 1002},
	{Name: "close 5000", Frames: []Frame{closeFrame(5000, "")}, Close: 1002},
	{Name: "close reason invalid UTF-8", Frames: []Frame{closeFrame(1000, "\xce")}, Close: 1007},
	{Name: "nothing after close", Frames: []Frame{closeFrame(1000, ""), fr(opText, "late")}, Close: 1000},
	// Limits.
	{LimitCase: true, Name: "frame over the limit", Frames: []Frame{fr(opBinary, repeat(Limit+1, 'x'))}, Close: 1009},
	{LimitCase: true, Name: "fragments over the limit", Frames: []Frame{frag(opBinary, repeat(Limit/2, 'x')), frag(0, repeat(Limit/2, 'x')), fr(0, "!")}, Close: 1009},
}

// Observed is what the raw peer saw from our side.
type Observed struct {
	Echo       []Msg
	Pongs      []string
	CloseCode  int // 1005: empty payload; 0: none
	CloseText  string
	MaskErrors int
}

// ReadPeer reads our side's frames until it hangs up. weMaskIfClient: our
// side is the client, so its frames must be masked.
func ReadPeer(t *testing.T, br *bufio.Reader, oursIsClient bool) Observed {
	t.Helper()
	var o Observed
	var msg []byte
	msgOp := 0
	for {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return o
		}
		fin, op, masked := h[0]&0x80 != 0, int(h[0]&0x0f), h[1]&0x80 != 0
		if masked != oursIsClient {
			o.MaskErrors++
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var l [2]byte
			io.ReadFull(br, l[:])
			n = uint64(binary.BigEndian.Uint16(l[:]))
		case 127:
			var l [8]byte
			io.ReadFull(br, l[:])
			n = binary.BigEndian.Uint64(l[:])
		}
		var key [4]byte
		if masked {
			io.ReadFull(br, key[:])
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			t.Errorf("truncated frame from our side: %v", err)
			return o
		}
		for i := range p {
			p[i] ^= key[i&3]
		}
		switch op {
		case opPong:
			o.Pongs = append(o.Pongs, string(p))
		case opClose:
			o.CloseCode = 1005
			if len(p) >= 2 {
				o.CloseCode, o.CloseText = int(binary.BigEndian.Uint16(p)), string(p[2:])
			}
		case opText, opBinary, 0:
			if op != 0 {
				msgOp, msg = op, nil
			}
			msg = append(msg, p...)
			if fin {
				o.Echo = append(o.Echo, Msg{msgOp, string(msg)})
			}
		}
	}
}

func (tc Case) Check(t *testing.T, o Observed) {
	t.Helper()
	if o.MaskErrors > 0 {
		t.Errorf("%d frames from our side masked wrongly for its role", o.MaskErrors)
	}
	if fmt.Sprint(o.Echo) != fmt.Sprint(tc.Echo) {
		t.Errorf("echoed %.200v, want %.200v", o.Echo, tc.Echo)
	}
	if fmt.Sprint(o.Pongs) != fmt.Sprint(tc.Pongs) {
		t.Errorf("pongs %q, want %q", o.Pongs, tc.Pongs)
	}
	if o.CloseCode != tc.Close {
		t.Errorf("close code %d (%q), want %d", o.CloseCode, o.CloseText, tc.Close)
	}
}

// Dial dials addr and does the client handshake by hand.
func Dial(t *testing.T, scheme, addr string, cfg *tls.Config) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if scheme == "wss" {
		cfg = cfg.Clone()
		cfg.ServerName = "127.0.0.1"
		tc := tls.Client(conn, cfg)
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		conn = tc
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", addr, key)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(key) {
		t.Fatalf("handshake: %s, accept %q", resp.Status, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	return conn, br
}

// Wire is the case's frames as a client (masked) or a server sends them.
func (tc Case) Wire(fromClient bool) []byte {
	var b []byte
	for _, f := range tc.Frames {
		b = append(b, f.Encode(fromClient)...)
	}
	return b
}

// RunServer runs the cases against the server at addr (path "/"), which
// must echo each data message and hang up after its close frame; skip, if
// not nil, leaves cases out. cfg is the client's TLS config for wss://.
func RunServer(t *testing.T, scheme, addr string, cfg *tls.Config, skip func(Case) bool) {
	for _, tc := range Cases {
		if skip != nil && skip(tc) {
			continue
		}
		t.Run(tc.Name, func(t *testing.T) {
			conn, br := Dial(t, scheme, addr, cfg)
			defer conn.Close()
			go conn.Write(tc.Wire(true))
			tc.Check(t, ReadPeer(t, br, false))
		})
	}
}

// RunClient runs the cases against a client side. For each case it
// accepts one connection on ln, answers the opening handshake, sends the
// case's frames and checks what came back. With together, the 101 and the
// frames go out in one write, so the client must find the frames its
// handshake read left over. client dials (ln's address, path "/"), echoes
// each data message until its read fails, and hangs up. skip, if not nil,
// leaves cases out.
func RunClient(t *testing.T, ln net.Listener, together bool, skip func(Case) bool, client func(t *testing.T)) {
	runClient(t, ln, together, skip, func(t *testing.T, _ Case) ([]Msg, bool) {
		client(t)
		return nil, false
	})
}

// RunClientReceived is RunClient for a client that does not write data
// messages (a channel's read end): client dials, reads until its read
// fails, hangs up and returns the messages it received, which are checked
// in place of the echo. Its pongs, close frame and masking are checked on
// the wire as RunClient checks them.
func RunClientReceived(t *testing.T, ln net.Listener, together bool, skip func(Case) bool, client func(t *testing.T, tc Case) []Msg) {
	runClient(t, ln, together, skip, func(t *testing.T, tc Case) ([]Msg, bool) {
		return client(t, tc), true
	})
}

func runClient(t *testing.T, ln net.Listener, together bool, skip func(Case) bool, client func(t *testing.T, tc Case) ([]Msg, bool)) {
	for _, tc := range Cases {
		if skip != nil && skip(tc) {
			continue
		}
		t.Run(tc.Name, func(t *testing.T) {
			got := make(chan Observed, 1)
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					got <- Observed{}
					return
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(conn)
				req, err := http.ReadRequest(br)
				if err != nil {
					got <- Observed{}
					return
				}
				resp := []byte(Response101(req))
				if together {
					go conn.Write(append(resp, tc.Wire(false)...))
				} else {
					conn.Write(resp)
					go conn.Write(tc.Wire(false))
				}
				got <- ReadPeer(t, br, true)
			}()
			received, replace := client(t, tc)
			select {
			case o := <-got:
				if replace {
					if len(o.Echo) > 0 {
						t.Errorf("a client that does not write data sent %.200v", o.Echo)
					}
					o.Echo = received
				}
				tc.Check(t, o)
			case <-time.After(10 * time.Second):
				t.Fatal("the raw server did not finish")
			}
		})
	}
}
