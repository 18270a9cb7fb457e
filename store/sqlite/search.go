package sqlite

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/simhash"
)

// Search runs a hybrid search over the cached rows of the caller's visible
// scopes: a vector half (binary codes pick candidates, exact dot products
// rank them) and a BM25 full-text half, fused by [store.Fuse].
func (s *Store) Search(ctx context.Context, id scope.Identity, q store.Query) ([]store.Hit, error) {
	if err := checkIdentity(id); err != nil {
		return nil, err
	}
	limit, err := q.Check()
	if err != nil {
		return nil, err
	}
	dims := int(s.dims.Load())
	if dims == 0 {
		var err error
		if dims, err = s.storedDims(ctx, s.rdb); errors.Is(err, store.ErrInvalid) && q.Vector == nil {
			return []store.Hit{}, nil // no embedder recorded: nothing was ever added
		} else if err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
	}
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	var vec []float32
	if q.Vector != nil {
		if err := checkDims(q.Vector, dims); err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
		// Normalized in the scratch: the query is not kept.
		sc.query = append(sc.query[:0], q.Vector...)
		var err error
		if vec, err = store.Normalize(sc.query); err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
	}
	scopes := id.Visible()
	if q.Scopes != nil {
		scopes = slices.DeleteFunc(scopes, func(sc scope.Scope) bool { return !slices.Contains(q.Scopes, sc) })
	}
	terms := queryTerms(q.Text)
	if len(scopes) == 0 || (vec == nil && len(terms) == 0) {
		return []store.Hit{}, nil
	}
	var tags []string
	for _, t := range q.Tags {
		if !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	entries, err := s.freshEntries(ctx, id.Org, scopes, dims)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	sc.rot = sc.rot[:0]
	f := filter{now: nowNanos(), tags: tags, dims: dims}
	need := max(50, store.CandidatesPerHalf*limit)
	halves := 0
	var byVector, byText []store.Candidate
	if vec != nil {
		halves++
		byVector = vectorHalf(entries, vec, f, need, sc)
	}
	if len(terms) > 0 {
		halves++
		byText = textHalf(entries, terms, vec, f, need, sc)
	}
	hits := store.Fuse(byVector, byText, halves, limit, q.MinScore)
	for i := range hits {
		if math.IsNaN(hits[i].Similarity) {
			hits[i].Similarity = similarity(byText, hits[i].ID, vec)
		}
		// Hits share the cache's slices.
		hits[i].Tags, hits[i].Metadata = slices.Clone(hits[i].Tags), bytes.Clone(hits[i].Metadata)
	}
	return hits, nil
}

// similarity returns the similarity to vec of the candidate of cs whose
// memory is id: the text half leaves it to be computed (NaN) for the few
// of its candidates that are kept.
func similarity(cs []store.Candidate, id string, vec []float32) float64 {
	for i := range cs {
		if c := &cs[i]; c.ID == id && len(c.Vector) == len(vec) {
			return float64(dot(vec, c.Vector))
		}
	}
	return 0
}

// filter is what every candidate must pass.
type filter struct {
	now  int64
	tags []string
	dims int
}

// keep reports whether the row in slot of e is live and carries every tag.
// The caller holds e.mu.
func (f *filter) keep(e *scopeVecs, slot int) bool {
	if e.rids[slot] == 0 {
		return false
	}
	if exp := e.expires[slot]; exp != 0 && exp <= f.now {
		return false
	}
	return len(f.tags) == 0 || hasTags(e.mems[slot].Tags, f.tags)
}

// scratch holds buffers a search reuses.
type scratch struct {
	dist     []uint16
	hist     []int32
	pick     []int32
	sel      []int32
	code     []uint64
	query    []float32 // the query vector, normalized
	rot      []float32 // the query vector rotated (simhash.Rotate); empty until needed
	heap     []hit     // the candidates of one half at a time (topK)
	scores   []float64
	touched  []int32
	postings []posting  // live's
	terms    []textTerm // scoreText's
	rows     []int32    // scoreText's rows to complete, in slot order
	kept64   []float64  // kth's
	mark     []bool     // scoreText's rows already complete; all false between calls
	// The halves' candidates and their marks (topK.sorted), one buffer a
	// half: a search's candidates are copied out by Fuse before it ends.
	byVector, byText []store.Candidate
	kept             []bool
}

// topK returns an empty heap of the k best candidates, in the scratch's
// buffer: the heap of one half, sorted before the other half begins.
func (sc *scratch) topK(k int) *topK {
	sc.heap = slices.Grow(sc.heap[:0], k)
	return &topK{k: k, h: sc.heap}
}

// hit is one candidate of either half while the halves are computed. It
// is kept small: the heap moves hits around.
type hit struct {
	score float64
	rid   int64
	slot  int32
	entry *scopeVecs // nil once copied out (sorted)
}

// better orders hits best first: higher score, then lower rid.
func better(a, b *hit) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	return a.rid < b.rid
}

