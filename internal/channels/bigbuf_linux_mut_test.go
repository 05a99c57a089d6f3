package channels

import (
	"bufio"
	"fmt"
	"os"
	"testing"
	"unsafe"
)

// mapped reports whether a mapping of /proc/self/maps covers [start,
// start+n) (the kernel may merge it with a neighbouring one).
func mapped(t *testing.T, start uintptr, n int) bool {
	t.Helper()
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var lo, hi uintptr
		if _, err := fmt.Sscanf(sc.Text(), "%x-%x", &lo, &hi); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		if lo <= start && start+uintptr(n) <= hi {
			return true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return false
}

// TestBigBufUnmapped: a bigBuf is a mapping of its own, and freeBig gives
// it back to the system at once (kills bigbuf_linux.go:25
// CONDITIONALS_NEGATION: the mapping stayed until exit). A buffer that is
// not a mapping, and one freed already, are left alone.
func TestBigBufUnmapped(t *testing.T) {
	const n = 4 << 20 // whole pages
	b := bigBuf(n)
	if len(b) != 0 || cap(b) != n {
		t.Fatalf("len %d cap %d", len(b), cap(b))
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if !mapped(t, start, n) {
		t.Fatalf("no mapping of %d bytes at %x", n, start)
	}
	b = append(b, "written"...)
	freeBig(b)
	if mapped(t, start, n) {
		t.Fatal("the mapping is still there after freeBig")
	}
	freeBig(b)                         // freed already: nothing happens
	freeBig(make([]byte, 0, 2*bufCap)) // the heap fallback: left to the GC
}
