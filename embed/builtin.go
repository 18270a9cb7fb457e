package embed

import (
	"context"
	"math"
	"slices"
	"sync"
	"unicode"
	"unicode/utf8"
)

// DefaultBuiltinDimensions is the size of [Builtin] vectors when NewBuiltin
// is given 0. It is the size of nomic-embed-text's vectors, so a store costs
// the same space and search time whichever embedder made it, and it leaves
// enough buckets that hash collisions add little noise (about 1/sqrt(768),
// 0.04, to a cosine).
const DefaultBuiltinDimensions = 768

// Feature weights of the lexical-v1 model. Changing any of them, the
// tokenizer, the hash or the stop words changes every vector: that is a new
// model, with a new name.
const (
	weightWord     = 1.0
	weightStopWord = 0.25
	weightBigram   = 0.5
	weightTrigram  = 0.4
)

// Namespaces keep a word, a bigram and a character n-gram with the same
// bytes from hashing alike.
const (
	nsWord    = 'w'
	nsBigram  = 'b'
	nsTrigram = 'c'
)

// Builtin is a lexical embedder that needs nothing outside the binary. It is
// not a language model: it captures shared words and spellings, not meaning.
// "the deploy failed" and "deployment failures" come out close (shared
// character n-grams), but "car" and "automobile" do not. With it, search
// leans on the full-text half of hybrid search; use Ollama for semantic
// search.
//
// A text is lower-cased and split into words (runs of letters, digits and
// combining marks; everything else separates words). Its features are the
// words, the pairs of adjacent words, and the character 3-grams of each
// word with its boundaries marked. Each feature is hashed (64-bit FNV-1a
// with a fixed mix, so vectors are the same in every process, on every
// machine and in every version that keeps the model name "lexical-v1") into
// one of Dimensions buckets with a sign taken from the hash, weighted by
// 1+ln(count) and by its kind (common English stop words count less and give
// no n-grams), and the vector is scaled to unit length.
//
// The same text always gives the same vector; texts that differ only in case,
// punctuation or spacing give identical vectors; changing one word of a
// sentence keeps a high cosine. Builtin is safe for concurrent use.
type Builtin struct {
	dims int
	pool sync.Pool // of *featurizer
}

// NewBuiltin returns a lexical embedder with dims dimensions; dims <= 0 means
// [DefaultBuiltinDimensions]. A store records the dimension, so keep it fixed
// once vectors are stored.
func NewBuiltin(dims int) *Builtin {
	if dims <= 0 {
		dims = DefaultBuiltinDimensions
	}
	return &Builtin{dims: dims}
}

// Info returns provider "builtin", model "lexical-v1" and the dimension.
func (b *Builtin) Info() Info {
	return Info{Provider: "builtin", Model: "lexical-v1", Dimensions: b.dims}
}

// Embed returns one unit-length vector per text. Errors: ErrInput for an
// empty, blank or invalid UTF-8 text; the context's error when ctx is done.
func (b *Builtin) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if err := checkTexts(texts); err != nil {
		return nil, err
	}
	out := make([][]float32, len(texts))
	f, _ := b.pool.Get().(*featurizer)
	if f == nil {
		f = new(featurizer)
	}
	defer b.pool.Put(f)
	for i, t := range texts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out[i] = f.vector(t, b.dims)
	}
	return out, nil
}

// Feature kinds, kept in the low two bits of a feature's key.
const (
	kindWord = iota
	kindStopWord
	kindBigram
	kindTrigram
)

// kindWeight returns the weight of a feature kind.
func kindWeight(kind uint64) float64 {
	switch kind {
	case kindWord:
		return weightWord
	case kindStopWord:
		return weightStopWord
	case kindBigram:
		return weightBigram
	}
	return weightTrigram
}

// key packs a feature's hash and its kind.
func key(h uint64, kind uint64) uint64 { return h&^3 | kind }

// featurizer holds scratch space, reused across texts.
type featurizer struct {
	words []string
	keys  []uint64
	buf   []byte
	acc   []float64
}

