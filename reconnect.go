// Reconnecting: the connection loop (run), the replay of everything the
// client holds on each new socket (attach), forgetting a dead socket and
// failing the calls sent on it (detach), and the backoff between attempts.

package sluice

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"time"

	"github.com/sluicehq/sluice/wire"
)

// run is the connection loop: dial, replay registrations, keep the socket
// alive, and start over with backoff when it drops.
func (c *Client) run(first chan<- struct{}) {
	defer close(c.done)
	attempt := 0
	for {
		// Snapshot the previous identity before dialing: the new socket's
		// workerregistered may arrive before the replay is sent.
		c.mu.Lock()
		prevID, prevToken := c.workerID, c.reattachToken
		c.mu.Unlock()

		s, err := c.dial()
		if err == nil {
			attempt = 0
			c.attach(s, prevID, prevToken)
			if first != nil {
				close(first)
				first = nil
			}
			c.serve(s)
			c.detach(s)
		} else if c.ctx.Err() == nil {
			if first != nil && permanentDialErr(err) {
				// Retrying cannot cure it: Connect says so at once
				// instead of when its context ends.
				c.firstErr <- err
				return
			}
			c.mu.Lock()
			c.lastDialErr = err
			c.mu.Unlock()
			c.log.Warn("sluice: connecting to engine failed", "url", c.url, "attempt", attempt+1, "err", err)
		}
		if c.ctx.Err() != nil {
			return
		}
		d := backoff(c.cfg.backoffMin, c.cfg.backoffMax, attempt)
		attempt++
		c.log.Info("sluice: reconnecting", "url", c.url, "in", d)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return
		}
	}
}

// attach sends the replay (reattach, trigger types, functions, triggers,
// then engine::workers::register) and publishes s for calls. Calls that
// waited for a connection go out after the replay.
func (c *Client) attach(s *session, prevID, prevToken string) {
	c.regMu.Lock()
	defer c.regMu.Unlock()

	var msgs [][]byte
	if prevID != "" {
		b, _ := wire.Marshal(&wire.Message{Type: wire.TypeReattach, PreviousWorkerID: prevID, ReattachToken: prevToken})
		msgs = append(msgs, b)
	}
	c.mu.Lock()
	msgs = appendInOrder(msgs, c.triggerTypes)
	msgs = appendInOrder(msgs, c.functions)
	msgs = appendInOrder(msgs, c.triggers)
	for _, o := range c.observers {
		msgs = append(msgs, o.frame) // a replay: the engine keeps the same observer
	}
	c.mu.Unlock()
	msgs = append(msgs, c.workerInfoMessage())

	for _, b := range msgs {
		if err := s.send(c.ctx, b); err != nil {
			// The socket died (or Close was called); serve notices and
			// the next connection replays everything again.
			break
		}
	}

	c.mu.Lock()
	if !c.closed {
		c.sess = s
		close(c.up)
	}
	c.mu.Unlock()
	c.log.Info("sluice: connected to engine", "url", c.url)
}

type registration interface {
	order() uint64
	message() []byte
}

func appendInOrder[T registration](msgs [][]byte, m map[string]T) [][]byte {
	regs := make([]T, 0, len(m))
	for _, r := range m {
		regs = append(regs, r)
	}
	slices.SortFunc(regs, func(a, b T) int { return cmp.Compare(a.order(), b.order()) })
	for _, r := range regs {
		msgs = append(msgs, r.message())
	}
	return msgs
}

// detach forgets s and fails the calls that were sent on it: their answers
// can never reach us (the engine reports invocation_stopped to the dead
// socket), so waiting for them would only burn the caller's timeout.
func (c *Client) detach(s *session) {
	defer close(s.detached)
	s.conn.Abort()
	<-s.conn.Done()
	var stopped []*pendingCall
	c.mu.Lock()
	if c.sess == s {
		c.sess = nil
		c.up = make(chan struct{})
	}
	for id, p := range c.pending {
		if p.sess == s {
			delete(c.pending, id)
			stopped = append(stopped, p)
		}
	}
	c.mu.Unlock()
	for _, p := range stopped {
		p.ch <- callResult{err: stoppedError(p.functionID)}
	}
	if c.ctx.Err() == nil {
		c.log.Warn("sluice: disconnected from engine", "url", c.url, "failed_calls", len(stopped))
	}
}

// backoff returns min·2^attempt capped at max, jittered by ±30 %.
func backoff(min, max time.Duration, attempt int) time.Duration {
	d := max
	if attempt < 32 {
		if v := min << attempt; v > 0 && v < max {
			d = v
		}
	}
	return time.Duration(float64(d) * (1 + 0.3*(2*randFloat()-1)))
}

func randFloat() float64 { return rand.Float64() }

// dialStatusError is a handshake the engine answered with an HTTP status
// other than 101.
type dialStatusError struct {
	err    error
	code   int
	status string
}

func (e *dialStatusError) Error() string { return fmt.Sprintf("%v (HTTP %s)", e.err, e.status) }

func (e *dialStatusError) Unwrap() error { return e.err }

// permanentDialErr reports dial failures that no retry cures: the engine
// refused the credentials (401, 403) or its certificate is not trusted.
// Connect fails on them at once; a client that was connected keeps
// retrying them (the engine may come back with other keys).
func permanentDialErr(err error) bool {
	var st *dialStatusError
	if errors.As(err, &st) {
		return st.code == http.StatusUnauthorized || st.code == http.StatusForbidden
	}
	var verr *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var inval x509.CertificateInvalidError
	return errors.As(err, &verr) || errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &inval)
}
