// Package simhash codes vectors as bit strings whose Hamming distances
// estimate their angles, so that a scan of the codes picks the few rows
// worth an exact dot product.
//
// A code is taken around a centre, the mean of the rows it is compared
// with: embeddings share a large common component, and only the part of
// each vector off that centre tells them apart. The centred vector is
// rotated (random signs, then a Walsh-Hadamard transform) and its signs
// taken: every bit is the side of a random hyperplane through the
// centre. A search codes its query around each scope's centre and keeps
// the rows of smallest distance, in two passes over large scopes: the
// first PrefixWords words of every code, then the whole codes of
// PrefixOver times the rows wanted.
package simhash

import (
	"iter"
	"math"
	"math/bits"
	"unsafe"

	"gonum.org/v1/gonum/blas/gonum"
)

// PrefixWords is how many words of a code (256 bits) a first pass over a
// large scope compares: a shorter code, less precise but four times
// cheaper to scan, that picks the rows whose whole codes are then
// compared.
const PrefixWords = 4

// PrefixOver is how many times the rows finally wanted the first pass
// picks.
const PrefixOver = 4

// Skip is the distance that marks a row no pass may pick.
const Skip = math.MaxUint16

// Bits returns the bits of the code of a vector of dims dimensions: the
// next power of two, at least 64.
func Bits(dims int) int {
	n := 64
	for n < dims {
		n *= 2
	}
	return n
}

// Rotate writes into out (Bits(len(v)) floats) the rotation codes are
// taken in: v padded with zeros, multiplied by random signs and rotated by
// a Walsh-Hadamard transform. The signs come from a fixed seed: every
// code of every process agrees.
//
// The code of a vector v around a mean is the signs of
// Rotate(v) - Rotate(mean) (Sign): every bit is the side of a random
// hyperplane through the mean (SimHash), so the Hamming distance of two
// codes estimates the angle of the centred vectors whatever the variance
// of each dimension. The rotation is linear, so a scope keeps its mean
// rotated and a search rotates its query once for all the scopes it reads.
func Rotate(v, out []float32) {
	out = out[:Bits(len(v))]
	s := uint64(0x9e3779b97f4a7c15)
	for i, x := range v {
		if i&63 == 0 {
			s = s*6364136223846793005 + 1442695040888963407
		}
		// Flip the sign bit where the seed's bit is set.
		out[i] = math.Float32frombits(math.Float32bits(x) ^ uint32((s>>(i&63))&1)<<31)
	}
	clear(out[len(v):])
	fwht(out)
}

// Centre returns the mean of the vectors rows yields (dims values each),
// its rotation (the rmean that Sign and Encode take) and how many there
// were; with none, both are zero.
func Centre(dims int, rows iter.Seq[[]float32]) (mean, rmean []float32, n int) {
	var blas gonum.Implementation
	mean = make([]float32, dims)
	for v := range rows {
		blas.Saxpy(dims, 1, v[:dims], 1, mean, 1)
		n++
	}
	if n > 0 {
		blas.Sscal(dims, 1/float32(n), mean, 1)
	}
	rmean = make([]float32, Bits(dims))
	Rotate(mean, rmean)
	return mean, rmean, n
}

// Sign writes into code one bit per element of r, set where r
// exceeds rmean: the code, around a mean whose rotation is rmean, of the
// vector whose rotation is r.
func Sign(r, rmean []float32, code []uint64) {
	r, rmean = r[:64*len(code)], rmean[:64*len(code)]
	for w := range code {
		x, m := r[64*w:64*w+64], rmean[64*w:64*w+64]
		var word uint64
		for i := range x {
			// The sign bit of m - x, set where x > m: a branch here
			// would be mispredicted for half the bits.
			word |= uint64(math.Float32bits(m[i]-x[i])>>31) << i
		}
		code[w] = word
	}
}

// Encode writes the code of v around the mean whose rotation is
// rmean into code, using buf (Bits(len(v)) floats) as scratch.
func Encode(v, rmean []float32, code []uint64, buf []float32) {
	if len(rmean) != Bits(len(v)) {
		clear(code)
		return
	}
	Rotate(v, buf)
	Sign(buf, rmean, code)
}

