package embed

import (
	"context"
	"crypto/sha256"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
)

// DefaultCacheSize is the number of vectors a [Cache] keeps when NewCache is
// given 0: about 12 MiB of 768-dimensional vectors.
const DefaultCacheSize = 4096

// cacheKey identifies one text embedded by one model.
type cacheKey struct {
	info Info
	sum  [sha256.Size]byte
}

// Cache is an [Embedder] that remembers the vectors of recent texts (least
// recently used ones are dropped first), so that a repeated query or an
// unchanged memory skips the model. Entries are keyed by the wrapped
// embedder's Info (provider, model, dimensions) and the SHA-256 of the
// text. Cache is safe for concurrent use.
//
// Embed returns fresh copies: callers may modify the vectors they get.
type Cache struct {
	next   Embedder
	lru    *lru.Cache[cacheKey, []float32]
	hits   atomic.Uint64
	misses atomic.Uint64
}

// CacheStats counts lookups since the cache was made. A text repeated
// within one call counts once.
type CacheStats struct {
	Hits   uint64 // texts answered from the cache
	Misses uint64 // texts passed on to the wrapped embedder
}

// NewCache returns a cache of size vectors in front of e. size <= 0 means
// [DefaultCacheSize].
func NewCache(e Embedder, size int) *Cache {
	if size <= 0 {
		size = DefaultCacheSize
	}
	c, err := lru.New[cacheKey, []float32](size)
	if err != nil {
		// lru.New fails only for a size <= 0, excluded above.
		panic(err)
	}
	return &Cache{next: e, lru: c}
}

// Info returns the wrapped embedder's Info.
func (c *Cache) Info() Info { return c.next.Info() }

// Stats returns the hit and miss counts.
func (c *Cache) Stats() CacheStats {
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load()}
}

// Embed answers each text from the cache when it can, and embeds the others
// with the wrapped embedder in one call, each distinct text once. Errors are
// the wrapped embedder's; nothing is cached from a failed call.
func (c *Cache) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if len(texts) == 0 {
		return [][]float32{}, nil
	}
	info := c.next.Info()
	out := make([][]float32, len(texts))
	var (
		missTexts []string
		missKeys  []cacheKey
		missAt    []int          // index in texts of each miss
		first     map[string]int // text -> index of its first occurrence
		dupOf     map[int]int    // index of a repeat -> index of the first occurrence
	)
	if len(texts) > 1 {
		first = make(map[string]int, len(texts))
	}
	for i, t := range texts {
		if first != nil {
			if f, ok := first[t]; ok {
				if dupOf == nil {
					dupOf = make(map[int]int)
				}
				dupOf[i] = f
				continue
			}
			first[t] = i
		}
		k := cacheKey{info: info, sum: sha256.Sum256([]byte(t))}
		if v, ok := c.lru.Get(k); ok {
			out[i] = clone(v)
			c.hits.Add(1)
			continue
		}
		missTexts = append(missTexts, t)
		missKeys = append(missKeys, k)
		missAt = append(missAt, i)
	}
	if len(missTexts) > 0 {
		c.misses.Add(uint64(len(missTexts)))
		vecs, err := c.next.Embed(ctx, missTexts)
		if err != nil {
			return nil, err
		}
		if len(vecs) != len(missTexts) {
			return nil, errCount(len(vecs), len(missTexts))
		}
		for j, v := range vecs {
			// The cache keeps the embedder's slice and hands out copies.
			c.lru.Add(missKeys[j], v)
			out[missAt[j]] = clone(v)
		}
	}
	for i, f := range dupOf {
		out[i] = clone(out[f])
	}
	return out, nil
}

func clone(v []float32) []float32 { return append([]float32(nil), v...) }
