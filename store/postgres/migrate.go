package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// versionTable is where goose records the applied migrations.
const versionTable = "scopemem_schema_version"

// DefaultRuntimeRole is the runtime role name when MigrateOptions leaves it
// empty.
const DefaultRuntimeRole = "scopemem_app"

// Sentinel errors of this package. Test them with errors.Is.
var (
	// ErrNotMigrated means the database schema is missing or older than this
	// binary: run `scopemem migrate` (or start with --migrate).
	ErrNotMigrated = errors.New("database schema is not migrated")
	// ErrUnsafeRole means a role is unfit for its job: the runtime role is a
	// superuser, has BYPASSRLS, owns the tables or can become their owner.
	ErrUnsafeRole = errors.New("unsafe database role")
)

// MigrateOptions configures [Migrate]. The zero value is usable when the
// role "scopemem_app" already exists.
type MigrateOptions struct {
	// RuntimeRole is the role the server connects as. Migrate grants it
	// exactly what the store needs. Empty means DefaultRuntimeRole.
	RuntimeRole string
	// RuntimePassword, when set, creates RuntimeRole (LOGIN, NOSUPERUSER,
	// NOBYPASSRLS, NOCREATEDB, NOCREATEROLE) if it does not exist, or sets
	// its password if it does; creating needs CREATEROLE. When empty the
	// role must already exist.
	RuntimePassword string
	// Logger receives one line per applied migration. Nil discards.
	Logger *slog.Logger
}

func (o MigrateOptions) withDefaults() MigrateOptions {
	if o.RuntimeRole == "" {
		o.RuntimeRole = DefaultRuntimeRole
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Migrate connects to ownerURL as the schema owner, applies every pending
// migration embedded in the binary (pressly/goose, under a session advisory
// lock so that replicas started with --migrate at once apply each migration
// once), then makes sure the runtime role exists, is safe (see
// [ErrUnsafeRole]) and holds the grants the store needs and no more.
// Running it again is harmless.
func Migrate(ctx context.Context, ownerURL string, opts MigrateOptions) error {
	opts = opts.withDefaults()
	cfg, err := pgx.ParseConfig(ownerURL)
	if err != nil {
		return fmt.Errorf("migrate: parse owner database URL: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("migrate: %w", translate(err))
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithTableName(versionTable),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(opts.Logger),
	)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", translate(err))
	}
	for _, r := range results {
		opts.Logger.Info("migration applied", "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration)
	}

	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("migrate: %w", translate(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := setupRuntimeRole(ctx, conn, opts.RuntimeRole, opts.RuntimePassword); err != nil {
		return fmt.Errorf("migrate: runtime role %q: %w", opts.RuntimeRole, err)
	}
	return nil
}

// SchemaVersion returns the schema version this binary's migrations lead to.
func SchemaVersion() int64 {
	entries, _ := fs.Glob(migrationFiles, "migrations/*.sql")
	var max int64
	for _, e := range entries {
		var v int64
		if _, err := fmt.Sscanf(e, "migrations/%d_", &v); err == nil && v > max {
			max = v
		}
	}
	return max
}

// setupRuntimeRole creates (when asked) and checks the runtime role, then
// grants it the store's privileges on the owner's current schema.
func setupRuntimeRole(ctx context.Context, conn *pgx.Conn, role, password string) error {
	q := pgx.Identifier{role}.Sanitize()
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, role).Scan(&exists); err != nil {
		return translate(err)
	}
	switch {
	case !exists && password == "":
		return fmt.Errorf("%w: the role does not exist; create it (CREATE ROLE %s LOGIN PASSWORD '...') or give migrate its password so that it creates it", ErrUnsafeRole, q)
	case !exists:
		if err := execFormatted(ctx, conn, `CREATE ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD %L`, role, password); err != nil {
			return fmt.Errorf("create role: %w", err)
		}
	case password != "":
		if err := execFormatted(ctx, conn, `ALTER ROLE %I LOGIN PASSWORD %L`, role, password); err != nil {
			return fmt.Errorf("set password: %w", err)
		}
	}
	if err := checkRuntimeRole(ctx, conn, role); err != nil {
		return err
	}
	var schema string
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return translate(err)
	}
	s := pgx.Identifier{schema}.Sanitize()
	grants := []string{
		`GRANT USAGE ON SCHEMA ` + s + ` TO ` + q,
		`GRANT SELECT, INSERT, DELETE ON ` + s + `.memories TO ` + q,
		// Only the columns a patch changes: a row never moves to another
		// org, scope or author, whatever the policies say.
		`GRANT UPDATE (content, content_hash, tags, metadata, embedding, updated_at) ON ` + s + `.memories TO ` + q,
		`GRANT INSERT ON ` + s + `.audit TO ` + q,
		`GRANT SELECT, INSERT ON ` + s + `.meta TO ` + q,
		`GRANT SELECT ON ` + s + `.` + versionTable + ` TO ` + q,
		`GRANT SELECT ON ` + s + `.scope_versions TO ` + q,
		`GRANT EXECUTE ON FUNCTION ` + s + `.scopemem_delete_expired(timestamptz, integer) TO ` + q,
	}
	for _, g := range grants {
		if _, err := conn.Exec(ctx, g); err != nil {
			return fmt.Errorf("grant: %w", translate(err))
		}
	}
	return nil
}

// checkRuntimeRole refuses a runtime role that row-level security would
// not hold: a superuser, a BYPASSRLS role, the owner of the tables or a
// member of the owner.
func checkRuntimeRole(ctx context.Context, conn *pgx.Conn, role string) error {
	var super, bypass, owner bool
	err := conn.QueryRow(ctx, `
		SELECT r.rolsuper, r.rolbypassrls,
			pg_has_role(r.oid, c.relowner, 'USAGE') OR pg_has_role(r.oid, c.relowner, 'MEMBER')
		FROM pg_roles r, pg_class c
		WHERE r.rolname = $1 AND c.oid = to_regclass('memories')`, role).Scan(&super, &bypass, &owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: role or memories table not found", ErrNotMigrated)
	}
	if err != nil {
		return translate(err)
	}
	switch {
	case super:
		return fmt.Errorf("%w: it is a superuser, which row-level security does not hold; use a plain role", ErrUnsafeRole)
	case bypass:
		return fmt.Errorf("%w: it has BYPASSRLS; run ALTER ROLE ... NOBYPASSRLS", ErrUnsafeRole)
	case owner:
		return fmt.Errorf("%w: it owns the tables or is a member of their owner; use a role that owns nothing", ErrUnsafeRole)
	}
	return nil
}

// execFormatted runs a utility statement (which takes no bind
// parameters) built by the server's format() from the given template and
// text arguments, so that identifiers and literals are quoted by
// PostgreSQL itself.
func execFormatted(ctx context.Context, conn *pgx.Conn, template string, args ...string) error {
	params := make([]any, 0, len(args)+1)
	params = append(params, template)
	ph := ""
	for i, a := range args {
		params = append(params, a)
		ph += fmt.Sprintf(", $%d::text", i+2)
	}
	var stmt string
	if err := conn.QueryRow(ctx, `SELECT format($1::text`+ph+`)`, params...).Scan(&stmt); err != nil {
		return translate(err)
	}
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return translate(err)
	}
	return nil
}
