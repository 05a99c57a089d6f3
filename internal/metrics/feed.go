package metrics

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Invocation is one finished invocation, as the live feed reports it.
type Invocation struct {
	Time           time.Time // when it finished
	FunctionID     string
	Namespace      string // where FunctionID resolved ("" is the default one)
	CallerWorkerID string // "" for the engine (HTTP triggers, queues, modules, the console)
	Duration       time.Duration
	Outcome        int    // OutcomeOK ... OutcomeVoid
	ErrorCode      string // the error's code when Outcome is not ok or void
}

// OutcomeName is the outcome's label value ("ok", "error", ...).
func OutcomeName(o int) string {
	if o < 0 || o >= numOutcomes {
		return "unknown"
	}
	return outcomeNames[o]
}

// Feed fans finished invocations out to subscribers (the console, sluice
// tail). With nobody subscribed, Active is one atomic load and nothing is
// built; a subscriber that does not keep up loses events (counted), so
// publishing never blocks an invocation's goroutine.
type Feed struct {
	subs    atomic.Pointer[[]*Subscription] // copy on write
	mu      sync.Mutex                      // serializes Subscribe/Close
	dropped atomic.Uint64
}

// Subscription receives finished invocations on C.
type Subscription struct {
	C       <-chan Invocation
	c       chan Invocation
	feed    *Feed
	dropped atomic.Uint64
}

// Active reports whether anyone listens: the hot path's only cost.
func (f *Feed) Active() bool {
	p := f.subs.Load()
	return p != nil && len(*p) > 0
}

// Subscribe adds a subscriber whose channel holds up to buffer events.
func (f *Feed) Subscribe(buffer int) *Subscription {
	if buffer < 1 {
		buffer = 1
	}
	c := make(chan Invocation, buffer)
	s := &Subscription{C: c, c: c, feed: f}
	f.mu.Lock()
	defer f.mu.Unlock()
	var next []*Subscription
	if p := f.subs.Load(); p != nil {
		next = append(next, *p...)
	}
	next = append(next, s)
	f.subs.Store(&next)
	return s
}

// Close removes the subscription. Its channel is not closed (a publisher
// may still hold the old list): stop reading it.
func (s *Subscription) Close() {
	f := s.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.subs.Load()
	if p == nil {
		return
	}
	next := make([]*Subscription, 0, len(*p))
	for _, x := range *p {
		if x != s {
			next = append(next, x)
		}
	}
	f.subs.Store(&next)
}

// Dropped is the number of events this subscriber missed because its
// buffer was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Dropped is the number of events missed by all subscribers so far.
func (f *Feed) Dropped() uint64 { return f.dropped.Load() }

// Subscribers is the number of current subscribers.
func (f *Feed) Subscribers() int {
	if p := f.subs.Load(); p != nil {
		return len(*p)
	}
	return 0
}

// Publish hands ev to every subscriber that has room. The strings are
// copied: they may point into a worker's read buffer.
func (f *Feed) Publish(ev Invocation) {
	p := f.subs.Load()
	if p == nil || len(*p) == 0 {
		return
	}
	ev.FunctionID = strings.Clone(ev.FunctionID)
	ev.Namespace = strings.Clone(ev.Namespace)
	ev.CallerWorkerID = strings.Clone(ev.CallerWorkerID)
	ev.ErrorCode = strings.Clone(ev.ErrorCode)
	for _, s := range *p {
		select {
		case s.c <- ev:
		default:
			s.dropped.Add(1)
			f.dropped.Add(1)
		}
	}
}
