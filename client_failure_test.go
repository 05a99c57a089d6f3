package sluice_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/wire"
)

// What the SDK promises when the engine is away or misbehaves. Each test
// names the fault it catches (scripts/faults.py injects them).

// offlineClient returns a client whose engine now refuses it (HTTP 503),
// so that its calls wait for a connection.
func offlineClient(t *testing.T, opts ...sluice.Option) *sluice.Client {
	t.Helper()
	fe := newFakeEngine(t)
	c, _ := connect(t, fe, opts...)
	fe.refuse.Store(http.StatusServiceUnavailable)
	sluice.KillConn(c)
	return c
}

// fault: session() not selecting on the caller's ctx.
func TestOfflineCallHonoursContext(t *testing.T) {
	c := offlineClient(t, sluice.WithInvocationTimeout(0))
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Trigger(ctx, "offline::fn", nil)
		errc <- err
	}()
	waitUntil(t, "the call to wait for a connection", func() bool { return sluice.OfflineCalls(c) == 1 })
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "offline::fn") {
			t.Fatalf("offline call after its ctx ended: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("an offline call ignored its context")
	}
}

// fault: session() not arming the default invocation timeout.
func TestOfflineCallHonoursDefaultTimeout(t *testing.T) {
	c := offlineClient(t, sluice.WithInvocationTimeout(50*time.Millisecond))
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Trigger(context.Background(), "offline::fn", nil) // no deadline of its own
		errc <- err
	}()
	var se *sluice.Error
	select {
	case err := <-errc:
		if !errors.As(err, &se) || se.Code != sluice.CodeTimeout || se.FunctionID != "offline::fn" {
			t.Fatalf("offline call past the default timeout: %v", err)
		}
		if d := time.Since(start); d < 50*time.Millisecond {
			t.Fatalf("timed out after %v, before the 50ms default", d)
		}
	case <-time.After(waitFor):
		t.Fatal("an offline call ignored the default invocation timeout")
	}
}

