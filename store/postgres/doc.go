// Package postgres is the PostgreSQL + pgvector backend of [store.Store],
// for production and multi-tenant servers.
//
// # Setup
//
// Two roles take part. The owner owns the schema and runs [Migrate]
// (`scopemem migrate`, or `scopemem serve --migrate`); it must own the
// database or hold CREATE on its schema, and needs CREATEROLE only if
// Migrate is to create the runtime role. The pgvector extension must exist
// in the database or the owner must be allowed to create it (pgvector is
// not a trusted extension: on managed services, a superuser runs
// `CREATE EXTENSION vector` once). The runtime role is what the server
// connects as ([Open]): it owns nothing, has neither SUPERUSER nor
// BYPASSRLS, and holds only the grants Migrate gives it.
//
//	err := postgres.Migrate(ctx, ownerURL, postgres.MigrateOptions{
//		RuntimeRole:     "scopemem_app",
//		RuntimePassword: pw, // creates the role when missing
//	})
//	s, err := postgres.Open(ctx, postgres.Config{URL: runtimeURL, Logger: log})
//	defer s.Close()
//
// # Isolation
//
// Every call runs in one transaction whose first statement sets the
// caller's identity (app.org_id, app.user_id, app.team_ids, app.agent,
// app.session_id and app.perms) with set_config(..., true), so the settings
// end with the transaction and never reach the next user of a pooled
// connection. Row-level security policies (FORCE ROW LEVEL SECURITY) admit
// only the rows of the identity's visible scopes; the queries filter by org
// and scope with bound parameters as well, so the policies are a second
// wall behind the query, not the only one. Purges of another user or of the
// whole org (memory:admin) and the expiry janitor have their own narrow
// policy paths.
//
// # Search
//
// The vector half names each visible scope in its own branch, with
// equality on bound parameters, and orders by the cosine distance to the
// query. A search that names no scope with its own index runs the
// connection's cached generic plan, which reads each scope through an
// (org, scope) btree and sorts exactly; one that may name such a scope is
// planned with the literal org and scope (plan_cache_mode=
// force_custom_plan), so a large scope that [Maintain] has given its own
// partial HNSW index is searched through that index (hnsw.ef_search from
// [Config].EFSearch, iterative scans on). No search reads another
// tenant's rows, so one tenant's size never slows another's search. The
// full-text half matches a generated tsvector ('simple' configuration) with
// a query built from the words of the text, so user input never causes a
// syntax error. [store.Fuse] merges the two. The transaction, the identity
// settings and both halves go to the server in one round trip. Vectors are
// stored inline in the row (storage MAIN), so the scan reads no TOAST
// table.
//
// The vector cache. A scope is ranked by the Store itself from a copy of
// the scope's rows in memory (ids, vectors,
// content, tags, metadata and times, about 3 KB per memory of 768
// dimensions plus its content, up to [Config].VectorCacheBytes), so the
// database reads only the scopes' versions. Every insert, update or
// delete of memories bumps, by trigger and in its own transaction, a
// version per scope it touched (table scope_versions, readable by the
// runtime role under the same rule as the memories); a search reads the
// versions of its scopes under the caller's row-level security and
// answers from the copies only when each is at its scope's version (a
// scope the caller may not read has none), else reloads only the rows
// that changed and searches again. Every
// replica therefore answers exactly what the database holds, whichever
// replica or tool wrote it. Scopes larger than a quarter of the budget
// are ranked in SQL as described above (through their own index when
// they have one); a scope that has its own index but fits is ranked
// from its copy, exactly. A copy also keeps its rows'
// lexemes (as the server stored them in tsv) in an inverted index and
// ranks the text half with ts_rank's arithmetic, so that a hybrid search
// reads nothing but the versions; ties rank the newer
// row first, then the higher id, in SQL and in the cache alike. It does
// so when the query's words are ASCII letters and digits (PostgreSQL
// keeps those as they are) and the copy holds every row of its scope;
// otherwise the text half runs in SQL.
//
// Add checks each new memory against its scope the same way: the content
// hash through its btree, the nearest vector exactly or through the
// scope's index, so adding to a large scope costs a graph search, not a
// scan; when the scope's copy in the vector cache is at the scope's
// version (checked in the same round trip), the copy answers the vector
// check instead. Once committed, an add appends its rows to the copies
// of its scopes that were at the version just before its own, so a
// search after it reloads nothing.
//
// # Large scopes
//
// [Maintain] connects as the owner (only a table's owner may index it),
// finds scopes with at least MaintainOptions.MinRows memories and builds a
// partial HNSW index for each with CREATE INDEX CONCURRENTLY; it drops the
// index of a scope that shrank below half the threshold. Run it
// periodically (every few minutes) beside [Store.DeleteExpired]; replicas
// may all run it, a session advisory lock lets one work at a time.
// Searches are correct without it, only slower on large scopes.
//
// # Scaling
//
// org_id leads every primary key and every query carries it, so the
// memories and audit tables can be distributed by org_id with Citus
// (create_distributed_table('memories', 'org_id')) without query changes.
//
// # Errors
//
// Driver errors are translated at this boundary: no row becomes
// [store.ErrNotFound], unique violations and serialization failures
// [store.ErrConflict], unreachable or read-only servers
// [store.ErrUnavailable]. Messages never contain the URL's password.
package postgres
