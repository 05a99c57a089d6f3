package queue

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Memory is a Store in RAM: nothing survives the process. For tests and
// throwaway runs (--data-dir memory). Its memory grows with the backlog.
type Memory struct {
	mu     sync.Mutex
	closed bool
	seq    int64
	byID   map[string]*memJob
	queues map[string]*memQueue
	defs   map[string][]byte
	dedup  map[string]memDedup
}

type memDedup struct {
	id      string
	expires int64
}

type memJob struct {
	Job
	state     int
	visibleAt int64
	errMsg    string
	failedAt  int64
}

// memQueue keeps its jobs in store order (seq ascending).
type memQueue struct {
	jobs []*memJob
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{byID: make(map[string]*memJob), queues: make(map[string]*memQueue), defs: make(map[string][]byte), dedup: make(map[string]memDedup)}
}

var _ Store = (*Memory)(nil)

func (m *Memory) lock() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	return nil
}

func (m *Memory) Enqueue(_ context.Context, jobs []NewJob) ([]string, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	now := ms(time.Now())
	if len(m.dedup) > 0 && m.seq%1024 == 0 {
		for k, d := range m.dedup {
			if d.expires <= now {
				delete(m.dedup, k)
			}
		}
	}
	ids := make([]string, len(jobs))
	for i, nj := range jobs {
		ids[i] = nj.ID
		dk := nj.Queue + "\x00" + nj.DedupKey
		if nj.DedupKey != "" {
			if d, ok := m.dedup[dk]; ok && d.expires > now {
				ids[i] = d.id
				continue
			}
		}
		if _, dup := m.byID[nj.ID]; dup {
			continue
		}
		if nj.DedupKey != "" {
			m.dedup[dk] = memDedup{id: nj.ID, expires: ms(nj.DedupUntil)}
		}
		m.seq++
		j := &memJob{Job: Job{Seq: m.seq, ID: nj.ID, Queue: nj.Queue, FunctionID: nj.FunctionID,
			Data: append([]byte(nil), nj.Data...), Group: nj.Group, Traceparent: nj.Traceparent,
			Baggage: nj.Baggage, EnqueuedAt: fromMS(now)}, visibleAt: ms(nj.VisibleAt)}
		if nj.Leased {
			j.state, j.Attempts = stateLeased, 1
		}
		m.byID[j.ID] = j
		q := m.queues[j.Queue]
		if q == nil {
			q = &memQueue{}
			m.queues[j.Queue] = q
		}
		q.jobs = append(q.jobs, j)
	}
	return ids, nil
}

func (m *Memory) Lease(_ context.Context, queue string, now time.Time, o LeaseOpts) ([]Job, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	q := m.queues[queue]
	if q == nil || o.Max <= 0 {
		return nil, nil
	}
	t := ms(now)
	var out []Job
	var seenGroup map[string]bool
	if o.FIFO {
		seenGroup = make(map[string]bool)
	}
	for _, j := range q.jobs {
		if len(out) >= o.Max {
			break
		}
		if j.state == stateDead {
			continue
		}
		if o.FIFO && j.Group != "" {
			// Only the oldest live job of a group may go, and only if it is ready.
			if seenGroup[j.Group] {
				continue
			}
			seenGroup[j.Group] = true
		}
		if j.state != stateReady || j.visibleAt > t {
			continue
		}
		if o.Serves != nil && !o.Serves(j.FunctionID) {
			continue
		}
		j.state = stateLeased
		j.Attempts++
		c := j.Job
		c.LastError = j.errMsg
		out = append(out, c)
	}
	return out, nil
}

// leased returns the leased job id, or nil.
func (m *Memory) leased(id string) *memJob {
	j := m.byID[id]
	if j == nil || j.state != stateLeased {
		return nil
	}
	return j
}

func (m *Memory) remove(j *memJob) {
	delete(m.byID, j.ID)
	q := m.queues[j.Queue]
	i := sort.Search(len(q.jobs), func(i int) bool { return q.jobs[i].Seq >= j.Seq })
	if i < len(q.jobs) && q.jobs[i] == j {
		q.jobs = append(q.jobs[:i], q.jobs[i+1:]...)
	}
	if len(q.jobs) == 0 {
		delete(m.queues, j.Queue)
	}
}

func (m *Memory) Ack(_ context.Context, id string) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if j := m.leased(id); j != nil {
		m.remove(j)
	}
	return nil
}

func (m *Memory) Nack(_ context.Context, id string, retryAt time.Time, errMsg string) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if j := m.leased(id); j != nil {
		j.state, j.visibleAt, j.errMsg = stateReady, ms(retryAt), errMsg
	}
	return nil
}

func (m *Memory) Release(_ context.Context, id string) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if j := m.leased(id); j != nil {
		j.state = stateReady
		j.Attempts--
	}
	return nil
}

func (m *Memory) Park(_ context.Context, id string) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if j := m.leased(id); j != nil {
		j.state = stateParked
		j.Attempts--
	}
	return nil
}

