package httptrigger

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice/internal/channels"
	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

// hubChannels adapts a real channels.Hub (as engine/http.go does).
type hubChannels struct{ h *channels.Hub }

func (c hubChannels) RequestBody(n int) (wire.ChannelRef, BodyWriter, error) {
	ref, w, err := c.h.CreateWithLocalWriter(n)
	if err != nil {
		return ref, nil, err
	}
	return ref, w, nil
}

func (c hubChannels) Response(n int) (wire.ChannelRef, ResponseReader, error) {
	ref, r, err := c.h.CreateWithLocalReader(n)
	if err != nil {
		return ref, nil, err
	}
	return ref, &hubReader{r: r}, nil
}

type hubReader struct {
	r    *channels.LocalReader
	last channels.Frame
}

func (a *hubReader) Next(ctx context.Context) (bool, []byte, error) {
	a.last.Release()
	f, err := a.r.Next(ctx)
	a.last = f
	return f.Text, f.Data, err
}
func (a *hubReader) Close()           { a.r.Close(); a.last.Release() }
func (a *hubReader) OnReady(f func()) { a.r.OnReady(f) }
func (a *hubReader) Retire()          { a.r.Retire() }

// wsInvoker runs Go funcs that reach the channels over WebSocket, as a
// worker does.
type wsInvoker struct {
	hubURL string
	fn     func(in wire.HTTPRequest, dial func(ref *wire.ChannelRef) *websocket.Conn) invocation.Result
}

func (w *wsInvoker) Invoke(req *invocation.Request, done invocation.Completion) {
	var in wire.HTTPRequest
	if err := json.Unmarshal(req.Data, &in); err != nil {
		panic(err)
	}
	dial := func(ref *wire.ChannelRef) *websocket.Conn {
		u := w.hubURL + "/ws/channels/" + ref.ChannelID + "?key=" + ref.AccessKey + "&dir=" + ref.Direction
		c, _, err := websocket.DefaultDialer.Dial(u, nil)
		if err != nil {
			panic(err)
		}
		return c
	}
	go func() { done(w.fn(in, dial)) }()
}

