package postgres_test

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/scopemem/scopemem/internal/pgtest"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/postgres"
	"github.com/scopemem/scopemem/store/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := pgtest.NewStore(t)
		return s
	})
}

// connect opens a plain connection, closed when the test ends.
func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// seed adds one memory in every scope of several identities of two orgs
// and returns the ids by org and qualified scope.
func seed(t *testing.T, s store.Store) map[string]string {
	t.Helper()
	if err := s.SetEmbedder(t.Context(), storetest.EmbedderInfo); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, org := range []string{"acme", "globex"} {
		for _, u := range []struct{ user, team string }{{"alice", "api"}, {"bob", "web"}} {
			id := storetest.Member(org, u.user, u.team)
			id.Agent, id.Session = "coder", "s1"
			for _, sc := range id.Visible() {
				content := org + " " + u.user + " " + sc.Qualified()
				got, err := s.Add(t.Context(), id, []store.NewMemory{storetest.New(sc, content)})
				if err != nil {
					t.Fatalf("Add(%s): %v", content, err)
				}
				if !got[0].Duplicate {
					ids[org+" "+sc.Qualified()] = got[0].ID
				}
			}
		}
	}
	return ids
}

// setIdentity is what the store runs first in each transaction.
const setIdentity = `SELECT set_config('app.org_id', $1, true), set_config('app.user_id', $2, true),
	set_config('app.team_ids', $3, true), set_config('app.agent', $4, true), set_config('app.session_id', $5, true),
	set_config('app.perms', $6, true)`

