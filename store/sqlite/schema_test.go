package sqlite

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// TestMigrateDropsFTS opens a file at schema version 3, which kept an
// FTS5 table in step by triggers, and checks that the migration to 4
// drops the table and its triggers, keeps every memory, and that adds and
// text searches work afterwards (the later migrations applied too).
func TestMigrateDropsFTS(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v3.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	stmts := append([]string{`CREATE TABLE schema_version (version INTEGER NOT NULL)`}, migrations()[:3]...)
	vec := make([]float32, 4)
	vec[0] = 1
	stmts = append(stmts,
		`INSERT INTO schema_version (version) VALUES (3)`,
		`INSERT INTO meta (key, value) VALUES ('embedder_provider', 'test'), ('embedder_model', 'm'), ('embedder_dimensions', '4')`,
		`INSERT INTO memories (rid, id, org_id, scope_kind, scope_id, content, content_hash, created_by, created_at, updated_at)
			VALUES (1, 'm-1', 'acme', 'user', 'alice', 'the deploy runs on fridays', x'00', 'alice', 1, 1)`,
		`INSERT INTO scope_versions (org_id, scope_kind, scope_id, version) VALUES ('acme', 'user', 'alice', 1)`,
	)
	for _, q := range stmts {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO memory_vectors (rid, vector) VALUES (1, ?)`, encodeVector(vec)); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatalf("Open(version 3 file) = %v", err)
	}
	defer s.Close()
	count := func(q string) int {
		t.Helper()
		var n int
		if err := s.rdb.QueryRowContext(ctx, q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	if v := count(`SELECT version FROM schema_version`); v != len(migrations()) {
		t.Errorf("schema version = %d, want %d", v, len(migrations()))
	}
	if n := count(`SELECT count(*) FROM sqlite_master WHERE name LIKE 'memories_fts%'`); n != 0 {
		t.Errorf("%d FTS tables or triggers left, want 0", n)
	}
	alice := scope.Identity{Org: "acme", User: "alice", Permissions: scope.AllPermissions}
	user := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	if _, err := s.Add(ctx, alice, []store.NewMemory{{Scope: user, Content: "lunch is at noon", Vector: []float32{0, 1, 0, 0}}}); err != nil {
		t.Fatalf("Add after the migration = %v", err)
	}
	if n := count(`SELECT count(*) FROM memories`); n != 2 {
		t.Errorf("%d memories after the migration and one add, want 2", n)
	}
	hits, err := s.Search(ctx, alice, store.Query{Text: "deploy fridays", Limit: 5})
	if err != nil || len(hits) != 1 || hits[0].ID != "m-1" {
		t.Errorf("Search(deploy fridays) = %v, %v; want the migrated memory m-1", hits, err)
	}
}