// topK keeps the k best hits in a heap whose root is the worst.
type topK struct {
	k int
	h []hit
}

// full reports whether the heap holds k hits.
func (t *topK) full() bool { return len(t.h) == t.k }

// beats reports whether a hit scoring score (and rid) would enter the heap.
func (t *topK) beats(score float64, rid int64) bool {
	if len(t.h) < t.k {
		return true
	}
	w := &t.h[0]
	return score > w.score || (score == w.score && rid < w.rid)
}

func (t *topK) offer(x hit) {
	if len(t.h) < t.k {
		t.h = append(t.h, x)
		for i := len(t.h) - 1; i > 0; {
			p := (i - 1) / 2
			if !better(&t.h[p], &t.h[i]) {
				break
			}
			t.h[p], t.h[i] = t.h[i], t.h[p]
			i = p
		}
		return
	}
	if !better(&x, &t.h[0]) {
		return
	}
	t.h[0] = x
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(t.h) && better(&t.h[m], &t.h[l]) {
			m = l
		}
		if r < len(t.h) && better(&t.h[m], &t.h[r]) {
			m = r
		}
		if m == i {
			break
		}
		t.h[m], t.h[i] = t.h[i], t.h[m]
		i = m
	}
}

// sorted returns the heap's candidates best first, copying what they need
// out of their entries under each entry's lock: an entry may change once
// unlocked. A row removed since it was scored is dropped. Vectors are
// shared, never written once cached. With a query vector, text hits
// (vectorHalf false) get NaN as their similarity, for Search to compute
// for the hits it keeps (most are not kept).
//
// The candidates are written into *buf, reused from search to search
// (its contents are overwritten), and kept is scratch.
func (t *topK) sorted(vec []float32, vectorHalf bool, buf *[]store.Candidate, kept *[]bool) []store.Candidate {
	slices.SortFunc(t.h, func(a, b hit) int {
		// better, in one pass.
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return cmp.Compare(a.rid, b.rid)
	})
	out := slices.Grow((*buf)[:0], len(t.h))[:len(t.h)]
	marks := slices.Grow((*kept)[:0], len(t.h))[:len(t.h)]
	clear(marks)
	*buf, *kept = out, marks
	for i := range t.h {
		e := t.h[i].entry
		if e == nil {
			continue
		}
		e.mu.RLock()
		for j := i; j < len(t.h); j++ {
			h := &t.h[j]
			if h.entry != e {
				continue
			}
			h.entry = nil
			if e.rids[h.slot] != h.rid {
				continue
			}
			// Written in place: a candidate is a few hundred bytes.
			c := &out[j]
			c.Memory, c.Key, c.Vector, c.Similarity = e.mems[h.slot], uint64(h.rid), nil, 0
			// Without a query vector, hits carry no vector, so that only
			// identical content collapses across scopes.
			if v := e.vecs[h.slot]; vec != nil && len(v) == len(vec) {
				c.Vector = v
				if vectorHalf {
					c.Similarity = h.score
				} else {
					c.Similarity = math.NaN()
				}
			}
			marks[j] = true
		}
		e.mu.RUnlock()
	}
	n := 0
	for j := range out {
		if marks[j] {
			out[n] = out[j]
			n++
		}
	}
	return out[:n]
}

