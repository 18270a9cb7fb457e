package sqlite

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/gonum/blas/gonum"

	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/simhash"
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
		first  int  // rows the entry starts with
		change bool // remove and replace rows right after the add that starts it
		// Each added row comes with its code from the duplicate check
		// (nearest), as an add's do, taken around the mean of the time.
		dupCodes bool
	}{
		{"adds only", 100, false, false},
		{"rows changed meanwhile", 100, true, false},
		{"codes from the duplicate check", 300, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			e := newScopeVecs()
			e.force(1, dims, cacheRows(r, 1, tc.first, dims))
			v := int64(1)
			extra := cacheRows(r, 1000, tc.first+20, dims)
			sc := new(scratch)
			for i := range extra {
				v++
				if tc.dupCodes {
					e.mu.RLock()
					e.nearest(extra[i].vec, 0, dupCandidates, sc, &extra[i].code)
					recentring := e.recentring
					e.mu.RUnlock()
					if extra[i].code.code == nil {
						t.Fatalf("no code from the duplicate check at %d rows", e.live)
					}
					if recentring {
						// The mean changes between the check and the
						// row's add: its code must not be taken.
						settled(t, e)
					}
				}
				e.apply(v, dims, &delta{upserts: extra[i : i+1]})
				if e.live == 2*tc.first && tc.change {
					v++
					e.apply(v, dims, &delta{removed: []int64{5, 50}, upserts: cacheRows(r, 5000, 3, dims)})
				}
			}
			settled(t, e)
			e.mu.RLock()
			defer e.mu.RUnlock()
			if e.meanN < 2*tc.first {
				t.Fatalf("mean taken from %d rows; want the %d or more live when it doubled", e.meanN, 2*tc.first)
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
			buf := make([]float32, simhash.Bits(dims))
			simhash.Rotate(e.mean, buf)
			if !slices.Equal(buf, e.rmean) {
				t.Fatal("the entry's rotated mean is not its mean's rotation")
			}
			pw := e.prefixWords()
			for slot, rid := range e.rids {
				if rid == 0 {
					continue
				}
				simhash.Encode(e.vecs[slot], e.rmean, code, buf)
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

// TestRowCodeOf checks that a row's code from the duplicate check is
// taken only around the very mean it was computed with.
func TestRowCodeOf(t *testing.T) {
	rmean := []float32{1, 2, 3, 4}
	code := []uint64{7}
	tests := []struct {
		name  string
		rc    rowCode
		rmean []float32
		want  []uint64
	}{
		{"same mean", rowCode{code: code, rmean: rmean}, rmean, code},
		{"an equal but new mean", rowCode{code: code, rmean: rmean}, slices.Clone(rmean), nil},
		{"a shorter slice of the mean", rowCode{code: code, rmean: rmean}, rmean[:2], nil},
		{"no code", rowCode{rmean: rmean}, rmean, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rc.of(tt.rmean); !slices.Equal(got, tt.want) {
				t.Errorf("of: %v, want %v", got, tt.want)
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

func axpy(alpha float32, x, y []float32) {
	var blas gonum.Implementation
	blas.Saxpy(len(x), alpha, x, 1, y[:len(x)], 1)
}

func scal(alpha float32, x []float32) {
	var blas gonum.Implementation
	blas.Sscal(len(x), alpha, x, 1)
}

// TestTextHalfAfterRemovals checks the full-text ranking of an entry
// whose rows were removed and whose slots were reused one change at a
// time (stale postings left in its lists until compact) against an entry
// loaded whole with the same rows: the same memories, in the same order.
func TestTextHalfAfterRemovals(t *testing.T) {
	const dims = 64
	words := []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"}
	r := rand.New(rand.NewPCG(7, 8))
	text := func() string {
		var b []byte
		for i := range 3 + r.IntN(8) {
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, words[r.IntN(len(words))]...)
		}
		return string(b)
	}
	rows := cacheRows(r, 1, 300, dims)
	for i := range rows {
		rows[i].mem.Content = text()
	}
	e := newScopeVecs()
	e.install(1, dims, rows)
	live := map[int64]cachedRow{}
	for _, row := range rows {
		live[row.rid] = row
	}
	for _, i := range r.Perm(len(rows))[:100] {
		e.remove(rows[i].rid)
		delete(live, rows[i].rid)
	}
	for _, row := range cacheRows(r, 1001, 60, dims) {
		row.mem.Content = text()
		e.add(row) // into the slots the removals freed
		live[row.rid] = row
	}
	if e.stale == 0 {
		t.Fatal("no stale postings: the test exercises nothing")
	}
	whole := make([]cachedRow, 0, len(live))
	for _, row := range live {
		whole = append(whole, row)
	}
	slices.SortFunc(whole, func(a, b cachedRow) int { return int(a.rid - b.rid) })
	fresh := newScopeVecs()
	fresh.install(1, dims, whole)
	ids := func(cs []store.Candidate) []string {
		out := make([]string, len(cs))
		for i := range cs {
			out[i] = cs[i].ID
		}
		return out
	}
	for range 30 {
		terms := queryTerms(text())
		f := filter{now: nowNanos(), dims: dims}
		got := ids(textHalf([]*scopeVecs{e}, terms, nil, f, 50, new(scratch)))
		want := ids(textHalf([]*scopeVecs{fresh}, terms, nil, f, 50, new(scratch)))
		if !slices.Equal(got, want) {
			t.Fatalf("query %q ranks\n%v\nafter removals, and\n%v\nloaded whole", terms, got, want)
		}
	}
}

// TestOfferScored checks the rows offerScored puts in a heap against a
// sort of every kept row: the same rows, in the same order, whether it
// offers them all (few rows), only those of the best bins (many), or
// falls back to the rows below them (a filter keeping fewer than the
// heap holds among the best), with ties and with hits of another scope
// already in the heap.
func TestOfferScored(t *testing.T) {
	const dims, k = 8, 50
	tests := []struct {
		name    string
		touched int     // rows scored, of 3,000
		levels  int     // distinct scores; 0: continuous
		tagged  float64 // share of rows with the tag; 0: no tag filter
		before  int     // hits of another entry in the heap first
	}{
		{name: "few rows, offered one by one", touched: 150},
		{name: "many rows, best bins only", touched: 2000},
		{name: "many rows, all but one the same score", touched: 2000, levels: 1},
		{name: "many rows, five scores", touched: 2000, levels: 5},
		{name: "tag kept by a tenth: rows below the best bins", touched: 2000, tagged: 0.1},
		{name: "tag kept by 2%: fewer kept than the heap holds", touched: 2000, tagged: 0.02},
		{name: "another scope's hits first", touched: 2000, before: k},
		{name: "another scope's hits and a tag", touched: 1500, tagged: 0.05, before: 30},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(i), 11))
			rows := cacheRows(r, 1, 3000, dims)
			for j := range rows {
				if r.Float64() < tt.tagged {
					rows[j].mem.Tags = []string{"keep"}
				}
			}
			e := newScopeVecs()
			e.install(1, dims, rows)
			other := newScopeVecs()
			other.install(1, dims, cacheRows(r, 100_000, tt.before, dims))

			f := filter{now: nowNanos(), dims: dims}
			if tt.tagged > 0 {
				f.tags = []string{"keep"}
			}
			scores := make([]float64, len(e.rids))
			touched := make([]int32, 0, tt.touched)
			for _, slot := range r.Perm(len(e.rids))[:tt.touched] {
				s := 1 + r.Float64()*10
				if tt.levels > 0 {
					s = float64(1 + r.IntN(tt.levels))
				}
				scores[slot] = s
				touched = append(touched, int32(slot))
			}
			if tt.levels == 1 {
				scores[touched[len(touched)/2]] = 2 // one row above the rest
			}
			var want []hit
			for slot := range other.rids {
				want = append(want, hit{score: 5.5, rid: other.rids[slot], slot: int32(slot), entry: other})
			}
			for _, slot := range touched {
				if f.keep(e, int(slot)) {
					want = append(want, hit{score: scores[slot], rid: e.rids[slot], slot: slot, entry: e})
				}
			}
			slices.SortFunc(want, func(a, b hit) int {
				if better(&a, &b) {
					return -1
				}
				return 1
			})
			want = want[:min(k, len(want))]

			top := (&scratch{}).topK(k)
			for _, h := range want {
				if h.entry == other {
					top.offer(h)
				}
			}
			offerScored(e, touched, scores, f, top)
			if i := slices.IndexFunc(scores, func(s float64) bool { return s != 0 }); i >= 0 {
				t.Fatalf("score of slot %d left at %v: scores must be all zeros after", i, scores[i])
			}
			got := slices.Clone(top.h)
			slices.SortFunc(got, func(a, b hit) int {
				if better(&a, &b) {
					return -1
				}
				return 1
			})
			if len(got) != len(want) {
				t.Fatalf("heap holds %d hits, want %d", len(got), len(want))
			}
			for j := range want {
				if got[j].rid != want[j].rid || got[j].score != want[j].score {
					t.Fatalf("hit %d is row %d (score %v), want row %d (score %v)", j, got[j].rid, got[j].score, want[j].rid, want[j].score)
				}
			}
		})
	}
}

// TestScoreTextPruned ranks the rows of entries written from twenty
// words, as e2e/bench.mjs writes its memories (each word in about a
// third of the rows, a number and a day rare), with scoreText's early
// stop and without it, and wants the same rows in the same order from
// both, and the early stop taken where the corpus allows it: with rows
// removed (stale postings), a long row, repeated words, a tag filter and
// another scope's hits.
func TestScoreTextPruned(t *testing.T) {
	words := strings.Fields("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec romeo sierra tango")
	fact := func(r *rand.Rand, n int, repeat bool) string {
		w := make([]string, 8)
		for i := range w {
			w[i] = words[r.IntN(len(words))]
		}
		if repeat {
			w[1], w[2] = w[0], w[0]
		}
		return fmt.Sprintf("memory %d: %s noted on day %d", n, strings.Join(w, " "), n%365)
	}
	const dims, need = 8, 50
	tests := []struct {
		name      string
		rows      int
		removed   int     // rows removed after install
		long      bool    // one row of 400 words
		repeats   float64 // share of rows with a word three times
		tagged    float64 // share of rows with the tag; 0: no filter
		other     int     // rows of a second entry searched first
		dense     bool    // rows of the first row's words, three times each, searched for
		readd     bool    // 100 rows added after the removed ones, in their slots
		wantPrune bool
	}{
		{name: "rows dense in the query's words", rows: 20000, dense: true},
		{name: "20,000 rows", rows: 20000, wantPrune: true},
		{name: "rows removed", rows: 30000, removed: 3000, wantPrune: true},
		{name: "slots taken again", rows: 30000, removed: 3000, readd: true, wantPrune: true},
		{name: "a long row", rows: 20000, long: true, wantPrune: true},
		{name: "repeated words", rows: 20000, repeats: 0.3, wantPrune: true},
		{name: "tag kept by a third", rows: 20000, tagged: 0.3},
		{name: "two scopes", rows: 20000, other: 5000, wantPrune: true},
		{name: "2,000 rows", rows: 2000},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(i), 12))
			texts := map[int64]string{}
			mk := func(first int64, n int) *scopeVecs {
				rows := cacheRows(r, first, n, dims)
				var dense string
				for j := range rows {
					rows[j].mem.Content = fact(r, int(rows[j].rid), r.Float64() < tt.repeats)
					if tt.dense && j == 0 {
						// The eight words of the first row, which the
						// search asks for.
						f := strings.Fields(rows[j].mem.Content)
						dense = strings.Repeat(strings.Join(f[2:10], " ")+" ", 3)
					} else if tt.dense && j%100 == 7 {
						rows[j].mem.Content = dense
					}
					if tt.long && j == n/2 {
						rows[j].mem.Content += " " + strings.Repeat("alpha bravo charlie delta ", 100)
					}
					if r.Float64() < tt.tagged {
						rows[j].mem.Tags = []string{"keep"}
					}
					texts[rows[j].rid] = rows[j].mem.Content
				}
				e := newScopeVecs()
				e.install(1, dims, rows)
				return e
			}
			e := mk(1, tt.rows)
			for _, rid := range r.Perm(tt.rows - 1)[:tt.removed] {
				e.remove(int64(rid + 2)) // never row 1
				delete(texts, int64(rid+2))
			}
			if tt.readd {
				// Rows of row 1's day and none of its words, in slots
				// whose old rows' postings of words are still listed.
				for _, row := range cacheRows(r, 2_000_000, 100, dims) {
					row.mem.Content = fmt.Sprintf("memory %d: noted on day 1", row.rid)
					e.add(row)
				}
				unsorted := 0
				for _, p := range e.terms {
					if p.unsorted {
						unsorted++
					}
				}
				if unsorted == 0 {
					t.Fatal("no posting list out of slot order: the case tests nothing")
				}
			}
			checkSkips(t, e)
			entries := []*scopeVecs{e}
			if tt.other > 0 {
				entries = []*scopeVecs{mk(1_000_000, tt.other), e}
			}
			f := filter{now: nowNanos(), dims: dims}
			if tt.tagged > 0 {
				f.tags = []string{"keep"}
			}
			sc := &scratch{}
			pruned := textPruned.Load()
			for q := range 40 {
				rid := int64(1 + r.IntN(tt.rows))
				if tt.dense || tt.readd {
					rid = 1
				}
				text, ok := texts[rid]
				if !ok {
					continue
				}
				terms := queryTerms(text)
				got := ids(textHalf(entries, terms, nil, f, need, sc))
				textPruning = false
				want := ids(textHalf(entries, terms, nil, f, need, sc))
				textPruning = true
				if !slices.Equal(got, want) {
					t.Fatalf("query %d (%q): with the early stop\n%v\nwithout\n%v", q, text, got, want)
				}
				if len(want) == 0 {
					t.Fatalf("query %d (%q): nothing found", q, text)
				}
			}
			if n := textPruned.Load() - pruned; (n > 0) != tt.wantPrune {
				t.Errorf("%d of 40 searches stopped early, want some: %v", n, tt.wantPrune)
			}
		})
	}
}

