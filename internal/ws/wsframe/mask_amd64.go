//go:build !purego

package wsframe

// AVX2 masking: 128 bytes per loop, about four times the word-wise Go loop
// (which still does the tails, and everything on CPUs without AVX2).

//go:noescape
func maskAVX2(k uint64, b []byte) int

//go:noescape
func maskCopyAVX2(k uint64, dst, src []byte) int

func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

func xgetbv0() (eax uint32)

var hasAVX2 = func() bool {
	if max, _, _, _ := cpuid(0, 0); max < 7 {
		return false
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const osxsave, avx = 1 << 27, 1 << 28
	if ecx1&osxsave == 0 || ecx1&avx == 0 {
		return false
	}
	if xgetbv0()&6 != 6 { // the OS saves the XMM and YMM registers
		return false
	}
	_, ebx7, _, _ := cpuid(7, 0)
	return ebx7&(1<<5) != 0
}()

func maskBulk(k uint64, b []byte) int {
	if hasAVX2 && len(b) >= 128 {
		return maskAVX2(k, b)
	}
	return 0
}

func maskCopyBulk(k uint64, dst, src []byte) int {
	if hasAVX2 && len(src) >= 128 {
		return maskCopyAVX2(k, dst[:len(src)], src)
	}
	return 0
}