// freshEntries returns the cache entries of scopes, reloading those another
// connection or process changed since they were loaded.
//
// When nothing was committed to the file since every one of these
// entries was last checked (the versionGate's data version is the one
// they were checked at), they are current and no query runs.
func (s *Store) freshEntries(ctx context.Context, org string, scopes []scope.Scope, dims int) ([]*scopeVecs, error) {
	out := make([]*scopeVecs, len(scopes))
	dv, gated := s.dataVersion(ctx)
	if gated {
		current := true
		for i, sc := range scopes {
			e := s.cache.entry(keyOf(org, sc))
			e.mu.RLock()
			current = current && e.checked == dv && e.version >= 0 && e.dims == dims
			e.mu.RUnlock()
			out[i] = e
		}
		if current {
			return out, nil
		}
	}
	where, args := scopeIn("", scopes, []any{org})
	rows, err := s.readers().QueryContext(ctx, `SELECT scope_kind, scope_id, version, reset FROM scope_versions WHERE org_id = ? AND `+where, args...)
	if err != nil {
		return nil, s.translate(err)
	}
	type scopeState struct{ version, reset int64 }
	versions := make(map[scope.Scope]scopeState, len(scopes))
	for rows.Next() {
		var kind, sid string
		var st scopeState
		if err := rows.Scan(&kind, &sid, &st.version, &st.reset); err != nil {
			rows.Close()
			return nil, s.translate(err)
		}
		versions[scope.Scope{Kind: scope.Kind(kind), ID: sid}] = st
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.translate(err)
	}
	loaded := false
	for i, sc := range scopes {
		k := keyOf(org, sc)
		e := s.cache.entry(k)
		st := versions[sc]
		e.mu.RLock()
		ok := e.version >= st.version && e.dims == dims
		e.mu.RUnlock()
		if !ok {
			// Read after the version: the rows are at least as new as v,
			// so labelling them v can only cause one extra read later.
			if err := refresh(ctx, s.rdb, e, k, dims, st.version, st.reset, false); err != nil {
				return nil, s.translate(err)
			}
			loaded = true
		}
		if gated {
			// The entry is at least as new as the file was at data
			// version dv, read before the versions.
			e.mu.Lock()
			e.checked = dv
			e.mu.Unlock()
		}
		out[i] = e
	}
	if loaded {
		s.cache.trim(out)
	}
	return out, nil
}

// vectorHalf ranks the live rows of entries that pass f by similarity to
// vec and returns the best need, best first.
//
// The candidates re-ranked exactly, simhash.Rerank of all the rows, are
// shared among the scopes by their sizes, with at least need per scope:
// three scopes of 700 rows re-rank about as many as one of 2,100.
func vectorHalf(entries []*scopeVecs, vec []float32, f filter, need int, sc *scratch) []store.Candidate {
	total := 0
	for _, e := range entries {
		e.mu.RLock()
		if e.dims == f.dims {
			total += e.live
		}
		e.mu.RUnlock()
	}
	all := simhash.Rerank(total, need)
	top := sc.topK(need)
	for _, e := range entries {
		e.mu.RLock()
		if e.dims == f.dims && e.live > 0 {
			c := max(need, (all*e.live+total-1)/total)
			scanVectors(e, vec, f, c, top, sc)
		}
		e.mu.RUnlock()
	}
	return top.sorted(vec, true, &sc.byVector, &sc.kept)
}

