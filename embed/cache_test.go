package embed_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/scopemem/scopemem/embed"
)

func TestCacheHitsAndMisses(t *testing.T) {
	type step struct {
		texts      []string
		wantUp     []string // texts the wrapped embedder must get; nil: no call
		wantHits   uint64   // cumulative
		wantMisses uint64   // cumulative
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "second call hits",
			steps: []step{
				{texts: []string{"a", "b"}, wantUp: []string{"a", "b"}, wantMisses: 2},
				{texts: []string{"b", "a"}, wantHits: 2, wantMisses: 2},
			},
		},
		{
			name: "only misses go upstream",
			steps: []step{
				{texts: []string{"a"}, wantUp: []string{"a"}, wantMisses: 1},
				{texts: []string{"x", "a", "y"}, wantUp: []string{"x", "y"}, wantHits: 1, wantMisses: 3},
			},
		},
		{
			name: "repeats within one call are embedded once",
			steps: []step{
				{texts: []string{"a", "b", "a", "a", "b"}, wantUp: []string{"a", "b"}, wantMisses: 2},
				{texts: []string{"a", "a"}, wantHits: 1, wantMisses: 2},
			},
		},
		{
			name: "texts differing in case are different texts",
			steps: []step{
				{texts: []string{"Hello", "hello"}, wantUp: []string{"Hello", "hello"}, wantMisses: 2},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder()
			c := embed.NewCache(rec, 0)
			for i, s := range tt.steps {
				before := len(rec.Calls())
				got, err := c.Embed(t.Context(), s.texts)
				if err != nil {
					t.Fatalf("step %d: Embed(%q) = %v", i, s.texts, err)
				}
				want, err := rec.inner.Embed(t.Context(), s.texts)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("step %d: vectors differ from the wrapped embedder's (-want +got):\n%s", i, diff)
				}
				calls := rec.Calls()[before:]
				switch {
				case s.wantUp == nil && len(calls) != 0:
					t.Errorf("step %d: wrapped embedder got %q, want no call", i, calls)
				case s.wantUp != nil && (len(calls) != 1 || !cmp.Equal(calls[0], s.wantUp)):
					t.Errorf("step %d: wrapped embedder got %q, want one call with %q", i, calls, s.wantUp)
				}
				if got, want := c.Stats(), (embed.CacheStats{Hits: s.wantHits, Misses: s.wantMisses}); got != want {
					t.Errorf("step %d: Stats() = %+v, want %+v", i, got, want)
				}
			}
		})
	}
}

func TestCacheReturnsCopies(t *testing.T) {
	c := embed.NewCache(newRecorder(), 0)
	first, err := c.Embed(t.Context(), []string{"a", "a"})
	if err != nil {
		t.Fatal(err)
	}
	want := append([]float32(nil), first[0]...)
	first[0][0] = 42 // a caller scribbling on its result
	first[1][1] = 42 // a repeat must not share the first one's slice
	if first[0][1] == 42 {
		t.Error("two results for a repeated text share one slice")
	}
	again, err := c.Embed(t.Context(), []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, again[0]); diff != "" {
		t.Errorf("cached vector changed after a caller modified its result (-want +got):\n%s", diff)
	}
}

func TestCacheKeyedByModel(t *testing.T) {
	rec := newRecorder()
	c := embed.NewCache(rec, 0)
	if _, err := c.Embed(t.Context(), []string{"a"}); err != nil {
		t.Fatal(err)
	}
	rec.setModel("lexical-v2")
	if _, err := c.Embed(t.Context(), []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Calls()); n != 2 {
		t.Errorf("wrapped embedder got %d calls, want 2: a vector of one model must not answer for another", n)
	}
	if got := c.Info(); got != rec.Info() {
		t.Errorf("Info() = %+v, want the wrapped embedder's %+v", got, rec.Info())
	}
}

func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	rec := newRecorder()
	c := embed.NewCache(rec, 2)
	for _, text := range []string{"a", "b", "a", "c", "a", "b"} {
		if _, err := c.Embed(t.Context(), []string{text}); err != nil {
			t.Fatal(err)
		}
	}
	// a, b miss; a hits; c misses and evicts b; a hits; b misses again.
	want := [][]string{{"a"}, {"b"}, {"c"}, {"b"}}
	if diff := cmp.Diff(want, rec.Calls()); diff != "" {
		t.Errorf("wrapped embedder calls (-want +got):\n%s", diff)
	}
}

func TestCacheDoesNotCacheFailures(t *testing.T) {
	rec := newRecorder()
	fail := true
	var mu sync.Mutex
	rec.fail = func([]string) error {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return embed.ErrUnavailable
		}
		return nil
	}
	c := embed.NewCache(rec, 0)
	if _, err := c.Embed(t.Context(), []string{"a"}); !errors.Is(err, embed.ErrUnavailable) {
		t.Fatalf("Embed() = %v, want %v", err, embed.ErrUnavailable)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	if _, err := c.Embed(t.Context(), []string{"a"}); err != nil {
		t.Fatalf("Embed() after recovery = %v", err)
	}
	if n := len(rec.Calls()); n != 2 {
		t.Errorf("wrapped embedder got %d calls, want 2", n)
	}
	if _, err := c.Embed(t.Context(), []string{""}); !errors.Is(err, embed.ErrInput) {
		t.Errorf("Embed(\"\") = %v, want %v", err, embed.ErrInput)
	}
}

func TestCacheWrongCountFromWrapped(t *testing.T) {
	c := embed.NewCache(shortEmbedder{}, 0)
	if _, err := c.Embed(t.Context(), []string{"a", "b"}); !errors.Is(err, embed.ErrBadVector) {
		t.Errorf("Embed() over an embedder that drops a vector = %v, want %v", err, embed.ErrBadVector)
	}
}

// shortEmbedder returns one vector too few.
type shortEmbedder struct{}

func (shortEmbedder) Info() embed.Info {
	return embed.Info{Provider: "test", Model: "short", Dimensions: 1}
}

func (shortEmbedder) Embed(_ context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts)-1)
	for i := range out {
		out[i] = []float32{1}
	}
	return out, nil
}

func TestCacheConcurrent(t *testing.T) {
	rec := newRecorder()
	c := embed.NewCache(rec, 16)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				ts := []string{texts("shared", 20)[i%20], texts("own", 100)[(i+g)%100]}
				vs, err := c.Embed(context.Background(), ts)
				if err != nil {
					t.Errorf("Embed() = %v", err)
					return
				}
				want, _ := rec.inner.Embed(context.Background(), ts)
				if !cmp.Equal(want, vs) {
					t.Errorf("Embed(%q) returned wrong vectors", ts)
					return
				}
			}
		})
	}
	wg.Wait()
	s := c.Stats()
	if s.Hits+s.Misses != 8*100*2 {
		t.Errorf("hits %d + misses %d = %d, want %d lookups", s.Hits, s.Misses, s.Hits+s.Misses, 8*100*2)
	}
}
