package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/scopemem/scopemem/embed"
	"github.com/scopemem/scopemem/store"
)

// ReindexCmd re-embeds every memory with another embedder.
type ReindexCmd struct {
	Embedder string     `enum:"ollama,builtin,fake" default:"ollama" help:"The embedder to move to: ollama, builtin, or fake (load tests only)."`
	Model    string     `default:"nomic-embed-text" help:"Ollama embedding model, e.g. mxbai-embed-large."`
	FakeDims int        `name:"fake-dims" help:"Dimensions of the fake embedder (default 768)."`
	Batch    int        `default:"256" help:"Memories embedded and saved per step; Ollama receives them in requests of 64, four at a time."`
	Abort    bool       `help:"Discard a reindex in progress (its staged vectors); the store keeps its embedder."`
	Status   bool       `help:"Only report the reindex in progress."`
	Embed    embedFlags `embed:""`

	DB          string `name:"db" env:"SCOPEMEM_DB" help:"SQLite file (default: the server's)." placeholder:"PATH"`
	DatabaseURL string `name:"database-url" env:"SCOPEMEM_MIGRATE_DATABASE_URL" help:"PostgreSQL URL of the role that owns the schema (as for migrate): a reindex reads and rewrites every org." placeholder:"URL"`
}

// Run reindexes, resuming a reindex to the same embedder that was
// interrupted. An interrupt (Ctrl-C, SIGTERM) finishes and saves the step
// in flight, then stops; running the command again resumes.
func (c *ReindexCmd) Run(env *runEnv) error {
	st, err := openOpsStore(env.ctx, c.DB, c.DatabaseURL, true, env.log)
	if err != nil {
		return err
	}
	defer st.Close()
	r, ok := st.(store.Reindexer)
	if !ok {
		return fmt.Errorf("reindex: %w", errUnsupported)
	}
	switch {
	case c.Abort:
		if err := r.AbortReindex(env.ctx); err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr, "reindex: discarded; the store keeps its embedder")
		return nil
	case c.Status:
		s, err := r.ReindexStatus(env.ctx)
		if err != nil {
			return err
		}
		if !s.Active {
			fmt.Fprintln(os.Stderr, "reindex: none in progress")
			return nil
		}
		fmt.Fprintf(os.Stderr, "reindex: to %v since %s, %d of %d memories embedded\n", s.Target, s.Started.Format(time.RFC3339), s.Done, s.Total)
		return nil
	}
	target := store.EmbedderInfo{Provider: c.Embedder, Model: c.Model}
	switch c.Embedder {
	case "builtin":
		target.Model = "lexical-v1"
	case "fake":
		target.Model, target.Dimensions = embed.NewFake(embed.FakeConfig{Dims: c.FakeDims}).Info().Model, c.FakeDims
	}
	e, err := newEmbedder(env.ctx, target, c.Embed, http.DefaultClient, env.log)
	if err != nil {
		return err
	}
	res, err := reindex(env.ctx, st, e, reindexOptions{Batch: c.Batch, Progress: os.Stderr, Terminal: isTerminal(os.Stderr), Log: env.log})
	if err != nil {
		return err
	}
	if res.UpToDate {
		fmt.Fprintf(os.Stderr, "reindex: the store already records %v; nothing to do\n", res.Target)
		return nil
	}
	fmt.Fprintf(os.Stderr, "reindex: %d memories embedded with %v in %s; the store now records it. "+
		"Restart every server with --embedder %s --model %s.\n",
		res.Embedded, res.Target, res.Elapsed.Round(time.Second), res.Target.Provider, res.Target.Model)
	return nil
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// reindexOptions configure reindex.
type reindexOptions struct {
	Batch    int       // memories per step; default 256
	Progress io.Writer // where progress goes; nil: nowhere
	Terminal bool      // Progress is a terminal: draw a bar
	// Every is how often plain progress lines are written; default 10s.
	Every time.Duration
	Log   *slog.Logger
}

// reindexResult says what a reindex did.
type reindexResult struct {
	Target   store.EmbedderInfo
	UpToDate bool // the store already recorded Target and no reindex was in progress
	Embedded int  // memories embedded by this run
	Elapsed  time.Duration
}

// errInterrupted is returned when the context ends between steps.
var errInterrupted = errors.New("reindex interrupted: the vectors made so far are saved; run the same command again to resume")