// vector computes the embedding of one non-blank text.
func (f *featurizer) vector(text string, dims int) []float32 {
	f.tokenize(text)
	f.keys = f.keys[:0]
	prev := ""
	for _, w := range f.words {
		if isStopWord(w) {
			f.keys = append(f.keys, key(hashString(nsWord, w), kindStopWord))
		} else {
			f.keys = append(f.keys, key(hashString(nsWord, w), kindWord))
			f.trigrams(w)
		}
		if prev != "" {
			f.buf = append(append(append(f.buf[:0], prev...), ' '), w...)
			f.keys = append(f.keys, key(hashBytes(nsBigram, f.buf), kindBigram))
		}
		prev = w
	}
	// Sorting brings repeats of a feature together, to count them.
	slices.Sort(f.keys)

	if cap(f.acc) < dims {
		f.acc = make([]float64, dims)
	}
	acc := f.acc[:dims]
	clear(acc)
	for i := 0; i < len(f.keys); {
		k := f.keys[i]
		j := i + 1
		for j < len(f.keys) && f.keys[j] == k {
			j++
		}
		w := kindWeight(k & 3)
		if n := j - i; n > 1 {
			w *= 1 + math.Log(float64(n))
		}
		if k>>63 == 1 {
			w = -w
		}
		acc[(k>>2&0xffffffff)%uint64(dims)] += w
		i = j
	}

	var sum float64
	for _, x := range acc {
		sum += x * x
	}
	v := make([]float32, dims)
	if sum == 0 {
		// Features cancelled out exactly in their buckets (possible only
		// for a few features colliding with opposite signs, and very rare),
		// but a vector must never be zero: use a fixed unit vector.
		v[0] = 1
		return v
	}
	inv := 1 / math.Sqrt(sum)
	for i, x := range acc {
		v[i] = float32(x * inv)
	}
	return v
}

// span is a word's place in featurizer.buf.
type span struct{ from, to int }

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) }

// split appends to f.buf the lower-cased runs of runes of text for which in
// is true, and to sp their places in f.buf.
func (f *featurizer) split(sp []span, text string, in func(rune) bool) []span {
	start := -1
	for _, r := range text {
		if in(r) {
			if start < 0 {
				start = len(f.buf)
			}
			f.buf = utf8.AppendRune(f.buf, unicode.ToLower(r))
			continue
		}
		if start >= 0 {
			sp = append(sp, span{start, len(f.buf)})
			start = -1
		}
	}
	if start >= 0 {
		sp = append(sp, span{start, len(f.buf)})
	}
	return sp
}

// tokenize fills f.words with the lower-cased words of text. A text with no
// letters or digits (e.g. "?!") is split on white space instead, so that it
// still has features.
func (f *featurizer) tokenize(text string) {
	f.words = f.words[:0]
	f.buf = f.buf[:0]
	// Build all words in one buffer, then slice it: one allocation per text.
	var spans [64]span
	sp := f.split(spans[:0], text, isWordRune)
	if len(sp) == 0 {
		sp = f.split(sp, text, func(r rune) bool { return !unicode.IsSpace(r) })
	}
	all := string(f.buf)
	for _, s := range sp {
		f.words = append(f.words, all[s.from:s.to])
	}
}

// trigrams adds the character 3-grams of word, padded with boundary marks
// (so "go" gives "^go" and "go$").
func (f *featurizer) trigrams(word string) {
	// o holds the start of each rune of "^" + word + "$" (the marks are
	// one byte each) and the end of the last one. Very long "words" (hashes,
	// URLs) contribute their first 64 runes only.
	const maxRunes = 64
	var offs [maxRunes + 3]int
	o := append(offs[:0], 0)
	end := 1 + len(word)
	n := 0
	for i := range word {
		if n == maxRunes {
			end = 1 + i
			break
		}
		o = append(o, 1+i)
		n++
	}
	o = append(o, end, end+1)
	padded := func(from, to int) (h uint64) {
		h = fnvOffset
		h = fnvAdd(h, nsTrigram)
		for p := from; p < to; p++ {
			var c byte
			switch {
			case p == 0:
				c = '^'
			case p == end:
				c = '$'
			default:
				c = word[p-1]
			}
			h = fnvAdd(h, c)
		}
		return mix(h)
	}
	for i := 0; i+3 < len(o); i++ {
		f.keys = append(f.keys, key(padded(o[i], o[i+3]), kindTrigram))
	}
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvAdd(h uint64, c byte) uint64 { return (h ^ uint64(c)) * fnvPrime }

// mix is the 64-bit finalizer of MurmurHash3: it spreads FNV's bits so that
// both the bucket (low bits) and the sign (top bit) are well distributed.
func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

func hashString(ns byte, s string) uint64 {
	h := fnvAdd(fnvOffset, ns)
	for i := 0; i < len(s); i++ {
		h = fnvAdd(h, s[i])
	}
	return mix(h)
}

func hashBytes(ns byte, b []byte) uint64 {
	h := fnvAdd(fnvOffset, ns)
	for _, c := range b {
		h = fnvAdd(h, c)
	}
	return mix(h)
}

// isStopWord reports whether w is one of a fixed list of very common English
// words, which carry little meaning and would make unrelated texts look alike.
func isStopWord(w string) bool {
	switch w {
	case "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "he",
		"her", "his", "i", "if", "in", "into", "is", "it", "its", "me", "my", "no", "not", "of", "on",
		"or", "our", "she", "so", "that", "the", "their", "them", "then", "there", "these", "they",
		"this", "to", "was", "we", "were", "what", "when", "which", "who", "will", "with", "you", "your":
		return true
	}
	return false
}
