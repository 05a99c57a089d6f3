package sluice_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/wire"
)

// A fake engine for wire-level tests: it accepts worker sockets, greets
// each with workerregistered and hands every received frame to the test.

const waitFor = 5 * time.Second // upper bound for any awaited event

type fakeEngine struct {
	srv    *httptest.Server
	conns  chan *fakeConn
	n      atomic.Int32
	noPong atomic.Bool  // stop answering WS pings (idle-timeout test)
	refuse atomic.Int32 // answer dials with this HTTP status instead of upgrading
	// noObserve: workerregistered without features (an engine before observe.v1)
	noObserve atomic.Bool
}

type frame struct {
	raw string
	m   wire.Message
}

type fakeConn struct {
	ws     *websocket.Conn
	header http.Header // of the handshake
	wmu    sync.Mutex
	in     chan frame
	done   chan struct{}
	pings  chan struct{} // one (non-blocking) signal per WS ping received
	endErr error         // the read error that ended the socket; set before done closes
}

func newFakeEngine(t *testing.T) *fakeEngine {
	t.Helper()
	fe := &fakeEngine{conns: make(chan *fakeConn, 16)}
	var up websocket.Upgrader
	fe.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code := fe.refuse.Load(); code != 0 {
			http.Error(w, "refused by the test", int(code))
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		n := fe.n.Add(1)
		fc := &fakeConn{ws: ws, header: r.Header, in: make(chan frame, 256), done: make(chan struct{}), pings: make(chan struct{}, 1)}
		ws.SetPingHandler(func(s string) error {
			select {
			case fc.pings <- struct{}{}:
			default:
			}
			if fe.noPong.Load() {
				return nil
			}
			return ws.WriteControl(websocket.PongMessage, []byte(s), time.Now().Add(time.Second))
		})
		reg := &wire.Message{Type: wire.TypeWorkerRegistered,
			WorkerID: fmt.Sprintf("worker-%d", n), ReattachToken: fmt.Sprintf("token-%d", n)}
		if !fe.noObserve.Load() {
			reg.Features = []byte(`["observe.v1"]`)
		}
		fc.send(reg)
		fe.conns <- fc
		defer close(fc.done)
		defer ws.Close()
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				fc.endErr = err
				return
			}
			f := frame{raw: string(data)}
			if err := wire.Decode(data, &f.m); err != nil {
				panic(err)
			}
			fc.in <- f
		}
	}))
	t.Cleanup(fe.srv.Close)
	return fe
}

func (fe *fakeEngine) url() string { return "ws" + strings.TrimPrefix(fe.srv.URL, "http") }

func (fe *fakeEngine) accept(t *testing.T) *fakeConn {
	t.Helper()
	select {
	case fc := <-fe.conns:
		return fc
	case <-time.After(waitFor):
		t.Fatal("no connection from the client")
		return nil
	}
}

func (fc *fakeConn) send(m *wire.Message) {
	b, err := wire.Marshal(m)
	if err != nil {
		panic(err)
	}
	fc.sendRaw(string(b))
}

func (fc *fakeConn) sendRaw(s string) {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	_ = fc.ws.WriteMessage(websocket.TextMessage, []byte(s))
}

// closeCode is the close code the client ended the socket with (after done),
// or -1 if it ended without a close frame.
func (fc *fakeConn) closeCode() int {
	<-fc.done
	if ce, ok := fc.endErr.(*websocket.CloseError); ok {
		return ce.Code
	}
	return -1
}

// kill drops the socket without a close frame.
func (fc *fakeConn) kill() { fc.ws.NetConn().Close() }

func (fc *fakeConn) next(t *testing.T) frame {
	t.Helper()
	select {
	case f := <-fc.in:
		return f
	case <-time.After(waitFor):
		t.Fatal("no frame from the client")
		return frame{}
	}
}

// expect returns the next frame and checks its type.
func (fc *fakeConn) expect(t *testing.T, typ string) frame {
	t.Helper()
	f := fc.next(t)
	if f.m.Type != typ {
		t.Fatalf("got %s frame, want %s: %s", f.m.Type, typ, f.raw)
	}
	return f
}

// expectWorkerInfo checks for the void engine::workers::register call that
// ends every (re)connection's replay.
func (fc *fakeConn) expectWorkerInfo(t *testing.T) frame {
	t.Helper()
	f := fc.expect(t, wire.TypeInvokeFunction)
	if f.m.FunctionID != wire.FnWorkersRegister || !f.m.Action.IsVoid() || strings.Contains(f.raw, "invocation_id") {
		t.Fatalf("want void %s without invocation_id, got %s", wire.FnWorkersRegister, f.raw)
	}
	return f
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// connect starts a client against fe with fast reconnects and returns it
// with the engine side of its first socket, past the initial replay.
func connect(t *testing.T, fe *fakeEngine, opts ...sluice.Option) (*sluice.Client, *fakeConn) {
	t.Helper()
	ctx := t.Context()
	opts = append([]sluice.Option{
		sluice.WithLogger(quietLogger()),
		sluice.WithReconnectBackoff(time.Millisecond, 5*time.Millisecond),
	}, opts...)
	c, err := sluice.Connect(ctx, fe.url(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fc := fe.accept(t)
	fc.expectWorkerInfo(t)
	fc.sync(t)
	return c, fc
}

// sync returns once the client has read everything sent to it so far: it
// handles frames in order, so its answer to a probe comes after.
func (fc *fakeConn) sync(t *testing.T) {
	t.Helper()
	fc.sendRaw(`{"type":"invokefunction","invocation_id":"sync-probe","function_id":"test::no-such-function"}`)
	if f := fc.expect(t, wire.TypeInvocationResult); f.m.InvocationID != "sync-probe" {
		t.Fatalf("sync: %s", f.raw)
	}
}
