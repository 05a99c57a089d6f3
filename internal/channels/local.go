package channels

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"github.com/sluicehq/sluice/wire"
)

// LocalWriter is a channel's write end held in process, e.g. by the HTTP
// trigger code streaming a request body to a worker. WriteFrame, CopyFrom
// and Close are for one goroutine; Abort may be called from any.
type LocalWriter struct {
	h      *Hub
	ch     *channel
	p      Pipe // ch.pipe once the writing goroutine has needed it
	closed atomic.Bool
	once   sync.Once
}

// OnReady asks for f to be called, once, when the channel's reader
// connects (its upgrade may still fail) or the channel ends (expired,
// engine shutdown): until then nothing written would be read, so a caller
// may hold data back until f instead of queueing it. Call it before
// handing out the reader's ref; f must not block. It is not called once
// Retire has removed the channel.
func (w *LocalWriter) OnReady(f func()) {
	w.h.mu.Lock()
	w.ch.onReady = f
	w.h.mu.Unlock()
}

// pipe is for the writing goroutine.
func (w *LocalWriter) pipe() Pipe {
	if w.p == nil {
		w.p = w.h.pipeFor(w.ch)
	}
	return w.p
}

// WriteFrame sends one frame (text = a message, else data), blocking while
// the channel is full, until ctx ends. data is copied into a buffer of the
// channel's before WriteFrame returns, so the caller may reuse it at once.
// It fails with ErrReaderGone when the reader went away, an *AbortError
// when the channel broke (expired, shutdown), ErrFrameTooLarge, or
// ErrClosed.
func (w *LocalWriter) WriteFrame(ctx context.Context, text bool, data []byte) error {
	if w.closed.Load() {
		return ErrClosed
	}
	if int64(len(data)) > w.h.cfg.MaxFrameSize {
		return ErrFrameTooLarge
	}
	f, err := w.frame(ctx, len(data))
	if err != nil {
		return err
	}
	f.Text = text
	f.Data = append(f.Data, data...)
	return w.send(ctx, f)
}

// TryWriteFrame is WriteFrame without waiting: a frame that would have to
// wait for memory (the channel's bound or the hub's budget) or for room in
// the channel's buffer is not written, and ok is false.
func (w *LocalWriter) TryWriteFrame(text bool, data []byte) (ok bool, err error) {
	// reserve and Send try before they look at a done context.
	err = w.WriteFrame(doneCtx, text, data)
	if err == context.Canceled {
		return false, nil
	}
	return err == nil, err
}

var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// frame returns an empty frame with room for n bytes, charged to the
// channel, waiting for memory as a writer socket does.
func (w *LocalWriter) frame(ctx context.Context, n int) (Frame, error) {
	c := bufCap
	if n > bufCap {
		c = n
	}
	p := w.pipe()
	mem := w.ch.mem // set with the pipe, except for a retired channel's
	if mem == nil {
		return Frame{}, ErrClosed
	}
	if !mem.reserve(int64(c), 0, ctx.Done(), p.Gone().Done()) {
		mem.endMessage()
		if err := context.Cause(p.Gone()); err != nil {
			return Frame{}, err
		}
		return Frame{}, ctx.Err()
	}
	f := Frame{mem: mem, cost: int64(c)}
	if n > bufCap {
		f.Data, f.big = bigBuf(n), true
	} else {
		f.buf = getBuf()
		f.Data = *f.buf
	}
	return f, nil
}

func (w *LocalWriter) send(ctx context.Context, f Frame) error {
	if err := w.pipe().Send(ctx, f); err != nil {
		f.Release()
		return err
	}
	return nil
}