// fault: serve's close timer removed. An engine that stops reading (the
// writer blocks, so the close frame cannot even be sent) delays Close by at
// most the close timeout (2 s).
func TestCloseWithSilentEngine(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"workerregistered","worker_id":"w1","reattach_token":"t1"}`))
		<-hold // never reads: no close answer, ever
	}))
	defer srv.Close()
	c, err := sluice.Connect(t.Context(), "ws"+strings.TrimPrefix(srv.URL, "http"), sluice.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	// A payload bigger than the socket buffers: the writer blocks on it,
	// so the close frame never leaves either.
	big := json.RawMessage(`"` + strings.Repeat("x", 32<<20) + `"`)
	go func() { _, _ = c.Trigger(context.Background(), "big", big) }()
	// Encoding 32 MiB under -race on a loaded machine took over 5 s: a
	// generous bound (it only turns a hang into a failure), and Close on
	// every path, so that a failure here does not leave the call's
	// goroutines to fail the goroutine checks of the tests after it (a
	// bounded wait: with the fault this test guards, Close never returns).
	defer func() {
		closed := make(chan struct{})
		go func() { _ = c.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(4 * waitFor):
		}
	}()
	for deadline := time.Now().Add(60 * time.Second); sluice.PendingCalls(c) != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the big call to be sent")
		}
	}
	done := make(chan struct{})
	go func() { _ = c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(4 * waitFor):
		buf := make([]byte, 1<<20)
		t.Fatalf("Close waited for an engine that never reads\n%s", buf[:runtime.Stack(buf, true)])
	}
}

// fault: dial() dropping the HTTP status of a refused handshake. A dial
// answered with an HTTP status says which, so that "401" or "403" points at
// credentials and "503" at an engine shutting down.
func TestConnectReportsHTTPStatus(t *testing.T) {
	fe := newFakeEngine(t)
	fe.refuse.Store(http.StatusUnauthorized)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err := sluice.Connect(ctx, fe.url(), sluice.WithLogger(quietLogger()),
		sluice.WithReconnectBackoff(5*time.Millisecond, 10*time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("Connect to an engine answering 401: %v", err)
	}
}

// fault: permanentDialErr answering false. Refused credentials (401, 403)
// fail Connect at once instead of being retried until its context ends;
// a 503 (an engine shutting down) is retried.
func TestConnectFailsFastOnRefusedCredentials(t *testing.T) {
	for _, code := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		fe := newFakeEngine(t)
		fe.refuse.Store(int32(code))
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		_, err := sluice.Connect(ctx, fe.url(), sluice.WithLogger(quietLogger()),
			sluice.WithReconnectBackoff(5*time.Millisecond, 10*time.Millisecond))
		if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), fmt.Sprintf("HTTP %d", code)) {
			t.Errorf("Connect to an engine answering %d: %v (context ended: %v)", code, err, ctx.Err())
		}
		cancel()
	}
	fe := newFakeEngine(t)
	fe.refuse.Store(http.StatusServiceUnavailable)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := sluice.Connect(ctx, fe.url(), sluice.WithLogger(quietLogger()),
		sluice.WithReconnectBackoff(5*time.Millisecond, 10*time.Millisecond))
	if err == nil || ctx.Err() == nil {
		t.Fatalf("Connect to an engine answering 503 gave up before its context ended: %v", err)
	}
}

// fault: the control socket reader's masked-frame check removed (now
// ws.FrameReader's, which ctlReader reads with). RFC 6455 §5.1: a client
// must close the connection when a server frame is masked; the SDK closes
// with 1002 (protocol error) and reconnects.
func TestMaskedServerFrameRefused(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe)
	must(t, c.RegisterRaw("echo", echoRaw))
	fc.expect(t, wire.TypeRegisterFunction)
	payload := []byte(`{"type":"invokefunction","invocation_id":"m1","function_id":"echo","data":1}`)
	key := [4]byte{1, 2, 3, 4}
	frame := []byte{0x81, 0x80 | byte(len(payload))} // FIN, text, masked; len < 126
	frame = append(frame, key[:]...)
	for i, b := range payload {
		frame = append(frame, b^key[i%4])
	}
	fc.wmu.Lock()
	_, err := fc.ws.NetConn().Write(frame)
	fc.wmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-fc.in:
		t.Fatalf("the client answered a masked frame: %s", f.raw)
	case <-fc.done:
	case <-time.After(waitFor):
		t.Fatal("the client kept a socket that sent a masked frame")
	}
	if code := fc.closeCode(); code != websocket.CloseProtocolError {
		t.Fatalf("close code %d, want %d (protocol error)", code, websocket.CloseProtocolError)
	}
	fe.accept(t).expect(t, wire.TypeReattach) // and it reconnects
}

// fault: a failed send fails the call instead of waiting for the next
// socket (sdk-failed-send-not-retried), or retries on the dead session
// until a reader happens to notice it (sdk-failed-send-spins: without
// sendFailed ending the session, on 25c1da9 both subtests timed out with
// no second connection, the call spinning on the dead socket). A frame the
// socket refused was not sent, so it cannot have run: the call goes out
// on the next socket, after the replay, and gets its answer there.
//
// The reader role is kept free, so nobody reads the old socket: only the
// failed send can tell the client that it is dead (in production that is
// the moment between a lone call's answer and the watchdog's next tick).
func TestFailedSendRetriedOnNextSocket(t *testing.T) {
	for _, void := range []bool{false, true} {
		name := map[bool]string{false: "call", true: "void"}[void]
		t.Run(name, func(t *testing.T) {
			fe := newFakeEngine(t)
			c, fc := connect(t, fe, sluice.WithFreeRoleKept(), sluice.WithInvocationTimeout(0))
			freeReader(t, c, fc)
			sluice.BreakSocket(c)

			ctx, cancel := context.WithTimeout(t.Context(), waitFor)
			defer cancel()
			type res struct {
				raw json.RawMessage
				err error
			}
			resc := make(chan res, 1)
			go func() {
				if void {
					resc <- res{err: c.TriggerVoid(ctx, "retried", 7)}
					return
				}
				raw, err := c.Trigger(ctx, "retried", 7)
				resc <- res{raw, err}
			}()

			fc2 := fe.accept(t)
			fc2.expect(t, wire.TypeReattach)
			fc2.expectWorkerInfo(t)
			call := fc2.expect(t, wire.TypeInvokeFunction)
			if call.m.FunctionID != "retried" || string(call.m.Data) != "7" {
				t.Fatalf("sent on the next socket: %s", call.raw)
			}
			if void {
				if call.m.InvocationID != "" || call.m.Action == nil || call.m.Action.Type != wire.ActionVoid {
					t.Fatalf("void call sent as %s", call.raw)
				}
			} else {
				fc2.send(&wire.Message{Type: wire.TypeInvocationResult, InvocationID: call.m.InvocationID, Result: []byte(`"again"`)})
			}
			r := <-resc
			if r.err != nil || (!void && string(r.raw) != `"again"`) {
				t.Fatalf("call whose first send failed = %s, %v", r.raw, r.err)
			}
			if n := sluice.PendingCalls(c); n != 0 {
				t.Errorf("%d calls still pending", n)
			}
		})
	}
}
