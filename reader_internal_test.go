package sluice

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testtls"
	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/internal/ws/wsframe"
	"github.com/sluicehq/sluice/internal/ws/wstest"
	"github.com/sluicehq/sluice/internal/wsconn"
)

// notifyConn reports every read that returned data.
type notifyConn struct {
	net.Conn
	got chan int
}

func (c *notifyConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.got <- n
	}
	return n, err
}

func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// tlsPair is tcpPair with TLS on top, handshake done.
func tlsPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	c, s := tcpPair(t)
	files, err := testtls.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := files.ClientConfig()
	cfg.ServerName = "127.0.0.1"
	tc, ts := tls.Client(c, cfg), tls.Server(s, &tls.Config{Certificates: []tls.Certificate{cert}})
	done := make(chan error, 1)
	go func() { done <- ts.Handshake() }()
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return tc, ts
}

// wsClient dials a ws.Conn over client, the end of a connection pair,
// whose other end (server) answers the opening handshake with a 101 and
// then is the test's: it writes the engine's frames.
func wsClient(t *testing.T, client, server net.Conn) *websocket.Conn {
	t.Helper()
	answered := make(chan error, 1)
	go func() {
		req, err := http.ReadRequest(bufio.NewReader(server)) // the client sends nothing more before the 101
		if err == nil {
			_, err = io.WriteString(server, wstest.Response101(req))
		}
		answered <- err
	}()
	d := &websocket.Dialer{HandshakeTimeout: 5 * time.Second, NetDialContext: func(context.Context, string, string) (net.Conn, error) {
		return client, nil
	}}
	ws, _, err := d.Dial("ws://engine/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	return ws
}

// ctlPair is a ctlReader (idle timeout idle) over the client end of a TCP
// connection pair, and the server end to write the engine's frames on.
func ctlPair(t *testing.T, idle time.Duration) (*ctlReader, net.Conn) {
	t.Helper()
	client, server := tcpPair(t)
	return controlReader(wsClient(t, client, server), idle), server
}

func frameBytes(fin bool, op int, payload string) []byte {
	b := make([]byte, wsframe.MaxHeader)
	n := wsframe.PutHeader(b, fin, op, len(payload), false, [4]byte{})
	return append(b[:n], payload...)
}

// interruptMidFrame gives a ctlReader the first 6 bytes of frame (its header and 4
// payload bytes) over a connection pair makes, interrupts the read waiting
// for the rest and checks the read reports the interrupt. readNext re-arms
// the reader and reads the next message, bounded in time.
func interruptMidFrame(t *testing.T, pair func(*testing.T) (net.Conn, net.Conn), frame []byte) (server net.Conn, readNext func() (string, error)) {
	t.Helper()
	client, server := pair(t)
	nc := &notifyConn{Conn: client, got: make(chan int, 16)}
	r := controlReader(wsClient(t, nc, server), time.Minute)
	for len(nc.got) > 0 { // the reads of the 101
		<-nc.got
	}
	r.arm(time.Now())
	if _, err := server.Write(frame[:6]); err != nil {
		t.Fatal(err)
	}
	type res struct {
		data string
		err  error
	}
	out := make(chan res, 1)
	next := func() {
		d, err := r.next()
		out <- res{string(d), err}
	}
	wait := func() res {
		t.Helper()
		select {
		case got := <-out:
			return got
		case <-time.After(5 * time.Second):
			t.Fatal("next did not return")
			return res{}
		}
	}
	go next()
	<-nc.got // the partial frame is in
	r.interrupt()
	if first := wait(); !r.interrupted(first.err) {
		t.Fatalf("interrupted read: %q, %v", first.data, first.err)
	}
	return server, func() (string, error) {
		t.Helper()
		r.arm(time.Now())
		go next()
		got := wait()
		return got.data, got.err
	}
}

// An interrupt in the middle of a frame loses nothing: the next call goes
// on where the interrupted one stopped, over TCP and over TLS (a wss://
// control socket: a read deadline does not break a tls.Conn).
func TestCtlReaderResumesAfterInterrupt(t *testing.T) {
	for name, pair := range map[string]func(*testing.T) (net.Conn, net.Conn){"tcp": tcpPair, "tls": tlsPair} {
		t.Run(name, func(t *testing.T) {
			msg := frameBytes(true, wsframe.OpText, "0123456789")
			server, readNext := interruptMidFrame(t, pair, msg)
			if _, err := server.Write(msg[6:]); err != nil {
				t.Fatal(err)
			}
			if data, err := readNext(); err != nil || data != "0123456789" {
				t.Fatalf("resumed read: %q, %v", data, err)
			}
		})
	}
}

func TestCtlReaderMessages(t *testing.T) {
	r, server := ctlPair(t, time.Minute)
	r.arm(time.Now())
	big := strings.Repeat("x", maxFrameSize/2+1)
	var in []byte
	in = append(in, frameBytes(false, wsframe.OpText, "ab")...)
	in = append(in, frameBytes(true, wsframe.OpContinuation, "cd")...)
	// Over the limit in two fragments: skipped.
	in = append(in, frameBytes(false, wsframe.OpText, big)...)
	in = append(in, frameBytes(true, wsframe.OpContinuation, big)...)
	in = append(in, frameBytes(true, wsframe.OpText, "")...)
	in = append(in, frameBytes(true, wsframe.OpBinary, "after")...)
	go server.Write(in)

	want := []struct {
		data string
		err  error
	}{{"abcd", nil}, {"", wsconn.ErrFrameTooLarge}, {"", nil}, {"after", nil}}
	for i, w := range want {
		d, err := r.next()
		if string(d) != w.data || !errors.Is(err, w.err) {
			t.Fatalf("message %d: %.20q, %v; want %q, %v", i, d, err, w.data, w.err)
		}
	}
}

// The idle timeout is real when nothing arrived for the whole period.
func TestCtlReaderIdleTimeout(t *testing.T) {
	r, _ := ctlPair(t, 50*time.Millisecond)
	r.arm(time.Now())
	_, err := r.next()
	if r.interrupted(err) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle: %v", err)
	}
}

// A ping or pong from the engine proves it alive at once, though
// ws.FrameReader handles it inside Next: ctlReader learns of it through
// ws.Conn's handlers (a data frame counts from the next arm). The ping is
// still answered with a pong.
func TestCtlReaderControlFrameSeen(t *testing.T) {
	for _, op := range []int{wsframe.OpPing, wsframe.OpPong} {
		r, server := ctlPair(t, time.Minute)
		r.seen = time.Now().Add(-time.Hour)
		before := time.Now()
		go server.Write(append(frameBytes(true, op, "alive"), frameBytes(true, wsframe.OpText, "x")...))
		if d, err := r.next(); err != nil || string(d) != "x" {
			t.Fatalf("op %d: message %q, %v", op, d, err)
		}
		if r.seen.Before(before) {
			t.Fatalf("op %d: seen %v ago, not when it arrived", op, time.Since(r.seen))
		}
		if op != wsframe.OpPing {
			continue
		}
		_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
		hdr := make([]byte, 6)
		if _, err := io.ReadFull(server, hdr); err != nil {
			t.Fatal(err)
		}
		h, err := wsframe.ParseHeader(hdr)
		p := make([]byte, h.Len)
		if _, rerr := io.ReadFull(server, p); err != nil || rerr != nil || h.Op != wsframe.OpPong {
			t.Fatalf("reply to the ping: %+v %v %v", h, err, rerr)
		}
		if wsframe.Mask(h.Key, 0, p); string(p) != "alive" {
			t.Fatalf("pong %q, want %q", p, "alive")
		}
	}
}
