package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/scopemem/scopemem/scope"
)

// The interfaces in this file are optional capabilities of a [Store] for
// operators (export, import, reindex), in the manner of database/sql/driver's
// optional interfaces: a caller finds them by type assertion,
//
//	ex, ok := st.(store.Exporter)
//
// and reports that the backend cannot do it when the assertion fails. They
// are not part of the tenant-facing contract: tools never call them.

// ErrReindexPending is returned by [Reindexer.CommitReindex] while some
// memories still lack a vector from the target embedder (new or changed
// since they were staged). The caller stages them and commits again. It
// unwraps to ErrConflict.
var ErrReindexPending = fmt.Errorf("%w: memories are still waiting for new vectors", ErrConflict)

// ErrNoReindex is returned by the [Reindexer] methods that need a reindex
// in progress when none is.
var ErrNoReindex = errors.New("no reindex in progress")

// Record is one memory as export writes it and import reads it: the
// memory, and optionally its vector with the embedder that made it.
type Record struct {
	Memory
	// Vector is the stored (unit-length) vector, nil when not exported.
	Vector []float32
	// Embedder made Vector; zero when Vector is nil.
	Embedder EmbedderInfo
}

// ExportFilter narrows an export. The zero value exports every memory of
// the org, live or expired, without vectors.
type ExportFilter struct {
	// User keeps only the memories one user owns: their user, agent and
	// session scopes (the rows `purge user:<id>` would erase). This is the
	// answer to a data-access request.
	User string
	// Scope keeps only the memories of one scope. It may not be combined
	// with User.
	Scope *scope.Scope
	// Vectors includes each memory's vector and the store's embedder.
	Vectors bool
}

// RequireAdmin refuses an identity that is not valid (ErrInvalid) or may
// not act on the whole org (scope.ErrForbidden): the check of every
// operator path (export, import).
func RequireAdmin(id scope.Identity) error {
	if err := id.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return id.Require(scope.PermAdmin)
}

// StartExport is what every store's Export checks first: id must be a
// valid identity (ErrInvalid) holding the admin permission
// (scope.ErrForbidden), and f a possible filter (ErrInvalid). When f asks
// for vectors it returns the store's embedder from embedder, and turns
// f.Vectors off when nothing was ever embedded.
func StartExport(ctx context.Context, id scope.Identity, f *ExportFilter, embedder func(context.Context) (EmbedderInfo, bool, error)) (EmbedderInfo, error) {
	if err := RequireAdmin(id); err != nil {
		return EmbedderInfo{}, fmt.Errorf("export: %w", err)
	}
	if err := f.Validate(); err != nil {
		return EmbedderInfo{}, fmt.Errorf("export: %w", err)
	}
	if !f.Vectors {
		return EmbedderInfo{}, nil
	}
	info, ok, err := embedder(ctx)
	if err != nil {
		return EmbedderInfo{}, fmt.Errorf("export: %w", err)
	}
	if !ok {
		f.Vectors = false // nothing was ever embedded
	}
	return info, nil
}

// Validate reports an impossible filter, wrapping ErrInvalid.
func (f ExportFilter) Validate() error {
	if f.User != "" && f.Scope != nil {
		return fmt.Errorf("%w: export either one user or one scope, not both", ErrInvalid)
	}
	if f.User != "" && strings.ContainsAny(f.User, "/:") {
		return fmt.Errorf("%w: %q is not a user id", ErrInvalid, f.User)
	}
	if f.Scope != nil {
		if err := checkScope(*f.Scope); err != nil {
			return err
		}
	}
	return nil
}

// Exporter streams the memories of one org.
type Exporter interface {
	// Export calls fn for every memory of id.Org that f keeps, expired ones
	// included, in a stable order (by id), and stops at fn's first error,
	// which it returns. id must hold memory:admin (else an error wrapping
	// scope.ErrForbidden): export reads every scope of the org, and only
	// that org. Errors: ErrInvalid, ErrUnavailable, scope.ErrForbidden.
	Export(ctx context.Context, id scope.Identity, f ExportFilter, fn func(Record) error) error
}

// ImportOutcome says what became of one imported record.
type ImportOutcome int

