package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

var (
	_ store.Exporter  = (*Store)(nil)
	_ store.Importer  = (*Store)(nil)
	_ store.Reindexer = (*Store)(nil)
)

// Export streams the memories of id.Org that f keeps, by id, from one read
// transaction. Errors: store.ErrInvalid, store.ErrUnavailable,
// scope.ErrForbidden.
func (s *Store) Export(ctx context.Context, id scope.Identity, f store.ExportFilter, fn func(store.Record) error) error {
	info, err := store.StartExport(ctx, id, &f, s.Embedder)
	if err != nil {
		return err
	}
	where, args := `m.org_id = ?`, []any{id.Org}
	switch {
	case f.User != "":
		where += ` AND ((m.scope_kind = 'user' AND m.scope_id = ?) OR
			(m.scope_kind IN ('agent', 'session') AND m.scope_id >= ? AND m.scope_id < ?))`
		args = append(args, f.User, f.User+"/", f.User+"0")
	case f.Scope != nil:
		where += ` AND m.scope_kind = ? AND m.scope_id = ?`
		args = append(args, string(f.Scope.Kind), f.Scope.ID)
	}
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("export: %w", s.translate(err))
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT `+memoryColsM+`, v.vector FROM memories m LEFT JOIN memory_vectors v ON v.rid = m.rid
		WHERE `+where+` ORDER BY m.id`, args...)
	if err != nil {
		return fmt.Errorf("export: %w", s.translate(err))
	}
	defer rows.Close()
	for rows.Next() {
		var blob []byte
		_, m, err := scanMemory(rows, &blob)
		if err != nil {
			return fmt.Errorf("export: %w", s.translate(err))
		}
		r := store.Record{Memory: m}
		if f.Vectors && len(blob) == 4*info.Dimensions {
			r.Vector, r.Embedder = decodeVector(blob, make([]float32, info.Dimensions)), info
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("export: %w", s.translate(err))
	}
	return nil
}

// Import stores records of id.Org as they were, skipping ids already in
// the org, in one write transaction. An id held by another org fails the
// batch with a *store.RecordError wrapping store.ErrConflict. Errors:
// store.ErrInvalid, store.ErrConflict, store.ErrUnavailable,
// scope.ErrForbidden.
func (s *Store) Import(ctx context.Context, id scope.Identity, rs []store.Record) ([]store.ImportOutcome, error) {
	if err := store.RequireAdmin(id); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if len(rs) == 0 {
		return []store.ImportOutcome{}, nil
	}
	out := make([]store.ImportOutcome, len(rs))
	err := s.write(ctx, func(tx writeTx) error {
		dims, err := s.storedDims(ctx, tx)
		if err != nil {
			return err
		}
		for i := range rs {
			if err := store.ValidateRecord(&rs[i], id.Org, dims); err != nil {
				return &store.RecordError{Index: i, Err: err}
			}
		}
		touched := map[scopeKey]bool{}
		for i := range rs {
			r := &rs[i]
			var org string
			err := tx.QueryRowContext(ctx, `SELECT org_id FROM memories WHERE id = ?`, r.ID).Scan(&org)
			switch {
			case err == nil && org == id.Org:
				out[i] = store.AlreadyPresent
				continue
			case err == nil:
				return &store.RecordError{Index: i, Err: fmt.Errorf("%w: id %s is already used by a memory of another org", store.ErrConflict, r.ID)}
			case !errors.Is(err, sql.ErrNoRows):
				return s.translate(err)
			}
			var meta, expires any
			if r.Metadata != nil {
				meta = string(r.Metadata)
			}
			if r.ExpiresAt != nil {
				expires = r.ExpiresAt.UnixNano()
			}
			res, err := tx.ExecContext(ctx, `INSERT INTO memories (id, org_id, scope_kind, scope_id, content, content_hash, tags,
				metadata, created_by, created_at, updated_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				r.ID, id.Org, string(r.Scope.Kind), r.Scope.ID, r.Content, contentHash(r.Content), encodeTags(r.Tags),
				meta, r.CreatedBy, r.CreatedAt.UnixNano(), r.UpdatedAt.UnixNano(), expires)
			if err != nil {
				return s.translate(err)
			}
			rid, err := res.LastInsertId()
			if err != nil {
				return s.translate(err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO memory_vectors (rid, vector) VALUES (?, ?)`, rid, encodeVector(r.Vector)); err != nil {
				return s.translate(err)
			}
			for _, t := range r.Tags {
				if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO memory_tags (rid, tag) VALUES (?, ?)`, rid, t); err != nil {
					return s.translate(err)
				}
			}
			touched[keyOf(id.Org, r.Scope)] = true
			out[i] = store.Imported
		}
		// Bumping the change counters makes every process's vector cache
		// reload these scopes.
		for k := range touched {
			if err := bumpVersion(ctx, tx, k); err != nil {
				return s.translate(err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return out, nil
}

// bumpVersion increments the change counter of one scope.
func bumpVersion(ctx context.Context, tx writeTx, k scopeKey) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO scope_versions (org_id, scope_kind, scope_id, version) VALUES (?, ?, ?, 1)
		ON CONFLICT (org_id, scope_kind, scope_id) DO UPDATE SET version = version + 1`, k.org, string(k.kind), k.id)
	return err
}

// reindexKey is the meta key of the reindex in progress.
const reindexKey = "reindex"

type reindexJSON struct {
	Provider   string    `json:"provider"`
	Model      string    `json:"model"`
	Dimensions int       `json:"dimensions"`
	Started    time.Time `json:"started"`
}

func (r reindexJSON) info() store.EmbedderInfo {
	return store.EmbedderInfo{Provider: r.Provider, Model: r.Model, Dimensions: r.Dimensions}
}

func readReindex(ctx context.Context, q querier) (reindexJSON, bool, error) {
	var raw string
	err := q.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, reindexKey).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return reindexJSON{}, false, nil
	}
	if err != nil {
		return reindexJSON{}, false, err
	}
	var r reindexJSON
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return reindexJSON{}, false, fmt.Errorf("the recorded reindex %q is not valid: %w", raw, err)
	}
	return r, true, nil
}

func reindexCounts(ctx context.Context, q querier) (total, done int, err error) {
	err = q.QueryRowContext(ctx, `SELECT count(*), count(r.rid) FROM memories m
		LEFT JOIN reindex_vectors r ON r.rid = m.rid AND r.content_hash = m.content_hash`).Scan(&total, &done)
	return total, done, err
}

// BeginReindex starts or resumes a reindex to target. Errors:
// store.ErrInvalid, store.ErrUnavailable.
func (s *Store) BeginReindex(ctx context.Context, target store.EmbedderInfo) (store.ReindexStatus, error) {
	if err := store.CheckTarget(target); err != nil {
		return store.ReindexStatus{}, err
	}
	var st store.ReindexStatus
	err := s.write(ctx, func(tx writeTx) error {
		cur, ok, err := readReindex(ctx, tx)
		if err != nil {
			return s.translate(err)
		}
		if !ok || cur.info() != target {
			if ok {
				s.cfg.Logger.Warn("discarding the vectors staged for another reindex target", "was", cur.info(), "now", target)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM reindex_vectors`); err != nil {
				return s.translate(err)
			}
			cur = reindexJSON{Provider: target.Provider, Model: target.Model, Dimensions: target.Dimensions, Started: time.Now().UTC()}
			raw, err := json.Marshal(cur)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
				ON CONFLICT (key) DO UPDATE SET value = excluded.value`, reindexKey, string(raw)); err != nil {
				return s.translate(err)
			}
		}
		st = store.ReindexStatus{Active: true, Target: cur.info(), Started: cur.Started}
		st.Total, st.Done, err = reindexCounts(ctx, tx)
		return s.translate(err)
	})
	if err != nil {
		return store.ReindexStatus{}, fmt.Errorf("begin reindex: %w", err)
	}
	return st, nil
}

// ReindexStatus reports the reindex in progress. Errors:
// store.ErrUnavailable.
func (s *Store) ReindexStatus(ctx context.Context) (store.ReindexStatus, error) {
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return store.ReindexStatus{}, fmt.Errorf("reindex status: %w", s.translate(err))
	}
	defer tx.Rollback()
	cur, ok, err := readReindex(ctx, tx)
	if err != nil || !ok {
		return store.ReindexStatus{}, s.translate(err)
	}
	st := store.ReindexStatus{Active: true, Target: cur.info(), Started: cur.Started}
	if st.Total, st.Done, err = reindexCounts(ctx, tx); err != nil {
		return store.ReindexStatus{}, fmt.Errorf("reindex status: %w", s.translate(err))
	}
	return st, nil
}

// ReindexPending returns up to n memories after `after`, in id order,
// without a staged vector for their current content. Errors:
// store.ErrNoReindex, store.ErrInvalid, store.ErrUnavailable.
func (s *Store) ReindexPending(ctx context.Context, after *store.ReindexItem, n int) ([]store.ReindexItem, error) {
	if n <= 0 {
		return nil, fmt.Errorf("%w: reindex batch size %d must be positive", store.ErrInvalid, n)
	}
	from := ""
	if after != nil {
		from = after.ID
	}
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("reindex: %w", s.translate(err))
	}
	defer tx.Rollback()
	if _, ok, err := readReindex(ctx, tx); err != nil {
		return nil, fmt.Errorf("reindex: %w", s.translate(err))
	} else if !ok {
		return nil, fmt.Errorf("reindex: %w", store.ErrNoReindex)
	}
	rows, err := tx.QueryContext(ctx, `SELECT m.org_id, m.id, m.content, m.content_hash FROM memories m
		WHERE m.id > ? AND NOT EXISTS (SELECT 1 FROM reindex_vectors r WHERE r.rid = m.rid AND r.content_hash = m.content_hash)
		ORDER BY m.id LIMIT ?`, from, n)
	if err != nil {
		return nil, fmt.Errorf("reindex: list pending memories: %w", s.translate(err))
	}
	defer rows.Close()
	var out []store.ReindexItem
	for rows.Next() {
		var it store.ReindexItem
		if err := rows.Scan(&it.Org, &it.ID, &it.Content, &it.Hash); err != nil {
			return nil, fmt.Errorf("reindex: %w", s.translate(err))
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reindex: %w", s.translate(err))
	}
	return out, nil
}

// StageVectors stores new vectors of the target's dimensions. Errors:
// store.ErrNoReindex, store.ErrInvalid, store.ErrUnavailable.
func (s *Store) StageVectors(ctx context.Context, vs []store.StagedVector) error {
	if len(vs) == 0 {
		return nil
	}
	err := s.write(ctx, func(tx writeTx) error {
		cur, ok, err := readReindex(ctx, tx)
		if err != nil {
			return s.translate(err)
		}
		if !ok {
			return store.ErrNoReindex
		}
		for _, v := range vs {
			if len(v.Vector) != cur.Dimensions {
				return fmt.Errorf("%w: memory %s: the vector has %d dimensions, the reindex target %v makes %d",
					store.ErrInvalid, v.ID, len(v.Vector), cur.info(), cur.Dimensions)
			}
			vec, err := store.Normalize(slices.Clone(v.Vector))
			if err != nil {
				return fmt.Errorf("memory %s: %w", v.ID, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO reindex_vectors (rid, content_hash, vector)
				SELECT rid, ?, ? FROM memories WHERE id = ? AND org_id = ?
				ON CONFLICT (rid) DO UPDATE SET content_hash = excluded.content_hash, vector = excluded.vector`,
				v.Hash, encodeVector(vec), v.ID, v.Org); err != nil {
				return s.translate(err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reindex: stage vectors: %w", err)
	}
	return nil
}

