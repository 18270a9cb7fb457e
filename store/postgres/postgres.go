package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	pgxvec "github.com/pgvector/pgvector-go/pgx"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// Config configures [Open]. Only URL is required.
type Config struct {
	// URL is the database URL of the runtime role, e.g.
	// postgres://scopemem_app:pw@db:5432/scopemem (libpq keyword/value
	// strings work too). It comes from --database-url or
	// SCOPEMEM_DATABASE_URL.
	URL string
	// Logger receives warnings (e.g. about the role). Nil discards.
	Logger *slog.Logger
	// MaxConns caps the pool. Zero means pgxpool's default (4, or the
	// number of CPUs if higher).
	MaxConns int32
	// MinConns connections are kept open even when idle. Zero means none.
	MinConns int32
	// ConnectTimeout bounds opening one connection (TCP, TLS and
	// start-up). Zero means the URL's connect_timeout (or
	// PGCONNECT_TIMEOUT), else DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// EFSearch is hnsw.ef_search for searches that go through a large
	// scope's approximate index (see [Maintain]): how many neighbours the
	// graph search keeps, trading time for recall. Zero means
	// DefaultEFSearch. Ordinary scopes are searched exactly and ignore it.
	EFSearch int
	// VectorCacheBytes is about how much memory the copies of searched
	// scopes' rows (vectors and content) may take (see the store's vector
	// cache). Zero means
	// DefaultVectorCacheBytes; negative turns the cache off, so every
	// search ranks its rows in SQL.
	VectorCacheBytes int64
	// AllowPrivilegedRole lets Open connect as a superuser or a BYPASSRLS
	// role, which row-level security does not hold (the store's own
	// filters still apply). Meant for local experiments only.
	AllowPrivilegedRole bool
}

// DefaultEFSearch is the hnsw.ef_search used when Config.EFSearch is zero.
const DefaultEFSearch = 100

// Pool settings that make the store fail fast while the database is away
// and recover by itself once it is back; see Open.
const (
	// DefaultConnectTimeout is the Config.ConnectTimeout used when neither
	// it nor the URL sets one.
	DefaultConnectTimeout = 5 * time.Second
	// pingTimeout bounds the ping of a connection taken from the pool
	// after being idle (pool_ping_timeout in the URL overrides it).
	pingTimeout = 2 * time.Second
	// healthCheckPeriod is how often idle connections are checked and
	// MinConns restored (pool_health_check_period in the URL overrides it).
	healthCheckPeriod = 15 * time.Second
)

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.EFSearch <= 0 {
		c.EFSearch = DefaultEFSearch
	}
	return c
}

// Store is the PostgreSQL implementation of [store.Store]. It is safe for
// concurrent use; Close it once when done.
type Store struct {
	pool     *pgxpool.Pool
	log      *slog.Logger
	efSearch string // hnsw.ef_search, as set_config takes it
	ann      annIndexes
	vecs     *vecCache // nil when Config.VectorCacheBytes < 0

	mu   sync.Mutex
	dims int // recorded embedder dimension, 0 until known
}

var _ store.Store = (*Store)(nil)

// Open connects to the database as the runtime role and checks that it is
// usable: reachable (else [store.ErrUnavailable]), migrated to this
// binary's schema version (else [ErrNotMigrated]) and, unless
// AllowPrivilegedRole is set, neither a superuser nor a BYPASSRLS role
// (else [ErrUnsafeRole]). Connecting as the owner of the tables works
// (FORCE ROW LEVEL SECURITY holds it too) but logs a warning.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if cfg.URL == "" {
		return nil, fmt.Errorf("postgres: no database URL: set --database-url or SCOPEMEM_DATABASE_URL")
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		// pgconn.ParseConfigError hides the password.
		return nil, fmt.Errorf("postgres: parse database URL: %w", err)
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	if cfg.MinConns > 0 {
		pc.MinConns = cfg.MinConns
	}
	// Fail fast and recover alone when the database goes away (a restart,
	// a failover, a network cut). A connect that gets no answer gives up
	// after the connect timeout instead of pgxpool's two minutes, so it
	// neither outlives the caller's deadline by much nor holds a pool slot
	// long after the database is back. A connection idle for over a second
	// is pinged before it is handed out (pgxpool's default), and one whose
	// ping gets no answer within pingTimeout is discarded for another; a
	// connection that failed is closed and never returns to the pool. The
	// health check restores MinConns soon after an outage.
	switch {
	case cfg.ConnectTimeout > 0:
		pc.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	case pc.ConnConfig.ConnectTimeout <= 0:
		pc.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	if !strings.Contains(cfg.URL, "pool_ping_timeout") {
		pc.PingTimeout = pingTimeout
	}
	if !strings.Contains(cfg.URL, "pool_health_check_period") {
		pc.HealthCheckPeriod = healthCheckPeriod
	}
	if pc.ConnConfig.RuntimeParams == nil {
		pc.ConnConfig.RuntimeParams = map[string]string{}
	}
	if _, ok := pc.ConnConfig.RuntimeParams["application_name"]; !ok {
		pc.ConnConfig.RuntimeParams["application_name"] = "scopemem"
	}
	// pgx caches prepared statements; after five executions PostgreSQL may
	// switch one to a generic plan chosen without the tenant's parameters.
	// Planning is cheap next to a wrong plan, so plan every execution,
	// except where a transaction opts into the generic plans that
	// TestSearchPlan checks (searchSettingsSQL): searches of scopes
	// without their own index, an add's insert and vector checks, and
	// list_scopes' count, whose planning with row-level security's
	// policies cost more than running them.
	pc.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	pc.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if err := pgxvec.RegisterTypes(ctx, c); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) || isNetwork(err) {
				return err
			}
			return fmt.Errorf("%w: the pgvector extension is missing from this database (%v): run `scopemem migrate`", ErrNotMigrated, err)
		}
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &Store{pool: pool, log: cfg.Logger, efSearch: strconv.Itoa(cfg.EFSearch)}
	if cfg.VectorCacheBytes >= 0 {
		s.vecs = newVecCache(cmp.Or(cfg.VectorCacheBytes, DefaultVectorCacheBytes))
	}
	if err := s.check(ctx, cfg); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// check verifies the connection, the schema version and the role.