// scanVectors offers e's rows to top: every row when e holds at most c,
// else the c rows whose codes are nearest the query's. The caller holds
// e.mu.
func scanVectors(e *scopeVecs, vec []float32, f filter, c int, top *topK, sc *scratch) {
	offer := func(slot int) {
		sim := float64(dot(vec, e.vecs[slot]))
		if top.beats(sim, e.rids[slot]) {
			top.offer(hit{score: sim, rid: e.rids[slot], slot: int32(slot), entry: e})
		}
	}
	if e.live <= c {
		for slot := range e.rids {
			if f.keep(e, slot) {
				offer(slot)
			}
		}
		return
	}
	w := e.words
	sc.code = slices.Grow(sc.code[:0], w)[:w]
	if len(sc.rot) == 0 {
		// Rotated once for every scope of the search: codes are signs of
		// rotated vectors minus the scope's rotated mean.
		sc.rot = slices.Grow(sc.rot, simhash.Bits(len(vec)))[:simhash.Bits(len(vec))]
		simhash.Rotate(vec, sc.rot)
	}
	simhash.Sign(sc.rot, e.rmean, sc.code)
	n := len(e.rids)
	sc.dist = slices.Grow(sc.dist[:0], n)[:n]
	if pw := e.prefixWords(); pw < w && e.live > 2*simhash.PrefixOver*c {
		// A large scope: the distances of the code prefixes pick
		// PrefixOver x c rows, whose whole codes then pick c.
		sc.hist = slices.Grow(sc.hist[:0], 64*pw+2)[:64*pw+2]
		clear(sc.hist)
		prefixDistances(e, sc.code[:pw], f, sc.dist, sc.hist)
		sc.pick = simhash.Nearest(sc.dist, sc.hist, simhash.PrefixOver*c, sc.pick[:0])
		sc.hist = slices.Grow(sc.hist[:0], 64*w+2)[:64*w+2]
		sc.sel = simhash.Refine(sc.code, e.codes, sc.pick, c, sc.dist, sc.hist, sc.sel[:0])
		warmRows(e, sc.sel)
		for _, slot := range sc.sel {
			offer(int(slot))
		}
		return
	}
	// The distances of every row's code to the query's pick c rows.
	sc.hist = slices.Grow(sc.hist[:0], 64*w+2)[:64*w+2]
	clear(sc.hist)
	for slot := range n {
		if !f.keep(e, slot) {
			sc.dist[slot] = simhash.Skip
			continue
		}
		d := simhash.Hamming(sc.code, e.codes[slot*w:(slot+1)*w])
		sc.dist[slot] = uint16(d)
		sc.hist[d]++
	}
	sc.sel = simhash.Nearest(sc.dist, sc.hist, c, sc.sel[:0])
	warmRows(e, sc.sel)
	for _, slot := range sc.sel {
		offer(int(slot))
	}
}

// warmRows warms the vectors of e's rows in slots (store.Warm) before
// they are read whole. The caller holds e.mu.
func warmRows(e *scopeVecs, slots []int32) {
	for _, slot := range slots {
		store.Warm(e.vecs[slot])
	}
}

// prefixDistances writes the Hamming distance of each live row's code
// prefix to q into dist (Skip for rows f drops) and counts them in hist.
// The caller holds e.mu.
func prefixDistances(e *scopeVecs, q []uint64, f filter, dist []uint16, hist []int32) {
	// The pass reads only what can skip a row: rids when a slot is free,
	// expires when a row expires.
	expires, rids := e.expires, e.rids
	if e.expiring == 0 {
		expires = nil
	}
	if e.live == len(e.rids) {
		rids = nil
	}
	simhash.PrefixDistances(q, e.prefix, expires, rids, f.now, dist, hist)
	if len(f.tags) > 0 {
		for slot := range e.rids {
			if !f.keep(e, slot) {
				simhash.Drop(dist, hist, slot)
			}
		}
	}
}

// textHalf ranks the live rows of entries that pass f by BM25 over terms
// and returns the best need, best first. Statistics (row count, average
// length, rows per term) are those of the visible scopes, so nothing about
// other tenants' rows shapes the ranking. Terms held by half the rows or
// more add almost nothing to a score (BM25's IDF floor, as in FTS5): they
// are only used when the other terms match fewer than need rows.
func textHalf(entries []*scopeVecs, terms []string, vec []float32, f filter, need int, sc *scratch) []store.Candidate {
	var n, tokens float64
	df := make([]float64, len(terms))
	for _, e := range entries {
		e.mu.RLock()
		n += float64(e.live)
		tokens += float64(e.tokens)
		for i, t := range terms {
			if p := e.terms[t]; p != nil {
				df[i] += float64(p.df)
			}
		}
		e.mu.RUnlock()
	}
	if n == 0 {
		return nil
	}
	avg := max(tokens/n, 1)
	idf := make([]float64, len(terms))
	var strong, weak []int
	for i := range terms {
		if df[i] == 0 {
			continue
		}
		idf[i] = math.Log((n - df[i] + 0.5) / (df[i] + 0.5))
		if idf[i] <= 0 {
			idf[i] = bm25MinIDF
			weak = append(weak, i)
		} else {
			strong = append(strong, i)
		}
	}
	run := func(use []int) *topK {
		top := sc.topK(need)
		for _, e := range entries {
			e.mu.RLock()
			scoreText(e, terms, use, idf, avg, f, top, sc)
			e.mu.RUnlock()
		}
		return top
	}
	var top *topK
	if len(strong) > 0 {
		top = run(strong)
	}
	if len(weak) > 0 && (top == nil || !top.full()) {
		top = run(append(strong, weak...))
	}
	if top == nil {
		return nil
	}
	return top.sorted(vec, false, &sc.byText, &sc.kept)
}

