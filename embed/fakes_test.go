package embed_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/scopemem/scopemem/embed"
)

// recorder is an Embedder for testing the wrappers: it embeds with Builtin
// and records every call it gets.
type recorder struct {
	inner embed.Embedder
	delay time.Duration
	// gate, when set, makes every call wait for it to be closed (or for
	// the call's context to end).
	gate chan struct{}
	// fail, when set, fails a call whose texts it returns an error for.
	fail func(texts []string) error

	mu        sync.Mutex
	info      embed.Info
	calls     [][]string
	ctxEnded  int // calls that returned because their context ended
	active    int // calls running now
	maxActive int // the most calls that ran at once
}

func newRecorder() *recorder {
	b := embed.NewBuiltin(64)
	return &recorder{inner: b, info: b.Info()}
}

func (r *recorder) Info() embed.Info {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.info
}

func (r *recorder) setModel(model string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.info.Model = model
}

func (r *recorder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	r.mu.Lock()
	r.calls = append(r.calls, slices.Clone(texts))
	r.active++
	r.maxActive = max(r.maxActive, r.active)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.active--
		r.mu.Unlock()
	}()
	if r.gate != nil {
		select {
		case <-r.gate:
		case <-ctx.Done():
			r.mu.Lock()
			r.ctxEnded++
			r.mu.Unlock()
			return nil, ctx.Err()
		}
	}
	if r.delay > 0 {
		select {
		case <-time.After(r.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if r.fail != nil {
		if err := r.fail(texts); err != nil {
			return nil, err
		}
	}
	return r.inner.Embed(ctx, texts)
}

// MaxActive returns the most calls that ran at once so far.
func (r *recorder) MaxActive() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxActive
}

// Calls returns a copy of the texts of every call so far.
func (r *recorder) Calls() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// texts returns n distinct texts with a prefix.
func texts(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s text %d", prefix, i)
	}
	return out
}
