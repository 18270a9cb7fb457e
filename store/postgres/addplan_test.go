package postgres_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/scopemem/scopemem/internal/pgtest"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/postgres"
	"github.com/scopemem/scopemem/store/storetest"
)

// The identity the plan tests write as, and its user scope.
var (
	planAlice = storetest.Member("acme", "alice")
	planScope = scope.Scope{Kind: scope.KindUser, ID: "alice"}
)

// planStore is a store of one connection, whose prepared statements
// PreparedPlans reads, on a database with storetest's embedder.
func planStore(t *testing.T) (*postgres.Store, *pgtest.Database) {
	t.Helper()
	_, d := newEmbeddingStore(t)
	return openStore(t, d, postgres.Config{MaxConns: 1}), d
}

// TestAddPlans: an add runs its insert's and vector checks' generic
// plans (planning every execution nearly doubled an add's CPU in
// PostgreSQL), except the vector check of a scope that may have its own
// HNSW index, planned with its parameters so that it can use the index,
// and the hash check, always; and an add, like a search, keeps the
// store's list of those indexes fresh.
func TestAddPlans(t *testing.T) {
	const dims = storetest.Dims
	s, d := planStore(t)
	ctx := t.Context()
	n := 0
	add := func(t *testing.T, count int) {
		t.Helper()
		for range count {
			n++
			if _, err := s.Add(ctx, planAlice, []store.NewMemory{{Scope: planScope, Content: fmt.Sprintf("plan note %d", n),
				Vector: storetest.RandomVector(uint64(n), dims)}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	const (
		insertSQL  = "INSERT INTO memories AS m"
		dupVecSQL  = "unnest($5::vector[])"
		dupHashSQL = "d.content_hash = n.hash"
	)
	plans := func(t *testing.T, sql string) (generic, custom int64) {
		t.Helper()
		g, c, err := s.PreparedPlans(ctx, sql)
		if err != nil {
			t.Fatal(err)
		}
		return g, c
	}

	// The store's first add does not know the list of indexes yet: its
	// vector check is planned with its parameters, and it reads the list.
	add(t, 5)
	if g, c := plans(t, insertSQL); g != 5 || c != 0 {
		t.Errorf("5 inserts ran %d generic and %d custom plans, want 5 and 0", g, c)
	}
	if g, c := plans(t, dupVecSQL); g != 4 || c != 1 {
		t.Errorf("5 vector checks of a scope without an index ran %d generic and %d custom plans, want 4 and 1 (the first add's)", g, c)
	}

	res, err := postgres.Maintain(ctx, d.OwnerURL, postgres.MaintainOptions{MinRows: 5})
	if err != nil || len(res.Created) != 1 || res.Created[0].Scope != planScope {
		t.Fatalf("Maintain = %+v, %v; want one index for acme user:alice", res, err)
	}
	// The list is read again (ExpireScopeIndexes forgets it, so the next
	// add plans its vector check with parameters, as the first did); from
	// then on the scope's vector checks are planned with their
	// parameters, and its inserts are not.
	s.ExpireScopeIndexes()
	add(t, 1)
	if !s.ScopeIndexed("acme", planScope, dims) {
		t.Fatal("after an add, the store does not know of alice's index")
	}
	add(t, 3)
	if g, c := plans(t, insertSQL); g != 9 || c != 0 {
		t.Errorf("9 inserts ran %d generic and %d custom plans, want 9 and 0", g, c)
	}
	if g, c := plans(t, dupVecSQL); g != 4 || c != 5 {
		t.Errorf("9 vector checks ran %d generic and %d custom plans, want 4 and 5 (two adds without the list, 3 of an indexed scope)", g, c)
	}
	// A generic plan of the hash check, costed for a scope of one row,
	// would test every row's hash.
	if g, c := plans(t, dupHashSQL); g != 0 || c != 9 {
		t.Errorf("9 hash checks ran %d generic and %d custom plans, want 0 and 9", g, c)
	}
}

// TestListScopesPlan: list_scopes runs its count's generic plan (which
// TestSearchPlan checks reads each scope's index alone).
func TestListScopesPlan(t *testing.T) {
	s, _ := planStore(t)
	for range 3 {
		if _, err := s.ListScopes(t.Context(), planAlice); err != nil {
			t.Fatal(err)
		}
	}
	g, c, err := s.PreparedPlans(t.Context(), "GROUP BY m.scope_kind, m.scope_id")
	if err != nil {
		t.Fatal(err)
	}
	if g != 3 || c != 0 {
		t.Errorf("3 list_scopes ran %d generic and %d custom plans, want 3 and 0", g, c)
	}
}

// TestUpdateDeletePlans: update_memory, delete_memory and reading one
// memory run their statements' generic plans, and a memory that is not
// there is still not found.
func TestUpdateDeletePlans(t *testing.T) {
	const dims = storetest.Dims
	s, _ := planStore(t)
	ctx := t.Context()
	added, err := s.Add(ctx, planAlice, []store.NewMemory{
		{Scope: planScope, Content: "to change", Vector: storetest.RandomVector(1, dims)},
		{Scope: planScope, Content: "to delete", Vector: storetest.RandomVector(2, dims)},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		tags := []string{fmt.Sprintf("t%d", i)}
		m, err := s.Update(ctx, planAlice, added[0].ID, store.Patch{Tags: &tags})
		if err != nil || len(m.Tags) != 1 || m.Tags[0] != tags[0] {
			t.Fatalf("Update = %+v, %v; want tags %v", m, err, tags)
		}
	}
	if err := s.Delete(ctx, planAlice, added[1].ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, planAlice, added[1].ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second Delete = %v, want store.ErrNotFound", err)
	}
	tags := []string{"x"}
	if _, err := s.Update(ctx, planAlice, added[1].ID, store.Patch{Tags: &tags}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Update of a deleted memory = %v, want store.ErrNotFound", err)
	}
	if m, err := s.Get(ctx, planAlice, added[0].ID); err != nil || m.ID != added[0].ID {
		t.Fatalf("Get = %+v, %v; want the updated memory", m, err)
	}
	if _, err := s.Get(ctx, planAlice, added[1].ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of a deleted memory = %v, want store.ErrNotFound", err)
	}
	for _, tc := range []struct {
		sql  string
		want int64
	}{{"WITH upd AS", 3}, {"WITH del AS", 2}, {"FROM memories m\n\tWHERE m.org_id = $1 AND m.id = $2::uuid", 2}} {
		g, c, err := s.PreparedPlans(ctx, tc.sql)
		if err != nil {
			t.Fatal(err)
		}
		if g != tc.want || c != 0 {
			t.Errorf("%q ran %d generic and %d custom plans, want %d and 0", tc.sql, g, c, tc.want)
		}
	}
	// What the update wrote is there, once.
	hits, err := s.Search(ctx, planAlice, store.Query{Vector: storetest.RandomVector(1, dims), Tags: []string{"t1"}, Limit: 5})
	if err != nil || len(hits) != 1 || hits[0].ID != added[0].ID {
		t.Fatalf("search by the updated tag = %+v, %v; want the updated memory", hits, err)
	}
}
