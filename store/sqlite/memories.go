package sqlite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// memoryCols are the columns scanMemory reads, in order.
const memoryCols = `rid, id, org_id, scope_kind, scope_id, content, tags, metadata, created_by, created_at, updated_at, expires_at`

// memoryColsM is memoryCols of the table aliased m.
const memoryColsM = `m.rid, m.id, m.org_id, m.scope_kind, m.scope_id, m.content, m.tags, m.metadata, m.created_by, m.created_at,
	m.updated_at, m.expires_at`

// rowScanner is *sql.Row or *sql.Rows.
type rowScanner interface{ Scan(dest ...any) error }

// scanMemory reads one row of memoryCols.
func scanMemory(r rowScanner, extra ...any) (int64, store.Memory, error) {
	var (
		rid              int64
		m                store.Memory
		kind             string
		tags, meta       []byte
		created, updated int64
		expires          sql.NullInt64
	)
	dest := append([]any{&rid, &m.ID, &m.Org, &kind, &m.Scope.ID, &m.Content, &tags, &meta, &m.CreatedBy, &created, &updated, &expires}, extra...)
	if err := r.Scan(dest...); err != nil {
		return 0, m, err
	}
	m.Scope.Kind = scope.Kind(kind)
	var err error
	if m.Tags, err = decodeTags(tags); err != nil {
		return 0, m, fmt.Errorf("memory %s: %w", m.ID, err)
	}
	if len(meta) > 0 {
		m.Metadata = json.RawMessage(bytes.Clone(meta))
	}
	m.CreatedAt, m.UpdatedAt = fromNanos(created), fromNanos(updated)
	if expires.Valid {
		t := fromNanos(expires.Int64)
		m.ExpiresAt = &t
	}
	return rid, m, nil
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

// nowNanos returns the current time as the store writes it.
func nowNanos() int64 { return time.Now().UnixNano() }

// liveSQL keeps rows that have not expired at the bound time.
const liveSQL = `(expires_at IS NULL OR expires_at > ?)`

// scopeIn returns "(scope_kind, scope_id) IN (VALUES (?, ?), ...)" for
// scopes (which must not be empty), with the columns prefixed by prefix (a
// table alias and a dot, or ""), and appends the arguments.
func scopeIn(prefix string, scopes []scope.Scope, args []any) (string, []any) {
	var b strings.Builder
	b.WriteString("(" + prefix + "scope_kind, " + prefix + "scope_id) IN (VALUES ")
	for i, s := range scopes {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?)")
		args = append(args, string(s.Kind), s.ID)
	}
	b.WriteString(")")
	return b.String(), args
}

// checkIdentity refuses an identity that is not usable.
func checkIdentity(id scope.Identity) error {
	if err := id.Validate(); err != nil {
		return fmt.Errorf("%w: %w", store.ErrInvalid, err)
	}
	return nil
}

// checkMetadata accepts nil, JSON null and JSON objects, and returns what to
// store (nil for none).
func checkMetadata(m json.RawMessage) ([]byte, error) {
	t := bytes.TrimSpace(m)
	if len(t) == 0 || string(t) == "null" {
		return nil, nil
	}
	if !json.Valid(t) || t[0] != '{' {
		return nil, fmt.Errorf("%w: metadata must be a JSON object, got %.40q", store.ErrInvalid, t)
	}
	return bytes.Clone(t), nil
}

// prepareVector copies and normalizes v, checking its length against dims.
func prepareVector(v []float32, dims int) ([]float32, error) {
	if err := checkDims(v, dims); err != nil {
		return nil, err
	}
	return store.Normalize(slices.Clone(v))
}

// checkDims returns an ErrInvalid error when v does not have dims
// dimensions.
func checkDims(v []float32, dims int) error {
	if len(v) != dims {
		return fmt.Errorf("%w: the vector has %d dimensions but this store's embedder makes %d", store.ErrInvalid, len(v), dims)
	}
	return nil
}

func contentHash(content string) []byte {
	h := sha256.Sum256([]byte(store.NormalizeContent(content)))
	return h[:]
}

func encodeTags(tags []string) string {
	if len(tags) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(tags)
	return string(b)
}

