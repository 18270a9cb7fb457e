package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgvector/pgvector-go"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

var (
	_ store.Exporter  = (*Store)(nil)
	_ store.Importer  = (*Store)(nil)
	_ store.Reindexer = (*Store)(nil)
)

// PoolStat returns the connection pool's statistics, for metrics.
func (s *Store) PoolStat() *pgxpool.Stat { return s.pool.Stat() }

// setOn sets transaction-local settings to 'on' (the operator paths of
// migration 00200).
func setOn(ctx context.Context, tx pgx.Tx, names ...string) error {
	for _, n := range names {
		if _, err := tx.Exec(ctx, `SELECT set_config($1, 'on', true)`, n); err != nil {
			return err
		}
	}
	return nil
}

// Export streams the memories of id.Org that f keeps, by id, in one
// statement (one snapshot). The transaction sets app.export_org, which the
// export policy honours only for an admin of that org. Errors:
// store.ErrInvalid, store.ErrUnavailable, scope.ErrForbidden.
func (s *Store) Export(ctx context.Context, id scope.Identity, f store.ExportFilter, fn func(store.Record) error) error {
	info, err := store.StartExport(ctx, id, &f, s.Embedder)
	if err != nil {
		return err
	}
	where, args := `m.org_id = $1`, []any{id.Org}
	switch {
	case f.User != "":
		where += ` AND ((m.scope_kind = 'user' AND m.scope_id = $2)
			OR (m.scope_kind IN ('agent', 'session') AND m.scope_id >= $2 || '/' AND m.scope_id < $2 || '0'))`
		args = append(args, f.User)
	case f.Scope != nil:
		where += ` AND m.scope_kind = $2 AND m.scope_id = $3`
		args = append(args, string(f.Scope.Kind), f.Scope.ID)
	}
	cols := memoryCols
	if f.Vectors {
		cols += `, m.embedding`
	}
	var fnErr error
	err = s.inTx(ctx, settings{id: id}, true, func(tx pgx.Tx) error {
		if err := setOn(ctx, tx, "app.export_org"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+cols+` FROM memories m WHERE `+where+` ORDER BY m.id`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				r   store.Record
				emb *pgvector.Vector
			)
			var extra []any
			if f.Vectors {
				extra = append(extra, &emb)
			}
			if r.Memory, err = scanMemory(rows, extra...); err != nil {
				return err
			}
			if emb != nil {
				r.Vector, r.Embedder = emb.Slice(), info
			}
			if fnErr = fn(r); fnErr != nil {
				return fnErr
			}
		}
		return rows.Err()
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("export: %w", translate(err))
	}
	return nil
}

