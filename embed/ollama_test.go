package embed_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/scopemem/scopemem/embed"
	"github.com/scopemem/scopemem/embed/ollamatest"
)

// fastRetries keeps retry tests quick.
func fastRetries(cfg embed.OllamaConfig) embed.OllamaConfig {
	cfg.RetryBackoff = time.Millisecond
	cfg.MaxRetryBackoff = 5 * time.Millisecond
	return cfg
}

func newOllama(t *testing.T, cfg embed.OllamaConfig) *embed.Ollama {
	t.Helper()
	o, err := embed.NewOllama(cfg)
	if err != nil {
		t.Fatalf("NewOllama(%+v) = %v", cfg, err)
	}
	return o
}

func cosine(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func norm(v []float32) float64 {
	return math.Sqrt(cosine(v, v))
}

func TestOllamaEmbed(t *testing.T) {
	srv := ollamatest.NewServer(t, ollamatest.Config{Dims: 384, Model: "nomic-embed-text"})
	o := newOllama(t, embed.OllamaConfig{Host: srv.URL})
	if got, want := o.Info(), (embed.Info{Provider: "ollama", Model: "nomic-embed-text"}); got != want {
		t.Errorf("Info() before any call = %+v, want %+v", got, want)
	}
	texts := []string{"alpha", "beta", "alpha", "gamma delta"}
	vecs, err := o.Embed(t.Context(), texts)
	if err != nil {
		t.Fatalf("Embed(%q) = %v", texts, err)
	}
	if len(vecs) != len(texts) {
		t.Fatalf("Embed returned %d vectors for %d texts", len(vecs), len(texts))
	}
	for i, v := range vecs {
		if len(v) != 384 {
			t.Errorf("vector %d has %d dimensions, want 384", i, len(v))
		}
		if n := norm(v); math.Abs(n-1) > 1e-5 {
			t.Errorf("vector %d has norm %v, want 1", i, n)
		}
		if c := cosine(v, ollamatest.Vector(texts[i], 384)); c < 0.9999 {
			t.Errorf("vector %d (%q) has cosine %v with the server's vector for it, want 1", i, texts[i], c)
		}
	}
	if got, want := o.Info(), (embed.Info{Provider: "ollama", Model: "nomic-embed-text", Dimensions: 384}); got != want {
		t.Errorf("Info() after a call = %+v, want %+v", got, want)
	}
	empty, err := o.Embed(t.Context(), nil)
	if err != nil || len(empty) != 0 {
		t.Errorf("Embed(nil) = %v, %v; want no vectors and no error", empty, err)
	}
}

func TestOllamaProbe(t *testing.T) {
	srv := ollamatest.NewServer(t, ollamatest.Config{Dims: 1024})
	o := newOllama(t, embed.OllamaConfig{Host: srv.URL, Model: "mxbai-embed-large"})
	info, err := o.Probe(t.Context())
	if err != nil {
		t.Fatalf("Probe() = %v", err)
	}
	want := embed.Info{Provider: "ollama", Model: "mxbai-embed-large", Dimensions: 1024}
	if info != want {
		t.Errorf("Probe() = %+v, want %+v", info, want)
	}
	if srv.Requests() != 1 || srv.Inputs() != 1 {
		t.Errorf("Probe sent %d requests with %d texts, want 1 and 1", srv.Requests(), srv.Inputs())
	}
}

func TestOllamaHostFromEnvironment(t *testing.T) {
	srv := ollamatest.NewServer(t, ollamatest.Config{Dims: 8})
	t.Setenv("OLLAMA_HOST", srv.URL)
	o := newOllama(t, embed.OllamaConfig{})
	if _, err := o.Probe(t.Context()); err != nil {
		t.Fatalf("Probe() with OLLAMA_HOST=%s = %v", srv.URL, err)
	}
	if srv.Requests() != 1 {
		t.Errorf("server at OLLAMA_HOST got %d requests, want 1", srv.Requests())
	}
}

// TestOllamaFailures checks that each way a server fails maps to its
// sentinel, with a message that tells the user what to do.
func TestOllamaFailures(t *testing.T) {
	tests := []struct {
		name      string
		srv       ollamatest.Config
		cfg       embed.OllamaConfig
		texts     []string
		want      error
		hint      string // the message must contain it
		wantCalls int    // requests the server must see; -1: don't check
	}{
		{
			name: "down", srv: ollamatest.Config{Mode: ollamatest.Down},
			want: embed.ErrUnavailable, hint: "ollama serve", wantCalls: -1,
		},
		{
			name: "http 500", srv: ollamatest.Config{Mode: ollamatest.Status500},
			want: embed.ErrUnavailable, hint: "ollama serve", wantCalls: 4,
		},
		{
			name: "model not found", srv: ollamatest.Config{Mode: ollamatest.ModelNotFound},
			cfg:  embed.OllamaConfig{Model: "all-minilm"},
			want: embed.ErrModelNotFound, hint: "ollama pull all-minilm", wantCalls: 1,
		},
		{
			name: "server lacks the configured model", srv: ollamatest.Config{Model: "nomic-embed-text"},
			cfg:  embed.OllamaConfig{Model: "bge-m3"},
			want: embed.ErrModelNotFound, hint: "ollama pull bge-m3", wantCalls: 1,
		},
		{
			name: "wrong dimensions", srv: ollamatest.Config{Mode: ollamatest.WrongDims, Dims: 768},
			cfg:  embed.OllamaConfig{Dimensions: 768},
			want: embed.ErrBadVector, hint: "769 dimensions", wantCalls: 1,
		},
		{
			name: "wrong count", srv: ollamatest.Config{Mode: ollamatest.WrongCount},
			texts: []string{"one", "two"},
			want:  embed.ErrBadVector, hint: "1 vectors for 2 texts", wantCalls: 1,
		},
		{
			name: "NaN", srv: ollamatest.Config{Mode: ollamatest.NaN},
			want: embed.ErrBadVector, hint: "finite numbers", wantCalls: 1,
		},
		{
			name: "zero vector", srv: ollamatest.Config{Mode: ollamatest.ZeroVector},
			want: embed.ErrBadVector, hint: "zeros", wantCalls: 1,
		},
		{
			name: "stall cut by timeout", srv: ollamatest.Config{Mode: ollamatest.Stall},
			cfg:  embed.OllamaConfig{Timeout: 100 * time.Millisecond},
			want: embed.ErrUnavailable, hint: "did not answer within 100ms", wantCalls: 1,
		},
		{
			name: "empty text", texts: []string{"fine", ""},
			want: embed.ErrInput, hint: "text 2 of 2", wantCalls: 0,
		},
		{
			name: "blank text", texts: []string{" \t\n"},
			want: embed.ErrInput, hint: "white space", wantCalls: 0,
		},
		{
			name: "invalid UTF-8", texts: []string{"ok", "bad \xff"},
			want: embed.ErrInput, hint: "UTF-8", wantCalls: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := ollamatest.NewServer(t, tt.srv)
			cfg := fastRetries(tt.cfg)
			cfg.Host = srv.URL
			o := newOllama(t, cfg)
			texts := tt.texts
			if texts == nil {
				texts = []string{"the API team deploys on Fridays"}
			}
			start := time.Now()
			vecs, err := o.Embed(t.Context(), texts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Embed() = %v, %v; want error %v", vecs, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.hint) {
				t.Errorf("Embed() error %q does not tell the user %q", err, tt.hint)
			}
			for _, other := range []error{embed.ErrUnavailable, embed.ErrModelNotFound, embed.ErrBadVector, embed.ErrInput} {
				if other != tt.want && errors.Is(err, other) {
					t.Errorf("Embed() error %q also matches %v", err, other)
				}
			}
			if tt.wantCalls >= 0 && srv.Requests() != tt.wantCalls {
				t.Errorf("server saw %d requests, want %d", srv.Requests(), tt.wantCalls)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Embed() took %v to fail, want a fast failure", d)
			}
		})
	}
}

