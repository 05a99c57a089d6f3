package engine

import (
	"strconv"
	"strings"
	"testing"
)

// max_in_flight bounds the activations of an observer that run at once:
// with 2, five observed calls reach the target two at a time, each answer
// letting the next queued one through, none lost. Past the queue
// (maxQueuedActivations) activations are dropped and counted as
// dropped.OVERFLOW. On 44799b3 (max_in_flight accepted, ignored): max_in_flight
// 0 was accepted, and a third activation arrived while two were unanswered.
func TestObserveMaxInFlightQueues(t *testing.T) {
	e := startEngine(t)
	src := obsDial(t, e)
	src.send(`{"type":"registerfunction","id":"mif::s"}`)
	src.send(`{"type":"registerfunction","id":"mif::s2"}`)
	src.noFrame("observeresult")
	w := obsDial(t, e)
	w.send(`{"type":"registerfunction","id":"mif::t"}`)
	w.send(`{"type":"observe","id":"mif","source":{"function_id":"mif::s","deliver":"input"},"target":{"function_id":"mif::t"},"max_in_flight":2}`)
	if r := w.await("observeresult", withID("mif")); r["state"] != "active" {
		t.Fatalf("%v", r)
	}
	w.send(`{"type":"observe","id":"bad","source":{"function_id":"mif::s"},"target":{"function_id":"mif::t"},"max_in_flight":0}`)
	if r := w.await("observeresult", withID("bad")); obsErrCode(r) != "INVALID_ARGS" {
		t.Fatalf("max_in_flight 0: %v", r)
	}
	caller := obsDial(t, e)
	call := func(fn string, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			caller.send(`{"type":"invokefunction","function_id":"` + fn + `","data":` + strconv.Itoa(i) + `,"action":{"type":"void"}}`)
		}
		for i := 0; i < n; i++ {
			src.answer(src.await("invokefunction", invokeOf(fn)), `null`)
		}
		// src's answers ran the activations on its reader: after this
		// round trip they are all made (or queued).
		src.noFrame("none")
	}
	call("mif::s", 5)
	seen := map[string]bool{}
	var running []map[string]any
	take := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			a := w.await("invokefunction", invokeOf("mif::t"))
			if _, ok := a["invocation_id"].(string); !ok {
				t.Fatalf("an activation under max_in_flight is not awaited: %v", a)
			}
			seen[jsonNum(a["data"])] = true
			running = append(running, a)
		}
		w.noFrame("invokefunction")
	}
	take(2)
	for len(seen) < 5 {
		w.answer(running[0], `null`)
		running = running[1:]
		take(1)
	}
	if len(running) != 2 || len(seen) != 5 {
		t.Fatalf("running %d, inputs seen %v", len(running), seen)
	}
	for _, a := range running {
		w.answer(a, `null`)
	}
	w.noFrame("invokefunction")

	// One slot, never freed: 1 running + maxQueuedActivations queued, the
	// rest dropped.
	w.send(`{"type":"registerfunction","id":"mif::t2"}`)
	w.send(`{"type":"observe","id":"mq","source":{"function_id":"mif::s2"},"target":{"function_id":"mif::t2"},"max_in_flight":1}`)
	if r := w.await("observeresult", withID("mq")); r["state"] != "active" {
		t.Fatalf("%v", r)
	}
	call("mif::s2", maxQueuedActivations+4)
	w.await("invokefunction", invokeOf("mif::t2"))
	w.noFrame("invokefunction")
	g := w.obsGet("mq")
	if res := jsonNum(g["result"]); !strings.Contains(res, `"OVERFLOW":3`) {
		t.Fatalf("dropped: %s", res)
	}
}

// An owner's obs.call beyond max_in_flight fails OVERFLOW; its slot is
// free again once the running call's result is back. On 44799b3 the
// second call was forwarded (no OVERFLOW answer).
func TestObserveMaxInFlightOwnerCall(t *testing.T) {
	e := startEngine(t)
	owner := obsDial(t, e)
	owner.announce("owner", true)
	owner.send(`{"type":"registerfunction","id":"mo::s","observe":{"delivery":"owner"}}`)
	owner.await("functionregistered", withID("mo::s"))
	w := obsDial(t, e)
	w.announce("w", true)
	w.send(`{"type":"registerfunction","id":"mo::t"}`)
	w.await("functionregistered", withID("mo::t"))
	w.send(`{"type":"observe","id":"mo","source":{"function_id":"mo::s"},"target":{"function_id":"mo::t"},"max_in_flight":1}`)
	w.await("observeresult", withID("mo"))
	obsAck(t, owner, w, "mo::s", "mo")
	obsCallTo := func(id string) {
		owner.send(`{"type":"invokefunction","invocation_id":"` + id + `","function_id":"mo::t","data":{},"activation":{"observer_id":"mo"}}`)
	}
	result := func(id string) map[string]any {
		return owner.await("invocationresult", func(m map[string]any) bool { return m["invocation_id"] == id })
	}
	obsCallTo("c1")
	act := w.await("invokefunction", invokeOf("mo::t"))
	obsCallTo("c2")
	if r := result("c2"); obsErrCode(r) != "OVERFLOW" {
		t.Fatalf("second call while one runs: %v", r)
	}
	w.answer(act, `"one"`)
	if r := result("c1"); r["result"] != "one" {
		t.Fatalf("c1: %v", r)
	}
	obsCallTo("c3")
	w.answer(w.await("invokefunction", invokeOf("mo::t")), `"three"`)
	if r := result("c3"); r["result"] != "three" {
		t.Fatalf("c3 after the slot came back: %v", r)
	}
}
