package postgres

import (
	"math/bits"
	"slices"
	"sync"

	"github.com/scopemem/scopemem/store/simhash"
)

// Codes of a copy's vectors.
//
// Ranking a copy exactly reads every row's vector: 3 KB a row at 768
// dimensions, 3 MB for a scope of 1,000 memories, on every search, from
// main memory once the copies outgrow the processor's caches. A copy
// therefore also holds a binary code of each vector (package simhash,
// 160 bytes a row at 768 dimensions), taken around the mean of its rows
// when it was built; a search of a copy larger than exactRows compares
// the codes and ranks exactly only the rows whose codes are nearest the
// query's, as the SQLite store does. Smaller copies are ranked exactly,
// as the statement would rank them.

// exactRows is the largest copy a search ranks exactly, reading every
// vector (about 40 µs at 768 dimensions); larger ones are ranked exactly
// only on the rows their codes pick.
const exactRows = 512

// prefixWords returns the words of the code prefixes of v.
func (v *scopeVecs) prefixWords() int { return min(simhash.PrefixWords, v.words) }

// codeAll takes the mean of v's rows and codes every row around it, into
// arrays with room for spare rows in all.
func (v *scopeVecs) codeAll(dims, spare int) {
	n := len(v.ids)
	mean := make([]float32, dims)
	for i := range n {
		for j, x := range v.vec(i, dims) {
			mean[j] += x
		}
	}
	if n > 0 {
		for j := range mean {
			mean[j] /= float32(n)
		}
	}
	v.words = simhash.Bits(dims) / 64
	v.rmean = make([]float32, simhash.Bits(dims))
	simhash.Rotate(mean, v.rmean)
	v.meanN = n
	pw := v.prefixWords()
	v.codes = make([]uint64, n*v.words, spare*v.words)
	v.prefix = make([]uint64, n*pw, spare*pw)
	buf := make([]float32, simhash.Bits(dims))
	for i := range n {
		simhash.Encode(v.vec(i, dims), v.rmean, v.codes[i*v.words:(i+1)*v.words], buf)
		copy(v.prefix[i*pw:(i+1)*pw], v.codes[i*v.words:])
	}
}

// codeBytes is what the codes add to a copy per row.
func (v *scopeVecs) codeBytes() int64 { return int64(8 * (v.words + v.prefixWords())) }

// appendCodes appends the codes of vecs (rows of dims) to codes and
// prefix around v's mean.
func (v *scopeVecs) appendCodes(codes, prefix []uint64, vecs []float32, dims int) ([]uint64, []uint64) {
	pw := v.prefixWords()
	buf := make([]float32, simhash.Bits(dims))
	for k := 0; k < len(vecs); k += dims {
		n := len(codes)
		codes = append(codes, make([]uint64, v.words)...)
		simhash.Encode(vecs[k:k+dims], v.rmean, codes[n:], buf)
		prefix = append(prefix, codes[n:n+pw]...)
	}
	return codes, prefix
}

// live reports whether row i is alive at at and carries every tag.
func (v *scopeVecs) live(i int, at int64, tags []string) bool {
	if e := v.expires[i]; e != 0 && e <= at {
		return false
	}
	for _, t := range tags {
		if !slices.Contains(v.tags[i], t) {
			return false
		}
	}
	return true
}

// codeScratchPool holds codeScratches between searches.
var codeScratchPool = sync.Pool{New: func() any { return new(codeScratch) }}

// codeScratch holds what picking by codes needs, reused across the
// copies of one search and, through codeScratchPool, across searches.
type codeScratch struct {
	rot  []float32 // the query rotated, once per search
	code []uint64
	dist []uint16
	hist []int32
	pick []int32
	sel  []int32
}

// nearest returns the c live rows of v carrying tags whose codes are
// nearest vec's (rows of v, in order): the code prefixes of every row
// pick PrefixOver x c of them, whose whole codes then pick c.
func (v *scopeVecs) nearest(vec []float32, c int, tags []string, at int64, sc *codeScratch) []int32 {
	if len(sc.rot) == 0 {
		sc.rot = slices.Grow(sc.rot, simhash.Bits(len(vec)))[:simhash.Bits(len(vec))]
		simhash.Rotate(vec, sc.rot)
	}
	w, pw, n := v.words, v.prefixWords(), len(v.ids)
	sc.code = slices.Grow(sc.code[:0], w)[:w]
	simhash.Sign(sc.rot, v.rmean, sc.code)
	sc.dist = slices.Grow(sc.dist[:0], n)[:n]
	sc.hist = slices.Grow(sc.hist[:0], 64*w+1)[:64*w+1]
	clear(sc.hist)
	v.prefixDistances(sc.code[:pw], tags, at, sc.dist, sc.hist)
	if pw == w {
		sc.sel = simhash.Nearest(sc.dist, sc.hist[:64*pw+1], c, sc.sel[:0])
		return sc.sel
	}
	sc.pick = simhash.Nearest(sc.dist, sc.hist[:64*pw+1], simhash.PrefixOver*c, sc.pick[:0])
	clear(sc.hist)
	sc.dist = sc.dist[:len(sc.pick)]
	for k, i := range sc.pick {
		d := simhash.Hamming(sc.code, v.codes[int(i)*w:int(i+1)*w])
		sc.dist[k] = uint16(d)
		sc.hist[d]++
	}
	sc.sel = simhash.Nearest(sc.dist, sc.hist, c, sc.sel[:0])
	for k, j := range sc.sel {
		sc.sel[k] = sc.pick[j]
	}
	return sc.sel
}

// prefixDistances writes the Hamming distance of each live row's code
// prefix to q into dist (simhash.Skip for rows that are expired or lack a
// tag) and counts them in hist. It is the one loop over every row of a
// large copy, so the common case (prefixes of 4 words, no tag filter) is
// written out.
func (v *scopeVecs) prefixDistances(q []uint64, tags []string, at int64, dist []uint16, hist []int32) {
	n, pw := len(v.ids), len(q)
	if pw != 4 || len(tags) > 0 {
		for i := range n {
			if !v.live(i, at, tags) {
				dist[i] = simhash.Skip
				continue
			}
			d := simhash.Hamming(q, v.prefix[i*pw:(i+1)*pw])
			dist[i] = uint16(d)
			hist[d]++
		}
		return
	}
	q0, q1, q2, q3 := q[0], q[1], q[2], q[3]
	expires, prefix := v.expires[:n], v.prefix[:4*n]
	dist, hist = dist[:n], hist[:4*64+1]
	for i := range n {
		if e := expires[i]; e != 0 && e <= at {
			dist[i] = simhash.Skip
			continue
		}
		p := prefix[4*i : 4*i+4 : 4*i+4]
		d := bits.OnesCount64(q0^p[0]) + bits.OnesCount64(q1^p[1]) + bits.OnesCount64(q2^p[2]) + bits.OnesCount64(q3^p[3])
		dist[i] = uint16(d)
		hist[d]++
	}
}
