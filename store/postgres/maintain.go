package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/scopemem/scopemem/scope"
)

// DefaultIndexMinRows is the scope size at which Maintain gives a scope
// its own approximate index when MaintainOptions.MinRows is zero. Below
// it, an exact search of the scope takes a few milliseconds (see
// BENCHMARKS.md).
const DefaultIndexMinRows = 10_000

// indexPrefix starts the name of every per-scope index.
const indexPrefix = "memories_ann_"

// maintainLockKey is the session advisory lock one Maintain run holds.
const maintainLockKey = 0x73636f70656d656d // "scopemem"

// MaintainOptions configures [Maintain]. The zero value is usable.
type MaintainOptions struct {
	// MinRows is the scope size at which a scope gets its own HNSW index;
	// an index is dropped again when its scope shrinks below half of it.
	// Zero means DefaultIndexMinRows.
	MinRows int
	// M and EFConstruction are the HNSW build parameters. Zero means
	// pgvector's defaults, 16 and 64.
	M, EFConstruction int
	// MaintenanceWorkMem, e.g. "1GB", is set for the session that builds
	// the indexes: a build whose graph does not fit is much slower. Empty
	// keeps the server's setting.
	MaintenanceWorkMem string
	// Logger receives one line per index created or dropped. Nil discards.
	Logger *slog.Logger
}

