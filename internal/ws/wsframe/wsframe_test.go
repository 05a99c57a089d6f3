package wsframe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func slowMask(key [4]byte, pos int, b []byte) {
	for i := range b {
		b[i] ^= key[(pos+i)&3]
	}
}

// TestMask covers every length up to 300 and a few big ones (the AVX2
// loop takes 128-byte blocks), every start position and misaligned buffers.
func TestMask(t *testing.T) {
	key := [4]byte{1, 2, 3, 0xff}
	lengths := []int{1000, 4096 + 5, 65536, 65536 + 10}
	for n := range 300 {
		lengths = append(lengths, n)
	}
	for _, n := range lengths {
		for pos := range 4 {
			b := make([]byte, n+pos)[pos:] // misaligned by pos too
			for i := range b {
				b[i] = byte(i * 31)
			}
			want := bytes.Clone(b)
			slowMask(key, pos, want)
			if next := Mask(key, pos, b); next != (pos+n)&3 {
				t.Fatalf("len %d pos %d: next position %d", n, pos, next)
			}
			if !bytes.Equal(b, want) {
				t.Fatalf("len %d pos %d: got %x want %x", n, pos, b, want)
			}
			dst := make([]byte, n+3)[pos:]
			src := make([]byte, n+1)[1:]
			for i := range src {
				src[i] = byte(i * 31)
			}
			MaskCopy(dst, src, key)
			slowMask(key, 0, src)
			if !bytes.Equal(dst[:n], src) {
				t.Fatalf("MaskCopy len %d: got %x want %x", n, dst[:n], src)
			}
		}
	}
}

func frame(fin bool, op int, payload []byte, key *[4]byte) []byte {
	hdr := make([]byte, MaxHeader)
	var k [4]byte
	if key != nil {
		k = *key
	}
	n := PutHeader(hdr, fin, op, len(payload), key != nil, k)
	p := bytes.Clone(payload)
	if key != nil {
		Mask(k, 0, p)
	}
	return append(hdr[:n], p...)
}

// TestReader: frames of every header size, masked or not, read whole, in
// small pieces, and through a source that returns one byte at a time, come
// out as sent.
func TestReader(t *testing.T) {
	key := [4]byte{9, 8, 7, 6}
	sizes := []int{0, 1, 125, 126, 1023, 1024, 4000, 65535, 65536, 70000}
	for _, masked := range []bool{false, true} {
		var stream []byte
		var want [][]byte
		for i, n := range sizes {
			p := make([]byte, n)
			for j := range p {
				p[j] = byte(i + j*7)
			}
			want = append(want, p)
			var k *[4]byte
			if masked {
				k = &key
			}
			stream = append(stream, frame(true, OpBinary, p, k)...)
		}
		for _, src := range []struct {
			name string
			r    func() io.Reader
		}{
			{"whole", func() io.Reader { return bytes.NewReader(stream) }},
			{"onebyte", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) }},
			{"half", func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) }},
		} {
			for _, chunk := range []int{1, 100, 4096, 1 << 20} {
				r := NewReader(src.r(), 256)
				for i, w := range want {
					h, err := r.Next()
					if err != nil {
						t.Fatalf("%s/%d masked=%v frame %d: %v", src.name, chunk, masked, i, err)
					}
					if !h.Fin || h.Op != OpBinary || h.Len != uint64(len(w)) || h.Masked != masked {
						t.Fatalf("frame %d header %+v", i, h)
					}
					var got []byte
					buf := make([]byte, chunk)
					for {
						n, err := r.Read(buf)
						got = append(got, buf[:n]...)
						if err == io.EOF {
							break
						}
						if err != nil {
							t.Fatal(err)
						}
					}
					if !bytes.Equal(got, w) {
						t.Fatalf("%s/%d masked=%v frame %d: payload differs", src.name, chunk, masked, i)
					}
				}
				if _, err := r.Next(); err != io.EOF {
					t.Fatalf("after the last frame: %v", err)
				}
			}
		}
	}
}

