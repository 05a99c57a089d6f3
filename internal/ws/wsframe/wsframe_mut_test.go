package wsframe

import (
	"bytes"
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// TestIsControl: close, ping and pong are control frames, data opcodes are
// not (kills wsframe.go:46 CONDITIONALS_BOUNDARY: close was not control).
func TestIsControl(t *testing.T) {
	for op := range 16 {
		if got, want := IsControl(op), op >= 8; got != want {
			t.Errorf("IsControl(%d) = %v", op, got)
		}
	}
}

// TestHeaderLengths: PutHeader picks the 7-bit, 16-bit or 64-bit length
// at 125/126 and 65535/65536 bytes, and ParseHeader reads back what it
// wrote, masked or not (kills the not-covered case expressions at :62,
// :64).
func TestHeaderLengths(t *testing.T) {
	for _, tc := range []struct{ n, hl int }{{0, 2}, {125, 2}, {126, 4}, {65535, 4}, {65536, 10}, {1 << 33, 10}} {
		for _, masked := range []bool{false, true} {
			b := make([]byte, MaxHeader)
			key := [4]byte{1, 2, 3, 4}
			hl := PutHeader(b, tc.n%2 == 0, OpBinary, tc.n, masked, key)
			want := tc.hl
			if masked {
				want += 4
			}
			if hl != want || HeaderLen(b[0], b[1]) != want {
				t.Fatalf("n %d masked %v: header of %d bytes (HeaderLen %d), want %d", tc.n, masked, hl, HeaderLen(b[0], b[1]), want)
			}
			h, err := ParseHeader(b[:hl])
			if err != nil || h.Len != uint64(tc.n) || h.Masked != masked || h.Fin != (tc.n%2 == 0) || h.Op != OpBinary ||
				(masked && h.Key != key) {
				t.Fatalf("n %d masked %v: parsed %+v %v", tc.n, masked, h, err)
			}
		}
	}
}

// TestParseHeaderRules: every reserved bit, every unknown opcode, and a
// fragmented or oversized control frame are protocol errors; every known
// opcode with a valid length is not (kills the not-covered case
// expressions at :271-:275, and :155's message is checked).
func TestParseHeaderRules(t *testing.T) {
	parse := func(b0, b1 byte, ext ...byte) error {
		_, err := ParseHeader(append([]byte{b0, b1}, ext...))
		return err
	}
	want := func(err error, reason string) {
		t.Helper()
		var pe *ProtocolError
		if !errors.As(err, &pe) || pe.Reason != reason || err.Error() != "websocket protocol error: "+reason {
			t.Fatalf("%v, want %q", err, reason)
		}
	}
	for _, rsv := range []byte{0x10, 0x20, 0x40} {
		want(parse(0x82|rsv, 0), "reserved bits set")
	}
	for op := range 16 {
		known := op <= OpBinary || op >= OpClose && op <= OpPong
		err := parse(0x80|byte(op), 5)
		if known && err != nil {
			t.Fatalf("op %d: %v", op, err)
		}
		if !known {
			want(err, "unknown opcode")
		}
	}
	for _, op := range []byte{OpClose, OpPing, OpPong} {
		want(parse(op, 0), "fragmented or oversized control frame")
		want(parse(0x80|op, 126, 0, 126), "fragmented or oversized control frame")
		if err := parse(0x80|op, 125); err != nil {
			t.Fatalf("a 125-byte control frame: %v", err)
		}
	}
	if err := parse(0x00, 126, 0xff, 0xff); err != nil { // a long continuation fragment
		t.Fatal(err)
	}
}

// TestValidCloseCode: the codes a peer may send (RFC 6455 §7.4 and the
// IANA registry: 1000-1003, 1007-1014, 3000-4999), checked at every
// boundary (kills the not-covered case expressions at :397, :399).
func TestValidCloseCode(t *testing.T) {
	valid := map[int]bool{}
	for _, r := range [][2]int{{1000, 1003}, {1007, 1014}, {3000, 4999}} {
		for c := r[0]; c <= r[1]; c++ {
			valid[c] = true
		}
	}
	for c := 0; c <= 5100; c++ {
		if ValidCloseCode(c) != valid[c] {
			t.Errorf("ValidCloseCode(%d) = %v", c, !valid[c])
		}
	}
	if ValidCloseCode(65535) || ValidCloseCode(-1000) {
		t.Error("codes out of range accepted")
	}
}

// TestAVX2Detection: the AVX2 path is on exactly when the kernel reports
// AVX2 (kills mask_amd64.go:19, :24 ×2, :27, :31: the feature check
// inverted or cut). Linux on amd64 only (/proc/cpuinfo).
func TestAVX2Detection(t *testing.T) {
	if runtime.GOARCH != "amd64" || runtime.GOOS != "linux" {
		t.Skip("reads /proc/cpuinfo on amd64")
	}
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Fatal(err)
	}
	var flags string
	for _, l := range strings.Split(string(info), "\n") {
		if strings.HasPrefix(l, "flags") {
			flags = l + " "
			break
		}
	}
	if flags == "" {
		t.Skip("no flags line in /proc/cpuinfo")
	}
	if want := strings.Contains(flags, " avx2 "); avx2Available() != want {
		t.Fatalf("AVX2 path %v, the kernel says %v", avx2Available(), want)
	}
}

