package queue

import (
	"context"
	"math"
)

// Leases of standard (non-FIFO) queues are kept in the SQLite store's
// memory, not written: a lease is a read of the next ready rows, and the
// job stays ready in the file until its ack deletes it (or a nack, park or
// bury updates it). That saves a write per job when jobs wait in the store.
// The price: after a crash a job that was in flight is ready again with the
// attempt it was in not counted (a delivery that crashes the engine every
// time is never dead-lettered). FIFO leases are still written, because the
// lease of a group's head is what holds back the rest of its group.
//
// A queue's cursor (cv, cs) orders like its index (visible_at, seq): every
// row of the queue that is ready and ordered at or before the cursor is
// leased in memory, so a lease reads from the cursor on. Whatever makes a
// row ready before the cursor (a late commit of an older enqueue, a nack, a
// release, a redrive, an unpark) moves the cursor back; leased rows found
// after it are skipped.
//
// All of it runs on the writer goroutine, holding memMu so that Stats and
// NextVisible (on other goroutines) can read it.

type leaseQueue struct {
	name   string
	cv, cs int64
	leases map[int64]*memLease // by seq
}

type memLease struct {
	q        *leaseQueue
	id       string
	seq, vis int64
	attempts int // deliveries, this one included
}

// memQ returns queue's state, creating it. Writer goroutine, memMu held.
func (s *SQLite) memQ(queue string) *leaseQueue {
	q := s.memQueue[queue]
	if q == nil {
		q = &leaseQueue{name: queue, cv: math.MinInt64, cs: math.MinInt64, leases: map[int64]*memLease{}}
		s.memQueue[queue] = q
	}
	return q
}

// memUndo is an entry of the current transaction's journal: what to undo
// in memory if the transaction rolls back.
type memUndo struct {
	l      *memLease // a lease added (added true) or dropped
	added  bool
	q      *leaseQueue // or a cursor moved forward from (cv, cs)
	cv, cs int64
}

// memLease records a lease of a ready row.
func (s *SQLite) memLease(queue, id string, seq, vis int64, attempts int) {
	s.memMu.Lock()
	q := s.memQ(queue)
	l := &memLease{q: q, id: id, seq: seq, vis: vis, attempts: attempts}
	s.memPut(l)
	s.memJournal = append(s.memJournal, memUndo{l: l, added: true})
	s.memMu.Unlock()
}

func (s *SQLite) memPut(l *memLease) {
	if s.memQueue[l.q.name] != l.q { // forgotten by Recover meanwhile
		s.memQueue[l.q.name] = l.q
	}
	l.q.leases[l.seq] = l
	s.memByID[l.id] = l
}

// memDrop forgets a lease.
func (s *SQLite) memDrop(l *memLease) {
	s.memMu.Lock()
	delete(l.q.leases, l.seq)
	delete(s.memByID, l.id)
	s.memJournal = append(s.memJournal, memUndo{l: l})
	s.memMu.Unlock()
}

// memRollback undoes the memory changes of a transaction that rolled back;
// memCommitted forgets them (writer goroutine).
func (s *SQLite) memRollback() {
	s.memMu.Lock()
	for i := len(s.memJournal) - 1; i >= 0; i-- {
		u := s.memJournal[i]
		switch {
		case u.l != nil && u.added:
			delete(u.l.q.leases, u.l.seq)
			delete(s.memByID, u.l.id)
		case u.l != nil:
			s.memPut(u.l)
		case !after(u.cv, u.cs, u.q.cv, u.q.cs):
			u.q.cv, u.q.cs = u.cv, u.cs // back is always safe
		}
	}
	s.memMu.Unlock()
	s.memCommitted()
}

func (s *SQLite) memCommitted() {
	clear(s.memJournal)
	s.memJournal = s.memJournal[:0]
}

