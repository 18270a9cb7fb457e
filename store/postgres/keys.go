package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// API keys, call counters and the audit log (migration 00100).
//
// The runtime role ([Store]) holds no privilege on the api_keys and
// usage_calls tables: it looks one key up by id, records audit events,
// adds call counts and measures an org's storage through SECURITY DEFINER
// functions that do only that. Managing keys and reading the audit log is
// [Admin]'s job, connected as the owner.

var (
	_ store.KeyResolver  = (*Store)(nil)
	_ store.Auditor      = (*Store)(nil)
	_ store.UsageMeter   = (*Store)(nil)
	_ store.WriteAuditor = (*Store)(nil)
	_ store.KeyAdmin     = (*Admin)(nil)
)

// AuditsWrites reports true: Add, Update, Delete and Purge record their
// rows in the audit log inside their own transactions, with the caller's
// address from store.SourceFrom.
func (s *Store) AuditsWrites() bool { return true }

func scanKeyRow(id string, row pgx.Row) (scope.APIKey, error) {
	k := scope.APIKey{ID: id}
	var org, user, agent string
	var teams, perms []string
	err := row.Scan(&k.Hash, &org, &user, &teams, &agent, &perms, &k.Test, &k.CreatedAt, &k.ExpiresAt, &k.RevokedAt, &k.ReplacedBy)
	if err != nil {
		return scope.APIKey{}, err
	}
	k.Identity = scope.Identity{Org: org, User: user, Teams: teams, Agent: agent}
	for _, p := range perms {
		k.Identity.Permissions = append(k.Identity.Permissions, scope.Permission(p))
	}
	return k, nil
}

// LookupKey returns the key record with this id through
// scopemem_api_key, or an error wrapping scope.ErrUnknownAPIKey.
func (s *Store) LookupKey(ctx context.Context, id string) (scope.APIKey, error) {
	k, err := scanKeyRow(id, s.pool.QueryRow(ctx, `SELECT * FROM scopemem_api_key($1)`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return scope.APIKey{}, fmt.Errorf("postgres: %w", scope.ErrUnknownAPIKey)
	}
	if err != nil {
		return scope.APIKey{}, fmt.Errorf("postgres: look up API key: %w", translate(err))
	}
	return k, nil
}

// auditJSON is one event as scopemem_audit_record reads it.
type auditJSON struct {
	Org       string    `json:"org_id"`
	At        time.Time `json:"at"`
	Actor     string    `json:"actor"`
	Agent     string    `json:"agent"`
	Action    string    `json:"action"`
	ScopeKind string    `json:"scope_kind"`
	ScopeID   string    `json:"scope_id"`
	Target    string    `json:"target"`
	Count     int       `json:"count"`
	Source    string    `json:"source"`
	Detail    string    `json:"detail"`
}

func auditRows(events []store.AuditEvent) ([]byte, error) {
	rows := make([]auditJSON, len(events))
	for i, e := range events {
		kind, id := splitScope(e.Scope)
		at := e.At
		if at.IsZero() {
			at = time.Now()
		}
		rows[i] = auditJSON{Org: e.Org, At: at, Actor: e.Actor, Agent: e.Agent, Action: e.Action, ScopeKind: kind, ScopeID: id,
			Target: e.Target, Count: max(e.Count, 0), Source: e.Source, Detail: e.Detail}
	}
	return json.Marshal(rows)
}

// splitScope splits a qualified scope ("team:api", "org") into the audit
// table's kind and id columns.
func splitScope(q string) (kind, id string) {
	kind, id, _ = strings.Cut(q, ":")
	return kind, id
}

func joinScope(kind, id string) string {
	switch {
	case kind == "":
		return ""
	case kind == "org" || id == "":
		return kind
	}
	return kind + ":" + id
}

// RecordAudit appends events to the audit log through
// scopemem_audit_record.
func (s *Store) RecordAudit(ctx context.Context, events []store.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	b, err := auditRows(events)
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `SELECT scopemem_audit_record($1::jsonb)`, string(b)); err != nil {
		return fmt.Errorf("postgres: audit: %w", translate(err))
	}
	return nil
}

// AddCalls adds call counts per org for today (UTC).
func (s *Store) AddCalls(ctx context.Context, calls map[string]int64) error {
	return addCalls(ctx, s.pool, calls)
}

