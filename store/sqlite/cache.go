package sqlite

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/simhash"
)

// scopeKey names one scope of one org.
type scopeKey struct {
	org  string
	kind scope.Kind
	id   string
}

func keyOf(org string, s scope.Scope) scopeKey { return scopeKey{org: org, kind: s.Kind, id: s.ID} }

// vecCache keeps the rows of each scope this process has searched or
// written, decoded, with a binary code per vector and a full-text index, so
// that a search reads no rows from SQLite.
//
// Every write transaction bumps the scope's row in scope_versions. An entry
// remembers the version it reflects; a search compares it with the
// database and brings up to date a scope another process changed: by the
// rows written since (refresh, catchUp) when none left the scope since,
// else by reading it whole. This process's own writes are applied to the
// entry directly when it was current before the write.
//
// The cache holds about budget bytes: after loading a scope, the least
// recently used scopes are dropped until it fits again. Scopes a search is
// using are never dropped by that search, so one search that needs more
// than the budget still works (and the budget is exceeded until the next
// load).
type vecCache struct {
	mu      sync.Mutex
	entries map[scopeKey]*scopeVecs
	budget  int64
	clock   int64 // bumped on every use, for LRU order
}

func newVecCache(budget int64) *vecCache {
	return &vecCache{entries: map[scopeKey]*scopeVecs{}, budget: budget}
}

// entry returns the entry of k, creating an empty one at version -1, and
// marks it used.
func (c *vecCache) entry(k scopeKey) *scopeVecs {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[k]
	if e == nil {
		e = newScopeVecs()
		c.entries[k] = e
	}
	c.clock++
	e.used.Store(c.clock)
	return e
}

// lookup returns the entry of k, or nil.
func (c *vecCache) lookup(k scopeKey) *scopeVecs {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[k]
}

// trim drops least recently used entries, other than keep, until the
// cache fits its budget.
func (c *vecCache) trim(keep []*scopeVecs) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		var total int64
		var victim scopeKey
		var oldest *scopeVecs
		for k, e := range c.entries {
			b := e.size.Load()
			total += b
			if slices.Contains(keep, e) {
				continue
			}
			if oldest == nil || e.used.Load() < oldest.used.Load() {
				victim, oldest = k, e
			}
		}
		if total <= c.budget || oldest == nil {
			return
		}
		delete(c.entries, victim)
	}
}

// bytes returns the cache's approximate size.
func (c *vecCache) bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var total int64
	for _, e := range c.entries {
		total += e.size.Load()
	}
	return total
}

// cachedRow is one row as the cache holds it.
type cachedRow struct {
	rid     int64
	vec     []float32 // never written once cached: hits may share it
	expires int64
	mem     store.Memory
	code    rowCode
}

// rowCode is a row's code as an add's near-duplicate check computed it,
// around the rotated mean rmean: the cache takes it instead of encoding
// the row again while its scope's mean is still that one.
type rowCode struct {
	code  []uint64 // nil: none
	rmean []float32
}