// storedDims returns the recorded embedder dimensions, reading them through
// q, or an ErrInvalid error when no embedder is recorded.
func (s *Store) storedDims(ctx context.Context, q querier) (int, error) {
	info, ok, err := readEmbedder(ctx, q)
	if err != nil {
		return 0, fmt.Errorf("read the embedder: %w", s.translate(err))
	}
	if !ok {
		return 0, fmt.Errorf("%w: this store has no embedder recorded yet; call SetEmbedder before adding or searching", store.ErrInvalid)
	}
	s.dims.Store(int64(info.Dimensions))
	return info.Dimensions, nil
}

// writerDims is the embedder's dimensions as a write transaction last
// read them, and the writer connection's data version then.
type writerDims struct {
	dims int // 0: not read
	at   int64
}

// txDims returns the recorded embedder dimensions inside the write
// transaction tx. They are read again only when another connection (a
// process, or another store on the file) committed since they were last
// read: PRAGMA data_version on the writer connection tells, and costs a
// fraction of reading them. This store's own changes of the embedder
// (SetEmbedder, CommitReindex) forget them inside their transactions.
func (s *Store) txDims(ctx context.Context, tx writeTx) (int, error) {
	var dv int64
	if err := s.prep(tx).QueryRowContext(ctx, sqlDataVersion).Scan(&dv); err != nil {
		return 0, fmt.Errorf("read the data version: %w", s.translate(err))
	}
	if s.w.dims.dims != 0 && s.w.dims.at == dv {
		return s.w.dims.dims, nil
	}
	dims, err := s.storedDims(ctx, s.prep(tx))
	if err != nil {
		return 0, err
	}
	s.w.dims = writerDims{dims: dims, at: dv}
	return dims, nil
}

// writeState collects what a write transaction changed per scope.
type writeState struct {
	dims     int
	deltas   map[scopeKey]*delta
	versions map[scopeKey]int64 // set by bump
}

func (w *writeState) delta(k scopeKey) *delta {
	if w.deltas == nil {
		w.deltas = map[scopeKey]*delta{}
	}
	d := w.deltas[k]
	if d == nil {
		d = &delta{}
		w.deltas[k] = d
	}
	return d
}

// bump increments the change counter of every scope w touched; call it last
// in the transaction. It returns the new versions.
func (s *Store) bump(ctx context.Context, tx writeTx, w *writeState) (map[scopeKey]int64, error) {
	out := make(map[scopeKey]int64, len(w.deltas))
	for k := range w.deltas {
		var v int64
		err := s.prep(tx).QueryRowContext(ctx, sqlBumpVersion, k.org, string(k.kind), k.id).Scan(&v)
		if err != nil {
			return nil, fmt.Errorf("bump scope version: %w", s.translate(err))
		}
		out[k] = v
	}
	return out, nil
}

// publish applies a committed transaction's deltas to the cache.
func (s *Store) publish(w *writeState, versions map[scopeKey]int64) {
	for k, v := range versions {
		if e := s.cache.lookup(k); e != nil {
			e.apply(v, w.dims, w.deltas[k])
		}
	}
}

// scopeInTx returns the cache entry of k brought up to date inside the
// write transaction tx, which holds the write lock, so nothing can change
// the scope until it ends.
func (s *Store) scopeInTx(ctx context.Context, tx writeTx, k scopeKey, dims int) (*scopeVecs, error) {
	v, reset, err := scopeVersion(ctx, s.prep(tx), k)
	if err != nil {
		return nil, s.translate(err)
	}
	e := s.cache.entry(k)
	e.mu.RLock()
	ok := e.version == v && e.dims == dims
	e.mu.RUnlock()
	if !ok {
		if err := refresh(ctx, tx, e, k, dims, v, reset, true); err != nil {
			return nil, s.translate(err)
		}
		s.cache.trim([]*scopeVecs{e})
	}
	return e, nil
}

// pendingMemory is a memory added earlier in the same batch.
type pendingMemory struct {
	key     scopeKey
	hash    []byte
	vec     []float32
	expires int64
	m       store.Memory
}

