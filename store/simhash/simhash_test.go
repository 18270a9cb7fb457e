package simhash

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"
)

// offCentre returns n random unit vectors sharing a common component, as
// embeddings do.
func offCentre(r *rand.Rand, n, dims int) [][]float32 {
	out := make([][]float32, n)
	for k := range out {
		v := make([]float32, dims)
		var norm float64
		for i := range v {
			v[i] = float32(r.NormFloat64()) + 0.3
			norm += float64(v[i]) * float64(v[i])
		}
		for i := range v {
			v[i] /= float32(math.Sqrt(norm))
		}
		out[k] = v
	}
	return out
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
			rows := offCentre(r, 50, dims)
			mean := make([]float32, dims)
			for _, v := range rows {
				for i, x := range v {
					mean[i] += x / float32(len(rows))
				}
			}
			rmean := make([]float32, Bits(dims))
			Rotate(mean, rmean)
			buf := make([]float32, Bits(dims))
			code := make([]uint64, Bits(dims)/64)
			centred := make([]float32, dims)
			for k, v := range rows {
				Encode(v, rmean, code, buf)
				for i := range centred {
					centred[i] = v[i] - mean[i]
				}
				Rotate(centred, buf)
				for i, x := range buf {
					bit := code[i/64]>>(i%64)&1 == 1
					if bit != (x > 0) && math.Abs(float64(x)) > 1e-4 {
						t.Fatalf("row %d bit %d: code %v, centred rotation %g", k, i, bit, x)
					}
				}
			}
		})
	}
}

// TestNearest checks the selection of the c smallest distances against a
// sort, skipped entries never chosen and ties taken in index order.
func TestNearest(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct{ n, max, c int }{{10, 5, 3}, {100, 20, 10}, {1000, 256, 50}, {1000, 3, 7}, {5, 10, 9}} {
		t.Run(fmt.Sprintf("%d/%d/%d", tc.n, tc.max, tc.c), func(t *testing.T) {
			dist := make([]uint16, tc.n)
			hist := make([]int32, tc.max+1)
			type entry struct{ d, i int }
			var live []entry
			for i := range dist {
				if r.IntN(5) == 0 {
					dist[i] = Skip
					continue
				}
				d := r.IntN(tc.max + 1)
				dist[i] = uint16(d)
				hist[d]++
				live = append(live, entry{d, i})
			}
			slices.SortStableFunc(live, func(a, b entry) int { return a.d - b.d })
			var want []int32
			for _, e := range live[:min(tc.c, len(live))] {
				want = append(want, int32(e.i))
			}
			slices.Sort(want)
			if got := Nearest(dist, hist, tc.c, nil); !slices.Equal(got, want) {
				t.Errorf("Nearest = %v, want %v", got, want)
			}
		})
	}
}

