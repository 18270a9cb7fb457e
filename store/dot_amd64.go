package store

import "golang.org/x/sys/cpu"

// fma reports whether the CPU has AVX2 and FMA, which dotFMA needs.
var fma = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// dotFMA is the dot product of a and b (len(b) >= len(a)) with 8-wide
// fused multiply-adds into four sums.
//
//go:noescape
func dotFMA(a, b []float32) float32

// dot32 is Dot32: dotFMA where the CPU has AVX2 and FMA, else gonum's
// kernel.
func dot32(a, b []float32) float32 {
	b = b[:len(a)]
	if fma {
		return dotFMA(a, b)
	}
	return sdot(a, b)
}