// Import stores records of id.Org as they were, skipping ids already in
// the org, with one INSERT ... ON CONFLICT DO NOTHING and one audit row per
// scope ('add', target 'import'). Errors: store.ErrInvalid (a
// *store.RecordError), store.ErrUnavailable, scope.ErrForbidden.
func (s *Store) Import(ctx context.Context, id scope.Identity, rs []store.Record) ([]store.ImportOutcome, error) {
	if err := store.RequireAdmin(id); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if len(rs) == 0 {
		return []store.ImportOutcome{}, nil
	}
	dims, err := s.vectorDims(ctx)
	if err != nil {
		return nil, fmt.Errorf("import: %w", translate(err))
	}
	n := len(rs)
	var (
		ids, kinds, sids, contents = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		tags, creators             = make([]string, n), make([]string, n)
		hashes                     = make([][]byte, n)
		metas                      = make([]*string, n)
		created, updated           = make([]time.Time, n), make([]time.Time, n)
		expires                    = make([]*time.Time, n)
		vecs                       = make([]pgvector.Vector, n)
	)
	for i := range rs {
		r := &rs[i]
		if err := store.ValidateRecord(r, id.Org, dims); err != nil {
			return nil, fmt.Errorf("import: %w", &store.RecordError{Index: i, Err: err})
		}
		ids[i], kinds[i], sids[i], contents[i] = r.ID, string(r.Scope.Kind), r.Scope.ID, r.Content
		tags[i], creators[i], hashes[i] = textArrayLiteral(r.Tags), r.CreatedBy, contentHash(r.Content)
		if r.Metadata != nil {
			m := string(r.Metadata)
			metas[i] = &m
		}
		created[i], updated[i], expires[i] = r.CreatedAt, r.UpdatedAt, r.ExpiresAt
		vecs[i] = pgvector.NewVector(r.Vector)
	}
	inserted := map[string]bool{}
	err = s.inTx(ctx, settings{id: id}, false, func(tx pgx.Tx) error {
		if err := setOn(ctx, tx, "app.export_org", "app.import_org"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			WITH ins AS (
				INSERT INTO memories AS m (org_id, id, scope_kind, scope_id, content, content_hash, tags, metadata,
					created_by, created_at, updated_at, expires_at, embedding)
				SELECT $1, n.id::uuid, n.kind, n.sid, n.content, n.hash, n.tags::text[], n.meta::jsonb,
					n.creator, n.created, n.updated, n.exp, n.vec
				FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::text[], $8::text[],
					$9::text[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], $13::vector[])
					AS n(id, kind, sid, content, hash, tags, meta, creator, created, updated, exp, vec)
				ON CONFLICT (org_id, id) DO NOTHING
				RETURNING m.id::text, m.scope_kind, m.scope_id
			), audit AS (
				INSERT INTO audit (org_id, actor, agent, action, scope_kind, scope_id, target, count)
				SELECT $1, $14, $15, 'add', scope_kind, scope_id, 'import', count(*) FROM ins GROUP BY scope_kind, scope_id
			)
			SELECT id FROM ins`,
			id.Org, ids, kinds, sids, contents, hashes, tags, metas, creators, created, updated, expires, vecs, id.User, id.Agent)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var mid string
			if err := rows.Scan(&mid); err != nil {
				return err
			}
			inserted[mid] = true
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("import: %w", translate(err))
	}
	out := make([]store.ImportOutcome, n)
	for i, mid := range ids {
		// ids are UUID strings as PostgreSQL prints them once parsed.
		if key := canonicalUUID(mid); inserted[key] {
			out[i] = store.Imported
			delete(inserted, key) // a repeat of the id later in the batch was not stored again
		} else {
			out[i] = store.AlreadyPresent
		}
	}
	return out, nil
}

// canonicalUUID writes a UUID the way PostgreSQL's uuid::text does.
func canonicalUUID(s string) string {
	u, err := parseID(s)
	if err != nil {
		return s
	}
	return u
}

// reindexKey is the meta key of the reindex in progress.
const reindexKey = "reindex"

type reindexJSON struct {
	Target  embedderJSON `json:"target"`
	Started time.Time    `json:"started"`
}

// errNotOwner is returned by the reindex calls on a store opened as a
// role that does not own the tables.
var errNotOwner = fmt.Errorf("%w: reindex crosses every org, so it needs the connection of the role that owns the schema (the URL `scopemem migrate` uses), not the runtime role", scope.ErrForbidden)

// inReindex runs fn in a transaction with app.reindex on, after checking
// that the connected role owns the memories table (the reindex policies
// admit only the owner). A superuser passes too: RLS does not hold it.
func (s *Store) inReindex(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var owner bool
	if err := tx.QueryRow(ctx, `SELECT r.rolsuper OR pg_has_role(current_user, c.relowner, 'USAGE')
		FROM pg_roles r, pg_class c WHERE r.rolname = current_user AND c.oid = to_regclass('memories')`).Scan(&owner); err != nil {
		return err
	}
	if !owner {
		return errNotOwner
	}
	if err := setOn(ctx, tx, "app.reindex"); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// readReindex returns the reindex in progress, if any.
func readReindex(ctx context.Context, tx pgx.Tx) (reindexJSON, bool, error) {
	var raw []byte
	err := tx.QueryRow(ctx, `SELECT value::text FROM meta WHERE key = $1`, reindexKey).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return reindexJSON{}, false, nil
	}
	if err != nil {
		return reindexJSON{}, false, err
	}
	var r reindexJSON
	if err := json.Unmarshal(raw, &r); err != nil {
		return reindexJSON{}, false, fmt.Errorf("the recorded reindex %s is not valid: %w", raw, err)
	}
	return r, true, nil
}

func (r reindexJSON) info() store.EmbedderInfo {
	return store.EmbedderInfo{Provider: r.Target.Provider, Model: r.Target.Model, Dimensions: r.Target.Dimensions}
}

// reindexCounts counts every memory and those with a fresh staged vector.
func reindexCounts(ctx context.Context, tx pgx.Tx) (total, done int, err error) {
	err = tx.QueryRow(ctx, `SELECT count(*), count(r.id) FROM memories m
		LEFT JOIN reindex_vectors r ON r.org_id = m.org_id AND r.id = m.id AND r.content_hash = m.content_hash`).Scan(&total, &done)
	return total, done, err
}

// BeginReindex starts or resumes a reindex to target. It needs the owner's
// connection (else scope.ErrForbidden). Errors: store.ErrInvalid,
// store.ErrUnavailable, scope.ErrForbidden.
func (s *Store) BeginReindex(ctx context.Context, target store.EmbedderInfo) (store.ReindexStatus, error) {
	if err := store.CheckTarget(target); err != nil {
		return store.ReindexStatus{}, err
	}
	var st store.ReindexStatus
	err := s.inReindex(ctx, func(tx pgx.Tx) error {
		// One reindex at a time: a second command waits here.
		if _, err := tx.Exec(ctx, `LOCK TABLE reindex_vectors IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return err
		}
		cur, ok, err := readReindex(ctx, tx)
		if err != nil {
			return err
		}
		if !ok || cur.info() != target {
			if ok {
				s.log.Warn("discarding the vectors staged for another reindex target", "was", cur.info(), "now", target)
			}
			if _, err := tx.Exec(ctx, `DELETE FROM reindex_vectors`); err != nil {
				return err
			}
			cur = reindexJSON{Target: embedderJSON{target.Provider, target.Model, target.Dimensions}, Started: time.Now().UTC()}
			raw, err := json.Marshal(cur)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2::jsonb)
				ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()`, reindexKey, string(raw)); err != nil {
				return err
			}
		}
		st = store.ReindexStatus{Active: true, Target: cur.info(), Started: cur.Started}
		st.Total, st.Done, err = reindexCounts(ctx, tx)
		return err
	})
	if err != nil {
		return store.ReindexStatus{}, fmt.Errorf("begin reindex: %w", translate(err))
	}
	return st, nil
}

// ReindexStatus reports the reindex in progress. Errors:
// store.ErrUnavailable, scope.ErrForbidden.
func (s *Store) ReindexStatus(ctx context.Context) (store.ReindexStatus, error) {
	var st store.ReindexStatus
	err := s.inReindex(ctx, func(tx pgx.Tx) error {
		cur, ok, err := readReindex(ctx, tx)
		if err != nil || !ok {
			return err
		}
		st = store.ReindexStatus{Active: true, Target: cur.info(), Started: cur.Started}
		st.Total, st.Done, err = reindexCounts(ctx, tx)
		return err
	})
	if err != nil {
		return store.ReindexStatus{}, fmt.Errorf("reindex status: %w", translate(err))
	}
	return st, nil
}

// ReindexPending returns up to n memories after `after`, in (org, id)
// order, without a staged vector for their current content. Errors:
// store.ErrNoReindex, store.ErrUnavailable, scope.ErrForbidden.
func (s *Store) ReindexPending(ctx context.Context, after *store.ReindexItem, n int) ([]store.ReindexItem, error) {
	if n <= 0 {
		return nil, fmt.Errorf("%w: reindex batch size %d must be positive", store.ErrInvalid, n)
	}
	org, mid := "", "00000000-0000-0000-0000-000000000000"
	if after != nil {
		org, mid = after.Org, after.ID
	}
	var out []store.ReindexItem
	err := s.inReindex(ctx, func(tx pgx.Tx) error {
		if _, ok, err := readReindex(ctx, tx); err != nil {
			return err
		} else if !ok {
			return store.ErrNoReindex
		}
		rows, err := tx.Query(ctx, `SELECT m.org_id, m.id::text, m.content, m.content_hash FROM memories m
			WHERE (m.org_id, m.id) > ($1, $2::uuid)
				AND NOT EXISTS (SELECT 1 FROM reindex_vectors r
					WHERE r.org_id = m.org_id AND r.id = m.id AND r.content_hash = m.content_hash)
			ORDER BY m.org_id, m.id
			LIMIT $3`, org, mid, n)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var it store.ReindexItem
			if err := rows.Scan(&it.Org, &it.ID, &it.Content, &it.Hash); err != nil {
				return err
			}
			out = append(out, it)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("reindex: list pending memories: %w", translate(err))
	}
	return out, nil
}

// StageVectors stores new vectors of the target's dimensions. Errors:
// store.ErrNoReindex, store.ErrInvalid, store.ErrUnavailable,
// scope.ErrForbidden.
func (s *Store) StageVectors(ctx context.Context, vs []store.StagedVector) error {
	if len(vs) == 0 {
		return nil
	}
	err := s.inReindex(ctx, func(tx pgx.Tx) error {
		cur, ok, err := readReindex(ctx, tx)
		if err != nil {
			return err
		}
		if !ok {
			return store.ErrNoReindex
		}
		orgs, ids, hashes := make([]string, len(vs)), make([]string, len(vs)), make([][]byte, len(vs))
		vecs := make([]pgvector.Vector, len(vs))
		for i, v := range vs {
			if vecs[i], err = checkVector(v.Vector, cur.Target.Dimensions); err != nil {
				return fmt.Errorf("memory %s: %w", v.ID, err)
			}
			if ids[i], err = parseID(v.ID); err != nil {
				return fmt.Errorf("%w: %w", store.ErrInvalid, err)
			}
			orgs[i], hashes[i] = v.Org, v.Hash
		}
		_, err = tx.Exec(ctx, `INSERT INTO reindex_vectors (org_id, id, content_hash, embedding)
			SELECT n.org, n.id::uuid, n.hash, n.vec
			FROM unnest($1::text[], $2::text[], $3::bytea[], $4::vector[]) AS n(org, id, hash, vec)
			WHERE EXISTS (SELECT 1 FROM memories m WHERE m.org_id = n.org AND m.id = n.id::uuid)
			ON CONFLICT (org_id, id) DO UPDATE SET content_hash = excluded.content_hash, embedding = excluded.embedding`,
			orgs, ids, hashes, vecs)
		return err
	})
	if err != nil {
		return fmt.Errorf("reindex: stage vectors: %w", translate(err))
	}
	return nil
}

// CommitReindex switches every memory to its staged vector and records
// the target embedder. It locks the memories table against writes (not
// reads) for the length of the switch. Errors: store.ErrNoReindex,
// store.ErrReindexPending, store.ErrUnavailable, scope.ErrForbidden.
func (s *Store) CommitReindex(ctx context.Context) error {
	var target store.EmbedderInfo
	err := s.inReindex(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE memories IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return err
		}
		cur, ok, err := readReindex(ctx, tx)
		if err != nil {
			return err
		}
		if !ok {
			return store.ErrNoReindex
		}
		target = cur.info()
		total, done, err := reindexCounts(ctx, tx)
		if err != nil {
			return err
		}
		if done < total {
			return fmt.Errorf("%w: %d of %d", store.ErrReindexPending, total-done, total)
		}
		if _, err := tx.Exec(ctx, `UPDATE memories m SET embedding = r.embedding FROM reindex_vectors r
			WHERE r.org_id = m.org_id AND r.id = m.id`); err != nil {
			return err
		}
		raw, err := json.Marshal(cur.Target)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2::jsonb)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()`, embedderKey, string(raw)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM reindex_vectors`); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM meta WHERE key = $1`, reindexKey)
		return err
	})
	if err != nil {
		if errors.Is(err, store.ErrReindexPending) || errors.Is(err, store.ErrNoReindex) {
			return fmt.Errorf("commit reindex: %w", err)
		}
		return fmt.Errorf("commit reindex: %w", translate(err))
	}
	s.mu.Lock()
	s.dims = target.Dimensions
	s.mu.Unlock()
	return nil
}

