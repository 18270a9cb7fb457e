package postgres_test

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/scopemem/scopemem/internal/pgtest"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/postgres"
	"github.com/scopemem/scopemem/store/storetest"
)

// TestMaintain checks the life of a per-scope index: nothing without an
// embedder, built once a scope crosses the threshold, used by search and
// by the duplicate check, skipped while another run holds the lock, and
// dropped when the scope is purged. The runtime role never sees the
// registry.
func TestMaintain(t *testing.T) {
	s, d := pgtest.NewStore(t)
	ctx := t.Context()
	opts := postgres.MaintainOptions{MinRows: 200}

	res, err := postgres.Maintain(ctx, d.OwnerURL, opts)
	if err != nil || len(res.Created) != 0 || res.Busy {
		t.Fatalf("Maintain before any embedder = %+v, %v; want nothing done", res, err)
	}

	const dims = 32
	if err := s.SetEmbedder(ctx, store.EmbedderInfo{Provider: "test", Model: "maintain", Dimensions: dims}); err != nil {
		t.Fatal(err)
	}
	alice := storetest.Member("acme", "alice")
	mine := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	c := newSmallCorpus(dims)
	var ms []store.NewMemory
	for i := range 300 {
		ms = append(ms, store.NewMemory{Scope: mine, Content: "note " + strconv.Itoa(i), Vector: c.next()})
	}
	// A small scope of another org stays on the btree.
	bob := storetest.Member("globex", "bob")
	if _, err := s.Add(ctx, bob, []store.NewMemory{{Scope: scope.Scope{Kind: scope.KindUser, ID: "bob"}, Content: "bob", Vector: c.next()}}); err != nil {
		t.Fatal(err)
	}
	added, err := s.Add(ctx, alice, ms)
	if err != nil {
		t.Fatal(err)
	}

	res, err = postgres.Maintain(ctx, d.OwnerURL, opts)
	if err != nil {
		t.Fatalf("Maintain: %v", err)
	}
	if len(res.Created) != 1 || res.Created[0].Org != "acme" || res.Created[0].Scope != mine || res.Created[0].Rows != 300 {
		t.Fatalf("Maintain created %+v, want one index for acme user:alice with 300 rows", res.Created)
	}
	again, err := postgres.Maintain(ctx, d.OwnerURL, opts)
	if err != nil || len(again.Created) != 0 || len(again.Dropped) != 0 || len(again.Indexed) != 1 {
		t.Fatalf("second Maintain = %+v, %v; want the one index kept", again, err)
	}

	t.Run("search uses the index", func(t *testing.T) {
		for _, i := range []int{0, 123, 299} {
			hits, err := s.Search(ctx, alice, store.Query{Vector: ms[i].Vector, Limit: 5})
			if err != nil {
				t.Fatal(err)
			}
			if len(hits) == 0 || hits[0].ID != added[i].ID {
				t.Errorf("Search(vector of memory %d) top hit = %v, want %s", i, hits, added[i].ID)
			}
		}
		hits, err := s.Search(ctx, bob, store.Query{Vector: ms[0].Vector, Limit: 5})
		if err != nil || len(hits) != 1 || hits[0].Content != "bob" {
			t.Errorf("Search as bob = %v, %v; want only bob's memory", hits, err)
		}
	})

	t.Run("duplicates found through the index", func(t *testing.T) {
		got, err := s.Add(ctx, alice, []store.NewMemory{
			{Scope: mine, Content: "a different text, same vector", Vector: ms[42].Vector},
			{Scope: mine, Content: ms[7].Content, Vector: c.next()},
		})
		if err != nil {
			t.Fatal(err)
		}
		if !got[0].Duplicate || got[0].ID != added[42].ID {
			t.Errorf("Add(near vector) = %s duplicate %v, want duplicate of %s", got[0].ID, got[0].Duplicate, added[42].ID)
		}
		if !got[1].Duplicate || got[1].ID != added[7].ID {
			t.Errorf("Add(same content) = %s duplicate %v, want duplicate of %s", got[1].ID, got[1].Duplicate, added[7].ID)
		}
	})

	t.Run("busy", func(t *testing.T) {
		c := connect(t, d.OwnerURL)
		if _, err := c.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(0x73636f70656d656d)); err != nil {
			t.Fatal(err)
		}
		res, err := postgres.Maintain(ctx, d.OwnerURL, opts)
		if err != nil || !res.Busy {
			t.Errorf("Maintain while another run holds the lock = %+v, %v; want Busy", res, err)
		}
		if _, err := c.Exec(ctx, `SELECT pg_advisory_unlock($1)`, int64(0x73636f70656d656d)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("registry hidden from the runtime role", func(t *testing.T) {
		app := connect(t, d.RuntimeURL)
		_, err := app.Exec(ctx, `SELECT * FROM scope_indexes`)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("SELECT scope_indexes as the runtime role = %v, want insufficient_privilege", err)
		}
	})

	t.Run("dropped after purge", func(t *testing.T) {
		admin := alice
		admin.Permissions = append(admin.Permissions, scope.PermPurge)
		if _, err := s.Purge(ctx, admin, scope.Target{Kind: scope.TargetScope, Scope: mine}); err != nil {
			t.Fatal(err)
		}
		res, err := postgres.Maintain(ctx, d.OwnerURL, opts)
		if err != nil || len(res.Dropped) != 1 || len(res.Indexed) != 0 {
			t.Fatalf("Maintain after purge = %+v, %v; want the index dropped", res, err)
		}
		var n int
		if err := connect(t, d.AdminURL).QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE indexname = $1`, res.Dropped[0].Name).Scan(&n); err != nil || n != 0 {
			t.Errorf("index %s still exists (%d, %v)", res.Dropped[0].Name, n, err)
		}
	})
}

// smallCorpus draws clustered vectors of a small dimension.
type smallCorpus struct {
	r      *rand.Rand
	dims   int
	topics [][]float32
}

func newSmallCorpus(dims int) *smallCorpus {
	c := &smallCorpus{r: rand.New(rand.NewPCG(5, 6)), dims: dims}
	for range 10 {
		c.topics = append(c.topics, unit(gaussian(c.r, dims)))
	}
	return c
}

func (c *smallCorpus) next() []float32 {
	t := c.topics[c.r.IntN(len(c.topics))]
	v := make([]float32, c.dims)
	for i := range v {
		v[i] = t[i] + 0.25*float32(c.r.NormFloat64())
	}
	return unit(v)
}
