package sluice

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/internal/wsconn"
	"github.com/sluicehq/sluice/wire"
)

// readerRole is the reader role of one session: exactly one goroutine at a
// time reads the session's socket, and which one can change (the
// leader/followers pattern). Its holder is one of
//
//   - a background reader (read), started with the session and whenever
//     the socket would otherwise go unread;
//   - a handler running inline on the holder (dispatchInvoke): quick
//     handlers run on the reader's goroutine, because waking a parked
//     goroutine usually wakes a thread on another core, and on small
//     machines that was the largest single cost of a round trip
//     (docs/benchmarks.md);
//   - a caller reading for its own result (readOwn): a call alone in
//     flight reads the socket itself, as a plain WebSocket client does,
//     which made the sequential round trip a third faster;
//   - nobody: after a caller got its result with no other call in
//     flight, the role is left free for the next call, typically made at
//     once, to take back without any hand-off.
//
// The invariants:
//
//  1. running is the role's state: 0 while a goroutine holds the role and
//     reads; an even token while the holder runs a handler inline (that
//     run's token); an odd token while nobody holds it. Whoever swaps a
//     token for 0 owns what follows: the holder when its handler returns
//     (it reads on), a call that takes the free role (takeFree), or the
//     watchdog or handler that hands the socket to a new reader goroutine
//     (handOff); a holder whose token was taken exits when its handler
//     returns. Tokens are never reused (started counts them), so a stale
//     compare-and-swap cannot succeed.
//  2. Only the holder uses rd. A holder stops reading only when
//     the role has moved on (leave; its result handed over with the role;
//     its inline run's token taken by handOff or the watchdog, which start
//     a new reader) or the socket ended.
//  3. A handler running inline never blocks the socket for long: the
//     watchdog (watchdog), ticking every rescueTick while a run goes on or
//     the role is free, starts a new reader when it sees the same token at
//     two ticks. A handler that makes a call (Trigger, Call, Enqueue) hands
//     the socket over at once (the call's handOff), since it is about to
//     wait for a frame itself. A caller reading for its own result never
//     runs a handler inline (the handler could wait for a lock the caller
//     holds, or keep the caller past its deadline).
//  4. A free role is taken within a tick: by the next call, or by a
//     background reader the watchdog starts, so a frame that arrives
//     meanwhile waits 1–2 ms at most. A background reader that reads the
//     result of a lone waiting caller hands the role over with the result
//     (callResult.role); the caller then leaves it as a reader would.
//  5. rd's reads can be cut and resumed (ctlReader, over ws:// and
//     wss:// alike). Whoever fails a waiting call (its context, the
//     default timeout, Close) interrupts rd, so a caller blocked in a read
//     sees it; the next holder goes on where the read stopped.
type readerRole struct {
	c  *Client
	s  *session
	rd *ctlReader // the socket's data messages; used by the holder only

	// running is the role's state (invariant 1).
	running atomic.Uint64
	// started counts tokens handed out; the watchdog sleeps after a tick
	// in which none was.
	started atomic.Uint64
	// watching is set while the watchdog ticks; a run that finds it unset
	// wakes it.
	watching atomic.Bool
	wake     chan struct{}
}

const (
	// inlineLimit is the average handler run time up to which a function
	// runs inline.
	inlineLimit = 50 * time.Microsecond
	// rescueTick is the watchdog's period: a handler that blocks inline
	// holds the socket for one to two ticks.
	rescueTick = time.Millisecond
)

// init readies the role of s, read through rd.
func (r *readerRole) init(c *Client, s *session, rd *ctlReader) {
	r.c, r.s, r.rd = c, s, rd
	r.wake = make(chan struct{}, 1)
}

// start starts the first background reader and the watchdog.
func (r *readerRole) start() {
	go r.read()
	go r.watchdog()
}

// read is a background reader: it reads until the socket ends or the role
// moves to another goroutine.
func (r *readerRole) read() {
	r.readFor(context.Background(), "", nil)
}

// readFor reads while the calling goroutine holds the role. With p nil it
// is a background reader. With p set it is the caller of call id reading
// for its own result: it returns that result (true) and gives the role up,
// or returns false when its call ended otherwise (ctx, timeout, Close: the
// answer is then on p.ch) or the role moved on.
func (r *readerRole) readFor(ctx context.Context, id string, p *pendingCall) (callResult, bool) {
	c, s := r.c, r.s
	for {
		if !r.rd.buffered() {
			// The burst is over: its deferred results go out before
			// the next read may block.
			s.conn.FlushDeferred()
		}
		r.rd.arm(time.Now())
		// After arming: an interrupt that came before the deadline was
		// reset is seen here, one that comes after makes next return.
		if p != nil && (ctx.Err() != nil || len(p.ch) > 0) {
			r.leave()
			return callResult{}, false
		}
		data, err := r.rd.next()
		if err != nil {
			if r.rd.interrupted(err) {
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
				r.leave()
				return callResult{msg: m}, mine // !mine: given up meanwhile
			}
			if c.complete(m, p == nil) {
				return callResult{}, false // the role went with the result
			}
		case wire.TypeInvokeFunction:
			if !r.dispatchInvoke(m, p != nil) {
				return callResult{}, false // the socket has a new reader
			}
		case "observeresult", "observerstatechanged":
			c.observeFrame(data)
		default:
			c.dispatch(s, m)
		}
	}
}

