package channels

import (
	"context"
	"errors"
)

// Pipe carries the frames of one channel from its write end to its read end.
//
// It is the seam for running the two ends on different engine nodes: the
// in-memory implementation (pipe_memory.go) is the only one today, and the
// rest of the package uses nothing but this interface. An implementation
// must keep these guarantees:
//
//   - bounded: at most the channel's buffer size of frames are held; Send
//     blocks while the pipe is full, which is the backpressure (the bytes
//     the frames hold are bounded before Send, by their writer: mem.go);
//   - ordered: frames reach Recv in the order Send accepted them, and
//     CloseSend ends the stream only after every frame sent before it;
//   - a broken stream is never reported as a clean end: after Abort, Recv
//     returns the abort error, not io.EOF; after FailSend, it returns the
//     frames sent before and then the error.
//
// Exactly one goroutine sends (Send, then CloseSend) and exactly one
// receives; Abort and CloseRecv may be called from anywhere, any number of
// times (the first call wins).
type Pipe interface {
	// Send queues f, blocking while the pipe is full. On success the pipe
	// owns f's buffer; on failure the caller keeps it. It fails with
	// ErrReaderGone, the *AbortError the pipe was aborted with, or ctx's
	// error.
	Send(ctx context.Context, f Frame) error
	// CloseSend ends the stream cleanly: Recv returns io.EOF once the frames
	// sent before have been received. It must not race with Send.
	CloseSend()
	// FailSend ends the stream as broken by its writer: Recv returns the
	// frames sent before, then err (not io.EOF), so that nothing that
	// reached the engine is lost and the reader still learns the stream
	// broke. It must not race with Send; the first of CloseSend and
	// FailSend counts.
	FailSend(err *AbortError)
	// Recv returns the next frame (the caller then owns its buffer: call
	// Frame.Release), io.EOF after a clean end, an *AbortError if the
	// stream broke, ErrReaderGone after CloseRecv, or ctx's error.
	Recv(ctx context.Context) (Frame, error)
	// CloseRecv says the read end is gone: pending and later Sends fail with
	// ErrReaderGone and queued frames are released.
	CloseRecv()
	// Abort breaks the stream with err (an *AbortError): the reader gets it
	// instead of further frames or io.EOF, and Sends fail. Abort after a
	// clean CloseSend still wins if the reader has not drained the pipe: a
	// stream that was not fully delivered is broken.
	Abort(err *AbortError)
	// Gone is cancelled once frames can no longer be delivered (read end
	// gone or stream aborted); context.Cause tells which. Write ends watch
	// it with context.AfterFunc to close their socket promptly, even while
	// idle, without a goroutine per channel.
	Gone() context.Context
	// Len is the number of frames queued, for tests and metrics.
	Len() int
}

// Frame is one WebSocket message travelling through a channel: Text frames
// are messages, binary frames are data. A frame is forwarded unchanged.
type Frame struct {
	Text bool
	big  bool // Data is a bigBuf
	Data []byte
	buf  *[]byte  // pooled backing array of Data, if any
	mem  *chanMem // charged cost bytes for this frame, if set
	cost int64
}

// Release gives the frame's buffer back and its bytes to the channel's
// memory budget. Data must not be used afterwards. Releasing a frame
// twice, or a zero Frame, is harmless.
func (f *Frame) Release() {
	f.releaseBuf()
	if f.mem != nil {
		f.mem.release(f.cost)
		f.mem, f.cost = nil, 0
	}
	f.Data = nil
}

// releaseBuf gives the frame's buffer back (to the pool, or to the system
// for a bigBuf); the charge stays.
func (f *Frame) releaseBuf() {
	switch {
	case f.buf != nil:
		*f.buf = f.Data
		putBuf(f.buf)
		f.buf = nil
	case f.big:
		freeBig(f.Data)
		f.big = false
	}
}

// ErrAborted is matched (errors.Is) by every *AbortError.
var ErrAborted = errors.New("channels: stream aborted")

// ErrReaderGone is returned to a writer whose reader went away.
var ErrReaderGone = errors.New("channels: reader closed")

// AbortError says why a stream broke; Reason is what the engine sends as
// the reader's close reason (code 1011).
type AbortError struct {
	Reason string
}

func (e *AbortError) Error() string { return "channels: stream aborted: " + e.Reason }

// Unwrap makes errors.Is(err, ErrAborted) true.
func (e *AbortError) Unwrap() error { return ErrAborted }

// errShutdown is the abort of every channel at engine shutdown; write
// sockets get 1001 for it rather than 1011.
var errShutdown = &AbortError{Reason: "engine shutting down"}
