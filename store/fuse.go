package store

import (
	"math/bits"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"gonum.org/v1/gonum/blas/gonum"
)

// Candidate is one row a backend found for a hybrid search, with the vector
// it was ranked by (used to collapse near-identical hits across scopes).
type Candidate struct {
	Memory
	Vector     []float32 // unit length; may be nil for text-only candidates
	Similarity float64   // cosine similarity to the query vector
	// Key, when not zero, names the candidate's row within one search:
	// equal keys are the same memory, different keys different ones.
	// When every candidate has one, Fuse matches the halves' candidates
	// by key instead of hashing their ids (whose bytes are rarely in
	// the CPU's cache).
	Key uint64
}

// Fuse merges the two ranked halves of a hybrid search by reciprocal rank
// fusion (score = sum over halves of 1/(RRFK + rank)), normalized so that
// rank one in every half that ran scores 1. halves is how many halves ran (1
// or 2). Near-identical hits (same normalized content, or vectors at or above
// DuplicateSimilarity) from different scopes collapse to the narrower scope.
// Ties order narrower scopes first, then newer memories. At most limit hits
// scoring at least minScore come back.
func Fuse(byVector, byText []Candidate, halves, limit int, minScore float64) []Hit {
	if halves < 1 {
		halves = 1
	}
	limit = max(limit, 0)
	keyed := true
	for _, list := range [][]Candidate{byVector, byText} {
		for i := range list {
			keyed = keyed && list[i].Key != 0
		}
	}
	fs := fuseScratches.Get().(*fuseScratch)
	defer fs.put()
	byID, byKey := fs.byID, fs.byKey
	all := slices.Grow(fs.all[:0], len(byVector)+len(byText))
	add := func(list []Candidate) {
		for rank := range list {
			c := &list[rank]
			s := 1 / float64(RRFK+rank+1)
			var (
				i     int
				found bool
			)
			if keyed {
				i, found = byKey[c.Key]
			} else {
				i, found = byID[c.ID]
			}
			if found {
				all[i].score += s
				if all[i].vec == nil && c.Vector != nil {
					all[i].vec, all[i].sim = c.Vector, c.Similarity
				}
				continue
			}
			if keyed {
				byKey[c.Key] = len(all)
			} else {
				byID[c.ID] = len(all)
			}
			all = append(all, acc{c: c, vec: c.Vector, sim: c.Similarity, score: s})
		}
	}
	add(byVector)
	add(byText)
	fs.all = all
	top := float64(halves) / float64(RRFK+1)
	for i := range all {
		all[i].score /= top
	}
	// Sort positions rather than the accumulators.
	order := slices.Grow(fs.order[:0], len(all))[:len(all)]
	fs.order = order
	for i := range order {
		order[i] = int32(i)
	}
	// Ties broken by position, the order a stable sort would keep: the
	// unstable sort is cheaper (a search sorts about a hundred).
	slices.SortFunc(order, func(i, j int32) int {
		a, b := &all[i], &all[j]
		if a.score != b.score {
			if a.score > b.score {
				return -1
			}
			return 1
		}
		if ra, rb := a.c.Scope.Kind.Rank(), b.c.Scope.Kind.Rank(); ra != rb {
			return ra - rb
		}
		if c := b.c.CreatedAt.Compare(a.c.CreatedAt); c != 0 {
			return c
		}
		return int(i - j)
	})
	// Collapse near-identical hits to the narrowest scope: the kept hit takes
	// the best score of its group. Groups are made in score order, so the
	// result is the first limit groups scoring at least minScore. Once they
	// are made, a later hit can only change the result by replacing a
	// group's memory with a narrower scope's, so only hits narrower than
	// some kept group are compared, and only against the kept groups: the
	// groups the full pairwise pass would add after them never show.
	type group struct {
		a     *acc // the group's memory
		score float64
		rank  int // a.c.Scope.Kind.Rank()
	}
	kept := make([]group, 0, min(limit, len(all)))
	for _, i := range order {
		a := &all[i]
		rank := a.c.Scope.Kind.Rank()
		canAdd := len(kept) < limit && a.score >= minScore
		if !canAdd && !slices.ContainsFunc(kept, func(k group) bool { return k.rank > rank }) {
			continue
		}
		merged := false
		for i := range kept {
			k := &kept[i]
			if k.a.c.Scope == a.c.Scope {
				continue
			}
			if sameNormalized(k.a.c.Content, a.c.Content) ||
				(k.a.vec != nil && a.vec != nil && NearDuplicate(k.a.vec, a.vec)) {
				if rank < k.rank {
					k.a, k.rank = a, rank
				}
				merged = true
				break
			}
		}
		if !merged && canAdd {
			kept = append(kept, group{a: a, score: a.score, rank: rank})
		}
	}
	out := make([]Hit, len(kept))
	for i, k := range kept {
		out[i] = Hit{Memory: k.a.c.Memory, Score: k.score, Similarity: k.a.sim}
	}
	return out
}