// ids returns the ids of cs, in order.
func ids(cs []store.Candidate) []string {
	out := make([]string, len(cs))
	for i := range cs {
		out[i] = cs[i].ID
	}
	return out
}

// TestSeek checks postings.seek against a scan, on lists whose slots are
// spread evenly, bunched at either end, or one posting long, for slots
// below, between, at and past theirs, from every block up to the
// answer's (as scoreText's seeks run), and the block it returns.
func TestSeek(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	spread := func(n int, slot func(i int) int32) []posting {
		list := make([]posting, n)
		for i := range list {
			list[i].slot = slot(i)
		}
		return list
	}
	randomly := func(n int) []posting {
		slots := map[int32]bool{}
		for len(slots) < n {
			slots[r.Int32N(int32(20*n))] = true
		}
		list := make([]posting, 0, n)
		for s := range slots {
			list = append(list, posting{slot: s})
		}
		slices.SortFunc(list, func(a, b posting) int { return int(a.slot - b.slot) })
		return list
	}
	for _, tc := range []struct {
		name string
		list []posting
	}{
		{"empty", nil},
		{"one", spread(1, func(int) int32 { return 5 })},
		{"two", spread(2, func(i int) int32 { return int32(3 + 1000*i) })},
		{"one block", spread(skipEvery, func(i int) int32 { return int32(2 * i) })},
		{"every third", spread(3000, func(i int) int32 { return int32(3 * i) })},
		{"bunched low", spread(500, func(i int) int32 {
			if i < 490 {
				return int32(i)
			}
			return int32(100000 + i)
		})},
		{"bunched high", spread(500, func(i int) int32 {
			if i < 10 {
				return int32(i)
			}
			return int32(100000 + i)
		})},
		{"random", randomly(2000)},
	} {
		p := &postings{list: tc.list}
		p.reskip()
		hi := int32(10)
		if n := len(tc.list); n > 0 {
			hi = tc.list[n-1].slot + 3
		}
		for slot := int32(-2); slot <= hi; slot++ {
			want := 0
			for want < len(tc.list) && tc.list[want].slot < slot {
				want++
			}
			wantFound := want < len(tc.list) && tc.list[want].slot == slot
			// The block a search from the start ends in: the last that
			// starts at or below slot.
			wantBlock := 0
			for b := range p.skip {
				if p.skip[b] <= slot {
					wantBlock = b
				}
			}
			for from := range wantBlock + 1 {
				if wantBlock > 8 && from%13 != 0 && wantBlock-from > 3 {
					continue
				}
				i, found, block := p.seek(from, slot)
				if i != want || found != wantFound || block != wantBlock {
					t.Fatalf("%s: seek(%d, %d) = %d, %v, block %d, want %d, %v, block %d", tc.name, from, slot, i, found, block, want, wantFound, wantBlock)
				}
			}
		}
	}
}

