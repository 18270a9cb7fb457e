package embed_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/scopemem/scopemem/embed"
	"github.com/scopemem/scopemem/embed/ollamatest"
)

func newBatcher(t *testing.T, e embed.Embedder, cfg embed.BatcherConfig) *embed.Batcher {
	t.Helper()
	b := embed.NewBatcher(e, cfg)
	t.Cleanup(func() { b.Close() })
	return b
}

// concurrently runs f(i) for i in [0, n) at once and waits for all.
func concurrently(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			f(i)
		})
	}
	close(start)
	wg.Wait()
}

func TestBatcherMergesConcurrentCalls(t *testing.T) {
	rec := newRecorder()
	rec.delay = 20 * time.Millisecond
	b := newBatcher(t, rec, embed.BatcherConfig{})
	const callers = 16
	results := make([][][]float32, callers)
	errs := make([]error, callers)
	concurrently(callers, func(i int) {
		results[i], errs[i] = b.Embed(context.Background(), texts("caller "+string(rune('a'+i)), 2))
	})
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: Embed() = %v", i, errs[i])
		}
		want, _ := rec.inner.Embed(context.Background(), texts("caller "+string(rune('a'+i)), 2))
		if diff := cmp.Diff(want, results[i]); diff != "" {
			t.Errorf("caller %d got another caller's vectors (-want +got):\n%s", i, diff)
		}
	}
	calls := rec.Calls()
	if len(calls) >= callers/2 {
		t.Errorf("%d concurrent calls made %d upstream calls, want them merged into fewer than %d", callers, len(calls), callers/2)
	}
	total := 0
	for _, c := range calls {
		total += len(c)
	}
	if total != 2*callers {
		t.Errorf("upstream got %d texts in all, want %d", total, 2*callers)
	}
	if got := b.Calls(); got != uint64(len(calls)) {
		t.Errorf("Calls() = %d, want %d", got, len(calls))
	}
}

func TestBatcherRespectsMaxBatch(t *testing.T) {
	rec := newRecorder()
	b := newBatcher(t, rec, embed.BatcherConfig{MaxBatch: 10})
	concurrently(8, func(i int) {
		n := 4
		if i == 0 {
			n = 25 // bigger than MaxBatch: sent alone
		}
		if _, err := b.Embed(context.Background(), texts(string(rune('a'+i)), n)); err != nil {
			t.Errorf("Embed() = %v", err)
		}
	})
	for _, c := range rec.Calls() {
		if len(c) > 10 && len(c) != 25 {
			t.Errorf("upstream call with %d texts, want at most MaxBatch 10 (or the single oversized call)", len(c))
		}
	}
}

func TestBatcherSendsEachTextOnce(t *testing.T) {
	rec := newRecorder()
	b := newBatcher(t, rec, embed.BatcherConfig{})
	results := make([][][]float32, 4)
	concurrently(4, func(i int) {
		var err error
		results[i], err = b.Embed(context.Background(), []string{"same question", "same question"})
		if err != nil {
			t.Errorf("Embed() = %v", err)
		}
	})
	n := 0
	for _, c := range rec.Calls() {
		n += len(c)
	}
	if calls := len(rec.Calls()); n != calls {
		t.Errorf("upstream got %d texts in %d calls, want the repeated text once per call", n, calls)
	}
	// Every caller owns its vectors.
	results[0][0][0] = 42
	for i := range results {
		for j := range results[i] {
			if (i != 0 || j != 0) && results[i][j][0] == 42 {
				t.Fatalf("result %d/%d shares memory with another caller's", i, j)
			}
		}
	}
}

func TestBatcherCancelledCallerLeavesOthers(t *testing.T) {
	rec := newRecorder()
	rec.gate = make(chan struct{})
	b := newBatcher(t, rec, embed.BatcherConfig{})

	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	errA := make(chan error, 1)
	type result struct {
		vecs [][]float32
		err  error
	}
	resB := make(chan result, 1)
	// A first call keeps the upstream busy, so A and B gather into one
	// batch instead of each being sent at once; when it leaves, the slot
	// frees and A and B go up together.
	busyCtx, leaveBusy := context.WithCancel(context.Background())
	defer leaveBusy()
	go b.Embed(busyCtx, []string{"keeps upstream busy"})
	waitFor(t, func() bool { return len(rec.Calls()) == 1 })
	go func() {
		_, err := b.Embed(ctxA, []string{"from A"})
		errA <- err
	}()
	go func() {
		v, err := b.Embed(context.Background(), []string{"from B"})
		resB <- result{v, err}
	}()
	waitFor(t, func() bool { return b.Waiting() == 2 })
	leaveBusy()
	// Wait until the merged call is upstream, then cancel A.
	waitFor(t, func() bool { return len(rec.Calls()) == 2 })
	cancelA()
	select {
	case err := <-errA:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled caller: Embed() = %v, want %v", err, context.Canceled)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("cancelled caller did not return while the merged call was still running")
	}
	close(rec.gate)
	r := <-resB
	if r.err != nil {
		t.Fatalf("other caller: Embed() = %v, want vectors", r.err)
	}
	want, _ := rec.inner.Embed(context.Background(), []string{"from B"})
	if diff := cmp.Diff(want, r.vecs); diff != "" {
		t.Errorf("other caller's vectors (-want +got):\n%s", diff)
	}
	if c := rec.Calls(); len(c) != 2 || len(c[1]) != 2 {
		t.Errorf("upstream calls = %q, want the busy call, then one merged call of 2 texts", c)
	}
}

