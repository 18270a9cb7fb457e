package store

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/scopemem/scopemem/scope"
)

// fuseReference is Fuse as first written: the pairwise collapse over every
// candidate, kept to check that the faster Fuse returns the same hits.
func fuseReference(byVector, byText []Candidate, halves, limit int, minScore float64) []Hit {
	if halves < 1 {
		halves = 1
	}
	type acc struct {
		c     Candidate
		score float64
	}
	idx := map[string]int{}
	var all []acc
	add := func(list []Candidate) {
		for rank, c := range list {
			s := 1 / float64(RRFK+rank+1)
			if i, ok := idx[c.ID]; ok {
				all[i].score += s
				if all[i].c.Vector == nil && c.Vector != nil {
					all[i].c.Vector, all[i].c.Similarity = c.Vector, c.Similarity
				}
				continue
			}
			idx[c.ID] = len(all)
			all = append(all, acc{c, s})
		}
	}
	add(byVector)
	add(byText)
	top := float64(halves) / float64(RRFK+1)
	for i := range all {
		all[i].score /= top
	}
	slices.SortStableFunc(all, func(a, b acc) int {
		if a.score != b.score {
			if a.score > b.score {
				return -1
			}
			return 1
		}
		if ra, rb := a.c.Scope.Kind.Rank(), b.c.Scope.Kind.Rank(); ra != rb {
			return ra - rb
		}
		return b.c.CreatedAt.Compare(a.c.CreatedAt)
	})
	type group struct {
		acc
		key string
	}
	var kept []group
	for _, a := range all {
		key := NormalizeContent(a.c.Content)
		merged := false
		for i := range kept {
			k := &kept[i]
			if k.c.Scope == a.c.Scope {
				continue
			}
			if k.key == key || (k.c.Vector != nil && a.c.Vector != nil && Dot(k.c.Vector, a.c.Vector) >= DuplicateSimilarity) {
				if a.c.Scope.Kind.Rank() < k.c.Scope.Kind.Rank() {
					k.c, k.key = a.c, key
				}
				merged = true
				break
			}
		}
		if !merged {
			kept = append(kept, group{a, key})
		}
	}
	out := []Hit{}
	for _, k := range kept {
		if len(out) == limit {
			break
		}
		if k.score < minScore {
			continue
		}
		out = append(out, Hit{Memory: k.c.Memory, Score: k.score, Similarity: k.c.Similarity})
	}
	return out
}

// unit returns base plus noise*(a random direction), normalized.
func unit(r *rand.Rand, base []float32, noise float64) []float32 {
	v := make([]float32, len(base))
	var sum float64
	for i := range v {
		x := float64(base[i]) + noise*r.NormFloat64()/math.Sqrt(float64(len(v)))
		v[i] = float32(x)
		sum += x * x
	}
	for i := range v {
		v[i] = float32(float64(v[i]) / math.Sqrt(sum))
	}
	return v
}

// TestFuseMatchesReference runs both Fuse implementations on random
// candidate lists full of cross-scope copies and near-copies, with and
// without row keys.
func TestFuseMatchesReference(t *testing.T) {
	scopes := []scope.Scope{{Kind: scope.KindSession, ID: "u/s"}, {Kind: scope.KindAgent, ID: "u/a"}, {Kind: scope.KindUser, ID: "u"},
		{Kind: scope.KindTeam, ID: "t1"}, {Kind: scope.KindTeam, ID: "t2"}, {Kind: scope.KindOrg}}
	texts := []string{"Dark mode please", "dark  MODE please", "Deploy on Fridays", "deploy on fridays ", "OAuth2 everywhere", "Ünïcode Ärger"}
	r := rand.New(rand.NewPCG(1, 2))
	const dims = 32
	for iter := range 2000 {
		bases := make([][]float32, 4)
		for i := range bases {
			bases[i] = unit(r, make([]float32, dims), 1)
		}
		var pool []Candidate
		for i := range 5 + r.IntN(60) {
			c := Candidate{Memory: Memory{
				ID: fmt.Sprintf("m%d", i), Scope: scopes[r.IntN(len(scopes))], Content: texts[r.IntN(len(texts))] + strings.Repeat(" x", r.IntN(2)),
				CreatedAt: time.Unix(int64(r.IntN(5)), 0),
			}}
			// A third of the iterations name rows by Key, a third name all
			// but the first (Fuse then matches by ID).
			if iter%3 == 1 || (iter%3 == 2 && i > 0) {
				c.Key = uint64(i + 1)
			}
			if r.IntN(4) > 0 {
				c.Vector = unit(r, bases[r.IntN(len(bases))], []float64{0, 0.05, 0.2, 1}[r.IntN(4)])
				c.Similarity = r.Float64()
			}
			pool = append(pool, c)
		}
		pick := func() []Candidate {
			var out []Candidate
			for _, i := range r.Perm(len(pool))[:r.IntN(len(pool)+1)] {
				c := pool[i]
				if r.IntN(3) == 0 {
					c.Vector, c.Similarity = nil, 0
				}
				out = append(out, c)
			}
			return out
		}
		byVector, byText := pick(), pick()
		halves, limit := 1+r.IntN(2), r.IntN(12)
		minScore := []float64{0, 0, 0.3, 0.6, 0.9}[r.IntN(5)]
		want := fuseReference(byVector, byText, halves, limit, minScore)
		got := Fuse(byVector, byText, halves, limit, minScore)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("iteration %d: Fuse(%d vector, %d text, halves %d, limit %d, min %v) differs from the reference (-want +got):\n%s",
				iter, len(byVector), len(byText), halves, limit, minScore, diff)
		}
	}
}