// checkSkips fails t unless every list of e in slot order has the skip
// array it would be given whole.
func checkSkips(t *testing.T, e *scopeVecs) {
	t.Helper()
	for term, p := range e.terms {
		if p.unsorted {
			continue
		}
		whole := &postings{list: p.list}
		whole.reskip()
		if !slices.Equal(p.skip, whole.skip) {
			t.Fatalf("term %q: skip %v, want %v", term, p.skip, whole.skip)
		}
	}
}

// TestSkipsAfterCompact removes most rows of an entry, reuses some of
// their slots (lists out of slot order) and compacts it: every list is
// in slot order again, with its skip array.
func TestSkipsAfterCompact(t *testing.T) {
	const dims = 16
	r := rand.New(rand.NewPCG(23, 24))
	rows := cacheRows(r, 1, 3000, dims)
	for i := range rows {
		rows[i].mem.Content = fmt.Sprintf("alpha bravo word%d word%d", i%7, i%13)
	}
	e := newScopeVecs()
	e.install(1, dims, rows)
	checkSkips(t, e)
	for _, i := range r.Perm(len(rows))[:2500] {
		e.remove(rows[i].rid)
	}
	for _, row := range cacheRows(r, 10001, 200, dims) {
		row.mem.Content = "alpha word3 charlie"
		e.add(row)
	}
	if !e.terms["alpha"].unsorted {
		t.Fatal("alpha's list is in slot order: the test exercises nothing")
	}
	e.compact()
	if e.stale != 0 {
		t.Fatalf("%d stale postings after compact", e.stale)
	}
	for term, p := range e.terms {
		if p.unsorted {
			t.Errorf("term %q still out of slot order", term)
		}
	}
	checkSkips(t, e)
}
