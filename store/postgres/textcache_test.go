package postgres_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/scopemem/scopemem/internal/pgtest"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/postgres"
	"github.com/scopemem/scopemem/store/storetest"
)

// TestTextRankMatchesServer: the vector cache's text rank of a row is
// the float4 ts_rank returns for it, bit for bit, for tsvectors of every
// shape (weights, repeated and many positions, quotes and backslashes in
// lexemes, no positions) and for to_tsvector of ordinary text.
func TestTextRankMatchesServer(t *testing.T) {
	_, d := pgtest.NewStore(t)
	c := connect(t, d.RuntimeURL)
	r := rand.New(rand.NewPCG(5, 8))
	words := []string{"deploy", "billing", "o'auth", `back\slash`, "latency", "42", "x", "coffee"}
	type input struct{ tsv, content string }
	var inputs []input
	for range 300 {
		var b strings.Builder
		for _, w := range words {
			if r.IntN(3) == 0 {
				continue
			}
			b.WriteString("'" + strings.NewReplacer("'", "''", `\`, `\\`).Replace(w) + "'")
			if r.IntN(8) > 0 {
				for j := range 1 + r.IntN(5) + r.IntN(2)*r.IntN(300) {
					if j == 0 {
						b.WriteByte(':')
					} else {
						b.WriteByte(',')
					}
					fmt.Fprint(&b, 1+r.IntN(16383), []string{"", "A", "B", "C", "D"}[r.IntN(5)])
				}
			}
			b.WriteByte(' ')
		}
		inputs = append(inputs, input{tsv: b.String()})
	}
	for range 100 {
		var b strings.Builder
		for range 3 + r.IntN(40) {
			b.WriteString(words[r.IntN(len(words))] + " ")
		}
		inputs = append(inputs, input{content: b.String()})
	}
	plain := []string{"deploy", "billing", "latency", "42", "x", "coffee", "absent"}
	for i, in := range inputs {
		q := slices.Clone(plain)
		r.Shuffle(len(q), func(i, j int) { q[i], q[j] = q[j], q[i] })
		q = q[:1+r.IntN(len(q))]
		lexemes, ok := postgres.CacheLexemes(strings.Join(q, " "))
		if !ok {
			t.Fatalf("query %q: not rankable from the cache", q)
		}
		var (
			tsv  string
			want float32
		)
		err := c.QueryRow(t.Context(), `SELECT v::text, ts_rank(v, to_tsquery('simple', $3))
			FROM (SELECT CASE WHEN $1 = '' THEN to_tsvector('simple', $2) ELSE $1::tsvector END) AS t(v)`,
			in.tsv, in.content, "'"+strings.Join(q, "' | '")+"'").Scan(&tsv, &want)
		if err != nil {
			t.Fatalf("input %d: %v", i, err)
		}
		got, err := postgres.TextRank(tsv, lexemes)
		if err != nil {
			t.Fatalf("input %d: %v", i, err)
		}
		if math.Float32bits(got) != math.Float32bits(want) {
			t.Errorf("tsvector %.60q, query %q: cache %v, ts_rank %v", tsv, q, got, want)
		}
	}
}

// TestCacheLexemes: only queries whose words PostgreSQL keeps as they are
// rank from the cache.
func TestCacheLexemes(t *testing.T) {
	cases := []struct {
		text string
		want []string
		ok   bool
	}{
		{"", nil, true},
		{"Deploy the deploy, 2nd time!", []string{"2nd", "deploy", "the", "time"}, true},
		{"o'auth", []string{"auth", "o"}, true},
		{"café latency", nil, false},
		{"ÉCOLE", nil, false},
		{strings.Repeat("a", 2048), nil, false},
		{"v2 p99 2nd 1e", []string{"1e", "2nd", "p99", "v2"}, true},
		{"release 12e3x", nil, false},
	}
	for _, c := range cases {
		got, ok := postgres.CacheLexemes(c.text)
		if ok != c.ok || (ok && !slices.Equal(got, c.want)) {
			t.Errorf("CacheLexemes(%.20q) = %q, %v; want %q, %v", c.text, got, ok, c.want, c.ok)
		}
	}
}

// TestTextCacheMatchesSQL: hybrid searches whose text half is ranked from
// the cache return what the SQL search returns, hit for hit and score for
// score: over one scope (store.Fuse runs before the content is read) and
// several, with tags, after writes, with a query PostgreSQL must parse
// (non-ASCII: the text half runs in SQL), and for a scope holding a row
// without a vector (its text half runs in SQL).
func TestTextCacheMatchesSQL(t *testing.T) {
	const dims = storetest.Dims
	cached, plain, d := cachedAndPlain(t)
	alice := storetest.Member("acme", "alice", "api")
	words := []string{"deploy", "billing", "oauth", "latency", "coffee", "café", "schema", "release"}
	r := rand.New(rand.NewPCG(3, 9))
	sentence := func() string {
		var b strings.Builder
		for range 2 + r.IntN(12) {
			b.WriteString(words[r.IntN(len(words))] + " ")
		}
		return b.String()
	}
	add := func(sc scope.Scope, n int) {
		var ms []store.NewMemory
		for i := range n {
			ms = append(ms, store.NewMemory{Scope: sc, Content: fmt.Sprintf("%s%d", sentence(), r.Int()), Tags: []string{words[i%3]},
				Vector: storetest.Mix(storetest.RandomVector(uint64(i%7), dims), storetest.RandomVector(r.Uint64(), dims), 0.8)})
		}
		if _, err := cached.Add(t.Context(), alice, ms); err != nil {
			t.Fatal(err)
		}
	}
	for _, sc := range alice.Visible() {
		add(sc, 80)
	}
	user := alice.Visible()[0]
	check := func(t *testing.T, q store.Query) { sameAsSQL(t, cached, plain, alice, q) }
	queries := func(t *testing.T) {
		for i := range 24 {
			q := store.Query{Vector: storetest.RandomVector(uint64(i%7), dims), Limit: 3 + i%10}
			q.Text = words[i%5] + " " + words[(i+2)%8]
			if i%3 == 2 {
				q.Tags = []string{words[i%3]}
			}
			if i%2 == 0 {
				q.Scopes = []scope.Scope{user}
			}
			t.Run(fmt.Sprint(i), func(t *testing.T) { check(t, q) })
		}
	}
	t.Run("fresh", queries)
	add(user, 5)
	t.Run("after adds", queries)
	// A row without a vector: that scope's text half runs in SQL.
	d.Exec(t, `INSERT INTO memories (org_id, id, scope_kind, scope_id, content, content_hash, created_by)
		VALUES ('acme', gen_random_uuid(), 'user', 'alice', 'deploy deploy deploy latency', '\x01', 'alice')`)
	t.Run("row without a vector", queries)
	if cached.VectorCacheBytes() == 0 {
		t.Error("the vector cache holds nothing after the searches")
	}
}

// TestCacheLexemesMatchServer: every word the cache ranks by itself is a
// lexeme of its own in to_tsquery('simple', ...), over 20,000 generated
// words of letters and digits (rich in e's and digits, which the
// server's parser may read as numbers).
func TestCacheLexemesMatchServer(t *testing.T) {
	_, d := pgtest.NewStore(t)
	c := connect(t, d.RuntimeURL)
	r := rand.New(rand.NewPCG(11, 13))
	alphabets := []string{"abcdefghijklmnopqrstuvwxyz0123456789", "e0123456789", "ex0123", "abcde01"}
	var words []string
	for range 20000 {
		al := alphabets[r.IntN(len(alphabets))]
		b := make([]byte, 1+r.IntN(12))
		for i := range b {
			b[i] = al[r.IntN(len(al))]
		}
		if got, ok := postgres.CacheLexemes(string(b)); ok {
			if len(got) != 1 || got[0] != string(b) {
				t.Fatalf("CacheLexemes(%q) = %q", b, got)
			}
			words = append(words, string(b))
		}
	}
	rows, err := c.Query(t.Context(), `SELECT w, to_tsquery('simple', quote_literal(w))::text FROM unnest($1::text[]) AS w`, words)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var w, q string
		if err := rows.Scan(&w, &q); err != nil {
			t.Fatal(err)
		}
		if q != "'"+w+"'" {
			t.Errorf("the cache ranks %q as one lexeme, the server reads %s", w, q)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 15000 {
		t.Errorf("only %d of 20,000 words checked", n)
	}
}

// sameAsSQL fails t unless cached (a store with the vector cache) answers
// q as id exactly as plain (one without) does: the same hits in the same
// order, with the same scores, content, tags and times, and similarities
// within float32 rounding.
func sameAsSQL(t *testing.T, cached, plain *postgres.Store, id scope.Identity, q store.Query) {
	t.Helper()
	want, err := plain.Search(t.Context(), id, q)
	if err != nil {
		t.Fatal(err)
	}
	got, err := cached.Search(t.Context(), id, q)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids(got)) != fmt.Sprint(ids(want)) {
		t.Fatalf("cached %v, SQL %v", ids(got), ids(want))
	}
	for j := range got {
		if math.Abs(got[j].Similarity-want[j].Similarity) > 1e-5 || got[j].Score != want[j].Score || !sameMemory(got[j].Memory, want[j].Memory) {
			t.Errorf("hit %d: cached %+v, SQL %+v", j, got[j], want[j])
		}
	}
}

// sameMemory reports whether a and b are the same memory, every field
// alike (times as instants).
func sameMemory(a, b store.Memory) bool {
	return a.ID == b.ID && a.Org == b.Org && a.Scope == b.Scope && a.Content == b.Content &&
		slices.Equal(a.Tags, b.Tags) && string(a.Metadata) == string(b.Metadata) && a.CreatedBy == b.CreatedBy &&
		a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt) &&
		(a.ExpiresAt == nil) == (b.ExpiresAt == nil) && (a.ExpiresAt == nil || a.ExpiresAt.Equal(*b.ExpiresAt))
}
