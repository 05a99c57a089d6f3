package sluice

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/internal/wsconn"
	"github.com/sluicehq/sluice/wire"
)

// The reader role. Exactly one goroutine at a time reads a session's
// socket, and which one can change (the leader/followers pattern):
//
//   - a background reader (read), started when the session starts and
//     whenever the socket would otherwise go unread;
//   - a handler running inline on a reader (inline.go);
//   - a caller waiting for its result: a call that is alone in flight
//     reads the socket itself, so its result needs no hand-off from another
//     goroutine. Waking a parked goroutine usually wakes a thread on
//     another core; reading the socket yourself is what a plain WebSocket
//     client does, and it made the sequential round trip a third faster.
//
// A caller that got its result while holding the role leaves the socket
// unread for a moment (the role is "free") if no other call is in flight:
// its next call, typically made at once, takes the role back without any
// hand-off. The session's watchdog starts a background reader when the role
// stays free for a tick (1–2 ms), and a background reader that reads the
// result of a lone parked caller hands the role over with the result.
//
// A caller blocked in a read must be interruptible (its context, the
// default timeout) and leave the socket where the next holder can go on;
// callers only read on sockets that ctlReader reads (ws://). On wss:// a
// background reader always reads.

// read is a background reader of s: it reads until the socket ends or the
// role moves to another goroutine.
func (c *Client) read(s *session) {
	c.readFor(context.Background(), s, "", nil)
}

// readFor reads s while the calling goroutine holds the reader role. With
// p nil it is a background reader. With p set it is the caller of call id
// reading for its own result: it returns that result (true) and gives the
// role up, or returns false when its call ended otherwise (ctx, timeout,
// Close: the answer is then on p.ch) or the role moved on.
func (c *Client) readFor(ctx context.Context, s *session, id string, p *pendingCall) (callResult, bool) {
	for {
		s.src.arm(time.Now())
		// After arming: an interrupt that came before the deadline was
		// reset is seen here, one that comes after makes next return.
		if p != nil && (ctx.Err() != nil || len(p.ch) > 0) {
			c.leaveRole(s)
			return callResult{}, false
		}
		data, err := s.src.next()
		if err != nil {
			if s.rd != nil && s.rd.interrupted(err) {
				continue
			}
			if errors.Is(err, wsconn.ErrFrameTooLarge) {
				c.log.Warn("sluice: dropped oversized frame from engine", "limit", maxFrameSize)
				continue
			}
			if c.ctx.Err() == nil {
				c.log.Debug("sluice: engine socket ended", "err", err)
			}
			s.end()
			return callResult{}, false
		}
		if wire.IsBlank(data) {
			continue
		}
		m := new(wire.Message)
		if err := wire.Decode(data, m); err != nil {
			c.log.Warn("sluice: undecodable frame from engine", "err", err)
			continue
		}
		switch m.Type {
		case wire.TypeInvocationResult:
			if p != nil && m.InvocationID == id {
				c.mu.Lock()
				mine := c.pending[id] == p
				if mine {
					delete(c.pending, id)
				}
				c.mu.Unlock()
				c.leaveRole(s)
				return callResult{msg: m}, mine // !mine: given up meanwhile
			}
			if c.complete(m, p == nil && s.rd != nil) {
				return callResult{}, false // the role went with the result
			}
		case wire.TypeInvokeFunction:
			if !c.dispatchInvoke(s, m, p != nil) {
				return callResult{}, false // the socket has a new reader
			}
		case "observeresult", "observerstatechanged":
			c.observeFrame(data)
		default:
			c.dispatch(s, m)
		}
	}
}

// leaveRole gives up the reader role after a call: free for the next call
// when none is in flight (the watchdog starts a reader if none comes),
// otherwise to a new background reader, since other callers wait.
func (c *Client) leaveRole(s *session) {
	c.mu.Lock()
	free := len(c.pending) == 0
	if free {
		s.guard.free()
	}
	c.mu.Unlock()
	if !free {
		go c.read(s)
	}
}

// readOwn is a call's attempt to read its own result: when it can take the
// free reader role of s, it reads until the result is there. ok reports
// that r is the result; otherwise the answer comes on p.ch.
func (c *Client) readOwn(ctx context.Context, s *session, id string, p *pendingCall) (r callResult, ok bool) {
	if s.rd == nil || !s.guard.takeFree() {
		return r, false
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, s.rd.interrupt)
		defer stop()
	}
	return c.readFor(ctx, s, id, p)
}

// Short handlers run inline on the socket's reader goroutine. Starting a
// goroutine per invocation costs little CPU, but waking it usually wakes an
// idle thread on another core, and on small machines that was the largest
// single cost of a round trip (docs/benchmarks.md).
//
// Inline is only for handlers that have been quick: each function keeps a
// moving average of its handler's run time, and a function whose average
// reaches inlineLimit runs on a goroutine of its own, as every handler did
// before. A handler that blocks while inline must not stall the socket, so
// each session has a watchdog: when the same run is still going at two
// ticks in a row, it starts a new reader goroutine, and the blocked one
// sends its result when the handler returns and then exits. A handler that
// makes a call of its own (Trigger, Call, Enqueue) hands the reader over at
// once, since it is about to wait for a frame.

