package embed_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/scopemem/scopemem/embed"
)

func embedOne(t testing.TB, e embed.Embedder, text string) []float32 {
	t.Helper()
	v, err := e.Embed(context.Background(), []string{text})
	if err != nil {
		t.Fatalf("Embed(%q) = %v", text, err)
	}
	return v[0]
}

func TestBuiltinInfo(t *testing.T) {
	tests := []struct {
		dims int
		want embed.Info
	}{
		{0, embed.Info{Provider: "builtin", Model: "lexical-v1", Dimensions: 768}},
		{-5, embed.Info{Provider: "builtin", Model: "lexical-v1", Dimensions: 768}},
		{256, embed.Info{Provider: "builtin", Model: "lexical-v1", Dimensions: 256}},
	}
	for _, tt := range tests {
		b := embed.NewBuiltin(tt.dims)
		if got := b.Info(); got != tt.want {
			t.Errorf("NewBuiltin(%d).Info() = %+v, want %+v", tt.dims, got, tt.want)
		}
		if v := embedOne(t, b, "hello world"); len(v) != tt.want.Dimensions {
			t.Errorf("NewBuiltin(%d) vector has %d dimensions, want %d", tt.dims, len(v), tt.want.Dimensions)
		}
	}
}

func TestBuiltinDeterministic(t *testing.T) {
	const text = "The API team deploys on Fridays, never on Mondays."
	a := embedOne(t, embed.NewBuiltin(0), text)
	b := embedOne(t, embed.NewBuiltin(0), text)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("two embedders gave different vectors for %q (-first +second):\n%s", text, diff)
	}
	// The same text inside a batch, among others, gives the same vector.
	vs, err := embed.NewBuiltin(0).Embed(t.Context(), []string{"something else", text, "and more"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, vs[1]); diff != "" {
		t.Errorf("vector in a batch differs from the one alone (-alone +batch):\n%s", diff)
	}
}

// TestBuiltinGolden pins the vector of one text, so that any change to the
// tokenizer, the hash or the weights (which would make stored vectors
// incomparable with new ones) is caught: such a change needs a new model
// name.
func TestBuiltinGolden(t *testing.T) {
	// Repeated words exercise the sublinear term frequency.
	v := embedOne(t, embed.NewBuiltin(0), "Alice prefers dark mode; Alice likes dark themes.")
	type entry struct {
		i int
		x float64
	}
	want := []entry{
		{3, 0.227801}, {33, -0.154280}, {45, -0.091120}, {74, 0.154280}, {100, 0.091120}, {121, 0.154280},
		{128, 0.385701}, {149, 0.113901}, {189, 0.113901}, {203, -0.113901}, {217, -0.091120}, {230, 0.227801},
	}
	var got []entry
	nonzero := 0
	for i, x := range v {
		if x != 0 {
			nonzero++
			if len(got) < len(want) {
				got = append(got, entry{i, math.Round(float64(x)*1e6) / 1e6})
			}
		}
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(entry{})); diff != "" {
		t.Errorf("first non-zero entries changed (-want +got):\n%s", diff)
	}
	if nonzero != 43 {
		t.Errorf("vector has %d non-zero entries, want 43", nonzero)
	}
}

func TestBuiltinUnitLength(t *testing.T) {
	b := embed.NewBuiltin(0)
	for _, text := range []string{
		"a", "?!", "x y z", strings.Repeat("long text with many repeated words ", 200),
		"Zürich naïve café — 東京 タワー", "sha256:" + strings.Repeat("0123456789abcdef", 16),
	} {
		v := embedOne(t, b, text)
		if n := norm(v); math.Abs(n-1) > 1e-5 {
			t.Errorf("norm of vector for %.20q = %v, want 1", text, n)
		}
	}
}

func TestBuiltinSimilarity(t *testing.T) {
	tests := []struct {
		name     string
		a, b     string
		min, max float64
	}{
		{"case", "The API team deploys on Fridays.", "THE API TEAM DEPLOYS ON FRIDAYS.", 0.999, 1.001},
		{"punctuation", "The API team deploys on Fridays.", "the API team: deploys -- on Fridays!", 0.999, 1.001},
		{"spacing", "Alice prefers dark mode.", "  Alice   prefers\tdark\nmode ", 0.999, 1.001},
		{"case and punctuation", "Use OAuth2 for every API.", "use oauth2, for every api", 0.9, 1.001},
		{"one word changed", "Alice prefers dark mode in her editor.", "Alice prefers light mode in her editor.", 0.7, 0.99},
		{"one word changed, long", "All public APIs must use OAuth2 with short-lived tokens and rotate signing keys every 90 days.",
			"All public APIs must use OAuth2 with short-lived tokens and rotate signing keys every 30 days.", 0.85, 0.99},
		{"inflection", "the deployment failed", "deployments failing", 0.3, 0.9},
		{"unrelated", "The API team deploys on Fridays.", "Alice prefers dark mode in her editor.", -0.3, 0.3},
		{"unrelated 2", "The database is backed up every night at 2am.", "My favourite programming language is Go.", -0.3, 0.3},
		{"unrelated 3", "The quick brown fox jumps over the lazy dog.", "Stock prices fell sharply after the earnings report.", -0.3, 0.3},
		{"unrelated 4", "the user wants responses in French", "remember to rotate the signing keys every 90 days", -0.3, 0.3},
		{"unrelated 5", "Use PostgreSQL for production and SQLite for local development.",
			"The meeting with the design team was moved to Thursday afternoon.", -0.3, 0.3},
		{"punctuation-only texts differ", "?!", "...", -0.3, 0.3},
	}
	b := embed.NewBuiltin(0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cosine(embedOne(t, b, tt.a), embedOne(t, b, tt.b))
			if c < tt.min || c > tt.max {
				t.Errorf("cosine(%q, %q) = %.3f, want in [%.2f, %.2f]", tt.a, tt.b, c, tt.min, tt.max)
			}
		})
	}
}

func TestBuiltinErrors(t *testing.T) {
	b := embed.NewBuiltin(0)
	tests := []struct {
		name  string
		ctx   func() context.Context
		texts []string
		want  error
	}{
		{"empty", context.Background, []string{""}, embed.ErrInput},
		{"blank among good", context.Background, []string{"ok", "   "}, embed.ErrInput},
		{"invalid UTF-8", context.Background, []string{"\xc3\x28"}, embed.ErrInput},
		{"cancelled", func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, []string{"ok"}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := b.Embed(tt.ctx(), tt.texts)
			if !errors.Is(err, tt.want) {
				t.Errorf("Embed(%q) = %v, %v; want %v", tt.texts, v, err, tt.want)
			}
		})
	}
}

func TestBuiltinConcurrent(t *testing.T) {
	b := embed.NewBuiltin(0)
	want := embedOne(t, b, "shared text for every goroutine")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				v, err := b.Embed(context.Background(), []string{"shared text for every goroutine"})
				if err != nil {
					t.Errorf("Embed() = %v", err)
					return
				}
				if !cmp.Equal(v[0], want) {
					t.Errorf("concurrent Embed gave a different vector")
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkBuiltin embeds one 200-character text.
func BenchmarkBuiltin(b *testing.B) {
	text := "The platform team deploys the public API on Fridays after the integration suite passes; " +
		"rollbacks need approval from the on-call engineer, and every release note goes to the #releases channel on Slack."
	text = text[:200]
	b.SetBytes(int64(len(text)))
	e := embed.NewBuiltin(0)
	ctx := context.Background()
	texts := []string{text}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Embed(ctx, texts); err != nil {
			b.Fatal(err)
		}
	}
}
