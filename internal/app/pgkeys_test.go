package app_test

import (
	"errors"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/internal/pgtest"
)

// TestPostgresKeyTablesAreOwnerOnly checks that the runtime role cannot
// read the key and call-counter tables (it gets one key by id through
// scopemem_api_key), and that a role migrate did not set up cannot call
// that function either.
func TestPostgresKeyTablesAreOwnerOnly(t *testing.T) {
	d := pgtest.NewDatabase(t)
	newApp(t, func(c *app.Config) { c.DatabaseURL, c.MigrateURL = d.RuntimeURL, d.OwnerURL })
	d.Exec(t, `CREATE ROLE scopemem_t_stranger LOGIN PASSWORD 'stranger-pw'`, `GRANT USAGE ON SCHEMA public TO scopemem_t_stranger`)
	t.Cleanup(func() { d.Exec(t, `DROP OWNED BY scopemem_t_stranger`, `DROP ROLE scopemem_t_stranger`) })
	stranger, err := url.Parse(d.RuntimeURL)
	if err != nil {
		t.Fatal(err)
	}
	stranger.User = url.UserPassword("scopemem_t_stranger", "stranger-pw")
	denied := func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "42501"
	}
	for _, tc := range []struct {
		name, url, sql string
		allowed        bool
	}{
		{"runtime looks one key up", d.RuntimeURL, `SELECT count(*) FROM scopemem_api_key('aaaaaaaaaaaa')`, true},
		{"runtime reads api_keys", d.RuntimeURL, `SELECT count(*) FROM api_keys`, false},
		{"runtime reads usage_calls", d.RuntimeURL, `SELECT count(*) FROM usage_calls`, false},
		{"runtime reads audit", d.RuntimeURL, `SELECT count(*) FROM audit`, false},
		{"stranger looks a key up", stranger.String(), `SELECT count(*) FROM scopemem_api_key('aaaaaaaaaaaa')`, false},
		{"stranger measures an org", stranger.String(), `SELECT count(*) FROM scopemem_org_storage('acme')`, false},
		{"stranger writes the audit log", stranger.String(), `SELECT count(*) FROM (SELECT scopemem_audit_record('[]')) x`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := pgx.Connect(t.Context(), tc.url)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(t.Context())
			var n int
			err = c.QueryRow(t.Context(), tc.sql).Scan(&n)
			if tc.allowed && err != nil {
				t.Errorf("%s: %v, want allowed", tc.sql, err)
			}
			if !tc.allowed && !denied(err) {
				t.Errorf("%s: %v, want permission denied (42501)", tc.sql, err)
			}
		})
	}
}
