package embed

import (
	"context"
	"hash/fnv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
)

// DefaultFakeDimensions is the size of [Fake] vectors when FakeConfig.Dims is
// 0: the size of nomic-embed-text's vectors, so a load test stores and scans
// as much as a real deployment does.
const DefaultFakeDimensions = 768

// The shape of fake-v1 vectors. Changing any of these, the tokenizer or the
// hashing changes every vector: that is a new model, with a new name.
const (
	fakeTopics      = 128 // topic directions a word can pick
	fakeTopTopics   = 4   // topics that make up one text's direction
	fakeTopicWeight = 0.8 // share of the topic mix in a vector; the rest is noise
	fakeNoiseWeight = 0.6 // 0.8² + 0.6² = 1
	fakeTopicSeed   = 0x5eed_f00d_cafe_d00d
)

// FakeConfig configures [NewFake]. The zero value means 768 dimensions and no
// delay.
type FakeConfig struct {
	// Dims is the number of dimensions; default DefaultFakeDimensions.
	Dims int
	// Delay is slept once per Embed call, however many texts it carries, as
	// a model server answering one batched request would take; 0 answers at
	// once. It stands for the embedding cost, so that a load test can
	// measure the server without it (0) or with a model's latency (e.g.
	// 20ms) and see what micro-batching gains.
	Delay time.Duration
	// Parallel is how many calls the fake model server answers at once;
	// further calls queue for a slot, their context still bounding the
	// wait. 0 means no limit. 1 is how a model server with one worker (an
	// Ollama default) behaves: one-text-per-request embedding then runs at
	// 1/Delay texts a second, whatever the number of callers, while batched
	// requests carry many texts per Delay.
	Parallel int
}

// Fake is a deterministic stand-in for an embedding model, for load tests
// and benchmarks only: its vectors carry no meaning, so never use it for
// real data (a store it filled must be reindexed with a real embedder before
// its searches are worth anything).
//
// A vector looks like an embedding to the code that stores and searches it:
// unit length, dense, and the same for the same text in every process and
// every run (across CPU architectures, at most in the last bits). It is a mix of a few topic directions chosen by the
// text's words (fixed pseudo-random directions, one per hash bucket of a
// word; the fakeTopTopics most frequent buckets of a text make its topic
// mix), plus pseudo-random noise seeded by a hash of the whole text, in
// proportions 0.8 and 0.6. Texts sharing words are therefore closer than
// unrelated ones, while two different texts stay far below the cosine of
// 0.97 at which a store treats memories as near-duplicates (at most about
// 0.64, reached when their topic mixes are the same).
//
// Fake is safe for concurrent use. Its Info is provider "fake", model
// "fake-v1".
type Fake struct {
	dims  int
	delay time.Duration
	slots chan struct{} // nil: no limit on calls at once
	// topics holds the topic directions made so far: each is made when a
	// text first picks it, so that a server that has not embedded anything
	// yet (a stdio server waiting for its first call) has not paid for them.
	topics [fakeTopics]atomic.Pointer[[]float32]
	// mixes holds scratch vectors (*[]float32 of dims) for vector.
	mixes sync.Pool
}

// NewFake returns a fake embedder. A negative Dims, Delay or Parallel counts
// as 0 (the default dimension, no delay, no limit).
func NewFake(cfg FakeConfig) *Fake {
	if cfg.Dims <= 0 {
		cfg.Dims = DefaultFakeDimensions
	}
	if cfg.Delay < 0 {
		cfg.Delay = 0
	}
	f := &Fake{dims: cfg.Dims, delay: cfg.Delay}
	f.mixes.New = func() any { v := make([]float32, f.dims); return &v }
	if cfg.Parallel > 0 {
		f.slots = make(chan struct{}, cfg.Parallel)
	}
	return f
}

// topic returns topic direction k, a unit vector, making it on first use.
// Two callers racing on a new topic both make it, with the same values; one
// of the two is kept.
func (f *Fake) topic(k int) []float32 {
	if t := f.topics[k].Load(); t != nil {
		return *t
	}
	v := make([]float32, f.dims)
	fillNoise(v, fakeTopicSeed+uint64(k))
	_ = normalize(v) // a non-zero vector: fillNoise never yields all zeros in practice
	f.topics[k].CompareAndSwap(nil, &v)
	return *f.topics[k].Load()
}

// Info returns provider "fake", model "fake-v1" and the dimension.
func (f *Fake) Info() Info {
	return Info{Provider: "fake", Model: "fake-v1", Dimensions: f.dims}
}

// Embed waits for a free slot when Parallel is set, sleeps the configured
// delay once, then returns one unit-length
// vector per text. Errors: ErrInput for an empty, blank or invalid UTF-8
// text; the context's error when ctx ends first.
func (f *Fake) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if err := checkTexts(texts); err != nil {
		return nil, err
	}
	if f.slots != nil {
		select {
		case f.slots <- struct{}{}:
			defer func() { <-f.slots }()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.delay > 0 {
		t := time.NewTimer(f.delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	} else if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([][]float32, len(texts))
	for i, t := range texts {
		out[i] = f.vector(t)
	}
	return out, nil
}

// vector computes the fake embedding of one non-blank text.
func (f *Fake) vector(text string) []float32 {
	var counts [fakeTopics]int
	words := 0
	for w := range strings.FieldsFuncSeq(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	}) {
		counts[fakeHash(w)%fakeTopics]++
		words++
	}
	if words == 0 {
		// Only punctuation or symbols: the whole text picks one topic.
		counts[fakeHash(text)%fakeTopics]++
	}
	v := make([]float32, f.dims)
	fillNoise(v, fakeHash(text))
	_ = normalize(v)
	for i := range v {
		v[i] *= fakeNoiseWeight
	}
	// The fakeTopTopics most frequent topics, weighted by their counts;
	// ties go to the lower topic number, so the choice is deterministic.
	mixp := f.mixes.Get().(*[]float32)
	defer f.mixes.Put(mixp)
	mix := *mixp
	clear(mix)
	for range fakeTopTopics {
		best := -1
		for k, c := range counts {
			if c > 0 && (best < 0 || c > counts[best]) {
				best = k
			}
		}
		if best < 0 {
			break
		}
		w := float32(counts[best])
		for i, x := range f.topic(best) {
			mix[i] += float32(w * x) // rounded: no fused multiply-add, same bits on every CPU
		}
		counts[best] = 0
	}
	_ = normalize(mix)
	for i := range v {
		v[i] += float32(fakeTopicWeight * mix[i])
	}
	_ = normalize(v)
	return v
}

// fakeHash is 64-bit FNV-1a, the same in every process and version.
func fakeHash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// fillNoise fills v with pseudo-random values in [-1, 1) from a splitmix64
// sequence seeded by seed.
func fillNoise(v []float32, seed uint64) {
	s := seed
	for i := range v {
		s += 0x9e3779b97f4a7c15
		z := s
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		// The top 24 bits as a float in [0, 1), mapped to [-1, 1). They
		// fit an int32, whose conversion is one instruction (a uint64's
		// is several).
		v[i] = float32(int32(z>>40))/float32(1<<24)*2 - 1
	}
}