// AbortReindex discards the reindex in progress. Errors:
// store.ErrUnavailable, scope.ErrForbidden.
func (s *Store) AbortReindex(ctx context.Context) error {
	err := s.inReindex(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM reindex_vectors`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM meta WHERE key = $1`, reindexKey)
		return err
	})
	if err != nil {
		return fmt.Errorf("abort reindex: %w", translate(err))
	}
	return nil
}

// Inspection is what [Inspect] learns about a database, for `scopemem
// doctor`.
type Inspection struct {
	// Role is the connected role; Superuser, BypassRLS and Owner say
	// whether row-level security would fail to hold it (Owner: it owns the
	// memories table or is a member of its owner).
	Role                        string
	Superuser, BypassRLS, Owner bool
	// Pgvector is the installed pgvector version, "" when it is missing.
	Pgvector string
	// SchemaVersion is the applied migration version, 0 when none;
	// WantSchema is what this binary needs.
	SchemaVersion, WantSchema int64
	// ServerTime is the database's now(), and RoundTrip how long the
	// query that read it took.
	ServerTime time.Time
	RoundTrip  time.Duration
}

// Inspect connects to url and reads what `scopemem doctor` checks: the
// role, pgvector, the schema version and the server's clock. Only an
// unreachable database is an error (wrapping store.ErrUnavailable).
func Inspect(ctx context.Context, url string) (Inspection, error) {
	in := Inspection{WantSchema: SchemaVersion()}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return in, fmt.Errorf("%w: parse database URL: %w", store.ErrInvalid, err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return in, fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	start := time.Now()
	var pgv *string
	err = conn.QueryRow(ctx, `SELECT now(), current_user, r.rolsuper, r.rolbypassrls,
			COALESCE((SELECT pg_has_role(r.oid, c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = to_regclass('memories')), false),
			(SELECT extversion FROM pg_extension WHERE extname = 'vector')
		FROM pg_roles r WHERE r.rolname = current_user`).Scan(&in.ServerTime, &in.Role, &in.Superuser, &in.BypassRLS, &in.Owner, &pgv)
	in.RoundTrip = time.Since(start)
	if err != nil {
		return in, fmt.Errorf("inspect: %w", translate(err))
	}
	if pgv != nil {
		in.Pgvector = *pgv
	}
	var have bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, versionTable).Scan(&have); err != nil {
		return in, fmt.Errorf("inspect: %w", translate(err))
	}
	if have {
		var v *int64
		if err := conn.QueryRow(ctx, `SELECT max(version_id) FROM `+versionTable+` WHERE is_applied`).Scan(&v); err != nil {
			return in, fmt.Errorf("inspect: read the schema version: %w", translate(err))
		}
		if v != nil {
			in.SchemaVersion = *v
		}
	}
	return in, nil
}
