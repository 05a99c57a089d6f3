package httptrigger

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/channels"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"

	"github.com/sluicehq/sluice/internal/invocation"
)

// A buffered answer never reads the response channel: its function never
// connected to it, so nothing could come, and reading it would cost a
// goroutine per request.
func TestBufferedAnswerReadsNoResponseChannel(t *testing.T) {
	e := newEnv(t, Config{})
	e.mustRoute("t1", "fn", "POST", "echo/:id")
	e.inv.set("fn", echo("fn"))
	for range 3 {
		if status, _, body := e.do("POST", "/echo/1", strings.NewReader(`{"a":1}`), "Content-Type", "application/json"); status != http.StatusOK || !strings.Contains(body, `"fn":"fn"`) {
			t.Fatalf("got %d %s", status, body)
		}
	}
	if n := e.hub.nexts.Load(); n != 0 {
		t.Fatalf("the response channel was read %d times for buffered answers", n)
	}
}

// A function that returns null first and connects to its response channel
// afterwards still streams its answer: readiness after the result starts
// the reading.
func TestStreamStartsAfterNullResult(t *testing.T) {
	e := newEnv(t, Config{Timeout: 5 * time.Second}) // a failure is a 504
	e.mustRoute("t1", "fn", "GET", "late")
	e.inv.set("fn", func(c *call) invocation.Result {
		c.after = func() {
			_ = c.status(201)
			_ = c.write("late body")
			c.end()
		}
		return value(`null`)
	})
	status, _, body := e.do("GET", "/late", nil)
	if status != 201 || body != "late body" {
		t.Fatalf("got %d %q, want 201 \"late body\"", status, body)
	}
	if e.hub.nexts.Load() == 0 {
		t.Fatal("the response channel was never read")
	}
}

// A response end that cannot say when it is ready is read from the start,
// as before.
func TestStreamWithoutReadyNotifier(t *testing.T) {
	e := newEnv(t, Config{})
	e.hub.eager.Store(true)
	e.mustRoute("t1", "fn", "GET", "s")
	e.inv.set("fn", func(c *call) invocation.Result {
		_ = c.status(202)
		_ = c.write("streamed")
		c.end()
		return value(`null`)
	})
	if status, _, body := e.do("GET", "/s", nil); status != 202 || body != "streamed" {
		t.Fatalf("got %d %q", status, body)
	}
	e.inv.set("fn", echo("fn"))
	if status, _, _ := e.do("GET", "/s", nil); status != 200 {
		t.Fatalf("buffered: %d", status)
	}
}

// members hands out values that are subslices of its input, exact to the
// byte (whitespace inside kept, around dropped), and that stay valid after
// it returns and the decoder is reused: buffered keeps them without a copy.
func TestMembersValuesAliasInput(t *testing.T) {
	in := []byte(" {\"s\" : \"a\\u0062\\n\" ,\n\"o\":{ \"x\" : [1, 2] },\"n\":-1.5e3 , \"t\":true} ")
	want := map[string]string{"s": `"a\u0062\n"`, "o": `{ "x" : [1, 2] }`, "n": `-1.5e3`, "t": `true`}
	got := map[string]jsontext.Value{}
	if !members(bytes.TrimSpace(in), func(n string, v jsontext.Value) { got[n] = v }) {
		t.Fatal("members failed")
	}
	other := []byte(`{"s":"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz","o":[9,9,9,9,9,9,9,9,9]}`)
	for range 3 {
		members(other, func(string, jsontext.Value) {})
	}
	for n, w := range want {
		v := got[n]
		if string(v) != w {
			t.Errorf("%s = %q, want %q", n, v, w)
		}
		if i := bytes.Index(in, v); len(v) == 0 || i < 0 || &in[i] != &v[0] {
			t.Errorf("%s is not a subslice of the input", n)
		}
	}
}

// countingChannels counts the frames that entered request body channels.
type countingChannels struct {
	hubChannels
	frames *atomic.Int64
}

type countingWriter struct {
	*channels.LocalWriter
	frames *atomic.Int64
}

func (w countingWriter) WriteFrame(ctx context.Context, text bool, data []byte) error {
	err := w.LocalWriter.WriteFrame(ctx, text, data)
	if err == nil {
		w.frames.Add(1)
	}
	return err
}

func (w countingWriter) TryWriteFrame(text bool, data []byte) (bool, error) {
	ok, err := w.LocalWriter.TryWriteFrame(text, data)
	if ok {
		w.frames.Add(1)
	}
	return ok, err
}

func (c countingChannels) RequestBody(n int) (wire.ChannelRef, BodyWriter, error) {
	ref, w, err := c.h.CreateWithLocalWriter(n)
	if err != nil {
		return ref, nil, err
	}
	return ref, countingWriter{w, c.frames}, nil
}

// A JSON body whose function never connects to its channel is never
// written into it (the function has it parsed in "body").
func TestUnreadJSONBodyNotWritten(t *testing.T) {
	hub := channels.NewHub(channels.Config{}, slog.New(slog.DiscardHandler))
	defer hub.Shutdown(context.Background())
	var frames atomic.Int64
	srv := New(Config{Logger: slog.New(slog.DiscardHandler)}, syncEcho{}, countingChannels{hubChannels{hub}, &frames})
	defer srv.Close()
	cfg, _ := json.Marshal(map[string]any{"api_path": "echo/:id", "http_method": "POST"})
	if err := srv.RegisterTrigger(&registry.Trigger{ID: "t", Type: "http", FunctionID: "fn", Config: cfg}); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/echo/7", strings.NewReader(`{"a":1}`))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, req)
	if w.Code != 200 || w.Body.String() != `{"a":1}` {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
	if n := frames.Load(); n != 0 {
		t.Fatalf("%d body frames written for a function that never read them", n)
	}
	if n := hub.Len(); n != 0 {
		t.Fatalf("%d channels left", n)
	}
}

// A reused timer never delivers the tick of its previous use: a request's
// timeout must not fire at once because an earlier request's timer had
// expired unread (true with synchronous timer channels, Go 1.23+ in go.mod).
func TestReusedTimerNoStaleTick(t *testing.T) {
	for range 20 {
		old := startTimer(time.Microsecond)
		<-time.After(5 * time.Millisecond) // the old timer has expired, its tick unread
		stopTimer(old)
		fresh := startTimer(time.Hour)
		select {
		case <-fresh.C:
			t.Fatal("a reused timer fired with a stale tick")
		default:
		}
		stopTimer(fresh)
	}
}

// lowerNames is keyed by names as net/http hands them over (canonical),
// else its entries would never be found.
func TestLowerNamesCanonical(t *testing.T) {
	for k, lk := range lowerNames {
		if http.CanonicalHeaderKey(k) != k || strings.ToLower(k) != lk {
			t.Errorf("lowerNames[%q] = %q", k, lk)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("user-agent", "x")
	if m := headerMap(r); m["user-agent"] != "x" {
		t.Fatalf("headerMap: %v", m)
	}
}
