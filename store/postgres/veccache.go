package postgres

import (
	"container/list"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgvector/pgvector-go"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/simhash"
)

// The vector cache.
//
// Ranking a scope's rows by cosine in PostgreSQL visits every row: for a
// scope of 1,000 memories that is 500 heap pages of 3 KB rows and about
// 0.7 µs of server time per row, on every search. A Store therefore keeps
// a copy of the rows of the scopes it searches (ids, vectors, content,
// tags, metadata, author and times) and ranks them itself; the database
// still answers every search, in one round trip that reads the versions
// of the scopes (table scope_versions, bumped by a trigger in the same
// transaction as every insert, update or delete of memories, whoever
// makes it) under row-level security. When a version differs from the
// copy's, the copy is out of date: the search is thrown away, the scope
// reloaded (only the rows that changed carry their vector and content:
// the rows are compared by id and xmin) and the search run again;
// if the versions still move, the search runs in SQL as it does without
// the cache. So a cached search answers what the SQL search would in the
// same snapshot, except that a copy of more than exactRows rows is
// ranked exactly only on the rows its vectors' binary codes pick
// (veccodes.go), as a scope with its own HNSW index is ranked
// approximately by the index.
//
// Isolation: an entry is keyed by org and scope, loaded under the
// searching identity's row-level security, and used only for scopes that
// identity may see (Search's check on the verified identity) and whose
// version the database shows that identity on this search: the policy of
// scope_versions is that of memories, so a scope the database would not
// let the identity read has no version for it, and its copy does not
// answer (TestCopiesAnswerOnlyWhatTheDatabaseLets). A search whose text
// half the copies cannot rank reads its hits' content in SQL, under
// row-level security, in one snapshot with the versions.
//
// Scopes with their own HNSW index are not cached (their searches use the
// index); neither is a scope whose copy would take more than a quarter of
// the budget.

// DefaultVectorCacheBytes is Config.VectorCacheBytes when it is zero.
const DefaultVectorCacheBytes = 256 << 20

// cacheKey names the vectors of one dimension of one scope of one org.
type cacheKey struct {
	org  string
	sc   scope.Scope
	dims int
}

// scopeVecs is the copy of one scope's rows that hold a vector of the
// key's dimension, as of version. It is never changed once built:
// searches share it without locks.
type scopeVecs struct {
	version int64
	tooBig  bool      // the scope does not fit: search it in SQL
	checked time.Time // when tooBig was found
	ids     []string
	xmins   []int64
	created []int64 // Unix nanoseconds
	expires []int64 // Unix nanoseconds, 0 for never
	// expiring says some row has an expiry: without one, the pass over
	// every row's code prefix need not read expires.
	expiring bool
	tags     [][]string
	texts    []rowText
	vecs     []float32 // len(ids) x dims, unit length
	index    map[string]int32
	bytes    int64

	// The vectors' codes (veccodes.go): words per row, each row's first
	// prefixWords() words apart, taken around the mean of the meanN rows
	// the copy was built from, whose rotation is rmean.
	words  int
	codes  []uint64
	prefix []uint64
	rmean  []float32
	meanN  int

	// text: the copy holds every row of its scope, so postings (each
	// lexeme's rows, see textcache.go) can rank the text half.
	text     bool
	postings map[string][]posting

	// tail: the room past the ends of the row slices (their capacity) is
	// unused and this copy may be extended into it; taken by the first
	// appendRows, so two copies never write one array.
	tail atomic.Bool
}

// rowText is the rest of a copied row's memory: what a search returns
// beyond the id, scope, tags and times the ranking reads.
type rowText struct {
	content   string
	metadata  json.RawMessage
	createdBy string
	updated   int64 // Unix nanoseconds
}

// size is what t adds to a copy's bytes.
func (t rowText) size() int64 {
	return int64(len(t.content)+len(t.metadata)+len(t.createdBy)) + 64
}