// reindex moves st to e: it stages a vector from e for every memory, step
// by step, then commits. A step once embedded is always saved, even when
// ctx ends meanwhile, so that resuming embeds no memory twice; ctx is
// checked between steps. Memories added or changed while it runs are
// picked up by further passes before the commit.
func reindex(ctx context.Context, st store.Store, e embed.Embedder, opts reindexOptions) (reindexResult, error) {
	if opts.Batch <= 0 {
		opts.Batch = 256
	}
	if opts.Every <= 0 {
		opts.Every = 10 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	r, ok := st.(store.Reindexer)
	if !ok {
		return reindexResult{}, fmt.Errorf("reindex: %w", errUnsupported)
	}
	start := time.Now()
	res := reindexResult{Target: embedderInfo(e.Info())}
	stored, have, err := st.Embedder(ctx)
	if err != nil {
		return res, err
	}
	status, err := r.ReindexStatus(ctx)
	if err != nil {
		return res, err
	}
	if have && stored == res.Target && !status.Active {
		res.UpToDate = true
		return res, nil
	}
	if status, err = r.BeginReindex(ctx, res.Target); err != nil {
		return res, err
	}
	opts.Log.Info("reindex", "from", stored, "to", res.Target, "memories", status.Total, "already_embedded", status.Done)
	p := newProgress(opts, status.Total, status.Done)
	defer p.finish()
	// done is the memories embedded for the target so far, for progress.
	done := status.Done
	for {
		var after *store.ReindexItem
		passEmbedded := 0
		for {
			if ctx.Err() != nil {
				return res, errInterrupted
			}
			items, err := r.ReindexPending(ctx, after, opts.Batch)
			if err != nil {
				return res, err
			}
			if len(items) == 0 {
				break
			}
			texts := make([]string, len(items))
			for i, it := range items {
				texts[i] = it.Content
			}
			// A step that has started finishes and is saved.
			sctx := context.WithoutCancel(ctx)
			vecs, err := e.Embed(sctx, texts)
			if err != nil {
				return res, fmt.Errorf("reindex: embed %d memories (from %s/%s): %w", len(texts), items[0].Org, items[0].ID, err)
			}
			vs := make([]store.StagedVector, len(items))
			for i, it := range items {
				vs[i] = store.StagedVector{Org: it.Org, ID: it.ID, Hash: it.Hash, Vector: vecs[i]}
			}
			if err := r.StageVectors(sctx, vs); err != nil {
				return res, err
			}
			res.Embedded += len(items)
			passEmbedded += len(items)
			done += len(items)
			p.set(done)
			after = &items[len(items)-1]
		}
		err := r.CommitReindex(ctx)
		if err == nil {
			res.Elapsed = time.Since(start)
			p.set(done)
			return res, nil
		}
		if !errors.Is(err, store.ErrReindexPending) {
			return res, err
		}
		// Memories were added or changed behind the pass: count them in
		// and go again.
		s, serr := r.ReindexStatus(ctx)
		if serr != nil {
			return res, serr
		}
		done = s.Done
		p.grow(s.Total, s.Done)
		opts.Log.Info("reindex: memories changed meanwhile, another pass", "pending", s.Total-s.Done, "last_pass", passEmbedded)
	}
}

// progress shows how far a reindex is: a bar with rate and ETA on a
// terminal, plain lines otherwise.
type progress struct {
	bar   *progressbar.ProgressBar
	w     io.Writer
	every time.Duration
	total int
	start time.Time
	base  int // done when this run started
	last  time.Time
	done  int
}

func newProgress(opts reindexOptions, total, done int) *progress {
	p := &progress{w: opts.Progress, every: opts.Every, total: total, start: time.Now(), base: done, done: done}
	if p.w == nil {
		return p
	}
	if opts.Terminal {
		p.bar = progressbar.NewOptions64(int64(total),
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription("reindex"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("memories"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionFullWidth(),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
		)
		_ = p.bar.Set64(int64(done))
		return p
	}
	fmt.Fprintf(p.w, "reindex: %d memories, %d already embedded\n", total, done)
	p.last = p.start
	return p
}

func (p *progress) set(done int) {
	p.done = done
	switch {
	case p.w == nil:
	case p.bar != nil:
		_ = p.bar.Set64(int64(done))
	case time.Since(p.last) >= p.every || done >= p.total:
		p.last = time.Now()
		fmt.Fprintln(p.w, p.line())
	}
}

// line is a plain progress line with rate and ETA.
func (p *progress) line() string {
	el := time.Since(p.start)
	rate := float64(p.done-p.base) / max(el.Seconds(), 1e-3)
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(p.done) / float64(p.total)
	}
	eta := "unknown"
	if rate > 0 {
		eta = time.Duration(float64(p.total-p.done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("reindex: %d/%d memories (%.1f%%), %.1f/s, ETA %s", p.done, p.total, pct, rate, eta)
}

// grow changes the total after memories were added meanwhile.
func (p *progress) grow(total, done int) {
	p.total = total
	if p.bar != nil {
		p.bar.ChangeMax64(int64(total))
	}
	p.set(done)
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