// live returns the postings of list whose rows are still there, in a
// buffer of sc's.
func (sc *scratch) live(e *scopeVecs, list []posting) []posting {
	out := sc.postings[:0]
	for _, x := range list {
		if e.current(x) {
			out = append(out, x)
		}
	}
	sc.postings = out
	return out
}

// scoreText adds the BM25 scores of e's rows for the terms use to top.
// The caller holds e.mu.
//
// Terms are scored heaviest first, a posting list at a time. Once the
// rows scored so far are few (at most pruneRows x top.k) and the lists
// left are long, those rows' scores are completed from the lists left,
// and when no other row can reach the top.k-th best of them
// (textBound), the other rows are never scored: in a corpus where a
// query's rare terms pick its best rows and its common words are in
// every third row, most postings a search would score are those of
// rows that cannot be among the best. Otherwise the lists left are
// scored for the other rows, one at a time, until the best of those and
// what the lists after can add fall short of that top.k-th best. Every
// row offered has the same score, summed in the same order, either way
// (TestScoreTextPruned compares them with scoring every posting).
func scoreText(e *scopeVecs, terms []string, use []int, idf []float64, avg float64, f filter, top *topK, sc *scratch) {
	// sc.scores is all zeros between calls.
	if n := len(e.rids); len(sc.scores) < n {
		sc.scores = make([]float64, n+n/4)
	}
	// Every posting writes its slot at the end of touched, which only
	// grows past it when the slot had no score yet: without a branch, a
	// search of many postings a row mispredicts none.
	scores := sc.scores
	touched := slices.Grow(sc.touched[:0], len(e.rids)+1)[:len(e.rids)+1]
	n := 0
	// K1 (1 - B + B ln/avg) = k0 + k1 ln: one division a posting.
	k0, k1 := bm25K1*(1-bm25B), bm25K1*bm25B/avg
	if len(e.rids) < pruneFrom {
		for _, i := range use {
			if p := e.terms[terms[i]]; p != nil {
				n = scoreList(sc.termList(e, p), idf[i]*(bm25K1+1), k0, k1, scores, touched, n)
			}
		}
		sc.touched = touched[:n]
		offerScored(e, sc.touched, scores, f, top)
		return
	}
	ts := sc.terms[:0]
	for _, i := range use {
		if p := e.terms[terms[i]]; p != nil {
			ts = append(ts, textTerm{p: p, w: idf[i] * (bm25K1 + 1)})
		}
	}
	slices.SortStableFunc(ts, func(a, b textTerm) int { return cmp.Compare(b.w, a.w) })
	sc.terms = ts
	var (
		marked []int32 // rows complete before the last terms, once a stop failed
		th     float64 // the top.k-th best of them, when they are that many
		hi     float64 // the best score of the other rows so far
	)
	for j := range ts {
		w := ts[j].w
		if marked == nil {
			n = scoreList(sc.termList(e, ts[j].p), w, k0, k1, scores, touched, n)
		} else {
			n, hi = scoreUnmarked(sc.termList(e, ts[j].p), w, k0, k1, scores, touched, n, sc.mark, hi)
		}
		rest := ts[j+1:]
		if marked != nil {
			if len(rest) > 0 && (hi+textBound(rest, e.maxLen, k0, k1))*(1+1e-9) < th {
				// No other row can reach the best top.k of the
				// complete ones: only those are offered.
				textPruned.Add(1)
				for _, slot := range touched[len(marked):n] {
					scores[slot] = 0
				}
				n = len(marked)
				break
			}
			continue
		}
		if !textPruning || n < top.k || n > pruneRows*top.k || restPostings(rest) < 4*n {
			continue
		}
		// Complete the scores of the rows scored so far: a list in slot
		// order is searched for them, any other read through.
		rows := append(sc.rows[:0], touched[:n]...)
		slices.Sort(rows)
		sc.rows = rows
		for _, t := range rest {
			if t.p.unsorted {
				for _, x := range sc.termList(e, t.p) {
					if old := scores[x.slot]; old != 0 {
						scores[x.slot] = old + bm25(t.w, x.tf, x.ln, k0, k1)
					}
				}
				continue
			}
			list, block := t.p.list, 0
			for _, slot := range rows {
				i, found, b := t.p.seek(block, slot)
				block = b
				if found && e.current(list[i]) {
					scores[slot] += bm25(t.w, list[i].tf, list[i].ln, k0, k1)
				}
			}
		}
		th = sc.kth(e, touched[:n], scores, f, top.k)
		if th > 0 && textBound(rest, e.maxLen, k0, k1)*(1+1e-9) < th {
			textPruned.Add(1)
			break // no other row can reach the best top.k of these
		}
		// The other rows take the scores of the terms left, until the
		// best of them and what the terms after can add cannot reach
		// th.
		marked = touched[:n:n]
		if len(sc.mark) < len(e.rids) {
			sc.mark = make([]bool, len(e.rids)+len(e.rids)/4)
		}
		for _, slot := range marked {
			sc.mark[slot] = true
		}
	}
	for _, slot := range marked {
		sc.mark[slot] = false
	}
	clear(ts) // the scratch outlives the entry's postings
	sc.touched = touched[:n]
	offerScored(e, sc.touched, scores, f, top)
}