// acc is one memory's score while Fuse adds up its ranks. Candidates are
// large (a memory and its vector): an accumulator points into the
// halves, which Fuse does not change, and carries the vector (and its
// similarity) a text-only candidate takes from its vector half.
type acc struct {
	c     *Candidate
	vec   []float32
	sim   float64
	score float64
}

// fuseScratch holds what Fuse works in, kept between searches by
// fuseScratches: a search of a hundred candidates would otherwise
// allocate about 6 KB here.
type fuseScratch struct {
	byID  map[string]int
	byKey map[uint64]int
	all   []acc
	order []int32
}

var fuseScratches = sync.Pool{New: func() any {
	return &fuseScratch{byID: map[string]int{}, byKey: map[uint64]int{}}
}}

// put empties fs, so that it holds on to no candidate, and returns it to
// fuseScratches.
func (fs *fuseScratch) put() {
	clear(fs.byID)
	clear(fs.byKey)
	clear(fs.all)
	fuseScratches.Put(fs)
}

// NormalizeContent folds case and white space, so that exact-duplicate
// detection ignores them.
func NormalizeContent(s string) string {
	return strings.Join(strings.Fields(strings.ToLower(s)), " ")
}

// sameNormalized reports whether NormalizeContent(a) ==
// NormalizeContent(b), without building either.
func sameNormalized(a, b string) bool {
	if a == b {
		return true
	}
	// Equal bytes read as equal runes: the ASCII prefix the two share is
	// passed over at once (memories of one user often begin alike), and
	// both readers start after it in the state it leaves them in.
	n := commonASCIIPrefix(a, b)
	ra, rb := normReader{s: a, i: n}, normReader{s: b, i: n}
	if last := lastNonSpaceASCII(a[:n]); last >= 0 {
		ra.started, ra.space = true, last < n-1
		rb.started, rb.space = ra.started, ra.space
	}
	for {
		ca, oka := ra.next()
		cb, okb := rb.next()
		if oka != okb || ca != cb {
			return false
		}
		if !oka {
			return true
		}
	}
}

// commonASCIIPrefix returns the length of the longest common prefix of a
// and b made of ASCII bytes, comparing eight bytes at a time.
func commonASCIIPrefix(a, b string) int {
	const highs = 0x8080808080808080
	n := min(len(a), len(b))
	i := 0
	for ; i+8 <= n; i += 8 {
		x, y := load64(a[i:i+8]), load64(b[i:i+8])
		// The first byte that differs or is not ASCII holds the lowest
		// set bit.
		if d := x ^ y | (x|y)&highs; d != 0 {
			return i + bits.TrailingZeros64(d)>>3
		}
	}
	for i < n && a[i] == b[i] && a[i] < utf8.RuneSelf {
		i++
	}
	return i
}

// load64 reads the eight bytes of s little-endian (one load).
func load64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// lastNonSpaceASCII returns the index of the last byte of the ASCII text
// s that is not white space to normReader, or -1.
func lastNonSpaceASCII(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if c := s[i]; c != ' ' && (c < '\t' || c > '\r') {
			return i
		}
	}
	return -1
}

