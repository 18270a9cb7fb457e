package embed_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/scopemem/scopemem/embed"
)

func fakeDot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func fakeEmbed(t *testing.T, f *embed.Fake, texts ...string) [][]float32 {
	t.Helper()
	vs, err := f.Embed(t.Context(), texts)
	if err != nil {
		t.Fatalf("Embed(%q): %v", texts, err)
	}
	if len(vs) != len(texts) {
		t.Fatalf("Embed(%d texts) returned %d vectors", len(texts), len(vs))
	}
	return vs
}

func TestFakeInfo(t *testing.T) {
	tests := []struct {
		name string
		cfg  embed.FakeConfig
		want embed.Info
	}{
		{"default", embed.FakeConfig{}, embed.Info{Provider: "fake", Model: "fake-v1", Dimensions: 768}},
		{"negative means default", embed.FakeConfig{Dims: -3, Delay: -time.Second}, embed.Info{Provider: "fake", Model: "fake-v1", Dimensions: 768}},
		{"custom", embed.FakeConfig{Dims: 64}, embed.Info{Provider: "fake", Model: "fake-v1", Dimensions: 64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := embed.NewFake(tt.cfg)
			if diff := cmp.Diff(tt.want, f.Info()); diff != "" {
				t.Errorf("Info() mismatch (-want +got):\n%s", diff)
			}
			v := fakeEmbed(t, f, "one text")[0]
			if len(v) != tt.want.Dimensions {
				t.Errorf("len(vector) = %d, want %d", len(v), tt.want.Dimensions)
			}
		})
	}
}

func TestFakeDeterministicUnitVectors(t *testing.T) {
	texts := []string{"the deploy failed on friday", "Alice prefers dark mode", "!!!", "日本語のテキスト", "x"}
	a := fakeEmbed(t, embed.NewFake(embed.FakeConfig{}), texts...)
	// A second embedder stands for another process: vectors must not
	// depend on anything but the text.
	b := fakeEmbed(t, embed.NewFake(embed.FakeConfig{}), texts...)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("two embedders disagree (-first +second):\n%s", diff)
	}
	for i, v := range a {
		if n := math.Sqrt(fakeDot(v, v)); math.Abs(n-1) > 1e-5 {
			t.Errorf("|Embed(%q)| = %v, want 1", texts[i], n)
		}
	}
}

func TestFakeConcurrentFirstUse(t *testing.T) {
	// Topic directions are made on first use: callers racing on a new
	// embedder must all get what a lone caller gets (run with -race).
	texts := []string{"the deploy failed on friday", "Alice prefers dark mode", "the staging database is called pluto", "!!!"}
	want := fakeEmbed(t, embed.NewFake(embed.FakeConfig{}), texts...)
	f := embed.NewFake(embed.FakeConfig{})
	got := make([][][]float32, 8)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() {
			vs, err := f.Embed(context.Background(), texts)
			if err != nil {
				t.Error(err)
			}
			got[i] = vs
		})
	}
	wg.Wait()
	for i, vs := range got {
		if diff := cmp.Diff(want, vs); diff != "" {
			t.Errorf("caller %d got other vectors (-lone +concurrent):\n%s", i, diff)
		}
	}
}

func TestFakeGolden(t *testing.T) {
	// fake-v1 vectors must never change: a store filled by one version is
	// read by the next. If this fails, the model changed and needs a new
	// name.
	v := fakeEmbed(t, embed.NewFake(embed.FakeConfig{Dims: 8}), "The staging database is called pluto")[0]
	want := []float32{0.10936363, -0.08309916, -0.15985155, -0.24149176, 0.525551, -0.038328364, -0.086113624, 0.782416}
	if diff := cmp.Diff(want, v, cmpopts.EquateApprox(0, 1e-6)); diff != "" {
		t.Errorf("fake-v1 vector changed (-want +got):\n%s", diff)
	}
}

