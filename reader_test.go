package sluice_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/wire"
)

// A call alone in flight reads the socket itself (reader.go). These tests
// keep the reader role free between calls (WithFreeRoleKept), so every
// call below that starts with ReaderFree true is read by its own caller.

// answerNext answers the next invokefunction the client sends.
func answerNext(t *testing.T, fc *fakeConn, result string) frame {
	t.Helper()
	call := fc.expect(t, wire.TypeInvokeFunction)
	fc.sendRaw(`{"type":"invocationresult","invocation_id":"` + call.m.InvocationID + `","function_id":"` + call.m.FunctionID + `","result":` + result + `}`)
	return call
}

// freeReader makes one answered call, after which the role is free.
func freeReader(t *testing.T, c *sluice.Client, fc *fakeConn) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := c.Trigger(context.Background(), "warm", nil)
		done <- err
	}()
	answerNext(t, fc, `1`)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !sluice.ReaderFree(c) {
		t.Fatal("reader role not free after a lone call")
	}
}

func TestCallerReadsOwnResultAndServesOnTheWay(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe, sluice.WithFreeRoleKept())
	must(t, c.RegisterRaw("echo", echoRaw))
	fc.expect(t, wire.TypeRegisterFunction)
	freeReader(t, c, fc)

	type res struct {
		raw []byte
		err error
	}
	done := make(chan res, 1)
	go func() {
		raw, err := c.Trigger(context.Background(), "remote", 5)
		done <- res{raw, err}
	}()
	call := fc.expect(t, wire.TypeInvokeFunction)
	// While the caller reads, an invocation and a ping arrive before its
	// result: both are served by the caller's goroutine.
	fc.sendRaw(`{"type":"invokefunction","invocation_id":"e1","function_id":"echo","data":9}`)
	if r := fc.expect(t, wire.TypeInvocationResult); r.m.InvocationID != "e1" || string(r.m.Result) != `{"data":9}` {
		t.Fatalf("invocation served while a caller reads: %s", r.raw)
	}
	fc.sendRaw(`{"type":"invocationresult","invocation_id":"` + call.m.InvocationID + `","result":"five"}`)
	r := <-done
	if r.err != nil || string(r.raw) != `"five"` {
		t.Fatalf("own result: %s, %v", r.raw, r.err)
	}
	if !sluice.ReaderFree(c) {
		t.Error("role not free again after the call")
	}
}

func TestCallerReadingIsInterrupted(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe, sluice.WithFreeRoleKept(), sluice.WithInvocationTimeout(100*time.Millisecond))
	freeReader(t, c, fc)

	// Its context's deadline: nobody answers.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Trigger(ctx, "silent", nil)
	var se *sluice.Error
	if !errors.As(err, &se) || se.Code != sluice.CodeTimeout {
		t.Fatalf("ctx deadline while reading: %v", err)
	}
	fc.expect(t, wire.TypeInvokeFunction)

	// The client's default timeout (the sweeper), Background context.
	freeReader(t, c, fc)
	if _, err := c.Trigger(context.Background(), "silent", nil); !errors.As(err, &se) || se.Code != sluice.CodeTimeout {
		t.Fatalf("default timeout while reading: %v", err)
	}
	fc.expect(t, wire.TypeInvokeFunction)

	// The socket still works after the interrupted reads.
	freeReader(t, c, fc)
}

func TestCallerReadingSeesSocketEnd(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe, sluice.WithFreeRoleKept())
	freeReader(t, c, fc)
	done := make(chan error, 1)
	go func() {
		_, err := c.Trigger(context.Background(), "silent", nil)
		done <- err
	}()
	fc.expect(t, wire.TypeInvokeFunction)
	fc.kill()
	var se *sluice.Error
	if err := <-done; !errors.As(err, &se) || se.Code != sluice.CodeInvocationStopped {
		t.Fatalf("socket killed while the caller reads: %v", err)
	}

	// And Close while a caller reads on the new socket.
	fc = fe.accept(t)
	fc.expect(t, wire.TypeReattach)
	fc.expectWorkerInfo(t)
	fc.sync(t)
	freeReader(t, c, fc)
	go func() {
		_, err := c.Trigger(context.Background(), "silent", nil)
		done <- err
	}()
	fc.expect(t, wire.TypeInvokeFunction)
	c.Close()
	if err := <-done; !errors.Is(err, sluice.ErrClosed) {
		t.Fatalf("Close while the caller reads: %v", err)
	}
}

// An invocation that arrives while a caller reads for its own result runs
// on a goroutine of its own, never on the caller's: here the handler needs
// a lock the caller holds around Trigger, which would deadlock otherwise.
func TestCallerReadingDoesNotRunHandlers(t *testing.T) {
	fe := newFakeEngine(t)
	c, fc := connect(t, fe, sluice.WithFreeRoleKept())
	var mu sync.Mutex
	started := make(chan struct{})
	must(t, c.RegisterRaw("locked", func(context.Context, *sluice.Invocation) (json.RawMessage, error) {
		close(started)
		mu.Lock()
		defer mu.Unlock()
		return json.RawMessage(`"got the lock"`), nil
	}))
	fc.expect(t, wire.TypeRegisterFunction)
	freeReader(t, c, fc)

	done := make(chan error, 1)
	go func() {
		mu.Lock()
		defer mu.Unlock()
		_, err := c.Trigger(context.Background(), "remote", nil)
		done <- err
	}()
	call := fc.expect(t, wire.TypeInvokeFunction)
	fc.sendRaw(`{"type":"invokefunction","invocation_id":"l1","function_id":"locked","data":1}`)
	<-started
	fc.sendRaw(`{"type":"invocationresult","invocation_id":"` + call.m.InvocationID + `","result":2}`)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitFor):
		t.Fatal("caller never returned: the handler ran on its goroutine")
	}
	if r := fc.expect(t, wire.TypeInvocationResult); r.m.InvocationID != "l1" || string(r.m.Result) != `"got the lock"` {
		t.Fatalf("handler result: %s", r.raw)
	}
}