// Add stores memories for id, deduplicating each within its scope inside
// one write transaction: either every memory is stored (or found to be a
// duplicate) or none is.
func (s *Store) Add(ctx context.Context, id scope.Identity, ms []store.NewMemory) ([]store.Added, error) {
	if err := checkIdentity(id); err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("%w: nothing to add", store.ErrInvalid)
	}
	type prepared struct {
		content string
		meta    []byte
		tags    []string
		expires int64
	}
	prep := make([]prepared, len(ms))
	for i, m := range ms {
		if !id.CanSee(m.Scope) {
			return nil, fmt.Errorf("%w: memory %d: scope %s is not one of the caller's scopes", store.ErrInvalid, i, m.Scope.Qualified())
		}
		if strings.TrimSpace(m.Content) == "" {
			return nil, fmt.Errorf("%w: memory %d has no content", store.ErrInvalid, i)
		}
		meta, err := checkMetadata(m.Metadata)
		if err != nil {
			return nil, fmt.Errorf("memory %d: %w", i, err)
		}
		prep[i] = prepared{content: m.Content, meta: meta, tags: slices.Clone(m.Tags)}
		if m.ExpiresAt != nil {
			prep[i].expires = m.ExpiresAt.UnixNano()
		}
	}
	out := make([]store.Added, len(ms))
	w := &writeState{}
	err := s.write(ctx, func(tx writeTx) error {
		dims, err := s.txDims(ctx, tx)
		if err != nil {
			return err
		}
		w.dims, w.deltas = dims, nil
		vecs := make([][]float32, len(ms))
		for i, m := range ms {
			if vecs[i], err = prepareVector(m.Vector, dims); err != nil {
				return fmt.Errorf("memory %d: %w", i, err)
			}
		}
		now := nowNanos()
		var pending []pendingMemory
		for i, m := range ms {
			k := keyOf(id.Org, m.Scope)
			hash := contentHash(m.Content)
			var code rowCode
			if dup, ok, err := s.findDuplicate(ctx, tx, k, hash, vecs[i], dims, now, pending, &code); err != nil {
				return err
			} else if ok {
				out[i] = store.Added{Memory: dup, Duplicate: true}
				continue
			}
			mem := store.Memory{
				ID: uuid.Must(uuid.NewV7()).String(), Org: id.Org, Scope: m.Scope, Content: prep[i].content,
				Tags: prep[i].tags, CreatedBy: id.User, CreatedAt: fromNanos(now), UpdatedAt: fromNanos(now),
			}
			if len(mem.Tags) == 0 {
				mem.Tags = nil
			}
			if prep[i].meta != nil {
				mem.Metadata = json.RawMessage(prep[i].meta)
			}
			var expires any
			if prep[i].expires != 0 {
				expires = prep[i].expires
				t := fromNanos(prep[i].expires)
				mem.ExpiresAt = &t
			}
			var meta any
			if prep[i].meta != nil {
				meta = string(prep[i].meta)
			}
			res, err := s.prep(tx).ExecContext(ctx, sqlInsertMemory,
				mem.ID, id.Org, string(m.Scope.Kind), m.Scope.ID, mem.Content, hash, encodeTags(mem.Tags),
				meta, id.User, now, now, expires)
			if err != nil {
				return fmt.Errorf("insert memory: %w", s.translate(err))
			}
			rid, err := res.LastInsertId()
			if err != nil {
				return fmt.Errorf("insert memory: %w", s.translate(err))
			}
			if _, err := s.prep(tx).ExecContext(ctx, sqlInsertVector, rid, encodeVector(vecs[i])); err != nil {
				return fmt.Errorf("insert vector: %w", s.translate(err))
			}
			if err := s.insertTags(ctx, tx, rid, mem.Tags); err != nil {
				return err
			}
			row := newCachedRow(rid, vecs[i], mem)
			row.code = code
			w.delta(k).upserts = append(w.delta(k).upserts, row)
			pending = append(pending, pendingMemory{key: k, hash: hash, vec: vecs[i], expires: prep[i].expires, m: mem})
			out[i] = store.Added{Memory: mem}
		}
		versions, err := s.bump(ctx, tx, w)
		if err != nil {
			return err
		}
		w.versions = versions
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("add memories: %w", err)
	}
	s.publish(w, w.versions)
	return out, nil
}

