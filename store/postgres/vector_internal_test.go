package postgres

import (
	"math/rand/v2"
	"testing"

	"github.com/scopemem/scopemem/store"
)

// TestNearDuplicate checks the early-exit comparison against store.Dot on
// pairs from far apart to identical, around the threshold.
func TestNearDuplicate(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	unitVec := func(v []float32) []float32 {
		u, err := store.Normalize(v)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	dups, total := 0, 0
	for _, dims := range []int{3, 64, 100, 768} {
		for i := range 2000 {
			a := make([]float32, dims)
			noise := make([]float32, dims)
			for j := range a {
				a[j], noise[j] = float32(r.NormFloat64()), float32(r.NormFloat64())
			}
			a, noise = unitVec(a), unitVec(noise)
			// b = a + w*noise: cosine 1/sqrt(1+w^2) about, so w from 0
			// to 0.5 spans identical to 0.89, dense around 0.97 (w 0.25).
			w := float32(i%100) / 200
			b := make([]float32, dims)
			for j := range b {
				b[j] = a[j] + w*noise[j]
			}
			b = unitVec(b)
			want := store.Dot(a, b) >= store.DuplicateSimilarity
			if want {
				dups++
			}
			total++
			if got := store.NearDuplicate(a, b); got != want {
				t.Fatalf("store.NearDuplicate(dims %d, dot %v) = %v, want %v", dims, store.Dot(a, b), got, want)
			}
		}
	}
	if dups < total/5 || dups > total*4/5 {
		t.Fatalf("%d of %d pairs are duplicates: the test does not straddle the threshold", dups, total)
	}
	if store.NearDuplicate([]float32{1, 0}, []float32{1, 0, 0}) {
		t.Error("nearDuplicate of vectors of different lengths = true, want false")
	}
}
