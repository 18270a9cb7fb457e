package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// DupVectorSQL is the nearest-vector duplicate check, for plan tests.
var DupVectorSQL = dupVectorSQL

// DupHashSQL is the same-content duplicate check, for plan tests.
const DupHashSQL = dupHashSQL

// GetSQL, UpdateSQL and DeleteSQL read, change and delete one memory,
// for plan tests.
const (
	GetSQL    = getSQL
	UpdateSQL = updateSQL
	DeleteSQL = deleteSQL
)

// SearchSQL is the search statement over nScopes scopes of dims-dimensional
// vectors with the given halves, for a query without tags, written for
// a scope that may have its own index (indexed) or not, for plan tests.
// Its parameters are the org, the time, the number of candidates per half,
// how many of them to read in full, the query vector (vector half), the
// tsquery text (text half), then a kind and id per scope.
func SearchSQL(dims, nScopes int, vector, text, merged, indexed bool) string {
	return searchShape{dims: dims, scopes: nScopes, vector: vector, text: text, merged: merged, indexed: indexed}.sql()
}

// ListScopesSQL counts the live rows of scopes, for plan tests.
const ListScopesSQL = listScopesSQL

// SearchSettingsSQL sets a search's plan cache mode, for plan tests.
const SearchSettingsSQL = searchSettingsSQL

// ExpireScopeIndexes makes the next search fetch the list of per-scope
// indexes.
func (s *Store) ExpireScopeIndexes() {
	s.ann.mu.Lock()
	s.ann.loadedAt = time.Time{}
	s.ann.mu.Unlock()
}

// ScopeIndexed reports whether the store's list of per-scope indexes holds
// one for the scope.
func (s *Store) ScopeIndexed(org string, sc scope.Scope, dims int) bool {
	s.ann.mu.Lock()
	defer s.ann.mu.Unlock()
	return s.ann.names[indexName(org, sc, dims)]
}

// VectorCacheBytes is about how much the store's vector cache holds.
func (s *Store) VectorCacheBytes() int64 {
	if s.vecs == nil {
		return 0
	}
	return s.vecs.bytesUsed()
}

// TextRank is the rank the vector cache gives a row whose tsvector
// prints as tsv for a query of lexemes (sorted, unique), as a float4
// like ts_rank's; 0 when the row does not match.
func TextRank(tsv string, lexemes []string) (float32, error) {
	rows := []loadedRow{{id: "r", tsv: &tsv}}
	v := &scopeVecs{ids: []string{"r"}, created: []int64{0}, expires: []int64{0}, tags: [][]string{nil}}
	if err := v.indexText(rows, nil); err != nil {
		return 0, err
	}
	hits := rankText([]*scopeVecs{v}, lexemes, nil, time.Now(), 1)
	if len(hits) == 0 {
		return 0, nil
	}
	return float32(-hits[0].dist), nil
}

// CacheLexemes is cacheLexemes of the tsquery text of free text.
func CacheLexemes(text string) ([]string, bool) { return cacheLexemes(ftsQuery(text)) }

// VectorCacheLoads is how many scope copies the store has loaded.
func (s *Store) VectorCacheLoads() int64 { return s.vecs.loads.Load() }

// VectorCachePatches is how many copies the store's adds brought up to
// date.
func (s *Store) VectorCachePatches() int64 { return s.vecs.patches.Load() }

// VectorCacheChecks is how many scopes' duplicate checks the store's
// copies answered (the SQL statement reading nothing).
func (s *Store) VectorCacheChecks() int64 { return s.vecs.checked.Load() }

// SearchCopyAs ranks the store's copy of scope sc of id's org (a search
// of sc must have loaded it) for vec as id would, skipping the scope
// checks Search makes before: what is left is the database's answer to
// the scope's version under id's row-level security. ok is false when
// the copy did not answer.
func (s *Store) SearchCopyAs(ctx context.Context, id scope.Identity, sc scope.Scope, vec []float32, limit int) (hits []store.Hit, ok bool, err error) {
	snap := s.vecs.get(cacheKey{org: id.Org, sc: sc, dims: len(vec)})
	if snap == nil {
		return nil, false, errors.New("no copy of the scope")
	}
	scopes := []scope.Scope{sc}
	kinds, sids := scopeArrays(scopes)
	sh := searchShape{dims: len(vec), scopes: 1, vector: true, cached: true}
	hits, _, ok, err = s.searchAllCached(ctx, id, store.Query{Vector: vec, Limit: limit}, sh, scopes, kinds, sids,
		[]*scopeVecs{snap}, vec, nil, limit, 50, time.Now())
	return hits, ok, err
}

// PreparedPlans sums how many generic and custom plans the prepared
// statements of one of the pool's connections whose text contains sql
// have run (pg_prepared_statements); with Config.MaxConns 1 that is
// every statement the store ran.
func (s *Store) PreparedPlans(ctx context.Context, sql string) (generic, custom int64, err error) {
	err = s.pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		return c.QueryRow(ctx, `SELECT COALESCE(sum(generic_plans), 0), COALESCE(sum(custom_plans), 0)
			FROM pg_prepared_statements WHERE strpos(statement, $1) > 0`, sql).Scan(&generic, &custom)
	})
	return generic, custom, err
}
