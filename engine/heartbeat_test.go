package engine

import (
	"testing"
	"time"
)

// TestHeartbeatPeriod: workers are checked every quarter of the idle
// timeout (so a silent one is pinged three times before it goes), at most
// every 10 ms.
func TestHeartbeatPeriod(t *testing.T) {
	for idle, want := range map[time.Duration]time.Duration{
		4 * time.Second: time.Second, time.Minute: 15 * time.Second, 20 * time.Millisecond: 10 * time.Millisecond,
	} {
		if got := heartbeatPeriod(idle); got != want {
			t.Errorf("heartbeatPeriod(%v) = %v, want %v", idle, got, want)
		}
	}
}

// TestSilentWorkerDroppedAtIdle: a worker from which nothing arrived for
// exactly worker_idle_timeout is disconnected (the checks are driven here
// with their own clock; the engine's loop ticks once an hour).
func TestSilentWorkerDroppedAtIdle(t *testing.T) {
	const idle = 4 * time.Hour
	e := startEngine(t, func(c *Config) { c.WorkerIdleTimeout = idle })
	w := dialRaw(t, e)
	// Last heard at t0, and nothing read since: set directly, as a first
	// check could find nothing new and ping, and the pong would count.
	t0 := time.Now()
	e.mu.RLock()
	wc := e.conns[w.id]
	e.mu.RUnlock()
	if wc == nil {
		t.Fatal("worker not registered")
	}
	wc.hbRead, wc.hbHeard = wc.conn.BytesRead(), t0
	e.checkWorkers(t0.Add(idle), idle, nil)
	select {
	case <-w.end:
	case <-time.After(5 * time.Second):
		t.Fatal("a worker silent for worker_idle_timeout was kept")
	}
}