// memory returns row i of v, of org and scope sc, as the store returns
// it. Its tags and metadata are its own: the copy's stay unchanged.
func (v *scopeVecs) memory(i int, org string, sc scope.Scope) store.Memory {
	t := v.texts[i]
	m := store.Memory{ID: v.ids[i], Org: org, Scope: sc, Content: t.content, CreatedBy: t.createdBy,
		CreatedAt: time.Unix(0, v.created[i]), UpdatedAt: time.Unix(0, t.updated)}
	if len(v.tags[i]) > 0 {
		m.Tags = slices.Clone(v.tags[i])
	}
	if t.metadata != nil {
		m.Metadata = slices.Clone(t.metadata)
	}
	if v.expires[i] != 0 {
		exp := time.Unix(0, v.expires[i])
		m.ExpiresAt = &exp
	}
	return m
}

// vec returns row i's vector.
func (v *scopeVecs) vec(i int, dims int) []float32 { return v.vecs[i*dims : (i+1)*dims : (i+1)*dims] }

// vecCache holds scopeVecs up to about budget bytes, dropping the least
// recently used.
type vecCache struct {
	mu      sync.Mutex
	budget  int64
	size    int64
	lru     *list.List // of *cacheItem, most recently used first
	items   map[cacheKey]*list.Element
	loading map[cacheKey]chan struct{} // closed when that key's load ends
	loads   atomic.Int64               // copies loaded, for tests
	patches atomic.Int64               // copies brought up to date by an Add, for tests
	checked atomic.Int64               // duplicate checks of a scope answered by its copy, for tests

	// adding serializes this store's adds to one scope (by advisory
	// lock key) from before their duplicate check takes the scope's copy
	// until the add has patched it: an add that waited for another then
	// finds the copy current, where under the database's lock alone it
	// would hold the copy from before the other's insert and check in
	// SQL.
	addMu  sync.Mutex
	adding map[int64]*addLock
}

// addLock is one scope's lock in vecCache.adding, there while adds hold
// or wait for it.
type addLock struct {
	sync.Mutex
	users int
}

// lockAdds takes the scopes' locks for the advisory lock keys (sorted,
// distinct: one order for every caller) and returns the function that
// releases them.
func (c *vecCache) lockAdds(keys []int64) (unlock func()) {
	locks := make([]*addLock, len(keys))
	c.addMu.Lock()
	for i, k := range keys {
		l := c.adding[k]
		if l == nil {
			l = &addLock{}
			c.adding[k] = l
		}
		l.users++
		locks[i] = l
	}
	c.addMu.Unlock()
	for _, l := range locks {
		l.Lock()
	}
	return func() {
		c.addMu.Lock()
		defer c.addMu.Unlock()
		for i, l := range locks {
			l.Unlock()
			if l.users--; l.users == 0 {
				delete(c.adding, keys[i])
			}
		}
	}
}

type cacheItem struct {
	key cacheKey
	v   *scopeVecs
}

func newVecCache(budget int64) *vecCache {
	return &vecCache{budget: budget, lru: list.New(), items: map[cacheKey]*list.Element{}, loading: map[cacheKey]chan struct{}{},
		adding: map[int64]*addLock{}}
}

// claim records that the caller loads keys and returns the channel to
// release them with, unless another caller is loading one of them: then
// it claims none and returns that load's channel, closed when it ends.
func (c *vecCache) claim(keys []cacheKey) (done chan struct{}, busy <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		if ch := c.loading[k]; ch != nil {
			return nil, ch
		}
	}
	done = make(chan struct{})
	for _, k := range keys {
		c.loading[k] = done
	}
	return done, nil
}

// release ends the caller's load of keys.
func (c *vecCache) release(keys []cacheKey, done chan struct{}) {
	c.mu.Lock()
	for _, k := range keys {
		if c.loading[k] == done {
			delete(c.loading, k)
		}
	}
	c.mu.Unlock()
	close(done)
}

// get returns k's copy, or nil, and marks it used.
func (c *vecCache) get(k cacheKey) *scopeVecs {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.items[k]
	if e == nil {
		return nil
	}
	c.lru.MoveToFront(e)
	return e.Value.(*cacheItem).v
}

// put stores v as k's copy, unless a newer one is there already, and
// drops least recently used copies until the cache fits its budget.
func (c *vecCache) put(k cacheKey, v *scopeVecs) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.items[k]; e != nil {
		it := e.Value.(*cacheItem)
		if it.v.version > v.version {
			return
		}
		c.size += v.bytes - it.v.bytes
		it.v = v
		c.lru.MoveToFront(e)
	} else {
		c.items[k] = c.lru.PushFront(&cacheItem{key: k, v: v})
		c.size += v.bytes
	}
	for c.size > c.budget && c.lru.Len() > 1 {
		e := c.lru.Back()
		it := e.Value.(*cacheItem)
		c.lru.Remove(e)
		delete(c.items, it.key)
		c.size -= it.v.bytes
	}
}

