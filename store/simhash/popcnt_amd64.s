#include "textflag.h"

// func prefixPass4(q *[4]uint64, prefix []uint64, dist []uint16, hist []int32)
TEXT ·prefixPass4(SB), NOSPLIT, $0-80
	MOVQ q+0(FP), AX
	MOVQ 0(AX), R8
	MOVQ 8(AX), R9
	MOVQ 16(AX), R10
	MOVQ 24(AX), R11
	MOVQ prefix_base+8(FP), SI
	MOVQ dist_base+32(FP), DI
	MOVQ dist_len+40(FP), CX
	MOVQ hist_base+56(FP), BX
	TESTQ CX, CX
	JZ done

loop:
	MOVQ 0(SI), AX
	XORQ R8, AX
	POPCNTQ AX, AX
	MOVQ 8(SI), DX
	XORQ R9, DX
	POPCNTQ DX, DX
	ADDQ DX, AX
	MOVQ 16(SI), DX
	XORQ R10, DX
	POPCNTQ DX, DX
	ADDQ DX, AX
	MOVQ 24(SI), DX
	XORQ R11, DX
	POPCNTQ DX, DX
	ADDQ DX, AX
	MOVW AX, 0(DI)
	INCL 0(BX)(AX*4)
	ADDQ $32, SI
	ADDQ $2, DI
	DECQ CX
	JNZ loop

done:
	RET

// func hammingPOPCNT(a, b []uint64) int
TEXT ·hammingPOPCNT(SB), NOSPLIT, $0-56
	MOVQ a_base+0(FP), SI
	MOVQ a_len+8(FP), CX
	MOVQ b_base+24(FP), DI
	XORQ AX, AX
	TESTQ CX, CX
	JZ hdone

hloop:
	MOVQ 0(SI), DX
	XORQ 0(DI), DX
	POPCNTQ DX, DX
	ADDQ DX, AX
	ADDQ $8, SI
	ADDQ $8, DI
	DECQ CX
	JNZ hloop

hdone:
	MOVQ AX, ret+48(FP)
	RET
