package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// The SQLite store keeps API keys, the audit log and call counters in the
// same file as the memories. Whoever can read the file can read
// everything in it; key hashes are no help to them (see scope/apikey.go).

var (
	_ store.KeyResolver = (*Store)(nil)
	_ store.KeyAdmin    = (*Store)(nil)
	_ store.Auditor     = (*Store)(nil)
	_ store.UsageMeter  = (*Store)(nil)
)

func keyNanos(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixNano()
}

func keyTime(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := time.Unix(0, n.Int64).UTC()
	return &t
}

const keyColumns = `id, hash, org_id, user_id, teams, agent, permissions, test, created_at, expires_at, revoked_at, replaced_by`

func scanKey(row interface{ Scan(...any) error }) (scope.APIKey, error) {
	var (
		k                    scope.APIKey
		teams, perms         string
		created              int64
		expires, revoked     sql.NullInt64
		test                 bool
		org, user, agent, by string
	)
	if err := row.Scan(&k.ID, &k.Hash, &org, &user, &teams, &agent, &perms, &test, &created, &expires, &revoked, &by); err != nil {
		return scope.APIKey{}, err
	}
	k.Identity = scope.Identity{Org: org, User: user, Agent: agent}
	if err := json.Unmarshal([]byte(teams), &k.Identity.Teams); err != nil {
		return scope.APIKey{}, fmt.Errorf("api key %s: teams: %w", k.ID, err)
	}
	if err := json.Unmarshal([]byte(perms), &k.Identity.Permissions); err != nil {
		return scope.APIKey{}, fmt.Errorf("api key %s: permissions: %w", k.ID, err)
	}
	k.Test, k.ReplacedBy = test, by
	k.CreatedAt = time.Unix(0, created).UTC()
	k.ExpiresAt, k.RevokedAt = keyTime(expires), keyTime(revoked)
	return k, nil
}

// LookupKey returns the key record with this id, or an error wrapping
// scope.ErrUnknownAPIKey.
func (s *Store) LookupKey(ctx context.Context, id string) (scope.APIKey, error) {
	k, err := scanKey(s.rdb.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return scope.APIKey{}, fmt.Errorf("sqlite: %w", scope.ErrUnknownAPIKey)
	}
	if err != nil {
		return scope.APIKey{}, fmt.Errorf("sqlite: look up API key: %w", s.translate(err))
	}
	return k, nil
}

func insertKey(ctx context.Context, tx writeTx, k scope.APIKey) error {
	teams, err := json.Marshal(keyList(k.Identity.Teams))
	if err != nil {
		return err
	}
	perms, err := json.Marshal(keyList(k.Identity.Permissions))
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO api_keys (`+keyColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.Hash, k.Identity.Org, k.Identity.User, string(teams), k.Identity.Agent, string(perms), k.Test,
		k.CreatedAt.UnixNano(), keyNanos(k.ExpiresAt), keyNanos(k.RevokedAt), k.ReplacedBy)
	return err
}

func keyList[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}

// CreateKey stores a new key record; a taken id is store.ErrConflict.
func (s *Store) CreateKey(ctx context.Context, k scope.APIKey) error {
	err := s.write(ctx, func(tx writeTx) error { return insertKey(ctx, tx, k) })
	if err != nil {
		if keyConflict(err) {
			return fmt.Errorf("sqlite: create API key %s: %w", k.ID, store.ErrConflict)
		}
		return fmt.Errorf("sqlite: create API key: %w", s.translate(err))
	}
	return nil
}

// keyConflict reports a UNIQUE or PRIMARY KEY violation.
func keyConflict(err error) bool {
	var ce interface{ Code() int }
	return errors.As(err, &ce) && ce.Code()&0xff == 19 // SQLITE_CONSTRAINT
}

// ListKeys returns the org's keys (every org's when org is empty), newest
// first.
func (s *Store) ListKeys(ctx context.Context, org string) ([]scope.APIKey, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE ? = '' OR org_id = ? ORDER BY created_at DESC, id`, org, org)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list API keys: %w", s.translate(err))
	}
	defer rows.Close()
	var out []scope.APIKey
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list API keys: %w", s.translate(err))
		}
		out = append(out, k)
	}
	return out, s.translate(rows.Err())
}

// RevokeKey revokes a key; an unknown id is store.ErrNotFound. Revoking a
// revoked key keeps its first revocation time.
func (s *Store) RevokeKey(ctx context.Context, id string, at time.Time) error {
	return s.write(ctx, func(tx writeTx) error {
		res, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, at.UnixNano(), id)
		if err != nil {
			return fmt.Errorf("sqlite: revoke API key: %w", s.translate(err))
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("sqlite: API key %s: %w", id, store.ErrNotFound)
		}
		return nil
	})
}

