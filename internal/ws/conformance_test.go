package ws

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testtls"
)

// The RFC 6455 conformance suite (§5 framing, §6 data, §7 closing). Each
// case is the bytes a peer puts on the wire and what our side must answer:
// the messages it echoes, the pongs it sends and its close frame. Every
// case runs against our server (a raw client talks to an Upgrader) and our
// client (a Dialer talks to a raw server), over ws:// and wss://. The raw
// peer also checks that our frames are masked exactly when we are the
// client (§5.1, §5.3).

const confLimit = 4096 // our side's read limit in the suite

type wireFrame struct {
	fin     bool
	rsv     byte // bits 0x70
	op      int
	payload []byte
	// forceMask: 0 as the role says, 1 masked, -1 unmasked.
	forceMask int
	// lenOverride replaces the 64-bit length (for the MSB test).
	lenOverride uint64
}

func fr(op int, p string) wireFrame { return wireFrame{fin: true, op: op, payload: []byte(p)} }
func frag(op int, p string) wireFrame {
	return wireFrame{fin: false, op: op, payload: []byte(p)}
}
func closeFrame(code int, reason string) wireFrame {
	p := binary.BigEndian.AppendUint16(nil, uint16(code))
	return wireFrame{fin: true, op: CloseMessage, payload: append(p, reason...)}
}

