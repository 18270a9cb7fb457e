package sqlite

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// maxQueryWords bounds the words of a full-text query.
const maxQueryWords = 64

// ftsQuery turns free text into an FTS5 query that cannot be a syntax
// error: every word (a run of letters, digits and marks, as the unicode61
// tokenizer sees words) is put in double quotes, and the words are ORed.
// Text without words gives "".
func ftsQuery(text string) string {
	words := strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsNumber(r) && !unicode.IsMark(r) && !unicode.Is(unicode.Co, r)
	})
	var b strings.Builder
	seen := make(map[string]bool, len(words))
	n := 0
	for _, w := range words {
		if seen[w] {
			continue
		}
		seen[w] = true
		if n > 0 {
			b.WriteString(" OR ")
		}
		b.WriteByte('"')
		b.WriteString(w)
		b.WriteByte('"')
		if n++; n == maxQueryWords {
			break
		}
	}
	return b.String()
}

// Search runs a hybrid search: an exact cosine scan of the cached vectors of
// the caller's visible scopes, and an FTS5 query over the same rows, fused
// by [store.Fuse].
func (s *Store) Search(ctx context.Context, id scope.Identity, q store.Query) ([]store.Hit, error) {
	if err := checkIdentity(id); err != nil {
		return nil, err
	}
	limit := q.Limit
	if limit == 0 {
		limit = store.DefaultLimit
	}
	if limit < 0 || limit > store.MaxLimit {
		return nil, fmt.Errorf("%w: limit %d is outside 1..%d", store.ErrInvalid, q.Limit, store.MaxLimit)
	}
	if math.IsNaN(q.MinScore) || q.MinScore < 0 || q.MinScore > 1 {
		return nil, fmt.Errorf("%w: min score %v is outside 0..1", store.ErrInvalid, q.MinScore)
	}
	if q.Vector == nil && strings.TrimSpace(q.Text) == "" {
		return nil, fmt.Errorf("%w: a search needs query text or a query vector", store.ErrInvalid)
	}
	var vec []float32
	dims := int(s.dims.Load())
	if q.Vector != nil {
		if dims == 0 {
			var err error
			if dims, err = s.storedDims(ctx, s.rdb); err != nil {
				return nil, fmt.Errorf("search: %w", err)
			}
		}
		var err error
		if vec, err = prepareVector(q.Vector, dims); err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
	}
	scopes := id.Visible()
	if q.Scopes != nil {
		scopes = slices.DeleteFunc(scopes, func(sc scope.Scope) bool { return !slices.Contains(q.Scopes, sc) })
	}
	fts := ftsQuery(q.Text)
	if len(scopes) == 0 || (vec == nil && fts == "") {
		return []store.Hit{}, nil
	}
	var tags []string
	for _, t := range q.Tags {
		if !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	need := max(50, store.CandidatesPerHalf*limit)
	now := nowNanos()
	halves := 0
	var byVector, byText []store.Candidate
	var entries map[scopeKey]*scopeVecs
	if vec != nil {
		halves++
		var err error
		if byVector, entries, err = s.vectorHalf(ctx, id.Org, scopes, vec, dims, tags, now, need); err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
	}
	if fts != "" {
		halves++
		var err error
		if byText, err = s.textHalf(ctx, id.Org, scopes, fts, vec, entries, tags, now, need); err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
	}
	hits := store.Fuse(byVector, byText, halves, limit, q.MinScore)
	for i := range hits {
		// Hits from the vector half share the cache's slices.
		hits[i].Tags, hits[i].Metadata = slices.Clone(hits[i].Tags), bytes.Clone(hits[i].Metadata)
	}
	return hits, nil
}

// vecHit is one candidate of the vector half.
type vecHit struct {
	sim   float32
	row   int // position in the scope entry while it is scanned
	entry *scopeVecs
	c     store.Candidate // filled once the scan of its scope ends
}

// topK keeps the k best hits in a min-heap on sim.
type topK struct {
	k int
	h []vecHit
}

func (t *topK) min() float32 { return t.h[0].sim }

func (t *topK) offer(x vecHit) {
	if len(t.h) < t.k {
		t.h = append(t.h, x)
		for i := len(t.h) - 1; i > 0; {
			p := (i - 1) / 2
			if t.h[p].sim <= t.h[i].sim {
				break
			}
			t.h[p], t.h[i] = t.h[i], t.h[p]
			i = p
		}
		return
	}
	if x.sim <= t.h[0].sim {
		return
	}
	t.h[0] = x
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(t.h) && t.h[l].sim < t.h[m].sim {
			m = l
		}
		if r < len(t.h) && t.h[r].sim < t.h[m].sim {
			m = r
		}
		if m == i {
			break
		}
		t.h[m], t.h[i] = t.h[i], t.h[m]
		i = m
	}
}