// of returns r's code if it was taken around rmean, else nil.
func (r rowCode) of(rmean []float32) []uint64 {
	if r.code == nil || len(r.rmean) != len(rmean) || unsafe.SliceData(r.rmean) != unsafe.SliceData(rmean) {
		return nil
	}
	return r.code
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

// delta is what one write transaction did to one scope.
type delta struct {
	upserts []cachedRow
	removed []int64
}

// scopeVecs holds one scope's live and expired rows in slots. A slot keeps
// its row until the row is removed; freed slots are reused. Besides each
// row's vector and memory it keeps:
//
//   - a binary code of the vector: one bit per dimension, set where the
//     vector exceeds the scope's mean vector (centring makes the bits
//     informative for embeddings, which share a large common component).
//     Hamming distances between codes pick the candidates that an exact
//     dot product then ranks.
//   - a full-text index: per term, the slots holding it with their term
//     frequencies, for BM25 ranking.
//
// Readers hold mu.RLock while scanning; writers change it under mu.Lock.
// A row's vector slice is never written after it is cached, so a search
// may keep it after unlocking.
type scopeVecs struct {
	mu      sync.RWMutex
	version int64 // the scope_versions value it reflects; -1: never loaded
	// checked is the versionGate's data version at which version was
	// last found current; -1: never.
	checked int64
	dims    int
	words   int // uint64 words of a code

	rids    []int64 // 0: free slot
	vecs    [][]float32
	codes   []uint64 // words per slot
	prefix  []uint64 // the first prefixWords() words of each code, packed
	expires []int64  // unix nanoseconds; 0: never
	mems    []store.Memory
	gens    []uint16 // bumped when a slot is reused, to spot stale postings
	lens    []uint32 // tokens per row
	free    []int32
	index   map[int64]int32 // rid -> slot
	live    int
	// expiring counts the live rows with an expiry: with none, the pass
	// over every row's code prefix need not read expires.
	expiring int
	text     int64 // bytes of the live rows' ids, contents and metadata

	mean  []float32 // the centre the codes are taken around
	rmean []float32 // its rotation (rotate), from which codes are taken
	meanN int       // live rows when mean was computed
	// recentring is set while a goroutine recomputes the mean and the
	// codes (recentre); installs counts installs, so that it can tell
	// the entry it started from from one loaded again since.
	recentring bool
	installs   int64

	terms   map[string]*postings
	tokens  int64  // tokens of live rows
	maxLen  uint32 // the most tokens a row has had (not lowered when it goes)
	stale   int    // postings of freed slots not yet compacted away
	posts   int    // postings, stale included
	tk      tokenizer
	touched []*postings // scratch for indexText under mu.Lock
	buf     []float32   // scratch for simhash.Encode under mu.Lock

	size atomic.Int64 // approximate bytes, for the cache budget
	used atomic.Int64 // the cache clock at last use
}

// postings lists the slots holding one term.
type postings struct {
	df   int // live rows holding the term
	list []posting
	// The most occurrences in a row and the fewest tokens of a row
	// among the postings ever listed (not raised when rows go): what
	// bounds the score the term can give a row (scoreText).
	maxTF uint16
	minLn uint32
	// unsorted is set once a posting was listed after one of a higher
	// slot (a freed slot taken again): until then the list is in slot
	// order, one posting a slot, and can be searched (scoreText).
	unsorted bool
	// skip holds the slot of every skipEvery-th posting of a list in
	// slot order (list[i*skipEvery].slot at i), so that a search for a
	// slot reads this short array and then one block of postings
	// (seek). Not kept up while unsorted.
	skip []int32
}

// skipEvery is how many postings of a list one entry of its skip array
// stands for: a block of them is 192 bytes.
const skipEvery = 16

// seek returns the index in p.list, which is in slot order, of the
// first posting of slot or above, whether it is slot's, and the block of
// skipEvery postings it is in or follows. Only the skip array is
// searched, from block from on (the slots a search seeks come in
// order), galloping; then the one block that can hold the slot is read
// through. The search for the next slot starts from the block returned,
// which comes from the skip array alone: it does not wait for this
// block's postings to arrive from memory, and a few blocks are read at
// once.
func (p *postings) seek(from int, slot int32) (i int, found bool, block int) {
	list, skip := p.list, p.skip
	// b ends as the last block, from from on, that starts at or below
	// slot (or from).
	b := from
	hi, step := b+1, 1
	for hi < len(skip) && skip[hi] <= slot {
		b = hi
		hi += step
		step *= 2
	}
	hi = min(hi, len(skip))
	for hi-b > 1 {
		m := int(uint(b+hi) >> 1)
		if skip[m] <= slot {
			b = m
		} else {
			hi = m
		}
	}
	// The next block, if any, starts above slot: the answer is in this
	// one or is the next block's first posting.
	i, end := b*skipEvery, min(len(list), (b+1)*skipEvery)
	for i < end && list[i].slot < slot {
		i++
	}
	return i, i < len(list) && list[i].slot == slot, b
}

// reskip rebuilds p's skip array from its list, in slot order.
func (p *postings) reskip() {
	p.skip = p.skip[:0]
	for i := 0; i < len(p.list); i += skipEvery {
		p.skip = append(p.skip, p.list[i].slot)
	}
}

// posting is one row holding a term: valid while gens[slot] == gen (a
// slot's generation changes when its row is removed and when the slot is
// reused). It carries its row's length, for BM25, so that scoring reads
// nothing else of the row.
type posting struct {
	slot int32
	gen  uint16
	tf   uint16
	ln   uint32 // tokens of the row
}

// current reports whether x's row still holds its slot: removing a row
// (which frees its slot) and reusing a slot both change the slot's
// generation.
func (e *scopeVecs) current(x posting) bool { return e.gens[x.slot] == x.gen }

func newScopeVecs() *scopeVecs {
	return &scopeVecs{version: -1, checked: -1, index: map[int64]int32{}, terms: map[string]*postings{}}
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
	e.installs++
	e.version, e.dims, e.words = v, dims, simhash.Bits(dims)/64
	e.buf = make([]float32, simhash.Bits(dims))
	e.index, e.terms, e.free, e.live, e.expiring = make(map[int64]int32, len(rows)), map[string]*postings{}, nil, 0, 0
	e.tokens, e.stale, e.posts, e.text, e.maxLen = 0, 0, 0, 0, 0
	e.rids = make([]int64, 0, len(rows))
	e.vecs = make([][]float32, 0, len(rows))
	e.codes = make([]uint64, 0, len(rows)*e.words)
	e.prefix = make([]uint64, 0, len(rows)*e.prefixWords())
	e.expires = make([]int64, 0, len(rows))
	e.mems = make([]store.Memory, 0, len(rows))
	e.gens = make([]uint16, 0, len(rows))
	e.lens = make([]uint32, 0, len(rows))
	e.mean, e.rmean, e.meanN = simhash.Centre(dims, func(yield func([]float32) bool) {
		for _, r := range rows {
			if len(r.vec) == dims && !yield(r.vec) {
				return
			}
		}
	})
	for _, r := range rows {
		e.add(r)
	}
	e.resize()
}

// resize recomputes the entry's approximate size.
func (e *scopeVecs) resize() {
	n := int64(len(e.rids))
	b := n*int64(4*e.dims+8*e.words+8+8+2+4+200) + e.text
	b += int64(e.posts)*8 + int64(len(e.terms))*80
	e.size.Store(b)
}

// textBytes is what m adds to an entry's size besides its slot.
func textBytes(m *store.Memory) int64 {
	return int64(len(m.Content) + len(m.Metadata) + len(m.ID))
}

// add stores r in a free slot.
func (e *scopeVecs) add(r cachedRow) {
	var slot int32
	if n := len(e.free); n > 0 {
		slot = e.free[n-1]
		e.free = e.free[:n-1]
		e.rids[slot], e.vecs[slot], e.expires[slot], e.mems[slot] = r.rid, r.vec, r.expires, r.mem
		e.gens[slot]++
	} else {
		slot = int32(len(e.rids))
		e.rids = append(e.rids, r.rid)
		e.vecs = append(e.vecs, r.vec)
		e.codes = append(e.codes, make([]uint64, e.words)...)
		e.prefix = append(e.prefix, make([]uint64, e.prefixWords())...)
		e.expires = append(e.expires, r.expires)
		e.mems = append(e.mems, r.mem)
		e.gens = append(e.gens, 0)
		e.lens = append(e.lens, 0)
	}
	e.index[r.rid] = slot
	e.live++
	if r.expires != 0 {
		e.expiring++
	}
	e.text += textBytes(&r.mem)
	if code := r.code.of(e.rmean); len(code) == e.words {
		// Centre makes a new rmean for every new mean: the same slice
		// is the same mean.
		copy(e.codes[int(slot)*e.words:(int(slot)+1)*e.words], code)
		e.copyPrefix(int(slot))
	} else {
		e.setCode(int(slot), r.vec)
	}
	e.indexText(slot, r.mem.Content)
}

// remove frees the slot of rid, if it holds one.
func (e *scopeVecs) remove(rid int64) {
	slot, ok := e.index[rid]
	if !ok {
		return
	}
	delete(e.index, rid)
	e.tk.terms(e.mems[slot].Content, func(t []byte, tf int) {
		if p := e.terms[string(t)]; p != nil {
			p.df--
			e.stale++
		}
	})
	e.tokens -= int64(e.lens[slot])
	e.text -= textBytes(&e.mems[slot])
	if e.expires[slot] != 0 {
		e.expiring--
	}
	e.rids[slot], e.vecs[slot], e.expires[slot], e.mems[slot], e.lens[slot] = 0, nil, 0, store.Memory{}, 0
	e.gens[slot]++ // its postings are stale from now on
	e.free = append(e.free, slot)
	e.live--
}

// indexText adds the terms of content, held by slot, to the text index.
func (e *scopeVecs) indexText(slot int32, content string) {
	n := 0
	e.touched = e.touched[:0]
	e.tk.terms(content, func(t []byte, tf int) {
		p := e.terms[string(t)]
		if p == nil {
			p = &postings{}
			e.terms[string(t)] = p
		}
		p.df++
		if n := len(p.list); n > 0 && p.list[n-1].slot >= slot {
			p.unsorted, p.skip = true, nil
		}
		if !p.unsorted && len(p.list)%skipEvery == 0 {
			p.skip = append(p.skip, slot)
		}
		p.list = append(p.list, posting{slot: slot, gen: e.gens[slot], tf: uint16(min(tf, math.MaxUint16))})
		e.touched = append(e.touched, p)
		e.posts++
		n += tf
	})
	for _, p := range e.touched {
		x := &p.list[len(p.list)-1]
		x.ln = uint32(n)
		if x.tf > p.maxTF {
			p.maxTF = x.tf
		}
		if p.minLn == 0 || x.ln < p.minLn {
			p.minLn = x.ln
		}
	}
	e.lens[slot] = uint32(n)
	e.maxLen = max(e.maxLen, uint32(n))
	e.tokens += int64(n)
}

// compact drops stale postings once they outnumber the live ones.
func (e *scopeVecs) compact() {
	if e.stale < 1024 || e.stale < e.posts-e.stale {
		return
	}
	for t, p := range e.terms {
		p.list = slices.DeleteFunc(p.list, func(x posting) bool { return !e.current(x) })
		if len(p.list) == 0 {
			delete(e.terms, t)
		}
		if p.unsorted {
			// Only current postings are left, one a slot.
			slices.SortFunc(p.list, func(a, b posting) int { return cmp.Compare(a.slot, b.slot) })
			p.unsorted = false
		}
		p.reskip()
	}
	e.posts -= e.stale
	e.stale = 0
}

// recentre recomputes the mean and every code once the live rows have
// doubled since the mean was taken, so that an entry grown one add at a
// time is centred like one loaded whole. Amortized, it costs O(dims) per
// add, but all at once: about 12 µs a row, 100 ms at 8,000 rows, which
// the add that crossed the line would wait for under the entry's lock,
// and every search of the scope with it. So the work runs on a goroutine
// of its own, from a copy of the rows' vectors (which are never written
// once cached); the codes are swapped in when it is done. Until then the
// old codes still pick candidates, which are re-ranked exactly as ever.
// The caller holds e.mu for writing.
func (e *scopeVecs) recentre() {
	if e.recentring || e.live < 64 || e.live < 2*e.meanN {
		return
	}
	e.recentring = true
	go e.recentreFrom(recentreSnapshot{
		installs: e.installs, dims: e.dims, words: e.words,
		vecs: slices.Clone(e.vecs), rids: slices.Clone(e.rids), gens: slices.Clone(e.gens),
	})
}

// recentreSnapshot is what recentreFrom works from: the entry's slots when
// recentre started.
type recentreSnapshot struct {
	installs    int64
	dims, words int
	vecs        [][]float32
	rids        []int64
	gens        []uint16
}

// recentreFrom computes the mean of snap's rows and their codes around it
// without holding e.mu, then installs both. A slot whose row has changed
// since the snapshot is coded again under the lock; an entry loaded again
// meanwhile has a mean of its own and is left alone.
func (e *scopeVecs) recentreFrom(snap recentreSnapshot) {
	mean, rmean, n := simhash.Centre(snap.dims, func(yield func([]float32) bool) {
		for slot, v := range snap.vecs {
			if snap.rids[slot] != 0 && !yield(v) {
				return
			}
		}
	})
	codes := make([]uint64, len(snap.vecs)*snap.words)
	if n > 0 {
		buf := make([]float32, simhash.Bits(snap.dims))
		for slot, v := range snap.vecs {
			if snap.rids[slot] != 0 {
				simhash.Encode(v, rmean, codes[slot*snap.words:(slot+1)*snap.words], buf)
			}
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.recentring = false
	if n == 0 || e.installs != snap.installs {
		return
	}
	e.mean, e.rmean, e.meanN = mean, rmean, n
	w := e.words
	for slot, rid := range e.rids {
		switch {
		case rid == 0:
		case slot < len(snap.rids) && rid == snap.rids[slot] && e.gens[slot] == snap.gens[slot]:
			copy(e.codes[slot*w:(slot+1)*w], codes[slot*w:(slot+1)*w])
			e.copyPrefix(slot)
		default:
			e.setCode(slot, e.vecs[slot])
		}
	}
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
	e.patch(v, d.removed, d.upserts)
}

// patch frees the slots of removed, puts each of upserts in place of the
// row it replaces, if any, and labels the entry v. The caller holds
// e.mu for writing.
func (e *scopeVecs) patch(v int64, removed []int64, upserts []cachedRow) {
	for _, rid := range removed {
		e.remove(rid)
	}
	for _, r := range upserts {
		e.remove(r.rid)
		e.add(r)
	}
	e.recentre()
	e.compact()
	e.version = v
	e.resize()
}

// catchUp brings the entry from version from to v with rows, every row
// of its scope written after from (their changed column), when it still
// reflects from: the caller checked that no row left the scope after from
// (the scope's reset), so rows written are all there is to apply. It
// reports false, changing nothing, when the entry is elsewhere by then.
//
// A row's changed is at least the version of the transaction that wrote
// it, so rows written after from are among those read; rows read that the
// entry already holds (written at from or read past it) are replaced by
// the same. The entry is then labelled v though its rows may be newer:
// that only costs a later catch-up reading them again.
func (e *scopeVecs) catchUp(from, v int64, dims int, rows []cachedRow) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.version != from || e.dims != dims {
		return e.version >= v && e.dims == dims
	}
	e.patch(v, nil, rows)
	return true
}

// prefixWords returns the words of e's code prefixes.
func (e *scopeVecs) prefixWords() int { return min(simhash.PrefixWords, e.words) }

// setCode writes the code of v (and its prefix) for slot. The caller
// holds e.mu for writing.
func (e *scopeVecs) setCode(slot int, v []float32) {
	simhash.Encode(v, e.rmean, e.codes[slot*e.words:(slot+1)*e.words], e.buf)
	e.copyPrefix(slot)
}

// copyPrefix copies the prefix of slot's code into e.prefix.
func (e *scopeVecs) copyPrefix(slot int) {
	pw := e.prefixWords()
	copy(e.prefix[slot*pw:(slot+1)*pw], e.codes[slot*e.words:])
}

// scopeVersion reads the change counter of k and the version from which
// rows have left it (see catchUp); 0, 0 when the scope was never written.
func scopeVersion(ctx context.Context, q querier, k scopeKey) (v, reset int64, err error) {
	err = q.QueryRowContext(ctx, sqlScopeVersion, k.org, string(k.kind), k.id).Scan(&v, &reset)
	if err == sql.ErrNoRows {
		return 0, 0, nil
	}
	return v, reset, err
}

// loadRows reads the rows of k last written at a version after since
// (every row when since is negative).
func loadRows(ctx context.Context, q querier, k scopeKey, dims int, since int64) ([]cachedRow, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+memoryColsM+`, v.vector FROM memories m JOIN memory_vectors v ON v.rid = m.rid
		WHERE m.org_id = ? AND m.scope_kind = ? AND m.scope_id = ? AND m.changed > ?`, k.org, string(k.kind), k.id, since)
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

// refresh brings e to version v of k, whose rows left it last at version
// reset, reading through q: only the rows written since e's version when
// no row left the scope since (catchUp), else every row. Installing goes
// through replace, or force when q is a write transaction (which knows v
// is the latest).
func refresh(ctx context.Context, q querier, e *scopeVecs, k scopeKey, dims int, v, reset int64, force bool) error {
	e.mu.RLock()
	from, fromDims := e.version, e.dims
	e.mu.RUnlock()
	if from >= 0 && fromDims == dims && reset <= from && from < v {
		rows, err := loadRows(ctx, q, k, dims, from)
		if err != nil {
			return err
		}
		if e.catchUp(from, v, dims, rows) {
			return nil
		}
	}
	rows, err := loadRows(ctx, q, k, dims, -1)
	if err != nil {
		return err
	}
	if force {
		e.force(v, dims, rows)
	} else {
		e.replace(v, dims, rows)
	}
	return nil
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

// dot is the dot product of two equal-length vectors (store.Dot32).
func dot(a, b []float32) float32 { return store.Dot32(a, b) }

// dupCandidates is how many rows, nearest by code, the near-duplicate
// check of an add compares exactly in a scope too large to scan whole. A
// near-duplicate (similarity 0.97 or more) differs from the new vector in
// a few percent of the code's bits, so it ranks among the nearest few
// codes unless the scope holds dozens of rows as close.
const dupCandidates = 64

// dupExact is the largest scope the near-duplicate check scans whole.
const dupExact = 256

// nearest returns the slots of e's live rows (unexpired at now) worth
// comparing exactly with vec: all of them in a small scope, else the
// dupCandidates whose codes are nearest vec's. It works in sc, whose
// buffers the slots returned are, and the caller holds e.mu. When it
// encodes vec and code is not nil, it leaves vec's code there.
func (e *scopeVecs) nearest(vec []float32, now int64, c int, sc *scratch, code *rowCode) []int32 {
	out := sc.sel[:0]
	if e.live <= max(c, dupExact) || len(vec) != e.dims {
		for slot, rid := range e.rids {
			if rid != 0 && (e.expires[slot] == 0 || e.expires[slot] > now) && len(e.vecs[slot]) == len(vec) {
				out = append(out, int32(slot))
			}
		}
		sc.sel = out
		return out
	}
	// The code prefixes pick PrefixOver x c rows, whose whole codes then
	// pick c, as a search's vector half does.
	pw, w := e.prefixWords(), e.words
	sc.rot = slices.Grow(sc.rot[:0], simhash.Bits(e.dims))[:simhash.Bits(e.dims)]
	sc.code = slices.Grow(sc.code[:0], w)[:w]
	simhash.Encode(vec, e.rmean, sc.code, sc.rot)
	sc.rot = sc.rot[:0] // not the rotation of a search's query
	if code != nil {
		*code = rowCode{code: slices.Clone(sc.code), rmean: e.rmean}
	}
	sc.dist = slices.Grow(sc.dist[:0], len(e.rids))[:len(e.rids)]
	sc.hist = slices.Grow(sc.hist[:0], 64*w+2)[:64*w+2]
	clear(sc.hist)
	prefixDistances(e, sc.code[:pw], filter{now: now}, sc.dist, sc.hist[:64*pw+2])
	if pw == w {
		sc.sel = simhash.Nearest(sc.dist, sc.hist, c, out)
		return sc.sel
	}
	sc.pick = simhash.Nearest(sc.dist, sc.hist, simhash.PrefixOver*c, sc.pick[:0])
	sc.sel = simhash.Refine(sc.code, e.codes, sc.pick, c, sc.dist, sc.hist, out)
	return sc.sel
}
