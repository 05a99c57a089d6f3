package sluice

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	stdjson "encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/sluicehq/sluice/internal/channels"
	"github.com/sluicehq/sluice/internal/ws/wsframe"
	"github.com/sluicehq/sluice/internal/ws/wstest"
	"github.com/sluicehq/sluice/wire"
)

// channelEngine serves a channel hub the way the engine mounts it and
// returns it with the engine URL an SDK would have connected to.
func channelEngine(t testing.TB) (*channels.Hub, string) {
	t.Helper()
	hub := channels.NewHub(channels.Config{}, nil)
	mux := http.NewServeMux()
	mux.Handle("/ws/channels/", hub)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hub.Shutdown(ctx)
		srv.Close()
	})
	return hub, "ws" + strings.TrimPrefix(srv.URL, "http") + "/" // trailing slash on purpose
}

func newTestChannel(t testing.TB) (*Channel, *channels.Hub) {
	t.Helper()
	hub, url := channelEngine(t)
	res, err := hub.Create(0)
	if err != nil {
		t.Fatal(err)
	}
	return newChannel(url, res), hub
}

func randomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// TestChannelCopy: io.Copy of random MiBs in and out (Write and WriteTo
// paths), checked with SHA-256.
func TestChannelCopy(t *testing.T) {
	ch, _ := newTestChannel(t)
	data := randomBytes(8<<20+12345, 1)
	errc := make(chan error, 1)
	go func() {
		if _, err := io.Copy(ch.Writer, bytes.NewReader(data)); err != nil { // bytes.Reader.WriteTo → Write
			errc <- err
			return
		}
		errc <- ch.Writer.Close()
	}()
	h := sha256.New()
	n, err := io.Copy(h, ch.Reader) // ChannelReader.WriteTo
	if err != nil {
		t.Fatalf("copy out after %d bytes: %v", n, err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("writer: %v", err)
	}
	if n != int64(len(data)) || !bytes.Equal(h.Sum(nil), sha256Sum(data)) {
		t.Fatalf("got %d bytes, want %d, or the hash differs", n, len(data))
	}
	if _, err := ch.Reader.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("Read after the end: %v", err)
	}
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// onlyReader hides WriterTo/ReaderFrom so io.Copy takes the other path.
type onlyReader struct{ io.Reader }

type onlyWriter struct{ io.Writer }

// TestChannelReadFromAndRead: ChannelWriter.ReadFrom in, plain Read out.
func TestChannelReadFromAndRead(t *testing.T) {
	ch, _ := newTestChannel(t)
	data := randomBytes(3<<20+7, 2)
	errc := make(chan error, 1)
	go func() {
		n, err := ch.Writer.ReadFrom(onlyReader{bytes.NewReader(data)})
		if err == nil && n != int64(len(data)) {
			err = errors.New("short ReadFrom")
		}
		if err == nil {
			err = ch.Writer.Close()
		}
		errc <- err
	}()
	var got bytes.Buffer
	buf := make([]byte, 1000) // smaller than a frame: Read resumes mid-frame
	for {
		n, err := ch.Reader.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("got %d bytes, want %d", got.Len(), len(data))
	}
}

// TestChannelMessages: text messages reach OnMessage in order with the data.
func TestChannelMessages(t *testing.T) {
	ch, _ := newTestChannel(t)
	var log []string
	data := 0 // bytes since the last message
	flush := func() {
		if data > 0 {
			log = append(log, "data:"+itoa(data))
			data = 0
		}
	}
	ch.Reader.OnMessage(func(m string) { flush(); log = append(log, "msg:"+m) })
	go func() {
		w := ch.Writer
		for _, step := range []func() error{
			func() error { _, err := w.Write([]byte("a")); return err },
			func() error { return w.SendMessage("one") },
			func() error { return w.SendMessage("two") },
			func() error { _, err := w.Write(bytes.Repeat([]byte("b"), 100_000)); return err }, // two frames
			func() error { return w.SendMessage("three") },
			w.Close,
		} {
			if err := step(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	_, err := ch.Reader.WriteTo(onlyWriter{writerFunc(func(p []byte) (int, error) {
		data += len(p)
		return len(p), nil
	})})
	if err != nil {
		t.Fatal(err)
	}
	flush()
	want := "data:1 msg:one msg:two data:100000 msg:three"
	if got := strings.Join(log, " "); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func itoa(n int) string { b, _ := jsonv2.Marshal(n); return string(b) }

func TestChannelCloseWithError(t *testing.T) {
	ch, _ := newTestChannel(t)
	go func() {
		if _, err := ch.Writer.Write([]byte("partial")); err != nil {
			t.Error(err)
		}
		if err := ch.Writer.CloseWithError(errors.New("disk on fire")); err != nil {
			t.Error(err)
		}
	}()
	data, err := ch.Reader.ReadAll()
	var ce *ChannelError
	if !errors.Is(err, ErrStreamBroken) || !errors.As(err, &ce) || ce.Code != wire.CloseInternal || ce.Reason != "disk on fire" {
		t.Fatalf("ReadAll: %q, %v", data, err)
	}
	if _, err := ch.Writer.Write([]byte("more")); !errors.Is(err, ErrChannelClosed) {
		t.Fatalf("Write after CloseWithError: %v", err)
	}
}

// TestChannelWriterKilled: a writer whose connection drops is an error for
// the reader, never io.EOF.
func TestChannelWriterKilled(t *testing.T) {
	ch, _ := newTestChannel(t)
	if _, err := ch.Writer.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := ch.Reader.Read(buf); err != nil || string(buf[:n]) != "partial" {
		t.Fatalf("first read: %q %v", buf[:n], err)
	}
	ch.Writer.conn.ws.NetConn().Close() // as if the process died
	_, err := ch.Reader.Read(buf)
	var ce *ChannelError
	if !errors.As(err, &ce) || ce.Code != wire.CloseInternal || !strings.Contains(ce.Reason, "writer") {
		t.Fatalf("Read after the writer died: %v", err)
	}
}

// TestChannelReaderGone: the writer learns that its reader left.
func TestChannelReaderGone(t *testing.T) {
	ch, _ := newTestChannel(t)
	if _, err := ch.Writer.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Reader.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if err := ch.Reader.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Reader.Read(make([]byte, 1)); !errors.Is(err, ErrChannelClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	<-ch.Writer.conn.readDone // the engine closes the writer at once
	_, err := ch.Writer.Write([]byte("y"))
	var ce *ChannelError
	if !errors.As(err, &ce) || ce.Code != wire.CloseInternal || ce.Reason != "reader closed" {
		t.Fatalf("Write after the reader left: %v", err)
	}
}

// TestChannelCloseNeverConnected: Close on a writer that never wrote still
// ends the reader's stream.
func TestChannelCloseNeverConnected(t *testing.T) {
	ch, hub := newTestChannel(t)
	if err := ch.Writer.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := ch.Reader.ReadAll()
	if err != nil || len(data) != 0 {
		t.Fatalf("ReadAll: %q %v", data, err)
	}
	ch.Reader.Close()
	if err := ch.Writer.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	_ = hub
}

func TestChannelRefused(t *testing.T) {
	hub, url := channelEngine(t)
	res, _ := hub.Create(0)
	bad := res.Reader
	bad.AccessKey = "wrong"
	_, err := NewChannelReader(url, bad).ReadAll()
	var ce *ChannelError
	if !errors.As(err, &ce) || ce.Status != http.StatusNotFound || ce.Reason != "Channel not found" || !errors.Is(err, ErrStreamBroken) {
		t.Fatalf("wrong key: %v", err)
	}
	r := NewChannelReader(url, res.Reader)
	defer r.Close()
	if _, err := r.Read(nil); err != nil { // connects
		t.Fatal(err)
	}
	_, err = NewChannelReader(url, res.Reader).Read(make([]byte, 1))
	if !errors.As(err, &ce) || ce.Status != http.StatusConflict {
		t.Fatalf("second reader: %v", err)
	}
}

func TestChannelURL(t *testing.T) {
	ref := ChannelRef{ChannelID: "c-1", AccessKey: "k+/=&"}
	for _, base := range []string{"ws://h:1", "ws://h:1/", "http://h:1"} {
		got := channelURL(base, ref, wire.DirRead)
		if want := "ws://h:1/ws/channels/c-1?key=k%2B%2F%3D%26&dir=read"; got != want {
			t.Errorf("%s: got %s want %s", base, got, want)
		}
	}
}

// TestChannelRefsJSON: ends marshal to refs, and refs in a handler's input
// become live ends bound to the engine.
func TestChannelRefsJSON(t *testing.T) {
	hub, url := channelEngine(t)
	res, _ := hub.Create(0)
	out := newChannel(url, res)

	type input struct {
		Name   string         `json:"name"`
		Reader *ChannelReader `json:"reader"`
		Writer *ChannelWriter `json:"writer,omitempty"`
		Ref    ChannelRef     `json:"ref"`
	}
	payload := input{Name: "n", Reader: out.Reader, Ref: out.WriterRef}
	b, err := jsonv2.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	b1, err := stdjson.Marshal(payload) // encoding/json v1 uses MarshalJSON
	if err != nil {
		t.Fatal(err)
	}
	want := `"reader":{"channel_id":"` + res.Reader.ChannelID + `","access_key":"` + res.Reader.AccessKey + `","direction":"read"}`
	if !strings.Contains(string(b), want) || !strings.Contains(string(b1), want) {
		t.Fatalf("marshalled:\n%s\n%s", b, b1)
	}

	// The other side: a worker decodes its input with the hooks.
	withWriter := strings.Replace(string(b), `"ref"`, `"writer":`+mustJSON(t, res.Writer)+`,"ref"`, 1)
	var in input
	if err := jsonv2.Unmarshal([]byte(withWriter), &in, jsonv2.WithUnmarshalers(channelUnmarshalers(url, nil))); err != nil {
		t.Fatal(err)
	}
	if in.Reader == nil || in.Writer == nil || in.Reader.Ref() != res.Reader || in.Writer.Ref() != res.Writer || in.Ref != res.Writer {
		t.Fatalf("decoded %+v", in)
	}
	go func() {
		_, _ = in.Writer.Write([]byte("through decoded ends"))
		_ = in.Writer.Close()
	}()
	if got, err := in.Reader.ReadAll(); err != nil || string(got) != "through decoded ends" {
		t.Fatalf("ReadAll: %q %v", got, err)
	}

	var nilIn input
	if err := jsonv2.Unmarshal([]byte(`{"reader":null}`), &nilIn, jsonv2.WithUnmarshalers(channelUnmarshalers(url, nil))); err != nil || nilIn.Reader != nil {
		t.Fatalf("null ref: %v %v", nilIn.Reader, err)
	}
	for _, bad := range []string{
		`{"reader":` + mustJSON(t, res.Writer) + `}`, // direction mix-up
		`{"reader":{"channel_id":"x"}}`,
		`{"reader":"x"}`,
	} {
		var v input
		if err := jsonv2.Unmarshal([]byte(bad), &v, jsonv2.WithUnmarshalers(channelUnmarshalers(url, nil))); err == nil {
			t.Errorf("%s: decoded without error", bad)
		}
	}
	// Decoded without the client's hooks: the ref survives, the end is unbound.
	var unbound input
	if err := jsonv2.Unmarshal([]byte(withWriter), &unbound); err != nil {
		t.Fatal(err)
	}
	if unbound.Reader.Ref() != res.Reader {
		t.Fatalf("unbound ref %+v", unbound.Reader.Ref())
	}
	if _, err := unbound.Reader.ReadAll(); !errors.Is(err, ErrChannelUnbound) {
		t.Fatalf("unbound reader: %v", err)
	}
	if _, err := unbound.Writer.Write([]byte("x")); !errors.Is(err, ErrChannelUnbound) {
		t.Fatalf("unbound writer: %v", err)
	}
	var v1 input
	if err := stdjson.Unmarshal([]byte(withWriter), &v1); err != nil || v1.Writer.Ref() != res.Writer {
		t.Fatalf("encoding/json: %v", err)
	}
	var nilEnd *ChannelWriter
	if b, err := jsonv2.Marshal(struct{ W *ChannelWriter }{nilEnd}); err != nil || string(b) != `{"W":null}` {
		t.Fatalf("nil writer: %s %v", b, err)
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := jsonv2.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestChannelConcurrentWriters: writes from several goroutines keep each
// call's bytes together.
func TestChannelConcurrentWriters(t *testing.T) {
	ch, _ := newTestChannel(t)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := ch.Writer.Write(bytes.Repeat([]byte{'a' + byte(i)}, 3*wire.FrameSize)); err != nil {
				t.Error(err)
			}
		}()
	}
	go func() { wg.Wait(); ch.Writer.Close() }()
	data, err := ch.Reader.ReadAll()
	if err != nil || len(data) != 4*3*wire.FrameSize {
		t.Fatalf("ReadAll: %d bytes, %v", len(data), err)
	}
	for off := 0; off < len(data); off += 3 * wire.FrameSize {
		if c := data[off]; !bytes.Equal(data[off:off+3*wire.FrameSize], bytes.Repeat([]byte{c}, 3*wire.FrameSize)) {
			t.Fatal("writes interleaved")
		}
	}
}

// TestChannelCloseWithErrorUnblocksWrite: CloseWithError from another
// goroutine ends a Write blocked by backpressure, and the reader sees the
// stream broken.
func TestChannelCloseWithErrorUnblocksWrite(t *testing.T) {
	ch, wrote := blockingWrite(t)
	if _, err := ch.Writer.connect(); err != nil { // the Write's own dial, shared
		t.Fatal(err)
	}
	if err := ch.Writer.CloseWithError(errors.New("cancelled")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-wrote:
		if err == nil {
			t.Fatal("blocked Write succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Write still blocked after CloseWithError")
	}
	if _, err := ch.Reader.ReadAll(); !errors.Is(err, ErrStreamBroken) {
		t.Fatalf("reader: %v", err)
	}
}

// TestChannelReaderGoneUnblocksWrite: a Write blocked by backpressure
// learns that the reader left: the engine's close frame (1011 "reader
// closed") arrives while the Write holds the socket, so the read loop does
// not wait to echo it but hangs up, which ends the Write with that reason.
func TestChannelReaderGoneUnblocksWrite(t *testing.T) {
	ch, wrote := blockingWrite(t)
	if _, err := ch.Reader.Read(make([]byte, 1)); err != nil { // the writer is streaming
		t.Fatal(err)
	}
	if err := ch.Reader.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-wrote:
		var ce *ChannelError
		if !errors.As(err, &ce) || ce.Code != wire.CloseInternal || ce.Reason != "reader closed" {
			t.Fatalf("blocked Write after the reader left: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Write still blocked after the reader left")
	}
}

// blockingWrite starts a Write that backpressure blocks, on a channel of
// one frame: far more than that frame plus the socket buffers. Its error
// comes on wrote.
func blockingWrite(t *testing.T) (ch *Channel, wrote <-chan error) {
	hub, url := channelEngine(t)
	res, _ := hub.Create(1)
	ch = newChannel(url, res)
	errc := make(chan error, 1)
	go func() {
		_, err := ch.Writer.Write(make([]byte, 256<<20))
		errc <- err
	}()
	return ch, errc
}

// rawEngine serves one channel socket by hand: it answers the handshake
// and writes frames in the same write, so that they reach the client
// together with the 101 (the dialer keeps what it read past it for the
// frame reader), hangs up its side if
// asked, then reads what the client sends until it hangs up.
func rawEngine(t *testing.T, frames []byte, hangUp bool) (url string, fromClient <-chan []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if _, err := c.Write(append([]byte(wstest.Response101(req)), frames...)); err != nil {
			return
		}
		if hangUp {
			c.(*net.TCPConn).CloseWrite()
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(br)
		got <- b
	}()
	return "ws://" + ln.Addr().String(), got
}

func serverFrame(fin bool, op int, payload []byte) []byte {
	hdr := make([]byte, wsframe.MaxHeader)
	n := wsframe.PutHeader(hdr, fin, op, len(payload), false, [4]byte{})
	return append(hdr[:n], payload...)
}

// TestChannelReaderRaw: the reader gets frames that arrive with the
// handshake response, a message fragmented around a
// ping (answered), text messages, and the close frame (echoed).
func TestChannelReaderRaw(t *testing.T) {
	big := randomBytes(200_000, 7)
	var frames []byte
	frames = append(frames, serverFrame(true, wsframe.OpBinary, []byte("first"))...)
	frames = append(frames, serverFrame(true, wsframe.OpText, []byte("hello"))...)
	frames = append(frames, serverFrame(false, wsframe.OpBinary, big[:70_000])...)
	frames = append(frames, serverFrame(true, wsframe.OpPing, []byte("p"))...)
	frames = append(frames, serverFrame(false, wsframe.OpContinuation, big[70_000:150_000])...)
	frames = append(frames, serverFrame(true, wsframe.OpContinuation, big[150_000:])...)
	frames = append(frames, serverFrame(true, wsframe.OpBinary, nil)...)
	frames = append(frames, serverFrame(true, wsframe.OpClose, []byte{0x03, 0xe8})...)
	u, fromClient := rawEngine(t, frames, false)
	r := NewChannelReader(u, ChannelRef{ChannelID: "c", AccessKey: "k"})
	var msgs []string
	r.OnMessage(func(m string) { msgs = append(msgs, m) })
	data, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if want := append([]byte("first"), big...); !bytes.Equal(data, want) {
		t.Fatalf("read %d bytes, want %d", len(data), len(want))
	}
	if len(msgs) != 1 || msgs[0] != "hello" {
		t.Fatalf("messages %q", msgs)
	}
	// The client's frames: the pong, then the close echo.
	rd := wsframe.NewReader(bytes.NewReader(<-fromClient), 256)
	for _, want := range []struct {
		op   int
		data string
	}{{wsframe.OpPong, "p"}, {wsframe.OpClose, "\x03\xe8"}} {
		h, err := rd.Next()
		if err != nil || h.Op != want.op || !h.Masked {
			t.Fatalf("client frame %+v %v, want opcode %d masked", h, err, want.op)
		}
		p := make([]byte, h.Len)
		if err := rd.ReadPayload(p); err != nil || string(p) != want.data {
			t.Fatalf("client frame payload %q %v", p, err)
		}
	}
}

// TestChannelReaderRawErrors: a masked server frame is a protocol error,
// and an end without a close frame is a broken stream.
func TestChannelReaderRawErrors(t *testing.T) {
	masked := []byte{0x82, 0x81, 1, 2, 3, 4, 'x' ^ 1}
	for name, frames := range map[string][]byte{
		"masked": masked,
		"cut":    serverFrame(true, wsframe.OpBinary, []byte("abc"))[:4],
	} {
		t.Run(name, func(t *testing.T) {
			u, _ := rawEngine(t, frames, true)
			r := NewChannelReader(u, ChannelRef{ChannelID: "c", AccessKey: "k"})
			_, err := r.ReadAll()
			if !errors.Is(err, ErrStreamBroken) {
				t.Fatalf("ReadAll: %v, want a broken stream", err)
			}
		})
	}
}

// writeRecorder dials through a connection that keeps the bytes of each
// Write after the handshake request.
type writeRecorder struct {
	mu     sync.Mutex
	writes [][]byte
}

func (r *writeRecorder) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &recordedConn{Conn: c, r: r}, nil
}

type recordedConn struct {
	net.Conn
	r *writeRecorder
}

func (c *recordedConn) Write(p []byte) (int, error) {
	if !bytes.HasPrefix(p, []byte("GET ")) {
		c.r.mu.Lock()
		c.r.writes = append(c.r.writes, bytes.Clone(p))
		c.r.mu.Unlock()
	}
	return c.Conn.Write(p)
}

// TestChannelWriterWritesWholeFrames: every Write a writer socket makes
// holds whole frames, also for a text message longer than the write
// buffer, which goes out as fragments; so a control frame that ws.Conn
// writes on the same socket (its answer to a protocol error) can never
// land inside one of its frames. On 29b91b1 such a message was one frame
// written in 64 KiB pieces.
func TestChannelWriterWritesWholeFrames(t *testing.T) {
	u, _ := rawEngine(t, nil, false)
	w := NewChannelWriter(u, ChannelRef{ChannelID: "c", AccessKey: "k"})
	rec := &writeRecorder{}
	w.dialOpts = &dialOptions{netDial: rec.dial}
	msg := strings.Repeat("é", 100_000) // 200 kB: over the 64 KiB buffer
	if err := w.SendMessage(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	w.conn.ws.Close()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var all []byte
	for i, b := range rec.writes {
		for rest := b; len(rest) > 0; {
			if len(rest) < 2 || len(rest) < wsframe.HeaderLen(rest[0], rest[1]) {
				t.Fatalf("write %d ends inside a frame header", i)
			}
			hl := wsframe.HeaderLen(rest[0], rest[1])
			h, err := wsframe.ParseHeader(rest[:hl])
			if err != nil || uint64(len(rest)-hl) < h.Len {
				t.Fatalf("write %d: %d bytes of a frame of %d (%v): a frame split between writes", i, len(rest)-hl, h.Len, err)
			}
			rest = rest[hl+int(h.Len):]
		}
		all = append(all, b...)
	}
	// The frames make the text message, then the binary one.
	rd := wsframe.NewReader(bytes.NewReader(all), 4096)
	var text []byte
	for first := true; ; first = false {
		h, err := rd.Next()
		if err != nil || h.Op != map[bool]int{true: wsframe.OpText, false: wsframe.OpContinuation}[first] {
			t.Fatalf("frame %+v, %v", h, err)
		}
		p := make([]byte, h.Len)
		if err := rd.ReadPayload(p); err != nil {
			t.Fatal(err)
		}
		text = append(text, p...)
		if h.Fin {
			break
		}
	}
	if string(text) != msg {
		t.Fatalf("text message of %d bytes, want %d", len(text), len(msg))
	}
	h, err := rd.Next()
	p := make([]byte, h.Len)
	if err == nil {
		err = rd.ReadPayload(p)
	}
	if err != nil || h.Op != wsframe.OpBinary || string(p) != "after" {
		t.Fatalf("then %+v %q, %v", h, p, err)
	}
}