func TestFakeSimilarity(t *testing.T) {
	f := embed.NewFake(embed.FakeConfig{})
	vs := fakeEmbed(t, f,
		"postgres replication lag alert paging",
		"postgres replication lag alert dashboard",
		"banana smoothie recipe with oat milk",
	)
	related, unrelated := fakeDot(vs[0], vs[1]), fakeDot(vs[0], vs[2])
	if related <= unrelated+0.2 {
		t.Errorf("cosine(related) = %.3f, cosine(unrelated) = %.3f: want related clearly higher", related, unrelated)
	}
	// Distinct texts must stay far from the near-duplicate threshold of
	// store.DuplicateSimilarity (0.97), or a load test would see its adds
	// merged.
	var many []string
	for i := range 300 {
		many = append(many, fmt.Sprintf("memory %d about alpha beta gamma delta", i))
	}
	mv := fakeEmbed(t, f, many...)
	worst := -1.0
	for i := range mv {
		for j := i + 1; j < len(mv); j++ {
			worst = max(worst, fakeDot(mv[i], mv[j]))
		}
	}
	if worst >= 0.8 {
		t.Errorf("highest cosine between 300 distinct texts = %.3f, want < 0.8", worst)
	}
}

func TestFakeErrors(t *testing.T) {
	f := embed.NewFake(embed.FakeConfig{Dims: 16})
	tests := []struct {
		name  string
		texts []string
		want  error
	}{
		{"empty text", []string{"ok", ""}, embed.ErrInput},
		{"blank text", []string{"  \n"}, embed.ErrInput},
		{"invalid UTF-8", []string{"a\xffb"}, embed.ErrInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := f.Embed(t.Context(), tt.texts); !errors.Is(err, tt.want) {
				t.Errorf("Embed(%q) error = %v, want %v", tt.texts, err, tt.want)
			}
		})
	}
	vs, err := f.Embed(t.Context(), nil)
	if err != nil || len(vs) != 0 {
		t.Errorf("Embed(nil) = %d vectors, %v; want 0, nil", len(vs), err)
	}
}

func TestFakeDelay(t *testing.T) {
	const delay = 30 * time.Millisecond
	f := embed.NewFake(embed.FakeConfig{Dims: 16, Delay: delay})
	start := time.Now()
	fakeEmbed(t, f, "a", "b", "c")
	if el := time.Since(start); el < delay {
		t.Errorf("Embed of 3 texts took %v, want at least the delay %v", el, delay)
	}

	slow := embed.NewFake(embed.FakeConfig{Dims: 16, Delay: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err := slow.Embed(ctx, []string{"a"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Embed with an ended context: error = %v, want context.DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Embed returned %v after its context ended, want promptly", el)
	}

	done, cancelDone := context.WithCancel(t.Context())
	cancelDone()
	if _, err := embed.NewFake(embed.FakeConfig{Dims: 16}).Embed(done, []string{"a"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Embed without delay, cancelled context: error = %v, want context.Canceled", err)
	}
}

// TestFakeParallel checks that Parallel bounds the calls in flight: four
// concurrent calls through one slot take four delays, through four slots
// about one, and a caller queued for a slot leaves when its context ends.
func TestFakeParallel(t *testing.T) {
	const delay = 40 * time.Millisecond
	tests := []struct {
		parallel int
		min, max time.Duration
	}{
		{parallel: 1, min: 4 * delay, max: time.Hour},
		{parallel: 4, min: delay, max: 3 * delay},
		{parallel: 0, min: delay, max: 3 * delay},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("parallel=", tt.parallel), func(t *testing.T) {
			f := embed.NewFake(embed.FakeConfig{Dims: 16, Delay: delay, Parallel: tt.parallel})
			start := time.Now()
			errs := make(chan error, 4)
			for i := range 4 {
				go func() {
					_, err := f.Embed(t.Context(), []string{fmt.Sprint("text ", i)})
					errs <- err
				}()
			}
			for range 4 {
				if err := <-errs; err != nil {
					t.Fatalf("Embed: %v", err)
				}
			}
			if el := time.Since(start); el < tt.min || el > tt.max {
				t.Errorf("4 concurrent calls took %v, want between %v and %v", el, tt.min, tt.max)
			}
		})
	}

	f := embed.NewFake(embed.FakeConfig{Dims: 16, Delay: time.Hour, Parallel: 1})
	busy, stop := context.WithCancel(t.Context())
	defer stop()
	go func() { _, _ = f.Embed(busy, []string{"holds the slot"}) }()
	time.Sleep(10 * time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := f.Embed(ctx, []string{"queued"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Embed queued behind a busy slot, context ended: error = %v, want context.DeadlineExceeded", err)
	}
}

func BenchmarkFake(b *testing.B) {
	f := embed.NewFake(embed.FakeConfig{})
	texts := []string{"The staging database is called pluto and it runs postgres 15 on two cores with replication to a warm standby"}
	for b.Loop() {
		if _, err := f.Embed(b.Context(), texts); err != nil {
			b.Fatal(err)
		}
	}
}