// fwht applies the (unnormalized) Walsh-Hadamard transform to a, whose
// length is a power of two, at least 8. The first three levels are done
// together on each group of eight, the others eight pairs at a time.
func fwht(a []float32) {
	n := len(a)
	for i := 0; i+8 <= n; i += 8 {
		g := (*[8]float32)(a[i : i+8])
		a0, a1, a2, a3 := g[0]+g[1], g[0]-g[1], g[2]+g[3], g[2]-g[3]
		a4, a5, a6, a7 := g[4]+g[5], g[4]-g[5], g[6]+g[7], g[6]-g[7]
		b0, b1, b2, b3 := a0+a2, a1+a3, a0-a2, a1-a3
		b4, b5, b6, b7 := a4+a6, a5+a7, a4-a6, a5-a7
		g[0], g[1], g[2], g[3] = b0+b4, b1+b5, b2+b6, b3+b7
		g[4], g[5], g[6], g[7] = b0-b4, b1-b5, b2-b6, b3-b7
	}
	for h := 8; h < n; h *= 2 {
		for i := 0; i < n; i += 2 * h {
			x, y := a[i:i+h:i+h], a[i+h:i+2*h:i+2*h]
			for j := 0; j+8 <= h; j += 8 {
				p, q := (*[8]float32)(x[j:j+8]), (*[8]float32)(y[j:j+8])
				p[0], q[0] = p[0]+q[0], p[0]-q[0]
				p[1], q[1] = p[1]+q[1], p[1]-q[1]
				p[2], q[2] = p[2]+q[2], p[2]-q[2]
				p[3], q[3] = p[3]+q[3], p[3]-q[3]
				p[4], q[4] = p[4]+q[4], p[4]-q[4]
				p[5], q[5] = p[5]+q[5], p[5]-q[5]
				p[6], q[6] = p[6]+q[6], p[6]-q[6]
				p[7], q[7] = p[7]+q[7], p[7]-q[7]
			}
		}
	}
}

// hammingGo is Hamming in Go, for CPUs without POPCNT and other
// architectures.
func hammingGo(a, b []uint64) int {
	n := 0
	b = b[:len(a)]
	for i, x := range a {
		n += bits.OnesCount64(x ^ b[i])
	}
	return n
}

// Nearest appends to out the indexes of the c smallest distances of dist
// (skipped entries excluded), whose histogram is hist: every index below
// the distance at which c is reached, then those at it in index order.
func Nearest(dist []uint16, hist []int32, c int, out []int32) []int32 {
	limit, total := 0, int32(0)
	for ; limit < len(hist); limit++ {
		if total+hist[limit] > int32(c) {
			break
		}
		total += hist[limit]
	}
	room := c - int(total)
	// Four distances at a time (SWAR): most rows are farther than limit,
	// and a word of four of them is passed over with a few operations.
	// Lanes are made at most 0x7fff (Skip's high bit cleared, and Skip
	// lanes dropped after); 0x8000 + limit - lane then keeps its high bit
	// exactly when lane <= limit, and never borrows from the next lane.
	const high = 0x8000_8000_8000_8000
	ceiling := (0x8000 + uint64(min(limit, 0x7fff))) * 0x0001_0001_0001_0001
	// The distances read as words of four, when they start on a word
	// (as a slice of their own does); which lane is which does not
	// matter, only whether any is near.
	var words []uint64
	if p := unsafe.Pointer(unsafe.SliceData(dist)); uintptr(p)%8 == 0 && len(dist) >= 4 {
		words = unsafe.Slice((*uint64)(p), len(dist)/4)
	}
	for j, w := range words {
		if (ceiling-(w&^high))&^w&high != 0 {
			out = pick(dist[4*j:4*j+4], 4*j, limit, &room, out)
		}
	}
	return pick(dist[4*len(words):], 4*len(words), limit, &room, out)
}

// pick appends to out the indexes (from on) of the distances of dist
// below limit, and of those at it while *room lasts, which it counts
// down.
func pick(dist []uint16, from, limit int, room *int, out []int32) []int32 {
	for i, d := range dist {
		switch {
		case int(d) < limit:
			out = append(out, int32(from+i))
		case int(d) == limit && *room > 0:
			*room--
			out = append(out, int32(from+i))
		}
	}
	return out
}

// Rerank is how many candidates of n live rows the codes pick for exact
// ranking when need hits are wanted; scopes this small or smaller are
// scanned exactly. Fewer candidates mean fewer exact dot products, each
// reading a whole vector from memory.
//
// Measured on the SQLite store's benchmark corpus: 50 candidates of
// 4,000 embedding-like vectors already held 98.7% of the exact top ten,
// and 100 held all of them. At 50,000 rows in three scopes
// (BenchmarkSearch50k/recall, 50 queries, two query sets): n/64 (781)
// found 100% of the exact top ten, n/128 99.4%, n/256 97.8-99.2%; n/192
// (260), with code prefixes picking 4x before the whole codes, 98.0%.
// Below 19,200 rows, 2 x need (100 for the default limit) rather than
// 4 x need: over three scopes of the corpus (200 queries) the recall@10
// went from 99.85/99.75/99.25/99.25% to 99.6/99.2/99.05/98.5% at
// 1,000/2,000/4,000/8,000 rows, and 99.7 to 99.0% at 12,000 (TestRecall),
// for half the exact dot products.
func Rerank(n, need int) int {
	return max(2*need, n/192)
}

