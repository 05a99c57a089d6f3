package metrics

import (
	"sync"
	"testing"
	"time"
)

func TestFeedFanOutAndClose(t *testing.T) {
	var f Feed
	if f.Active() {
		t.Fatal("an empty feed is active")
	}
	f.Publish(Invocation{FunctionID: "nobody"}) // no subscriber: nothing happens
	a, b := f.Subscribe(4), f.Subscribe(4)
	if !f.Active() || f.Subscribers() != 2 {
		t.Fatalf("active %v, subscribers %d", f.Active(), f.Subscribers())
	}
	f.Publish(Invocation{FunctionID: "f", CallerWorkerID: "w", Duration: time.Millisecond, Outcome: OutcomeError, ErrorCode: "boom"})
	for _, s := range []*Subscription{a, b} {
		ev := <-s.C
		if ev.FunctionID != "f" || ev.CallerWorkerID != "w" || ev.Duration != time.Millisecond || OutcomeName(ev.Outcome) != "error" || ev.ErrorCode != "boom" {
			t.Fatalf("got %+v", ev)
		}
	}
	a.Close()
	if f.Subscribers() != 1 {
		t.Fatalf("subscribers after Close: %d", f.Subscribers())
	}
	f.Publish(Invocation{FunctionID: "g"})
	select {
	case ev := <-a.C:
		t.Fatalf("closed subscription got %+v", ev)
	default:
	}
	if ev := <-b.C; ev.FunctionID != "g" {
		t.Fatalf("got %+v", ev)
	}
	b.Close()
	if f.Active() {
		t.Fatal("feed active after the last Close")
	}
}

// A subscriber that does not read loses events, counted, and never blocks
// the publisher; others still get everything.
func TestFeedSlowSubscriberDrops(t *testing.T) {
	var f Feed
	slow, fast := f.Subscribe(2), f.Subscribe(1000)
	done := make(chan struct{})
	go func() {
		for range 100 {
			f.Publish(Invocation{FunctionID: "f"})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked on a full subscriber")
	}
	if slow.Dropped() != 98 || f.Dropped() != 98 || fast.Dropped() != 0 || len(fast.C) != 100 {
		t.Fatalf("slow dropped %d, feed %d, fast dropped %d with %d queued", slow.Dropped(), f.Dropped(), fast.Dropped(), len(fast.C))
	}
}

func TestFeedConcurrent(t *testing.T) {
	var f Feed
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				s := f.Subscribe(8)
				f.Publish(Invocation{FunctionID: "x"})
				s.Close()
			}
		})
	}
	wg.Wait()
	if f.Subscribers() != 0 {
		t.Fatalf("subscribers left: %d", f.Subscribers())
	}
}

func TestFunctionStats(t *testing.T) {
	m := New()
	f := m.Function("f", true)
	start := time.Now().Add(-3 * time.Millisecond)
	for range 3 {
		m.Started()
		f.Done(m, start, OutcomeOK)
	}
	m.Started()
	f.Done(m, start, OutcomeTimeout)
	f.Void()
	st := m.FunctionStats()["f"]
	if st.Count != 5 || st.Errors != 1 || st.Outcomes["ok"] != 3 || st.Outcomes["timeout"] != 1 || st.Outcomes["void"] != 1 {
		t.Fatalf("stats %+v", st)
	}
	if st.P50Seconds != 0.005 || st.MeanSeconds < 0.003 {
		t.Fatalf("latency %+v", st)
	}
	m.HTTP("GET /a", 200, time.Millisecond)
	m.HTTP("GET /a", 502, time.Millisecond)
	hs := m.HTTPStats()
	if len(hs) != 1 || hs[0].Count != 2 || hs[0].Errors != 1 || hs[0].ByStatus["200"] != 1 || hs[0].ByStatus["502"] != 1 {
		t.Fatalf("http stats %+v", hs)
	}
}
