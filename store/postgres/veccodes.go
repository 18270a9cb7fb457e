package postgres

import (
	"iter"
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
	_, v.rmean, v.meanN = simhash.Centre(dims, v.rows(dims))
	v.words = simhash.Bits(dims) / 64
	pw := v.prefixWords()
	v.codes = make([]uint64, n*v.words, spare*v.words)
	v.prefix = make([]uint64, n*pw, spare*pw)
	buf := make([]float32, simhash.Bits(dims))
	for i := range n {
		simhash.Encode(v.vec(i, dims), v.rmean, v.codes[i*v.words:(i+1)*v.words], buf)
		copy(v.prefix[i*pw:(i+1)*pw], v.codes[i*v.words:])
	}
}

// rows yields v's vectors in order.
func (v *scopeVecs) rows(dims int) iter.Seq[[]float32] {
	return func(yield func([]float32) bool) {
		for i := range v.ids {
			if !yield(v.vec(i, dims)) {
				return
			}
		}
	}
}

// recentre reports whether a copy of rows rows, coded around the mean of
// meanN, is due a mean of them all: once they have doubled (so about one
// code per added row), which tells them apart better.
func recentre(rows, meanN int) bool { return rows >= 2*meanN && rows >= 64 }

// code codes v's rows, built again from old (from[i] is row i's row in
// old, -1 for a row that came with its vector): old's mean is kept and
// the unchanged rows' codes copied from old, as appendRows keeps them,
// until the rows are due a new mean; a reload that brought only the
// changed rows' vectors so codes only those. Without old, codeAll.
func (v *scopeVecs) code(old *scopeVecs, from []int32, dims, spare int) {
	n := len(v.ids)
	if old == nil || len(old.rmean) != simhash.Bits(dims) || len(old.codes) != len(old.ids)*old.words || recentre(n, old.meanN) {
		v.codeAll(dims, spare)
		return
	}
	v.words, v.rmean, v.meanN = old.words, old.rmean, old.meanN
	w, pw := v.words, v.prefixWords()
	v.codes = make([]uint64, n*w, spare*w)
	v.prefix = make([]uint64, n*pw, spare*pw)
	buf := make([]float32, simhash.Bits(dims))
	for i := range n {
		c := v.codes[i*w : (i+1)*w]
		if j := int(from[i]); j >= 0 {
			copy(c, old.codes[j*w:(j+1)*w])
		} else {
			simhash.Encode(v.vec(i, dims), v.rmean, c, buf)
		}
		copy(v.prefix[i*pw:(i+1)*pw], c)
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
	expires := v.expires
	if !v.expiring {
		expires = nil // nothing to drop: the pass reads the prefixes alone
	}
	simhash.PrefixDistances(sc.code[:pw], v.prefix, expires, nil, at, sc.dist, sc.hist)
	if len(tags) > 0 {
		for i := range n {
			if !v.live(i, at, tags) {
				simhash.Drop(sc.dist, sc.hist, i)
			}
		}
	}
	if pw == w {
		sc.sel = simhash.Nearest(sc.dist, sc.hist[:64*pw+1], c, sc.sel[:0])
		return sc.sel
	}
	sc.pick = simhash.Nearest(sc.dist, sc.hist[:64*pw+1], simhash.PrefixOver*c, sc.pick[:0])
	sc.sel = simhash.Refine(sc.code, v.codes, sc.pick, c, sc.dist, sc.hist, sc.sel[:0])
	return sc.sel
}