// bm25 is the BM25 score of tf occurrences of a term of weight w
// (IDF x (K1 + 1)) in a row of ln tokens, K1 (1 - B + B ln/avg) being
// k0 + k1 ln: every path of scoreText computes a posting's score here,
// so that a row's score is the same to the bit whichever path summed it.
func bm25(w float64, tf uint16, ln uint32, k0, k1 float64) float64 {
	t := float64(tf)
	return w * t / (t + k0 + k1*float64(ln))
}

// scoreList adds the BM25 scores of list's postings, for a term of
// weight w, to scores, writing each slot at touched[n] and counting it
// in n when it had no score yet; it returns n. Its own function, so
// that the loop keeps its variables in registers.
func scoreList(list []posting, w, k0, k1 float64, scores []float64, touched []int32, n int) int {
	for _, x := range list {
		s := bm25(w, x.tf, x.ln, k0, k1)
		old := scores[x.slot]
		touched[n] = x.slot
		if old == 0 {
			n++
		}
		scores[x.slot] = old + s
	}
	return n
}

// scoreUnmarked is scoreList for the rows not marked, and also returns
// the best score of those it adds to, or hi if higher.
func scoreUnmarked(list []posting, w, k0, k1 float64, scores []float64, touched []int32, n int, mark []bool, hi float64) (int, float64) {
	for _, x := range list {
		if mark[x.slot] {
			continue
		}
		old := scores[x.slot]
		touched[n] = x.slot
		if old == 0 {
			n++
		}
		s := old + bm25(w, x.tf, x.ln, k0, k1)
		scores[x.slot] = s
		if s > hi {
			hi = s
		}
	}
	return n, hi
}

// textTerm is a term of a text search held by an entry: its postings
// and its weight (IDF x (K1 + 1)).
type textTerm struct {
	p *postings
	w float64
}

// textPruning turns scoreText's early stop on (tests compare it with
// scoring every posting); textPruned counts the searches of an entry it
// stopped early.
var (
	textPruning = true
	textPruned  atomic.Int64
)

// pruneFrom is the fewest rows of an entry whose text searches may stop
// early: below it, every posting is scored in the query's order, which
// measured faster at 2,000 rows (BENCHMARKS.md).
const pruneFrom = 10000

// pruneRows bounds, in multiples of the rows a half wants, the rows
// scoreText completes the scores of before deciding whether the others
// can be left unscored.
const pruneRows = 4

// termList returns p's postings whose rows are still there: p's list, or
// a copy in sc's buffer without the postings of removed rows (stale
// until compact).
func (sc *scratch) termList(e *scopeVecs, p *postings) []posting {
	if len(p.list) != p.df {
		return sc.live(e, p.list)
	}
	return p.list
}

// restPostings returns how many postings ts list, stale ones included.
func restPostings(ts []textTerm) int {
	n := 0
	for _, t := range ts {
		n += len(t.p.list)
	}
	return n
}

