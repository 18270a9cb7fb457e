package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/scopemem/scopemem/internal/pgtest"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/postgres"
	"github.com/scopemem/scopemem/store/storetest"
)

// newEmbeddingStore is pgtest.NewStore with storetest's embedder
// recorded, ready for adds and searches.
func newEmbeddingStore(t *testing.T) (*postgres.Store, *pgtest.Database) {
	t.Helper()
	s, d := pgtest.NewStore(t)
	if err := s.SetEmbedder(t.Context(), storetest.EmbedderInfo); err != nil {
		t.Fatal(err)
	}
	return s, d
}

// TestContractWithoutVectorCache runs the contract suite with every
// search ranked in SQL, the path a store takes without the vector cache
// and for scopes too large for it.
func TestContractWithoutVectorCache(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		_, d := pgtest.NewStore(t)
		return openStore(t, d, postgres.Config{VectorCacheBytes: -1})
	})
}

// cachedAndPlain opens a store with the vector cache (the default), with
// the embedder recorded, and another on the same database without the
// cache: every search of plain ranks in SQL.
func cachedAndPlain(t *testing.T) (cached, plain *postgres.Store, d *pgtest.Database) {
	t.Helper()
	cached, d = newEmbeddingStore(t)
	return cached, openStore(t, d, postgres.Config{VectorCacheBytes: -1}), d
}

// openStore opens another store on d as the runtime role with cfg.
func openStore(t *testing.T, d *pgtest.Database, cfg postgres.Config) *postgres.Store {
	t.Helper()
	cfg.URL = d.RuntimeURL
	s, err := postgres.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// ids returns the ids of hits, in order.
func ids(hits []store.Hit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.ID
	}
	return out
}

