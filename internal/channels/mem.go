package channels

import (
	"sync"
	"sync/atomic"
)

// Memory accounting. Every frame on its way through a channel is charged
// the capacity of its buffer (what it really pins, so a 1-byte frame in a
// pooled buffer costs bufCap) from the moment its writer reserves it, before
// the payload is read from the socket, until the reader's side releases it
// after writing it out. Two bounds apply:
//
//   - per channel (chanMem.max): a frame is admitted while the channel's
//     other frames and it fit, or when the channel holds nothing else, so a
//     frame bigger than the bound still passes, alone;
//   - per hub (budget.max), over all channels: a frame is admitted while it
//     fits. When the budget is spent, a channel that holds nothing may still
//     take one pooled-size frame (at most bufCap), so that every channel keeps
//     moving at its reader's pace however many others are stalled; bigger
//     frames wait for budget.
//
// A writer that may not go on simply waits, without reading its socket: TCP
// holds its peer back. Messages that arrive in fragments grow their charge
// fragment by fragment; since several half-read messages could then hold
// the whole budget and wait for each other, one of them at a time (the
// budget's "overdraft" holder) may grow past the budget, by at most one
// message. The overdraft is only handed out while the budget is not
// overdrawn, so the hub's frames never hold more than max + MaxFrameSize +
// bufCap per channel that holds nothing else.

// budget is the byte budget shared by every channel of a hub.
type budget struct {
	max     int64
	used    atomic.Int64
	over    atomic.Pointer[chanMem] // the message allowed past max, if any
	waiters atomic.Int32

	mu    sync.Mutex
	freed chan struct{} // closed (and replaced) when bytes come back while someone waits

	onWait func() // test hook: a reservation has to wait
}

func newBudget(max int64) *budget {
	return &budget{max: max, freed: make(chan struct{})}
}

// Used returns the bytes charged to frames right now.
func (g *budget) Used() int64 { return g.used.Load() }

// take charges n bytes if the budget allows it. small: the channel holds
// nothing and n <= bufCap (always admitted); cont: n grows a message
// already under way (may take the overdraft).
func (g *budget) take(m *chanMem, n int64, small, cont bool) bool {
	for {
		u := g.used.Load()
		if u+n > g.max && !small {
			break
		}
		if g.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
	if cont && (g.over.Load() == m || (g.used.Load() <= g.max && g.over.CompareAndSwap(nil, m))) {
		g.used.Add(n)
		return true
	}
	return false
}

func (g *budget) give(n int64) {
	g.used.Add(-n)
	if g.waiters.Load() > 0 {
		g.broadcast()
	}
}

func (g *budget) broadcast() {
	g.mu.Lock()
	close(g.freed)
	g.freed = make(chan struct{})
	g.mu.Unlock()
}

// wait registers a waiter and returns the channel that is closed on the
// next release; the caller must re-check its condition after wait and call
// unwait when done.
func (g *budget) wait() <-chan struct{} {
	g.waiters.Add(1)
	g.mu.Lock()
	c := g.freed
	g.mu.Unlock()
	return c
}

func (g *budget) unwait() { g.waiters.Add(-1) }

// chanMem is one channel's share of the budget. Exactly one goroutine
// reserves (the channel's writer); any goroutine may release.
type chanMem struct {
	g       *budget
	max     int64
	used    atomic.Int64
	waiting atomic.Bool
	freed   chan struct{} // capacity 1: a release while the writer waits
}

func newChanMem(g *budget, max int64) *chanMem {
	return &chanMem{g: g, max: max, freed: make(chan struct{}, 1)}
}

// reserve charges n more bytes for the message being read, of which held
// bytes are already charged, blocking while the bounds do not allow it.
// It returns false if stop or stop2 (either may be nil) is closed first.
func (m *chanMem) reserve(n, held int64, stop, stop2 <-chan struct{}) bool {
	r := m.tryReserve(n, held)
	for r != granted {
		// Announce the wait, then re-check: a release either sees the
		// announcement or happened before the re-check. The channel's own
		// releases always wake us; the budget's only when it is what we
		// wait for (each wake-up there costs a broadcast).
		m.waiting.Store(true)
		var gc <-chan struct{}
		if r == waitBudget {
			gc = m.g.wait()
		}
		again := m.tryReserve(n, held)
		if again == r {
			if m.g.onWait != nil {
				m.g.onWait()
			}
			select {
			case <-m.freed:
			case <-gc:
			case <-stop:
			case <-stop2:
			}
		}
		if gc != nil {
			m.g.unwait()
		}
		m.waiting.Store(false)
		if again == granted {
			return true
		}
		select {
		case <-stop:
			return false
		case <-stop2:
			return false
		default:
		}
		r = m.tryReserve(n, held)
	}
	return true
}

// Outcomes of tryReserve.
const (
	granted    = iota
	waitOwn    // the channel's own frames fill its bound
	waitBudget // the hub's budget is spent
)

func (m *chanMem) tryReserve(n, held int64) int {
	u := m.used.Load()
	alone := u == held // nothing else of this channel is charged
	if !alone && u+n > m.max {
		return waitOwn
	}
	if !m.g.take(m, n, alone && held == 0 && n <= bufCap, held > 0) {
		return waitBudget
	}
	m.used.Add(n)
	return granted
}

// endMessage says the message being read is complete (or abandoned): the
// overdraft, if this channel held it, goes to the next one that needs it.
func (m *chanMem) endMessage() {
	if m.g.over.Load() == m && m.g.over.CompareAndSwap(m, nil) && m.g.waiters.Load() > 0 {
		m.g.broadcast()
	}
}

// release gives n bytes back.
func (m *chanMem) release(n int64) {
	m.used.Add(-n)
	m.g.give(n)
	if m.waiting.Load() {
		select {
		case m.freed <- struct{}{}:
		default:
		}
	}
}
