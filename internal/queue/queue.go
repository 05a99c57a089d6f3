// Package queue is the durable job store behind TriggerAction.Enqueue and
// durable topics.
//
// Store is the seam (DESIGN.md, centrifuge's broker pattern): queue.go
// declares it, queue_sqlite.go (the embedded default, modernc.org/sqlite in
// WAL mode with group commit) and queue_memory.go (throwaway runs and tests)
// implement it, and a cluster implementation (JetStream) can be added beside
// them. Nothing outside this package knows which one runs. The engine's
// dispatchers (engine/queue.go) hold the delivery policy: retries, backoff,
// dead-lettering, concurrency; the store only keeps jobs and their state.
//
// A job moves through these states:
//
//	Enqueue → ready (visible at enqueue time + delay)
//	Lease   → leased (attempts+1); one lease at a time per job
//	Ack     → gone
//	Nack    → ready again at retryAt, with its error
//	Release → ready again at once, the attempt not counted (shutdown)
//	Park    → parked until Unpark (its function is not registered), not counted
//	Bury    → dead (the dead-letter queue), with its error and failure time
//	Redrive → dead jobs ready again, attempts reset
//
// Leases do not expire while the store is open: the engine that leased a job
// is the one that settles it. Recover, called when a store is opened after a
// crash, makes every leftover lease ready again, so a job in flight when the
// engine died is delivered again (at-least-once). A store may keep the
// leases of standard (non-FIFO) queues in memory only (SQLite does:
// memlease.go): such a job is simply ready after a crash, and the attempt
// it was in is not counted.
package queue

import (
	"context"
	"errors"
	"time"
)

// NewJob is what Enqueue stores.
type NewJob struct {
	// ID is the receipt id (unique across the store). Enqueueing an id that
	// is already stored is a no-op that reports the stored job: a producer
	// that retries with the same id does not create a second job.
	ID          string
	Queue       string
	FunctionID  string
	Data        []byte // JSON
	Group       string // FIFO message group (non-empty); "" for standard queues
	Traceparent string
	Baggage     string
	// VisibleAt is when the job may first be delivered (enqueue time plus
	// the queue's delay).
	VisibleAt time.Time
	// DedupKey, when set, makes a later enqueue with the same key in the
	// same queue before DedupUntil store nothing and report this job's id.
	DedupKey   string
	DedupUntil time.Time
	// Leased stores the job already leased (attempts 1): the caller
	// delivers it at once instead of waiting for a Lease (direct hand-off
	// to an idle consumer; one write less per job).
	Leased bool
}

// Job is a stored job as a lease returns it.
type Job struct {
	Seq         int64 // store order; FIFO order within a group
	ID          string
	Queue       string
	FunctionID  string
	Data        []byte
	Group       string
	Traceparent string
	Baggage     string
	// Attempts counts deliveries, this one included.
	Attempts   int
	EnqueuedAt time.Time
	LastError  string
}

// Dead is a job in a dead-letter queue.
type Dead struct {
	Job
	Error    string
	FailedAt time.Time
}

// Stats counts one queue's jobs by state.
type Stats struct {
	Ready   int64 // deliverable now or later (delayed, backing off)
	Leased  int64 // being delivered
	Parked  int64 // waiting for their function to register
	Dead    int64
	Pending int64 // Ready+Leased+Parked: the queue's depth
}

// LeaseOpts selects what Lease may hand out.
type LeaseOpts struct {
	// Max is the most jobs returned.
	Max int
	// FIFO leases only the oldest live job of each message group, and only
	// when no job of that group is leased: one at a time per group, in order.
	// Jobs without a group are not ordered.
	FIFO bool
	// Serves, when set, limits the lease to jobs whose function it accepts
	// (a FIFO group whose head it refuses is skipped): an engine of a
	// cluster leases only what it can deliver itself. Stores used by one
	// engine alone (SQLite) may ignore it; that engine parks what it cannot
	// deliver.
	Serves func(functionID string) bool
}

// Shared is implemented by stores that several engines use at once
// (JetStream in a cluster). Notify registers fn, called without blocking
// when another engine made jobs of queue ready, or parked jobs (parked
// true), so that this engine's dispatchers and unparker look again.
type Shared interface {
	Notify(fn func(queue string, parked bool))
	// NotifyQueues registers fn, called without blocking with each queue
	// definition saved (SaveQueue) after the call, by any engine.
	NotifyQueues(fn func(name string, def []byte))
}

