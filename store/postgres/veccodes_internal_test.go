package postgres

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/simhash"
)

// codedRows makes n rows of a clustered corpus, as embeddings are: every
// vector is a common offset, one of 50 topic centres and noise, each row
// with its lexemes.
func codedRows(r *rand.Rand, first, n, dims int) []loadedRow {
	model := rand.New(rand.NewPCG(1, 2)) // the same offset and topics every time
	offset := make([]float64, dims)
	for j := range offset {
		offset[j] = 0.5 / math.Sqrt(float64(dims))
	}
	centres := make([][]float64, 50)
	for k := range centres {
		centres[k] = make([]float64, dims)
		for j := range centres[k] {
			centres[k][j] = model.NormFloat64() / math.Sqrt(float64(dims))
		}
	}
	rows := make([]loadedRow, n)
	for i := range rows {
		c := centres[r.IntN(len(centres))]
		v := make([]float32, dims)
		for j := range v {
			v[j] = float32(offset[j] + c[j] + 0.6*r.NormFloat64()/math.Sqrt(float64(dims)))
		}
		store.Normalize(v)
		tsv := fmt.Sprintf("'row%d':1", first+i)
		rows[i] = loadedRow{id: fmt.Sprint(first + i), xmin: 1, created: time.Unix(int64(first+i), 0), vec: v, tsv: &tsv,
			text: &rowText{content: "row " + fmt.Sprint(first+i)}}
	}
	return rows
}

// checkMean fails unless v's codes are taken around the mean of vecs.
func checkMean(t *testing.T, v *scopeVecs, dims int, vecs [][]float32) {
	t.Helper()
	_, rmean, _ := simhash.Centre(dims, slices.Values(vecs))
	if !slices.Equal(rmean, v.rmean) || v.meanN != len(vecs) {
		t.Fatalf("the copy's codes are taken around the mean of %d rows, not of the %d expected", v.meanN, len(vecs))
	}
}

// firstRows returns the vectors of v's first n rows.
func firstRows(v *scopeVecs, n, dims int) [][]float32 {
	out := make([][]float32, n)
	for i := range out {
		out[i] = v.vec(i, dims)
	}
	return out
}

// checkCodes fails unless every row of v is coded around v's mean.
func checkCodes(t *testing.T, v *scopeVecs, dims int) {
	t.Helper()
	w, pw := v.words, v.prefixWords()
	if len(v.codes) != len(v.ids)*w || len(v.prefix) != len(v.ids)*pw {
		t.Fatalf("%d rows, %d code words and %d prefix words, want %d words a row", len(v.ids), len(v.codes), len(v.prefix), w)
	}
	code := make([]uint64, w)
	buf := make([]float32, simhash.Bits(dims))
	for i := range v.ids {
		simhash.Encode(v.vec(i, dims), v.rmean, code, buf)
		if !slices.Equal(code, v.codes[i*w:(i+1)*w]) || !slices.Equal(code[:pw], v.prefix[i*pw:(i+1)*pw]) {
			t.Fatalf("row %d of %d: its code is not its vector's", i, len(v.ids))
		}
	}
}

// TestCopyCodes builds a copy and extends it one add at a time past
// twice its rows: every row must stay coded around the copy's mean, the
// mean of its first rows until they have doubled and then of them all.
// An older copy extended again afterwards (its room taken by the first
// extension) must keep its own codes.
func TestCopyCodes(t *testing.T) {
	const dims = 48
	r := rand.New(rand.NewPCG(7, 8))
	v, err := buildScopeVecs(1, codedRows(r, 0, 100, dims), nil, dims, true)
	if err != nil {
		t.Fatal(err)
	}
	checkMean(t, v, dims, firstRows(v, 100, dims))
	checkCodes(t, v, dims)
	first := v
	for i := range 150 {
		if v, err = v.appendRows(v.version+1, codedRows(r, 100+i, 1, dims), dims); err != nil {
			t.Fatal(err)
		}
		want := 100
		if len(v.ids) >= 200 {
			want = 200
		}
		checkMean(t, v, dims, firstRows(v, want, dims))
		checkCodes(t, v, dims)
	}
	other, err := first.appendRows(first.version+1, codedRows(r, 1000, 3, dims), dims)
	if err != nil {
		t.Fatal(err)
	}
	checkCodes(t, other, dims)
	checkCodes(t, first, dims)
}