// TestMaskBulkBlocks: with AVX2, masking takes the vector path from 128
// bytes on, whole 128-byte blocks, leaving the tail to the word loop; the
// bytes are right either way (kills mask_amd64.go:35, :42 boundary and
// negation: the vector path skipped at 128 bytes or for every long buffer).
func TestMaskBulkBlocks(t *testing.T) {
	const k = 0x0403020104030201
	for _, n := range []int{0, 64, 127, 128, 129, 255, 256, 1000} {
		b := make([]byte, n)
		src := bytes.Repeat([]byte{0xa5}, n)
		want := 0
		if avx2Available() && n >= 128 {
			want = n &^ 127
		}
		if got := maskBulk(k, b); got != want {
			t.Errorf("maskBulk(%d bytes) did %d, want %d", n, got, want)
		}
		if got := maskCopyBulk(k, b, src); got != want {
			t.Errorf("maskCopyBulk(%d bytes) did %d, want %d", n, got, want)
		}
		for i := range want {
			if b[i] != 0xa5^byte(i%4+1) {
				t.Fatalf("n %d: byte %d is %#x", n, i, b[i])
			}
		}
	}
}

// countReader counts the Read calls on its source.
type countReader struct {
	r     io.Reader
	calls int
}

func (c *countReader) Read(p []byte) (int, error) { c.calls++; return c.r.Read(p) }

// TestDirectReadTakesNextHeader: a payload read straight into the caller's
// buffer also fetches the next frame's header when the buffer has room, so
// that header costs no read of its own (kills :323 ARITHMETIC_BASE: the
// room was subtracted, and the next header needed another read).
func TestDirectReadTakesNextHeader(t *testing.T) {
	a := bytes.Repeat([]byte("a"), 2000)
	in := append(frame(true, OpBinary, a, nil), frame(true, OpText, []byte("next"), nil)...)
	src := &countReader{r: bytes.NewReader(in)}
	r := NewReader(src, 256)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, len(a), len(a)+MaxHeader)
	if err := r.ReadPayload(b); err != nil || !bytes.Equal(b, a) {
		t.Fatalf("payload %v", err)
	}
	// One read for the header and the buffer's worth of payload, one
	// straight into b (with the next header).
	if src.calls != 2 {
		t.Fatalf("%d reads for the first frame, want 2", src.calls)
	}
	h, err := r.Next()
	if err != nil || h.Op != OpText || h.Len != 4 || src.calls != 2 {
		t.Fatalf("next header %+v %v after %d reads, want it without a read", h, err, src.calls)
	}
}

// TestReadWithError: bytes that arrive together with the source's error
// are returned, the error after them (kills :341 CONDITIONALS_NEGATION of
// n == 0: the last bytes were dropped); a frame cut short fails on the
// first Read that gets nothing (kills :341's r.err != nil negated: a Read
// returned 0 bytes and no error).
func TestReadWithError(t *testing.T) {
	p := []byte("payload bytes")
	r := NewReader(iotest.DataErrReader(bytes.NewReader(frame(true, OpBinary, p, nil))), 256)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, len(p))
	if n, err := r.Read(b); n != len(p) || err != nil || !bytes.Equal(b, p) {
		t.Fatalf("read %d %v, want the %d bytes", n, err, len(p))
	}

	cut := frame(true, OpBinary, bytes.Repeat([]byte("x"), 300), nil)[:4]
	r = NewReader(bytes.NewReader(cut), 256)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(make([]byte, 100)); n != 0 || err != io.ErrUnexpectedEOF {
		t.Fatalf("read of a cut frame: %d %v, want io.ErrUnexpectedEOF at once", n, err)
	}
}
