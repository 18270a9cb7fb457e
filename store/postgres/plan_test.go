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
// rows among 50,000, every search statement reads the tenant's scopes
// through the (org, scope) btree, never the whole table, in its generic
// plan (the one searches of scopes without their own index run) and in
// its custom plan; once Maintain gave a scope its own HNSW index, the
// custom plans use it and Search learns of it from the catalog; and
// 768-dimensional vectors stay in the heap row.
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
	vec := vectorText(storetest.RandomVector(1, dims))
	now := time.Now()
	const tsq = "'deploy' | '7'"
	scopeArgs := []any{"user", "alice", "org", ""}
	// explainWith runs one search statement the way Search does
	// (identity and search settings in the same transaction, the plan
	// cache mode given) as a prepared statement, whose generic plan
	// EXPLAIN (opts) EXECUTE shows, and returns the plan.
	explainWith := func(t *testing.T, opts, mode, sql string, args ...any) string {
		t.Helper()
		tx, err := c.Begin(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(t.Context())
		if _, err := tx.Exec(t.Context(), setIdentity, alice.Org, alice.User, "{}", "", "", "{memory:read}"); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(t.Context(), postgres.SearchSettingsSQL, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(t.Context(), "PREPARE plan_probe AS "+sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		defer c.Exec(t.Context(), "DEALLOCATE plan_probe", pgx.QueryExecModeSimpleProtocol)
		params := make([]string, len(args))
		for i := range args {
			params[i] = "$" + strconv.Itoa(i+1)
		}
		// EXECUTE takes no bound parameters: pgx writes them in.
		rows, err := tx.Query(t.Context(), "EXPLAIN ("+opts+") EXECUTE plan_probe("+strings.Join(params, ", ")+")",
			append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...)
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
	explain := func(t *testing.T, mode, sql string, args ...any) string {
		t.Helper()
		return explainWith(t, "ANALYZE, COSTS OFF", mode, sql, args...)
	}
	// The statements Search sends: the generic plan (no scope has its
	// own index) with both halves over one read of the rows, and the
	// custom plan (one may) with the halves apart.
	type stmt struct {
		name, mode, sql string
		args            []any
	}
	head := []any{alice.Org, now, 50, 50}
	with := func(extra ...any) []any {
		return append(append(append([]any{}, head...), extra...), scopeArgs...)
	}
	generic, custom := "force_generic_plan", "force_custom_plan"
	before := []stmt{
		{"vector", generic, postgres.SearchSQL(dims, 2, true, false, false, false), with(vec)},
		{"text", generic, postgres.SearchSQL(dims, 2, false, true, false, false), with(tsq)},
		{"hybrid", generic, postgres.SearchSQL(dims, 2, true, true, true, false), with(vec, tsq)},
		{"vector custom", custom, postgres.SearchSQL(dims, 2, true, false, false, true), with(vec)},
		{"hybrid custom", custom, postgres.SearchSQL(dims, 2, true, true, false, true), with(vec, tsq)},
	}
	for _, tc := range before {
		t.Run(tc.name, func(t *testing.T) {
			text := explain(t, tc.mode, tc.sql, tc.args...)
			if strings.Contains(text, "Seq Scan on memories") || !strings.Contains(text, "memories_scope") {
				t.Errorf("%s of one 1,000-row tenant among 51,000 rows does not read its scopes through the btree:\n%s", tc.name, text)
			}
			if strings.Contains(text, "memories_ann_") {
				t.Errorf("%s uses a per-scope HNSW index before Maintain built one:\n%s", tc.name, text)
			}
			if strings.Contains(text, "Gather") {
				t.Errorf("%s starts parallel workers:\n%s", tc.name, text)
			}
			// Each scope is read through an index on (org, scope), not
			// as the org's every row filtered: only the content join
			// looks rows up by org and id.
			for line := range strings.SplitSeq(text, "\n") {
				l := strings.TrimSpace(line)
				if strings.HasPrefix(l, "Index Cond:") && strings.Contains(l, "org_id") &&
					!strings.Contains(l, "scope_id") && !strings.Contains(l, "(id = ") {
					t.Errorf("%s reads a scope by its org alone: %s\n%s", tc.name, l, text)
				}
			}
		})
	}
	// Row-level security reads the identity's settings once per
	// statement (InitPlans), never in a per-row condition: no filter or
	// index condition of any plan calls current_setting.
	for _, tc := range append(before, stmt{"duplicate", custom, postgres.DupVectorSQL(dims),
		[]any{alice.Org, "user", "alice", now, `{"` + vec + `"}`, 0.03, -1}}) {
		t.Run(tc.name+" settings once", func(t *testing.T) {
			text := explainWith(t, "ANALYZE, VERBOSE, COSTS OFF", tc.mode, tc.sql, tc.args...)
			if !strings.Contains(text, "InitPlan") || !strings.Contains(text, "current_setting") {
				t.Errorf("%s: no InitPlan reads the settings:\n%s", tc.name, text)
			}
			for line := range strings.SplitSeq(text, "\n") {
				l := strings.TrimSpace(line)
				for _, per := range []string{"Filter:", "Join Filter:", "Index Cond:", "Recheck Cond:", "Hash Cond:", "Merge Cond:"} {
					if strings.HasPrefix(l, per) && strings.Contains(l, "current_setting") {
						t.Errorf("%s: a per-row condition reads a setting: %s", tc.name, l)
					}
				}
			}
		})
	}
	// An add's vector checks run the generic plan where no scope of the
	// add has its own index, the custom one where one may; its hash
	// checks always run custom plans (a generic one, costed for a scope
	// of one row, tests every row's hash), which look the hash up.
	for _, mode := range []string{generic, custom} {
		t.Run("duplicate "+mode, func(t *testing.T) {
			text := explain(t, mode, postgres.DupVectorSQL(dims), alice.Org, "user", "alice", now, `{"`+vec+`"}`, 0.03, -1)
			if strings.Contains(text, "Seq Scan on memories") || !strings.Contains(text, "memories_") || strings.Contains(text, "memories_ann_") {
				t.Errorf("duplicate check does not go through the btree:\n%s", text)
			}
		})
	}
	t.Run("duplicate hash", func(t *testing.T) {
		text := explain(t, custom, postgres.DupHashSQL, alice.Org, "user", "alice", now, [][]byte{{1, 2, 3}})
		if strings.Contains(text, "Seq Scan on memories") || !strings.Contains(text, "Index Scan using memories_hash") ||
			!strings.Contains(text, "content_hash = n.hash)") || strings.Contains(text, "Rows Removed by Filter") {
			t.Errorf("duplicate hash check does not look the hash up in the (org, scope, hash) btree:\n%s", text)
		}
	})
	// Reading, changing and deleting one memory find it by its primary
	// key in the generic plans they run.
	id := "01a24f8b-2e87-7ef3-8f42-107ed8bc355f"
	for _, tc := range []stmt{
		{"get", generic, postgres.GetSQL, []any{alice.Org, id, "{user}", "{alice}", now}},
		{"update", generic, postgres.UpdateSQL, []any{alice.Org, id, "{user}", "{alice}", now, "new", []byte{1}, nil, nil, false, nil, "alice", "", ""}},
		{"delete", generic, postgres.DeleteSQL, []any{alice.Org, id, "{user}", "{alice}", now, "alice", "", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := explain(t, tc.mode, tc.sql, tc.args...)
			if strings.Contains(text, "Seq Scan on memories") || !strings.Contains(text, "memories_pkey") {
				t.Errorf("%s does not find the memory by its primary key:\n%s", tc.name, text)
			}
		})
	}
	// Given the version of a current copy in the vector cache (which
	// answered the check), the statement reads no memory at all.
	t.Run("duplicate, copy current", func(t *testing.T) {
		var version int64
		if err := connect(t, d.AdminURL).QueryRow(t.Context(), `SELECT version FROM scope_versions
			WHERE org_id = 'acme' AND scope_kind = 'user' AND scope_id = 'alice'`).Scan(&version); err != nil {
			t.Fatal(err)
		}
		text := explainWith(t, "ANALYZE, COSTS OFF, TIMING OFF", custom, postgres.DupVectorSQL(dims), alice.Org, "user", "alice", now, `{"`+vec+`"}`, 0.03, version)
		for line := range strings.SplitSeq(text, "\n") {
			if strings.Contains(line, " on memories") && !strings.Contains(line, "never executed") {
				t.Errorf("with the copy's version, the check still reads memories: %s\n%s", strings.TrimSpace(line), text)
			}
		}
		if !strings.Contains(text, " on memories") {
			t.Errorf("no scan of memories in the plan at all:\n%s", text)
		}
	})

	// list_scopes counts a scope from the (org, scope) index alone: row-
	// level security and the count read nothing the index does not hold,
	// in the generic plan it runs.
	t.Run("list scopes", func(t *testing.T) {
		// The visibility map as autovacuum keeps it. (Right after the
		// seed, the first pass here leaves it empty; the second fills it.)
		d.Exec(t, `VACUUM (FREEZE) memories`, `VACUUM (FREEZE) memories`)
		text := explain(t, generic, postgres.ListScopesSQL, alice.Org, "{user,org}", "{alice,\"\"}", now)
		if !strings.Contains(text, "Index Only Scan using memories_scope") || !strings.Contains(text, "Heap Fetches: 0") {
			t.Errorf("list_scopes reads the rows, not only the index:\n%s", text)
		}
		if !strings.Contains(text, "rows=1000 ") {
			t.Errorf("list_scopes does not count alice's 1,000 rows:\n%s", text)
		}
	})

	// Once the scope has its own index, the custom plans of that scope
	// use it (the org scope, with no index, stays on the btree).
	res, err := postgres.Maintain(t.Context(), d.OwnerURL, postgres.MaintainOptions{MinRows: 1000})
	if err != nil {
		t.Fatalf("Maintain: %v", err)
	}
	if len(res.Created) != 1 || res.Created[0].Org != "acme" || res.Created[0].Scope != (scope.Scope{Kind: scope.KindUser, ID: "alice"}) {
		t.Fatalf("Maintain created %+v, want one index for acme user:alice", res.Created)
	}
	d.Exec(t, `ANALYZE memories`)
	for _, tc := range []stmt{
		{"vector indexed", custom, postgres.SearchSQL(dims, 2, true, false, false, true), with(vec)},
		{"hybrid indexed", custom, postgres.SearchSQL(dims, 2, true, true, false, true), with(vec, tsq)},
		{"duplicate indexed", custom, postgres.DupVectorSQL(dims), []any{alice.Org, "user", "alice", now, `{"` + vec + `"}`, 0.03, -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := explain(t, tc.mode, tc.sql, tc.args...)
			if !strings.Contains(text, "Index Scan using "+res.Created[0].Name) {
				t.Errorf("%s of a scope with its own HNSW index does not use it:\n%s", tc.name, text)
			}
			if strings.Contains(text, "Seq Scan on memories") {
				t.Errorf("%s reads the whole table:\n%s", tc.name, text)
			}
		})
	}

	// Search learns of the index from the catalog and plans that scope's
	// searches with their parameters from then on; another org's scope of
	// the same name, and alice's org scope, keep the generic plan.
	s.ExpireScopeIndexes()
	if _, err := s.Search(t.Context(), alice, store.Query{Vector: storetest.RandomVector(2, dims), Limit: 5}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		org  string
		sc   scope.Scope
		want bool
	}{
		{"acme", scope.Scope{Kind: scope.KindUser, ID: "alice"}, true},
		{"acme", scope.Scope{Kind: scope.KindOrg}, false},
		{"other", scope.Scope{Kind: scope.KindUser, ID: "alice"}, false},
	} {
		if got := s.ScopeIndexed(tc.org, tc.sc, dims); got != tc.want {
			t.Errorf("after a search, ScopeIndexed(%s, %s) = %v, want %v", tc.org, tc.sc.Qualified(), got, tc.want)
		}
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
