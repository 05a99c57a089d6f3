package sluice

import "time"

// Test hooks, also used by the external integration tests.

// KillConn drops the client's current socket without a close frame, as a
// network failure would, and returns once the client has noticed.
func KillConn(c *Client) {
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	if s != nil {
		s.conn.Abort()
		<-s.detached
	}
}

// WithKeepalive shortens the ping interval and idle timeout.
func WithKeepalive(ping, idle time.Duration) Option {
	return func(c *config) { c.pingInterval, c.idleTimeout = ping, idle }
}

// PendingCalls is the number of calls waiting for a result.
func PendingCalls(c *Client) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// Rescues is how many times a watchdog moved a socket away from a handler
// that blocked while running inline.
func Rescues(c *Client) uint64 { return c.rescues.Load() }

// WithFreeRoleKept stops the watchdog from starting a reader while the
// reader role is free, so that the next call reads for itself.
func WithFreeRoleKept() Option { return func(c *config) { c.keepFreeRole = true } }

// ReaderFree reports whether nobody reads the client's socket now (the
// next call will read for itself).
func ReaderFree(c *Client) bool {
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	return s != nil && s.role.running.Load()&1 == 1
}

// OfflineCalls is the number of calls waiting for a connection.
func OfflineCalls(c *Client) int { return int(c.offline.Load()) }

// BreakSocket closes the client's current socket as a failed write does
// (its writer stops; sends fail) and returns at once: unlike KillConn it
// does not wait for a reader to notice, so with the reader role free the
// client still holds the dead session.
func BreakSocket(c *Client) {
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	s.conn.Abort()
	<-s.conn.Done()
}

// WatchdogAsleep reports whether the watchdog of the client's socket is
// asleep (the next inline run wakes it) rather than ticking.
func WatchdogAsleep(c *Client) bool {
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	return s != nil && !s.role.watching.Load()
}