// RotateKey stores next and makes the old key expire at graceEnd.
func (s *Store) RotateKey(ctx context.Context, oldID string, next scope.APIKey, graceEnd time.Time) error {
	now := time.Now().UnixNano()
	return s.write(ctx, func(tx writeTx) error {
		res, err := tx.ExecContext(ctx, `UPDATE api_keys
			SET expires_at = min(COALESCE(expires_at, ?), ?), replaced_by = ?
			WHERE id = ? AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)`,
			graceEnd.UnixNano(), graceEnd.UnixNano(), next.ID, oldID, now)
		if err != nil {
			return fmt.Errorf("sqlite: rotate API key: %w", s.translate(err))
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("sqlite: API key %s (or it is revoked or expired): %w", oldID, store.ErrNotFound)
		}
		if err := insertKey(ctx, tx, next); err != nil {
			if keyConflict(err) {
				return fmt.Errorf("sqlite: create API key %s: %w", next.ID, store.ErrConflict)
			}
			return fmt.Errorf("sqlite: rotate API key: %w", s.translate(err))
		}
		return nil
	})
}

// RecordAudit appends events to the audit log.
func (s *Store) RecordAudit(ctx context.Context, events []store.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	return s.write(ctx, func(tx writeTx) error {
		st, err := tx.PrepareContext(ctx, `INSERT INTO audit (org_id, at, actor, agent, action, scope, target, count, source, detail)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return fmt.Errorf("sqlite: audit: %w", s.translate(err))
		}
		defer st.Close()
		for _, e := range events {
			at := e.At
			if at.IsZero() {
				at = time.Now()
			}
			if _, err := st.ExecContext(ctx, e.Org, at.UnixNano(), e.Actor, e.Agent, e.Action, e.Scope, e.Target, max(e.Count, 0), e.Source, e.Detail); err != nil {
				return fmt.Errorf("sqlite: audit: %w", s.translate(err))
			}
		}
		return nil
	})
}

// AuditLog returns the org's events at or after since, oldest first, the
// newest limit of them.
func (s *Store) AuditLog(ctx context.Context, org string, since time.Time, limit int) ([]store.AuditEvent, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT at, org_id, actor, agent, action, scope, target, count, source, detail FROM (
		SELECT * FROM audit WHERE org_id = ? AND at >= ? ORDER BY at DESC, id DESC LIMIT ?) ORDER BY at, id`,
		org, since.UnixNano(), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit log: %w", s.translate(err))
	}
	defer rows.Close()
	var out []store.AuditEvent
	for rows.Next() {
		var e store.AuditEvent
		var at int64
		if err := rows.Scan(&at, &e.Org, &e.Actor, &e.Agent, &e.Action, &e.Scope, &e.Target, &e.Count, &e.Source, &e.Detail); err != nil {
			return nil, fmt.Errorf("sqlite: audit log: %w", s.translate(err))
		}
		e.At = time.Unix(0, at).UTC()
		out = append(out, e)
	}
	return out, s.translate(rows.Err())
}

// AddCalls adds call counts per org for today (UTC).
func (s *Store) AddCalls(ctx context.Context, calls map[string]int64) error {
	if len(calls) == 0 {
		return nil
	}
	day := time.Now().UTC().Format(time.DateOnly)
	return s.write(ctx, func(tx writeTx) error {
		for org, n := range calls {
			if _, err := tx.ExecContext(ctx, `INSERT INTO usage_calls (org_id, day, calls) VALUES (?, ?, ?)
				ON CONFLICT (org_id, day) DO UPDATE SET calls = calls + excluded.calls`, org, day, n); err != nil {
				return fmt.Errorf("sqlite: count calls: %w", s.translate(err))
			}
		}
		return nil
	})
}

// OrgStorage returns the number and content bytes of the org's memories.
func (s *Store) OrgStorage(ctx context.Context, org string) (memories, bytes int64, err error) {
	err = s.rdb.QueryRowContext(ctx, `SELECT count(*), COALESCE(sum(length(CAST(content AS BLOB))), 0) FROM memories WHERE org_id = ?`, org).Scan(&memories, &bytes)
	if err != nil {
		return 0, 0, fmt.Errorf("sqlite: org storage: %w", s.translate(err))
	}
	return memories, bytes, nil
}

// Usage returns the org's stored memories and bytes and its call counts.
func (s *Store) Usage(ctx context.Context, org string) (store.Usage, error) {
	u := store.Usage{Org: org}
	var err error
	if u.Memories, u.Bytes, err = s.OrgStorage(ctx, org); err != nil {
		return store.Usage{}, err
	}
	now := time.Now().UTC()
	today, from := now.Format(time.DateOnly), now.AddDate(0, 0, -29).Format(time.DateOnly)
	err = s.rdb.QueryRowContext(ctx, `SELECT
			COALESCE(sum(CASE WHEN day = ? THEN calls END), 0),
			COALESCE(sum(CASE WHEN day >= ? THEN calls END), 0),
			COALESCE(sum(calls), 0)
		FROM usage_calls WHERE org_id = ?`, today, from, org).Scan(&u.CallsDay, &u.Calls30d, &u.CallsEver)
	if err != nil {
		return store.Usage{}, fmt.Errorf("sqlite: usage: %w", s.translate(err))
	}
	return u, nil
}