// Import outcomes.
const (
	// Imported: the memory was stored.
	Imported ImportOutcome = iota + 1
	// AlreadyPresent: a memory with this id already exists in the org; it
	// was left as it is. Importing one file twice stores each memory once.
	AlreadyPresent
)

// String returns "imported" or "already present".
func (o ImportOutcome) String() string {
	switch o {
	case Imported:
		return "imported"
	case AlreadyPresent:
		return "already present"
	}
	return fmt.Sprintf("ImportOutcome(%d)", int(o))
}

// RecordError says which record of a batch was refused and why. Nothing
// of the batch was stored. It unwraps to the cause (ErrInvalid or
// ErrConflict).
type RecordError struct {
	Index int // position in the batch
	Err   error
}

func (e *RecordError) Error() string { return fmt.Sprintf("record %d: %v", e.Index, e.Err) }

// Unwrap returns the cause.
func (e *RecordError) Unwrap() error { return e.Err }

// Importer stores exported memories as they were.
type Importer interface {
	// Import stores records of id.Org keeping their ids, scopes, authors,
	// times, tags and metadata, with their vectors, which must come from
	// the store's recorded embedder (see [ValidateRecord]). A record whose
	// id already exists in the org is left alone and reported
	// AlreadyPresent. Outcomes are in input order. A record that fails
	// validation, or whose id belongs to another org, fails the whole batch
	// with a *RecordError. id must hold memory:admin (else scope.ErrForbidden)
	// and every record must be of id.Org. Errors: ErrInvalid, ErrConflict,
	// ErrUnavailable, scope.ErrForbidden.
	Import(ctx context.Context, id scope.Identity, rs []Record) ([]ImportOutcome, error)
}

// ValidateRecord checks a record as [Importer.Import] needs it: a UUID id,
// the org, a scope of a known kind with a well-formed id, content that is
// valid UTF-8 text, a creator, creation and update times, metadata that is
// a JSON object (or nothing), and a finite, non-zero vector of dims
// dimensions. It writes the id in its canonical form and normalizes the
// vector, in place. Errors wrap ErrInvalid.
func ValidateRecord(r *Record, org string, dims int) error {
	u, err := uuid.Parse(r.ID)
	if err != nil {
		return fmt.Errorf("%w: id %q is not a UUID", ErrInvalid, r.ID)
	}
	r.ID = u.String()
	if r.Org != org {
		return fmt.Errorf("%w: memory %s is of org %q, not %q", ErrInvalid, r.ID, r.Org, org)
	}
	if err := checkScope(r.Scope); err != nil {
		return fmt.Errorf("memory %s: %w", r.ID, err)
	}
	if strings.TrimSpace(r.Content) == "" {
		return fmt.Errorf("%w: memory %s has no content", ErrInvalid, r.ID)
	}
	if !utf8.ValidString(r.Content) || strings.ContainsRune(r.Content, 0) {
		return fmt.Errorf("%w: memory %s: content is not valid UTF-8 text", ErrInvalid, r.ID)
	}
	if r.CreatedBy == "" || strings.ContainsAny(r.CreatedBy, "/:") {
		return fmt.Errorf("%w: memory %s: created_by %q is not a user id", ErrInvalid, r.ID, r.CreatedBy)
	}
	if r.CreatedAt.IsZero() || r.UpdatedAt.IsZero() {
		return fmt.Errorf("%w: memory %s needs created and updated times", ErrInvalid, r.ID)
	}
	for _, t := range r.Tags {
		if t == "" || !utf8.ValidString(t) {
			return fmt.Errorf("%w: memory %s has an empty or invalid tag", ErrInvalid, r.ID)
		}
	}
	if m := bytes.TrimSpace(r.Metadata); len(m) > 0 && string(m) != "null" {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(m, &obj); err != nil || obj == nil {
			return fmt.Errorf("%w: memory %s: metadata must be a JSON object", ErrInvalid, r.ID)
		}
	} else {
		r.Metadata = nil
	}
	if len(r.Vector) != dims {
		return fmt.Errorf("%w: memory %s: vector has %d dimensions, the store's embedder makes %d", ErrInvalid, r.ID, len(r.Vector), dims)
	}
	if _, err := Normalize(r.Vector); err != nil {
		return fmt.Errorf("memory %s: %w", r.ID, err)
	}
	return nil
}

