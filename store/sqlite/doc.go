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
// float32 blob in memory_vectors. The meta table records the embedder.
// The statements of the add path are prepared once on the writer
// connection, those of the search path once per reader connection.
//
// # Search
//
// A search reads an in-process cache of each visible (org, scope): its
// rows, decoded vectors, a binary code per vector and a full-text index.
// Every query filters by the caller's org and visible (org, scope_kind,
// scope_id): only those scopes' cache entries are read, and the cache is
// filled by queries bound to them.
//
// The vector half is exact for small scopes. Over the visible scopes'
// rows it re-ranks max(2 x the candidates wanted, rows/192) rows exactly
// (100 for ten hits), shared among the scopes by their sizes with at
// least the candidates wanted per scope; a scope holding no more than its
// share is scanned whole, in a larger one the binary codes pick its share
// of candidates, whose exact cosine similarity ranks them. In a scope of
// more than 8 times its share, the first 256 bits of the codes (kept
// packed apart) first pick 4 times the share, whose whole codes then pick
// it.
//
// A code (package simhash) has one bit per dimension (rounded up to a
// power of two): the vector minus the scope's mean, multiplied by fixed
// random signs and rotated by a Walsh-Hadamard transform, then its signs.
// The rotation is linear, so each scope keeps its mean rotated and a
// search rotates its query once. Its Hamming
// distances estimate angles whatever the variance of each dimension, so
// the candidates hold the exact top ten (recall@10 of 0.98 on 50,000
// clustered, anisotropic vectors in the benchmarks).
//
// The full-text half is BM25 (k1 = 1.2, b = 0.75, as FTS5 computes it)
// over the visible scopes' rows, with the statistics (row count, average
// length, rows per term) of those scopes only. Text is split into words
// of letters, digits and marks, lower-cased, with Latin diacritics
// removed; any input is a valid query. Terms held by half the rows or more
// (BM25 floors their weight) are only used when the other terms match
// fewer rows than the candidates wanted. In a scope of 10,000 rows or
// more, terms are scored heaviest first, and the rows no term left can
// lift to the candidates wanted are never scored (a bound from each
// term's best row and one from the longest row's length; the few rows
// scored first are completed from the other terms' lists, found through
// a skip array of every 16th posting's row); the candidates and their
// scores are those of scoring every posting. The
// two halves are fused by
// [store.Fuse]. (Files before schema version 4 also kept an FTS5 table in
// step by triggers; the migration to 4 drops it, as nothing reads it.)
//
// Every write transaction bumps the scope's counter in scope_versions; a
// search compares the counters with the cache and brings up to date any
// scope that another connection or process changed, while this process's
// own writes patch the cache directly. Each row records the counter its
// last insert or update reached, and each scope the counter from which
// rows left it, both kept by triggers (schema version 5): a scope others
// only added to or updated is caught up by reading those rows, and one
// they deleted from is read again whole. Before reading the counters, a
// search asks whether anything was committed to the file since its scopes
// were last checked (PRAGMA data_version on a connection kept for it; on
// Linux, while the WAL-index header at the start of the -shm file is the
// one read before that statement last ran, the statement is skipped), and
// reads nothing when not. The cache holds about [Config.CacheBytes] and
// drops the least recently used scopes beyond it.
//
// # Several processes
//
// Several processes may open one file at once (two editor windows, say).
// Every write is one short BEGIN IMMEDIATE transaction, and duplicates are
// looked for inside it, so concurrent adds of one text to one scope store
// it once and no acknowledged write is lost. A write that cannot get the
// lock within the busy timeout fails with [store.ErrUnavailable]. Each
// process reads only the rows the others wrote since it last looked,
// unless they deleted some (see above).
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