// bytesUsed is the cache's approximate size.
func (c *vecCache) bytesUsed() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}

// scopeVersionsSQL reads the versions of the scopes ($2, $3) of org $1
// (a scope never written has none: version 0).
const scopeVersionsSQL = `SELECT scope_kind, scope_id, version FROM scope_versions
	WHERE org_id = $1 AND (scope_kind, scope_id) IN (SELECT * FROM unnest($2::text[], $3::text[]))`

// queueVersions queues the read of the versions of the scopes (kinds,
// sids) of org into versions.
func queueVersions(b *pgx.Batch, org string, kinds, sids []string, versions map[scope.Scope]int64) {
	b.Queue(scopeVersionsSQL, org, kinds, sids).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var (
				sc scope.Scope
				v  int64
			)
			if err := rows.Scan(&sc.Kind, &sc.ID, &v); err != nil {
				return err
			}
			versions[sc] = v
		}
		return rows.Err()
	})
}

// scopeSizeSQL reads the version of scope ($2, $3) of org $1 and how
// many rows it holds.
const scopeSizeSQL = `SELECT COALESCE((SELECT version FROM scope_versions
		WHERE org_id = $1 AND scope_kind = $2 AND scope_id = $3), 0),
	(SELECT count(*) FROM memories WHERE org_id = $1 AND scope_kind = $2 AND scope_id = $3)`

// loadScopeSQL reads the rows of scope ($2, $3) of org $1 with a vector
// of $4 dimensions, unless the scope holds more than $7 rows. A row whose
// (id, xmin) is in ($5, $6), the copy being refreshed, comes without its
// vector, content and metadata: it has not changed; it comes without its
// lexemes too unless $8 (the previous copy has none).
const loadScopeSQL = `SELECT m.id::text, m.xmin::text::bigint, m.created_at, m.expires_at, m.tags,
		CASE WHEN k.id IS NULL THEN m.embedding END,
		CASE WHEN k.id IS NULL OR $8 THEN m.tsv::text END,
		CASE WHEN k.id IS NULL THEN m.content END,
		CASE WHEN k.id IS NULL THEN m.metadata::text END,
		m.created_by, m.updated_at
	FROM memories m
	LEFT JOIN unnest($5::text[]::uuid[], $6::bigint[]) AS k(id, x) ON k.id = m.id AND k.x = m.xmin::text::bigint
	WHERE m.org_id = $1 AND m.scope_kind = $2 AND m.scope_id = $3
		AND m.embedding IS NOT NULL AND vector_dims(m.embedding) = $4
		AND (SELECT count(*) FROM memories c WHERE c.org_id = $1 AND c.scope_kind = $2 AND c.scope_id = $3) <= $7`

// tooBigRecheck is how long a scope found too large for the cache is
// searched in SQL before its size is looked at again.
const tooBigRecheck = time.Minute

// snapshots returns the copies of scopes of id's org for vectors of
// dims, loading in one round trip those that are missing or whose
// version is not the one in want (when want has the scope). ok is false
// when some scope is too large for the cache: search in SQL.
func (s *Store) snapshots(ctx context.Context, id scope.Identity, scopes []scope.Scope, dims int, want map[scope.Scope]int64) (_ []*scopeVecs, ok bool, _ error) {
	// Concurrent first searches of a scope (after a restart, every
	// session at once) wait for one load instead of each making its own,
	// a few times at most.
	for waited := 0; ; waited++ {
		out, load, ok := s.cachedCopies(id.Org, scopes, dims, want)
		if !ok || len(load) == 0 {
			return out, ok, nil
		}
		keys := make([]cacheKey, len(load))
		for j, i := range load {
			keys[j] = cacheKey{org: id.Org, sc: scopes[i], dims: dims}
		}
		done, busy := s.vecs.claim(keys)
		if busy != nil && waited < 3 {
			select {
			case <-busy:
				continue
			case <-ctx.Done():
				return nil, false, ctx.Err()
			}
		}
		if done != nil {
			defer s.vecs.release(keys, done)
		}
		return s.loadCopies(ctx, id, scopes, dims, out, load)
	}
}