// CopyFrom streams r into the channel as binary frames of at most
// wire.FrameSize bytes, reading straight into pooled buffers (one frame per
// Read, so a slow source is forwarded as it comes). It returns at io.EOF
// without closing the writer.
func (w *LocalWriter) CopyFrom(ctx context.Context, r io.Reader) (int64, error) {
	var total int64
	for {
		if w.closed.Load() {
			return total, ErrClosed
		}
		f, err := w.frame(ctx, wire.FrameSize)
		if err != nil {
			return total, err
		}
		n, rerr := r.Read(f.Data[:wire.FrameSize])
		if n > 0 {
			f.Data = f.Data[:n]
			if err := w.send(ctx, f); err != nil {
				return total, err
			}
			total += int64(n)
		} else {
			f.Release()
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// Close ends the stream cleanly: the reader gets every frame written, then
// close code 1000. Later calls, and Close after Abort, do nothing.
func (w *LocalWriter) Close() { w.end(nil) }

// Abort breaks the stream: the reader gets close code 1011 with reason.
func (w *LocalWriter) Abort(reason string) {
	w.end(&AbortError{Reason: reason})
}

// Retire says the engine is done with the channel (e.g. the HTTP exchange
// is over). If the remote reader has not connected by now it never will:
// the channel leaves the registry at once (a late connection gets 404, as
// in the reference engine) instead of waiting for the TTL, and a WriteFrame
// still blocked fails. If the reader has connected, Retire does nothing:
// the stream ends through Close or Abort as usual.
func (w *LocalWriter) Retire() {
	if w.h.retire(w.ch, dirWrite) {
		w.closed.Store(true)
		w.once.Do(func() {})
	}
}

func (w *LocalWriter) end(abort *AbortError) {
	w.once.Do(func() {
		w.closed.Store(true)
		if abort != nil {
			w.h.pipeFor(w.ch).Abort(abort) // Abort may come from any goroutine
		} else if !w.h.closeUnmade(w.ch) {
			w.pipe().CloseSend()
		}
		w.h.finish(w.ch, dirWrite, nil)
	})
}

// LocalReader is a channel's read end held in process, e.g. by the HTTP
// trigger code consuming a worker's response channel. Next is for one
// goroutine; Close may be called from any.
type LocalReader struct {
	h    *Hub
	ch   *channel
	p    Pipe // ch.pipe once Next has needed it
	once sync.Once
}

// OnReady asks for f to be called, once, when the channel may have
// something for Next: its writer connected (its upgrade may still fail),
// or the channel ended (expired, engine shutdown). Until then Next would
// only block, so a caller can wait for f instead of parking a goroutine in
// Next. Call it before handing out the writer's ref; f must not block. It
// is not called once Retire has removed the channel.
func (r *LocalReader) OnReady(f func()) {
	r.h.mu.Lock()
	r.ch.onReady = f
	r.h.mu.Unlock()
}

// Next returns the next frame, blocking until one arrives or ctx ends. The
// caller owns the frame and should call Release once done with its Data.
// At a clean end it returns io.EOF; when the writer vanished or the channel
// broke, an *AbortError (errors.Is(err, ErrAborted)) whose Reason says why.
func (r *LocalReader) Next(ctx context.Context) (Frame, error) {
	if r.p == nil {
		r.p = r.h.pipeFor(r.ch)
	}
	f, err := r.p.Recv(ctx)
	switch {
	case err == nil:
		return f, nil
	case errors.Is(err, ErrReaderGone):
		return Frame{}, ErrClosed
	case err == io.EOF || errors.Is(err, ErrAborted):
		r.finish() // the stream is over: the channel may go
	}
	return Frame{}, err
}

// Close gives up the read end: a writer socket is closed with 1011 "reader
// closed", a local writer's next WriteFrame fails with ErrReaderGone.
func (r *LocalReader) Close() {
	r.h.pipeFor(r.ch).CloseRecv()
	r.finish()
}

// Retire says the engine is done with the channel. If the remote writer
// has not connected by now it never will: the channel leaves the registry
// at once (a late connection gets 404) instead of waiting for the TTL. If
// the writer has connected, Retire does nothing: use Close to give up.
func (r *LocalReader) Retire() {
	if r.h.retire(r.ch, dirRead) {
		r.once.Do(func() {})
	}
}

func (r *LocalReader) finish() {
	r.once.Do(func() { r.h.finish(r.ch, dirRead, nil) })
}