func TestSameNormalized(t *testing.T) {
	texts := []string{"", " ", "a", "A", "a b", "a  b", " a b ", "ab", "a\tb", "a\u00a0b", "a\u2003b", "Ünï", "ünï", "ÜNÏ",
		"straße", "STRASSE", "İstanbul", "istanbul", "ǅ", "ǆ", "\xff", "\xfe", "\ufffd", "a\xffb", "a\ufffdb", "Σ", "σ", "ς",
		"a\u0085b", "x\u200bx", "x x", "The  Build is green", "the build is GREEN\n"}
	for _, a := range texts {
		for _, b := range texts {
			for _, pa := range []string{"", " ", "x "} {
				a, b := pa+a, pa+b
				if got, want := sameNormalized(a, b), NormalizeContent(a) == NormalizeContent(b); got != want {
					t.Errorf("sameNormalized(%q, %q) = %v, want %v", a, b, got, want)
				}
			}
		}
	}
}

// FuzzSameNormalized checks sameNormalized against NormalizeContent, on
// pairs that share a prefix as often as not.
func FuzzSameNormalized(f *testing.F) {
	for _, s := range [][3]string{{"the build ", "is green", "IS  green"}, {"", "a", "A"}, {"x \t", "y", " y"},
		{"memory number ", "12", "13"}, {"ab", "\xffc", "\ufffdc"}, {" ", " a", "a"}, {"Straße ", "é", "É "}} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, prefix, a, b string) {
		for _, pair := range [][2]string{{prefix + a, prefix + b}, {a, b}, {prefix + a, b}} {
			x, y := pair[0], pair[1]
			if got, want := sameNormalized(x, y), NormalizeContent(x) == NormalizeContent(y); got != want {
				t.Errorf("sameNormalized(%q, %q) = %v, want %v", x, y, got, want)
			}
		}
	})
}

func BenchmarkFuse(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	const dims = 768
	scopes := []scope.Scope{{Kind: scope.KindUser, ID: "u"}, {Kind: scope.KindTeam, ID: "t"}, {Kind: scope.KindOrg}}
	base := unit(r, make([]float32, dims), 1)
	list := func(prefix string) []Candidate {
		out := make([]Candidate, 50)
		for i := range out {
			out[i] = Candidate{Memory: Memory{ID: fmt.Sprintf("%s%d", prefix, i%40), Scope: scopes[i%3],
				Content: fmt.Sprintf("memory number %d about the build", i)}, Vector: unit(r, base, 2), Similarity: 0.8}
		}
		return out
	}
	byVector, byText := list("v"), list("t")
	for _, impl := range []struct {
		name string
		fuse func([]Candidate, []Candidate, int, int, float64) []Hit
	}{{"reference", fuseReference}, {"Fuse", Fuse}} {
		b.Run(impl.name, func(b *testing.B) {
			for b.Loop() {
				impl.fuse(byVector, byText, 2, 10, 0)
			}
		})
	}
}

func TestWarm(t *testing.T) {
	for _, n := range []int{0, 1, 15, 16, 17, 33, 768} {
		v := make([]float32, n)
		var want float32
		for i := range v {
			v[i] = float32(i + 1)
			if i%16 == 0 {
				want += v[i]
			}
		}
		if got := Warm(v); got != want {
			t.Errorf("Warm(%d values) = %v, want %v (one value of each 64-byte line)", n, got, want)
		}
	}
}
