package embed

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// Sentinel errors. Every error an embedder in this package returns wraps at
// most one of them (or a context error when the caller's context ended);
// test them with errors.Is.
var (
	// ErrUnavailable: the embedding server could not be reached, did not
	// answer in time, or kept failing (HTTP 5xx or 429) after every retry.
	// The caller may try again later. The message names the server's URL and
	// says how to start Ollama.
	ErrUnavailable = errors.New("embedding server unavailable")
	// ErrModelNotFound: the embedding server does not have the model. The
	// message says which `ollama pull` command fetches it.
	ErrModelNotFound = errors.New("embedding model not found")
	// ErrBadVector: the embedding server answered, but with something that is
	// not a usable embedding: the wrong number of vectors, a vector of the
	// wrong dimension, NaN or Inf values, a zero vector, or a malformed body.
	ErrBadVector = errors.New("bad embedding vector")
	// ErrInput: a text cannot be embedded (empty, only white space, invalid
	// UTF-8, or refused by the model server as input).
	ErrInput = errors.New("invalid embedding input")
	// ErrClosed: the [Batcher] was closed before the call.
	ErrClosed = errors.New("embedder closed")
)

// Info names an embedder: which provider, which model, and how many
// dimensions its vectors have. A store records it next to its vectors.
type Info struct {
	Provider   string // "ollama" or "builtin"
	Model      string // e.g. "nomic-embed-text" or "lexical-v1"
	Dimensions int    // 0 while an Ollama embedder has not learned it yet
}

// String returns "provider/model (N dimensions)".
func (i Info) String() string {
	return fmt.Sprintf("%s/%s (%d dimensions)", i.Provider, i.Model, i.Dimensions)
}

// Embedder turns texts into vectors. Implementations in this package are
// [*Ollama], [*Builtin], [*Fake] (load tests only), and the wrappers [*Cache]
// and [*Batcher].
type Embedder interface {
	// Embed returns one unit-length vector per text, in input order, each of
	// Info().Dimensions values. An empty texts slice returns an empty result
	// and no error. Errors wrap ErrUnavailable, ErrModelNotFound,
	// ErrBadVector or ErrInput, or the context's error.
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	// Info names the provider, model and dimensions.
	Info() Info
}

// checkTexts rejects texts that no embedder can embed: empty or blank ones
// and invalid UTF-8.
func checkTexts(texts []string) error {
	for i, t := range texts {
		if strings.TrimSpace(t) == "" {
			return fmt.Errorf("text %d of %d is empty or only white space: give some content to embed: %w",
				i+1, len(texts), ErrInput)
		}
		if !utf8.ValidString(t) {
			return fmt.Errorf("text %d of %d is not valid UTF-8: send text, not binary data: %w",
				i+1, len(texts), ErrInput)
		}
	}
	return nil
}

// normalize checks that v is a finite, non-zero vector and scales it to unit
// length in place.
func normalize(v []float32) error {
	var sum float64
	for _, x := range v {
		f := float64(x)
		sum += f * f
	}
	// A NaN or an infinity makes the sum one too: the values are only
	// looked at one by one then.
	if math.IsNaN(sum) || math.IsInf(sum, 0) {
		for _, x := range v {
			if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
				return fmt.Errorf("vector holds NaN or Inf values: %w", ErrBadVector)
			}
		}
		return fmt.Errorf("vector values overflow: %w", ErrBadVector)
	}
	if sum == 0 {
		return fmt.Errorf("vector is all zeros: %w", ErrBadVector)
	}
	inv := 1 / math.Sqrt(sum)
	for i, x := range v {
		v[i] = float32(float64(x) * inv)
	}
	return nil
}

// errCount reports a wrapped embedder that returned the wrong number of
// vectors.
func errCount(got, want int) error {
	return fmt.Errorf("embedder returned %d vectors for %d texts: %w", got, want, ErrBadVector)
}
