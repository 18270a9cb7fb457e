package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sync"

	"gonum.org/v1/gonum/blas/gonum"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// scopeKey names one scope of one org.
type scopeKey struct {
	org  string
	kind scope.Kind
	id   string
}

func keyOf(org string, s scope.Scope) scopeKey { return scopeKey{org: org, kind: s.Kind, id: s.ID} }

// vecCache keeps the decoded vectors of each scope this process has
// searched, so that a search scans memory instead of decoding blobs.
//
// Every write transaction bumps the scope's row in scope_versions. An entry
// remembers the version it reflects; a search compares it with the
// database and reloads a scope another process changed. This process's own
// writes are applied to the entry directly when it was current before the
// write (deltas are idempotent, so applying one twice is harmless).
type vecCache struct {
	mu      sync.Mutex
	entries map[scopeKey]*scopeVecs
}

func newVecCache() *vecCache { return &vecCache{entries: map[scopeKey]*scopeVecs{}} }

// entry returns the entry of k, creating an empty one at version -1.
func (c *vecCache) entry(k scopeKey) *scopeVecs {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[k]
	if e == nil {
		e = &scopeVecs{version: -1, index: map[int64]int{}}
		c.entries[k] = e
	}
	return e
}

// lookup returns the entry of k, or nil.
func (c *vecCache) lookup(k scopeKey) *scopeVecs {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[k]
}

// scopeVecs holds one scope's live and expired rows as parallel slices:
// vectors for the scan and the memories themselves, so that the vector half
// of a search needs no query beyond the version check.
// Readers hold mu.RLock while scanning; writers replace or patch under
// mu.Lock.
type scopeVecs struct {
	mu      sync.RWMutex
	version int64 // the scope_versions value it reflects; -1: never loaded
	dims    int
	rids    []int64
	vecs    []float32 // len(rids)*dims
	expires []int64   // unix nanoseconds; 0: never
	mems    []store.Memory
	index   map[int64]int // rid -> position
}

// cachedRow is one row as the cache holds it.
type cachedRow struct {
	rid     int64
	vec     []float32
	expires int64
	mem     store.Memory
}

// newCachedRow makes the cache's row for m.
func newCachedRow(rid int64, vec []float32, m store.Memory) cachedRow {
	m.Tags, m.Metadata = slices.Clone(m.Tags), bytes.Clone(m.Metadata)
	r := cachedRow{rid: rid, vec: vec, mem: m}
	if m.ExpiresAt != nil {
		r.expires = m.ExpiresAt.UnixNano()
	}
	return r
}

// replace installs rows loaded at version v, unless the entry is already
// as new.
func (e *scopeVecs) replace(v int64, dims int, rows []cachedRow) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.version >= v && e.dims == dims {
		return
	}
	e.install(v, dims, rows)
}

// force installs rows loaded at version v by a write transaction, which
// holds the write lock and so knows v is the latest.
func (e *scopeVecs) force(v int64, dims int, rows []cachedRow) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.install(v, dims, rows)
}

func (e *scopeVecs) install(v int64, dims int, rows []cachedRow) {
	e.version, e.dims = v, dims
	e.rids = make([]int64, 0, len(rows))
	e.vecs = make([]float32, 0, len(rows)*dims)
	e.expires = make([]int64, 0, len(rows))
	e.mems = make([]store.Memory, 0, len(rows))
	e.index = make(map[int64]int, len(rows))
	for _, r := range rows {
		e.appendRow(r)
	}
}

func (e *scopeVecs) appendRow(r cachedRow) {
	e.index[r.rid] = len(e.rids)
	e.rids = append(e.rids, r.rid)
	e.vecs = append(e.vecs, r.vec...)
	e.expires = append(e.expires, r.expires)
	e.mems = append(e.mems, r.mem)
}

// delta is what one write transaction did to one scope.
type delta struct {
	upserts []cachedRow
	removed []int64
}

// apply patches the entry with d if it reflected version v-1, so that it
// now reflects v. Otherwise the entry is left for the next search to reload
// (or it is already newer).
func (e *scopeVecs) apply(v int64, dims int, d *delta) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.version != v-1 || (len(d.upserts) > 0 && e.dims != dims) {
		if e.version < v {
			e.version = -1 // stale: reload on next use
		}
		return
	}
	dims = e.dims
	for _, rid := range d.removed {
		i, ok := e.index[rid]
		if !ok {
			continue
		}
		last := len(e.rids) - 1
		if i != last {
			e.rids[i] = e.rids[last]
			copy(e.vecs[i*dims:(i+1)*dims], e.vecs[last*dims:(last+1)*dims])
			e.expires[i] = e.expires[last]
			e.mems[i] = e.mems[last]
			e.index[e.rids[i]] = i
		}
		e.rids = e.rids[:last]
		e.vecs = e.vecs[:last*dims]
		e.expires = e.expires[:last]
		e.mems[last] = store.Memory{}
		e.mems = e.mems[:last]
		delete(e.index, rid)
	}
	for _, r := range d.upserts {
		if i, ok := e.index[r.rid]; ok {
			copy(e.vecs[i*dims:(i+1)*dims], r.vec)
			e.expires[i] = r.expires
			e.mems[i] = r.mem
			continue
		}
		e.appendRow(r)
	}
	e.version = v
}

// scopeVersion reads the change counter of k; 0 when the scope was never
// written.
func scopeVersion(ctx context.Context, q querier, k scopeKey) (int64, error) {
	var v int64
	err := q.QueryRowContext(ctx, `SELECT version FROM scope_versions WHERE org_id = ? AND scope_kind = ? AND scope_id = ?`,
		k.org, string(k.kind), k.id).Scan(&v)
	if err == sql.ErrNoRows {
		return 0, nil
	}
	return v, err
}

// loadRows reads every row of k.
func loadRows(ctx context.Context, q querier, k scopeKey, dims int) ([]cachedRow, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+memoryColsM+`, v.vector FROM memories m JOIN memory_vectors v ON v.rid = m.rid
		WHERE m.org_id = ? AND m.scope_kind = ? AND m.scope_id = ?`, k.org, string(k.kind), k.id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []cachedRow
	var blob []byte
	for rows.Next() {
		rid, m, err := scanMemory(rows, &blob)
		if err != nil {
			return nil, err
		}
		if len(blob) != 4*dims {
			return nil, fmt.Errorf("memory %s has a %d-byte vector, want %d dimensions: run scopemem reindex", m.ID, len(blob), dims)
		}
		out = append(out, newCachedRow(rid, decodeVector(blob, make([]float32, dims)), m))
	}
	return out, rows.Err()
}

// encodeVector writes v as little-endian float32.
func encodeVector(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// decodeVector reads little-endian float32 from b into dst.
func decodeVector(b []byte, dst []float32) []float32 {
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return dst
}

func decodeTags(b []byte) ([]string, error) {
	if len(b) == 0 || string(b) == "[]" {
		return nil, nil
	}
	var tags []string
	if err := json.Unmarshal(b, &tags); err != nil {
		return nil, fmt.Errorf("tags %q are not a JSON array of strings: %w", b, err)
	}
	return tags, nil
}

// hasTags reports whether have holds every tag of want.
func hasTags(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// dot is the dot product of two equal-length vectors, with gonum's SIMD
// kernel.
func dot(a, b []float32) float32 {
	var blas gonum.Implementation
	return blas.Sdot(len(a), a, 1, b[:len(a)], 1)
}