// kth returns the k-th best score of the rows in slots that f keeps, or
// 0 when f keeps fewer than k of them.
func (sc *scratch) kth(e *scopeVecs, slots []int32, scores []float64, f filter, k int) float64 {
	kept := sc.kept64[:0]
	for _, slot := range slots {
		if f.keep(e, int(slot)) {
			kept = append(kept, scores[slot])
		}
	}
	sc.kept64 = kept
	if len(kept) < k {
		return 0
	}
	slices.Sort(kept)
	return kept[len(kept)-k]
}

// textBound returns a bound on the score the terms ts can give a row of
// an entry whose rows have at most maxLen tokens: the lesser of the
// terms' own bounds added up (each term's weight at the most
// occurrences and the shortest row it has been listed with) and a bound
// from the row's length. A row of ln tokens holds at most ln
// occurrences of the q terms, and x / (x + K) is concave in x, so its
// score is at most W q h(ln/q) = W ln / (ln/q + K(ln)) with W the
// heaviest weight, which grows with ln.
func textBound(ts []textTerm, maxLen uint32, k0, k1 float64) float64 {
	var sum, heaviest float64
	for _, t := range ts {
		sum += bm25(t.w, t.p.maxTF, t.p.minLn, k0, k1)
		heaviest = max(heaviest, t.w)
	}
	ln := float64(maxLen)
	byLength := heaviest * ln / (ln/float64(len(ts)) + k0 + k1*ln)
	return min(sum, byLength)
}

// offerScored offers to top the rows of e in touched that f keeps, with
// their scores, and zeroes those scores. The caller holds e.mu.
//
// A search of common words scores many more rows than top holds (968 rows
// a search for 50 in BenchmarkSearchFewWords' corpus of 2,000), and in
// the order their postings came, in which a heap of the best takes in
// about twice as many as it holds, each costing a walk of the heap with a
// mispredicted branch a level. When the rows are that many, a histogram
// of their scores first finds the bin the best top.k reach down to; only
// rows from that bin up are offered, and the rows below it only when
// fewer than top.k of those are kept (a filter dropped the others).
func offerScored(e *scopeVecs, touched []int32, scores []float64, f filter, top *topK) {
	offer := func(slot int32, score float64) {
		if top.beats(score, e.rids[slot]) {
			top.offer(hit{score: score, rid: e.rids[slot], slot: slot, entry: e})
		}
	}
	if len(touched) > offerAllBelow*top.k {
		// A comparison, not the built-in max, which must order NaN and
		// signed zeros: over 968 scores it cost about as much as the
		// offers saved (BENCHMARKS.md, "stdio: how a search's server
		// time shows in the client's rate").
		var hi float64
		for _, slot := range touched {
			if s := scores[slot]; s > hi {
				hi = s
			}
		}
		if hi > 0 {
			offerBest(e, touched, scores, hi, f, top, offer)
			return
		}
	}
	for _, slot := range touched {
		score := scores[slot]
		scores[slot] = 0
		if f.keep(e, int(slot)) {
			offer(slot, score)
		}
	}
}

// offerBest is offerScored for many rows, whose scores are positive and
// at most hi.
func offerBest(e *scopeVecs, touched []int32, scores []float64, hi float64, f filter, top *topK, offer func(int32, float64)) {
	// A score's bin is in [0, scoreBins] (the product's rounding may put
	// hi itself in either of the last two).
	scale := scoreBins / hi
	var hist [scoreBins + 1]int32
	for _, slot := range touched {
		hist[int(scores[slot]*scale)]++
	}
	from, n := scoreBins, int32(0)
	for ; from > 0; from-- {
		if n += hist[from]; n >= int32(top.k) {
			break
		}
	}
	kept := 0
	for _, slot := range touched {
		if score := scores[slot]; int(score*scale) >= from && f.keep(e, int(slot)) {
			kept++
			offer(slot, score)
		}
	}
	for _, slot := range touched {
		score := scores[slot]
		scores[slot] = 0
		// Every row below from scores less than top.k kept rows of
		// e, unless fewer were kept.
		if kept < top.k && int(score*scale) < from && f.keep(e, int(slot)) {
			offer(slot, score)
		}
	}
}

// Rows scored for a half's top.k are offered one by one below
// offerAllBelow x top.k of them, and sorted into scoreBins bins of
// their scores first from there on (offerScored).
const (
	offerAllBelow = 4
	scoreBins     = 256
)