func TestWithRealHub(t *testing.T) {
	hub := channels.NewHub(channels.Config{}, slog.New(slog.DiscardHandler))
	hubSrv := httptest.NewServer(hub)
	defer hubSrv.Close()
	defer hub.Shutdown(context.Background())
	inv := &wsInvoker{hubURL: "ws" + strings.TrimPrefix(hubSrv.URL, "http")}
	srv := New(Config{Logger: slog.New(slog.DiscardHandler)}, inv, hubChannels{hub})
	defer srv.Close()
	ts := httptest.NewServer(srv)
	defer ts.Close()
	if err := srv.RegisterTrigger(&registry.Trigger{ID: "t", Type: "http", FunctionID: "f",
		Config: []byte(`{"api_path":"/up","http_method":"POST"}`)}); err != nil {
		t.Fatal(err)
	}

	// Upload → the function hashes the body and streams the digest back
	// with the helper's frame sequence.
	inv.fn = func(in wire.HTTPRequest, dial func(*wire.ChannelRef) *websocket.Conn) invocation.Result {
		body := dial(in.RequestBody)
		h := sha256.New()
		for {
			mt, p, err := body.ReadMessage()
			if err != nil {
				if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != websocket.CloseNormalClosure {
					return failure("read", err.Error())
				}
				break
			}
			if mt == websocket.BinaryMessage {
				h.Write(p)
			}
		}
		body.Close()
		out := dial(in.Response)
		out.WriteMessage(websocket.TextMessage, []byte(`{"type":"set_status","status_code":201}`))
		out.WriteMessage(websocket.TextMessage, []byte(`{"type":"set_headers","headers":{"content-type":"text/plain"}}`))
		out.WriteMessage(websocket.BinaryMessage, nil) // an empty frame starts the response
		out.WriteMessage(websocket.BinaryMessage, []byte(hexString(h.Sum(nil))))
		out.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "channel_close"))
		out.ReadMessage() // wait for the engine's side of the close
		out.Close()
		return invocation.Result{}
	}
	data := make([]byte, 3<<20)
	rand.Read(data)
	res, err := http.Post(ts.URL+"/up", "application/octet-stream", io.MultiReader(bytes.NewReader(data)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	sum := sha256.Sum256(data)
	if err != nil || res.StatusCode != 201 || res.Header.Get("Content-Type") != "text/plain" || string(b) != hexString(sum[:]) {
		t.Fatalf("%d %v %q %v", res.StatusCode, res.Header, b, err)
	}

	// A writer that vanishes mid-stream cuts the client's response.
	inv.fn = func(in wire.HTTPRequest, dial func(*wire.ChannelRef) *websocket.Conn) invocation.Result {
		out := dial(in.Response)
		out.WriteMessage(websocket.BinaryMessage, []byte("partial"))
		out.UnderlyingConn().Close() // no close frame: the worker died
		return invocation.Result{}
	}
	res, err = http.Post(ts.URL+"/up", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err = io.ReadAll(res.Body)
	res.Body.Close()
	// Depending on whether the engine started the response before it saw
	// the writer vanish, the client sees a cut body or a 5xx envelope;
	// never a clean 200.
	if err == nil && !(res.StatusCode >= 500 && bytes.Contains(b, []byte("RESPONSE_STREAM_BROKEN"))) {
		t.Fatalf("broken stream read cleanly: %d %q", res.StatusCode, b)
	}

	// Client disconnect: the function's writer socket is closed promptly.
	closed := make(chan int, 1)
	inv.fn = func(in wire.HTTPRequest, dial func(*wire.ChannelRef) *websocket.Conn) invocation.Result {
		out := dial(in.Response)
		out.WriteMessage(websocket.TextMessage, []byte(`{"type":"set_headers","headers":{"content-type":"text/event-stream"}}`))
		out.WriteMessage(websocket.BinaryMessage, []byte("data: 1\n\n"))
		_, _, err := out.ReadMessage() // the engine never sends data to a writer: only its close
		code := -1
		if ce, ok := err.(*websocket.CloseError); ok {
			code = ce.Code
		}
		closed <- code
		out.Close()
		return invocation.Result{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/up", nil)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(res.Body, make([]byte, 9))
	cancel()
	res.Body.Close()
	select {
	case code := <-closed:
		if code != 1011 {
			t.Fatalf("writer closed with %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("writer not closed")
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// A JSON body is written into its channel once the function connects to
// read it (the hub's OnReady), in full and cleanly ended; a GET's empty
// body channel, closed before anyone connected, ends cleanly too.
func TestRealHubBodyOnConnect(t *testing.T) {
	hub := channels.NewHub(channels.Config{}, slog.New(slog.DiscardHandler))
	hubSrv := httptest.NewServer(hub)
	defer hubSrv.Close()
	defer hub.Shutdown(context.Background())
	inv := &wsInvoker{hubURL: "ws" + strings.TrimPrefix(hubSrv.URL, "http")}
	srv := New(Config{Logger: slog.New(slog.DiscardHandler), Timeout: 5 * time.Second}, inv, hubChannels{hub}) // a body never sent is a 504
	defer srv.Close()
	ts := httptest.NewServer(srv)
	defer ts.Close()
	for _, m := range []string{"POST", "GET"} {
		if err := srv.RegisterTrigger(&registry.Trigger{ID: m, Type: "http", FunctionID: "f",
			Config: []byte(`{"api_path":"/b","http_method":"` + m + `"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	inv.fn = func(in wire.HTTPRequest, dial func(*wire.ChannelRef) *websocket.Conn) invocation.Result {
		body := dial(in.RequestBody)
		defer body.Close()
		var got []byte
		for {
			_, p, err := body.ReadMessage()
			if err != nil {
				if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != websocket.CloseNormalClosure {
					return failure("read", err.Error())
				}
				break
			}
			got = append(got, p...)
		}
		b, _ := json.Marshal(string(got))
		return invocation.Result{Value: []byte(`{"body":` + string(b) + `}`)}
	}
	for _, tc := range []struct{ method, ct, body, want string }{
		{"POST", "application/json", `{"a": [1, 2]}`, `"{\"a\": [1, 2]}"`},
		{"GET", "", "", `""`},
	} {
		req, _ := http.NewRequest(tc.method, ts.URL+"/b", strings.NewReader(tc.body))
		if tc.ct != "" {
			req.Header.Set("Content-Type", tc.ct)
		}
		if tc.body == "" {
			req.Body, req.ContentLength = http.NoBody, 0
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || string(b) != tc.want {
			t.Fatalf("%s: %d %s, want %s", tc.method, res.StatusCode, b, tc.want)
		}
	}
}
