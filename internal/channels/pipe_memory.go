package channels

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
)

// memPipe is the in-process Pipe: a buffered Go channel of frames. A Go
// channel gives the bound, the order and the blocking for free; the end of
// stream is a separate signal (eof) that Recv only honours once the queue is
// empty, and since the single sender closes eof after its last Send, every
// frame sent before CloseSend is delivered first.
//
// Direct writes: once a reader socket's goroutine has attached its sink
// (setSink), Send writes a frame to that socket itself while nothing is
// queued or being written by the reader goroutine, and queues it otherwise
// (sink.go). pending counts the frames Send queued that the receiver has
// not finished writing (delivered): the single sender increments it before
// queueing, the receiver decrements it after its write, so pending == 0
// means the queue is empty and the reader goroutine holds no frame, and a
// direct write cannot overtake one. Every guarantee of Pipe holds: a
// direct write takes no room in the queue and never waits, so the bound,
// the blocking and Abort/CloseRecv work on the queue as before, and
// CloseSend, called after the last Send returned, follows every direct
// write.
type memPipe struct {
	q         chan Frame
	eof       chan struct{}
	eofOnce   sync.Once
	eofErr    *AbortError // FailSend's error, set before eof is closed
	gone      context.Context
	goneDone  <-chan struct{} // gone.Done(), cached for the hot path
	cancel    context.CancelCauseFunc
	onBlocked func() // test hook: Send found the queue full
	onQueued  func() // test hook: a frame entered the queue
	onDirect  func() // test hook: a frame went out by a direct write

	sink    atomic.Pointer[readerSink]
	pending atomic.Int64
}

func newMemPipe(size int, onBlocked, onQueued func()) *memPipe {
	gone, cancel := context.WithCancelCause(context.Background())
	return &memPipe{
		q:         make(chan Frame, size),
		eof:       make(chan struct{}),
		gone:      gone,
		goneDone:  gone.Done(),
		cancel:    cancel,
		onBlocked: onBlocked,
		onQueued:  onQueued,
	}
}

func (p *memPipe) Send(ctx context.Context, f Frame) error {
	select {
	case <-p.goneDone:
		return context.Cause(p.gone)
	default:
	}
	if s := p.sink.Load(); s != nil && p.pending.Load() == 0 {
		all, err := s.tryWrite(&f)
		switch {
		case err != nil:
			p.CloseRecv()
			return context.Cause(p.gone)
		case all:
			f.Release()
			if p.onDirect != nil {
				p.onDirect()
			}
			return nil
		case f.sent > 0:
			// Half written: the reader goroutine writes the rest. The
			// queue is empty (pending == 0, and this is the only
			// sender), so this does not block; if the pipe is gone,
			// queued drains the frame and abandon ends the socket.
			p.pending.Add(1)
			p.q <- f
			p.queued()
			return nil
		}
	}
	p.pending.Add(1)
	if err := p.enqueue(ctx, f); err != nil {
		p.pending.Add(-1)
		return err
	}
	return nil
}

// setSink attaches the reader socket's sink: from now on Send may write
// frames to it directly. The receiver must call delivered after writing
// each frame it received.
func (p *memPipe) setSink(s *readerSink) { p.sink.Store(s) }

// delivered says the receiver has written a frame Recv returned.
func (p *memPipe) delivered() { p.pending.Add(-1) }

func (p *memPipe) enqueue(ctx context.Context, f Frame) error {
	select {
	case p.q <- f:
		p.queued()
		return nil
	default:
	}
	if p.onBlocked != nil {
		p.onBlocked()
	}
	select {
	case p.q <- f:
		p.queued()
		return nil
	case <-p.goneDone:
		return context.Cause(p.gone)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *memPipe) queued() {
	select {
	case <-p.goneDone:
		// Raced with Abort or CloseRecv, whose drain may have run before
		// the frame went in: nobody will receive it, give it back now.
		p.drain()
	default:
	}
	if p.onQueued != nil {
		p.onQueued()
	}
}

func (p *memPipe) CloseSend() { p.eofOnce.Do(func() { close(p.eof) }) }

func (p *memPipe) FailSend(err *AbortError) {
	p.eofOnce.Do(func() {
		p.eofErr = err
		close(p.eof)
	})
}

// end is what Recv returns once eof is closed and the queue is empty.
func (p *memPipe) end() error {
	if p.eofErr != nil {
		return p.eofErr
	}
	return io.EOF
}

func (p *memPipe) Recv(ctx context.Context) (Frame, error) {
	// An abort overrides queued frames: a broken stream ends promptly.
	select {
	case <-p.goneDone:
		return Frame{}, context.Cause(p.gone)
	default:
	}
	select {
	case f := <-p.q:
		return f, nil
	default:
	}
	select {
	case f := <-p.q:
		return f, nil
	case <-p.eof:
		// eof and a frame may be ready together; the queue wins.
		select {
		case f := <-p.q:
			return f, nil
		default:
			return Frame{}, p.end()
		}
	case <-p.goneDone:
		return Frame{}, context.Cause(p.gone)
	case <-ctx.Done():
		return Frame{}, ctx.Err()
	}
}

func (p *memPipe) CloseRecv() {
	p.cancel(ErrReaderGone)
	p.drain()
}

func (p *memPipe) Abort(err *AbortError) {
	p.cancel(err)
	// Recv no longer hands out frames; give their buffers back now (a
	// Send that slips one in after this drains it itself: queued).
	p.drain()
}

func (p *memPipe) drain() {
	for {
		select {
		case f := <-p.q:
			if f.sent > 0 {
				p.sink.Load().abandon()
			}
			f.Release()
		default:
			return
		}
	}
}

func (p *memPipe) Gone() context.Context { return p.gone }

func (p *memPipe) Len() int { return len(p.q) }
