package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/pgvector/pgvector-go"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// memoryCols is the column list every memory-returning query selects, in
// the order scanMemory reads.
const memoryCols = `m.id::text, m.org_id, m.scope_kind, m.scope_id, m.content, m.tags, m.metadata::text,
	m.created_by, m.created_at, m.updated_at, m.expires_at`

// scanMemory reads memoryCols (plus extra destinations) from row.
func scanMemory(row pgx.Row, extra ...any) (store.Memory, error) {
	var (
		m     store.Memory
		kind  string
		meta  *string
		tags  []string
		dests = []any{&m.ID, &m.Org, &kind, &m.Scope.ID, &m.Content, &tags, &meta,
			&m.CreatedBy, &m.CreatedAt, &m.UpdatedAt, &m.ExpiresAt}
	)
	if err := row.Scan(append(dests, extra...)...); err != nil {
		return store.Memory{}, err
	}
	m.Scope.Kind = scope.Kind(kind)
	if len(tags) > 0 {
		m.Tags = tags
	}
	if meta != nil {
		m.Metadata = json.RawMessage(*meta)
	}
	return m, nil
}

// scopeArrays splits scopes into parallel kind and id arrays for
// `(scope_kind, scope_id) IN (SELECT * FROM unnest($k, $i))`.
func scopeArrays(ss []scope.Scope) (kinds, ids []string) {
	kinds, ids = make([]string, len(ss)), make([]string, len(ss))
	for i, s := range ss {
		kinds[i], ids[i] = string(s.Kind), s.ID
	}
	return kinds, ids
}

// checkIdentity refuses an identity that could not have been verified.
func checkIdentity(id scope.Identity) error {
	if err := id.Validate(); err != nil {
		return fmt.Errorf("%w: %w", store.ErrInvalid, err)
	}
	return nil
}

// contentHash is the exact-duplicate key: case and white space folded.
func contentHash(content string) []byte {
	h := sha256.Sum256([]byte(store.NormalizeContent(content)))
	return h[:]
}

// checkContent refuses blank content and invalid UTF-8.
func checkContent(c string) error {
	if strings.TrimSpace(c) == "" {
		return fmt.Errorf("%w: content is empty", store.ErrInvalid)
	}
	if !utf8.ValidString(c) || strings.ContainsRune(c, 0) {
		return fmt.Errorf("%w: content is not valid UTF-8 text", store.ErrInvalid)
	}
	return nil
}

// checkMetadata accepts nil or a JSON object.
func checkMetadata(m json.RawMessage) (*string, error) {
	if m == nil {
		return nil, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(m, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%w: metadata must be a JSON object", store.ErrInvalid)
	}
	s := string(m)
	return &s, nil
}

// vectorDims returns the recorded embedder dimension, reading it once.
func (s *Store) vectorDims(ctx context.Context) (int, error) {
	s.mu.Lock()
	d := s.dims
	s.mu.Unlock()
	if d > 0 {
		return d, nil
	}
	info, ok, err := s.Embedder(ctx)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%w: no embedder is recorded for this store yet (SetEmbedder first), so vectors cannot be checked", store.ErrInvalid)
	}
	return info.Dimensions, nil
}

// checkVector copies v, checks its dimension and normalizes it.
func checkVector(v []float32, dims int) (pgvector.Vector, error) {
	if len(v) == 0 {
		return pgvector.Vector{}, fmt.Errorf("%w: no vector", store.ErrInvalid)
	}
	u, err := store.Normalize(slices.Clone(v))
	if err != nil {
		return pgvector.Vector{}, err
	}
	if len(u) != dims {
		return pgvector.Vector{}, fmt.Errorf("%w: vector has %d dimensions, the store's embedder makes %d", store.ErrInvalid, len(u), dims)
	}
	return pgvector.NewVector(u), nil
}

// lockKey is the advisory lock that serializes adds to one scope.
func lockKey(org string, s scope.Scope) int64 {
	h := fnv.New64a()
	h.Write([]byte(org))
	h.Write([]byte{0})
	h.Write([]byte(s.Kind))
	h.Write([]byte{0})
	h.Write([]byte(s.ID))
	return int64(h.Sum64())
}