// CommitReindex switches every memory to its staged vector and records
// the target embedder in one write transaction, and bumps every scope's
// change counter so that every process reloads its vectors. Errors:
// store.ErrNoReindex, store.ErrReindexPending, store.ErrUnavailable.
func (s *Store) CommitReindex(ctx context.Context) error {
	var target store.EmbedderInfo
	err := s.write(ctx, func(tx writeTx) error {
		cur, ok, err := readReindex(ctx, tx)
		if err != nil {
			return s.translate(err)
		}
		if !ok {
			return store.ErrNoReindex
		}
		target = cur.info()
		total, done, err := reindexCounts(ctx, tx)
		if err != nil {
			return s.translate(err)
		}
		if done < total {
			return fmt.Errorf("%w: %d of %d", store.ErrReindexPending, total-done, total)
		}
		s.w.dims = writerDims{}
		for _, q := range []string{
			`INSERT INTO memory_vectors (rid, vector) SELECT rid, vector FROM reindex_vectors WHERE true
				ON CONFLICT (rid) DO UPDATE SET vector = excluded.vector`,
			`DELETE FROM reindex_vectors`,
			`DELETE FROM meta WHERE key = 'reindex'`,
			// Every row's vector changed: every process reads its
			// scopes again whole.
			`UPDATE scope_versions SET version = version + 1, reset = version + 1`,
		} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return s.translate(err)
			}
		}
		for k, v := range map[string]string{
			"embedder_provider": target.Provider, "embedder_model": target.Model, "embedder_dimensions": strconv.Itoa(target.Dimensions),
		} {
			if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
				ON CONFLICT (key) DO UPDATE SET value = excluded.value`, k, v); err != nil {
				return s.translate(err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("commit reindex: %w", err)
	}
	s.dims.Store(int64(target.Dimensions))
	return nil
}

// AbortReindex discards the reindex in progress. Errors:
// store.ErrUnavailable.
func (s *Store) AbortReindex(ctx context.Context) error {
	err := s.write(ctx, func(tx writeTx) error {
		for _, q := range []string{`DELETE FROM reindex_vectors`, `DELETE FROM meta WHERE key = 'reindex'`} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return s.translate(err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("abort reindex: %w", err)
	}
	return nil
}