func (m *Memory) ParkFunction(_ context.Context, queue, fn string) (int, error) {
	if err := m.lock(); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	n := 0
	if q := m.queues[queue]; q != nil {
		for _, j := range q.jobs {
			if j.state == stateReady && j.FunctionID == fn {
				j.state = stateParked
				n++
			}
		}
	}
	return n, nil
}

func (m *Memory) Unpark(_ context.Context, fn string) (int, error) {
	if err := m.lock(); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	n := 0
	for _, j := range m.byID {
		if j.state == stateParked && j.FunctionID == fn {
			j.state = stateReady
			n++
		}
	}
	return n, nil
}

func (m *Memory) ParkedFunctions(context.Context) ([]string, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	set := map[string]bool{}
	for _, j := range m.byID {
		if j.state == stateParked {
			set[j.FunctionID] = true
		}
	}
	return sortedKeys(set), nil
}

func (m *Memory) Bury(_ context.Context, id, errMsg string, failedAt time.Time) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if j := m.leased(id); j != nil {
		j.state, j.errMsg, j.failedAt = stateDead, errMsg, ms(failedAt)
	}
	return nil
}

func (m *Memory) Dead(_ context.Context, queue string, offset, limit int) ([]Dead, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	var all []Dead
	if q := m.queues[queue]; q != nil {
		for _, j := range q.jobs {
			if j.state == stateDead {
				all = append(all, Dead{Job: j.Job, Error: j.errMsg, FailedAt: fromMS(j.failedAt)})
			}
		}
	}
	sort.SliceStable(all, func(a, b int) bool {
		if !all[a].FailedAt.Equal(all[b].FailedAt) {
			return all[a].FailedAt.After(all[b].FailedAt)
		}
		return all[a].Seq > all[b].Seq
	})
	if offset >= len(all) {
		return nil, nil
	}
	all = all[offset:]
	if limit >= 0 && limit < len(all) {
		all = all[:limit]
	}
	return all, nil
}

func (m *Memory) revive(j *memJob, now time.Time) {
	j.state, j.Attempts, j.visibleAt, j.errMsg, j.failedAt = stateReady, 0, ms(now), "", 0
}

func (m *Memory) Redrive(_ context.Context, queue string, now time.Time) (int, error) {
	if err := m.lock(); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	n := 0
	if q := m.queues[queue]; q != nil {
		for _, j := range q.jobs {
			if j.state == stateDead {
				m.revive(j, now)
				n++
			}
		}
	}
	return n, nil
}

func (m *Memory) RedriveOne(_ context.Context, queue, id string, now time.Time) (bool, error) {
	if err := m.lock(); err != nil {
		return false, err
	}
	defer m.mu.Unlock()
	j := m.byID[id]
	if j == nil || j.Queue != queue || j.state != stateDead {
		return false, nil
	}
	m.revive(j, now)
	return true, nil
}

func (m *Memory) Discard(_ context.Context, queue, id string) (bool, error) {
	if err := m.lock(); err != nil {
		return false, err
	}
	defer m.mu.Unlock()
	j := m.byID[id]
	if j == nil || j.Queue != queue || j.state != stateDead {
		return false, nil
	}
	m.remove(j)
	return true, nil
}

func (m *Memory) Stats(_ context.Context, queue string) (Stats, error) {
	if err := m.lock(); err != nil {
		return Stats{}, err
	}
	defer m.mu.Unlock()
	var s Stats
	if q := m.queues[queue]; q != nil {
		for _, j := range q.jobs {
			switch j.state {
			case stateReady:
				s.Ready++
			case stateLeased:
				s.Leased++
			case stateParked:
				s.Parked++
			case stateDead:
				s.Dead++
			}
		}
	}
	s.Pending = s.Ready + s.Leased + s.Parked
	return s, nil
}

func (m *Memory) Queues(context.Context) ([]string, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	set := map[string]bool{}
	for name := range m.queues {
		set[name] = true
	}
	return sortedKeys(set), nil
}

func (m *Memory) NextVisible(_ context.Context, queue string) (time.Time, bool, error) {
	if err := m.lock(); err != nil {
		return time.Time{}, false, err
	}
	defer m.mu.Unlock()
	var best int64
	found := false
	if q := m.queues[queue]; q != nil {
		for _, j := range q.jobs {
			if j.state == stateReady && (!found || j.visibleAt < best) {
				best, found = j.visibleAt, true
			}
		}
	}
	return fromMS(best), found, nil
}

func (m *Memory) Recover(context.Context) (int, error) {
	if err := m.lock(); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	n := 0
	for _, j := range m.byID {
		if j.state == stateLeased {
			j.state = stateReady
			n++
		}
	}
	return n, nil
}

func (m *Memory) SaveQueue(_ context.Context, name string, def []byte) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	m.defs[name] = append([]byte(nil), def...)
	return nil
}

func (m *Memory) LoadQueues(context.Context) (map[string][]byte, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	out := make(map[string][]byte, len(m.defs))
	for k, v := range m.defs {
		out[k] = append([]byte(nil), v...)
	}
	return out, nil
}

func (m *Memory) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return nil
}

func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