// Add stores memories, deduplicating each within its scope against live
// memories and earlier memories of the same batch. Adds to one scope are
// serialized by a transaction-level advisory lock, so concurrent adds of
// one text store it once. Errors: store.ErrInvalid, store.ErrUnavailable.
func (s *Store) Add(ctx context.Context, id scope.Identity, ms []store.NewMemory) ([]store.Added, error) {
	if err := checkIdentity(id); err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("%w: no memories to add", store.ErrInvalid)
	}
	dims, err := s.vectorDims(ctx)
	if err != nil {
		return nil, fmt.Errorf("add memories: %w", translate(err))
	}
	n := len(ms)
	var (
		hashes = make([][]byte, n)
		vecs   = make([]pgvector.Vector, n)
		metas  = make([]*string, n)
		scopes []scope.Scope // distinct, in order of appearance
		keys   []int64
	)
	for i, m := range ms {
		if !id.CanSee(m.Scope) {
			return nil, fmt.Errorf("%w: memory %d: scope %s is not visible to %s", store.ErrInvalid, i, m.Scope.Qualified(), id.User)
		}
		if err := checkContent(m.Content); err != nil {
			return nil, fmt.Errorf("memory %d: %w", i, err)
		}
		if metas[i], err = checkMetadata(m.Metadata); err != nil {
			return nil, fmt.Errorf("memory %d: %w", i, err)
		}
		if vecs[i], err = checkVector(m.Vector, dims); err != nil {
			return nil, fmt.Errorf("memory %d: %w", i, err)
		}
		hashes[i] = contentHash(m.Content)
		if !slices.Contains(scopes, m.Scope) {
			scopes = append(scopes, m.Scope)
			keys = append(keys, lockKey(id.Org, m.Scope))
		}
	}
	// One order for every caller (no deadlocks), each key once.
	slices.Sort(keys)
	keys = slices.Compact(keys)

	if s.vecs != nil {
		unlock := s.vecs.lockAdds(keys)
		defer unlock()
		// The duplicate check compares new vectors with the scopes'
		// copies in the vector cache when they are current (else every
		// vector of the scope in SQL): load the missing ones as a search
		// would, so that adds to a scope no search has read yet do not
		// scan it each time. A copy is every row the identity's scope
		// holds (the select policy asks no more than the insert policy).
		// Should loading fail, the check runs in SQL.
		_, _, _ = s.snapshots(ctx, id, scopes, dims, nil)
	}

	out := make([]store.Added, n)
	added, err := s.addInTx(ctx, id, ms, scopes, keys, hashes, vecs, metas, dims, out)
	if err != nil {
		return nil, fmt.Errorf("add memories: %w", translate(err))
	}
	s.patchCopies(id.Org, dims, *added)
	return out, nil
}