// FrameBuffered, which reads only the header bits it needs, answers as
// ParseHeader's header would: a final text or binary frame with a valid
// header whose payload is all buffered. Every first two bytes, with the
// extended lengths around their edges, each with its payload buffered
// whole or one byte short.
func TestFrameBufferedMatchesParseHeader(t *testing.T) {
	exts := map[byte][]uint64{126: {0, 125, 126, 300}, 127: {0, 126, 300, 1 << 16, 1<<63 - 1, 1 << 63, 1<<64 - 1}}
	for b0 := range 256 {
		for b1 := range 256 {
			lens := []uint64{uint64(b1 & 0x7f)}
			if e, ok := exts[byte(b1&0x7f)]; ok {
				lens = e
			}
			for _, n := range lens {
				hdr := []byte{byte(b0), byte(b1)}
				switch b1 & 0x7f {
				case 126:
					hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
				case 127:
					hdr = binary.BigEndian.AppendUint64(hdr, n)
				}
				if b1&0x80 != 0 {
					hdr = append(hdr, 1, 2, 3, 4)
				}
				for _, short := range []uint64{0, 1} {
					if short > n || n > 1<<16 && short == 0 {
						continue // a payload too long to buffer is only ever short
					}
					pend := hdr
					if n <= 1<<16 {
						pend = append(hdr[:len(hdr):len(hdr)], make([]byte, n-short)...)
					}
					h, err := ParseHeader(hdr)
					want := err == nil && h.Fin && (h.Op == OpText || h.Op == OpBinary) && uint64(len(pend)-len(hdr)) >= h.Len
					for cut := range len(hdr) { // a header not yet whole is never a buffered frame
						if r := (&Reader{pend: pend[:cut]}); r.FrameBuffered() {
							t.Fatalf("% x cut to %d bytes: buffered", hdr, cut)
						}
					}
					if got := (&Reader{pend: pend}).FrameBuffered(); got != want {
						t.Fatalf("% x with %d payload bytes: FrameBuffered %v, ParseHeader's header %v", hdr, len(pend)-len(hdr), got, want)
					}
				}
			}
		}
	}
}

// TestReaderSkipsUnread: Next skips the rest of a frame not read.
func TestReaderSkipsUnread(t *testing.T) {
	stream := append(frame(true, OpBinary, bytes.Repeat([]byte{1}, 5000), nil), frame(true, OpText, []byte("hi"), nil)...)
	r := NewReader(bytes.NewReader(stream), 256)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	h, err := r.Next()
	if err != nil || h.Op != OpText {
		t.Fatalf("%+v %v", h, err)
	}
	b := make([]byte, 2)
	if err := r.ReadPayload(b); err != nil || string(b) != "hi" {
		t.Fatalf("%q %v", b, err)
	}
}

func TestReaderErrors(t *testing.T) {
	long := []byte{0x82, 127}
	long = binary.BigEndian.AppendUint64(long, 1<<63)
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"reserved", []byte{0xC2, 0}, &ProtocolError{}},
		{"opcode", []byte{0x83, 0}, &ProtocolError{}},
		{"fragmented ping", []byte{0x09, 0}, &ProtocolError{}},
		{"long ping", append([]byte{0x89, 126, 0, 200}, make([]byte, 200)...), &ProtocolError{}},
		{"length", long, &ProtocolError{}},
		{"cut header", []byte{0x82}, io.ErrUnexpectedEOF},
		{"cut length", []byte{0x82, 127, 0}, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(tc.in), 256).Next()
			var pe *ProtocolError
			if _, ok := tc.want.(*ProtocolError); ok && !errors.As(err, &pe) || !ok && err != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	r := NewReader(bytes.NewReader(frame(true, OpBinary, make([]byte, 3000), nil)[:2000]), 256)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if err := r.ReadPayload(make([]byte, 3000)); err != io.ErrUnexpectedEOF {
		t.Fatalf("cut payload: %v", err)
	}
}

func BenchmarkMask(b *testing.B) {
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		Mask([4]byte{1, 2, 3, 4}, 0, buf)
	}
}

func BenchmarkMaskCopy(b *testing.B) {
	src := make([]byte, 64<<10)
	dst := make([]byte, 64<<10)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		MaskCopy(dst, src, [4]byte{1, 2, 3, 4})
	}
}
