package wstest

import (
	"fmt"
	"slices"
	"strings"
)

// Outcome is what a reader made of a peer's bytes, for the fuzz targets
// that read the same input with one of the repository's frame readers and
// with ws.Conn (the reference) and compare.
type Outcome struct {
	Msgs  []string // "T:" or "B:" and the payload
	Pongs []string
	End   string // EndOf's
}

// EndOf says how a reader stopped: "close N" when it echoed the peer's
// close frame with code N (peerClose), "fail N" when it closed with its
// own code N (ownClose), "eof" when the input ended first.
func EndOf(peerClose, ownClose int) string {
	switch {
	case peerClose != 0:
		return fmt.Sprint("close ", peerClose)
	case ownClose != 0:
		return fmt.Sprint("fail ", ownClose)
	}
	return "eof"
}

// Agree reports whether got matches ref, ws.Conn's outcome on the same
// input: the same messages, and the same pongs and end, with one allowed
// difference: ws.Conn fails a text message with 1007 at its first invalid
// byte, the repository's readers once the message is complete, so after
// ref's 1007 got may have read on (answering more pings) before it failed,
// the peer's close frame came before the message's end, or the input
// ended.
func Agree(got, ref Outcome) bool {
	same := got.End == ref.End && slices.Equal(got.Pongs, ref.Pongs)
	readOn := strings.HasPrefix(got.End, "fail ") || strings.HasPrefix(got.End, "close ") || got.End == "eof"
	earlyUTF8 := ref.End == "fail 1007" && readOn &&
		len(got.Pongs) >= len(ref.Pongs) && slices.Equal(got.Pongs[:len(ref.Pongs)], ref.Pongs)
	return slices.Equal(got.Msgs, ref.Msgs) && (same || earlyUTF8)
}

// Delivered is how a delivered message is recorded in Outcome.Msgs.
func Delivered(text bool, data []byte) string {
	if text {
		return "T:" + string(data)
	}
	return "B:" + string(data)
}