// rawScopes runs a SELECT with no WHERE clause in tx and returns
// "org scope" keys.
func rawScopes(t *testing.T, tx pgx.Tx) []string {
	t.Helper()
	rows, err := tx.Query(t.Context(), `SELECT org_id, scope_kind, scope_id FROM memories`)
	if err != nil {
		t.Fatalf("SELECT * FROM memories: %v", err)
	}
	var out []string
	for rows.Next() {
		var org, kind, id string
		if err := rows.Scan(&org, &kind, &id); err != nil {
			t.Fatal(err)
		}
		out = append(out, org+" "+scope.Scope{Kind: scope.Kind(kind), ID: id}.Qualified())
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// TestRowLevelSecurity proves the second wall: as the runtime role, with no
// WHERE clause at all, the database returns only the rows of the identity
// in the transaction settings.
func TestRowLevelSecurity(t *testing.T) {
	s, d := pgtest.NewStore(t)
	seed(t, s)
	app := connect(t, d.RuntimeURL)
	ctx := t.Context()

	tests := []struct {
		name                             string
		org, user, teams, agent, session string
		want                             []string
	}{
		{"no settings", "", "", "", "", "", nil},
		{"org only", "acme", "", "", "", "", []string{"acme org", "acme org"}},
		{"alice with agent and session", "acme", "alice", "{api}", "coder", "s1", []string{
			"acme agent:alice/coder", "acme org", "acme org", "acme session:alice/s1", "acme team:api", "acme user:alice"}},
		{"alice, no agent or session", "acme", "alice", "{api}", "", "", []string{"acme org", "acme org", "acme team:api", "acme user:alice"}},
		{"alice of globex", "globex", "alice", "{}", "", "", []string{"globex org", "globex org", "globex user:alice"}},
		{"bob in both teams", "acme", "bob", "{api,web}", "", "", []string{"acme org", "acme org", "acme team:api", "acme team:web", "acme user:bob"}},
		{"unknown org", "initech", "alice", "{api}", "coder", "s1", nil},
		// Settings the store never writes still match only what they name.
		{"agent and session without a user", "acme", "", "{}", "coder", "s1", []string{"acme org", "acme org"}},
		{"team list with odd elements", "acme", "", `{NULL,"","api ",API,"{api}","api,web"}`, "", "", []string{"acme org", "acme org"}},
		{"team list with quoted names", "acme", "", `{"web",NULL,"api"}`, "", "", []string{"acme org", "acme org", "acme team:api", "acme team:web"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := app.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if tc.name != "no settings" {
				if _, err := tx.Exec(ctx, setIdentity, tc.org, tc.user, tc.teams, tc.agent, tc.session, "{memory:read}"); err != nil {
					t.Fatal(err)
				}
			}
			got := rawScopes(t, tx)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("SELECT with no WHERE as %s/%s mismatch (-want +got):\n%s", tc.org, tc.user, diff)
			}
		})
	}

	// The policies read the settings once per statement: a statement run
	// again (the same prepared statement) after the settings changed in
	// the same transaction sees the new identity's rows only.
	t.Run("identity changed within a transaction", func(t *testing.T) {
		tx, err := app.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		for _, tc := range []struct {
			user, teams string
			want        []string
		}{
			{"alice", "{api}", []string{"acme org", "acme org", "acme team:api", "acme user:alice"}},
			{"bob", "{web}", []string{"acme org", "acme org", "acme team:web", "acme user:bob"}},
			{"", "{}", []string{"acme org", "acme org"}},
		} {
			if _, err := tx.Exec(ctx, setIdentity, "acme", tc.user, tc.teams, "", "", "{memory:read}"); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, rawScopes(t, tx)); diff != "" {
				t.Errorf("as acme/%q after a change of identity, mismatch (-want +got):\n%s", tc.user, diff)
			}
		}
	})

	// A team list that is no array literal is an error, not an empty
	// list, as soon as a team row is read.
	t.Run("malformed team list", func(t *testing.T) {
		tx, err := app.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, setIdentity, "acme", "alice", "api", "", "", "{memory:read}"); err != nil {
			t.Fatal(err)
		}
		rows, err := tx.Query(ctx, `SELECT scope_id FROM memories WHERE scope_kind = 'team'`)
		if err == nil {
			for rows.Next() {
			}
			err = rows.Err()
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "22P02" {
			t.Errorf("SELECT of team rows with app.team_ids = 'api': %v, want invalid_text_representation (22P02)", err)
		}
	})

	t.Run("writes outside the identity fail", func(t *testing.T) {
		for _, tc := range []struct {
			name, stmt string
		}{
			{"insert into another org", `INSERT INTO memories (org_id, id, scope_kind, scope_id, content, content_hash, created_by)
				VALUES ('globex', gen_random_uuid(), 'org', '', 'x', '\x00', 'alice')`},
			{"insert into another user", `INSERT INTO memories (org_id, id, scope_kind, scope_id, content, content_hash, created_by)
				VALUES ('acme', gen_random_uuid(), 'user', 'bob', 'x', '\x00', 'alice')`},
			{"insert as another author", `INSERT INTO memories (org_id, id, scope_kind, scope_id, content, content_hash, created_by)
				VALUES ('acme', gen_random_uuid(), 'user', 'alice', 'x', '\x00', 'bob')`},
		} {
			tx, err := app.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, setIdentity, "acme", "alice", "{api}", "", "", "{memory:read,memory:write,memory:share}"); err != nil {
				t.Fatal(err)
			}
			_, err = tx.Exec(ctx, tc.stmt)
			tx.Rollback(ctx)
			if err == nil {
				t.Errorf("%s: succeeded, want a row-level security violation", tc.name)
			}
		}
		// Updates and deletes of invisible rows touch nothing.
		tx, err := app.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, setIdentity, "acme", "alice", "{}", "", "", "{memory:read,memory:write,memory:share,memory:purge}"); err != nil {
			t.Fatal(err)
		}
		for _, stmt := range []string{`UPDATE memories SET content = 'x'`, `DELETE FROM memories`} {
			tag, err := tx.Exec(ctx, stmt)
			if err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
			// alice (no teams now) may write her user scope and the org,
			// where alice and bob each put one memory.
			if tag.RowsAffected() != 3 {
				t.Errorf("%s as acme/alice affected %d rows, want 3 (user:alice and org)", stmt, tag.RowsAffected())
			}
		}
	})

	t.Run("settings do not leak to the next transaction", func(t *testing.T) {
		tx, err := app.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, setIdentity, "acme", "alice", "{api}", "coder", "s1", "{memory:read}"); err != nil {
			t.Fatal(err)
		}
		if got := rawScopes(t, tx); len(got) == 0 {
			t.Fatal("no rows visible inside the transaction")
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		var org *string
		if err := app.QueryRow(ctx, `SELECT current_setting('app.org_id', true)`).Scan(&org); err != nil {
			t.Fatal(err)
		}
		if org != nil && *org != "" {
			t.Errorf("app.org_id after commit = %q, want empty", *org)
		}
		tx2, err := app.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx2.Rollback(ctx)
		if got := rawScopes(t, tx2); len(got) != 0 {
			t.Errorf("next transaction on the same connection sees %v, want nothing", got)
		}
	})

	t.Run("runtime role", func(t *testing.T) {
		var super, bypass, owns, member bool
		err := app.QueryRow(ctx, `SELECT r.rolsuper, r.rolbypassrls,
				EXISTS (SELECT 1 FROM pg_class c WHERE c.relowner = r.oid),
				pg_has_role(r.oid, (SELECT relowner FROM pg_class WHERE oid = 'memories'::regclass), 'MEMBER')
			FROM pg_roles r WHERE r.rolname = current_user`).Scan(&super, &bypass, &owns, &member)
		if err != nil {
			t.Fatal(err)
		}
		if super || bypass || owns || member {
			t.Errorf("runtime role: superuser %v, bypassrls %v, owns objects %v, member of owner %v; want all false", super, bypass, owns, member)
		}
		var forced, enabled bool
		if err := app.QueryRow(ctx, `SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'memories'::regclass`).Scan(&enabled, &forced); err != nil {
			t.Fatal(err)
		}
		if !enabled || !forced {
			t.Errorf("memories: row security enabled %v, forced %v; want both", enabled, forced)
		}
		for _, stmt := range []string{
			`UPDATE audit SET count = 0`,
			`DELETE FROM audit`,
			`SELECT count(*) FROM audit`,
			`TRUNCATE memories`,
			`ALTER TABLE memories DISABLE ROW LEVEL SECURITY`,
			`DROP POLICY memories_select ON memories`,
			`UPDATE memories SET org_id = 'x'`,
			`UPDATE meta SET value = '{}'`,
			`CREATE TABLE evil (x int)`,
		} {
			if _, err := app.Exec(ctx, stmt); err == nil {
				t.Errorf("runtime role ran %q, want permission denied", stmt)
			}
		}
	})
}