// TestHamming checks Hamming on codes of several words.
func TestHamming(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	a, b := make([]uint64, 16), make([]uint64, 17)
	for i := range a {
		a[i], b[i] = r.Uint64(), r.Uint64()
	}
	bitByBit := 0
	for i := range a {
		for k := range 64 {
			if (a[i]>>k)&1 != (b[i]>>k)&1 {
				bitByBit++
			}
		}
	}
	for _, tc := range []struct {
		a, b []uint64
		want int
	}{
		{nil, nil, 0},
		{[]uint64{0}, []uint64{0}, 0},
		{[]uint64{0b1011}, []uint64{0b0001}, 2},
		{[]uint64{math.MaxUint64, 0}, []uint64{0, 1}, 65},
		{[]uint64{math.MaxUint64}, []uint64{0, math.MaxUint64}, 64}, // b longer: its first words
		{a, b, bitByBit},
	} {
		if got := Hamming(tc.a, tc.b); got != tc.want {
			t.Errorf("Hamming(%b, %b) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := hammingGo(tc.a, tc.b); got != tc.want {
			t.Errorf("hammingGo(%b, %b) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestPrefixDistancesRefine checks both passes against Hamming computed
// row by row: gone and expired rows are skipped and not counted, for
// prefixes of 4 words (the written-out loop) and of 2, and Refine keeps
// the c picks nearest by whole code.
func TestPrefixDistancesRefine(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const n, w, at = 300, 8, 1000
	codes := make([]uint64, n*w)
	for i := range codes {
		codes[i] = r.Uint64()
	}
	q := make([]uint64, w)
	for i := range q {
		q[i] = r.Uint64()
	}
	expires, rids := make([]int64, n), make([]int64, n)
	for i := range n {
		rids[i] = int64(i + 1)
		switch r.IntN(6) {
		case 0:
			rids[i] = 0 // a free slot
		case 1:
			expires[i] = at - 1 // expired
		case 2:
			expires[i] = at + 1 // not yet
		}
	}
	for _, pw := range []int{4, 2} {
		prefix := make([]uint64, n*pw)
		for i := range n {
			copy(prefix[i*pw:(i+1)*pw], codes[i*w:])
		}
		dist := make([]uint16, n)
		hist := make([]int32, 64*w+1)
		PrefixDistances(q[:pw], prefix, expires, rids, at, dist, hist)
		want := make([]int32, 64*w+1)
		var live []int32
		for i := range n {
			if rids[i] == 0 || (expires[i] != 0 && expires[i] <= at) {
				if dist[i] != Skip {
					t.Fatalf("prefix %d: row %d (rid %d, expires %d) has distance %d, want Skip", pw, i, rids[i], expires[i], dist[i])
				}
				continue
			}
			if d := Hamming(q[:pw], prefix[i*pw:(i+1)*pw]); int(dist[i]) != d {
				t.Fatalf("prefix %d: row %d distance %d, want %d", pw, i, dist[i], d)
			}
			want[dist[i]]++
			live = append(live, int32(i))
		}
		if !slices.Equal(hist, want) {
			t.Fatalf("prefix %d: histogram %v, want %v", pw, hist, want)
		}
		got := Refine(q, codes, live, 10, dist, hist, nil)
		whole := make([]int, len(live))
		for k, i := range live {
			whole[k] = Hamming(q, codes[int(i)*w:int(i+1)*w])
		}
		sorted := slices.Clone(whole)
		slices.Sort(sorted)
		for _, i := range got {
			if d := Hamming(q, codes[int(i)*w:int(i+1)*w]); d > sorted[9] {
				t.Errorf("Refine kept row %d at distance %d; the tenth nearest is at %d", i, d, sorted[9])
			}
		}
		if len(got) != 10 || !slices.IsSorted(got) {
			t.Errorf("Refine = %v, want 10 rows in order", got)
		}
	}
}

func TestCentre(t *testing.T) {
	rows := [][]float32{{1, 2, 3}, {3, 2, 1}, {2, 5, -1}}
	for _, tc := range []struct {
		name string
		rows [][]float32
		want []float32
	}{
		{"three rows", rows, []float32{2, 3, 1}},
		{"none", nil, []float32{0, 0, 0}},
	} {
		mean, rmean, n := Centre(3, slices.Values(tc.rows))
		if n != len(tc.rows) || !slices.Equal(mean, tc.want) {
			t.Errorf("%s: Centre = %v of %d rows, want %v of %d", tc.name, mean, n, tc.want, len(tc.rows))
		}
		want := make([]float32, Bits(3))
		Rotate(tc.want, want)
		if !slices.Equal(rmean, want) {
			t.Errorf("%s: rotated mean %v, want the mean's rotation %v", tc.name, rmean, want)
		}
	}
}

func TestWarmCodes(t *testing.T) {
	const w = 16
	codes := make([]uint64, 4*w)
	for i := range codes {
		codes[i] = uint64(i + 1)
	}
	// Rows 3 and 1: words 0 and 8 of each (one per 64-byte line).
	want := codes[3*w] + codes[3*w+8] + codes[w] + codes[w+8]
	if got := warmCodes(codes, w, []int32{3, 1}); got != want {
		t.Errorf("warmCodes = %d, want %d", got, want)
	}
}

// TestPrefixDistancesWithout checks the passes without rids or expires
// (no row gone, no row expiring): only what is given skips rows.
func TestPrefixDistancesWithout(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	const n, at = 203, 1000
	expires, rids := make([]int64, n), make([]int64, n)
	for i := range n {
		rids[i] = int64(i + 1)
		if i%5 == 0 {
			rids[i] = 0
		}
		if i%7 == 0 {
			expires[i] = at
		}
	}
	for _, pw := range []int{4, 3} {
		prefix := make([]uint64, n*pw)
		for i := range prefix {
			prefix[i] = r.Uint64()
		}
		q := prefix[:pw:pw]
		for _, tc := range []struct {
			name    string
			expires []int64
			rids    []int64
		}{{"neither", nil, nil}, {"rids only", nil, rids}, {"expires only", expires, nil}} {
			dist, hist := make([]uint16, n), make([]int32, 64*pw+1)
			PrefixDistances(q, prefix, tc.expires, tc.rids, at, dist, hist)
			want := make([]int32, 64*pw+1)
			for i := range n {
				skip := (tc.rids != nil && rids[i] == 0) || (tc.expires != nil && expires[i] != 0)
				switch d := Hamming(q, prefix[i*pw:(i+1)*pw]); {
				case skip && dist[i] != Skip:
					t.Fatalf("prefix %d, %s: row %d has distance %d, want Skip", pw, tc.name, i, dist[i])
				case !skip && int(dist[i]) != d:
					t.Fatalf("prefix %d, %s: row %d has distance %d, want %d", pw, tc.name, i, dist[i], d)
				case !skip:
					want[d]++
				}
			}
			if !slices.Equal(hist, want) {
				t.Errorf("prefix %d, %s: histogram %v, want %v", pw, tc.name, hist, want)
			}
		}
	}
}

// BenchmarkPrefixPass measures the pass over every row of a scope of
// 50,000 rows: the prefix distances, then the 1,040 nearest (the
// candidates of a search at that size).
func BenchmarkPrefixPass(b *testing.B) {
	const n, c = 50000, 1040
	r := rand.New(rand.NewPCG(7, 8))
	prefix := make([]uint64, 4*n)
	for i := range prefix {
		prefix[i] = r.Uint64()
	}
	expires, rids := make([]int64, n), make([]int64, n)
	for i := range rids {
		rids[i] = int64(i + 1)
	}
	q := []uint64{r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64()}
	dist, hist := make([]uint16, n), make([]int32, 4*64+2)
	var out []int32
	b.Run("distances", func(b *testing.B) {
		for b.Loop() {
			clear(hist)
			PrefixDistances(q, prefix, expires, rids, 1, dist, hist)
		}
	})
	b.Run("distances-all-live", func(b *testing.B) {
		for b.Loop() {
			clear(hist)
			PrefixDistances(q, prefix, nil, nil, 1, dist, hist)
		}
	})
	b.Run("nearest", func(b *testing.B) {
		for b.Loop() {
			out = Nearest(dist, hist, c, out[:0])
		}
	})
}

// TestDistances4 checks the prefix pass of 4-word prefixes (the assembly
// one on amd64 with POPCNT) against Hamming, with distances from 0 to
// 256, and that it writes no distance past its rows.
func TestDistances4(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	q := [4]uint64{r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64()}
	for _, tc := range []struct {
		name string
		n    int
		row  func(i int) [4]uint64
	}{
		{"no rows", 0, nil},
		{"one row", 1, func(int) [4]uint64 { return [4]uint64{r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64()} }},
		{"random", 1001, func(int) [4]uint64 { return [4]uint64{r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64()} }},
		{"the query", 9, func(int) [4]uint64 { return q }},
		{"its complement", 9, func(int) [4]uint64 { return [4]uint64{^q[0], ^q[1], ^q[2], ^q[3]} }},
		{"one bit off per row", 257, func(i int) [4]uint64 {
			p := q
			for b := range i % 257 {
				p[b/64] ^= 1 << (b % 64)
			}
			return p
		}},
	} {
		prefix := make([]uint64, 0, 4*tc.n)
		for i := range tc.n {
			p := tc.row(i)
			prefix = append(prefix, p[:]...)
		}
		want := make([]int32, 4*64+1)
		for i := range tc.n {
			want[hammingGo(q[:], prefix[4*i:4*i+4])]++
		}
		for _, pass := range []struct {
			name string
			f    func(q *[4]uint64, prefix []uint64, dist []uint16, hist []int32)
		}{{"distances4", distances4}, {"distances4Go", distances4Go}} {
			dist := make([]uint16, tc.n+1)
			dist[tc.n] = 7 // past the rows: must stay
			hist := make([]int32, 4*64+1)
			pass.f(&q, prefix, dist[:tc.n], hist)
			for i := range tc.n {
				if d := hammingGo(q[:], prefix[4*i:4*i+4]); int(dist[i]) != d {
					t.Fatalf("%s, %s: row %d distance %d, want %d", tc.name, pass.name, i, dist[i], d)
				}
			}
			if dist[tc.n] != 7 {
				t.Errorf("%s, %s: wrote %d past the last row", tc.name, pass.name, dist[tc.n])
			}
			if !slices.Equal(hist, want) {
				t.Errorf("%s, %s: histogram %v, want %v", tc.name, pass.name, hist, want)
			}
		}
	}
}