func TestOllamaLearnedDimensionsAreEnforced(t *testing.T) {
	srv := ollamatest.NewServer(t, ollamatest.Config{Dims: 16})
	o := newOllama(t, embed.OllamaConfig{Host: srv.URL})
	if _, err := o.Probe(t.Context()); err != nil {
		t.Fatalf("Probe() = %v", err)
	}
	srv.SetMode(ollamatest.WrongDims)
	if _, err := o.Embed(t.Context(), []string{"x"}); !errors.Is(err, embed.ErrBadVector) {
		t.Errorf("Embed() after the model changed size = %v, want %v", err, embed.ErrBadVector)
	}
}

// countingTransport counts the HTTP requests the client attempts, including
// those that never reach a server.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

func TestOllamaRetries(t *testing.T) {
	tests := []struct {
		name        string
		srv         ollamatest.Config
		maxRetries  int
		want        error // nil: success
		wantAttempt int
	}{
		{"connection refused, default retries", ollamatest.Config{Mode: ollamatest.Down}, 0, embed.ErrUnavailable, 4},
		{"connection refused, 1 retry", ollamatest.Config{Mode: ollamatest.Down}, 1, embed.ErrUnavailable, 2},
		{"connection refused, no retries", ollamatest.Config{Mode: ollamatest.Down}, -1, embed.ErrUnavailable, 1},
		{"500 until retries run out", ollamatest.Config{Mode: ollamatest.Status500}, 2, embed.ErrUnavailable, 3},
		{"500 twice then fine", ollamatest.Config{Mode: ollamatest.Status500, FailFirst: 2}, 3, nil, 3},
		{"404 is not retried", ollamatest.Config{Mode: ollamatest.ModelNotFound}, 3, embed.ErrModelNotFound, 1},
		{"bad vectors are not retried", ollamatest.Config{Mode: ollamatest.NaN}, 3, embed.ErrBadVector, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := ollamatest.NewServer(t, tt.srv)
			tr := &countingTransport{}
			o := newOllama(t, fastRetries(embed.OllamaConfig{
				Host: srv.URL, MaxRetries: tt.maxRetries, HTTPClient: &http.Client{Transport: tr},
			}))
			_, err := o.Embed(t.Context(), []string{"hello"})
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("Embed() = %v, want %v", err, tt.want)
			}
			if got := int(tr.n.Load()); got != tt.wantAttempt {
				t.Errorf("client made %d attempts, want %d", got, tt.wantAttempt)
			}
		})
	}
}