// Async is implemented by stores that take writes without making the
// caller wait (SQLite: they join the writer's next group commit). The
// engine uses it on the hot path: no goroutine parked per enqueue or ack.
type Async interface {
	// EnqueueAsync is Enqueue; done gets its outcome after the commit and
	// must not block. A success is reported on the store's writer goroutine,
	// followed by the AfterCommit function; a failure may be reported on
	// any goroutine, the caller's included. It blocks only while the
	// store's queue of writes is full.
	EnqueueAsync(ctx context.Context, jobs []NewJob, done func(ids []string, err error))
	// AckAsync is Ack; done (may be nil) as for EnqueueAsync. An ack lost
	// in a crash before its commit only delivers the job again.
	AckAsync(ctx context.Context, id string, done func(error))
	// AfterCommit registers fn, run on the writer goroutine after the
	// callbacks of each group commit (to flush what they wrote), before the
	// next commit. Call it before the first async write.
	AfterCommit(fn func())
}

// ErrClosed is returned by a closed store.
var ErrClosed = errors.New("queue: store closed")

// Store keeps jobs durably. All methods are safe for concurrent use. A
// method that returns nil has made its change durable (as durable as the
// store's sync mode promises).
type Store interface {
	// Enqueue stores jobs and returns once they are committed, with the id
	// that stands for each job: its own, or the id of the job an unexpired
	// DedupKey points to (then nothing is stored). A job whose ID is
	// already stored (live or dead) is skipped too: no second job.
	Enqueue(ctx context.Context, jobs []NewJob) ([]string, error)
	// Lease hands out up to opts.Max ready jobs of queue whose visible time
	// has come, oldest first, marking them leased and counting an attempt.
	Lease(ctx context.Context, queue string, now time.Time, opts LeaseOpts) ([]Job, error)
	// Ack removes a leased job (done).
	Ack(ctx context.Context, id string) error
	// Nack makes a leased job ready again at retryAt, recording errMsg.
	Nack(ctx context.Context, id string, retryAt time.Time, errMsg string) error
	// Release makes a leased job ready at once without counting the attempt.
	Release(ctx context.Context, id string) error
	// Park sets a leased job aside, attempt not counted, until Unpark.
	Park(ctx context.Context, id string) error
	// ParkFunction parks every ready job of functionID in queue at once
	// (attempts unchanged), so that a backlog for a missing function is not
	// leased and parked job by job; it returns how many.
	ParkFunction(ctx context.Context, queue, functionID string) (int, error)
	// Unpark makes the parked jobs of functionID ready again; it returns
	// how many there were.
	Unpark(ctx context.Context, functionID string) (int, error)
	// ParkedFunctions lists the functions that have parked jobs.
	ParkedFunctions(ctx context.Context) ([]string, error)
	// Bury moves a leased job to its queue's dead-letter queue.
	Bury(ctx context.Context, id string, errMsg string, failedAt time.Time) error
	// Dead lists a queue's dead jobs, most recently failed first.
	Dead(ctx context.Context, queue string, offset, limit int) ([]Dead, error)
	// Redrive makes every dead job of queue ready again (attempts reset)
	// and returns how many.
	Redrive(ctx context.Context, queue string, now time.Time) (int, error)
	// RedriveOne does Redrive for one job; false if no such dead job.
	RedriveOne(ctx context.Context, queue, id string, now time.Time) (bool, error)
	// Discard deletes one dead job; false if no such dead job.
	Discard(ctx context.Context, queue, id string) (bool, error)
	// Stats counts a queue's jobs.
	Stats(ctx context.Context, queue string) (Stats, error)
	// Queues lists the queues that hold any job, dead or alive.
	Queues(ctx context.Context) ([]string, error)
	// NextVisible is the earliest visible time of a ready job of queue
	// (ok false: none ready).
	NextVisible(ctx context.Context, queue string) (t time.Time, ok bool, err error)
	// Recover makes every leased job ready again (a previous process died
	// holding it) and returns how many. Call it once, right after opening.
	Recover(ctx context.Context) (int, error)
	// SaveQueue and LoadQueues keep queue definitions made at run time
	// (opaque to the store) so that they outlive a restart.
	SaveQueue(ctx context.Context, name string, def []byte) error
	LoadQueues(ctx context.Context) (map[string][]byte, error)
	// Close releases the store; pending calls fail with ErrClosed.
	Close() error
}

// Job states, shared by the implementations.
const (
	stateReady  = 0
	stateLeased = 1
	stateParked = 2
	stateDead   = 3
)

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v) }
