package store

import (
	"slices"
	"strings"
)

// Candidate is one row a backend found for a hybrid search, with the vector
// it was ranked by (used to collapse near-identical hits across scopes).
type Candidate struct {
	Memory
	Vector     []float32 // unit length; may be nil for text-only candidates
	Similarity float64   // cosine similarity to the query vector
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
	type acc struct {
		c     Candidate
		score float64
	}
	idx := make(map[string]int, len(byVector)+len(byText))
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
	// Collapse near-identical hits to the narrowest scope: the kept hit takes
	// the best score of its group.
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
	out := make([]Hit, 0, min(limit, len(kept)))
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

// NormalizeContent folds case and white space, so that exact-duplicate
// detection ignores them.
func NormalizeContent(s string) string {
	return strings.Join(strings.Fields(strings.ToLower(s)), " ")
}

// Dot returns the dot product of two vectors of equal length (cosine
// similarity for unit vectors).
func Dot(a, b []float32) float64 {
	if len(a) != len(b) {
		return 0
	}
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return float64(s0 + s1 + s2 + s3)
}