// checkScope rejects a scope no backend could store.
func checkScope(s scope.Scope) error {
	switch s.Kind {
	case scope.KindOrg:
		if s.ID != "" {
			return fmt.Errorf("%w: the org scope has no id", ErrInvalid)
		}
		return nil
	case scope.KindUser, scope.KindTeam:
		if s.ID == "" || strings.ContainsAny(s.ID, "/:") {
			return fmt.Errorf("%w: scope %s has a malformed id", ErrInvalid, s.Qualified())
		}
		return nil
	case scope.KindAgent, scope.KindSession:
		u, rest, ok := strings.Cut(s.ID, "/")
		if !ok || u == "" || rest == "" || strings.ContainsAny(rest, "/:") || strings.Contains(u, ":") {
			return fmt.Errorf("%w: scope %s needs an id of the form user/name", ErrInvalid, s.Qualified())
		}
		return nil
	}
	return fmt.Errorf("%w: unknown scope kind %q", ErrInvalid, s.Kind)
}

// ReindexStatus describes a reindex.
type ReindexStatus struct {
	// Active is true while a reindex has begun and not been committed or
	// aborted.
	Active bool
	// Target is the embedder the reindex moves to.
	Target EmbedderInfo
	// Started is when it began.
	Started time.Time
	// Total is the number of memories in the store; Done how many of them
	// have a staged vector for their current content.
	Total, Done int
}

// ReindexItem is one memory waiting for a new vector.
type ReindexItem struct {
	Org, ID string
	Content string
	// Hash identifies the content the vector is made from; pass it back
	// with the vector so that a memory changed meanwhile is redone.
	Hash []byte
}

// StagedVector is a new vector for one memory.
type StagedVector struct {
	Org, ID string
	Hash    []byte // ReindexItem.Hash
	Vector  []float32
}

// Reindexer re-embeds every memory with another embedder without stopping
// search: new vectors are staged beside the old ones, which keep serving,
// and one short transaction switches them all and records the new
// embedder. Staged vectors survive a crash or an interrupt, so a reindex
// resumes where it stopped. It crosses orgs, so it is an operator's call:
// on PostgreSQL it needs the owner's connection.
type Reindexer interface {
	// BeginReindex starts a reindex to target, or resumes the one in
	// progress when its target is the same. A reindex in progress to
	// another target is discarded and started over. Errors: ErrInvalid,
	// ErrUnavailable.
	BeginReindex(ctx context.Context, target EmbedderInfo) (ReindexStatus, error)
	// ReindexStatus reports the reindex in progress, or Active false.
	ReindexStatus(ctx context.Context) (ReindexStatus, error)
	// ReindexPending returns up to n memories that have no staged vector
	// for their current content, in the backend's order, following after
	// (the last item of the previous call; nil: from the start). Errors: ErrNoReindex, ErrUnavailable.
	ReindexPending(ctx context.Context, after *ReindexItem, n int) ([]ReindexItem, error)
	// StageVectors stores new vectors, each of the target's dimensions.
	// Vectors of memories deleted meanwhile are ignored. Errors:
	// ErrNoReindex, ErrInvalid, ErrUnavailable.
	StageVectors(ctx context.Context, vs []StagedVector) error
	// CommitReindex switches every memory to its staged vector and records
	// the target embedder, in one transaction that holds off writes. When
	// some memory has no staged vector for its current content it changes
	// nothing and returns an error wrapping ErrReindexPending. Errors:
	// ErrNoReindex, ErrReindexPending, ErrUnavailable.
	CommitReindex(ctx context.Context) error
	// AbortReindex discards the reindex in progress and its staged
	// vectors; the store keeps its embedder. Without one it does nothing.
	AbortReindex(ctx context.Context) error
}

// CheckTarget reports whether info names a usable reindex target.
func CheckTarget(info EmbedderInfo) error {
	if info.Provider == "" || info.Model == "" || info.Dimensions <= 0 {
		return fmt.Errorf("%w: reindex target %v needs a provider, a model and a positive dimension", ErrInvalid, info)
	}
	return nil
}
