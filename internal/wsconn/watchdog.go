package wsconn

import (
	"errors"
	"sync"
	"time"
)

// ErrWriteTimeout ends a connection whose peer accepted no data for the
// write timeout.
var ErrWriteTimeout = errors.New("wsconn: write timed out: the peer is not reading")

// The write timeout is enforced by one watchdog goroutine per process
// rather than by a socket deadline per frame: setting a deadline re-arms a
// runtime timer on every write, which showed up as a measurable share of a
// small message's round trip. Writers bump Conn.wseq before and after each
// write (odd while writing); the watchdog aborts a connection whose
// sequence has stayed odd and unchanged for the write timeout.

type watchState struct {
	seq   uint64
	since time.Time
}

var watchdog struct {
	once  sync.Once
	mu    sync.Mutex
	conns map[*Conn]*watchState
}

// watchTick is how often the watchdog looks; a stalled write is therefore
// cut between the write timeout and the write timeout plus watchTick.
var watchTick = time.Second

func watch(c *Conn) {
	watchdog.once.Do(func() {
		watchdog.conns = make(map[*Conn]*watchState)
		go watchLoop()
	})
	watchdog.mu.Lock()
	watchdog.conns[c] = &watchState{}
	watchdog.mu.Unlock()
}

func unwatch(c *Conn) {
	watchdog.mu.Lock()
	delete(watchdog.conns, c)
	watchdog.mu.Unlock()
}

func watchLoop() {
	t := time.NewTicker(watchTick)
	defer t.Stop()
	var stalled []*Conn
	for now := range t.C {
		stalled = abortStalled(now, stalled[:0])
	}
}

// abortStalled aborts the connections checkWrites finds stalled at now.
func abortStalled(now time.Time, buf []*Conn) []*Conn {
	buf = checkWrites(now, buf)
	for _, c := range buf {
		c.setErr(ErrWriteTimeout)
		c.Abort()
	}
	return buf
}

// checkWrites appends to dst the connections whose current write has made
// no progress for their write timeout.
func checkWrites(now time.Time, dst []*Conn) []*Conn {
	watchdog.mu.Lock()
	defer watchdog.mu.Unlock()
	for c, st := range watchdog.conns {
		seq := c.wseq.Load()
		switch {
		case seq&1 == 0 || seq != st.seq:
			st.seq, st.since = seq, now
		case now.Sub(st.since) >= c.writeWait:
			dst = append(dst, c)
		}
	}
	return dst
}