func (s *Store) check(ctx context.Context, cfg Config) error {
	var (
		version        *int64
		user           string
		super, bypass  bool
		owner, haveTbl bool
	)
	err := s.pool.QueryRow(ctx, `
		SELECT (SELECT max(version_id) FROM `+versionTable+` WHERE is_applied),
			current_user, r.rolsuper, r.rolbypassrls,
			COALESCE(pg_has_role(r.oid, c.relowner, 'USAGE'), false), c.oid IS NOT NULL
		FROM pg_roles r LEFT JOIN pg_class c ON c.oid = to_regclass('memories')
		WHERE r.rolname = current_user`).Scan(&version, &user, &super, &bypass, &owner, &haveTbl)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table: the version table
		return fmt.Errorf("postgres: %w: run `scopemem migrate` (or start with --migrate) with the owner's database URL", ErrNotMigrated)
	}
	if errors.Is(err, ErrNotMigrated) {
		return fmt.Errorf("postgres: %w", err)
	}
	if err != nil {
		return fmt.Errorf("postgres: %w", translate(err))
	}
	want := SchemaVersion()
	switch {
	case version == nil || *version < want || !haveTbl:
		have := int64(0)
		if version != nil {
			have = *version
		}
		return fmt.Errorf("postgres: %w: the schema is at version %d and this binary needs %d: run `scopemem migrate` (or start with --migrate)", ErrNotMigrated, have, want)
	case *version > want:
		return fmt.Errorf("postgres: %w: the schema is at version %d, newer than this binary knows (%d): upgrade scopemem", ErrNotMigrated, *version, want)
	}
	if (super || bypass) && !cfg.AllowPrivilegedRole {
		return fmt.Errorf("postgres: %w: role %q is a superuser or has BYPASSRLS, so row-level security would not apply; connect as the runtime role that `scopemem migrate` set up", ErrUnsafeRole, user)
	}
	if super || bypass {
		s.log.Warn("postgres: connected as a privileged role; row-level security does not apply", "role", user)
	} else if owner {
		s.log.Warn("postgres: connected as the owner of the tables; prefer the runtime role set up by `scopemem migrate`", "role", user)
	}
	return nil
}

// Close closes the pool, waiting for connections in use to be released.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// settings are the transaction-local settings the policies read.
type settings struct {
	id        scope.Identity
	purgeUser string // app.purge_user: a user whose own scopes a purge may delete
	purgeTeam string // app.purge_team: a team scope an admin purge may delete
	purgeOrg  bool   // app.purge_org: a purge of the whole org
}

// setIdentitySQL sets every policy setting in one round trip, local to the
// transaction (the third argument of set_config is true), and the HNSW
// search settings for the partial indexes of large scopes: ef_search, and
// iterative scans so that rows the filters drop (expired, other tags) are
// replaced by further neighbours instead of shrinking the result. Relaxed
// order is enough because the statements re-sort by distance.
const setIdentitySQL = `SELECT
	set_config('app.org_id', $1, true),
	set_config('app.user_id', $2, true),
	set_config('app.team_ids', $3::text[]::text, true),
	set_config('app.agent', $4, true),
	set_config('app.session_id', $5, true),
	set_config('app.perms', $6::text[]::text, true),
	set_config('app.purge_user', $7, true),
	set_config('app.purge_org', $8, true),
	set_config('app.purge_team', $9, true),
	set_config('hnsw.ef_search', $10, true),
	set_config('hnsw.iterative_scan', 'relaxed_order', true)`

// inTx runs fn in one transaction that first sets the identity. Read-only
// transactions may be served by a replica later; they also guard against
// a read path that writes.
func (s *Store) inTx(ctx context.Context, st settings, readOnly bool, fn func(pgx.Tx) error) error {
	opts := pgx.TxOptions{}
	if readOnly {
		opts.AccessMode = pgx.ReadOnly
	}
	tx, err := s.pool.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, setIdentitySQL, s.identityArgs(st)...); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// readBatch runs a read-only transaction in one round trip: BEGIN, the
