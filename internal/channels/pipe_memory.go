package channels

import (
	"context"
	"io"
	"sync"
)

// memPipe is the in-process Pipe: a buffered Go channel of frames. A Go
// channel gives the bound, the order and the blocking for free; the end of
// stream is a separate signal (eof) that Recv only honours once the queue is
// empty, and since the single sender closes eof after its last Send, every
// frame sent before CloseSend is delivered first.
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
			f.Release()
		default:
			return
		}
	}
}

func (p *memPipe) Gone() context.Context { return p.gone }

func (p *memPipe) Len() int { return len(p.q) }
