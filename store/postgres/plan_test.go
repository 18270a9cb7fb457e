package postgres_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scopemem/scopemem/internal/pgtest"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/postgres"
	"github.com/scopemem/scopemem/store/storetest"
)

// TestSearchPlan checks the plans search relies on: for one tenant of 1,000
// rows among 50,000, both halves read the tenant through an index, never
// the whole table, and 768-dimensional vectors stay in the heap row.
func TestSearchPlan(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds 51,000 rows")
	}
	s, d := pgtest.NewStore(t)
	const dims = 64
	if err := s.SetEmbedder(t.Context(), store.EmbedderInfo{Provider: "test", Model: "plan", Dimensions: dims}); err != nil {
		t.Fatal(err)
	}
	// As the superuser (no row-level security), straight into the table.
	d.Exec(t, `INSERT INTO memories (org_id, id, scope_kind, scope_id, content, content_hash, created_by, embedding)
		SELECT CASE WHEN i <= 1000 THEN 'acme' ELSE 'org' || (i % 50) END, gen_random_uuid(), 'user',
			CASE WHEN i <= 1000 THEN 'alice' ELSE 'u' || (i % 7) END,
			'memory number ' || i || ' about deploy ' || (i % 13), sha256(i::text::bytea), 'x',
			(SELECT array_agg(random()::real - 0.5) FROM generate_series(1, 64) WHERE i > 0)::vector
		FROM generate_series(1, 51000) AS i`,
		`ANALYZE memories`)

	cfg, err := pgx.ParseConfig(d.RuntimeURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["plan_cache_mode"] = "force_custom_plan" // as Open sets it
	c, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(t.Context())
	if _, err := c.Exec(t.Context(), `SELECT 1`); err != nil {
		t.Fatal(err)
	}
	alice := storetest.Member("acme", "alice")
	kinds, ids := []string{"user", "org"}, []string{"alice", ""}
	vec := vectorText(storetest.RandomVector(1, dims))
	now := time.Now()
	vectorArgs := []any{alice.Org, now, []string{}, vec, 50, "user", "alice", "org", ""}
	explain := func(t *testing.T, sql string, args ...any) string {
		t.Helper()
		tx, err := c.Begin(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(t.Context())
		if _, err := tx.Exec(t.Context(), setIdentity, alice.Org, alice.User, "{}", "", "", "{memory:read}"); err != nil {
			t.Fatal(err)
		}
		rows, err := tx.Query(t.Context(), "EXPLAIN (ANALYZE, COSTS OFF) "+sql, args...)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Join(plan, "\n")
		t.Logf("plan:\n%s", text)
		return text
	}
	for _, tc := range []struct {
		name string
		sql  string
		args []any
	}{
		{"vector", postgres.VectorSearchSQL(dims, 2), vectorArgs},
		{"text", postgres.TextSearchSQL, []any{alice.Org, kinds, ids, now, []string{}, "'deploy' | '7'", 50}},
		{"duplicate", postgres.DupVectorSQL(dims), []any{alice.Org, "user", "alice", now, `{"` + vec + `"}`, 0.03}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := explain(t, tc.sql, tc.args...)
			if strings.Contains(text, "Seq Scan on memories") || !strings.Contains(text, "memories_") {
				t.Errorf("%s of one 1,000-row tenant among 51,000 rows does not go through an index:\n%s", tc.name, text)
			}
			if strings.Contains(text, "memories_ann_") {
				t.Errorf("%s uses a per-scope HNSW index before Maintain built one:\n%s", tc.name, text)
			}
		})
	}

	// Once the scope has its own index, the vector statements of that
	// scope use it (the org scope, with no index, stays on the btree).
	res, err := postgres.Maintain(t.Context(), d.OwnerURL, postgres.MaintainOptions{MinRows: 1000})
	if err != nil {
		t.Fatalf("Maintain: %v", err)
	}
	if len(res.Created) != 1 || res.Created[0].Org != "acme" || res.Created[0].Scope != (scope.Scope{Kind: scope.KindUser, ID: "alice"}) {
		t.Fatalf("Maintain created %+v, want one index for acme user:alice", res.Created)
	}
	d.Exec(t, `ANALYZE memories`)
	for _, tc := range []struct {
		name string
		sql  string
		args []any
	}{
		{"vector indexed", postgres.VectorSearchSQL(dims, 2), vectorArgs},
		{"duplicate indexed", postgres.DupVectorSQL(dims), []any{alice.Org, "user", "alice", now, `{"` + vec + `"}`, 0.03}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := explain(t, tc.sql, tc.args...)
			if !strings.Contains(text, "Index Scan using "+res.Created[0].Name) {
				t.Errorf("%s of a scope with its own HNSW index does not use it:\n%s", tc.name, text)
			}
			if strings.Contains(text, "Seq Scan on memories") {
				t.Errorf("%s reads the whole table:\n%s", tc.name, text)
			}
		})
	}

	t.Run("vectors inline", func(t *testing.T) {
		d.Exec(t, `INSERT INTO memories (org_id, id, scope_kind, scope_id, content, content_hash, created_by, embedding)
			SELECT 'wide', gen_random_uuid(), 'org', '', 'wide ' || i, sha256(i::text::bytea), 'x',
				(SELECT array_agg(random()::real) FROM generate_series(1, 768) WHERE i > 0)::vector
			FROM generate_series(1, 200) AS i`)
		a := connect(t, d.AdminURL)
		var toast int64
		if err := a.QueryRow(t.Context(), `SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = 'memories'::regclass`).Scan(&toast); err != nil {
			t.Fatal(err)
		}
		if toast != 0 {
			t.Errorf("TOAST table holds %d bytes after 768-dimensional inserts, want 0 (vectors inline)", toast)
		}
	})
}

// vectorText writes v in pgvector's text form.
func vectorText(v []float32) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, x := range v {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatFloat(float64(x), 'g', -1, 32))
	}
	b.WriteByte(']')
	return b.String()
}