func (o MaintainOptions) withDefaults() MaintainOptions {
	if o.MinRows <= 0 {
		o.MinRows = DefaultIndexMinRows
	}
	if o.M <= 0 {
		o.M = 16
	}
	if o.EFConstruction <= 0 {
		o.EFConstruction = 64
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// ScopeIndex describes the approximate index of one large scope.
type ScopeIndex struct {
	// Org and Scope name the scope.
	Org   string
	Scope scope.Scope
	// Dims is the vector dimension the index covers.
	Dims int
	// Name is the index name.
	Name string
	// Rows is the scope's row count when Maintain last looked.
	Rows int64
}

// MaintainResult reports what one [Maintain] run did.
type MaintainResult struct {
	// Created and Dropped are the indexes built and removed by this run.
	Created, Dropped []ScopeIndex
	// Indexed is every per-scope index in place after the run.
	Indexed []ScopeIndex
	// Busy is true when another Maintain held the lock, so this run did
	// nothing.
	Busy bool
}

// Maintain gives every scope with at least opts.MinRows memories its own
// partial HNSW index, so that searching it (and checking its new memories
// for near-duplicates) stays fast however large it grows, and drops the
// index of a scope that shrank below half of that. Smaller scopes are
// searched exactly and need nothing.
//
// It connects to ownerURL as the owner of the tables (only the owner may
// create indexes) and builds with CREATE INDEX CONCURRENTLY, which blocks
// no reads or writes; an index left invalid by an interrupted build is
// dropped and built again. A session advisory lock makes concurrent runs
// (one per replica, say) skip rather than repeat the work: the run that
// finds the lock taken returns with Busy set. Run it periodically, e.g.
// every few minutes beside the expiry janitor; search is correct without
// it, only slower for large scopes.
//
// Index definitions, including the org and scope ids in their WHERE
// clauses, are visible in the system catalogs to every role that can
// connect to the database.
func Maintain(ctx context.Context, ownerURL string, opts MaintainOptions) (MaintainResult, error) {
	opts = opts.withDefaults()
	var res MaintainResult
	cfg, err := pgx.ParseConfig(ownerURL)
	if err != nil {
		return res, fmt.Errorf("maintain: parse owner database URL: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return res, fmt.Errorf("maintain: %w", translate(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(maintainLockKey)).Scan(&locked); err != nil {
		return res, fmt.Errorf("maintain: %w", translate(err))
	}
	if !locked {
		res.Busy = true
		return res, nil
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(maintainLockKey))

	if opts.MaintenanceWorkMem != "" {
		if _, err := conn.Exec(ctx, `SELECT set_config('maintenance_work_mem', $1, false)`, opts.MaintenanceWorkMem); err != nil {
			return res, fmt.Errorf("maintain: maintenance_work_mem %q: %w", opts.MaintenanceWorkMem, translate(err))
		}
	}
	dims, err := recordedDims(ctx, conn)
	if err != nil || dims == 0 {
		return res, err // no embedder recorded yet: no vectors to index
	}
	if err := dropInvalid(ctx, conn, opts.Logger); err != nil {
		return res, err
	}
	sizes, err := scopeSizes(ctx, conn, int64(opts.MinRows/2))
	if err != nil {
		return res, err
	}
	existing, err := registeredIndexes(ctx, conn)
	if err != nil {
		return res, err
	}

	for key, ix := range existing {
		n := sizes[key]
		ix.Rows = n
		if ix.Dims == dims && n >= int64(opts.MinRows/2) {
			res.Indexed = append(res.Indexed, ix)
			continue
		}
		if err := dropScopeIndex(ctx, conn, ix); err != nil {
			return res, err
		}
		opts.Logger.Info("dropped scope index", "org", ix.Org, "scope", ix.Scope.Qualified(), "index", ix.Name, "rows", n)
		res.Dropped = append(res.Dropped, ix)
		delete(existing, key)
	}
	for key, n := range sizes {
		if n < int64(opts.MinRows) {
			continue
		}
		if _, ok := existing[key]; ok {
			continue
		}
		ix := ScopeIndex{Org: key.org, Scope: key.scope, Dims: dims, Name: indexName(key.org, key.scope, dims), Rows: n}
		if err := createScopeIndex(ctx, conn, ix, opts); err != nil {
			return res, err
		}
		opts.Logger.Info("created scope index", "org", ix.Org, "scope", ix.Scope.Qualified(), "index", ix.Name, "rows", n)
		res.Created = append(res.Created, ix)
		res.Indexed = append(res.Indexed, ix)
	}
	return res, nil
}

// scopeKey names one scope of one org.
type scopeKey struct {
	org   string
	scope scope.Scope
}

// indexName is the deterministic name of a scope's index: the prefix and
// a hash, since ids may be long or contain any character.
func indexName(org string, s scope.Scope, dims int) string {
	h := sha256.Sum256([]byte(org + "\x00" + string(s.Kind) + "\x00" + s.ID + "\x00" + strconv.Itoa(dims)))
	return indexPrefix + hex.EncodeToString(h[:12])
}

// recordedDims reads the embedder's dimension from meta, or 0.
func recordedDims(ctx context.Context, conn *pgx.Conn) (int, error) {
	var raw []byte
	err := conn.QueryRow(ctx, `SELECT value::text FROM meta WHERE key = $1`, embedderKey).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("maintain: read embedder: %w", translate(err))
	}
	var e embedderJSON
	if err := json.Unmarshal(raw, &e); err != nil {
		return 0, fmt.Errorf("maintain: stored embedder record %s is not valid: %w", raw, err)
	}
	return e.Dimensions, nil
}

// scopeSizes counts the rows of every scope with at least min of them,
// reading through the owner's maintenance policy.
func scopeSizes(ctx context.Context, conn *pgx.Conn, min int64) (map[scopeKey]int64, error) {
	out := map[scopeKey]int64{}
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('app.maintain', 'on', true)`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT org_id, scope_kind, scope_id, count(*) FROM memories
			GROUP BY org_id, scope_kind, scope_id HAVING count(*) >= $1`, min)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k scopeKey
			var kind string
			var n int64
			if err := rows.Scan(&k.org, &kind, &k.scope.ID, &n); err != nil {
				return err
			}
			k.scope.Kind = scope.Kind(kind)
			out[k] = n
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("maintain: count scopes: %w", translate(err))
	}
	return out, nil
}

