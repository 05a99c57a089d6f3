package sluice

import (
	"context"
	"errors"
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