// TestVectorCacheFollowsOtherWriters: a store that has a scope's vectors
// in its cache sees every change another store (another replica) or an
// operator's SQL makes to the scope, at its next search.
func TestVectorCacheFollowsOtherWriters(t *testing.T) {
	const dims = storetest.Dims
	alice := storetest.Member("acme", "alice")
	user := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	query := storetest.RandomVector(99, dims)
	cases := []struct {
		name string
		// change is made by the other store (or SQL) after the cached
		// search; want checks the cached store's next search.
		change func(t *testing.T, other *postgres.Store, d *pgtest.Database, first []store.Hit) string
		want   func(t *testing.T, hits []store.Hit, first []store.Hit, changed string)
	}{
		{"add", func(t *testing.T, other *postgres.Store, _ *pgtest.Database, _ []store.Hit) string {
			got, err := other.Add(t.Context(), alice, []store.NewMemory{{Scope: user, Content: "the nearest of all", Vector: query}})
			if err != nil {
				t.Fatal(err)
			}
			return got[0].ID
		}, func(t *testing.T, hits, _ []store.Hit, changed string) {
			if len(hits) == 0 || hits[0].ID != changed {
				t.Errorf("hits %v, want the new memory %s first", ids(hits), changed)
			}
		}},
		{"delete", func(t *testing.T, other *postgres.Store, _ *pgtest.Database, first []store.Hit) string {
			if err := other.Delete(t.Context(), alice, first[0].ID); err != nil {
				t.Fatal(err)
			}
			return first[0].ID
		}, func(t *testing.T, hits, first []store.Hit, changed string) {
			for _, h := range hits {
				if h.ID == changed {
					t.Errorf("deleted memory %s still found", changed)
				}
			}
			if len(hits) == 0 || hits[0].ID != first[1].ID {
				t.Errorf("hits %v, want %s (the second before) first", ids(hits), first[1].ID)
			}
		}},
		{"update vector", func(t *testing.T, other *postgres.Store, _ *pgtest.Database, first []store.Hit) string {
			last := first[len(first)-1].ID
			content := "now the nearest"
			if _, err := other.Update(t.Context(), alice, last, store.Patch{Content: &content, Vector: query}); err != nil {
				t.Fatal(err)
			}
			return last
		}, func(t *testing.T, hits, _ []store.Hit, changed string) {
			if len(hits) == 0 || hits[0].ID != changed || hits[0].Content != "now the nearest" {
				t.Errorf("hits %v, want the updated memory %s first with its new content", ids(hits), changed)
			}
		}},
		{"update content, tags and metadata", func(t *testing.T, other *postgres.Store, _ *pgtest.Database, first []store.Hit) string {
			// The vector stays: only what the copy returns besides it
			// changes.
			content, tags, meta := "memory 0, rewritten", []string{"edited"}, json.RawMessage(`{"rev":2}`)
			if _, err := other.Update(t.Context(), alice, first[0].ID, store.Patch{Content: &content, Tags: &tags, Metadata: &meta, Vector: query}); err != nil {
				t.Fatal(err)
			}
			return first[0].ID
		}, func(t *testing.T, hits, first []store.Hit, changed string) {
			if len(hits) == 0 || hits[0].ID != changed || hits[0].Content != "memory 0, rewritten" ||
				!slices.Equal(hits[0].Tags, []string{"edited"}) || string(hits[0].Metadata) != `{"rev": 2}` || !hits[0].UpdatedAt.After(first[0].UpdatedAt) {
				t.Errorf("hits %v, first %+v: want %s first, with its new content, tags, metadata and update time", ids(hits), hits[0].Memory, changed)
			}
		}},
		{"purge", func(t *testing.T, other *postgres.Store, _ *pgtest.Database, _ []store.Hit) string {
			if _, err := other.Purge(t.Context(), alice, scope.Target{Kind: scope.TargetScope, Scope: user}); err != nil {
				t.Fatal(err)
			}
			return ""
		}, func(t *testing.T, hits, _ []store.Hit, _ string) {
			if len(hits) != 0 {
				t.Errorf("hits %v after purge, want none", ids(hits))
			}
		}},
		{"operator SQL", func(t *testing.T, _ *postgres.Store, d *pgtest.Database, first []store.Hit) string {
			// An operator moves the vector of the last hit onto the
			// query, as the owner, outside any store.
			last := first[len(first)-1].ID
			d.Exec(t, fmt.Sprintf(`UPDATE memories SET embedding = '%s' WHERE id = '%s'`, vectorText(query), last))
			return last
		}, func(t *testing.T, hits, _ []store.Hit, changed string) {
			if len(hits) == 0 || hits[0].ID != changed {
				t.Errorf("hits %v, want %s first after the operator's update", ids(hits), changed)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cached, d := newEmbeddingStore(t)
			other := openStore(t, d, postgres.Config{})
			var ms []store.NewMemory
			for i := range 40 {
				ms = append(ms, store.NewMemory{Scope: user, Content: fmt.Sprintf("memory %d", i),
					Vector: storetest.Mix(query, storetest.RandomVector(uint64(i+1), dims), 1+float32(i)/10)})
			}
			if _, err := cached.Add(t.Context(), alice, ms); err != nil {
				t.Fatal(err)
			}
			q := store.Query{Vector: query, Limit: 5, Scopes: []scope.Scope{user}}
			first, err := cached.Search(t.Context(), alice, q)
			if err != nil || len(first) != 5 {
				t.Fatalf("first search: %d hits, %v", len(first), err)
			}
			if again, err := cached.Search(t.Context(), alice, q); err != nil || fmt.Sprint(ids(again)) != fmt.Sprint(ids(first)) {
				t.Fatalf("second search %v, %v; want %v", ids(again), err, ids(first))
			}
			if cached.VectorCacheBytes() == 0 {
				t.Fatal("the searched scope is not in the vector cache")
			}
			changed := tc.change(t, other, d, first)
			hits, err := cached.Search(t.Context(), alice, q)
			if err != nil {
				t.Fatal(err)
			}
			tc.want(t, hits, first, changed)
		})
	}
}

// TestVectorCacheMatchesSQL: the same searches through the cache and in
// SQL give the same hits in the same order, with the same similarities,
// for vector and hybrid queries, with tags, over several scopes.
func TestVectorCacheMatchesSQL(t *testing.T) {
	const dims = storetest.Dims
	cached, plain, _ := cachedAndPlain(t)
	alice := storetest.Member("acme", "alice", "api")
	words := []string{"deploy", "billing", "oauth", "latency", "coffee"}
	for _, sc := range alice.Visible() {
		var ms []store.NewMemory
		for i := range 60 {
			content := fmt.Sprintf("%s note %d on %s and %s", sc.Qualified(), i, words[i%5], words[(i/5)%5])
			m := store.NewMemory{Scope: sc, Content: content, Tags: []string{words[i%3]},
				Vector: storetest.Mix(storetest.RandomVector(uint64(i%7), dims), storetest.RandomVector(uint64(1000+i), dims), 0.8)}
			// Every field a hit returns, from the copy or from SQL.
			if i%4 == 1 {
				m.Metadata = json.RawMessage(fmt.Sprintf(`{"n":%d,"about":%q}`, i, words[i%5]))
			}
			if i%5 == 2 {
				exp := time.Now().Add(time.Duration(i) * time.Hour).Truncate(time.Microsecond)
				m.ExpiresAt = &exp
			}
			ms = append(ms, m)
		}
		if _, err := cached.Add(t.Context(), alice, ms); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 30 {
		q := store.Query{Vector: storetest.RandomVector(uint64(i%7), dims), Limit: 3 + i%10}
		switch i % 3 {
		case 1:
			q.Text = words[i%5] + " " + words[(i+2)%5]
		case 2:
			q.Tags = []string{words[i%3]}
			q.Text = words[i%5]
		}
		if i%4 == 0 {
			q.Scopes = alice.Visible()[:2]
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) { sameAsSQL(t, cached, plain, alice, q) })
	}
	if cached.VectorCacheBytes() == 0 {
		t.Error("the vector cache holds nothing after the searches")
	}
}

// TestCopiesAnswerOnlyWhatTheDatabaseLets: a copy's rows, content
// included, reach only an identity to which the database, under its
// row-level security, shows the scope's version; even when the checks
// before (Search's, on the verified identity) are skipped.
func TestCopiesAnswerOnlyWhatTheDatabaseLets(t *testing.T) {
	const dims = storetest.Dims
	s, _ := newEmbeddingStore(t)
	alice := storetest.Member("acme", "alice")
	own := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	query := storetest.RandomVector(7, dims)
	var ms []store.NewMemory
	for i := range 20 {
		ms = append(ms, store.NewMemory{Scope: own, Content: fmt.Sprintf("alice's note %d", i), Vector: storetest.RandomVector(uint64(i+1), dims)})
	}
	if _, err := s.Add(t.Context(), alice, ms); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Search(t.Context(), alice, store.Query{Vector: query, Limit: 5, Scopes: []scope.Scope{own}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		id     scope.Identity
		answer bool
	}{
		{"the owner", alice, true},
		{"another user of the org", storetest.Member("acme", "bob"), false},
		{"another team's member", storetest.Member("acme", "carol", "ops"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits, ok, err := s.SearchCopyAs(t.Context(), tc.id, own, query, 5)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.answer || (len(hits) > 0) != tc.answer {
				t.Errorf("copy answered %v with %d hits, want %v", ok, len(hits), tc.answer)
			}
		})
	}
}

// TestVectorCacheBudgetCountsContent: a scope whose rows are few but
// whose content would take more than a quarter of the cache is searched
// in SQL, not copied.
func TestVectorCacheBudgetCountsContent(t *testing.T) {
	const dims = storetest.Dims
	_, d := pgtest.NewStore(t)
	small := openStore(t, d, postgres.Config{VectorCacheBytes: 4 << 20})
	if err := small.SetEmbedder(t.Context(), storetest.EmbedderInfo); err != nil {
		t.Fatal(err)
	}
	plain := openStore(t, d, postgres.Config{VectorCacheBytes: -1})
	alice := storetest.Member("acme", "alice")
	user := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	var ms []store.NewMemory
	for i := range 40 {
		// 40 rows of 30 KB: 1.2 MB of content, more than a quarter of 4 MB.
		ms = append(ms, store.NewMemory{Scope: user, Content: fmt.Sprintf("note %d ", i) + strings.Repeat("long text ", 3<<10),
			Vector: storetest.RandomVector(uint64(i+1), dims)})
	}
	if _, err := small.Add(t.Context(), alice, ms); err != nil {
		t.Fatal(err)
	}
	q := store.Query{Vector: storetest.RandomVector(3, dims), Limit: 5, Scopes: []scope.Scope{user}}
	for range 2 { // the first search also learns which scopes have an index
		sameAsSQL(t, small, plain, alice, q)
	}
	if n := small.VectorCacheBytes(); n > 1<<20 {
		t.Errorf("the cache holds %d bytes after searching a scope of 1.2 MB of content, want it left out (a quarter of the budget is 1 MB)", n)
	}
}

// TestScopeVersionsRowLevelSecurity: the runtime role reads the versions
// of the scopes its identity sees and no others, and may not write them.
func TestScopeVersionsRowLevelSecurity(t *testing.T) {
	s, d := pgtest.NewStore(t)
	seed(t, s)
	c := connect(t, d.RuntimeURL)
	count := func(t *testing.T, settings ...any) int {
		t.Helper()
		tx, err := c.Begin(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(t.Context())
		if len(settings) > 0 {
			if _, err := tx.Exec(t.Context(), setIdentity, settings...); err != nil {
				t.Fatal(err)
			}
		}
		var n int
		if err := tx.QueryRow(t.Context(), `SELECT count(*) FROM scope_versions`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(t); n != 0 {
		t.Errorf("no identity: %d versions visible, want 0", n)
	}
	// alice of acme sees her user, agent and session scopes, team api
	// and the org scope: five.
	if n := count(t, "acme", "alice", "{api}", "coder", "s1", "{memory:read}"); n != 5 {
		t.Errorf("alice: %d versions visible, want 5", n)
	}
	if n := count(t, "initech", "alice", "{api}", "coder", "s1", "{memory:read}"); n != 0 {
		t.Errorf("another org: %d versions visible, want 0", n)
	}
	for _, stmt := range []string{
		`UPDATE scope_versions SET version = version + 1`,
		`INSERT INTO scope_versions VALUES ('acme', 'org', '', 1000)`,
		`DELETE FROM scope_versions`,
	} {
		_, err := c.Exec(t.Context(), stmt)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("%s as the runtime role: %v, want permission denied (42501)", stmt, err)
		}
	}
	// Every write statement bumps the versions of the scopes it touched.
	var before, after int64
	version := func() (v int64) {
		if err := pgx.BeginFunc(t.Context(), c, func(tx pgx.Tx) error {
			if _, err := tx.Exec(t.Context(), setIdentity, "acme", "alice", "{api}", "coder", "s1", "{memory:read}"); err != nil {
				return err
			}
			return tx.QueryRow(t.Context(), `SELECT version FROM scope_versions WHERE org_id = 'acme' AND scope_kind = 'team' AND scope_id = 'api'`).Scan(&v)
		}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	before = version()
	alice := storetest.Member("acme", "alice", "api")
	if _, err := s.Add(t.Context(), alice, []store.NewMemory{storetest.New(scope.Scope{Kind: scope.KindTeam, ID: "api"}, "one more for the team")}); err != nil {
		t.Fatal(err)
	}
	if after = version(); after != before+1 {
		t.Errorf("team version %d after an add, was %d: want one more", after, before)
	}
}

// TestVectorCacheOneLoadForConcurrentSearches: the first searches of a
// scope, made at once (every session after a restart), load its copy
// once and all answer from it.
func TestVectorCacheOneLoadForConcurrentSearches(t *testing.T) {
	const dims = storetest.Dims
	s, d := newEmbeddingStore(t)
	alice := storetest.Member("acme", "alice")
	addDeployNotes(t, s, alice, 300)
	fresh := openStore(t, d, postgres.Config{})
	// The store's first search reads the list of per-scope indexes, and
	// runs in SQL; make it another org's.
	if _, err := fresh.Search(t.Context(), storetest.Member("other", "bob"), store.Query{Vector: storetest.RandomVector(1, dims)}); err != nil {
		t.Fatal(err)
	}
	const searches = 16
	var wg sync.WaitGroup
	errs := make(chan error, searches)
	start := make(chan struct{})
	for i := range searches {
		wg.Go(func() {
			<-start
			hits, err := fresh.Search(t.Context(), alice, store.Query{Vector: storetest.RandomVector(uint64(i), dims), Text: "deploy", Limit: 5})
			if err == nil && len(hits) != 5 {
				err = fmt.Errorf("search %d: %d hits, want 5", i, len(hits))
			}
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// alice sees her user scope and the org scope: one load of each.
	if n, want := fresh.VectorCacheLoads(), int64(len(alice.Visible())); n != want {
		t.Errorf("%d concurrent first searches loaded %d scope copies, want %d", searches, n, want)
	}
}

// TestVectorCacheFollowsOwnAdds: an add brings the copies of its scopes
// up to date (the next search loads nothing and answers as SQL does), a
// near-duplicate add is caught from the copy, and when another store
// wrote in between the copy is reloaded instead.
func TestVectorCacheFollowsOwnAdds(t *testing.T) {
	const dims = storetest.Dims
	s, plain, _ := cachedAndPlain(t)
	alice := storetest.Member("acme", "alice")
	user := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	memory := func(i int) store.NewMemory {
		return store.NewMemory{Scope: user, Content: fmt.Sprintf("note %d on deploy and billing", i), Tags: []string{"t" + fmt.Sprint(i%3)},
			Vector: storetest.RandomVector(uint64(1000+i), dims)}
	}
	var ms []store.NewMemory
	for i := range 200 {
		ms = append(ms, memory(i))
	}
	first, err := s.Add(t.Context(), alice, ms)
	if err != nil {
		t.Fatal(err)
	}
	// The add loaded the (empty) scope's copy for its duplicate check,
	// and brought it up to date.
	if l, p := s.VectorCacheLoads(), s.VectorCachePatches(); l != 1 || p != 1 {
		t.Errorf("the first add loaded %d copies and patched %d, want 1 and 1", l, p)
	}
	q := store.Query{Vector: storetest.RandomVector(7, dims), Text: "deploy note", Limit: 10}
	same := func(t *testing.T) { t.Helper(); sameAsSQL(t, s, plain, alice, q) }
	same(t) // reads the list of per-scope indexes, in SQL
	same(t) // loads the copies of alice's other scopes
	loads, patches := s.VectorCacheLoads(), s.VectorCachePatches()
	for i := range 5 {
		m := memory(500 + i)
		m.Vector = storetest.Mix(q.Vector, m.Vector, 0.9) // near the query: it shows
		if _, err := s.Add(t.Context(), alice, []store.NewMemory{m}); err != nil {
			t.Fatal(err)
		}
		same(t)
	}
	if n := s.VectorCachePatches() - patches; n != 5 {
		t.Errorf("5 adds patched %d copies, want 5", n)
	}
	if n := s.VectorCacheLoads(); n != loads {
		t.Errorf("searches after the adds loaded %d copies, want none", n-loads)
	}

	// A near-duplicate of a stored memory, caught from the copy.
	dup := memory(900)
	dup.Vector = ms[42].Vector
	got, err := s.Add(t.Context(), alice, []store.NewMemory{dup})
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].Duplicate || !sameMemory(got[0].Memory, first[42].Memory) {
		t.Errorf("near-duplicate add = %+v, want memory %+v (duplicate), every field as stored", got[0], first[42].Memory)
	}

	// Another store adds first: this store's copy is behind, so its own
	// add leaves it, and the next search reloads.
	if _, err := plain.Add(t.Context(), alice, []store.NewMemory{memory(901)}); err != nil {
		t.Fatal(err)
	}
	patches = s.VectorCachePatches()
	if _, err := s.Add(t.Context(), alice, []store.NewMemory{memory(902)}); err != nil {
		t.Fatal(err)
	}
	if n := s.VectorCachePatches(); n != patches {
		t.Errorf("an add over a stale copy patched it")
	}
	same(t)
	if n := s.VectorCacheLoads(); n == loads {
		t.Errorf("the search after another store's add loaded nothing")
	}
}

// TestVectorCacheConcurrentAddsOneScope: adds to one scope at once each
// find the scope's copy current (the one before them patched it), so
// no duplicate check falls back to reading the scope in SQL; every add
// is stored, and searches answer as SQL does.
func TestVectorCacheConcurrentAddsOneScope(t *testing.T) {
	const dims = storetest.Dims
	s, plain, _ := cachedAndPlain(t)
	alice := storetest.Member("acme", "alice")
	user := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	if _, err := s.Add(t.Context(), alice, []store.NewMemory{storetest.New(user, "the first note")}); err != nil {
		t.Fatal(err) // loads the scope's copy
	}
	const workers, each = 8, 10
	checks := s.VectorCacheChecks()
	var (
		wg     sync.WaitGroup
		stored atomic.Int64
	)
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				m := store.NewMemory{Scope: user, Content: fmt.Sprintf("note %d-%d", w, i), Vector: storetest.RandomVector(uint64(1000*w+i), dims)}
				got, err := s.Add(t.Context(), alice, []store.NewMemory{m})
				if err != nil {
					errs <- err
					return
				}
				if !got[0].Duplicate {
					stored.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := stored.Load(); n != workers*each {
		t.Errorf("%d adds stored, want %d", n, workers*each)
	}
	if n := s.VectorCacheChecks() - checks; n != workers*each {
		t.Errorf("the copy answered %d of %d duplicate checks; the others read the scope in SQL", n, workers*each)
	}
	sameAsSQL(t, s, plain, alice, store.Query{Vector: storetest.RandomVector(5, dims), Text: "note", Limit: 10})
}

// TestVectorCacheConcurrentAddsAndSearches: adds that extend the copies
// while searches read them (run with -race) leave the copies answering
// as SQL does.
func TestVectorCacheConcurrentAddsAndSearches(t *testing.T) {
	const dims = storetest.Dims
	s, plain, _ := cachedAndPlain(t)
	alice := storetest.Member("acme", "alice")
	user := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	q := store.Query{Vector: storetest.RandomVector(3, dims), Text: "deploy", Limit: 10}
	for range 2 { // the first search reads the index list, the second loads
		if _, err := s.Search(t.Context(), alice, q); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 4 {
		wg.Go(func() {
			for i := range 15 {
				m := store.NewMemory{Scope: user, Content: fmt.Sprintf("deploy note %d-%d", w, i),
					Vector: storetest.Mix(q.Vector, storetest.RandomVector(uint64(100*w+i), dims), 0.5)}
				if _, err := s.Add(t.Context(), alice, []store.NewMemory{m}); err != nil {
					errs <- err
					return
				}
			}
		})
		wg.Go(func() {
			for range 30 {
				if _, err := s.Search(t.Context(), alice, q); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sameAsSQL(t, s, plain, alice, q)
	if s.VectorCachePatches() == 0 {
		t.Error("no add brought a copy up to date")
	}
}

// TestVectorCacheRanksIndexedScopes: a scope that Maintain gave its own
// HNSW index but that fits the cache is ranked from its copy (exactly,
// with the text half from the copy's index), not in SQL through the
// index, whose text half ranks every matching row.
func TestVectorCacheRanksIndexedScopes(t *testing.T) {
	const dims = storetest.Dims
	s, d := newEmbeddingStore(t)
	alice := storetest.Member("acme", "alice")
	user := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	ms, added := addDeployNotes(t, s, alice, 300)
	res, err := postgres.Maintain(t.Context(), d.OwnerURL, postgres.MaintainOptions{MinRows: 200})
	if err != nil {
		t.Fatalf("Maintain: %v", err)
	}
	if len(res.Created) != 1 || res.Created[0].Scope != user {
		t.Fatalf("Maintain created %+v, want one index for acme user:alice", res.Created)
	}

	fresh := openStore(t, d, postgres.Config{})
	// The first search reads the list of per-scope indexes, in SQL.
	if _, err := fresh.Search(t.Context(), storetest.Member("other", "bob"), store.Query{Vector: storetest.RandomVector(1, dims)}); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{7, 123, 299} {
		hits, err := fresh.Search(t.Context(), alice, store.Query{Vector: ms[i].Vector, Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		if len(hits) != 5 || hits[0].ID != added[i].ID || hits[0].Similarity < 0.999 {
			t.Fatalf("search for memory %d's own vector: %d hits, first %+v; want 5, first %s", i, len(hits), hits, added[i].ID)
		}
		hits, err = fresh.Search(t.Context(), alice, store.Query{Vector: ms[i].Vector, Text: fmt.Sprintf("note %d", i), Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		if len(hits) != 5 || hits[0].ID != added[i].ID {
			t.Fatalf("hybrid search for memory %d: %d hits, first %+v; want 5, first %s", i, len(hits), hits, added[i].ID)
		}
	}
	if !fresh.ScopeIndexed("acme", user, dims) {
		t.Fatal("the store does not know of alice's index: the test checks nothing")
	}
	// alice sees her user scope and the org scope: one load of each,
	// then the copies answer.
	if n, want := fresh.VectorCacheLoads(), int64(len(alice.Visible())); n != want {
		t.Errorf("searches of an indexed scope loaded %d scope copies, want %d (ranked in SQL instead)", n, want)
	}
}

// addDeployNotes adds n memories "note i on deploy", each with vector
// storetest.RandomVector(i), to id's user scope, and returns them and
// what Add returned.
func addDeployNotes(t *testing.T, s *postgres.Store, id scope.Identity, n int) ([]store.NewMemory, []store.Added) {
	t.Helper()
	user := scope.Scope{Kind: scope.KindUser, ID: id.User}
	ms := make([]store.NewMemory, n)
	for i := range ms {
		ms[i] = store.NewMemory{Scope: user, Content: fmt.Sprintf("note %d on deploy", i), Vector: storetest.RandomVector(uint64(i), storetest.Dims)}
	}
	added, err := s.Add(t.Context(), id, ms)
	if err != nil {
		t.Fatal(err)
	}
	return ms, added
}
