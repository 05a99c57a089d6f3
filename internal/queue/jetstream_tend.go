package queue

import (
	"context"
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
//     that left, Recover for a restart. So the store counts the jobs it
//     handed out leased and not yet settled (held); a lease of this node
//     that no caller holds, seen by two tends in a row unchanged, is made
//     ready again. The attempt stays counted, as in RecoverNode.
//   - A job forgotten while it is stored. The index drops a job no read
//     finds for jsGoneConfirm (its delete marker was purged while the
//     watcher was away); a read that trails longer than that (a stream
//     between leaders) drops a live job, and the watcher, which already
//     delivered it, never brings it again. So a forgotten job is read
//     again after jsForgetChecks; found, the index learns it back.

// jsTendEvery is how often tend looks; an orphaned lease is made ready
// within two periods.
const jsTendEvery = 5 * time.Second

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
	s.held[id] = struct{}{}
	s.mu.Unlock()
}

// unhold records that the caller is done with job id.
func (s *JetStream) unhold(id string) {
	s.mu.Lock()
	delete(s.held, id)
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

// releaseOrphans makes ready the leases of this node that no caller held
// at this tend and the one before, unchanged in between.
func (s *JetStream) releaseOrphans() {
	s.mu.Lock()
	var due []string
	now := map[string]*jsMeta{}
	for id, m := range s.jobs {
		if m.state != stateLeased || m.owner != s.node {
			continue
		}
		if _, ok := s.held[id]; ok {
			continue
		}
		now[id] = m
		if s.orphans[id] == m {
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
			_, held := s.held[id]
			s.mu.Unlock()
			if held || r.State != stateLeased || r.Owner != s.node {
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
		if m != nil && s.jobs[id] == m && m.state == stateReady {
			fire = s.notify
		}
		s.mu.Unlock()
		if fire != nil {
			fire(m.queue, false)
		}
	}
}