// TestReloadCodes builds a copy again from an older one, as a search
// does when another writer changed the scope: the rows that came without
// their vector keep their codes and the copy its mean (only the changed
// rows are coded), until the rows have doubled since that mean, when the
// codes are taken again around the mean of them all.
func TestReloadCodes(t *testing.T) {
	const dims = 48
	r := rand.New(rand.NewPCG(11, 12))
	old, err := buildScopeVecs(1, codedRows(r, 0, 100, dims), nil, dims, true)
	if err != nil {
		t.Fatal(err)
	}
	unchanged := func(n int) []loadedRow {
		rows := make([]loadedRow, n)
		for i := range rows {
			rows[i] = loadedRow{id: old.ids[i], xmin: old.xmins[i], created: time.Unix(0, old.created[i])}
		}
		return rows
	}
	// 60 rows unchanged, 10 rewritten (same ids, new vectors), 5 new, the
	// other 25 gone.
	changed := codedRows(r, 0, 10, dims)
	for i := range changed {
		changed[i].id, changed[i].xmin = old.ids[60+i], 2
	}
	rows := slices.Concat(unchanged(60), changed, codedRows(r, 500, 5, dims))
	v, err := buildScopeVecs(2, rows, old, dims, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(v.rmean, old.rmean) || v.meanN != old.meanN {
		t.Errorf("a reload of 75 rows took a new mean (of %d rows), want the old copy's (of %d)", v.meanN, old.meanN)
	}
	checkCodes(t, v, dims)

	// Twice the rows of the old copy's mean: a new mean.
	rows = slices.Concat(unchanged(100), codedRows(r, 1000, 100, dims))
	if v, err = buildScopeVecs(3, rows, old, dims, true); err != nil {
		t.Fatal(err)
	}
	checkMean(t, v, dims, firstRows(v, 200, dims))
	checkCodes(t, v, dims)
}

// TestRankCachedByCodes ranks a copy too large to rank exactly and
// compares with an exact ranking of it: the top ten must hold nearly all
// of the exact top ten, and a copy of exactRows rows or fewer is ranked
// exactly.
func TestRankCachedByCodes(t *testing.T) {
	const dims = 384 // codes of 8 words: both passes
	r := rand.New(rand.NewPCG(9, 10))
	now := time.Now()
	for _, tc := range []struct {
		rows   int
		recall float64
	}{{exactRows, 1}, {4000, 0.95}} {
		t.Run(fmt.Sprint(tc.rows), func(t *testing.T) {
			rows := codedRows(r, 0, tc.rows, dims)
			v, err := buildScopeVecs(1, rows, nil, dims, true)
			if err != nil {
				t.Fatal(err)
			}
			found, want := 0, 0
			for range 50 {
				// A query near one of the rows, as a search for a stored
				// memory is.
				q := slices.Clone(rows[r.IntN(len(rows))].vec)
				for j := range q {
					q[j] += 0.03 * float32(r.NormFloat64())
				}
				store.Normalize(q)
				exact := make([]vecHit, 0, 11)
				for i := range v.ids {
					exact = offer(exact, vecHit{row: int32(i), dist: 1 - store.Dot(q, v.vec(i, dims)), created: v.created[i], id: v.ids[i]}, 10)
				}
				got := rankCached([]*scopeVecs{v}, q, dims, nil, now, 50)
				top := map[int32]bool{}
				for _, h := range got[:10] {
					top[h.row] = true
				}
				for _, h := range exact {
					want++
					if top[h.row] {
						found++
					}
				}
			}
			recall := float64(found) / float64(want)
			t.Logf("recall@10 at %d rows: %.3f", tc.rows, recall)
			if recall < tc.recall {
				t.Errorf("recall@10 at %d rows = %.3f, want at least %.2f", tc.rows, recall, tc.recall)
			}
		})
	}
}

// TestRankCachedSkipsExpired ranks copies too large to rank exactly whose
// rows expire: built with them, or appended to a copy that had none. No
// expired row may be ranked, though the queries are near expired rows;
// a copy without expiries says so (its pass reads no expiry).
func TestRankCachedSkipsExpired(t *testing.T) {
	const dims = 256 // codes of 4 words: the prefix pass alone
	r := rand.New(rand.NewPCG(11, 12))
	now := time.Now()
	past, future := now.Add(-time.Hour), now.Add(time.Hour)
	expiring := func(rows []loadedRow) []loadedRow {
		for i := range rows {
			switch i % 3 {
			case 0:
				rows[i].expires = &past
			case 1:
				rows[i].expires = &future
			}
		}
		return rows
	}
	plain, err := buildScopeVecs(1, codedRows(r, 0, 4000, dims), nil, dims, true)
	if err != nil {
		t.Fatal(err)
	}
	if plain.expiring {
		t.Fatal("a copy without expiries says it has some")
	}
	built, err := buildScopeVecs(1, expiring(codedRows(r, 0, 4000, dims)), nil, dims, true)
	if err != nil {
		t.Fatal(err)
	}
	appended, err := plain.appendRows(2, expiring(codedRows(r, 4000, 600, dims)), dims)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		v    *scopeVecs
	}{{"built", built}, {"appended", appended}} {
		if !tc.v.expiring {
			t.Fatalf("%s: the copy does not say rows expire", tc.name)
		}
		expired := 0
		for i := range tc.v.ids {
			if e := tc.v.expires[i]; e != 0 && e <= now.UnixNano() {
				expired++
				if expired > 20 {
					break
				}
				got := rankCached([]*scopeVecs{tc.v}, tc.v.vec(i, dims), dims, nil, now, 50)
				if len(got) == 0 {
					t.Fatalf("%s: nothing ranked", tc.name)
				}
				for _, h := range got {
					if e := tc.v.expires[h.row]; e != 0 && e <= now.UnixNano() {
						t.Fatalf("%s: a query near row %d ranked expired row %d", tc.name, i, h.row)
					}
				}
			}
		}
	}
}