// auditRows returns action/scope/target/count/source rows of the audit
// log, read as the superuser.
func auditRows(t *testing.T, d *pgtest.Database, action string) []string {
	t.Helper()
	c := connect(t, d.AdminURL)
	rows, err := c.Query(t.Context(), `SELECT org_id, actor, scope_kind, scope_id, target, count, source FROM audit WHERE action = $1 ORDER BY id`, action)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var org, actor, kind, sid, target, source string
		var n int
		if err := rows.Scan(&org, &actor, &kind, &sid, &target, &n, &source); err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.Join([]string{org, actor, kind + ":" + sid, target, strconv.Itoa(n), source}, " "))
	}
	return out
}

func TestAudit(t *testing.T) {
	s, d := pgtest.NewStore(t)
	ids := seed(t, s)
	// The HTTP server hands the caller's address down in the context.
	const src = "192.0.2.7"
	ctx := store.WithSource(t.Context(), src)
	alice := storetest.Member("acme", "alice", "api")
	userAlice := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	teamAPI := scope.Scope{Kind: scope.KindTeam, ID: "api"}
	if _, err := s.Add(ctx, alice, []store.NewMemory{
		storetest.New(teamAPI, "the release train leaves on thursdays"),
		storetest.New(teamAPI, "staging runs the nightly database restore"),
	}); err != nil {
		t.Fatal(err)
	}

	content := "changed"
	if _, err := s.Update(ctx, alice, ids["acme user:alice"], store.Patch{Content: &content, Vector: storetest.Vector(content, storetest.Dims)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, alice, ids["acme team:api"]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Purge(ctx, alice, scope.Target{Scope: userAlice}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Purge(ctx, storetest.Admin("globex", "root"), scope.Target{Kind: scope.TargetUser, User: "bob"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		action string
		want   []string
	}{
		{"update", []string{"acme alice user:alice " + ids["acme user:alice"] + " 1 " + src}},
		{"delete", []string{"acme alice team:api " + ids["acme team:api"] + " 1 " + src}},
		{"purge", []string{
			"acme alice user:alice user 1 " + src,
			"globex root agent:bob/coder user:bob 1 " + src,
			"globex root session:bob/s1 user:bob 1 " + src,
			"globex root user:bob user:bob 1 " + src,
		}},
	} {
		got := auditRows(t, d, tc.action)
		if tc.action == "purge" {
			sort.Strings(got)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("audit rows for %s mismatch (-want +got):\n%s", tc.action, diff)
		}
	}
	if got := auditRows(t, d, "add"); !slices.Contains(got, "acme alice team:api  2 "+src) {
		t.Errorf("audit rows for add %q lack the add of two memories to team:api from %s", got, src)
	}
}

// TestJanitorConcurrent runs DeleteExpired from two stores (two replicas)
// at once: every expired row is deleted, and counted, exactly once.
func TestJanitorConcurrent(t *testing.T) {
	s1, d := pgtest.NewStore(t)
	s2, err := postgres.Open(t.Context(), postgres.Config{URL: d.RuntimeURL})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s1.SetEmbedder(t.Context(), storetest.EmbedderInfo); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute)
	const perOrg, orgs = 1500, 2
	for o := range orgs {
		id := storetest.Member([]string{"acme", "globex"}[o], "alice")
		id.Session = "s1"
		ms := storetest.Corpus(perOrg, storetest.Dims, scope.Scope{Kind: scope.KindSession, ID: "alice/s1"}, uint64(o+1))
		for i := range ms {
			ms[i].ExpiresAt = &past
		}
		ms = append(ms, storetest.New(scope.Scope{Kind: scope.KindUser, ID: "alice"}, "keeps forever"))
		if _, err := s1.Add(t.Context(), id, ms); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	counts := make([]int, 4)
	errs := make([]error, 4)
	for i := range counts {
		wg.Go(func() {
			s := s1
			if i%2 == 1 {
				s = s2
			}
			counts[i], errs[i] = s.DeleteExpired(t.Context(), time.Now())
		})
	}
	wg.Wait()
	total := 0
	for i := range counts {
		if errs[i] != nil {
			t.Errorf("DeleteExpired %d: %v", i, errs[i])
		}
		total += counts[i]
	}
	if total != perOrg*orgs {
		t.Errorf("concurrent DeleteExpired counts %v sum to %d, want %d", counts, total, perOrg*orgs)
	}
	var left, kept int
	c := connect(t, d.AdminURL)
	if err := c.QueryRow(t.Context(), `SELECT count(*) FILTER (WHERE expires_at IS NOT NULL), count(*) FROM memories`).Scan(&left, &kept); err != nil {
		t.Fatal(err)
	}
	if left != 0 || kept != orgs {
		t.Errorf("after the janitors: %d expired rows left, %d rows in all; want 0 and %d", left, kept, orgs)
	}
	var expired int
	if err := c.QueryRow(t.Context(), `SELECT COALESCE(sum(count), 0) FROM audit WHERE action = 'expire'`).Scan(&expired); err != nil {
		t.Fatal(err)
	}
	if expired != perOrg*orgs {
		t.Errorf("audit records %d expired rows, want %d", expired, perOrg*orgs)
	}
}

func TestOpenRefuses(t *testing.T) {
	ctx := t.Context()
	t.Run("not migrated", func(t *testing.T) {
		d := pgtest.NewDatabase(t)
		_, err := postgres.Open(ctx, postgres.Config{URL: d.OwnerURL})
		if !errors.Is(err, postgres.ErrNotMigrated) {
			t.Errorf("Open(unmigrated database) = %v, want ErrNotMigrated", err)
		}
	})
	t.Run("superuser", func(t *testing.T) {
		_, d := pgtest.NewStore(t)
		_, err := postgres.Open(ctx, postgres.Config{URL: d.AdminURL})
		if !errors.Is(err, postgres.ErrUnsafeRole) {
			t.Errorf("Open(as superuser) = %v, want ErrUnsafeRole", err)
		}
		s, err := postgres.Open(ctx, postgres.Config{URL: d.AdminURL, AllowPrivilegedRole: true})
		if err != nil {
			t.Errorf("Open(as superuser, AllowPrivilegedRole) = %v, want nil", err)
		} else {
			s.Close()
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		_, err := postgres.Open(ctx, postgres.Config{URL: "postgres://u:sekrit-pw@127.0.0.1:1/db?connect_timeout=2"})
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("Open(unreachable) = %v, want ErrUnavailable", err)
		}
		if err != nil && strings.Contains(err.Error(), "sekrit-pw") {
			t.Errorf("Open error %q leaks the password", err)
		}
	})
	t.Run("runtime role that is unsafe", func(t *testing.T) {
		d := pgtest.NewDatabase(t)
		d.Exec(t, `CREATE ROLE `+pgx.Identifier{d.RuntimeRole}.Sanitize()+` LOGIN BYPASSRLS`)
		err := postgres.Migrate(ctx, d.OwnerURL, postgres.MigrateOptions{RuntimeRole: d.RuntimeRole})
		if !errors.Is(err, postgres.ErrUnsafeRole) {
			t.Errorf("Migrate(runtime role with BYPASSRLS) = %v, want ErrUnsafeRole", err)
		}
	})
	t.Run("runtime role missing", func(t *testing.T) {
		d := pgtest.NewDatabase(t)
		err := postgres.Migrate(ctx, d.OwnerURL, postgres.MigrateOptions{RuntimeRole: d.RuntimeRole})
		if !errors.Is(err, postgres.ErrUnsafeRole) {
			t.Errorf("Migrate(no such runtime role, no password) = %v, want ErrUnsafeRole", err)
		}
	})
}

func TestMigrateTwice(t *testing.T) {
	s, d := pgtest.NewStore(t)
	if err := postgres.Migrate(t.Context(), d.OwnerURL, postgres.MigrateOptions{RuntimeRole: d.RuntimeRole, RuntimePassword: d.RuntimePassword}); err != nil {
		t.Fatalf("Migrate again = %v, want nil", err)
	}
	if err := s.SetEmbedder(t.Context(), storetest.EmbedderInfo); err != nil {
		t.Fatalf("store after a second Migrate: %v", err)
	}
}