// normReader reads the runes of NormalizeContent(s) one at a time.
type normReader struct {
	s              string
	i              int
	started, space bool
}

func (r *normReader) next() (rune, bool) {
	for r.i < len(r.s) {
		c, n, isSpace := rune(r.s[r.i]), 1, false
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			isSpace = c == ' ' || ('\t' <= c && c <= '\r')
		} else {
			c, n = utf8.DecodeRuneInString(r.s[r.i:])
			c = unicode.ToLower(c)
			isSpace = unicode.IsSpace(c)
		}
		if isSpace {
			r.i += n
			r.space = r.started
			continue
		}
		if r.space {
			r.space = false
			return ' ', true // one space between words; c is read next
		}
		r.i += n
		r.started = true
		return c, true
	}
	return 0, false
}

// nearDupDist2 bounds the squared distance of near-duplicates: for unit
// vectors |a-b|^2 = 2 - 2 a.b, so a.b >= DuplicateSimilarity means |a-b|^2
// <= 2(1 - DuplicateSimilarity). The margin covers vectors that are unit
// length only to float32 precision.
const nearDupDist2 = 2*(1-DuplicateSimilarity) + 1e-3

// NearDuplicate reports whether Dot(a, b) >= DuplicateSimilarity for unit
// vectors a and b: whether a backend must treat them as the same memory. It sums squared differences 64 dimensions at a time and
// stops once they pass nearDupDist2, which unrelated vectors do within the
// first blocks; only vectors that stay close get the full dot product.
func NearDuplicate(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	const block = 64
	var d2 float32
	for i := 0; i < len(a); i += block {
		x, y := a[i:min(i+block, len(a))], b[i:min(i+block, len(a))]
		y = y[:len(x)]
		var s0, s1, s2, s3 float32
		j := 0
		for ; j+4 <= len(x); j += 4 {
			e0, e1, e2, e3 := x[j]-y[j], x[j+1]-y[j+1], x[j+2]-y[j+2], x[j+3]-y[j+3]
			s0 += e0 * e0
			s1 += e1 * e1
			s2 += e2 * e2
			s3 += e3 * e3
		}
		for ; j < len(x); j++ {
			e := x[j] - y[j]
			s0 += e * e
		}
		if d2 += s0 + s1 + s2 + s3; d2 > nearDupDist2 {
			return false
		}
	}
	return Dot(a, b) >= DuplicateSimilarity
}

// Dot returns the dot product of two vectors of equal length (cosine
// similarity for unit vectors), or 0 when their lengths differ. It is
// Dot32's.
func Dot(a, b []float32) float64 {
	if len(a) != len(b) {
		return 0
	}
	return float64(dot32(a, b))
}

// Dot32 returns the dot product of a and b, of a's length (b is at least
// as long). Every store computes similarities with it (or Dot), so that
// the same two vectors give the same bits everywhere: on amd64 with AVX2
// and FMA it runs an 8-wide fused multiply-add kernel, else gonum's SIMD
// one. The kernel's sums are in float32, as gonum's are.
func Dot32(a, b []float32) float32 { return dot32(a, b) }

// sdot is gonum's dot product of a and b, of equal length.
func sdot(a, b []float32) float32 {
	var blas gonum.Implementation
	return blas.Sdot(len(a), a, 1, b, 1)
}

// Warm reads one value of every 64-byte cache line of v and returns
// their sum, which callers may ignore. Warming the rows a loop is about to
// read, a few hundred at a time, puts many of their loads in flight at
// once: a dot product after another, each row read whole before the
// next, waits for memory one row at a time. On a 2-core machine, warming
// the rows picked for exact ranking made a search of 50,000 rows 15-19%
// faster (BENCHMARKS.md, "Rows warmed before they are ranked").
//
//go:noinline
func Warm(v []float32) float32 {
	var s float32
	for i := 0; i < len(v); i += 16 {
		s += v[i]
	}
	return s
}
