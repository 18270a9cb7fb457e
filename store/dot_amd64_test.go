package store

import "testing"

// TestDotFMAParts puts a single product in each part of the FMA kernel
// (blocks of 32, of 8, single values), to see that none is left out.
func TestDotFMAParts(t *testing.T) {
	if !fma {
		t.Skip("this CPU has no AVX2 and FMA: Dot32 runs gonum's kernel")
	}
	a := make([]float32, 32+8+3)
	b := make([]float32, len(a))
	for _, i := range []int{0, 31, 32, 39, 40, 42} {
		clear(a)
		a[i], b[i] = 2, 3
		if got := dotFMA(a, b); got != 6 {
			t.Errorf("dotFMA with one product at %d of %d = %g, want 6", i, len(a), got)
		}
	}
}
