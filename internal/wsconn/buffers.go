package wsconn

// Encode buffers for outgoing frames, shared by the engine and the SDK:
// take one with Buffer, encode into it, and pass Recycle as Send's
// onWritten. A channel rather than a sync.Pool: putting a slice into a
// Pool allocates its header, and this runs for every frame sent.
var freeBuffers = make(chan []byte, 1024)

// Buffer returns an empty buffer to encode a frame into.
func Buffer() []byte {
	select {
	case b := <-freeBuffers:
		return b[:0]
	default:
		return make([]byte, 0, 1024)
	}
}

// Recycle takes back a buffer from Buffer (or any other) once written.
func Recycle(b []byte) {
	if cap(b) > 64<<10 {
		return // do not pin large buffers
	}
	select {
	case freeBuffers <- b:
	default:
	}
}