// memReady notes that the row (vis, seq) of queue is ready (and not leased):
// the cursor moves back before it if needed.
func (s *SQLite) memReady(queue string, vis, seq int64) {
	s.memMu.Lock()
	if q := s.memQueue[queue]; q != nil && !after(vis, seq, q.cv, q.cs) {
		q.cv, q.cs = vis, seq-1
	}
	s.memMu.Unlock()
}

// memRewind moves queue's cursor back to its start.
func (s *SQLite) memRewind(queue string) {
	s.memMu.Lock()
	if q := s.memQueue[queue]; q != nil {
		q.cv, q.cs = math.MinInt64, math.MinInt64
	}
	s.memMu.Unlock()
}

func (s *SQLite) memRewindAll() {
	s.memMu.Lock()
	for _, q := range s.memQueue {
		q.cv, q.cs = math.MinInt64, math.MinInt64
	}
	s.memMu.Unlock()
}

// memForget drops every lease (Recover) and returns how many there were.
func (s *SQLite) memForget() int {
	s.memMu.Lock()
	n := len(s.memByID)
	clear(s.memByID)
	clear(s.memQueue)
	s.memMu.Unlock()
	return n
}

func (s *SQLite) memCount(queue string) int {
	s.memMu.Lock()
	defer s.memMu.Unlock()
	if q := s.memQueue[queue]; q != nil {
		return len(q.leases)
	}
	return 0
}

// memAbove returns queue's cursor and the seqs of its leases after it.
func (s *SQLite) memAbove(queue string) (cv, cs int64, leased map[int64]bool) {
	s.memMu.Lock()
	defer s.memMu.Unlock()
	q := s.memQueue[queue]
	if q == nil {
		return math.MinInt64, math.MinInt64, nil
	}
	for _, l := range q.leases {
		if after(l.vis, l.seq, q.cv, q.cs) {
			if leased == nil {
				leased = map[int64]bool{}
			}
			leased[l.seq] = true
		}
	}
	return q.cv, q.cs, leased
}

// after reports whether (v, s) orders after (cv, cs).
func after(v, s, cv, cs int64) bool { return v > cv || v == cv && s > cs }

// leaseMem leases up to max ready jobs of queue visible at now, in memory.
// Writer goroutine.
func (s *SQLite) leaseMem(ctx context.Context, queue string, now int64, max int, out []Job) ([]Job, error) {
	s.memMu.Lock()
	q := s.memQ(queue)
	cv, cs := q.cv, q.cs
	skip := 0 // leases the read will meet again
	for _, l := range q.leases {
		if after(l.vis, l.seq, cv, cs) {
			skip++
		}
	}
	s.memMu.Unlock()
	rows, err := s.stmts["leaseMem"].QueryContext(ctx, queue, now, max+skip, cv, cs)
	if err != nil {
		return out, err
	}
	defer rows.Close()
	lastV, lastS, read := cv, cs, false
	for len(out) < max && rows.Next() {
		var j Job
		var enq, vis int64
		if err := rows.Scan(&j.Seq, &j.ID, &j.Queue, &j.FunctionID, &j.Group, &j.Data, &j.Traceparent, &j.Baggage, &j.Attempts, &enq, &j.LastError, &vis); err != nil {
			return out, err
		}
		lastV, lastS, read = vis, j.Seq, true
		if q.leases[j.Seq] != nil { // the writer goroutine is the only one that changes it
			continue
		}
		j.EnqueuedAt = fromMS(enq)
		j.Attempts++
		s.memLease(queue, j.ID, j.Seq, vis, j.Attempts)
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return out, err
	}
	if read {
		// Every ready row up to the last one read is leased now.
		s.memMu.Lock()
		if q.cv == cv && q.cs == cs {
			q.cv, q.cs = lastV, lastS
			s.memJournal = append(s.memJournal, memUndo{q: q, cv: cv, cs: cs})
		}
		s.memMu.Unlock()
	}
	return out, nil
}
