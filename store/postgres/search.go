package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/pgvector/pgvector-go"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// How a search reaches the server, and what it costs there.
//
// One statement answers both halves. Each half first ranks narrow rows
// (id, scope, creation time and distance or text rank) per visible scope,
// every scope in its own UNION ALL branch that names the org and the scope
// with equality on bound parameters, and keeps the best n; only those
// winners are then read again by primary key, under row-level security,
// for their content. Nothing wide is sorted. A candidate's embedding is
// sent back only when the candidates come from more than one scope: that
// is the only case in which store.Fuse compares vectors (near-identical
// memories of different scopes collapse), and it saves 3 KB per candidate
// otherwise. Similarities are computed by the server.
//
// Text rank. The text half orders matches by ts_rank, not ts_rank_cd:
// since PostgreSQL 13, ts_rank_cd allocates and clears 32 KB per query
// term for every row it ranks (memset was 22% of a hybrid search's server
// time in a profile, and its cost grows with the words of the query),
// while ts_rank costs a pass over the row's matching positions.
//
// Plans. A scope with its own partial HNSW index (see [Maintain]) is
// searched through it only when the statement is planned with that
// scope's literal org and ids, so such a search is planned on every call
// (plan_cache_mode=force_custom_plan, the connections' default). Every
// other search runs the connection's cached generic plan
// (force_generic_plan, set for the search's transaction only), which
// reads each scope through the (org, scope) btree and costs no planning;
// the org and scope are bound parameters in that plan as in any other,
// and row-level security applies the same way. Which scopes have an index
// comes from the catalog, cached per Store for annCacheTTL and refreshed
// within a search's own round trip; a stale entry only costs speed (a new
// index unused for a while, or a planned search of a scope whose index is
// gone), never a result.

// annCacheTTL is how long the list of per-scope indexes is trusted.
const annCacheTTL = 10 * time.Second

// annIndexSQL lists the valid per-scope indexes of memories.
const annIndexSQL = `SELECT c.relname::text FROM pg_catalog.pg_index i
	JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
	WHERE i.indrelid = 'memories'::regclass AND i.indisvalid AND c.relname LIKE 'memories\_ann\_%'`

// searchSettingsSQL sets the plan cache mode ($1) for the transaction
// (a search's, or an add's), and turns parallel query off: starting
// workers costs more than the few thousand rows a search reads, and
// concurrent searches already keep the cores busy.
const searchSettingsSQL = `SELECT set_config('plan_cache_mode', $1, true),
	set_config('max_parallel_workers_per_gather', '0', true)`

// annIndexes caches the names of the per-scope HNSW indexes.
type annIndexes struct {
	mu       sync.Mutex
	names    map[string]bool
	loadedAt time.Time // zero until the first load
	loading  bool      // a search is fetching the list
}

// lookup reports whether one of scopes of org may have its own index, and
// whether the caller should fetch the list (then it must call loaded or
// failed). Until the list is known every scope may have one.
func (a *annIndexes) lookup(org string, scopes []scope.Scope, dims int, now time.Time) (indexed, refresh bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.loading && now.Sub(a.loadedAt) >= annCacheTTL {
		a.loading, refresh = true, true
	}
	return a.indexedLocked(org, scopes, dims), refresh
}

// indexedLocked reports whether the list names an index of one of scopes;
// true while no list has been read. a.mu is held.
func (a *annIndexes) indexedLocked(org string, scopes []scope.Scope, dims int) bool {
	if a.loadedAt.IsZero() {
		return true
	}
	for _, sc := range scopes {
		if a.names[indexName(org, sc, dims)] {
			return true
		}
	}
	return false
}

