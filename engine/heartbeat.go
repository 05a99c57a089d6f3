package engine

import (
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
)

// Liveness: a worker that sends nothing for worker_idle_timeout (a frozen
// or half-open peer) is disconnected, so that its functions go away and the
// invocations it owes are answered. The SDKs ping the engine every 20 s;
// the engine also pings a worker it has not heard from for a check period,
// so that a client that does not ping on its own but answers pings is kept.
// Bytes received count, whatever they are: one counter per socket, read by
// one goroutine per engine, and no timer or clock read per frame.

// heartbeatPeriod is how often workers are checked: a quarter of the idle
// timeout, so that a silent worker gets pinged three times before it goes.
func heartbeatPeriod(idle time.Duration) time.Duration {
	return max(idle/4, 10*time.Millisecond)
}

func (e *Engine) heartbeatLoop(idle time.Duration) {
	defer e.backgroundDone.Done()
	t := time.NewTicker(heartbeatPeriod(idle))
	defer t.Stop()
	var conns []*workerConn
	for {
		select {
		case now := <-t.C:
			conns = e.checkWorkers(now, idle, conns[:0])
		case <-e.ctx.Done():
			return
		}
	}
}

// checkWorkers pings each worker not heard from since the last check and
// drops those silent for idle.
func (e *Engine) checkWorkers(now time.Time, idle time.Duration, buf []*workerConn) []*workerConn {
	e.mu.RLock()
	for _, w := range e.conns {
		buf = append(buf, w)
	}
	e.mu.RUnlock()
	for i, w := range buf {
		buf[i] = nil
		if n := w.conn.BytesRead(); n != w.hbRead {
			w.hbRead, w.hbHeard = n, now
			continue
		}
		if silent := now.Sub(w.hbHeard); silent >= idle {
			w.drop("no frame from the worker for " + silent.Round(time.Millisecond).String() +
				" (worker_idle_timeout " + idle.String() + ")")
			continue
		}
		// Never blocks: the socket is in non-blocking mode.
		_ = w.conn.WS().WriteControl(websocket.PingMessage, nil, now.Add(time.Second))
	}
	return buf
}
