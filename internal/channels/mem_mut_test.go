package channels

import "testing"

// TestMemWaitersCountedBack: a reservation that waited for the hub's budget
// no longer counts as a waiter once granted or stopped, so that releases
// stop paying for a broadcast nobody listens to (kills mem.go:97
// INVERT_NEGATIVES, `waiters.Add(-1)` → `Add(+1)`: every wait left the count
// one higher, for ever).
func TestMemWaitersCountedBack(t *testing.T) {
	const max = 1 << 20
	g, waited := newWaitBudget(max)
	a, b := newChanMem(g, 4<<20), newChanMem(g, 4<<20)
	if !a.reserve(max, 0, nil, nil) {
		t.Fatal("a frame of the whole budget did not pass")
	}
	// Granted after a wait.
	done := reserveAsync(b, 512<<10, 0, nil)
	expectWaiting(t, done, waited, "a big frame with the budget spent")
	if n := g.waiters.Load(); n != 1 {
		t.Fatalf("%d waiters counted during the wait, want 1", n)
	}
	a.release(max)
	expectGranted(t, done, "the big frame once the budget came back")
	if n := g.waiters.Load(); n != 0 {
		t.Fatalf("%d waiters counted after the wait was granted", n)
	}
	// Stopped during a wait.
	b.release(512 << 10)
	if !a.reserve(max, 0, nil, nil) {
		t.Fatal("a frame of the whole budget did not pass")
	}
	stop := make(chan struct{})
	c := newChanMem(g, 4<<20)
	done = reserveAsync(c, 512<<10, 0, stop)
	expectWaiting(t, done, waited, "a second big frame with the budget spent")
	close(stop)
	if ok := <-done; ok {
		t.Fatal("a stopped reservation was granted")
	}
	if n := g.waiters.Load(); n != 0 {
		t.Fatalf("%d waiters counted after the wait was stopped", n)
	}
	a.release(max)
	if g.Used() != 0 {
		t.Fatalf("budget: %d bytes charged after every release", g.Used())
	}
}

// TestMemOverdraftEndWithoutWaiters: the end of the message that held the
// overdraft wakes the budget's waiters only when there are some: a wake-up
// replaces the budget's channel, an allocation per fragmented message
// otherwise (kills mem.go:182 CONDITIONALS_BOUNDARY, `waiters > 0` →
// `>= 0`).
func TestMemOverdraftEndWithoutWaiters(t *testing.T) {
	const max = 1 << 20
	g := newBudget(max)
	a := newChanMem(g, 4<<20)
	if !a.reserve(bufCap, 0, nil, nil) || !a.reserve(max-bufCap, bufCap, nil, nil) || !a.reserve(max/2, max, nil, nil) {
		t.Fatal("a lone message could not grow into the overdraft")
	}
	if g.over.Load() != a {
		t.Fatal("the message past the budget does not hold the overdraft")
	}
	before := g.freed
	a.endMessage()
	if g.over.Load() != nil {
		t.Fatal("the overdraft is still held after the message ended")
	}
	if g.freed != before {
		t.Fatal("the end of the message woke the budget's waiters with none waiting")
	}
	a.release(max + max/2)
	if g.Used() != 0 {
		t.Fatalf("budget: %d bytes charged after every release", g.Used())
	}
}