func addCalls(ctx context.Context, pool *pgxpool.Pool, calls map[string]int64) error {
	if len(calls) == 0 {
		return nil
	}
	orgs := make([]string, 0, len(calls))
	ns := make([]int64, 0, len(calls))
	for o, n := range calls {
		orgs, ns = append(orgs, o), append(ns, n)
	}
	if _, err := pool.Exec(ctx, `SELECT scopemem_usage_add($1, $2)`, orgs, ns); err != nil {
		return fmt.Errorf("postgres: count calls: %w", translate(err))
	}
	return nil
}

// OrgStorage returns the number and content bytes of the org's memories.
func (s *Store) OrgStorage(ctx context.Context, org string) (memories, bytes int64, err error) {
	return orgStorage(ctx, s.pool, org)
}

func orgStorage(ctx context.Context, pool *pgxpool.Pool, org string) (memories, bytes int64, err error) {
	if err := pool.QueryRow(ctx, `SELECT n_memories, n_bytes FROM scopemem_org_storage($1)`, org).Scan(&memories, &bytes); err != nil {
		return 0, 0, fmt.Errorf("postgres: org storage: %w", translate(err))
	}
	return memories, bytes, nil
}

// Admin manages API keys and reads usage and the audit log, connected as
// the schema owner (the URL `scopemem migrate` uses). It is safe for
// concurrent use; Close it when done.
type Admin struct {
	pool *pgxpool.Pool
	log  *slog.Logger
}

// OpenAdmin connects to ownerURL and checks that the schema has the key
// tables (else [ErrNotMigrated]).
func OpenAdmin(ctx context.Context, ownerURL string, log *slog.Logger) (*Admin, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if ownerURL == "" {
		return nil, errors.New("postgres: no owner database URL: set --database-url or SCOPEMEM_MIGRATE_DATABASE_URL")
	}
	pc, err := pgxpool.ParseConfig(ownerURL)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse database URL: %w", err)
	}
	pc.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	var ok bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('api_keys') IS NOT NULL`).Scan(&ok); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", translate(err))
	}
	if !ok {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w: there is no api_keys table: run `scopemem migrate`", ErrNotMigrated)
	}
	return &Admin{pool: pool, log: log}, nil
}

// Close closes the connections.
func (a *Admin) Close() error {
	a.pool.Close()
	return nil
}

const keyColumns = `hash, org_id::text, user_id, teams, agent, permissions, test, created_at, expires_at, revoked_at, replaced_by`

// LookupKey returns the key record with this id, or an error wrapping
// scope.ErrUnknownAPIKey.
func (a *Admin) LookupKey(ctx context.Context, id string) (scope.APIKey, error) {
	k, err := scanKeyRow(id, a.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return scope.APIKey{}, fmt.Errorf("postgres: %w", scope.ErrUnknownAPIKey)
	}
	if err != nil {
		return scope.APIKey{}, fmt.Errorf("postgres: look up API key: %w", translate(err))
	}
	return k, nil
}

func insertKey(ctx context.Context, tx pgx.Tx, k scope.APIKey) error {
	perms := make([]string, len(k.Identity.Permissions))
	for i, p := range k.Identity.Permissions {
		perms[i] = string(p)
	}
	teams := k.Identity.Teams
	if teams == nil {
		teams = []string{}
	}
	_, err := tx.Exec(ctx, `INSERT INTO api_keys (id, hash, org_id, user_id, teams, agent, permissions, test, created_at, expires_at, revoked_at, replaced_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		k.ID, k.Hash, k.Identity.Org, k.Identity.User, teams, k.Identity.Agent, perms, k.Test, k.CreatedAt, k.ExpiresAt, k.RevokedAt, k.ReplacedBy)
	return translate(err)
}

// CreateKey stores a new key record; a taken id is store.ErrConflict.
func (a *Admin) CreateKey(ctx context.Context, k scope.APIKey) error {
	return pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		if err := insertKey(ctx, tx, k); err != nil {
			return fmt.Errorf("postgres: create API key: %w", err)
		}
		return nil
	})
}

