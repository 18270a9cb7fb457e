package postgres_test

import (
	"errors"
	"testing"
	"time"

	"github.com/scopemem/scopemem/internal/pgtest"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/postgres"
	"github.com/scopemem/scopemem/store/storetest"
)

// openOwner opens a store on d as the owner role, as the operator commands
// do.
func openOwner(t *testing.T, d *pgtest.Database) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), postgres.Config{URL: d.OwnerURL})
	if err != nil {
		t.Fatalf("Open as the owner: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestOps runs the operator contract: export and import as the runtime
// role with an admin identity, reindex as the owner.
func TestOps(t *testing.T) {
	storetest.RunOps(t, func(t *testing.T) storetest.OpsStores {
		s, d := pgtest.NewStore(t)
		return storetest.OpsStores{Tenant: s, Operator: openOwner(t, d)}
	})
}

// TestReindexNeedsOwner checks that the runtime role cannot reindex: it
// would read and rewrite every org.
func TestReindexNeedsOwner(t *testing.T) {
	s, _ := newEmbeddingStore(t)
	target := store.EmbedderInfo{Provider: "p", Model: "m", Dimensions: 4}
	calls := []struct {
		name string
		call func() error
	}{
		{"BeginReindex", func() error { _, err := s.BeginReindex(t.Context(), target); return err }},
		{"ReindexStatus", func() error { _, err := s.ReindexStatus(t.Context()); return err }},
		{"ReindexPending", func() error { _, err := s.ReindexPending(t.Context(), nil, 10); return err }},
		{"StageVectors", func() error {
			return s.StageVectors(t.Context(), []store.StagedVector{{Org: "acme", ID: "0190b6a2-7c4e-7d3f-9a1b-2c3d4e5f6a7b", Vector: []float32{1, 0, 0, 0}}})
		}},
		{"CommitReindex", func() error { return s.CommitReindex(t.Context()) }},
		{"AbortReindex", func() error { return s.AbortReindex(t.Context()) }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, scope.ErrForbidden) {
			t.Errorf("%s as the runtime role = %v, want scope.ErrForbidden", c.name, err)
		}
	}
}

// TestExportPathsNeedTheirSettings checks the database side of the export
// and import paths: the runtime role, in a transaction carrying an admin
// identity but not the export setting, sees only the admin's own scopes,
// and with the setting sees its own org only.
func TestExportPathsNeedTheirSettings(t *testing.T) {
	s, d := pgtest.NewStore(t)
	seed(t, s) // two users of each org, one memory in each of their 5 scopes
	c := connect(t, d.RuntimeURL)
	count := func(org string, exportOn bool) int {
		t.Helper()
		tx, err := c.Begin(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(t.Context())
		on := ""
		if exportOn {
			on = "on"
		}
		if _, err := tx.Exec(t.Context(), `SELECT set_config('app.org_id', $1, true), set_config('app.user_id', 'ops', true),
			set_config('app.perms', '{memory:admin}', true), set_config('app.export_org', $2, true)`, org, on); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := tx.QueryRow(t.Context(), `SELECT count(*) FROM memories`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	const perOrg = 10
	tests := []struct {
		org      string
		exportOn bool
		want     int
	}{
		{"acme", false, 2}, // only the org scope (one memory of each user) is visible to "ops"
		{"acme", true, perOrg},
		{"globex", true, perOrg},
		{"", true, 0},
	}
	for _, tc := range tests {
		if got := count(tc.org, tc.exportOn); got != tc.want {
			t.Errorf("count(*) as admin of %q with export %v = %d, want %d", tc.org, tc.exportOn, got, tc.want)
		}
	}
	// Without the import setting an admin may not insert rows authored by
	// someone else.
	tx, err := c.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(t.Context())
	if _, err := tx.Exec(t.Context(), `SELECT set_config('app.org_id', 'acme', true), set_config('app.user_id', 'ops', true),
		set_config('app.perms', '{memory:admin}', true)`); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(t.Context(), `INSERT INTO memories (org_id, id, scope_kind, scope_id, content, content_hash, created_by, created_at, updated_at)
		VALUES ('acme', gen_random_uuid(), 'user', 'bob', 'x', '\x00', 'bob', $1, $1)`, time.Now())
	if err == nil {
		t.Errorf("insert of another user's memory without app.import_org succeeded, want a row-level security error")
	}
}