// cachedCopies returns the cached copies of scopes and which of them
// (indexes into scopes) to load: missing, not at the version in want,
// or too big when last looked at long enough ago. ok is false when some
// scope is too big for the cache.
func (s *Store) cachedCopies(org string, scopes []scope.Scope, dims int, want map[scope.Scope]int64) (out []*scopeVecs, load []int, ok bool) {
	out = make([]*scopeVecs, len(scopes))
	now := time.Now()
	for i, sc := range scopes {
		v := s.vecs.get(cacheKey{org: org, sc: sc, dims: dims})
		w, stale := want[sc]
		switch {
		case v == nil, stale && v.version != w:
			load = append(load, i)
		case v.tooBig && now.Sub(v.checked) < tooBigRecheck:
			return nil, nil, false
		case v.tooBig:
			load = append(load, i)
		}
		out[i] = v
	}
	return out, load, true
}

// loadCopies loads the copies of scopes[i] for i in load, in one round
// trip, into the cache and out; ok is false when one is too big.
func (s *Store) loadCopies(ctx context.Context, id scope.Identity, scopes []scope.Scope, dims int, out []*scopeVecs, load []int) (_ []*scopeVecs, ok bool, _ error) {
	now := time.Now()
	type loaded struct {
		version, count int64
		rows           []loadedRow
	}
	got := make([]loaded, len(load))
	s.vecs.loads.Add(int64(len(load)))
	maxRows := s.vecs.budget / 4 / int64(4*dims+64)
	err := s.readBatchWith(ctx, beginSnapshot, settings{id: id}, func(b *pgx.Batch) {
		for j, i := range load {
			sc := scopes[i]
			b.Queue(scopeSizeSQL, id.Org, string(sc.Kind), sc.ID).QueryRow(func(row pgx.Row) error {
				return row.Scan(&got[j].version, &got[j].count)
			})
			var knownIDs []string
			var knownX []int64
			noText := true
			if old := out[i]; old != nil && !old.tooBig {
				knownIDs, knownX, noText = old.ids, old.xmins, !old.text
			}
			b.Queue(loadScopeSQL, id.Org, string(sc.Kind), sc.ID, dims, knownIDs, knownX, maxRows, noText).Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var (
						r             loadedRow
						emb           *pgvector.Vector
						content, meta *string
						by            string
						updated       time.Time
					)
					if err := rows.Scan(&r.id, &r.xmin, &r.created, &r.expires, &r.tags, &emb, &r.tsv, &content, &meta, &by, &updated); err != nil {
						return err
					}
					if emb != nil {
						r.vec = emb.Slice()
					}
					if content != nil {
						r.text = &rowText{content: *content, createdBy: by, updated: updated.UnixNano()}
						if meta != nil {
							r.text.metadata = json.RawMessage(*meta)
						}
					}
					got[j].rows = append(got[j].rows, r)
				}
				return rows.Err()
			})
		}
	})
	if err != nil {
		return nil, false, err
	}
	ok = true
	for j, i := range load {
		var v *scopeVecs
		if got[j].count <= maxRows {
			if v, err = buildScopeVecs(got[j].version, got[j].rows, out[i], dims, got[j].count == int64(len(got[j].rows))); err != nil {
				return nil, false, err
			}
		}
		// Too many rows, or few enough but their content makes the copy
		// too large.
		if v == nil || v.bytes > s.vecs.budget/4 {
			v, ok = &scopeVecs{version: got[j].version, tooBig: true, checked: now, bytes: 64}, false
		}
		s.vecs.put(cacheKey{org: id.Org, sc: scopes[i], dims: dims}, v)
		out[i] = v
	}
	return out, ok, nil
}

// loadedRow is one row of loadScopeSQL; vec and text are nil when the
// row is unchanged since the previous copy.
type loadedRow struct {
	id      string
	xmin    int64
	created time.Time
	expires *time.Time
	tags    []string
	vec     []float32
	text    *rowText
	tsv     *string // tsv::text, nil when unchanged and the previous copy has it
}