// registeredIndexes reads the registry, dropping entries whose index no
// longer exists.
func registeredIndexes(ctx context.Context, conn *pgx.Conn) (map[scopeKey]ScopeIndex, error) {
	rows, err := conn.Query(ctx, `SELECT s.org_id, s.scope_kind, s.scope_id, s.dims, s.index_name, s.rows_built,
			to_regclass(quote_ident(current_schema()) || '.' || quote_ident(s.index_name)) IS NOT NULL
		FROM scope_indexes s`)
	if err != nil {
		return nil, fmt.Errorf("maintain: read scope indexes: %w", translate(err))
	}
	out := map[scopeKey]ScopeIndex{}
	var gone []string
	for rows.Next() {
		var (
			ix     ScopeIndex
			kind   string
			exists bool
		)
		if err := rows.Scan(&ix.Org, &kind, &ix.Scope.ID, &ix.Dims, &ix.Name, &ix.Rows, &exists); err != nil {
			rows.Close()
			return nil, fmt.Errorf("maintain: read scope indexes: %w", translate(err))
		}
		ix.Scope.Kind = scope.Kind(kind)
		if !exists {
			gone = append(gone, ix.Name)
			continue
		}
		out[scopeKey{ix.Org, ix.Scope}] = ix
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("maintain: read scope indexes: %w", translate(err))
	}
	if len(gone) > 0 {
		if _, err := conn.Exec(ctx, `DELETE FROM scope_indexes WHERE index_name = ANY ($1)`, gone); err != nil {
			return nil, fmt.Errorf("maintain: forget missing indexes: %w", translate(err))
		}
	}
	return out, nil
}

// dropInvalid drops per-scope indexes that an interrupted concurrent
// build left invalid, and forgets them.
func dropInvalid(ctx context.Context, conn *pgx.Conn, log *slog.Logger) error {
	rows, err := conn.Query(ctx, `SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		WHERE i.indrelid = 'memories'::regclass AND NOT i.indisvalid AND c.relname LIKE $1`, indexPrefix+"%")
	if err != nil {
		return fmt.Errorf("maintain: find invalid indexes: %w", translate(err))
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("maintain: find invalid indexes: %w", translate(err))
	}
	for _, name := range names {
		if err := execFormatted(ctx, conn, `DROP INDEX CONCURRENTLY IF EXISTS %I`, name); err != nil {
			return fmt.Errorf("maintain: drop invalid index %s: %w", name, err)
		}
		if _, err := conn.Exec(ctx, `DELETE FROM scope_indexes WHERE index_name = $1`, name); err != nil {
			return fmt.Errorf("maintain: forget invalid index %s: %w", name, translate(err))
		}
		log.Info("dropped invalid scope index", "index", name)
	}
	return nil
}

// createScopeIndex builds the partial HNSW index of one scope and
// registers it. The predicate repeats what every vector statement of the
// store says about the scope (see vectorBranch and dupVectorSQL), so the
// planner can prove that the index covers them.
func createScopeIndex(ctx context.Context, conn *pgx.Conn, ix ScopeIndex, opts MaintainOptions) error {
	d := strconv.Itoa(ix.Dims)
	err := execFormatted(ctx, conn, `CREATE INDEX CONCURRENTLY IF NOT EXISTS %I ON memories
		USING hnsw ((embedding::vector(`+d+`)) vector_cosine_ops)
		WITH (m = %s, ef_construction = %s)
		WHERE org_id = %L AND scope_kind = %L AND scope_id = %L
			AND embedding IS NOT NULL AND vector_dims(embedding) = `+d,
		ix.Name, strconv.Itoa(opts.M), strconv.Itoa(opts.EFConstruction), ix.Org, string(ix.Scope.Kind), ix.Scope.ID)
	if err != nil {
		return fmt.Errorf("maintain: create index for %s %s: %w", ix.Org, ix.Scope.Qualified(), err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO scope_indexes (org_id, scope_kind, scope_id, dims, index_name, rows_built)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (org_id, scope_kind, scope_id, dims) DO UPDATE
			SET index_name = EXCLUDED.index_name, rows_built = EXCLUDED.rows_built, created_at = now()`,
		ix.Org, string(ix.Scope.Kind), ix.Scope.ID, ix.Dims, ix.Name, ix.Rows); err != nil {
		return fmt.Errorf("maintain: register index %s: %w", ix.Name, translate(err))
	}
	return nil
}

// dropScopeIndex removes one scope's index and its registry entry.
func dropScopeIndex(ctx context.Context, conn *pgx.Conn, ix ScopeIndex) error {
	if err := execFormatted(ctx, conn, `DROP INDEX CONCURRENTLY IF EXISTS %I`, ix.Name); err != nil {
		return fmt.Errorf("maintain: drop index %s: %w", ix.Name, err)
	}
	if _, err := conn.Exec(ctx, `DELETE FROM scope_indexes WHERE index_name = $1`, ix.Name); err != nil {
		return fmt.Errorf("maintain: forget index %s: %w", ix.Name, translate(err))
	}
	return nil
}