// addInTx stores ms in two round trips: BEGIN, the identity, the
// scopes' advisory locks and the duplicate checks; then the insert of
// what is new and COMMIT (a duplicate found in the vector cache costs
// one more, for its content). It fills out and returns the inserted
// rows for the vector cache.
//
// Most of its statements run their connection's cached generic plans,
// as a search of scopes without their own index does (planned on every
// execution, the connections' default, an add cost PostgreSQL nearly
// twice the CPU): the insert always, the vector duplicate checks unless
// a scope may have its own HNSW index (queueDuplicates). An add, like a
// search, reads the list of those indexes when it is due.
func (s *Store) addInTx(ctx context.Context, id scope.Identity, ms []store.NewMemory, scopes []scope.Scope, keys []int64,
	hashes [][]byte, vecs []pgvector.Vector, metas []*string, dims int, out []store.Added) (*addedRows, error) {
	t, err := s.beginBatch(ctx, `BEGIN`, settings{id: id})
	if err != nil {
		return nil, err
	}
	defer t.release(ctx)
	now := time.Now()
	b := &pgx.Batch{}
	indexed, refresh := s.ann.lookup(id.Org, scopes, dims, now)
	var refreshed func(error)
	if refresh {
		refreshed = s.ann.queueRefresh(b, now)
	}
	b.Queue(`SELECT pg_advisory_xact_lock(k) FROM (SELECT k FROM unnest($1::bigint[]) AS k ORDER BY k) AS sorted`, keys)
	// Duplicates already stored: same normalized content, or a vector at
	// least DuplicateSimilarity close, in the same scope, live. The
	// checks run after the locks, in the same round trip.
	dup := s.queueDuplicates(b, id.Org, ms, hashes, vecs, dims, indexed, now)
	err = t.send(ctx, b, false)
	if refreshed != nil {
		refreshed(err)
	}
	if err != nil {
		return nil, err
	}
	found, err := dup.finish()
	if err != nil {
		return nil, err
	}

	// Within the batch, a memory duplicates an earlier new one of its
	// scope the same way.
	var ins []int
	firstOf := make([]int, len(ms))
	for i := range ms {
		firstOf[i] = -1
		if found[i] != nil {
			out[i] = store.Added{Memory: *found[i], Duplicate: true}
			continue
		}
		for _, j := range ins {
			if ms[j].Scope == ms[i].Scope && (string(hashes[j]) == string(hashes[i]) ||
				store.NearDuplicate(vecs[j].Slice(), vecs[i].Slice())) {
				firstOf[i] = j
				break
			}
		}
		if firstOf[i] < 0 {
			ins = append(ins, i)
		}
	}
	b = &pgx.Batch{}
	added := &addedRows{}
	if len(ins) > 0 {
		if indexed {
			b.Queue(searchSettingsSQL, "force_generic_plan")
		}
		if added, err = s.queueInsert(ctx, b, id, ms, ins, hashes, vecs, metas, now, out); err != nil {
			return nil, err
		}
	}
	if err := t.send(ctx, b, true); err != nil {
		return nil, err
	}
	for i, j := range firstOf {
		if j >= 0 {
			out[i] = store.Added{Memory: out[j].Memory, Duplicate: true}
		}
	}
	return added, nil
}

// queueInsert queues into b the insert of ms[i] for i in ins, one INSERT
// ... SELECT FROM unnest (COPY is refused under row-level security), with
// one audit row per scope. Once b has run, out holds the new memories and
// the returned rows are them as the vector cache holds them, with the
// scopes' versions after the insert.
func (s *Store) queueInsert(ctx context.Context, b *pgx.Batch, id scope.Identity, ms []store.NewMemory, ins []int,
	hashes [][]byte, vecs []pgvector.Vector, metas []*string, now time.Time, out []store.Added) (*addedRows, error) {
	k := len(ins)
	var (
		ids      = make([]string, k)
		kinds    = make([]string, k)
		sids     = make([]string, k)
		contents = make([]string, k)
		hs       = make([][]byte, k)
		tags     = make([]string, k) // each a text[] literal: Postgres has no ragged arrays
		mts      = make([]*string, k)
		exps     = make([]*time.Time, k)
		vs       = make([]pgvector.Vector, k)
		pos      = make(map[string]int, k)
	)
	for j, i := range ins {
		u, err := uuid.NewV7()
		if err != nil {
			return nil, err
		}
		ids[j] = u.String()
		pos[ids[j]] = i
		m := ms[i]
		kinds[j], sids[j], contents[j], hs[j] = string(m.Scope.Kind), m.Scope.ID, m.Content, hashes[i]
		tags[j] = textArrayLiteral(m.Tags)
		mts[j], exps[j], vs[j] = metas[i], m.ExpiresAt, vecs[i]
	}
	added := &addedRows{versions: map[scope.Scope]int64{}}
	b.Queue(`
		WITH ins AS (
			INSERT INTO memories AS m (org_id, id, scope_kind, scope_id, content, content_hash, tags, metadata,
				created_by, created_at, updated_at, expires_at, embedding)
			SELECT $1, n.id::uuid, n.kind, n.sid, n.content, n.hash, n.tags::text[], n.meta::jsonb,
				$2, $3, $3, n.exp, n.vec
			FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::bytea[], $9::text[], $10::text[],
				$11::timestamptz[], $12::vector[]) AS n(id, kind, sid, content, hash, tags, meta, exp, vec)
			RETURNING `+memoryCols+`, m.xmin::text::bigint AS row_xmin, m.tsv::text AS row_tsv
		), audit AS (
			INSERT INTO audit (org_id, actor, agent, action, scope_kind, scope_id, count, source)
			SELECT $1, $2, $13, 'add', scope_kind, scope_id, count(*), $14 FROM ins GROUP BY scope_kind, scope_id
		)
		SELECT * FROM ins AS m`,
		id.Org, id.User, now, ids, kinds, sids, contents, hs, tags, mts, exps, vs, id.Agent, store.SourceFrom(ctx)).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var r loadedRow
			m, err := scanMemory(rows, &r.xmin, &r.tsv)
			if err != nil {
				return err
			}
			i, ok := pos[m.ID]
			if !ok {
				return fmt.Errorf("insert returned unknown id %s", m.ID)
			}
			out[i] = store.Added{Memory: m}
			r.id, r.created, r.expires, r.tags, r.vec = m.ID, m.CreatedAt, m.ExpiresAt, m.Tags, vecs[i].Slice()
			r.text = &rowText{content: m.Content, metadata: m.Metadata, createdBy: m.CreatedBy, updated: m.UpdatedAt.UnixNano()}
			added.rows = append(added.rows, r)
			added.scopes = append(added.scopes, m.Scope)
		}
		return rows.Err()
	})
	queueVersions(b, id.Org, kinds, sids, added.versions)
	return added, nil
}