func TestBatcherCancelsUpstreamWhenAllCallersLeave(t *testing.T) {
	rec := newRecorder()
	rec.gate = make(chan struct{}) // never opened: only cancellation ends the call
	b := newBatcher(t, rec, embed.BatcherConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	concurrentlyStart := make(chan struct{})
	go func() {
		defer close(done)
		close(concurrentlyStart)
		concurrently(3, func(int) {
			if _, err := b.Embed(ctx, []string{"x"}); !errors.Is(err, context.Canceled) {
				t.Errorf("Embed() = %v, want %v", err, context.Canceled)
			}
		})
	}()
	<-concurrentlyStart
	waitFor(t, func() bool { return len(rec.Calls()) >= 1 })
	cancel()
	<-done
	waitFor(t, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.ctxEnded == len(rec.calls)
	})
}

func TestBatcherIsolatesBadInput(t *testing.T) {
	rec := newRecorder()
	rec.fail = func(ts []string) error {
		if slices.Contains(ts, "too long for the model") {
			return embed.ErrInput
		}
		return nil
	}
	b := newBatcher(t, rec, embed.BatcherConfig{})
	errs := make([]error, 3)
	concurrently(3, func(i int) {
		text := []string{"good one", "good two", "too long for the model"}[i]
		_, errs[i] = b.Embed(context.Background(), []string{text})
	})
	if errs[0] != nil || errs[1] != nil {
		t.Errorf("good callers: Embed() = %v, %v; want no error", errs[0], errs[1])
	}
	if !errors.Is(errs[2], embed.ErrInput) {
		t.Errorf("bad caller: Embed() = %v, want %v", errs[2], embed.ErrInput)
	}
}

func TestBatcherErrors(t *testing.T) {
	rec := newRecorder()
	rec.fail = func([]string) error { return embed.ErrUnavailable }
	b := newBatcher(t, rec, embed.BatcherConfig{})
	tests := []struct {
		name  string
		texts []string
		want  error
	}{
		{"upstream down", []string{"a"}, embed.ErrUnavailable},
		{"blank text, checked before queueing", []string{"a", " "}, embed.ErrInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := b.Embed(t.Context(), tt.texts); !errors.Is(err, tt.want) {
				t.Errorf("Embed(%q) = %v, want %v", tt.texts, err, tt.want)
			}
		})
	}
	if v, err := b.Embed(t.Context(), nil); err != nil || len(v) != 0 {
		t.Errorf("Embed(nil) = %v, %v; want no vectors and no error", v, err)
	}
	if got := b.Info(); got != rec.Info() {
		t.Errorf("Info() = %+v, want %+v", got, rec.Info())
	}
}

func TestBatcherCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	rec := newRecorder()
	rec.delay = 10 * time.Millisecond
	b := embed.NewBatcher(rec, embed.BatcherConfig{})
	concurrently(10, func(i int) {
		if _, err := b.Embed(context.Background(), []string{string(rune('a' + i))}); err != nil {
			t.Errorf("Embed() = %v", err)
		}
	})
	// A call queued just before Close is still answered.
	res := make(chan error, 1)
	go func() {
		_, err := b.Embed(context.Background(), []string{"last"})
		res <- err
	}()
	waitFor(t, func() bool { return len(rec.Calls()) > 0 && slices.Contains(rec.Calls()[len(rec.Calls())-1], "last") })
	if err := b.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := <-res; err != nil {
		t.Errorf("call in flight at Close: Embed() = %v, want it to finish", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
	if _, err := b.Embed(context.Background(), []string{"after"}); !errors.Is(err, embed.ErrClosed) {
		t.Errorf("Embed() after Close = %v, want %v", err, embed.ErrClosed)
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
}

// TestBatcherOverOllama runs the whole chain a server uses, cache in front
// of batcher in front of the Ollama client, against the fake server.
func TestBatcherOverOllama(t *testing.T) {
	srv := ollamatest.NewServer(t, ollamatest.Config{Dims: 32, Delay: 20 * time.Millisecond})
	o := newOllama(t, embed.OllamaConfig{Host: srv.URL})
	b := newBatcher(t, o, embed.BatcherConfig{})
	c := embed.NewCache(b, 0)
	const callers = 32
	concurrently(callers, func(i int) {
		text := texts("memory", callers)[i]
		v, err := c.Embed(context.Background(), []string{text})
		if err != nil {
			t.Errorf("Embed() = %v", err)
			return
		}
		if cs := cosine(v[0], ollamatest.Vector(text, 32)); cs < 0.9999 {
			t.Errorf("caller %d got a vector for another text (cosine %v)", i, cs)
		}
	})
	if got := srv.Requests(); got > callers/4 {
		t.Errorf("%d concurrent calls made %d requests to the server, want at most %d", callers, got, callers/4)
	}
	if got := srv.Inputs(); got != callers {
		t.Errorf("server embedded %d texts, want %d", got, callers)
	}
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBatcherSendsALoneCallAtOnce(t *testing.T) {
	rec := newRecorder()
	b := newBatcher(t, rec, embed.BatcherConfig{})
	start := time.Now()
	if _, err := b.Embed(context.Background(), []string{"alone"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("a lone call took %v with a 1s window; want it sent at once", d)
	}
}

// probeKey marks a caller's context for TestBatcherLoneCallKeepsItsContext.
type probeKey struct{}

// ctxProbe records the probeKey value of the context of its last call.
type ctxProbe struct {
	embed.Embedder
	mu  sync.Mutex
	got any
}

func (p *ctxProbe) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	p.mu.Lock()
	p.got = ctx.Value(probeKey{})
	p.mu.Unlock()
	return p.Embedder.Embed(ctx, texts)
}

// TestBatcherLoneCallKeepsItsContext checks that a lone caller makes its
// call itself, with its own context (and so its trace and values), rather
// than through the batcher's goroutines and their detached context.
func TestBatcherLoneCallKeepsItsContext(t *testing.T) {
	p := &ctxProbe{Embedder: embed.NewBuiltin(64)}
	b := newBatcher(t, p, embed.BatcherConfig{})
	for i := range 3 {
		ctx := context.WithValue(context.Background(), probeKey{}, i)
		if _, err := b.Embed(ctx, []string{fmt.Sprintf("alone %d", i)}); err != nil {
			t.Fatal(err)
		}
		p.mu.Lock()
		got := p.got
		p.mu.Unlock()
		if got != i {
			t.Errorf("call %d reached the embedder with probe value %v", i, got)
		}
	}
}

// TestBatcherKeepsInFlight drives 32 callers at once, some of whom find a
// slot free and call directly while others gather into batches: no more
// than InFlight calls may ever reach the embedder at once, and merging
// must still happen.
func TestBatcherKeepsInFlight(t *testing.T) {
	for _, inFlight := range []int{1, 2, 4} {
		t.Run(fmt.Sprint(inFlight), func(t *testing.T) {
			rec := newRecorder()
			rec.delay = time.Millisecond
			b := newBatcher(t, rec, embed.BatcherConfig{InFlight: inFlight})
			const callers, each = 32, 20
			concurrently(callers, func(i int) {
				for k := range each {
					if _, err := b.Embed(context.Background(), []string{fmt.Sprintf("caller %d text %d", i, k)}); err != nil {
						t.Errorf("Embed() = %v", err)
						return
					}
				}
			})
			if got := rec.MaxActive(); got > inFlight {
				t.Errorf("%d calls reached the embedder at once, want at most %d", got, inFlight)
			}
			if calls := len(rec.Calls()); calls >= callers*each {
				t.Errorf("%d calls for %d texts: nothing merged", calls, callers*each)
			}
		})
	}
}

// TestBatcherInFlight drives 32 closed-loop callers through a batcher in
// front of a model server that answers one request at a time (a Fake with
// Parallel 1 and a 10ms delay) for a fixed time, and counts the texts
// embedded. Without merging (MaxBatch 1) each request carries one text, so
// about 1/delay texts a second get through; with merging each request
// carries what arrived during the last one.
func TestBatcherInFlight(t *testing.T) {
	const (
		delay   = 10 * time.Millisecond
		callers = 32
		runFor  = 400 * time.Millisecond
	)
	measure := func(cfg embed.BatcherConfig) int {
		f := embed.NewFake(embed.FakeConfig{Dims: 8, Delay: delay, Parallel: 1})
		b := newBatcher(t, f, cfg)
		var (
			mu   sync.Mutex
			done int
		)
		stop := time.Now().Add(runFor)
		concurrently(callers, func(i int) {
			for k := 0; time.Now().Before(stop); k++ {
				if _, err := b.Embed(context.Background(), []string{fmt.Sprintf("caller %d text %d", i, k)}); err != nil {
					t.Errorf("Embed() = %v", err)
					return
				}
				mu.Lock()
				done++
				mu.Unlock()
			}
		})
		return done
	}
	single := measure(embed.BatcherConfig{MaxBatch: 1})
	merged := measure(embed.BatcherConfig{})
	ceiling := int(runFor/delay) + callers // one text per request, plus the last round
	if single > ceiling {
		t.Errorf("MaxBatch 1: %d texts in %v, want at most %d (one per %v request)", single, runFor, ceiling, delay)
	}
	if merged < 8*single {
		t.Errorf("merged: %d texts in %v, want at least 8x the %d of one text per request", merged, runFor, single)
	}
	t.Logf("texts in %v: one per request %d, merged %d (%.1fx)", runFor, single, merged, float64(merged)/float64(single))
}