// findDuplicate looks for a live memory in k whose normalized content
// hashes to hash or whose vector is near-identical to vec, among the rows
// stored and those added earlier in the same batch. When it encodes vec
// to pick candidates, it leaves the code in code, for the cache.
func (s *Store) findDuplicate(ctx context.Context, tx writeTx, k scopeKey, hash []byte, vec []float32, dims int, now int64,
	pending []pendingMemory, code *rowCode) (store.Memory, bool, error) {
	live := func(exp int64) bool { return exp == 0 || exp > now }
	for _, p := range pending {
		if p.key == k && live(p.expires) && bytes.Equal(p.hash, hash) {
			return p.m, true, nil
		}
	}
	_, m, err := scanMemory(s.prep(tx).QueryRowContext(ctx, sqlDuplicateByHash, k.org, string(k.kind), k.id, hash, now))
	if err == nil {
		return m, true, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return m, false, fmt.Errorf("look for a duplicate: %w", s.translate(err))
	}
	e, err := s.scopeInTx(ctx, tx, k, dims)
	if err != nil {
		return m, false, fmt.Errorf("look for a near-duplicate: %w", err)
	}
	// The most similar near-duplicate wins. store.NearDuplicate tells most
	// candidates apart from their first 64 dimensions, without reading
	// the rest of their vectors.
	found, bestRid, best := false, int64(0), float32(-2)
	sc := s.scratch.Get().(*scratch)
	e.mu.RLock()
	near := e.nearest(vec, now, dupCandidates, sc, code)
	for _, slot := range near {
		// Warmed: the first block NearDuplicate reads, which tells most
		// candidates apart.
		v := e.vecs[slot]
		store.Warm(v[:min(len(v), 64)])
	}
	for _, slot := range near {
		if v := e.vecs[slot]; store.NearDuplicate(vec, v) {
			if d := dot(vec, v); d > best {
				found, bestRid, best = true, e.rids[slot], d
			}
		}
	}
	e.mu.RUnlock()
	s.scratch.Put(sc)
	var bestPending *pendingMemory
	for i := range pending {
		p := &pending[i]
		if p.key == k && live(p.expires) && store.NearDuplicate(vec, p.vec) {
			if d := dot(vec, p.vec); d > best {
				found, best, bestPending = true, d, p
			}
		}
	}
	if !found {
		return m, false, nil
	}
	if bestPending != nil {
		return bestPending.m, true, nil
	}
	_, m, err = scanMemory(s.prep(tx).QueryRowContext(ctx, sqlMemoryByRid, bestRid, k.org))
	if err != nil {
		return m, false, fmt.Errorf("read the near-duplicate: %w", s.translate(err))
	}
	return m, true, nil
}

func (s *Store) insertTags(ctx context.Context, tx writeTx, rid int64, tags []string) error {
	for _, t := range tags {
		if _, err := s.prep(tx).ExecContext(ctx, sqlInsertTag, rid, t); err != nil {
			return fmt.Errorf("insert tags: %w", s.translate(err))
		}
	}
	return nil
}

// Get returns one memory visible to id that has not expired.
func (s *Store) Get(ctx context.Context, id scope.Identity, memoryID string) (store.Memory, error) {
	if err := checkIdentity(id); err != nil {
		return store.Memory{}, err
	}
	where, args := scopeIn("", id.Visible(), []any{memoryID, id.Org, nowNanos()})
	_, m, err := scanMemory(s.rdb.QueryRowContext(ctx, `SELECT `+memoryCols+` FROM memories
		WHERE id = ? AND org_id = ? AND `+liveSQL+` AND `+where, args...))
	if err != nil {
		return store.Memory{}, fmt.Errorf("get memory %q: %w", memoryID, s.translate(err))
	}
	return m, nil
}