// PrefixDistances writes into dist the Hamming distance to q of the code
// prefix of each row (len(q) words a row, packed in prefix), or Skip for
// a row that is gone (rids, when not nil, holds 0 for it) or expired
// (expires, when not nil, in Unix nanoseconds, 0 for never, at or before
// at), and counts the distances in hist. It is the one pass over every
// row of a large scope, and reads memory as fast as it can be read:
// prefixes of 4 words are counted for every row in one tight loop
// (POPCNT in assembly on amd64), and the rows gone or expired are then
// taken out again in a second pass over rids and expires. The caller
// passes nil for rids when no row is gone and for expires when no row
// expires, so that the common case reads the prefixes alone.
func PrefixDistances(q, prefix []uint64, expires, rids []int64, at int64, dist []uint16, hist []int32) {
	pw := len(q)
	n := len(prefix) / pw
	dist = dist[:n]
	if expires != nil {
		expires = expires[:n]
	}
	if rids != nil {
		rids = rids[:n]
	}
	if pw != 4 {
		for i := range n {
			if (rids != nil && rids[i] == 0) || (expires != nil && expires[i] != 0 && expires[i] <= at) {
				dist[i] = Skip
				continue
			}
			d := Hamming(q, prefix[i*pw:(i+1)*pw])
			dist[i] = uint16(d)
			hist[d]++
		}
		return
	}
	// Every row's distance first, in one tight pass; then the rows gone
	// or expired are taken out again.
	distances4((*[4]uint64)(q), prefix, dist, hist)
	if rids == nil && expires == nil {
		return
	}
	for i := range n {
		if (rids != nil && rids[i] == 0) || (expires != nil && expires[i] != 0 && expires[i] <= at) {
			Drop(dist, hist, i)
		}
	}
}

// distances4Go is distances4 in Go, for CPUs without POPCNT and other
// architectures.
func distances4Go(q *[4]uint64, prefix []uint64, dist []uint16, hist []int32) {
	q0, q1, q2, q3 := q[0], q[1], q[2], q[3]
	prefix = prefix[:4*len(dist)]
	for i := range dist {
		p := prefix[4*i : 4*i+4 : 4*i+4]
		d := bits.OnesCount64(q0^p[0]) + bits.OnesCount64(q1^p[1]) + bits.OnesCount64(q2^p[2]) + bits.OnesCount64(q3^p[3])
		dist[i] = uint16(d)
		hist[d]++
	}
}

// Drop marks row i, counted in hist, as Skip.
func Drop(dist []uint16, hist []int32, i int) {
	if dist[i] != Skip {
		hist[dist[i]]--
		dist[i] = Skip
	}
}

// Refine appends to out the c rows of picks whose whole codes (len(q)
// words a row, packed in codes) are nearest q, in the order of picks. It
// uses dist (len(picks) or more) and hist (64*len(q)+1 or more) as
// scratch.
func Refine(q, codes []uint64, picks []int32, c int, dist []uint16, hist []int32, out []int32) []int32 {
	w := len(q)
	hist = hist[:64*w+1]
	clear(hist)
	dist = dist[:len(picks)]
	warmCodes(codes, w, picks)
	for k, i := range picks {
		d := Hamming(q, codes[int(i)*w:int(i+1)*w])
		dist[k] = uint16(d)
		hist[d]++
	}
	first := len(out)
	out = Nearest(dist, hist, c, out)
	for k, j := range out[first:] {
		out[first+k] = picks[j]
	}
	return out
}

// warmCodes reads the first word of every 64-byte cache line of the codes
// of picks (w words a row, packed in codes) and returns their sum, so
// that the reads of many rows are in flight at once before Refine reads
// each code whole (store.Warm does the same for vectors).
//
//go:noinline
func warmCodes(codes []uint64, w int, picks []int32) uint64 {
	var s uint64
	for _, i := range picks {
		c := codes[int(i)*w : int(i+1)*w]
		for j := 0; j < len(c); j += 8 {
			s += c[j]
		}
	}
	return s
}