func TestOllamaBackoffIsExponentialAndCapped(t *testing.T) {
	srv := ollamatest.NewServer(t, ollamatest.Config{Mode: ollamatest.Status500})
	o := newOllama(t, embed.OllamaConfig{
		Host: srv.URL, MaxRetries: 4,
		RetryBackoff: 20 * time.Millisecond, MaxRetryBackoff: 50 * time.Millisecond,
	})
	start := time.Now()
	_, err := o.Embed(t.Context(), []string{"hello"})
	elapsed := time.Since(start)
	if !errors.Is(err, embed.ErrUnavailable) {
		t.Fatalf("Embed() = %v, want %v", err, embed.ErrUnavailable)
	}
	// Nominal delays 20, 40, 50 (capped), 50 (capped) ms; with jitter each is
	// 50-100% of that.
	if lo, hi := 80*time.Millisecond, 160*time.Millisecond+time.Second; elapsed < lo || elapsed > hi {
		t.Errorf("4 retries took %v, want between %v and %v", elapsed, lo, hi)
	}
	if srv.Requests() != 5 {
		t.Errorf("server saw %d requests, want 5", srv.Requests())
	}
}

func TestOllamaStallCutByContext(t *testing.T) {
	tests := []struct {
		name    string
		ctx     func(context.Context) (context.Context, context.CancelFunc)
		want    []error
		notWant error
	}{
		{
			name: "deadline",
			ctx: func(ctx context.Context) (context.Context, context.CancelFunc) {
				return context.WithTimeout(ctx, 150*time.Millisecond)
			},
			want: []error{embed.ErrUnavailable, context.DeadlineExceeded},
		},
		{
			name: "cancel",
			ctx: func(ctx context.Context) (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(ctx)
				time.AfterFunc(150*time.Millisecond, cancel)
				return ctx, cancel
			},
			want:    []error{context.Canceled},
			notWant: embed.ErrUnavailable,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A server that would stall for 30 s (for ever, in fact).
			srv := ollamatest.NewServer(t, ollamatest.Config{Mode: ollamatest.Stall})
			o := newOllama(t, embed.OllamaConfig{Host: srv.URL, Timeout: 30 * time.Second})
			ctx, cancel := tt.ctx(t.Context())
			defer cancel()
			start := time.Now()
			_, err := o.Embed(ctx, []string{"hello"})
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("Embed() = %v, want it to match %v", err, w)
				}
			}
			if tt.notWant != nil && errors.Is(err, tt.notWant) {
				t.Errorf("Embed() = %v, want it not to match %v", err, tt.notWant)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Embed() returned after %v, want soon after the context ended", d)
			}
		})
	}
}

