package sqlite

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/scopemem/scopemem/store"
)

// cacheRows makes n rows with random unit vectors, rids from first.
func cacheRows(r *rand.Rand, first int64, n, dims int) []cachedRow {
	rows := make([]cachedRow, n)
	for i := range rows {
		v := make([]float32, dims)
		for j := range v {
			v[j] = float32(r.NormFloat64()) + 0.3 // off centre, so the mean matters
		}
		store.Normalize(v)
		rid := first + int64(i)
		rows[i] = cachedRow{rid: rid, vec: v, mem: store.Memory{ID: fmt.Sprint(rid), Content: fmt.Sprintf("row %d", rid)}}
	}
	return rows
}

// settled waits for e's recentring to finish.
func settled(t *testing.T, e *scopeVecs) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		e.mu.RLock()
		busy := e.recentring
		e.mu.RUnlock()
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("recentring did not finish in 10s")
		}
	}
}

// TestRecentre grows an entry one add at a time past twice the rows its
// mean was taken from, changing rows while the codes are recomputed
// beside the adds: once done, the mean must be that of the rows at the
// time, and every live row's code its vector's code around that mean, as
// in an entry loaded whole.
func TestRecentre(t *testing.T) {
	const dims = 256
	for _, tc := range []struct {
		name   string
		change bool // remove and replace rows right after the add that starts it
	}{
		{"adds only", false},
		{"rows changed meanwhile", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			e := newScopeVecs()
			e.force(1, dims, cacheRows(r, 1, 100, dims))
			v := int64(1)
			extra := cacheRows(r, 1000, 120, dims)
			for i := range extra {
				v++
				e.apply(v, dims, &delta{upserts: extra[i : i+1]})
				if e.live == 200 && tc.change {
					v++
					e.apply(v, dims, &delta{removed: []int64{5, 50}, upserts: cacheRows(r, 5000, 3, dims)})
				}
			}
			settled(t, e)
			e.mu.RLock()
			defer e.mu.RUnlock()
			if e.meanN < 200 {
				t.Fatalf("mean taken from %d rows; want the 200 or more live when it doubled", e.meanN)
			}
			// The mean must be that of the rows it was taken from: here
			// compare with the mean of the live rows, which it equals
			// exactly when no row changed after it was taken, and
			// closely otherwise.
			want := make([]float32, dims)
			for slot, rid := range e.rids {
				if rid != 0 {
					axpy(1, e.vecs[slot], want)
				}
			}
			scal(1/float32(e.live), want)
			var diff float64
			for i := range want {
				diff = max(diff, float64(abs32(want[i]-e.mean[i])))
			}
			if diff > 0.01 {
				t.Errorf("mean differs from the live rows' by up to %g", diff)
			}
			code := make([]uint64, e.words)
			buf := make([]float32, codeBits(dims))
			rotate(e.mean, buf)
			if !slices.Equal(buf, e.rmean) {
				t.Fatal("the entry's rotated mean is not its mean's rotation")
			}
			pw := e.prefixWords()
			for slot, rid := range e.rids {
				if rid == 0 {
					continue
				}
				encodeCode(e.vecs[slot], e.rmean, code, buf)
				if !slices.Equal(code, e.codes[slot*e.words:(slot+1)*e.words]) {
					t.Fatalf("row %d: its code is not its vector's around the entry's mean", rid)
				}
				if !slices.Equal(code[:pw], e.prefix[slot*pw:(slot+1)*pw]) {
					t.Fatalf("row %d: its prefix is not its code's", rid)
				}
			}
		})
	}
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

// TestFWHT compares fwht with the Walsh-Hadamard matrix applied directly:
// entry (i, j) is -1 where i&j has an odd number of bits.
func TestFWHT(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{8, 16, 64, 128, 1024} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			a := make([]float32, n)
			for i := range a {
				a[i] = float32(r.NormFloat64())
			}
			want := make([]float64, n)
			for i := range want {
				for j, x := range a {
					if bits.OnesCount(uint(i&j))%2 == 1 {
						want[i] -= float64(x)
					} else {
						want[i] += float64(x)
					}
				}
			}
			fwht(a)
			for i := range a {
				if d := math.Abs(float64(a[i]) - want[i]); d > 1e-3*math.Sqrt(float64(n)) {
					t.Fatalf("element %d = %g, want %g", i, a[i], want[i])
				}
			}
		})
	}
}

// TestCodeAroundMean checks that a code taken from rotations (the query's
// and the mean's, rotated apart) has the bits of the centred vector's
// rotation: rotation is linear, so they differ only where an element of
// the centred rotation is within rounding of zero.
func TestCodeAroundMean(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, dims := range []int{8, 100, 384, 768, 1024} {
		t.Run(fmt.Sprint(dims), func(t *testing.T) {
			rows := cacheRows(r, 1, 50, dims)
			mean := make([]float32, dims)
			for _, row := range rows {
				axpy(1, row.vec, mean)
			}
			scal(1/float32(len(rows)), mean)
			rmean := make([]float32, codeBits(dims))
			rotate(mean, rmean)
			buf := make([]float32, codeBits(dims))
			code := make([]uint64, codeBits(dims)/64)
			centred := make([]float32, dims)
			for _, row := range rows {
				encodeCode(row.vec, rmean, code, buf)
				for i := range centred {
					centred[i] = row.vec[i] - mean[i]
				}
				rotate(centred, buf)
				for i, x := range buf {
					bit := code[i/64]>>(i%64)&1 == 1
					if bit != (x > 0) && math.Abs(float64(x)) > 1e-4 {
						t.Fatalf("row %d bit %d: code %v, centred rotation %g", row.rid, i, bit, x)
					}
				}
			}
		})
	}
}
