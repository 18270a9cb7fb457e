// Package storetest is the contract suite every [store.Store] backend must
// pass, in the manner of testing/fstest and pgx's pgxtest.
//
// A backend's test calls [Run] with a function that opens a fresh, empty
// store and registers its cleanup:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := sqlite.Open(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "m.db")})
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The suite records [EmbedderInfo] on every store it opens, so vectors have
// [Dims] dimensions; [Vector] makes them deterministically from text.
//
// # What the suite holds a backend to
//
// Beyond the doc comments of [store.Store], the suite pins down these
// choices so that every backend behaves alike:
//
//   - Add refuses with [store.ErrInvalid] an empty batch, blank content, a
//     missing, zero, NaN/Inf or wrong-sized vector, metadata that is not a
//     JSON object, and a scope the caller cannot see; a refused batch stores
//     nothing. A memory may be added already expired.
//   - Duplicates are found within one org and scope among live memories,
//     including earlier memories of the same batch; concurrent adds of one
//     text to one scope store it once.
//   - The full-text half matches memories holding any word of the query
//     (words are ORed), and no query text is ever a syntax error; a query
//     with neither text nor vector is [store.ErrInvalid]. Text-only hits
//     have Similarity 0.
//   - Query.Scopes keeps only visible scopes; if none remain the search
//     returns nothing (it never widens to every scope).
//   - Expired memories are not returned by Search or Get, not counted by
//     ListScopes, and not duplicates of new ones.
//   - ListScopes returns exactly [scope.Identity.Visible], in that order,
//     with zero counts included.
//   - Purge counts may include or omit zero entries.
//
// # The cross-tenant probe
//
// The CrossTenantProbe subtest drives thousands of random operations from
// callers in 5 orgs with random teams, agents, sessions and permissions,
// keeps a model of where every memory lives, and fails if any call returns
// or touches a memory outside what the caller may see or change. Its seed is
// random and printed on failure; SCOPEMEM_PROBE_SEED replays one, and
// SCOPEMEM_PROBE_OPS sets the number of operations (3000, or 1000 with
// -short or the race detector).
package storetest