func TestOllamaConcurrencyBound(t *testing.T) {
	for _, limit := range []int{1, 2, 4} {
		t.Run(strconv.Itoa(limit), func(t *testing.T) {
			srv := ollamatest.NewServer(t, ollamatest.Config{Dims: 8, Delay: 30 * time.Millisecond})
			o := newOllama(t, embed.OllamaConfig{Host: srv.URL, MaxConcurrency: limit, BatchSize: 2})
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for i := range 8 {
				wg.Go(func() {
					// 5 texts in batches of 2: 3 requests per call.
					texts := []string{"a", "b", "c", "d", strconv.Itoa(i)}
					if _, err := o.Embed(t.Context(), texts); err != nil {
						errs <- err
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("Embed() = %v", err)
			}
			if got := srv.MaxInFlight(); got > limit {
				t.Errorf("server saw %d requests in flight at once, want at most %d", got, limit)
			}
			if got := srv.MaxInFlight(); got < limit {
				t.Errorf("server saw at most %d requests in flight, want the bound %d reached", got, limit)
			}
			if got := srv.Requests(); got != 24 {
				t.Errorf("server saw %d requests, want 24", got)
			}
		})
	}
}

func TestOllamaSplitsAtBatchSize(t *testing.T) {
	tests := []struct {
		texts, batch int
		want         []int
	}{
		{texts: 10, batch: 3, want: []int{1, 3, 3, 3}},
		{texts: 64, batch: 0, want: []int{64}}, // default 64
		{texts: 65, batch: 0, want: []int{1, 64}},
		{texts: 5, batch: 5, want: []int{5}},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.texts)+"/"+strconv.Itoa(tt.batch), func(t *testing.T) {
			srv := ollamatest.NewServer(t, ollamatest.Config{Dims: 8})
			o := newOllama(t, embed.OllamaConfig{Host: srv.URL, BatchSize: tt.batch})
			texts := make([]string, tt.texts)
			for i := range texts {
				texts[i] = "text number " + strconv.Itoa(i)
			}
			vecs, err := o.Embed(t.Context(), texts)
			if err != nil {
				t.Fatalf("Embed(%d texts) = %v", len(texts), err)
			}
			got := srv.Batches()
			slices.Sort(got)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("request sizes (-want +got):\n%s", diff)
			}
			for i, v := range vecs {
				if c := cosine(v, ollamatest.Vector(texts[i], 8)); c < 0.9999 {
					t.Fatalf("vector %d is not the one for %q (cosine %v): results out of order", i, texts[i], c)
				}
			}
		})
	}
}

func TestOllamaChunkFailureFailsTheCall(t *testing.T) {
	srv := ollamatest.NewServer(t, ollamatest.Config{Dims: 8, Mode: ollamatest.Status500, FailFirst: 100})
	o := newOllama(t, fastRetries(embed.OllamaConfig{Host: srv.URL, BatchSize: 2, MaxRetries: -1}))
	vecs, err := o.Embed(t.Context(), []string{"a", "b", "c", "d", "e"})
	if !errors.Is(err, embed.ErrUnavailable) || vecs != nil {
		t.Errorf("Embed() = %v, %v; want nil and %v", vecs, err, embed.ErrUnavailable)
	}
}

func TestOllamaErrorsHideSecrets(t *testing.T) {
	srv := ollamatest.NewServer(t, ollamatest.Config{Mode: ollamatest.Down})
	host := strings.Replace(srv.URL, "http://", "http://alice:s3cret-pw@", 1)
	o := newOllama(t, fastRetries(embed.OllamaConfig{Host: host, MaxRetries: -1}))
	_, err := o.Embed(t.Context(), []string{"hello"})
	if !errors.Is(err, embed.ErrUnavailable) {
		t.Fatalf("Embed() = %v, want %v", err, embed.ErrUnavailable)
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("Embed() error reveals the password: %q", err)
	}

	_, err = embed.NewOllama(embed.OllamaConfig{Host: "http://alice:s3cret-pw@127.0.0.1:99999"})
	if err == nil {
		t.Fatal("NewOllama with port 99999 = nil error, want one")
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("NewOllama error reveals the password: %q", err)
	}
}

func TestNewOllamaRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  embed.OllamaConfig
	}{
		{"unknown scheme", embed.OllamaConfig{Host: "ftp://127.0.0.1:11434"}},
		{"port out of range", embed.OllamaConfig{Host: "127.0.0.1:70000"}},
		{"port not a number", embed.OllamaConfig{Host: "127.0.0.1:abc"}},
		{"no host", embed.OllamaConfig{Host: "http://:11434"}},
		{"negative dimensions", embed.OllamaConfig{Host: "127.0.0.1", Dimensions: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if o, err := embed.NewOllama(tt.cfg); err == nil {
				t.Errorf("NewOllama(%+v) = %v, nil; want an error", tt.cfg, o)
			}
		})
	}
}