// encode puts f on the wire as a peer that masks iff masked.
func (f wireFrame) encode(masked bool) []byte {
	switch f.forceMask {
	case 1:
		masked = true
	case -1:
		masked = false
	}
	b0 := byte(f.op) | f.rsv
	if f.fin {
		b0 |= 0x80
	}
	var m byte
	if masked {
		m = 0x80
	}
	out := []byte{b0}
	n := len(f.payload)
	switch {
	case f.lenOverride != 0:
		out = append(out, m|127)
		out = binary.BigEndian.AppendUint64(out, f.lenOverride)
	case n <= 125:
		out = append(out, m|byte(n))
	case n <= 0xffff:
		out = append(out, m|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, m|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	p := bytes.Clone(f.payload)
	if masked {
		key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
		out = append(out, key[:]...)
		for i := range p {
			p[i] ^= key[i&3]
		}
	}
	return append(out, p...)
}

type confMsg struct {
	op   int
	data string
}

type confCase struct {
	name   string
	frames []wireFrame
	echo   []confMsg // messages our side must send back, in order
	pongs  []string  // pong payloads our side must send
	close  int       // close code our side must send; 1005: an empty close payload
}

func big(n int, c byte) string { return strings.Repeat(string(c), n) }

var confCases = []confCase{
	// §5.2, §5.6: data frames and their length encodings.
	{name: "text", frames: []wireFrame{fr(TextMessage, "hello"), closeFrame(1000, "")}, echo: []confMsg{{TextMessage, "hello"}}, close: 1000},
	{name: "binary", frames: []wireFrame{fr(BinaryMessage, "\x00\xff\x80"), closeFrame(1000, "")}, echo: []confMsg{{BinaryMessage, "\x00\xff\x80"}}, close: 1000},
	{name: "empty text", frames: []wireFrame{fr(TextMessage, ""), closeFrame(1000, "")}, echo: []confMsg{{TextMessage, ""}}, close: 1000},
	{name: "length 125", frames: []wireFrame{fr(BinaryMessage, big(125, 'a')), closeFrame(1000, "")}, echo: []confMsg{{BinaryMessage, big(125, 'a')}}, close: 1000},
	{name: "length 126 (16-bit)", frames: []wireFrame{fr(BinaryMessage, big(126, 'b')), closeFrame(1000, "")}, echo: []confMsg{{BinaryMessage, big(126, 'b')}}, close: 1000},
	{name: "length 4096 (16-bit, at the limit)", frames: []wireFrame{fr(TextMessage, big(confLimit, 'c')), closeFrame(1000, "")}, echo: []confMsg{{TextMessage, big(confLimit, 'c')}}, close: 1000},
	// §5.4: fragmentation, control frames between fragments.
	{name: "fragmented text", frames: []wireFrame{frag(TextMessage, "fra"), frag(0, "gme"), fr(0, "nted"), closeFrame(1000, "")}, echo: []confMsg{{TextMessage, "fragmented"}}, close: 1000},
	{name: "fragments with empty frames", frames: []wireFrame{frag(BinaryMessage, ""), frag(0, "x"), fr(0, ""), closeFrame(1000, "")}, echo: []confMsg{{BinaryMessage, "x"}}, close: 1000},
	{name: "ping between fragments", frames: []wireFrame{frag(TextMessage, "a"), fr(PingMessage, "p1"), fr(0, "b"), closeFrame(1000, "")}, pongs: []string{"p1"}, echo: []confMsg{{TextMessage, "ab"}}, close: 1000},
	{name: "pong between fragments", frames: []wireFrame{frag(BinaryMessage, "a"), fr(PongMessage, "unsolicited"), fr(0, "b"), closeFrame(1000, "")}, echo: []confMsg{{BinaryMessage, "ab"}}, close: 1000},
	{name: "two messages in a row", frames: []wireFrame{fr(TextMessage, "one"), frag(BinaryMessage, "t"), fr(0, "wo"), closeFrame(1000, "")}, echo: []confMsg{{TextMessage, "one"}, {BinaryMessage, "two"}}, close: 1000},
	{name: "continuation outside a message", frames: []wireFrame{fr(0, "x")}, close: 1002},
	{name: "text inside a fragmented message", frames: []wireFrame{frag(TextMessage, "a"), fr(TextMessage, "b")}, close: 1002},
	// §5.5: control frames.
	{name: "ping", frames: []wireFrame{fr(PingMessage, "hi"), closeFrame(1000, "")}, pongs: []string{"hi"}, close: 1000},
	{name: "ping 125 bytes", frames: []wireFrame{fr(PingMessage, big(125, 'p')), closeFrame(1000, "")}, pongs: []string{big(125, 'p')}, close: 1000},
	{name: "ping 126 bytes", frames: []wireFrame{fr(PingMessage, big(126, 'p'))}, close: 1002},
	{name: "fragmented ping", frames: []wireFrame{frag(PingMessage, "x")}, close: 1002},
	// §5.2: reserved bits, opcodes, lengths; §5.1: masking.
	{name: "RSV1 set", frames: []wireFrame{{fin: true, rsv: 0x40, op: TextMessage, payload: []byte("x")}}, close: 1002},
	{name: "RSV3 set on a ping", frames: []wireFrame{{fin: true, rsv: 0x10, op: PingMessage}}, close: 1002},
	{name: "opcode 3", frames: []wireFrame{fr(3, "")}, close: 1002},
	{name: "opcode 11", frames: []wireFrame{fr(11, "")}, close: 1002},
	{name: "64-bit length with the top bit", frames: []wireFrame{{fin: true, op: BinaryMessage, lenOverride: 1 << 63}}, close: 1002},
	{name: "wrong masking", frames: []wireFrame{{fin: true, op: TextMessage, payload: []byte("x"), forceMask: 2}}, close: 1002},
	// §8.1 (checked in §5.6, §7.1.6): UTF-8 of text messages.
	{name: "invalid UTF-8", frames: []wireFrame{fr(TextMessage, "ab\xffcd")}, close: 1007},
	{name: "rune split across fragments", frames: []wireFrame{frag(TextMessage, "κό\xcf"), frag(0, "\x83"), fr(0, "με"), closeFrame(1000, "")}, echo: []confMsg{{TextMessage, "κόσμε"}}, close: 1000},
	{name: "rune split 1+3 across fragments", frames: []wireFrame{frag(TextMessage, "\xf0"), fr(0, "\x9f\x98\x80"), closeFrame(1000, "")}, echo: []confMsg{{TextMessage, "😀"}}, close: 1000},
	{name: "message ends inside a rune", frames: []wireFrame{frag(TextMessage, "ok"), fr(0, "\xe2\x82")}, close: 1007},
	{name: "invalid UTF-8 in a later fragment", frames: []wireFrame{frag(TextMessage, "ok"), fr(0, "\xc0\x80")}, close: 1007},
	{name: "surrogate", frames: []wireFrame{fr(TextMessage, "\xed\xa0\x80")}, close: 1007},
	{name: "beyond U+10FFFF", frames: []wireFrame{fr(TextMessage, "\xf4\x90\x80\x80")}, close: 1007},
	{name: "binary is not UTF-8 checked", frames: []wireFrame{fr(BinaryMessage, "\xff\xfe"), closeFrame(1000, "")}, echo: []confMsg{{BinaryMessage, "\xff\xfe"}}, close: 1000},
	// §7: the closing handshake and close codes.
	{name: "close with reason", frames: []wireFrame{closeFrame(1001, "going")}, close: 1001},
	{name: "close without payload", frames: []wireFrame{fr(CloseMessage, "")}, close: 1005},
	{name: "close 3000", frames: []wireFrame{closeFrame(3000, "")}, close: 3000},
	{name: "close 4999", frames: []wireFrame{closeFrame(4999, "")}, close: 4999},
	{name: "close payload of 1 byte", frames: []wireFrame{fr(CloseMessage, "\x03")}, close: 1002},
	{name: "close 999", frames: []wireFrame{closeFrame(999, "")}, close: 1002},
	{name: "close 1004", frames: []wireFrame{closeFrame(1004, "")}, close: 1002},
	{name: "close 1005 on the wire", frames: []wireFrame{closeFrame(1005, "")}, close: 1002},
	{name: "close 1006 on the wire", frames: []wireFrame{closeFrame(1006, "")}, close: 1002},
	{name: "close 1015", frames: []wireFrame{closeFrame(1015, "")}, close: 1002},
	{name: "close 2000", frames: []wireFrame{closeFrame(2000, "")}, close: 1002},
	{name: "close 5000", frames: []wireFrame{closeFrame(5000, "")}, close: 1002},
	{name: "close reason invalid UTF-8", frames: []wireFrame{closeFrame(1000, "\xce")}, close: 1007},
	{name: "nothing after close", frames: []wireFrame{closeFrame(1000, ""), fr(TextMessage, "late")}, close: 1000},
	// Limits.
	{name: "frame over the limit", frames: []wireFrame{fr(BinaryMessage, big(confLimit+1, 'x'))}, close: 1009},
	{name: "fragments over the limit", frames: []wireFrame{frag(BinaryMessage, big(confLimit/2, 'x')), frag(0, big(confLimit/2, 'x')), fr(0, "!")}, close: 1009},
}

// echoPeer is our side under test: it echoes data messages until the
// read fails, then hangs up.
func echoPeer(c *Conn) error {
	defer c.Close()
	c.SetReadLimit(confLimit)
	for {
		op, rd, err := c.NextReader()
		if err != nil {
			return err
		}
		b, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		if err := c.WriteMessage(op, b); err != nil {
			return err
		}
	}
}

// observed is what the raw peer saw from our side.
type observed struct {
	echo       []confMsg
	pongs      []string
	close      int // 1005: empty payload; 0: none
	closeText  string
	maskErrors int
}

// readOurs reads our side's frames until it hangs up. weMaskIfClient: our
// side is the client, so its frames must be masked.
func readOurs(t *testing.T, br *bufio.Reader, oursIsClient bool) observed {
	t.Helper()
	var o observed
	var msg []byte
	msgOp := 0
	for {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return o
		}
		fin, op, masked := h[0]&0x80 != 0, int(h[0]&0x0f), h[1]&0x80 != 0
		if masked != oursIsClient {
			o.maskErrors++
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
		case PongMessage:
			o.pongs = append(o.pongs, string(p))
		case CloseMessage:
			o.close = CloseNoStatusReceived
			if len(p) >= 2 {
				o.close, o.closeText = int(binary.BigEndian.Uint16(p)), string(p[2:])
			}
		case TextMessage, BinaryMessage, 0:
			if op != 0 {
				msgOp, msg = op, nil
			}
			msg = append(msg, p...)
			if fin {
				o.echo = append(o.echo, confMsg{msgOp, string(msg)})
			}
		}
	}
}

func (tc confCase) check(t *testing.T, o observed) {
	t.Helper()
	if o.maskErrors > 0 {
		t.Errorf("%d frames from our side masked wrongly for its role", o.maskErrors)
	}
	if fmt.Sprint(o.echo) != fmt.Sprint(tc.echo) {
		t.Errorf("echoed %.200v, want %.200v", o.echo, tc.echo)
	}
	if fmt.Sprint(o.pongs) != fmt.Sprint(tc.pongs) {
		t.Errorf("pongs %q, want %q", o.pongs, tc.pongs)
	}
	if o.close != tc.close {
		t.Errorf("close code %d (%q), want %d", o.close, o.closeText, tc.close)
	}
}

// conformanceTLS is the TLS material of the wss:// runs.
var conformanceTLS = sync.OnceValues(func() (*tls.Config, *tls.Config) {
	dir, err := mkTempDir()
	if err != nil {
		panic(err)
	}
	f, err := testtls.Write(dir)
	if err != nil {
		panic(err)
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		panic(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, f.ClientConfig()
})

func schemes() []string { return []string{"ws", "wss"} }

// TestConformanceServer runs the suite against Upgrader's connections.
func TestConformanceServer(t *testing.T) {
	for _, scheme := range schemes() {
		t.Run(scheme, func(t *testing.T) {
			results := make(chan error, 1)
			up := &Upgrader{}
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := up.Upgrade(w, r, nil)
				if err != nil {
					results <- err
					return
				}
				results <- echoPeer(c)
			}))
			if scheme == "wss" {
				srv.TLS, _ = conformanceTLS()
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()
			for _, tc := range confCases {
				t.Run(tc.name, func(t *testing.T) {
					conn, br := rawClient(t, scheme, srv.Listener.Addr().String())
					defer conn.Close()
					var wire []byte
					for _, f := range tc.frames {
						if f.forceMask == 2 {
							f.forceMask = -1 // a client's frame without a mask
						}
						wire = append(wire, f.encode(true)...)
					}
					go conn.Write(wire)
					tc.check(t, readOurs(t, br, false))
					select {
					case <-results:
					case <-time.After(10 * time.Second):
						t.Fatal("the server side did not finish")
					}
				})
			}
		})
	}
}

// rawClient dials addr and does the client handshake by hand.
func rawClient(t *testing.T, scheme, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if scheme == "wss" {
		_, cfg := conformanceTLS()
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

// TestConformanceClient runs the suite against Dialer's connections.
func TestConformanceClient(t *testing.T) {
	for _, scheme := range schemes() {
		t.Run(scheme, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			d := &Dialer{HandshakeTimeout: 5 * time.Second}
			if scheme == "wss" {
				srvCfg, cliCfg := conformanceTLS()
				ln = tls.NewListener(ln, srvCfg)
				d.TLSClientConfig = cliCfg
			}
			for _, tc := range confCases {
				t.Run(tc.name, func(t *testing.T) {
					got := make(chan observed, 1)
					go func() {
						conn, err := ln.Accept()
						if err != nil {
							got <- observed{}
							return
						}
						defer conn.Close()
						_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
						br := bufio.NewReader(conn)
						req, err := http.ReadRequest(br)
						if err != nil {
							got <- observed{}
							return
						}
						fmt.Fprintf(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", acceptKey(req.Header.Get("Sec-WebSocket-Key")))
						var wire []byte
						for _, f := range tc.frames {
							if f.forceMask == 2 {
								f.forceMask = 1 // a server's frame with a mask
							}
							wire = append(wire, f.encode(false)...)
						}
						go conn.Write(wire)
						got <- readOurs(t, br, true)
					}()
					c, _, err := d.Dial(scheme+"://"+ln.Addr().String()+"/", nil)
					if err != nil {
						t.Fatal(err)
					}
					_ = echoPeer(c)
					select {
					case o := <-got:
						tc.check(t, o)
					case <-time.After(10 * time.Second):
						t.Fatal("the raw server did not finish")
					}
				})
			}
		})
	}
}

var tempDir string

func mkTempDir() (string, error) {
	if tempDir == "" {
		return "", errors.New("no temp dir")
	}
	return tempDir, nil
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ws-conformance")
	if err != nil {
		panic(err)
	}
	tempDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
