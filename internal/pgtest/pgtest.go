// Package pgtest gives tests a real PostgreSQL database with pgvector.
//
// The server comes from SCOPEMEM_TEST_DATABASE_URL, a URL of a superuser
// (scripts/testdb.sh starts a throwaway cluster and sets it). Without it,
// tests skip on a laptop and fail when CI is set, so CI can never pass
// without running them.
//
// [NewDatabase] creates a database per test with the vector extension
// (as a DBA would), an owner role that owns it and is not a superuser, and
// the name and password of a runtime role for the store to create through
// postgres.Migrate; everything is dropped when the test ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scopemem/scopemem/store/postgres"
)

// EnvURL is the variable naming the test server.
const EnvURL = "SCOPEMEM_TEST_DATABASE_URL"

// DSN returns the superuser URL of the test server, skipping the test when
// it is unset, or failing it when CI is set.
func DSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvURL)
	if dsn == "" && os.Getenv("CI") != "" {
		t.Fatal("SCOPEMEM_TEST_DATABASE_URL unset: CI must run the Postgres store tests")
	}
	if dsn == "" {
		t.Skip("SCOPEMEM_TEST_DATABASE_URL unset; skipping Postgres tests (run them with scripts/testdb.sh run -- go test ./...)")
	}
	return dsn
}

// Database is one test's database and roles.
type Database struct {
	// Name is the database name.
	Name string
	// AdminURL connects to the database as the server's superuser.
	AdminURL string
	// Owner is the owner role (NOSUPERUSER, CREATEROLE, owns the database);
	// OwnerURL connects as it.
	Owner, OwnerURL string
	// RuntimeRole and RuntimePassword name the runtime role for
	// postgres.Migrate to create; RuntimeURL connects as it once it exists.
	RuntimeRole, RuntimePassword, RuntimeURL string
}

// NewDatabase creates a fresh database with pgvector and an owner role,
// and drops both (and the runtime role, if created) when the test ends.
func NewDatabase(t testing.TB) *Database {
	t.Helper()
	dsn := DSN(t)
	base, err := url.Parse(dsn)
	if err != nil || (base.Scheme != "postgres" && base.Scheme != "postgresql") {
		t.Fatalf("%s must be a postgres:// URL of a superuser", EnvURL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", EnvURL, err)
	}
	defer admin.Close(context.Background())

	suffix := randomHex(6)
	d := &Database{
		Name:            "scopemem_t_" + suffix,
		Owner:           "scopemem_t_" + suffix + "_owner",
		RuntimeRole:     "scopemem_t_" + suffix + "_app",
		RuntimePassword: randomHex(16),
	}
	ownerPassword := randomHex(16)
	withUser := func(user, password string) string {
		u := *base
		u.User = url.UserPassword(user, password)
		u.Path = "/" + d.Name
		return u.String()
	}
	adminUser, adminPw := "", ""
	if base.User != nil {
		adminUser = base.User.Username()
		adminPw, _ = base.User.Password()
	}
	d.AdminURL = withUser(adminUser, adminPw)
	d.OwnerURL = withUser(d.Owner, ownerPassword)
	d.RuntimeURL = withUser(d.RuntimeRole, d.RuntimePassword)

	owner := pgx.Identifier{d.Owner}.Sanitize()
	for _, stmt := range []string{
		fmt.Sprintf(`CREATE ROLE %s LOGIN NOSUPERUSER NOBYPASSRLS CREATEROLE PASSWORD '%s'`, owner, ownerPassword),
		fmt.Sprintf(`CREATE DATABASE %s OWNER %s`, pgx.Identifier{d.Name}.Sanitize(), owner),
	} {
		if _, err := admin.Exec(ctx, stmt); err != nil {
			t.Fatalf("set up test database: %v", err)
		}
	}
	t.Cleanup(func() { d.drop(t, dsn) })

	// The DBA's step: pgvector is not a trusted extension.
	db, err := pgx.Connect(ctx, d.AdminURL)
	if err != nil {
		t.Fatalf("connect to test database: %v", err)
	}
	defer db.Close(context.Background())
	if _, err := db.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS vector`); err != nil {
		t.Fatalf("create extension vector (is pgvector installed on the test server?): %v", err)
	}
	return d
}

// drop removes the database and roles, ending any session still open.
func (d *Database) drop(t testing.TB, dsn string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Errorf("drop test database %s: %v", d.Name, err)
		return
	}
	defer admin.Close(context.Background())
	for _, stmt := range []string{
		fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, pgx.Identifier{d.Name}.Sanitize()),
		fmt.Sprintf(`DROP ROLE IF EXISTS %s`, pgx.Identifier{d.RuntimeRole}.Sanitize()),
		fmt.Sprintf(`DROP ROLE IF EXISTS %s`, pgx.Identifier{d.Owner}.Sanitize()),
	} {
		if _, err := admin.Exec(ctx, stmt); err != nil {
			t.Errorf("drop test database: %v", err)
		}
	}
}

// Exec runs SQL statements on the test database as the superuser.
func (d *Database) Exec(t testing.TB, sql ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, d.AdminURL)
	if err != nil {
		t.Fatalf("connect to test database: %v", err)
	}
	defer c.Close(context.Background())
	for _, s := range sql {
		if _, err := c.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// NewStore creates a database with [NewDatabase], migrates it as the
// owner, and opens a store on it as the runtime role, closed when the test
// ends.
func NewStore(t testing.TB) (*postgres.Store, *Database) {
	t.Helper()
	d := NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := postgres.Migrate(ctx, d.OwnerURL, postgres.MigrateOptions{RuntimeRole: d.RuntimeRole, RuntimePassword: d.RuntimePassword}); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	s, err := postgres.Open(ctx, postgres.Config{URL: d.RuntimeURL})
	if err != nil {
		t.Fatalf("Open as the runtime role: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, d
}