// Update changes one memory in a scope id may write.
func (s *Store) Update(ctx context.Context, id scope.Identity, memoryID string, p store.Patch) (store.Memory, error) {
	if err := checkIdentity(id); err != nil {
		return store.Memory{}, err
	}
	if p.Content != nil && strings.TrimSpace(*p.Content) == "" {
		return store.Memory{}, fmt.Errorf("%w: new content is empty", store.ErrInvalid)
	}
	if p.Content != nil && p.Vector == nil {
		return store.Memory{}, fmt.Errorf("%w: changing the content needs the new content's vector", store.ErrInvalid)
	}
	var meta []byte
	if p.Metadata != nil {
		var err error
		if meta, err = checkMetadata(*p.Metadata); err != nil {
			return store.Memory{}, err
		}
	}
	writable := id.Writable()
	if len(writable) == 0 {
		return store.Memory{}, fmt.Errorf("update memory %q: %w", memoryID, store.ErrNotFound)
	}
	var out store.Memory
	w := &writeState{}
	err := s.write(ctx, func(tx writeTx) error {
		dims, err := s.txDims(ctx, tx)
		if err != nil {
			return err
		}
		w.dims, w.deltas = dims, nil
		var vec []float32
		if p.Vector != nil {
			if vec, err = prepareVector(p.Vector, dims); err != nil {
				return err
			}
		}
		now := nowNanos()
		where, args := scopeIn("", writable, []any{memoryID, id.Org, now})
		rid, old, err := scanMemory(tx.QueryRowContext(ctx, `SELECT `+memoryCols+` FROM memories
			WHERE id = ? AND org_id = ? AND `+liveSQL+` AND `+where, args...))
		if err != nil {
			return s.translate(err)
		}
		updated := max(now, old.UpdatedAt.UnixNano()+1)
		set := []string{"updated_at = ?"}
		vals := []any{updated}
		if p.Content != nil {
			set = append(set, "content = ?", "content_hash = ?")
			vals = append(vals, *p.Content, contentHash(*p.Content))
		}
		if p.Tags != nil {
			set = append(set, "tags = ?")
			vals = append(vals, encodeTags(*p.Tags))
		}
		if p.Metadata != nil {
			set = append(set, "metadata = ?")
			if meta == nil {
				vals = append(vals, nil)
			} else {
				vals = append(vals, string(meta))
			}
		}
		vals = append(vals, rid)
		if _, err := tx.ExecContext(ctx, `UPDATE memories SET `+strings.Join(set, ", ")+` WHERE rid = ?`, vals...); err != nil {
			return fmt.Errorf("update: %w", s.translate(err))
		}
		if vec != nil {
			if _, err := tx.ExecContext(ctx, `UPDATE memory_vectors SET vector = ? WHERE rid = ?`, encodeVector(vec), rid); err != nil {
				return fmt.Errorf("update vector: %w", s.translate(err))
			}
		}
		if p.Tags != nil {
			if _, err := tx.ExecContext(ctx, `DELETE FROM memory_tags WHERE rid = ?`, rid); err != nil {
				return fmt.Errorf("update tags: %w", s.translate(err))
			}
			if err := s.insertTags(ctx, tx, rid, *p.Tags); err != nil {
				return err
			}
		}
		var blob []byte
		_, out, err = scanMemory(tx.QueryRowContext(ctx, `SELECT `+memoryColsM+`, v.vector FROM memories m
			JOIN memory_vectors v ON v.rid = m.rid WHERE m.rid = ?`, rid), &blob)
		if err != nil {
			return fmt.Errorf("read back: %w", s.translate(err))
		}
		row := newCachedRow(rid, decodeVector(blob, make([]float32, dims)), out)
		k := keyOf(id.Org, out.Scope)
		w.delta(k).upserts = append(w.delta(k).upserts, row)
		w.versions, err = s.bump(ctx, tx, w)
		return err
	})
	if err != nil {
		return store.Memory{}, fmt.Errorf("update memory %q: %w", memoryID, err)
	}
	s.publish(w, w.versions)
	return out, nil
}