// identity settings, the statements queue adds (with their result
// callbacks) and COMMIT go to the server as one pipeline. The settings
// are local to that transaction exactly as in inTx. When a statement
// fails, the server skips the rest, COMMIT included, and the transaction
// is rolled back before the connection returns to the pool (a connection
// that cannot be rolled back is not reused).
func (s *Store) readBatch(ctx context.Context, st settings, queue func(*pgx.Batch)) error {
	return s.readBatchWith(ctx, `BEGIN READ ONLY`, st, queue)
}

// beginSnapshot starts a read-only transaction whose statements all see
// one snapshot, taken at its first statement.
const beginSnapshot = `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`

// readBatchWith is readBatch with the transaction started by begin.
func (s *Store) readBatchWith(ctx context.Context, begin string, st settings, queue func(*pgx.Batch)) error {
	t, err := s.beginBatch(ctx, begin, st)
	if err != nil {
		return err
	}
	defer t.release(ctx)
	b := &pgx.Batch{}
	queue(b)
	return t.send(ctx, b, true)
}

// batchTx is a transaction whose statements go to the server in as few
// round trips as their dependencies allow: BEGIN and the identity
// settings travel with the first batch sent, COMMIT with the last
// (pgx.Tx spends a round trip on each). The settings are local to the
// transaction exactly as in inTx.
type batchTx struct {
	conn  *pgxpool.Conn
	first *pgx.Batch // BEGIN and the settings until the first send
}

// beginBatch takes a connection for a transaction started by begin, as
// st. Nothing is sent until send; release must follow.
func (s *Store) beginBatch(ctx context.Context, begin string, st settings) (*batchTx, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	b := &pgx.Batch{}
	b.Queue(begin)
	b.Queue(setIdentitySQL, s.identityArgs(st)...)
	return &batchTx{conn: conn, first: b}, nil
}

// send runs b's statements (after BEGIN and the settings, the first
// time) and then, with commit, COMMIT, in one round trip. When a
// statement fails, the server skips the rest, COMMIT included, and
// release rolls the transaction back.
func (t *batchTx) send(ctx context.Context, b *pgx.Batch, commit bool) error {
	if t.first != nil {
		t.first.QueuedQueries = append(t.first.QueuedQueries, b.QueuedQueries...)
		b, t.first = t.first, nil
	}
	if commit {
		b.Queue(`COMMIT`)
	}
	return t.conn.SendBatch(ctx, b).Close()
}

// Query runs one statement in the transaction, after a first send.
func (t *batchTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if t.first != nil {
		return nil, errors.New("batchTx: Query before the transaction began")
	}
	return t.conn.Query(ctx, sql, args...)
}

// release rolls back a transaction that did not commit and returns the
// connection to the pool (a connection that cannot be rolled back is
// closed, not reused).
func (t *batchTx) release(ctx context.Context) {
	if t.conn.Conn().PgConn().TxStatus() != 'I' {
		if _, err := t.conn.Exec(context.WithoutCancel(ctx), `ROLLBACK`); err != nil {
			t.conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}
	t.conn.Release()
}

// identityArgs are the arguments of setIdentitySQL for st.
func (s *Store) identityArgs(st settings) []any {
	perms := make([]string, 0, len(scope.AllPermissions))
	for _, p := range scope.AllPermissions {
		if st.id.Has(p) {
			perms = append(perms, string(p))
		}
	}
	teams := st.id.Teams
	if teams == nil {
		teams = []string{}
	}
	purgeOrg := ""
	if st.purgeOrg {
		purgeOrg = "on"
	}
	return []any{st.id.Org, st.id.User, teams, st.id.Agent, st.id.Session,
		perms, st.purgeUser, purgeOrg, st.purgeTeam, s.efSearch}
}

// translate maps a driver error to the store's sentinels, keeping the
// original in the chain. Driver errors never carry the password.
func translate(err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%w: %w", store.ErrNotFound, err)
	case errors.Is(err, ErrNotMigrated), errors.Is(err, ErrUnsafeRole):
		return err
	case errors.As(err, &pgErr):
		switch {
		case pgErr.Code == "23505", pgErr.Code == "40001", pgErr.Code == "40P01":
			return fmt.Errorf("%w: %w", store.ErrConflict, err)
		case pgErr.Code == "42501":
			return fmt.Errorf("%w: %w", scope.ErrForbidden, err)
		case pgErr.Code == "42P01", pgErr.Code == "42883", pgErr.Code == "3F000":
			return fmt.Errorf("%w: %w (run `scopemem migrate`)", ErrNotMigrated, err)
		case pgErr.Code == "25006", pgErr.Code == "53300", pgErr.Code == "53100",
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03",
			pgErr.Code[:2] == "08":
			return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		case pgErr.Code[:2] == "22" || pgErr.Code[:2] == "23":
			return fmt.Errorf("%w: %w", store.ErrInvalid, err)
		}
		return err
	case isNetwork(err), pgconn.SafeToRetry(err):
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

// isNetwork reports whether err is a connection failure.
func isNetwork(err error) bool {
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.Timeout(err)
}