// leave gives up the role after a call: free for the next call when none
// is in flight (the watchdog starts a reader if none comes), otherwise to
// a new background reader, since other callers wait.
func (r *readerRole) leave() {
	r.s.conn.FlushDeferred()
	c := r.c
	c.mu.Lock()
	free := len(c.pending) == 0
	if free {
		r.free()
	}
	c.mu.Unlock()
	if !free {
		go r.read()
	}
}

// readOwn is a call's attempt to read its own result: when it can take the
// free role, it reads until the result is there. ok reports that res is
// the result; otherwise the answer comes on p.ch.
func (r *readerRole) readOwn(ctx context.Context, id string, p *pendingCall) (res callResult, ok bool) {
	if !r.takeFree() {
		return res, false
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, r.rd.interrupt)
		defer stop()
	}
	return r.readFor(ctx, id, p)
}

// interrupt makes a caller blocked reading for itself look at its call
// again (invariant 5).
func (r *readerRole) interrupt() { r.rd.interrupt() }

// runAverage is a function's exponentially weighted average handler run
// time, in nanoseconds (weight 1/8 for the newest run). A function whose
// average reaches inlineLimit runs on a goroutine of its own.
type runAverage struct{ ns atomic.Int64 }

func (a *runAverage) quick() bool { return a.ns.Load() < int64(inlineLimit) }

func (a *runAverage) add(d time.Duration) {
	old := a.ns.Load()
	a.ns.Store(old + (int64(d)-old)/8) // a lost update under concurrency is harmless
}

// dispatchInvoke runs m inline when that is worth it, or on a goroutine.
// It reports whether the calling goroutine still holds the role. A caller
// reading for its own result (caller) never runs a handler inline.
func (r *readerRole) dispatchInvoke(m *wire.Message, caller bool) bool {
	c, s := r.c, r.s
	c.mu.Lock()
	f := c.functions[m.FunctionID]
	c.mu.Unlock()
	if caller || f != nil && !f.avg.quick() {
		go c.invoke(s, m, f, 0, false)
		return true
	}
	// More input of the same burst waits: its results follow this one's.
	more := r.rd.buffered()
	run := r.started.Add(1) << 1
	r.running.Store(run)
	r.watch()
	returned := false
	defer func() {
		// A handler that called runtime.Goexit ends this goroutine: keep
		// the socket read.
		if !returned {
			r.handOff(run)
		}
	}()
	c.invoke(s, m, f, run, more)
	returned = true
	if r.running.CompareAndSwap(run, 0) {
		return true
	}
	// Another reader took the role while the handler ran: the burst this
	// result was deferred for is no longer this goroutine's to finish, and
	// the new reader may already be blocked. Send it now.
	s.conn.FlushDeferred()
	return false
}

// watch makes sure the watchdog ticks.
func (r *readerRole) watch() {
	if !r.watching.Load() && r.watching.CompareAndSwap(false, true) {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// free marks the role as held by nobody.
func (r *readerRole) free() {
	r.running.Store(r.started.Add(1)<<1 | 1)
	r.watch()
}

// takeFree takes the role if nobody holds it.
func (r *readerRole) takeFree() bool {
	v := r.running.Load()
	return v&1 == 1 && r.running.CompareAndSwap(v, 0)
}

// readIfFree starts a background reader if nobody holds the role.
func (r *readerRole) readIfFree() {
	if r.takeFree() {
		go r.read()
	}
}

// handOff starts a new reader if run is still the one going on inline on
// the current holder.
func (r *readerRole) handOff(run uint64) {
	// A handler that blocks (or waits for a call) must not hold back the
	// results deferred before it.
	r.s.conn.FlushDeferred()
	if run != 0 && r.running.CompareAndSwap(run, 0) {
		go r.read()
	}
}

// watchdog ends with the session. It ticks while runs go on inline or the
// role is free, and sleeps otherwise.
func (r *readerRole) watchdog() {
	c, s := r.c, r.s
	t := time.NewTimer(rescueTick)
	t.Stop()
	for {
		select {
		case <-r.wake:
		case <-s.done:
			return
		}
		lastRun, lastStarted := r.running.Load(), r.started.Load()
		for ticking := true; ticking; {
			t.Reset(rescueTick)
			select {
			case <-t.C:
			case <-s.done:
				t.Stop()
				return
			}
			run, started := r.running.Load(), r.started.Load()
			if run&1 == 1 && c.cfg.keepFreeRole {
				run = 0 // tests: leave the role to the next call
			}
			if run != 0 && run == lastRun && r.running.CompareAndSwap(run, 0) {
				// The same token at two ticks: a handler blocks, or nobody
				// took the free role.
				if run&1 == 0 {
					c.rescues.Add(1) // before the new reader can answer anything
				}
				go r.read()
				run = 0
			}
			if run == 0 && started == lastStarted {
				// Nothing ran for a tick: sleep until a run wakes us. A run
				// that started before watching was cleared did not wake us,
				// so look again.
				r.watching.Store(false)
				ticking = r.started.Load() != started && r.watching.CompareAndSwap(false, true)
			}
			lastRun, lastStarted = run, started
		}
	}
}
