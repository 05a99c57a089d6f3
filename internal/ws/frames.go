package ws

import (
	"io"

	"github.com/sluicehq/sluice/internal/ws/wsframe"
)

// FrameReader reads a connection frame by frame, for readers that keep
// their own policy for a message's bytes — where they go, how a buffer
// grows, what an oversized message leaves behind — but not for the
// protocol: Next handles control frames, masking by role and message
// order exactly as NextReader does, and every error is answered (close
// frame) and mapped (1006 for a peer that hung up, a deadline passing
// returned as it is) by the same code. The engine's worker sockets, the
// channel hub's writer sockets and the SDK's control socket read with it.
//
// A FrameReader and NextReader must not both be used on one connection,
// and SetReadLimit does not apply to it: the reader decides what a message
// too large is. Like NextReader, it can be resumed after a read deadline
// passed: a frame header, control frame or payload it was in the middle of
// stays in place, and the call that was cut (Next, Read, Skip) goes on.
type FrameReader Conn

// Frames returns the frame-by-frame reader of c.
func (c *Conn) Frames() *FrameReader { return (*FrameReader)(c) }

// Next returns the header of the next data frame — the first frame of a
// message (text or binary) or a continuation of the current one (Op 0) —
// skipping whatever is left of the current frame's payload and handling
// the control frames before it with the connection's handlers. A
// continuation outside a message, a new message inside a fragmented one,
// or a frame masked against its role is a *ProtocolError, answered with
// its close code.
func (f *FrameReader) Next() (wsframe.Header, error) {
	r := &f.rd
	if r.err != nil {
		return wsframe.Header{}, r.err
	}
	r.fr.ClearTimeout()
	h, err := r.dataHeader()
	if err != nil {
		return h, err
	}
	switch {
	case h.Op == wsframe.OpContinuation && !r.inMsg:
		return h, r.fail(&ProtocolError{Reason: "continuation frame outside a message"})
	case h.Op != wsframe.OpContinuation && r.inMsg:
		return h, r.fail(&ProtocolError{Reason: "new message inside a fragmented one"})
	}
	r.inMsg = !h.Fin
	return h, nil
}

// Remaining is the number of payload bytes of the current frame not read:
// 0 while a Next cut by a deadline is in the middle of a control frame.
func (f *FrameReader) Remaining() uint64 {
	if f.rd.ctlOp != 0 {
		return 0
	}
	return f.rd.fr.Remaining()
}

// Read reads payload of the current frame into p, unmasked, and returns
// io.EOF at the end of the frame. It may use up to wsframe.MaxHeader bytes
// of p beyond those it reports as scratch space: a p with that room
// receives a payload of 1 KiB or more straight from the connection,
// picking up the next header with the same system call.
func (f *FrameReader) Read(p []byte) (int, error) {
	r := &f.rd
	if r.err != nil {
		return 0, r.err
	}
	if r.ctlOp != 0 {
		return 0, io.EOF
	}
	r.fr.ClearTimeout()
	n, err := r.fr.Read(p)
	if err != nil && err != io.EOF {
		return n, r.readErr(err)
	}
	return n, err
}

// ReadPayload reads the whole rest of the current frame into b[:len(b)],
// which must be exactly Remaining() long (cap(b) beyond it is scratch
// space, as for Read).
func (f *FrameReader) ReadPayload(b []byte) error {
	return f.payload(func(fr *wsframe.Reader) error { return fr.ReadPayload(b) })
}

// Skip drops the next n payload bytes of the current frame (n at most
// Remaining()) without copying them out. Interrupted, it has dropped what
// Remaining no longer counts.
func (f *FrameReader) Skip(n uint64) error {
	return f.payload(func(fr *wsframe.Reader) error { return fr.Skip(n) })
}

// payload runs op on the current data frame's payload, resuming after a
// deadline and mapping its error; inside a control frame a deadline cut
// (Remaining is 0 then) there is none, and op does not run.
func (f *FrameReader) payload(op func(*wsframe.Reader) error) error {
	r := &f.rd
	if r.err != nil {
		return r.err
	}
	if r.ctlOp != 0 {
		return nil
	}
	r.fr.ClearTimeout()
	if err := op(r.fr); err != nil {
		return r.readErr(err)
	}
	return nil
}

// Buffered reports whether, between messages, the whole next message is
// already buffered as one unfragmented data frame: reading it needs no
// system call (a reader can hold its replies back for the rest of a
// burst).
func (f *FrameReader) Buffered() bool {
	r := &f.rd
	return r.err == nil && r.ctlOp == 0 && !r.inMsg && r.fr.Remaining() == 0 && r.fr.FrameBuffered()
}

// FailText answers a text message that is not valid UTF-8 (the reader
// checks a message once it is whole) with close 1007 and returns
// ErrTextUTF8; the connection cannot be read further.
func (f *FrameReader) FailText() error { return f.rd.fail(ErrTextUTF8) }
