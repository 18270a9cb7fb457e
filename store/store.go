package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/scopemem/scopemem/scope"
)

// Sentinel errors returned by every backend.
var (
	// ErrNotFound: no memory with that id is visible (or writable, for
	// Update and Delete) to the caller.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a concurrent change made the write impossible.
	ErrConflict = errors.New("conflict")
	// ErrEmbedderMismatch: the store's vectors came from another embedder.
	ErrEmbedderMismatch = errors.New("embedder mismatch")
	// ErrInvalid: the request itself is malformed (wrong vector size, a scope
	// not visible to the caller, an empty batch).
	ErrInvalid = errors.New("invalid request")
	// ErrUnavailable: the database cannot be reached or is read-only; the
	// caller may retry later.
	ErrUnavailable = errors.New("store unavailable")
	// ErrReadOnly: the database refuses writes (a read-only file, directory,
	// mount or store, or a full disk) while reads keep working. The message
	// says why and what to do. It wraps ErrUnavailable.
	ErrReadOnly = fmt.Errorf("%w: writes refused", ErrUnavailable)
)

// Memory is one stored memory.
type Memory struct {
	ID        string
	Org       string
	Scope     scope.Scope
	Content   string
	Tags      []string
	Metadata  json.RawMessage // a JSON object, or nil
	CreatedBy string          // the user who added it
	CreatedAt time.Time
	UpdatedAt time.Time
	ExpiresAt *time.Time // nil: never expires
}

// NewMemory is a memory to add. Scope must be writable by the caller
// (checked by the caller with [scope.Identity.CanWrite]; backends refuse a
// scope that is not visible with ErrInvalid).
type NewMemory struct {
	Scope     scope.Scope
	Content   string
	Tags      []string
	Metadata  json.RawMessage
	Vector    []float32
	ExpiresAt *time.Time
}

// Added is the result of adding one memory. When Duplicate is true the
// memory was not stored again: Memory is the existing one in the same scope
// whose content is identical or whose vector is near-identical.
type Added struct {
	Memory
	Duplicate bool
}

// Query is a hybrid search.
type Query struct {
	Text   string    // full-text half; may be empty
	Vector []float32 // vector half; may be nil when Text is set
	// Scopes narrows the search to these scopes; each must be visible to the
	// caller (others are ignored). Nil means every visible scope.
	Scopes []scope.Scope
	// Tags keeps memories carrying every one of these tags.
	Tags  []string
	Limit int // 1..100; 0 means 10
	// MinScore drops hits whose fused score is below it (0..1).
	MinScore float64
}

// Check validates q the same way for every backend and returns the number
// of hits to return (Limit, or DefaultLimit when it is 0). Errors wrap
// ErrInvalid.
func (q Query) Check() (limit int, err error) {
	limit = q.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	if limit < 0 || limit > MaxLimit {
		return 0, fmt.Errorf("%w: limit %d is outside 1..%d", ErrInvalid, q.Limit, MaxLimit)
	}
	if math.IsNaN(q.MinScore) || q.MinScore < 0 || q.MinScore > 1 {
		return 0, fmt.Errorf("%w: min score %v is outside 0..1", ErrInvalid, q.MinScore)
	}
	if q.Vector == nil && strings.TrimSpace(q.Text) == "" {
		return 0, fmt.Errorf("%w: a search needs query text or a query vector", ErrInvalid)
	}
	return limit, nil
}

// Hit is one search result.
type Hit struct {
	Memory
	// Score is the fused reciprocal-rank score, normalized so that a memory
	// ranked first by both halves scores 1.
	Score float64
	// Similarity is the cosine similarity of the vectors (0 without a
	// query vector).
	Similarity float64
}

// Patch changes a memory. Nil fields are left as they are. When Content
// changes, Vector must carry its new embedding.
type Patch struct {
	Content  *string
	Tags     *[]string
	Metadata *json.RawMessage
	Vector   []float32
}

// ScopeInfo describes one scope visible to the caller.
type ScopeInfo struct {
	Scope    scope.Scope
	Count    int  // live (unexpired) memories
	Writable bool // the caller may add to it
}

// PurgeCounts is how many memories a purge removed, per qualified scope
// name ([scope.Scope.Qualified]).
type PurgeCounts map[string]int

// Total returns the sum of the counts.
func (c PurgeCounts) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// EmbedderInfo names what produced a store's vectors.
type EmbedderInfo struct {
	Provider   string // "ollama", "builtin", ...
	Model      string
	Dimensions int
}

