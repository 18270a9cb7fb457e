// Package sqlite is the embedded [store.Store]: one SQLite file, no server,
// through the pure-Go driver modernc.org/sqlite.
//
//	s, err := sqlite.Open(ctx, sqlite.Config{Path: "/home/me/.local/share/scopemem/memories.db"})
//	if err != nil {
//		return err
//	}
//	defer s.Close()
//
// # Storage
//
// The file runs in WAL mode with synchronous=NORMAL, foreign keys on and a
// busy timeout ([Config.BusyTimeout]). Its schema is created and moved
// forward by migrations compiled into the binary and recorded in the
// schema_version table; a file written by a newer binary is refused. Each
// memory is a row of memories carrying org_id, scope_kind and scope_id, a
// random UUIDv7 id, a SHA-256 of its normalized content for exact-duplicate
// checks, its tags (a JSON array, mirrored in memory_tags for filtering) and
// metadata. Its vector, normalized to unit length, is a little-endian
// float32 blob in memory_vectors. An FTS5 table over the content, kept in
// step by triggers, serves the full-text half of a search. The meta table
// records the embedder.
//
// # Search
//
// The full-text half turns the query into an FTS5 expression in which every
// word is quoted and the words are ORed, so no input is a syntax error. The
// vector half is an exact cosine scan in Go of the caller's visible scopes,
// keeping the best candidates in a bounded heap; the two are fused by
// [store.Fuse]. Every query filters by the caller's org and visible
// (org, scope_kind, scope_id) with bound parameters.
//
// The scan reads an in-process cache of decoded vectors and rows per
// (org, scope). Every write transaction bumps that scope's counter in
// scope_versions; a search compares the counters with the cache and reloads
// any scope that another connection or process changed, while this
// process's own writes patch the cache directly.
//
// # Several processes
//
// Several processes may open one file at once (two editor windows, say).
// Every write is one short BEGIN IMMEDIATE transaction, and duplicates are
// looked for inside it, so concurrent adds of one text to one scope store
// it once and no acknowledged write is lost. A write that cannot get the
// lock within the busy timeout fails with [store.ErrUnavailable].
//
// # Errors
//
// Driver errors are translated at this package's boundary: no row becomes
// [store.ErrNotFound]; a database that stays locked, is read-only, sits on a
// full disk or is not a database becomes [store.ErrUnavailable] with a
// message saying what to do. A [Config.ReadOnly] store serves reads and
// refuses writes with [store.ErrUnavailable].
//
// # Concurrency and context
//
// A [Store] is safe for concurrent use. Cancelling a call's context
// interrupts its statement; a write transaction then rolls back whole. The
// caller that opened the store calls [Store.Close] once, after every call
// has returned.
package sqlite
