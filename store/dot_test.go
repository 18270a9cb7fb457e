package store

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestDot32 checks Dot32 (the FMA kernel where the CPU has one) and
// gonum's kernel against a sum in float64, for lengths that use every
// part of the kernel (blocks of 32, of 8, single values), with b longer
// than a.
func TestDot32(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	for _, n := range []int{0, 1, 7, 8, 9, 31, 32, 33, 40, 63, 64, 65, 768, 1000, 1027} {
		a, b := make([]float32, n), make([]float32, n+5)
		for i := range a {
			a[i] = float32(r.NormFloat64())
		}
		for i := range b {
			b[i] = float32(r.NormFloat64())
		}
		var want, mag float64
		for i := range a {
			want += float64(a[i]) * float64(b[i])
			mag += math.Abs(float64(a[i]) * float64(b[i]))
		}
		for _, k := range []struct {
			name string
			f    func(a, b []float32) float32
		}{{"Dot32", Dot32}, {"sdot", func(a, b []float32) float32 { return sdot(a, b[:len(a)]) }}} {
			got := float64(k.f(a, b))
			if math.Abs(got-want) > 1e-6*mag+1e-30 {
				t.Errorf("%s, %d values: %g, want %g (off by %g)", k.name, n, got, want, got-want)
			}
		}
	}
}

// BenchmarkDot32 compares Dot32 with gonum's kernel on 768 dimensions.
func BenchmarkDot32(b *testing.B) {
	r := rand.New(rand.NewPCG(19, 20))
	x, y := make([]float32, 768), make([]float32, 768)
	for i := range x {
		x[i], y[i] = r.Float32(), r.Float32()
	}
	var sink float32
	b.Run("Dot32", func(b *testing.B) {
		for b.Loop() {
			sink += Dot32(x, y)
		}
	})
	b.Run("gonum", func(b *testing.B) {
		for b.Loop() {
			sink += sdot(x, y)
		}
	})
	_ = sink
}