func (e EmbedderInfo) String() string {
	return fmt.Sprintf("%s/%s (%d dimensions)", e.Provider, e.Model, e.Dimensions)
}

// MismatchError says which embedder made the stored vectors and which one
// the server was started with. It unwraps to ErrEmbedderMismatch.
type MismatchError struct{ Stored, Configured EmbedderInfo }

func (e *MismatchError) Error() string {
	return fmt.Sprintf("this store's vectors were made by %s but the server is configured with %s: "+
		"start with the same embedder (--embedder %s --model %s), or re-embed every memory with "+
		"`scopemem reindex --embedder %s --model %s`",
		e.Stored, e.Configured, e.Stored.Provider, e.Stored.Model, e.Configured.Provider, e.Configured.Model)
}

// Unwrap returns ErrEmbedderMismatch.
func (e *MismatchError) Unwrap() error { return ErrEmbedderMismatch }

// Store is the storage contract. See the package doc for isolation,
// concurrency and errors.
type Store interface {
	// Add stores memories for the caller, deduplicating each within its
	// scope. Results are in input order. Errors: ErrInvalid, ErrUnavailable.
	Add(ctx context.Context, id scope.Identity, ms []NewMemory) ([]Added, error)
	// Search runs a hybrid search over the caller's visible scopes and
	// returns at most q.Limit hits, best first; on equal scores the narrower
	// scope comes first. Near-identical hits from two scopes collapse to the
	// narrower one. Expired memories are never returned.
	Search(ctx context.Context, id scope.Identity, q Query) ([]Hit, error)
	// Get returns one visible memory, or ErrNotFound.
	Get(ctx context.Context, id scope.Identity, memoryID string) (Memory, error)
	// Update changes one memory in a scope the caller may write, or returns
	// ErrNotFound.
	Update(ctx context.Context, id scope.Identity, memoryID string, p Patch) (Memory, error)
	// Delete removes one memory in a scope the caller may write, or returns
	// ErrNotFound.
	Delete(ctx context.Context, id scope.Identity, memoryID string) error
	// ListScopes returns the caller's visible scopes, narrowest first, with
	// counts of live memories.
	ListScopes(ctx context.Context, id scope.Identity) ([]ScopeInfo, error)
	// Purge deletes every memory of the target and returns counts per
	// scope. The caller checks permission with [scope.Identity.CanPurge];
	// backends refuse a target the identity may not purge with
	// scope.ErrForbidden.
	Purge(ctx context.Context, id scope.Identity, t scope.Target) (PurgeCounts, error)
	// DeleteExpired removes memories whose expiry is before now, across all
	// orgs, and returns how many. It is the janitor's call.
	DeleteExpired(ctx context.Context, now time.Time) (int, error)
	// Embedder returns what produced the stored vectors; ok is false when
	// nothing is recorded yet.
	Embedder(ctx context.Context) (info EmbedderInfo, ok bool, err error)
	// SetEmbedder records info when nothing is recorded yet, and otherwise
	// returns a *MismatchError if it differs from what is recorded.
	SetEmbedder(ctx context.Context, info EmbedderInfo) error
	// Close releases the store's resources.
	Close() error
}

// Normalize scales v to unit length in place and returns it. A zero vector
// or one holding NaN or Inf is an error wrapping ErrInvalid.
func Normalize(v []float32) ([]float32, error) {
	var sum float64
	for _, x := range v {
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%w: vector holds NaN or Inf", ErrInvalid)
		}
		sum += f * f
	}
	if sum == 0 {
		return nil, fmt.Errorf("%w: zero vector", ErrInvalid)
	}
	inv := float32(1 / math.Sqrt(sum))
	for i := range v {
		v[i] *= inv
	}
	return v, nil
}

// Tuning values shared by the backends so that both behave alike.
const (
	// DuplicateSimilarity is the cosine similarity at or above which a new
	// memory counts as a near-duplicate of one already in its scope.
	DuplicateSimilarity = 0.97
	// RRFK is the k of reciprocal rank fusion: score = sum 1/(k + rank).
	RRFK = 60
	// CandidatesPerHalf is how many candidates each half of a hybrid
	// search contributes before fusion, per requested hit (at least 50).
	CandidatesPerHalf = 5
	// DefaultLimit is the number of hits when Query.Limit is 0.
	DefaultLimit = 10
	// MaxLimit is the largest Query.Limit.
	MaxLimit = 100
)