// freshEntries returns the cache entries of scopes, reloading those another
// connection or process changed since they were loaded.
func (s *Store) freshEntries(ctx context.Context, org string, scopes []scope.Scope, dims int) ([]*scopeVecs, error) {
	where, args := scopeIn("", scopes, []any{org})
	rows, err := s.rdb.QueryContext(ctx, `SELECT scope_kind, scope_id, version FROM scope_versions WHERE org_id = ? AND `+where, args...)
	if err != nil {
		return nil, s.translate(err)
	}
	versions := make(map[scope.Scope]int64, len(scopes))
	for rows.Next() {
		var kind, sid string
		var v int64
		if err := rows.Scan(&kind, &sid, &v); err != nil {
			rows.Close()
			return nil, s.translate(err)
		}
		versions[scope.Scope{Kind: scope.Kind(kind), ID: sid}] = v
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.translate(err)
	}
	out := make([]*scopeVecs, len(scopes))
	for i, sc := range scopes {
		k := keyOf(org, sc)
		e := s.cache.entry(k)
		v := versions[sc]
		e.mu.RLock()
		ok := e.version >= v && e.dims == dims
		e.mu.RUnlock()
		if !ok {
			// Read after the version: the rows are at least as new as v,
			// so labelling them v can only cause one extra reload later.
			loaded, err := loadRows(ctx, s.rdb, k, dims)
			if err != nil {
				return nil, s.translate(err)
			}
			e.replace(v, dims, loaded)
		}
		out[i] = e
	}
	return out, nil
}

// vectorHalf scans the visible scopes' cached vectors and returns the
// best need live memories carrying every tag, best first.
func (s *Store) vectorHalf(ctx context.Context, org string, scopes []scope.Scope, vec []float32, dims int, tags []string,
	now int64, need int) ([]store.Candidate, map[scopeKey]*scopeVecs, error) {
	entries, err := s.freshEntries(ctx, org, scopes, dims)
	if err != nil {
		return nil, nil, err
	}
	byKey := make(map[scopeKey]*scopeVecs, len(entries))
	for i, e := range entries {
		byKey[keyOf(org, scopes[i])] = e
	}
	top := &topK{k: need, h: make([]vecHit, 0, need)}
	for _, e := range entries {
		e.mu.RLock()
		if e.dims == dims {
			for i := range e.rids {
				sim := dot(vec, e.vecs[i*dims:(i+1)*dims])
				if len(top.h) == top.k && sim <= top.min() {
					continue
				}
				if exp := e.expires[i]; exp != 0 && exp <= now {
					continue
				}
				if len(tags) > 0 && !hasTags(e.mems[i].Tags, tags) {
					continue
				}
				top.offer(vecHit{sim: sim, row: i, entry: e})
			}
			// The entry may change once unlocked: copy what the hits need.
			for j := range top.h {
				if h := &top.h[j]; h.entry == e {
					h.c = store.Candidate{Memory: e.mems[h.row], Vector: slices.Clone(e.vecs[h.row*dims : (h.row+1)*dims]),
						Similarity: float64(h.sim)}
					h.entry = nil
				}
			}
		}
		e.mu.RUnlock()
	}
	hits := top.h
	slices.SortFunc(hits, func(a, b vecHit) int {
		if a.sim != b.sim {
			if a.sim > b.sim {
				return -1
			}
			return 1
		}
		return b.c.CreatedAt.Compare(a.c.CreatedAt)
	})
	out := make([]store.Candidate, len(hits))
	for i, h := range hits {
		out[i] = h.c
	}
	return out, byKey, nil
}

// textHalf runs the FTS5 query over the visible scopes' live rows carrying
// every tag and returns the best need, best first. With a query vector each
// candidate carries its vector (from entries, the vector half's fresh cache
// entries) and similarity.
func (s *Store) textHalf(ctx context.Context, org string, scopes []scope.Scope, fts string, vec []float32, entries map[scopeKey]*scopeVecs,
	tags []string, now int64, need int) ([]store.Candidate, error) {
	where, args := scopeIn("m.", scopes, []any{fts, org, now})
	// Rank rids only, then read the winners' columns: the sort then holds
	// two numbers per match instead of whole rows.
	inner := `SELECT m.rid AS rid, bm25(memories_fts) AS score FROM memories_fts JOIN memories m ON m.rid = memories_fts.rowid
		WHERE memories_fts MATCH ? AND m.org_id = ? AND (m.expires_at IS NULL OR m.expires_at > ?) AND ` + where
	if len(tags) > 0 {
		inner += ` AND (SELECT count(*) FROM memory_tags t WHERE t.rid = m.rid AND t.tag IN (?` + strings.Repeat(", ?", len(tags)-1) + `)) = ?`
		for _, t := range tags {
			args = append(args, t)
		}
		args = append(args, len(tags))
	}
	inner += ` ORDER BY score LIMIT ?`
	args = append(args, need)
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+memoryColsM+` FROM (`+inner+`) AS hit JOIN memories m ON m.rid = hit.rid
		ORDER BY hit.score, m.rid`, args...)
	if err != nil {
		return nil, s.translate(err)
	}
	defer rows.Close()
	var out []store.Candidate
	for rows.Next() {
		var c store.Candidate
		rid, m, err := scanMemory(rows)
		if err != nil {
			return nil, s.translate(err)
		}
		c.Memory = m
		if e := entries[keyOf(org, m.Scope)]; vec != nil && e != nil {
			e.mu.RLock()
			if i, ok := e.index[rid]; ok && e.dims == len(vec) {
				c.Vector = slices.Clone(e.vecs[i*e.dims : (i+1)*e.dims])
				c.Similarity = float64(dot(vec, c.Vector))
			}
			e.mu.RUnlock()
		}
		out = append(out, c)
	}
	return out, s.translate(rows.Err())
}
