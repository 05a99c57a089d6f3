//go:build !purego

#include "textflag.h"

// func maskAVX2(k uint64, b []byte) int
// XORs the first len(b) &^ 127 bytes of b with k (the key twice) and
// returns how many bytes it did.
TEXT ·maskAVX2(SB), NOSPLIT, $0-40
	MOVQ k+0(FP), AX
	MOVQ b_base+8(FP), DI
	MOVQ b_len+16(FP), CX
	ANDQ $~127, CX
	MOVQ CX, ret+32(FP)
	JZ   done
	MOVQ AX, X0
	VPBROADCASTQ X0, Y0
loop:
	VPXOR   (DI), Y0, Y1
	VPXOR   32(DI), Y0, Y2
	VPXOR   64(DI), Y0, Y3
	VPXOR   96(DI), Y0, Y4
	VMOVDQU Y1, (DI)
	VMOVDQU Y2, 32(DI)
	VMOVDQU Y3, 64(DI)
	VMOVDQU Y4, 96(DI)
	ADDQ    $128, DI
	SUBQ    $128, CX
	JNZ     loop
	VZEROUPPER
done:
	RET

// func maskCopyAVX2(k uint64, dst, src []byte) int
// Writes the first len(src) &^ 127 bytes of src XOR k into dst (at least
// as long) and returns how many bytes it did.
TEXT ·maskCopyAVX2(SB), NOSPLIT, $0-64
	MOVQ k+0(FP), AX
	MOVQ dst_base+8(FP), DI
	MOVQ src_base+32(FP), SI
	MOVQ src_len+40(FP), CX
	ANDQ $~127, CX
	MOVQ CX, ret+56(FP)
	JZ   done
	MOVQ AX, X0
	VPBROADCASTQ X0, Y0
loop:
	VPXOR   (SI), Y0, Y1
	VPXOR   32(SI), Y0, Y2
	VPXOR   64(SI), Y0, Y3
	VPXOR   96(SI), Y0, Y4
	VMOVDQU Y1, (DI)
	VMOVDQU Y2, 32(DI)
	VMOVDQU Y3, 64(DI)
	VMOVDQU Y4, 96(DI)
	ADDQ    $128, SI
	ADDQ    $128, DI
	SUBQ    $128, CX
	JNZ     loop
	VZEROUPPER
done:
	RET

// func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL leaf+0(FP), AX
	MOVL sub+4(FP), CX
	CPUID
	MOVL AX, eax+8(FP)
	MOVL BX, ebx+12(FP)
	MOVL CX, ecx+16(FP)
	MOVL DX, edx+20(FP)
	RET

// func xgetbv0() (eax uint32)
TEXT ·xgetbv0(SB), NOSPLIT, $0-4
	MOVL $0, CX
	XGETBV
	MOVL AX, eax+0(FP)
	RET
