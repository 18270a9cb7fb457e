package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// errStoreTimeout is the cause of a store call's context when the call
// ran out of its Config.StoreTimeout.
var errStoreTimeout = errors.New("store timeout")

// deadlineStore bounds every call a tool, a resource or /readyz makes to
// the store by Config.StoreTimeout, so that a database that does not
// answer (stopped, frozen, unreachable) gives the caller
// store.ErrUnavailable, which the tools turn into the "store unavailable,
// retry" error, instead of a call that hangs. A call that runs out of time
// is abandoned as cancelling its context abandons it (store package doc):
// a write either completes or leaves nothing behind, and the caller cannot
// tell which, as with any lost connection.
//
// DeleteExpired is not bounded: it is the janitor's, which nobody waits
// for, and it commits batch after batch, so cutting a long one short would
// only make the next run do the same work again.
type deadlineStore struct {
	store.Store
	timeout time.Duration
}

// Unwrap returns the bounded store, whose optional capabilities callers
// find by type assertion (see [App.BaseStore]).
func (s *deadlineStore) Unwrap() store.Store { return s.Store }

// bound returns ctx limited to the store timeout.
func (s *deadlineStore) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, s.timeout, errStoreTimeout)
}

// unavailable turns the failure of a call whose store timeout ran out
// into store.ErrUnavailable, keeping err in the chain. Errors of calls
// that ended for any other reason (the caller's own deadline or
// cancellation included) are returned as they are.
func (s *deadlineStore) unavailable(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, store.ErrUnavailable) || !errors.Is(context.Cause(ctx), errStoreTimeout) {
		return err
	}
	return fmt.Errorf("%w: no answer within the store timeout of %s: %w", store.ErrUnavailable, s.timeout, err)
}

func (s *deadlineStore) Add(ctx context.Context, id scope.Identity, ms []store.NewMemory) ([]store.Added, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	r, err := s.Store.Add(ctx, id, ms)
	return r, s.unavailable(ctx, err)
}

func (s *deadlineStore) Search(ctx context.Context, id scope.Identity, q store.Query) ([]store.Hit, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	r, err := s.Store.Search(ctx, id, q)
	return r, s.unavailable(ctx, err)
}

func (s *deadlineStore) Get(ctx context.Context, id scope.Identity, memoryID string) (store.Memory, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	r, err := s.Store.Get(ctx, id, memoryID)
	return r, s.unavailable(ctx, err)
}

func (s *deadlineStore) Update(ctx context.Context, id scope.Identity, memoryID string, p store.Patch) (store.Memory, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	r, err := s.Store.Update(ctx, id, memoryID, p)
	return r, s.unavailable(ctx, err)
}

func (s *deadlineStore) Delete(ctx context.Context, id scope.Identity, memoryID string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.unavailable(ctx, s.Store.Delete(ctx, id, memoryID))
}

func (s *deadlineStore) ListScopes(ctx context.Context, id scope.Identity) ([]store.ScopeInfo, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	r, err := s.Store.ListScopes(ctx, id)
	return r, s.unavailable(ctx, err)
}

func (s *deadlineStore) Purge(ctx context.Context, id scope.Identity, t scope.Target) (store.PurgeCounts, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	r, err := s.Store.Purge(ctx, id, t)
	return r, s.unavailable(ctx, err)
}

func (s *deadlineStore) Embedder(ctx context.Context) (store.EmbedderInfo, bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	info, ok, err := s.Store.Embedder(ctx)
	return info, ok, s.unavailable(ctx, err)
}

func (s *deadlineStore) SetEmbedder(ctx context.Context, info store.EmbedderInfo) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.unavailable(ctx, s.Store.SetEmbedder(ctx, info))
}