const (
	// inlineLimit is the average handler run time up to which a function
	// runs inline.
	inlineLimit = 50 * time.Microsecond
	// rescueTick is the watchdog's period: a handler that blocks inline
	// holds the socket for one to two ticks.
	rescueTick = time.Millisecond
)

// readerGuard coordinates the reader role of a session between the reader,
// handlers running inline on it, and the watchdog.
type readerGuard struct {
	// running is 0 while a goroutine holds the reader role and reads. An
	// even number means the holder is running a handler inline (that run's
	// token); an odd one, that nobody holds the role (reader.go). Whoever
	// swaps a token for 0 owns what follows: the reader when its handler
	// returns (it goes on reading), a call that takes the free role, or the
	// watchdog or handler that hands the socket to a new reader goroutine
	// (a holder whose run was taken exits after it).
	running atomic.Uint64
	// started counts tokens handed out; the watchdog sleeps after a tick
	// in which none was.
	started atomic.Uint64
	// watching is set while the watchdog ticks; a run that finds it unset
	// wakes it.
	watching atomic.Bool
	wake     chan struct{}
}

// runAverage is a function's exponentially weighted average handler run
// time, in nanoseconds (weight 1/8 for the newest run).
type runAverage struct{ ns atomic.Int64 }

func (a *runAverage) quick() bool { return a.ns.Load() < int64(inlineLimit) }

func (a *runAverage) add(d time.Duration) {
	old := a.ns.Load()
	a.ns.Store(old + (int64(d)-old)/8) // a lost update under concurrency is harmless
}

// dispatchInvoke runs m inline when that is worth it, or on a goroutine.
// It reports whether the calling goroutine still owns the reader role.
// A caller reading for its own result (caller) never runs a handler
// inline: the handler could block on something the caller's code holds,
// or delay the caller past its deadline.
func (c *Client) dispatchInvoke(s *session, m *wire.Message, caller bool) bool {
	c.mu.Lock()
	f := c.functions[m.FunctionID]
	c.mu.Unlock()
	if caller || f != nil && !f.avg.quick() {
		go c.invoke(s, m, f, 0)
		return true
	}
	g := &s.guard
	run := g.started.Add(1) << 1
	g.running.Store(run)
	g.watch()
	returned := false
	defer func() {
		// A handler that called runtime.Goexit ends this goroutine: keep
		// the socket read.
		if !returned {
			c.handOff(s, run)
		}
	}()
	c.invoke(s, m, f, run)
	returned = true
	return g.running.CompareAndSwap(run, 0)
}

// watch makes sure the watchdog ticks.
func (g *readerGuard) watch() {
	if !g.watching.Load() && g.watching.CompareAndSwap(false, true) {
		select {
		case g.wake <- struct{}{}:
		default:
		}
	}
}

// free marks the reader role as held by nobody.
func (g *readerGuard) free() {
	g.running.Store(g.started.Add(1)<<1 | 1)
	g.watch()
}

// takeFree takes the reader role if nobody holds it.
func (g *readerGuard) takeFree() bool {
	v := g.running.Load()
	return v&1 == 1 && g.running.CompareAndSwap(v, 0)
}

// handOff starts a new reader for s if run is still the one going on
// inline on the current reader.
func (c *Client) handOff(s *session, run uint64) {
	if run != 0 && s.guard.running.CompareAndSwap(run, 0) {
		go c.read(s)
	}
}

// watch is s's watchdog; it ends with the session. It ticks while runs go
// on inline or the role is free, and sleeps otherwise.
func (c *Client) watch(s *session) {
	g := &s.guard
	t := time.NewTimer(rescueTick)
	t.Stop()
	for {
		select {
		case <-g.wake:
		case <-s.done:
			return
		}
		lastRun, lastStarted := g.running.Load(), g.started.Load()
		for ticking := true; ticking; {
			t.Reset(rescueTick)
			select {
			case <-t.C:
			case <-s.done:
				t.Stop()
				return
			}
			run, started := g.running.Load(), g.started.Load()
			if run&1 == 1 && c.cfg.keepFreeRole {
				run = 0 // tests: leave the role to the next call
			}
			if run != 0 && run == lastRun && g.running.CompareAndSwap(run, 0) {
				// The same token at two ticks: a handler blocks, or nobody
				// took the free role.
				if run&1 == 0 {
					c.rescues.Add(1) // before the new reader can answer anything
				}
				go c.read(s)
				run = 0
			}
			if run == 0 && started == lastStarted {
				// Nothing ran for a tick: sleep until a run wakes us. A run
				// that started before watching was cleared did not wake us,
				// so look again.
				g.watching.Store(false)
				ticking = g.started.Load() != started && g.watching.CompareAndSwap(false, true)
			}
			lastRun, lastStarted = run, started
		}
	}
}