// ListKeys returns the org's keys (every org's when org is empty), newest
// first.
func (a *Admin) ListKeys(ctx context.Context, org string) ([]scope.APIKey, error) {
	rows, err := a.pool.Query(ctx, `SELECT id, `+keyColumns+` FROM api_keys WHERE $1 = '' OR org_id = $1 ORDER BY created_at DESC, id`, org)
	if err != nil {
		return nil, fmt.Errorf("postgres: list API keys: %w", translate(err))
	}
	defer rows.Close()
	var out []scope.APIKey
	for rows.Next() {
		var id string
		k, err := scanKeyRow("", rowPrefix{rows, &id})
		if err != nil {
			return nil, fmt.Errorf("postgres: list API keys: %w", translate(err))
		}
		k.ID = id
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: list API keys: %w", translate(err))
	}
	return out, nil
}

// rowPrefix scans a leading column into first, then the rest.
type rowPrefix struct {
	r     pgx.Rows
	first any
}

func (p rowPrefix) Scan(dest ...any) error { return p.r.Scan(append([]any{p.first}, dest...)...) }

// RevokeKey revokes a key; an unknown id is store.ErrNotFound.
func (a *Admin) RevokeKey(ctx context.Context, id string, at time.Time) error {
	tag, err := a.pool.Exec(ctx, `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1`, id, at)
	if err != nil {
		return fmt.Errorf("postgres: revoke API key: %w", translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: API key %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// RotateKey stores next and makes the old key expire at graceEnd.
func (a *Admin) RotateKey(ctx context.Context, oldID string, next scope.APIKey, graceEnd time.Time) error {
	return pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE api_keys SET expires_at = LEAST(COALESCE(expires_at, $2), $2), replaced_by = $3
			WHERE id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())`, oldID, graceEnd, next.ID)
		if err != nil {
			return fmt.Errorf("postgres: rotate API key: %w", translate(err))
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("postgres: API key %s (or it is revoked or expired): %w", oldID, store.ErrNotFound)
		}
		if err := insertKey(ctx, tx, next); err != nil {
			return fmt.Errorf("postgres: rotate API key: %w", err)
		}
		return nil
	})
}

// RecordAudit appends events to the audit log, as the owner.
func (a *Admin) RecordAudit(ctx context.Context, events []store.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	b, err := auditRows(events)
	if err != nil {
		return err
	}
	if _, err := a.pool.Exec(ctx, `SELECT scopemem_audit_record($1::jsonb)`, string(b)); err != nil {
		return fmt.Errorf("postgres: audit: %w", translate(err))
	}
	return nil
}

// AuditLog returns the org's events at or after since, oldest first, the
// newest limit of them: those the HTTP server recorded (with the caller's
// address) and those the store wrote inside each change's transaction.
func (a *Admin) AuditLog(ctx context.Context, org string, since time.Time, limit int) ([]store.AuditEvent, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := a.pool.Query(ctx, `SELECT at, org_id, actor, agent, action, scope_kind, scope_id, target, count, source, detail FROM (
		SELECT * FROM audit WHERE org_id = $1 AND at >= $2 ORDER BY at DESC, id DESC LIMIT $3) a ORDER BY at, id`,
		org, since, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: audit log: %w", translate(err))
	}
	defer rows.Close()
	var out []store.AuditEvent
	for rows.Next() {
		var e store.AuditEvent
		var kind, id string
		if err := rows.Scan(&e.At, &e.Org, &e.Actor, &e.Agent, &e.Action, &kind, &id, &e.Target, &e.Count, &e.Source, &e.Detail); err != nil {
			return nil, fmt.Errorf("postgres: audit log: %w", translate(err))
		}
		e.Scope = joinScope(kind, id)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: audit log: %w", translate(err))
	}
	return out, nil
}

// Usage returns the org's stored memories and bytes and its call counts.
func (a *Admin) Usage(ctx context.Context, org string) (store.Usage, error) {
	u := store.Usage{Org: org}
	var err error
	if u.Memories, u.Bytes, err = orgStorage(ctx, a.pool, org); err != nil {
		return store.Usage{}, err
	}
	err = a.pool.QueryRow(ctx, `SELECT
			COALESCE(sum(calls) FILTER (WHERE day = (now() AT TIME ZONE 'UTC')::date), 0),
			COALESCE(sum(calls) FILTER (WHERE day > (now() AT TIME ZONE 'UTC')::date - 30), 0),
			COALESCE(sum(calls), 0)
		FROM usage_calls WHERE org_id = $1`, org).Scan(&u.CallsDay, &u.Calls30d, &u.CallsEver)
	if err != nil {
		return store.Usage{}, fmt.Errorf("postgres: usage: %w", translate(err))
	}
	return u, nil
}