// queueRefresh queues the read of the list into b, for a caller that
// lookup told to refresh it; done records the outcome once b has run
// (err is the batch's).
func (a *annIndexes) queueRefresh(b *pgx.Batch, now time.Time) (done func(err error)) {
	var names []string
	b.Queue(annIndexSQL).Query(func(rows pgx.Rows) error {
		var err error
		names, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	return func(err error) {
		if err == nil {
			a.loaded(names, now)
		} else {
			a.failed()
		}
	}
}

// loaded records a fresh list.
func (a *annIndexes) loaded(names []string, at time.Time) {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	a.mu.Lock()
	a.names, a.loadedAt, a.loading = m, at, false
	a.mu.Unlock()
}

// failed lets the next search try again.
func (a *annIndexes) failed() {
	a.mu.Lock()
	a.loading = false
	a.mu.Unlock()
}

// ftsQuery turns free text into a tsquery string that matches any of its
// words: only letters and digits survive, each quoted, joined by '|', so
// no input can be a tsquery syntax error. Empty means no text half.
func ftsQuery(text string) string {
	words := strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
	seen := map[string]bool{}
	var parts []string
	for _, w := range words {
		if seen[w] || len(parts) == 64 {
			continue
		}
		seen[w] = true
		parts = append(parts, "'"+w+"'")
	}
	return strings.Join(parts, " | ")
}

// uniqueScopes returns ss without repeats, in first-seen order.
func uniqueScopes(ss []scope.Scope) []scope.Scope {
	out := make([]scope.Scope, 0, len(ss))
	seen := make(map[scope.Scope]bool, len(ss))
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// searchShape picks one search statement: the vector dimension, how many
// scopes it names, which halves run, whether both halves share one read of
// the rows (merged: only for exact search, since a scope's HNSW index
// answers the vector half alone), and whether rows must carry tags (a
// statement for a query without tags tests nothing of the tags: about 7%
// of a 1,000-row scan's server time).
//
// indexed: some scope may have its own HNSW index, so the statement is
// planned per call and writes the distance exactly as those indexes are
// built, ((embedding::vector(dims)) <=> q); otherwise it compares the
// stored vector directly, saving a type-modifier check per row.
//
// cached: the vector half was ranked from the vector cache, and comes as
// arrays of candidates (id, kind, scope id, best first) instead of a
// scan; the statement reads their content and runs the text half, and
// sends neither similarities nor embeddings (the cache has the vectors).
type searchShape struct {
	dims, scopes                                int
	vector, text, merged, tags, indexed, cached bool
}

// Parameters of every search statement: $1 org, $2 now (rows expiring
// earlier are gone), $3 candidates per half, $4 how many of each half's
// best are read in full (see fetchCount); then the tags the rows must
// all carry (tags), the query vector (vector half), the tsquery text
// (text half), and a kind and id per scope.
const (
	argOrg   = "$1"
	argNow   = "$2"
	argLimit = "$3"
	argFetch = "$4"
)

// params numbers the statement's optional parameters: cands are the
// three arrays of a cached vector half.
func (sh searchShape) params() (tags, vec, tsq string, cands [3]string, scopeArg func(i int) (kind, id string)) {
	next := 5
	param := func() string {
		next++
		return "$" + strconv.Itoa(next-1)
	}
	if sh.tagParam() {
		tags = param()
	}
	if sh.vector && !sh.cached {
		vec = param()
	}
	if sh.text {
		tsq = param()
	}
	if sh.vector && sh.cached {
		for i := range cands {
			cands[i] = param()
		}
	}
	first := next
	return tags, vec, tsq, cands, func(i int) (string, string) {
		return "$" + strconv.Itoa(first+2*i), "$" + strconv.Itoa(first+2*i+1)
	}
}

// tagParam reports whether the statement tests tags, and so takes
// them: a cached vector half was filtered by tags in the cache, so a
// cached statement without a text half scans no rows to test.
func (sh searchShape) tagParam() bool { return sh.tags && (!sh.cached || sh.text) }

// cachedHalf is a vector half ranked from the cache, as the three
// arrays of a cached statement.
type cachedHalf struct {
	ids, kinds, sids []string
}

// args returns the arguments of sh.sql(); cached is the vector half of
// a cached shape.
func (sh searchShape) args(org string, now time.Time, tags []string, n, fetch int, vec pgvector.Vector, tsq string, cached cachedHalf, scopes []scope.Scope) []any {
	args := make([]any, 0, 11+2*len(scopes))
	args = append(args, org, now, n, fetch)
	if sh.tagParam() {
		args = append(args, tags)
	}
	if sh.vector && !sh.cached {
		args = append(args, vec)
	}
	if sh.text {
		args = append(args, tsq)
	}
	if sh.vector && sh.cached {
		args = append(args, cached.ids, cached.kinds, cached.sids)
	}
	if !sh.cached || sh.text {
		for _, sc := range scopes {
			args = append(args, string(sc.Kind), sc.ID)
		}
	}
	return args
}

// fetchCount is how many of each half's n best candidates a search reads
// in full. With one half, store.Fuse keeps that half's order and only
// collapses near-identical hits of different scopes, so when the
// candidates all come from one scope (the statement checks) the first
// limit are the answer, and reading the other rows by primary key would
// be wasted; with two halves a hit can come from deep in either.
func (sh searchShape) fetchCount(limit, n int) int {
	if sh.vector && sh.text {
		return n
	}
	return limit
}

// live is the filter every candidate passes besides its scope: alive at
// $2 and, when the query names tags, carrying them (tags is their
// parameter).
func (sh searchShape) live(tags string) string {
	l := `(m.expires_at IS NULL OR m.expires_at > ` + argNow + `)`
	if sh.tagParam() {
		l += `
			AND m.tags @> ` + tags + `::text[]`
	}
	return l
}

// sql writes the statement. Its result rows are: memoryCols, the cosine
// similarity to the query vector (0 without one, or for a vector of
// another dimension), the embedding when the candidates span more than
// one scope (else NULL), and the candidate's 1-based rank in the vector
// half and in the text half (NULL where it is not a candidate of that
// half), in no particular order.
func (sh searchShape) sql() string {
	tags, vec, tsq, cands, scopeArg := sh.params()
	d := strconv.Itoa(sh.dims)
	// Where a scope may have its own index, the distance is written
	// exactly as the partial indexes are built, and vector branches
	// repeat their predicate, so a custom plan can use the index.
	dist := "m.embedding <=> " + vec
	if sh.indexed {
		dist = annExpr("m.embedding", sh.dims, vec)
	}
	hasVec := `m.embedding IS NOT NULL AND vector_dims(m.embedding) = ` + d
	// branches writes one SELECT per scope, joined by UNION ALL.
	branches := func(b *strings.Builder, each func(kind, id string) string) {
		for i := range sh.scopes {
			if i > 0 {
				b.WriteString("\n\t\tUNION ALL ")
			}
			b.WriteString(each(scopeArg(i)))
		}
	}
	inScope := func(kind, id string) string {
		return `m.org_id = ` + argOrg + ` AND m.scope_kind = ` + kind + ` AND m.scope_id = ` + id + `
			AND ` + sh.live(tags)
	}
	// top ranks the best $4 rows of from (a FROM item named c, with
	// any WHERE clause) by order as column r.
	top := func(b *strings.Builder, name, cols, order, from string) {
		b.WriteString(name + ` AS (
	SELECT ` + cols + `, row_number() OVER (ORDER BY ` + order + `) AS r
	FROM (SELECT * FROM ` + from + `
		ORDER BY ` + order + `
		LIMIT ` + argLimit + `) AS c
)`)
	}
	var b strings.Builder
	b.WriteString("WITH ")
	switch {
	case sh.merged:
		// One read of each scope's rows serves both halves.
		b.WriteString(`s AS MATERIALIZED (`)
		branches(&b, func(kind, id string) string {
			return `SELECT m.id, m.scope_kind AS kind, m.scope_id AS sid, m.created_at,
			CASE WHEN ` + hasVec + ` THEN ` + dist + ` END AS dist,
			CASE WHEN m.tsv @@ q THEN ts_rank(m.tsv, q) END AS rank
		FROM memories m, to_tsquery('simple', ` + tsq + `) AS q
		WHERE ` + inScope(kind, id)
		})
		b.WriteString(`
), `)
		top(&b, "v", "c.id, c.kind, c.sid, c.dist", "c.dist, c.created_at DESC", "s AS c WHERE c.dist IS NOT NULL")
		b.WriteString(", ")
		top(&b, "t", "c.id, c.kind, c.sid", "c.rank DESC, c.created_at DESC, c.id DESC", "s AS c WHERE c.rank IS NOT NULL")
	default:
		if sh.vector && sh.cached {
			b.WriteString(`v AS (
	SELECT u.id::uuid AS id, u.kind, u.sid, NULL::float8 AS dist, u.r
	FROM unnest(` + cands[0] + `::text[], ` + cands[1] + `::text[], ` + cands[2] + `::text[])
		WITH ORDINALITY AS u(id, kind, sid, r)
	WHERE u.r <= ` + argLimit + `
)`)
		} else if sh.vector {
			var u strings.Builder
			u.WriteString("(")
			branches(&u, func(kind, id string) string {
				return `(SELECT m.id, m.scope_kind AS kind, m.scope_id AS sid, m.created_at, ` + dist + ` AS dist
		FROM memories m
		WHERE ` + inScope(kind, id) + `
			AND ` + hasVec + `
		ORDER BY ` + dist + `
		LIMIT ` + argLimit + `)`
			})
			u.WriteString(") AS c")
			top(&b, "v", "c.id, c.kind, c.sid, c.dist", "c.dist, c.created_at DESC", u.String())
		}
		if sh.text {
			if sh.vector {
				b.WriteString(", ")
			}
			var u strings.Builder
			u.WriteString("(")
			branches(&u, func(kind, id string) string {
				return `SELECT m.id, m.scope_kind AS kind, m.scope_id AS sid, m.created_at, ts_rank(m.tsv, q) AS rank
		FROM memories m, to_tsquery('simple', ` + tsq + `) AS q
		WHERE ` + inScope(kind, id) + `
			AND m.tsv @@ q`
			})
			u.WriteString(") AS c")
			top(&b, "t", "c.id, c.kind, c.sid", "c.rank DESC, c.created_at DESC, c.id DESC", u.String())
		}
	}
	switch {
	case sh.vector && sh.text:
		b.WriteString(`, c AS (
	SELECT COALESCE(v.id, t.id) AS id, COALESCE(v.kind, t.kind) AS kind, COALESCE(v.sid, t.sid) AS sid,
		v.dist, v.r AS vr, t.r AS tr
	FROM v FULL JOIN t ON t.id = v.id
)`)
	case sh.vector:
		b.WriteString(`, c AS (SELECT id, kind, sid, dist, r AS vr, NULL::bigint AS tr FROM v)`)
	default:
		b.WriteString(`, c AS (SELECT id, kind, sid, NULL::float8 AS dist, NULL::bigint AS vr, r AS tr FROM t)`)
	}
	sim, emb, alive := "0::float8", "m.embedding", ""
	switch {
	case sh.cached:
		// Similarities and embeddings come from the cache; rows are
		// checked alive again (the text half's already are).
		emb = "NULL::vector"
		alive = `
	AND (m.expires_at IS NULL OR m.expires_at > ` + argNow + `)`
	case sh.vector:
		sim = `CASE WHEN c.dist IS NOT NULL THEN 1 - c.dist
		WHEN ` + hasVec + ` THEN 1 - (` + dist + `)
		ELSE 0 END`
	}
	// multi: the candidates span more than one scope, so store.Fuse may
	// collapse near-identical ones and needs their vectors and all of
	// them; else only the best $4 of each half are read. An uncorrelated
	// scalar sub-select: computed once per execution (an InitPlan), where
	// a joined aggregate would be computed again for every candidate.
	const multi = `(SELECT min(kind) <> max(kind) OR min(sid) <> max(sid) FROM c)`
	b.WriteString(`
SELECT ` + memoryCols + `, ` + sim + ` AS sim,
	CASE WHEN ` + multi + ` THEN ` + emb + ` END,
	c.vr, c.tr
FROM c JOIN memories m ON m.org_id = ` + argOrg + ` AND m.id = c.id
WHERE (c.vr <= ` + argFetch + ` OR c.tr <= ` + argFetch + ` OR ` + multi + `)` + alive)
	return b.String()
}

// Search runs the hybrid search: cosine order over the visible rows (from
// the scopes' copies in the vector cache, else in SQL, exact or through
// the partial HNSW index of a scope Maintain indexed) and full-text rank,
// each returning candidates, fused by store.Fuse. The transaction, its
// settings and the statement go to the server in one round trip.
// Errors: store.ErrInvalid, store.ErrUnavailable.
func (s *Store) Search(ctx context.Context, id scope.Identity, q store.Query) ([]store.Hit, error) {
	if err := checkIdentity(id); err != nil {
		return nil, err
	}
	limit, err := q.Check()
	if err != nil {
		return nil, err
	}
	var (
		vec  pgvector.Vector
		dims int
	)
	if q.Vector != nil {
		if dims, err = s.vectorDims(ctx); err != nil {
			return nil, fmt.Errorf("search: %w", translate(err))
		}
		if vec, err = checkVector(q.Vector, dims); err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
	}
	scopes := id.Visible()
	if q.Scopes != nil {
		scopes = slices.DeleteFunc(uniqueScopes(q.Scopes), func(sc scope.Scope) bool { return !id.CanSee(sc) })
		if len(scopes) == 0 {
			return []store.Hit{}, nil
		}
	}
	tsq := ftsQuery(q.Text)
	sh := searchShape{dims: dims, scopes: len(scopes), vector: q.Vector != nil, text: tsq != ""}
	if !sh.vector && !sh.text {
		return []store.Hit{}, nil
	}
	sh.tags = len(q.Tags) > 0
	n := max(store.CandidatesPerHalf*limit, 50)
	now := time.Now()

	// Only a vector half can use a scope's index.
	planMode := "force_generic_plan"
	indexed, refresh := s.ann.lookup(id.Org, scopes, dims, now)
	if sh.vector && indexed {
		planMode = "force_custom_plan"
		sh.indexed = true
	} else {
		sh.merged = sh.vector && sh.text
	}
	// A scope's copy answers before its own index does: the copy ranks
	// exactly, and its text half stops early where SQL ranks every row
	// that matches a word (tens of milliseconds at 20,000 rows). The
	// index serves the scopes too large for the cache.
	if sh.vector && !refresh && s.vecs != nil {
		hits, ok, err := s.searchCached(ctx, id, q, sh, scopes, vec.Slice(), tsq, limit, n, now)
		if err != nil {
			return nil, fmt.Errorf("search: %w", translate(err))
		}
		if ok {
			return hits, nil
		}
	}
	var (
		byVec, byText []store.Candidate
		refreshed     func(error)
	)
	err = s.readBatch(ctx, settings{id: id}, func(b *pgx.Batch) {
		if refresh {
			refreshed = s.ann.queueRefresh(b, now)
		}
		b.Queue(searchSettingsSQL, planMode)
		b.Queue(sh.sql(), sh.args(id.Org, now, q.Tags, n, sh.fetchCount(limit, n), vec, tsq, cachedHalf{}, scopes)...).Query(func(rows pgx.Rows) error {
			var err error
			byVec, byText, err = scanSearch(rows)
			return err
		})
	})
	if refreshed != nil {
		refreshed(err)
	}
	if err != nil {
		return nil, fmt.Errorf("search: %w", translate(err))
	}
	halves := 0
	if sh.vector {
		halves++
	}
	if sh.text {
		halves++
	}
	return store.Fuse(byVec, byText, halves, limit, q.MinScore), nil
}

// scanSearch reads the rows of a search statement into the two ranked
// candidate lists.
func scanSearch(rows pgx.Rows) (byVec, byText []store.Candidate, err error) {
	type ranked struct {
		c      store.Candidate
		vr, tr *int64
	}
	var all []ranked
	for rows.Next() {
		var (
			r   ranked
			emb *pgvector.Vector
		)
		if r.c.Memory, err = scanMemory(rows, &r.c.Similarity, &emb, &r.vr, &r.tr); err != nil {
			return nil, nil, err
		}
		if emb != nil {
			r.c.Vector = emb.Slice()
		}
		all = append(all, r)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	half := func(rank func(*ranked) *int64) []store.Candidate {
		var in []*ranked
		for i := range all {
			if rank(&all[i]) != nil {
				in = append(in, &all[i])
			}
		}
		slices.SortFunc(in, func(a, b *ranked) int { return cmp.Compare(*rank(a), *rank(b)) })
		out := make([]store.Candidate, len(in))
		for i, r := range in {
			out[i] = r.c
		}
		return out
	}
	byVec = half(func(r *ranked) *int64 { return r.vr })
	byText = half(func(r *ranked) *int64 { return r.tr })
	return byVec, byText, nil
}

// searchCached runs a search whose vector half is ranked from the vector
// cache (see veccache.go), checking in the same snapshot as it reads the
// hits that the copies are the scopes' rows. ok is false when the cache
// cannot answer (a scope too large for it, or versions that kept moving
// while it reloaded): the caller then searches in SQL.
func (s *Store) searchCached(ctx context.Context, id scope.Identity, q store.Query, sh searchShape, scopes []scope.Scope,
	vec []float32, tsq string, limit, n int, now time.Time) (_ []store.Hit, ok bool, _ error) {
	sh.cached, sh.merged, sh.indexed = true, false, false
	kinds, sids := scopeArrays(scopes)
	var want map[scope.Scope]int64
	for range 2 {
		snaps, ok, err := s.snapshots(ctx, id, scopes, sh.dims, want)
		if err != nil || !ok {
			return nil, false, err
		}
		if lexemes, ok := cacheLexemes(tsq); ok && (!sh.text || allText(snaps)) {
			hits, stale, ok, err := s.searchAllCached(ctx, id, q, sh, scopes, kinds, sids, snaps, vec, lexemes, limit, n, now)
			if err != nil || stale == nil {
				return hits, ok, err
			}
			want = stale
			continue
		}
		top := rankCached(snaps, vec, sh.dims, q.Tags, now, n)
		var half cachedHalf
		for _, h := range top {
			sc := scopes[h.snap]
			half.ids = append(half.ids, snaps[h.snap].ids[h.row])
			half.kinds = append(half.kinds, string(sc.Kind))
			half.sids = append(half.sids, sc.ID)
		}
		versions := make(map[scope.Scope]int64, len(scopes))
		var byVec, byText []store.Candidate
		err = s.readBatchWith(ctx, beginSnapshot, settings{id: id}, func(b *pgx.Batch) {
			b.Queue(searchSettingsSQL, "force_generic_plan")
			queueVersions(b, id.Org, kinds, sids, versions)
			b.Queue(sh.sql(), sh.args(id.Org, now, q.Tags, n, sh.fetchCount(limit, n), pgvector.Vector{}, tsq, half, scopes)...).Query(func(rows pgx.Rows) error {
				var err error
				byVec, byText, err = scanSearch(rows)
				return err
			})
		})
		if err != nil {
			return nil, false, err
		}
		current := true
		for i, sc := range scopes {
			current = current && versions[sc] == snaps[i].version
		}
		if !current {
			want = versions
			continue
		}
		// Vectors and similarities come from the copies (a row without
		// a vector of this dimension keeps similarity 0, as in SQL). A
		// row of a scope the search does not name is dropped: the
		// copies' ids can only name such a row through a fault of the
		// cache, and row-level security still holds behind this check.
		// (The check is here, not in the statement's join: a scope
		// condition there made the planner look each candidate up
		// through the (org, scope) index, reading the whole scope per
		// candidate, instead of by primary key.)
		foreign := func(c store.Candidate) bool { return !slices.Contains(scopes, c.Scope) }
		byVec, byText = slices.DeleteFunc(byVec, foreign), slices.DeleteFunc(byText, foreign)
		for _, list := range [][]store.Candidate{byVec, byText} {
			for i := range list {
				c := &list[i]
				for si, v := range snaps {
					if r, found := v.index[c.ID]; found && scopes[si] == c.Scope {
						c.Vector = v.vec(int(r), sh.dims)
						c.Similarity = store.Dot(vec, c.Vector)
						break
					}
				}
			}
		}
		halves := 1
		if sh.text {
			halves = 2
		}
		return store.Fuse(byVec, byText, halves, limit, q.MinScore), true, nil
	}
	return nil, false, nil
}

// allText reports whether every copy can rank the text half.
func allText(snaps []*scopeVecs) bool {
	for _, v := range snaps {
		if !v.text {
			return false
		}
	}
	return true
}

// candidatePool holds the candidate slices of searchAllCached.
var candidatePool = sync.Pool{New: func() any { return new([]store.Candidate) }}

// fuseKey names row of the search's copy snap for store.Fuse: never zero.
func fuseKey(snap, row int32) uint64 { return uint64(snap+1)<<32 | uint64(uint32(row)) }

// searchAllCached answers a search whose halves both rank from the copies
// snaps (lexemes: the query's, sorted; none without a text half): the
// hits, content included, come from the copies, and the database reads
// only the scopes' versions, under the caller's row-level security (the
// policy of scope_versions is that of memories): a scope the identity may
// not see has no version there, and a copy answers only when the
// database's version is the copy's, that is when the copy holds exactly
// the scope's rows. stale is the scopes' versions when some copy is older
// (search again with them), ok false when the cache cannot answer
// (search in SQL).
func (s *Store) searchAllCached(ctx context.Context, id scope.Identity, q store.Query, sh searchShape, scopes []scope.Scope, kinds, sids []string,
	snaps []*scopeVecs, vec []float32, lexemes []string, limit, n int, now time.Time) (_ []store.Hit, stale map[scope.Scope]int64, ok bool, _ error) {
	versions := make(map[scope.Scope]int64, len(scopes))
	err := s.readBatch(ctx, settings{id: id}, func(b *pgx.Batch) {
		// A generic plan: left to choose, PostgreSQL plans the versions'
		// statement anew on every search.
		b.Queue(searchSettingsSQL, "force_generic_plan")
		queueVersions(b, id.Org, kinds, sids, versions)
	})
	if err != nil {
		return nil, nil, false, err
	}
	for i, sc := range scopes {
		if versions[sc] != snaps[i].version {
			return nil, versions, false, nil
		}
	}
	// sims holds the similarity of the vector half's hits (1 - dist). A
	// text hit among them needs no second dot product, and one that is
	// not gets its own only if it wins (store.Fuse reads a candidate's
	// similarity only to report it): its vector, read from main memory,
	// costs as much as the dot product.
	sims := make(map[[2]int32]float64, n)
	// The candidates only live until store.Fuse has copied the winners
	// out: their slices (about 230 bytes a candidate, a few hundred a
	// search) go back to a pool.
	var pooled []*[]store.Candidate
	defer func() {
		for _, p := range pooled {
			clear(*p)
			candidatePool.Put(p)
		}
	}()
	candidates := func(top []vecHit, vectorHalf bool) []store.Candidate {
		p := candidatePool.Get().(*[]store.Candidate)
		pooled = append(pooled, p)
		out := slices.Grow((*p)[:0], len(top))[:len(top)]
		*p = out
		for i, h := range top {
			v := snaps[h.snap]
			rv := v.vec(int(h.row), sh.dims)
			key := [2]int32{h.snap, h.row}
			var sim float64
			if vectorHalf {
				sim = 1 - h.dist
				sims[key] = sim
			}
			t := &v.texts[h.row]
			// The fusion reads the id, scope, content and creation time;
			// the winners get the whole memory below.
			out[i] = store.Candidate{
				Memory:     store.Memory{ID: v.ids[h.row], Org: id.Org, Scope: scopes[h.snap], Content: t.content, CreatedAt: time.Unix(0, v.created[h.row])},
				Vector:     rv,
				Similarity: sim,
				Key:        fuseKey(h.snap, h.row),
			}
		}
		return out
	}
	byVec := candidates(rankCached(snaps, vec, sh.dims, q.Tags, now, n), true)
	halves := 1
	var byText []store.Candidate
	if sh.text {
		halves = 2
		byText = candidates(rankText(snaps, lexemes, q.Tags, now, n), false)
	}
	hits := store.Fuse(byVec, byText, halves, limit, q.MinScore)
	for i := range hits {
		h := &hits[i]
		// Every hit is a row of the copy of a scope the search names; if
		// a fault of the cache said otherwise, the search runs in SQL.
		si := slices.Index(scopes, h.Scope)
		if si < 0 {
			return nil, nil, false, nil
		}
		row, found := snaps[si].index[h.ID]
		if !found {
			return nil, nil, false, nil
		}
		h.Memory = snaps[si].memory(int(row), id.Org, h.Scope)
		if sim, ok := sims[[2]int32{int32(si), row}]; ok {
			h.Similarity = sim
		} else {
			h.Similarity = store.Dot(vec, snaps[si].vec(int(row), sh.dims))
		}
	}
	return hits, nil, true, nil
}