// Delete removes one memory in a scope id may write.
func (s *Store) Delete(ctx context.Context, id scope.Identity, memoryID string) error {
	if err := checkIdentity(id); err != nil {
		return err
	}
	writable := id.Writable()
	if len(writable) == 0 {
		return fmt.Errorf("delete memory %q: %w", memoryID, store.ErrNotFound)
	}
	w := &writeState{}
	err := s.write(ctx, func(tx writeTx) error {
		w.deltas = nil
		where, args := scopeIn("", writable, []any{memoryID, id.Org})
		removed, err := s.deleteWhere(ctx, tx, w, `id = ? AND org_id = ? AND `+where, args...)
		if err != nil {
			return err
		}
		if removed.Total() == 0 {
			return store.ErrNotFound
		}
		w.versions, err = s.bump(ctx, tx, w)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete memory %q: %w", memoryID, err)
	}
	s.publish(w, w.versions)
	return nil
}

// deleteWhere deletes the rows matching cond, records them in w and
// returns counts per qualified scope (and per org when orgs is set).
func (s *Store) deleteWhere(ctx context.Context, tx writeTx, w *writeState, cond string, args ...any) (store.PurgeCounts, error) {
	rows, err := tx.QueryContext(ctx, `DELETE FROM memories WHERE `+cond+` RETURNING rid, org_id, scope_kind, scope_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("delete: %w", s.translate(err))
	}
	defer rows.Close()
	counts := store.PurgeCounts{}
	for rows.Next() {
		var rid int64
		var k scopeKey
		var kind string
		if err := rows.Scan(&rid, &k.org, &kind, &k.id); err != nil {
			return nil, fmt.Errorf("delete: %w", s.translate(err))
		}
		k.kind = scope.Kind(kind)
		d := w.delta(k)
		d.removed = append(d.removed, rid)
		counts[scope.Scope{Kind: k.kind, ID: k.id}.Qualified()]++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("delete: %w", s.translate(err))
	}
	return counts, nil
}

// ListScopes returns id's visible scopes, narrowest first, with counts of
// live memories.
func (s *Store) ListScopes(ctx context.Context, id scope.Identity) ([]store.ScopeInfo, error) {
	if err := checkIdentity(id); err != nil {
		return nil, err
	}
	vis := id.Visible()
	where, args := scopeIn("", vis, []any{id.Org, nowNanos()})
	rows, err := s.rdb.QueryContext(ctx, `SELECT scope_kind, scope_id, count(*) FROM memories
		WHERE org_id = ? AND `+liveSQL+` AND `+where+` GROUP BY scope_kind, scope_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list scopes: %w", s.translate(err))
	}
	defer rows.Close()
	counts := map[scope.Scope]int{}
	for rows.Next() {
		var kind, sid string
		var n int
		if err := rows.Scan(&kind, &sid, &n); err != nil {
			return nil, fmt.Errorf("list scopes: %w", s.translate(err))
		}
		counts[scope.Scope{Kind: scope.Kind(kind), ID: sid}] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list scopes: %w", s.translate(err))
	}
	out := make([]store.ScopeInfo, len(vis))
	for i, sc := range vis {
		out[i] = store.ScopeInfo{Scope: sc, Count: counts[sc], Writable: id.CanWrite(sc) == nil}
	}
	return out, nil
}

// Purge deletes every memory of t, expired or not, after checking that id
// may purge it.
func (s *Store) Purge(ctx context.Context, id scope.Identity, t scope.Target) (store.PurgeCounts, error) {
	if err := checkIdentity(id); err != nil {
		return nil, err
	}
	var cond string
	args := []any{id.Org}
	switch t.Kind {
	case scope.TargetScope:
		cond = `org_id = ? AND scope_kind = ? AND scope_id = ?`
		args = append(args, string(t.Scope.Kind), t.Scope.ID)
	case scope.TargetUser:
		if t.User == "" || strings.ContainsAny(t.User, "/:") {
			return nil, fmt.Errorf("%w: purge target user %q is not a user id", store.ErrInvalid, t.User)
		}
		// Agent and session ids are "user/...": the range ["user/",
		// "user0") holds exactly them ('0' follows '/'), with no pattern
		// matching to trip on '%' or '_' in user ids.
		cond = `org_id = ? AND ((scope_kind = 'user' AND scope_id = ?) OR
			(scope_kind IN ('agent', 'session') AND scope_id >= ? AND scope_id < ?))`
		args = append(args, t.User, t.User+"/", t.User+"0")
	case scope.TargetOrg:
		cond = `org_id = ?`
	default:
		return nil, fmt.Errorf("%w: unknown purge target kind %d", store.ErrInvalid, t.Kind)
	}
	if err := id.CanPurge(t); err != nil {
		return nil, fmt.Errorf("purge %s: %w", targetName(t), err)
	}
	var counts store.PurgeCounts
	w := &writeState{}
	err := s.write(ctx, func(tx writeTx) error {
		w.deltas = nil
		var err error
		if counts, err = s.deleteWhere(ctx, tx, w, cond, args...); err != nil {
			return err
		}
		w.versions, err = s.bump(ctx, tx, w)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("purge %s: %w", targetName(t), err)
	}
	s.publish(w, w.versions)
	s.cfg.Logger.Info("purged memories", "org", id.Org, "by", id.User, "target", targetName(t), "count", counts.Total())
	return counts, nil
}

func targetName(t scope.Target) string {
	if t.Kind == scope.TargetScope {
		return t.Scope.Qualified()
	}
	return t.String()
}

// DeleteExpired removes memories whose expiry is at or before now, across
// all orgs.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) (int, error) {
	var n int
	w := &writeState{}
	err := s.write(ctx, func(tx writeTx) error {
		w.deltas = nil
		counts, err := s.deleteWhere(ctx, tx, w, `expires_at IS NOT NULL AND expires_at <= ?`, now.UnixNano())
		if err != nil {
			return err
		}
		n = counts.Total()
		w.versions, err = s.bump(ctx, tx, w)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete expired memories: %w", err)
	}
	s.publish(w, w.versions)
	return n, nil
}

// Embedder returns the recorded embedder.
func (s *Store) Embedder(ctx context.Context) (store.EmbedderInfo, bool, error) {
	// Read on the writer's connection (outside a transaction: no write
	// lock), which a start has opened anyway, so that it opens no reader;
	// a read-only store has only readers.
	var q querier = s.rdb
	if !s.cfg.ReadOnly {
		conn, err := s.acquireWriter(ctx)
		if err != nil {
			return store.EmbedderInfo{}, false, fmt.Errorf("read the embedder: %w", err)
		}
		defer s.releaseWriter()
		q = conn
	}
	info, ok, err := readEmbedder(ctx, q)
	if err != nil {
		return info, false, fmt.Errorf("read the embedder: %w", s.translate(err))
	}
	if ok {
		s.dims.Store(int64(info.Dimensions))
	}
	return info, ok, nil
}

// SetEmbedder records info if nothing is recorded, and otherwise returns a
// *store.MismatchError when it differs.
func (s *Store) SetEmbedder(ctx context.Context, info store.EmbedderInfo) error {
	if info.Provider == "" || info.Model == "" || info.Dimensions <= 0 {
		return fmt.Errorf("%w: embedder %v needs a provider, a model and a positive dimension", store.ErrInvalid, info)
	}
	// Most starts find the same embedder: check without taking the write
	// lock, so a read-only file works too.
	if stored, ok, err := s.Embedder(ctx); err != nil {
		return err
	} else if ok {
		if stored != info {
			return &store.MismatchError{Stored: stored, Configured: info}
		}
		return nil
	}
	err := s.write(ctx, func(tx writeTx) error {
		stored, ok, err := readEmbedder(ctx, tx)
		if err != nil {
			return s.translate(err)
		}
		if ok {
			if stored != info {
				return &store.MismatchError{Stored: stored, Configured: info}
			}
			return nil
		}
		s.w.dims = writerDims{}
		for k, v := range map[string]string{
			"embedder_provider": info.Provider, "embedder_model": info.Model, "embedder_dimensions": strconv.Itoa(info.Dimensions),
		} {
			if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)`, k, v); err != nil {
				return s.translate(err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record the embedder: %w", err)
	}
	s.dims.Store(int64(info.Dimensions))
	return nil
}

func readEmbedder(ctx context.Context, q querier) (store.EmbedderInfo, bool, error) {
	rows, err := q.QueryContext(ctx, sqlReadEmbedder)
	if err != nil {
		return store.EmbedderInfo{}, false, err
	}
	defer rows.Close()
	var info store.EmbedderInfo
	n := 0
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return info, false, err
		}
		n++
		switch k {
		case "embedder_provider":
			info.Provider = v
		case "embedder_model":
			info.Model = v
		case "embedder_dimensions":
			if info.Dimensions, err = strconv.Atoi(v); err != nil {
				return info, false, fmt.Errorf("recorded embedder dimensions %q are not a number", v)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return info, false, err
	}
	return info, n == 3, nil
}