// textArrayLiteral writes tags as a PostgreSQL text[] literal.
func textArrayLiteral(tags []string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, t := range tags {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for _, r := range t {
			if r == '"' || r == '\\' {
				b.WriteByte('\\')
			}
			b.WriteRune(r)
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// parseID returns the memory id as a UUID string, or ErrNotFound for
// anything that cannot be one of ours.
func parseID(memoryID string) (string, error) {
	u, err := uuid.Parse(memoryID)
	if err != nil {
		return "", fmt.Errorf("memory %q: %w", memoryID, store.ErrNotFound)
	}
	return u.String(), nil
}

// Get returns one live memory visible to the caller. Errors:
// store.ErrNotFound, store.ErrUnavailable.
func (s *Store) Get(ctx context.Context, id scope.Identity, memoryID string) (store.Memory, error) {
	if err := checkIdentity(id); err != nil {
		return store.Memory{}, err
	}
	mid, err := parseID(memoryID)
	if err != nil {
		return store.Memory{}, err
	}
	kinds, sids := scopeArrays(id.Visible())
	// One round trip, the statement's generic plan (a primary-key lookup).
	var r oneMemory
	err = s.readBatch(ctx, settings{id: id}, func(b *pgx.Batch) {
		b.Queue(searchSettingsSQL, "force_generic_plan")
		b.Queue(getSQL, id.Org, mid, kinds, sids, time.Now()).Query(r.scan)
	})
	m, err := r.result(err)
	if err != nil {
		return store.Memory{}, fmt.Errorf("get memory %q: %w", memoryID, translate(err))
	}
	return m, nil
}

// oneMemory reads the memory a statement of a batch returns, if any. A
// missing row is not an error of the callback (pgx forgets every prepared
// statement of a batch whose callback errs: see writeBatch) but of
// result.
type oneMemory struct {
	m     store.Memory
	found bool
}

// scan is the statement's callback.
func (r *oneMemory) scan(rows pgx.Rows) error {
	if !rows.Next() {
		return rows.Err()
	}
	var err error
	r.m, err = scanMemory(rows)
	r.found = err == nil
	return err
}

// result is the memory, or pgx.ErrNoRows when there was none, once the
// batch ended with err.
func (r *oneMemory) result(err error) (store.Memory, error) {
	if err == nil && !r.found {
		err = pgx.ErrNoRows
	}
	return r.m, err
}

// getSQL reads memory $2 of org $1 when it is live at $5 in one of the
// scopes ($3, $4).
const getSQL = `SELECT ` + memoryCols + ` FROM memories m
	WHERE m.org_id = $1 AND m.id = $2::uuid
		AND (m.scope_kind, m.scope_id) IN (SELECT * FROM unnest($3::text[], $4::text[]))
		AND (m.expires_at IS NULL OR m.expires_at > $5)`

// Update changes one live memory in a scope the caller may write and
// records it in the audit log. Errors: store.ErrNotFound, store.ErrInvalid,
// store.ErrUnavailable.
func (s *Store) Update(ctx context.Context, id scope.Identity, memoryID string, p store.Patch) (store.Memory, error) {
	if err := checkIdentity(id); err != nil {
		return store.Memory{}, err
	}
	var (
		content *string
		hash    []byte
		vec     *pgvector.Vector
		tags    *string
		setMeta bool
		meta    *string
	)
	if p.Content != nil {
		if err := checkContent(*p.Content); err != nil {
			return store.Memory{}, fmt.Errorf("update memory %q: %w", memoryID, err)
		}
		if p.Vector == nil {
			return store.Memory{}, fmt.Errorf("update memory %q: %w: new content needs its new vector", memoryID, store.ErrInvalid)
		}
		content, hash = p.Content, contentHash(*p.Content)
	}
	if p.Vector != nil {
		dims, err := s.vectorDims(ctx)
		if err != nil {
			return store.Memory{}, fmt.Errorf("update memory %q: %w", memoryID, translate(err))
		}
		v, err := checkVector(p.Vector, dims)
		if err != nil {
			return store.Memory{}, fmt.Errorf("update memory %q: %w", memoryID, err)
		}
		vec = &v
	}
	if p.Tags != nil {
		t := textArrayLiteral(*p.Tags)
		tags = &t
	}
	if p.Metadata != nil {
		var err error
		setMeta = true
		if meta, err = checkMetadata(*p.Metadata); err != nil {
			return store.Memory{}, fmt.Errorf("update memory %q: %w", memoryID, err)
		}
	}
	mid, err := parseID(memoryID)
	if err != nil {
		return store.Memory{}, err
	}
	kinds, sids := scopeArrays(id.Writable())
	var r oneMemory
	err = s.writeBatch(ctx, settings{id: id}, func(b *pgx.Batch) {
		b.Queue(updateSQL, id.Org, mid, kinds, sids, time.Now(), content, hash, vec, tags, setMeta, meta,
			id.User, id.Agent, store.SourceFrom(ctx)).Query(r.scan)
	})
	m, err := r.result(err)
	if err != nil {
		return store.Memory{}, fmt.Errorf("update memory %q: %w", memoryID, translate(err))
	}
	return m, nil
}

// updateSQL changes memory $2 of org $1 when it is live at $5 in one of
// the scopes ($3, $4): content and its hash ($6, $7), vector ($8), tags
// ($9, a text[] literal) and, when $10, metadata ($11), each kept when
// NULL; it records the update in the audit log as $12 (user), $13
// (agent), $14 (source) and returns the memory (memoryCols).
const updateSQL = `
	WITH upd AS (
		UPDATE memories AS m SET
			content = COALESCE($6, m.content),
			content_hash = COALESCE($7, m.content_hash),
			embedding = COALESCE($8, m.embedding),
			tags = COALESCE($9::text::text[], m.tags),
			metadata = CASE WHEN $10 THEN $11::jsonb ELSE m.metadata END,
			updated_at = greatest(now(), m.updated_at + interval '1 microsecond')
		WHERE m.org_id = $1 AND m.id = $2::uuid
			AND (m.scope_kind, m.scope_id) IN (SELECT * FROM unnest($3::text[], $4::text[]))
			AND (m.expires_at IS NULL OR m.expires_at > $5)
		RETURNING ` + memoryCols + `
	), audit AS (
		INSERT INTO audit (org_id, actor, agent, action, scope_kind, scope_id, target, count, source)
		SELECT $1, $12, $13, 'update', scope_kind, scope_id, id::text, 1, $14 FROM upd AS m
	)
	SELECT * FROM upd AS m`

// deleteSQL deletes memory $2 of org $1 when it is live at $5 in one of
// the scopes ($3, $4), records it in the audit log as $6 (user), $7
// (agent), $8 (source) and returns how many rows it deleted.
const deleteSQL = `
	WITH del AS (
		DELETE FROM memories AS m
		WHERE m.org_id = $1 AND m.id = $2::uuid
			AND (m.scope_kind, m.scope_id) IN (SELECT * FROM unnest($3::text[], $4::text[]))
			AND (m.expires_at IS NULL OR m.expires_at > $5)
		RETURNING m.id, m.scope_kind, m.scope_id
	), audit AS (
		INSERT INTO audit (org_id, actor, agent, action, scope_kind, scope_id, target, count, source)
		SELECT $1, $6, $7, 'delete', scope_kind, scope_id, id::text, 1, $8 FROM del
	)
	SELECT count(*) FROM del`

// writeBatch runs the statements queue adds in one read-write transaction
// in one round trip, with their cached generic plans (a memory found by
// its primary key: planning such a statement, with row-level security's
// policies, cost more than running it): BEGIN, the identity settings,
// the statements and COMMIT. When a statement fails, the server skips
// the rest, COMMIT included, and the transaction is rolled back. A
// callback's error comes after a COMMIT of what the statements did, and
// makes pgx forget every statement of the batch it had prepared, so a
// statement that finds nothing is not an error of its callback: the
// caller looks at what the callback read.
func (s *Store) writeBatch(ctx context.Context, st settings, queue func(*pgx.Batch)) error {
	return s.readBatchWith(ctx, `BEGIN`, st, func(b *pgx.Batch) {
		b.Queue(searchSettingsSQL, "force_generic_plan")
		queue(b)
	})
}

// Delete removes one memory in a scope the caller may write and records it
// in the audit log. Errors: store.ErrNotFound, store.ErrUnavailable.
func (s *Store) Delete(ctx context.Context, id scope.Identity, memoryID string) error {
	if err := checkIdentity(id); err != nil {
		return err
	}
	mid, err := parseID(memoryID)
	if err != nil {
		return err
	}
	kinds, sids := scopeArrays(id.Writable())
	var n int
	err = s.writeBatch(ctx, settings{id: id}, func(b *pgx.Batch) {
		b.Queue(deleteSQL, id.Org, mid, kinds, sids, time.Now(), id.User, id.Agent, store.SourceFrom(ctx)).QueryRow(func(row pgx.Row) error {
			return row.Scan(&n)
		})
	})
	if err == nil && n == 0 {
		err = pgx.ErrNoRows
	}
	if err != nil {
		return fmt.Errorf("delete memory %q: %w", memoryID, translate(err))
	}
	return nil
}

// listScopesSQL counts the live rows of scopes ($2, $3) of org $1 at $4.
// Everything it and row-level security read is in memories_scope, so it
// reads no row (see migration 00600).
const listScopesSQL = `SELECT m.scope_kind, m.scope_id, count(*) FROM memories m
	WHERE m.org_id = $1
		AND (m.scope_kind, m.scope_id) IN (SELECT * FROM unnest($2::text[], $3::text[]))
		AND (m.expires_at IS NULL OR m.expires_at > $4)
	GROUP BY m.scope_kind, m.scope_id`

// scanScopeCounts reads rows of (scope_kind, scope_id, count), giving
// each to add, and closes rows.
func scanScopeCounts(rows pgx.Rows, add func(scope.Scope, int)) error {
	defer rows.Close()
	for rows.Next() {
		var (
			kind, sid string
			n         int
		)
		if err := rows.Scan(&kind, &sid, &n); err != nil {
			return err
		}
		add(scope.Scope{Kind: scope.Kind(kind), ID: sid}, n)
	}
	return rows.Err()
}

// ListScopes returns the caller's visible scopes, narrowest first, with
// counts of live memories. Errors: store.ErrUnavailable.
func (s *Store) ListScopes(ctx context.Context, id scope.Identity) ([]store.ScopeInfo, error) {
	if err := checkIdentity(id); err != nil {
		return nil, err
	}
	visible := id.Visible()
	kinds, sids := scopeArrays(visible)
	counts := map[scope.Scope]int{}
	// One round trip: BEGIN, the identity, the count and COMMIT. The
	// count runs its cached generic plan (an index-only scan of each
	// scope, as the custom plan), sparing PostgreSQL the planning of a
	// statement that carries row-level security's policies.
	err := s.readBatch(ctx, settings{id: id}, func(b *pgx.Batch) {
		b.Queue(searchSettingsSQL, "force_generic_plan")
		b.Queue(listScopesSQL, id.Org, kinds, sids, time.Now()).Query(func(rows pgx.Rows) error {
			return scanScopeCounts(rows, func(sc scope.Scope, n int) { counts[sc] = n })
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list scopes: %w", translate(err))
	}
	out := make([]store.ScopeInfo, len(visible))
	for i, sc := range visible {
		out[i] = store.ScopeInfo{Scope: sc, Count: counts[sc], Writable: id.CanWrite(sc) == nil}
	}
	return out, nil
}

// Purge deletes every memory of the target (expired ones too) and records
// the purge in the audit log. A scope target counts that scope; a user or
// org target counts each scope it emptied. Errors: scope.ErrForbidden,
// store.ErrInvalid, store.ErrUnavailable.
func (s *Store) Purge(ctx context.Context, id scope.Identity, t scope.Target) (store.PurgeCounts, error) {
	if err := checkIdentity(id); err != nil {
		return nil, err
	}
	if err := id.CanPurge(t); err != nil {
		return nil, fmt.Errorf("purge %s: %w", t, err)
	}
	st := settings{id: id}
	var (
		query string
		args  []any
	)
	switch t.Kind {
	case scope.TargetScope:
		query = `m.org_id = $1 AND m.scope_kind = $2 AND m.scope_id = $3`
		args = []any{id.Org, string(t.Scope.Kind), t.Scope.ID}
		if t.Scope.Kind == scope.KindTeam && id.Has(scope.PermAdmin) {
			st.purgeTeam = t.Scope.ID // admins may purge teams they are not in
		}
	case scope.TargetUser:
		if t.User == "" {
			return nil, fmt.Errorf("%w: purge of a user needs the user id", store.ErrInvalid)
		}
		st.purgeUser = t.User
		// scope_id is COLLATE "C", so the range is exactly the ids that
		// start with user + "/" ('0' follows '/').
		query = `m.org_id = $1 AND ((m.scope_kind = 'user' AND m.scope_id = $2)
			OR (m.scope_kind IN ('agent', 'session') AND m.scope_id >= $2 || '/' AND m.scope_id < $2 || '0'))`
		args = []any{id.Org, t.User}
	case scope.TargetOrg:
		st.purgeOrg = true
		query = `m.org_id = $1`
		args = []any{id.Org}
	default:
		return nil, fmt.Errorf("%w: unknown purge target kind %d", store.ErrInvalid, t.Kind)
	}
	counts := store.PurgeCounts{}
	if t.Kind == scope.TargetScope {
		counts[t.Scope.Qualified()] = 0
	}
	n := len(args)
	args = append(args, id.User, id.Agent, t.String(), store.SourceFrom(ctx))
	err := s.inTx(ctx, st, false, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, fmt.Sprintf(`
			WITH del AS (
				DELETE FROM memories AS m WHERE %s
				RETURNING m.scope_kind, m.scope_id
			), per AS (
				SELECT scope_kind, scope_id, count(*)::int AS n FROM del GROUP BY scope_kind, scope_id
			), audit AS (
				INSERT INTO audit (org_id, actor, agent, action, scope_kind, scope_id, target, count, source)
				SELECT $1, $%d, $%d, 'purge', scope_kind, scope_id, $%d, n, $%d FROM per
			)
			SELECT scope_kind, scope_id, n FROM per`, query, n+1, n+2, n+3, n+4), args...)
		if err != nil {
			return err
		}
		if err := scanScopeCounts(rows, func(sc scope.Scope, n int) { counts[sc.Qualified()] = n }); err != nil {
			return err
		}
		if len(counts) == 0 || counts.Total() == 0 {
			// Record the purge even when it found nothing.
			_, err := tx.Exec(ctx, `INSERT INTO audit (org_id, actor, agent, action, scope_kind, scope_id, target, count, source)
				VALUES ($1, $2, $3, 'purge', $4, $5, $6, 0, $7)`, id.Org, id.User, id.Agent,
				string(t.Scope.Kind), t.Scope.ID, t.String(), store.SourceFrom(ctx))
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("purge %s: %w", t, translate(err))
	}
	return counts, nil
}

// expireBatch is how many rows one janitor transaction deletes at most.
const expireBatch = 1000

// DeleteExpired removes memories that expired before now, across all
// orgs, in batches of short transactions through the
// scopemem_delete_expired function (the only path the runtime role has to
// other orgs' rows, and only to expired ones). Several replicas may run it
// at once: each row is deleted and counted by exactly one of them.
// Errors: store.ErrUnavailable.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		var n int
		if err := s.pool.QueryRow(ctx, `SELECT scopemem_delete_expired($1, $2)`, now, expireBatch).Scan(&n); err != nil {
			return total, fmt.Errorf("delete expired memories: %w", translate(err))
		}
		total += n
		if n < expireBatch {
			return total, nil
		}
	}
}

// embedderKey is the meta key of the embedder record.
const embedderKey = "embedder"

type embedderJSON struct {
	Provider   string `json:"provider"`
	Model      string `json:"model"`
	Dimensions int    `json:"dimensions"`
}

// Embedder returns the recorded embedder; ok is false when none is.
// Errors: store.ErrUnavailable.
func (s *Store) Embedder(ctx context.Context) (store.EmbedderInfo, bool, error) {
	var raw []byte
	err := s.pool.QueryRow(ctx, `SELECT value::text FROM meta WHERE key = $1`, embedderKey).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.EmbedderInfo{}, false, nil
	}
	if err != nil {
		return store.EmbedderInfo{}, false, fmt.Errorf("read embedder: %w", translate(err))
	}
	var e embedderJSON
	if err := json.Unmarshal(raw, &e); err != nil {
		return store.EmbedderInfo{}, false, fmt.Errorf("read embedder: stored record %s is not valid: %w", raw, err)
	}
	info := store.EmbedderInfo{Provider: e.Provider, Model: e.Model, Dimensions: e.Dimensions}
	s.mu.Lock()
	s.dims = info.Dimensions
	s.mu.Unlock()
	return info, true, nil
}

// SetEmbedder records info when nothing is recorded yet; otherwise it
// returns a *store.MismatchError when info differs from the record.
// Errors: store.ErrInvalid, store.ErrEmbedderMismatch, store.ErrUnavailable.
func (s *Store) SetEmbedder(ctx context.Context, info store.EmbedderInfo) error {
	if info.Provider == "" || info.Model == "" || info.Dimensions <= 0 {
		return fmt.Errorf("%w: embedder %v needs a provider, a model and a positive dimension", store.ErrInvalid, info)
	}
	raw, err := json.Marshal(embedderJSON{info.Provider, info.Model, info.Dimensions})
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2::jsonb) ON CONFLICT (key) DO NOTHING`,
		embedderKey, string(raw)); err != nil {
		return fmt.Errorf("record embedder: %w", translate(err))
	}
	stored, ok, err := s.Embedder(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("record embedder: %w: the record vanished", store.ErrConflict)
	}
	if stored != info {
		return &store.MismatchError{Stored: stored, Configured: info}
	}
	return nil
}
