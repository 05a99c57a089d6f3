package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/nats-io/nats.go/jetstream"
)

// Two ways a job can end up stored and delivered by none, both seen when a
// cluster heals a partition (its stream changes leader, writes time out):
//
//   - An orphaned lease. A lease write that times out may still be
//     committed later, by the next leader; a nack, release or park that
//     fails leaves the lease in place. The job is then leased by this node,
//     which lives on and will not deliver it: RecoverNode is for nodes
//     that left, Recover for a restart. So the store counts, per job, the
//     callers holding it leased (held: from before the lease's write until
//     the settle's write is done); a lease of this instance that no caller
//     holds, unchanged for jsOrphanAge, is made ready again. The attempt
//     stays counted, as in RecoverNode. Leases carry the instance (Inst),
//     so a second process started under the same node name by mistake
//     does not release this one's.
//   - A job forgotten while it is stored. The index drops a job no read
//     finds for jsGoneConfirm (its delete marker was purged while the
//     watcher was away); a read that trails longer than that (a stream
//     between leaders) drops a live job, and the watcher, which already
//     delivered it, never brings it again. So a forgotten job is read
//     again after jsForgetChecks; found, the index learns it back.

// jsTendEvery is how often tend looks, and jsOrphanAge how long a lease
// must stay unheld and unchanged before it is made ready (variables for
// the tests).
var (
	jsTendEvery = 5 * time.Second
	jsOrphanAge = 5 * time.Second
)

// jsOrphan is a lease of this instance no caller held at a tend.
type jsOrphan struct {
	m     *jsMeta   // the index entry seen (a change replaces it)
	since time.Time // first seen so
}

// newInstance names this store instance in its leases.
func newInstance() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// jsForgetChecks are the delays, from the forgetting, of the reads that
// may find a forgotten job again.
var jsForgetChecks = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute}

// jsForgotten is a job the index dropped, to read again.
type jsForgotten struct {
	at    time.Time // dropped
	tomb  uint64    // the revision the index's tombstone of it got
	check int       // next entry of jsForgetChecks
}

// hold records that job id was handed out leased to a caller, who will
// settle it.
func (s *JetStream) hold(id string) {
	s.mu.Lock()
	s.held[id]++
	s.mu.Unlock()
}

// unhold records that one caller is done with job id.
func (s *JetStream) unhold(id string) {
	s.mu.Lock()
	if s.held[id]--; s.held[id] <= 0 {
		delete(s.held, id)
	}
	s.mu.Unlock()
}

// forgetLocked drops index entry m of job id, which no read found, and
// schedules the reads that may find it again (s.mu held).
func (s *JetStream) forgetLocked(id string, m *jsMeta) {
	s.applyLocked(id, nil, m.rev+1)
	if len(s.forgotten) < 1<<16 {
		s.forgotten[id] = &jsForgotten{at: time.Now(), tomb: m.rev + 1}
	}
}

// tend looks for orphaned leases and forgotten jobs every period until
// the store closes.
func (s *JetStream) tend(period time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.releaseOrphans()
		s.recheckForgotten()
	}
}

// releaseOrphans makes ready the leases of this instance that no caller
// has held, unchanged, for jsOrphanAge (seen by tends at least that far
// apart: a tend that overran is followed by the next at once).
func (s *JetStream) releaseOrphans() {
	at := time.Now()
	s.mu.Lock()
	var due []string
	now := make(map[string]jsOrphan, len(s.orphans))
	for id, m := range s.mine {
		if s.held[id] > 0 {
			continue
		}
		o := jsOrphan{m: m, since: at}
		if prev, ok := s.orphans[id]; ok && prev.m == m {
			o.since = prev.since
		}
		now[id] = o
		if at.Sub(o.since) >= jsOrphanAge && o.since != at {
			due = append(due, id)
		}
	}
	s.orphans = now
	s.mu.Unlock()
	for _, id := range due {
		if s.ctx.Err() != nil {
			return
		}
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		var q string
		wrote, err := s.mutate(ctx, id, func(r *jsRecord) (bool, bool) {
			s.mu.Lock()
			held := s.held[id] > 0
			s.mu.Unlock()
			if held || r.State != stateLeased || r.Owner != s.node || r.Inst != s.inst {
				return false, false
			}
			r.State, r.Owner = stateReady, ""
			q = r.Queue
			return true, false
		})
		cancel()
		if err == nil && wrote {
			s.mu.Lock()
			delete(s.orphans, id)
			fire := s.notify
			s.mu.Unlock()
			if fire != nil {
				fire(q, false)
			}
		}
	}
}

// recheckForgotten reads the forgotten jobs whose next check is due; one
// found is indexed again (and wakes the dispatchers if ready).
func (s *JetStream) recheckForgotten() {
	now := time.Now()
	s.mu.Lock()
	var due []string
	for id, f := range s.forgotten {
		if now.Sub(f.at) >= jsForgetChecks[f.check] {
			due = append(due, id)
		}
	}
	s.mu.Unlock()
	for _, id := range due {
		if s.ctx.Err() != nil {
			return
		}
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		e, err := s.bucket().Get(ctx, jobKey(id))
		cancel()
		var m *jsMeta
		if err == nil {
			var r jsRecord
			if json.Unmarshal(e.Value(), &r, jsOpts) == nil {
				m = metaOf(&r, e.Revision())
			}
		}
		s.mu.Lock()
		f := s.forgotten[id]
		switch {
		case f == nil:
		case m != nil:
			delete(s.forgotten, id)
			// Unless the watcher brought news of it since (its tombstone is
			// no longer the forgetting's), the read is the truth.
			if t, ok := s.tombs[id]; s.jobs[id] == nil && (!ok || t == f.tomb) {
				delete(s.tombs, id)
				s.applyLocked(id, m, m.rev)
			}
		case err != nil && !errors.Is(err, jetstream.ErrKeyNotFound):
			// A failed read says nothing; the same check runs next tend.
		default:
			if f.check++; f.check >= len(jsForgetChecks) {
				delete(s.forgotten, id)
			}
		}
		var fire func(string, bool)
		if m != nil && s.jobs[id] == m && (m.state == stateReady || m.state == stateParked) {
			fire = s.notify // the dispatchers, or the unparker, look again
		}
		s.mu.Unlock()
		if fire != nil {
			fire(m.queue, m.state == stateParked)
		}
	}
}
