package store

import (
	"context"
	"time"

	"github.com/scopemem/scopemem/scope"
)

// The interfaces in this file are optional capabilities for the HTTP
// server and its operators: API keys, usage accounting and the audit log.
// Like database/sql/driver's optional interfaces, a caller finds them by
// type assertion,
//
//	keys, ok := st.(store.KeyResolver)
//
// and reports that the backend cannot do it when the assertion fails.
// Tools never call them. The SQLite store implements every one; the
// PostgreSQL store implements the runtime side ([KeyResolver], [Auditor],
// [UsageMeter]) as its unprivileged runtime role, and the management side
// ([KeyAdmin]) through postgres.OpenAdmin with the owner's URL, so that a
// compromised server can neither read the key table nor mint keys.

// KeyResolver finds API keys for authentication.
type KeyResolver interface {
	// LookupKey returns the record of the key with this id (hash and
	// identity, never a secret), or an error wrapping
	// scope.ErrUnknownAPIKey.
	LookupKey(ctx context.Context, id string) (scope.APIKey, error)
}

// KeyAdmin manages API keys and reads the per-org usage and audit log. It
// is for operators (the scopemem keys, usage and audit commands).
type KeyAdmin interface {
	KeyResolver
	// CreateKey stores a new key record. An id already taken is
	// ErrConflict.
	CreateKey(ctx context.Context, k scope.APIKey) error
	// ListKeys returns the keys of an org (every org when org is empty),
	// newest first.
	ListKeys(ctx context.Context, org string) ([]scope.APIKey, error)
	// RevokeKey revokes a key at once. An unknown id is ErrNotFound.
	RevokeKey(ctx context.Context, id string, at time.Time) error
	// RotateKey stores next (with the old key's identity, which the caller
	// copies) and makes the old key expire at graceEnd (or keep an earlier
	// expiry), recording next as its replacement. An unknown, revoked or
	// expired old key is ErrNotFound.
	RotateKey(ctx context.Context, oldID string, next scope.APIKey, graceEnd time.Time) error
	// AuditLog returns the org's audit events at or after since, oldest
	// first, at most limit of them (the newest ones). Org "" selects
	// events of no known org (such as failed logins with unknown
	// credentials).
	AuditLog(ctx context.Context, org string, since time.Time, limit int) ([]AuditEvent, error)
	// Usage returns the org's usage.
	Usage(ctx context.Context, org string) (Usage, error)
	// RecordAudit records events, as [Auditor] does.
	RecordAudit(ctx context.Context, events []AuditEvent) error
}

// Auditor records audit events.
type Auditor interface {
	// RecordAudit appends events to the audit log.
	RecordAudit(ctx context.Context, events []AuditEvent) error
}

// UsageMeter counts calls and measures what an org stores.
type UsageMeter interface {
	// AddCalls adds call counts per org (for today, UTC).
	AddCalls(ctx context.Context, calls map[string]int64) error
	// OrgStorage returns how many memories the org stores and their
	// content size in bytes, expired or not, in every scope.
	OrgStorage(ctx context.Context, org string) (memories, bytes int64, err error)
}

// Audit actions besides the write actions add, update, delete and purge.
const (
	AuditAuthFailure   = "auth_failure"   // a rejected credential
	AuditQuotaExceeded = "quota_exceeded" // a write refused by a quota
	AuditKeyCreate     = "key_create"     // an API key made
	AuditKeyRevoke     = "key_revoke"     // an API key revoked
	AuditKeyRotate     = "key_rotate"     // an API key replaced
)

// AuditEvent is one entry of the audit log.
type AuditEvent struct {
	At     time.Time
	Org    string // "" when the caller's org is unknown
	Actor  string // the user, or "" when unknown
	Agent  string
	Action string // add, update, delete, purge, expire or one of the Audit* constants
	// Scope is the qualified scope written ([scope.Scope.Qualified]), or
	// empty.
	Scope string
	// Target is what the action named: a memory id, a purge target, a key
	// id.
	Target string
	Count  int
	// Source is the caller's network address, empty for events the store
	// records inside a write's own transaction.
	Source string
	// Detail says more: why a login failed, which quota was hit.
	Detail string
}

// Usage is what an org has used.
type Usage struct {
	Org       string
	Memories  int64 // stored memories
	Bytes     int64 // their content, in bytes
	CallsDay  int64 // calls today (UTC)
	Calls30d  int64 // calls in the last 30 days, today included
	CallsEver int64 // calls ever counted
}