// buildScopeVecs makes the copy of a scope at version from its rows,
// taking the vectors, texts (and lexemes) of unchanged rows from old; whole
// says the rows are all of the scope's, so the copy can rank text.
func buildScopeVecs(version int64, rows []loadedRow, old *scopeVecs, dims int, whole bool) (*scopeVecs, error) {
	n := len(rows)
	spare := n + n/8 + 8 // room for the rows of later adds (see appendRows)
	v := &scopeVecs{
		version: version,
		ids:     make([]string, n, spare),
		xmins:   make([]int64, n, spare),
		created: make([]int64, n, spare),
		expires: make([]int64, n, spare),
		tags:    make([][]string, n, spare),
		texts:   make([]rowText, n, spare),
		vecs:    make([]float32, n*dims, spare*dims),
		index:   make(map[string]int32, n),
	}
	v.tail.Store(true)
	from := make([]int32, n) // each row's row in old; -1: it came with its vector
	for i, r := range rows {
		vec, text := r.vec, r.text
		from[i] = -1
		if vec == nil || text == nil {
			j, ok := int32(-1), false
			if old != nil {
				j, ok = old.index[r.id]
			}
			if !ok || old.xmins[j] != r.xmin {
				return nil, fmt.Errorf("vector cache: row %s came without its vector or content but is not in the previous copy", r.id)
			}
			if vec == nil {
				vec = old.vec(int(j), dims)
				from[i] = j
			}
			if text == nil {
				text = &old.texts[j]
			}
		}
		if len(vec) != dims {
			return nil, fmt.Errorf("vector cache: row %s has %d dimensions, want %d", r.id, len(vec), dims)
		}
		copy(v.vecs[i*dims:], vec)
		v.ids[i], v.xmins[i], v.created[i] = r.id, r.xmin, r.created.UnixNano()
		if r.expires != nil {
			v.expires[i], v.expiring = r.expires.UnixNano(), true
		}
		if len(r.tags) > 0 {
			v.tags[i] = r.tags
		}
		v.texts[i] = *text
		v.index[r.id] = int32(i)
		v.bytes += int64(len(r.id)) + 64 + int64(4*dims) + text.size()
		for _, t := range r.tags {
			v.bytes += int64(len(t)) + 16
		}
	}
	v.code(old, from, dims, spare)
	v.bytes += int64(n) * v.codeBytes()
	v.bytes += 128 + int64(spare-n)*(int64(4*dims+64)+v.codeBytes())
	if whole {
		if err := v.indexText(rows, old); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// indexText builds v's postings from rows (those of v, in order): the
// postings of unchanged rows are taken from old's when old has them, the
// others parsed from the rows' lexemes.
func (v *scopeVecs) indexText(rows []loadedRow, old *scopeVecs) error {
	v.text, v.postings = true, map[string][]posting{}
	var remap []int32 // old row -> new row + 1, 0 when changed or gone
	if old != nil && old.text {
		remap = make([]int32, len(old.ids))
		for i, r := range rows {
			if r.tsv == nil {
				remap[old.index[r.id]] = int32(i) + 1
			}
		}
		for lx, ps := range old.postings {
			var kept []posting
			for _, p := range ps {
				if nr := remap[p.row]; nr != 0 {
					kept = append(kept, posting{row: nr - 1, w: p.w})
				}
			}
			if kept != nil {
				v.postings[lx] = kept
			}
		}
	}
	for i, r := range rows {
		if r.tsv == nil {
			if remap == nil {
				return fmt.Errorf("vector cache: row %s came without its lexemes but the previous copy has none", r.id)
			}
			continue
		}
		err := parseTSVector(*r.tsv, func(lexeme string, weights []uint8) {
			v.postings[lexeme] = append(v.postings[lexeme], posting{row: int32(i), w: lexemeWeight(weights)})
		})
		if err != nil {
			return fmt.Errorf("vector cache: row %s: %w", r.id, err)
		}
	}
	for lx, ps := range v.postings {
		v.bytes += int64(len(lx)) + 48 + 8*int64(cap(ps))
	}
	return nil
}

// vecHit is one row of a copy ranked against the query vector.
type vecHit struct {
	snap    int32 // index into the copies
	row     int32
	dist    float64
	created int64
	id      string
}

// worse reports whether a ranks after b: farther, then older, then the
// lower id (the text half's statement orders ties the same way).
func worse(a, b vecHit) bool {
	if a.dist != b.dist {
		return a.dist > b.dist
	}
	if a.created != b.created {
		return a.created < b.created
	}
	return a.id < b.id
}

// rankCached returns the n rows of snaps nearest vec (cosine distance,
// ties newest first) that are alive at now and carry tags, best first.
//
// The rows ranked exactly are shared among the copies by their sizes,
// simhash.Rerank of all the rows with at least n per copy; a copy with
// more than its share and more than exactRows rows is ranked on the rows
// its codes pick.
func rankCached(snaps []*scopeVecs, vec []float32, dims int, tags []string, now time.Time, n int) []vecHit {
	at := now.UnixNano()
	top := make([]vecHit, 0, n+1) // a max-heap on worse: top[0] ranks last
	// Once top is full, a row farther than top[0] cannot enter it: most
	// rows are ruled out by this one comparison.
	last := math.Inf(1)
	consider := func(si int, v *scopeVecs, i int) {
		dist := 1 - store.Dot(vec, v.vec(i, dims))
		if dist > last {
			return
		}
		top = offer(top, vecHit{snap: int32(si), row: int32(i), dist: dist, created: v.created[i], id: v.ids[i]}, n)
		if n > 0 && len(top) == n {
			last = top[0].dist
		}
	}
	total := 0
	for _, v := range snaps {
		total += len(v.ids)
	}
	all := simhash.Rerank(total, n)
	sc := codeScratchPool.Get().(*codeScratch)
	defer codeScratchPool.Put(sc)
	sc.rot = sc.rot[:0]
	for si, v := range snaps {
		if c := max(n, (all*len(v.ids)+total-1)/max(total, 1)); len(v.ids) > max(c, exactRows) && len(v.codes) == len(v.ids)*v.words {
			sel := v.nearest(vec, c, tags, at, sc)
			// The picked rows are scattered over the copy, and copies
			// over the cache: warmed first, their loads are in flight
			// together instead of one row's at a time (store.Warm).
			for _, i := range sel {
				store.Warm(v.vec(int(i), dims))
			}
			for _, i := range sel {
				consider(si, v, int(i))
			}
			continue
		}
		for i := range v.ids {
			if v.live(i, at, tags) {
				consider(si, v, i)
			}
		}
	}
	sortHits(top)
	return top
}

// offer adds h to top, a max-heap on worse of at most n hits (top[0]
// ranks last), and returns it.
func offer(top []vecHit, h vecHit, n int) []vecHit {
	if len(top) == n {
		if n > 0 && worse(top[0], h) {
			top[0] = h
			siftDown(top)
		}
		return top
	}
	top = append(top, h)
	for c := len(top) - 1; c > 0; {
		p := (c - 1) / 2
		if !worse(top[c], top[p]) {
			break
		}
		top[c], top[p] = top[p], top[c]
		c = p
	}
	return top
}

// sortHits orders hits best first.
func sortHits(top []vecHit) {
	slices.SortFunc(top, func(a, b vecHit) int {
		switch {
		case worse(b, a):
			return -1
		case worse(a, b):
			return 1
		}
		return 0
	})
}

// siftDown restores the heap order of top after top[0] changed.
func siftDown(top []vecHit) {
	for p := 0; ; {
		c := 2*p + 1
		if c >= len(top) {
			return
		}
		if c+1 < len(top) && worse(top[c+1], top[c]) {
			c++
		}
		if !worse(top[c], top[p]) {
			return
		}
		top[c], top[p] = top[p], top[c]
		p = c
	}
}

// addedRows are the rows an Add inserted, as a copy holds them, with the
// scope of each and the scopes' versions right after the insert, in its
// transaction.
type addedRows struct {
	rows     []loadedRow
	scopes   []scope.Scope
	versions map[scope.Scope]int64
}

// patchCopies brings the copies of the scopes an Add wrote, once it has
// committed, up to date with its rows, so that the next search of those
// scopes loads nothing. The insert bumped each scope's version by one,
// under the row lock of its version held until the commit: a copy at the
// version before plus the rows is exactly the scope at the version
// after. A copy at any other version is left for the next search to
// reload.
func (s *Store) patchCopies(org string, dims int, a addedRows) {
	if s.vecs == nil || len(a.rows) == 0 {
		return
	}
	byScope := map[scope.Scope][]loadedRow{}
	var order []scope.Scope
	for i, r := range a.rows {
		sc := a.scopes[i]
		if byScope[sc] == nil {
			order = append(order, sc)
		}
		byScope[sc] = append(byScope[sc], r)
	}
	maxRows := s.vecs.budget / 4 / int64(4*dims+64)
	for _, sc := range order {
		added := byScope[sc]
		key := cacheKey{org: org, sc: sc, dims: dims}
		old := s.vecs.get(key)
		after, ok := a.versions[sc]
		// A copy without lexemes (its scope holds rows without a vector)
		// is left to reload as well.
		if old == nil || old.tooBig || !old.text || !ok || old.version != after-1 || int64(len(old.ids)+len(added)) > maxRows {
			continue
		}
		v, err := old.appendRows(after, added, dims)
		if err != nil || v.bytes > s.vecs.budget/4 {
			continue // the next search reloads the scope (or finds it too large)
		}
		s.vecs.patches.Add(1)
		s.vecs.put(key, v)
	}
}

// appendRows returns a copy of v at version with rows (each with its
// vector and lexemes) added after v's. v is unchanged: the new copy
// shares v's arrays, writing past their ends when v still owns that
// room (its readers never look past their lengths), and copies the
// index and each touched lexeme's postings.
func (v *scopeVecs) appendRows(version int64, rows []loadedRow, dims int) (*scopeVecs, error) {
	n := len(v.ids)
	for _, r := range rows {
		if len(r.vec) != dims || r.tsv == nil || r.text == nil {
			return nil, fmt.Errorf("vector cache: row %s lacks its vector, content or lexemes", r.id)
		}
		if _, dup := v.index[r.id]; dup {
			return nil, fmt.Errorf("vector cache: row %s is in the copy already", r.id)
		}
	}
	ids, xmins, created, expires, tags, texts, vecs := v.ids, v.xmins, v.created, v.expires, v.tags, v.texts, v.vecs
	codes, prefix := v.codes, v.prefix
	if !v.tail.CompareAndSwap(true, false) {
		// Another copy extends v already: append to copies of the arrays.
		ids, xmins, created, expires, tags, texts, vecs = slices.Clip(ids), slices.Clip(xmins), slices.Clip(created),
			slices.Clip(expires), slices.Clip(tags), slices.Clip(texts), slices.Clip(vecs)
		codes, prefix = slices.Clip(codes), slices.Clip(prefix)
	}
	w := &scopeVecs{version: version, text: v.text, index: maps.Clone(v.index), bytes: v.bytes,
		words: v.words, rmean: v.rmean, meanN: v.meanN, expiring: v.expiring}
	if v.text {
		w.postings = maps.Clone(v.postings)
	}
	for k, r := range rows {
		i := int32(n + k)
		ids, xmins, created = append(ids, r.id), append(xmins, r.xmin), append(created, r.created.UnixNano())
		var exp int64
		if r.expires != nil {
			exp, w.expiring = r.expires.UnixNano(), true
		}
		expires, tags, vecs = append(expires, exp), append(tags, r.tags), append(vecs, r.vec...)
		texts = append(texts, *r.text)
		w.index[r.id] = i
		w.bytes += int64(len(r.id)) + 64 + int64(4*dims) + r.text.size()
		for _, t := range r.tags {
			w.bytes += int64(len(t)) + 16
		}
		if !v.text {
			continue
		}
		err := parseTSVector(*r.tsv, func(lexeme string, weights []uint8) {
			ps := w.postings[lexeme]
			if len(ps) == 0 {
				w.bytes += int64(len(lexeme)) + 48
			}
			// A clipped slice: appending never writes into v's.
			w.postings[lexeme] = append(slices.Clip(ps), posting{row: i, w: lexemeWeight(weights)})
			w.bytes += 8
		})
		if err != nil {
			return nil, fmt.Errorf("vector cache: row %s: %w", r.id, err)
		}
	}
	w.ids, w.xmins, w.created, w.expires, w.tags, w.texts, w.vecs = ids, xmins, created, expires, tags, texts, vecs
	if recentre(len(w.ids), w.meanN) {
		w.codeAll(dims, cap(w.ids))
	} else {
		w.codes, w.prefix = w.appendCodes(codes, prefix, vecs[n*dims:], dims)
	}
	w.bytes += int64(len(rows)) * w.codeBytes()
	w.tail.Store(true)
	return w, nil
}
