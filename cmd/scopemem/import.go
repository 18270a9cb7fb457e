package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"slices"

	"github.com/scopemem/scopemem/embed"
	"github.com/scopemem/scopemem/internal/jsonscan"
	"github.com/scopemem/scopemem/store"
)

// ImportCmd reads memories written by export.
type ImportCmd struct {
	Input    string     `arg:"" optional:"" default:"-" help:"JSON-lines file written by scopemem export; - is stdin." placeholder:"FILE"`
	Org      string     `help:"Import only lines of this org; lines of any other org are reported as bad."`
	As       string     `default:"scopemem-admin" help:"The operator's name, acting as an admin of each org imported (recorded in the audit log)."`
	Batch    int        `default:"200" help:"Memories per transaction."`
	Embedder string     `enum:"auto,ollama,builtin" default:"auto" help:"Only for a store that records no embedder yet and lines without vectors: the embedder to start it with. Otherwise lines are embedded with the store's own embedder when their vectors come from another one (or are missing)."`
	Model    string     `default:"nomic-embed-text" help:"Ollama model, with --embedder ollama."`
	Embed    embedFlags `embed:""`

	DB          string `name:"db" env:"SCOPEMEM_DB" help:"SQLite file (default: the server's)." placeholder:"PATH"`
	DatabaseURL string `name:"database-url" env:"SCOPEMEM_DATABASE_URL" help:"PostgreSQL URL (the runtime role is enough)." placeholder:"URL"`
}

// Run imports the file and reports bad lines on stderr. It fails, after
// importing every good line, when some line was bad.
func (c *ImportCmd) Run(env *runEnv) error {
	var in io.Reader = os.Stdin
	if c.Input != "-" {
		f, err := os.Open(c.Input)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	st, err := openOpsStore(env.ctx, c.DB, c.DatabaseURL, false, env.log)
	if err != nil {
		return err
	}
	defer st.Close()
	opts := importOptions{Org: c.Org, As: c.As, Batch: c.Batch, Errors: os.Stderr,
		Embedder: func(ctx context.Context, info store.EmbedderInfo) (embed.Embedder, error) {
			return newEmbedder(ctx, info, c.Embed, http.DefaultClient, env.log)
		}}
	switch c.Embedder {
	case "ollama":
		opts.Initial = &store.EmbedderInfo{Provider: "ollama", Model: c.Model}
	case "builtin":
		opts.Initial = &store.EmbedderInfo{Provider: "builtin", Model: "lexical-v1"}
	}
	rep, err := importLines(env.ctx, st, in, opts)
	env.log.Info("import finished", "imported", rep.Imported, "already_present", rep.Present, "bad_lines", len(rep.Bad))
	if err != nil {
		return err
	}
	if len(rep.Bad) > 0 {
		return fmt.Errorf("%d of %d lines were not imported (listed above); the other %d were", len(rep.Bad), rep.Lines, rep.Imported+rep.Present)
	}
	return nil
}

// importOptions configure importLines.
type importOptions struct {
	Org    string    // when set, lines of other orgs are bad
	As     string    // the operator's user name
	Batch  int       // memories per Import call; default 200
	Errors io.Writer // where bad lines are reported; nil: nowhere
	// Embedder builds the embedder info names, for lines whose vectors are
	// missing or from another embedder.
	Embedder func(ctx context.Context, info store.EmbedderInfo) (embed.Embedder, error)
	// Initial is the embedder a store that records none starts with when
	// a line has no vector; nil: such a line is an error.
	Initial *store.EmbedderInfo
}

// lineError is a line that was not imported.
type lineError struct {
	Line int
	Err  error
}

// importReport counts what an import did.
type importReport struct {
	Lines, Imported, Present int
	Bad                      []lineError
}

// pendingLine is a parsed line waiting for its batch.
type pendingLine struct {
	line  int
	rec   store.Record
	embed bool // needs a vector from the store's embedder
}

// importRun holds the state of one import.
type importRun struct {
	opts     importOptions
	st       store.Store
	im       store.Importer
	info     store.EmbedderInfo
	have     bool
	embedder embed.Embedder
	rep      importReport
}

// importLines reads JSON lines from r and imports them batch by batch,
// per org. A bad line (unreadable, invalid, of another org, or refused by
// the store) is reported with its number and skipped; the others are
// imported. The error is for failures that stop the whole import.
func importLines(ctx context.Context, st store.Store, r io.Reader, opts importOptions) (importReport, error) {
	if opts.Batch <= 0 {
		opts.Batch = 200
	}
	im, ok := st.(store.Importer)
	if !ok {
		return importReport{}, fmt.Errorf("import: %w", errUnsupported)
	}
	run := &importRun{opts: opts, st: st, im: im}
	var err error
	if run.info, run.have, err = st.Embedder(ctx); err != nil {
		return run.rep, err
	}
	pending := map[string][]pendingLine{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		run.rep.Lines++
		p, err := run.parse(ctx, n, line)
		if err != nil {
			if errors.Is(err, errFatal) {
				return run.rep, err
			}
			run.bad(n, err)
			continue
		}
		pending[p.rec.Org] = append(pending[p.rec.Org], p)
		if len(pending[p.rec.Org]) >= opts.Batch {
			if err := run.flush(ctx, pending[p.rec.Org]); err != nil {
				return run.rep, err
			}
			delete(pending, p.rec.Org)
		}
	}
	if err := sc.Err(); err != nil {
		return run.rep, fmt.Errorf("import: read line %d: %w", n+1, err)
	}
	orgs := make([]string, 0, len(pending))
	for org := range pending {
		orgs = append(orgs, org)
	}
	slices.Sort(orgs)
	for _, org := range orgs {
		if err := run.flush(ctx, pending[org]); err != nil {
			return run.rep, err
		}
	}
	return run.rep, nil
}

// errFatal marks a parse error that stops the import.
var errFatal = errors.New("import stopped")

func (run *importRun) bad(line int, err error) {
	run.rep.Bad = append(run.rep.Bad, lineError{line, err})
	if run.opts.Errors != nil {
		fmt.Fprintf(run.opts.Errors, "line %d: %v\n", line, err)
	}
}

// parse reads and checks one line.
func (run *importRun) parse(ctx context.Context, n int, line []byte) (pendingLine, error) {
	// Names are matched exactly: encoding/json alone would take "Org"
	// for org, and of "org" and "Org" keep the later, so that the line
	// would not import what it shows.
	if err := jsonscan.ExactNames(line, reflect.TypeFor[recordJSON]()); err != nil {
		return pendingLine{}, fmt.Errorf("%w: not a memory in JSON: %v (names are lower case, as export writes them)", store.ErrInvalid, err)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var j recordJSON
	if err := dec.Decode(&j); err != nil {
		return pendingLine{}, fmt.Errorf("%w: not a memory in JSON: %v", store.ErrInvalid, err)
	}
	if dec.More() {
		return pendingLine{}, fmt.Errorf("%w: more than one JSON value on the line", store.ErrInvalid)
	}
	rec, err := j.record()
	if err != nil {
		return pendingLine{}, err
	}
	if run.opts.Org != "" && rec.Org != run.opts.Org {
		return pendingLine{}, fmt.Errorf("%w: memory %s is of org %q, and --org is %q", store.ErrInvalid, rec.ID, rec.Org, run.opts.Org)
	}
	if _, err := operator(rec.Org, run.opts.As); err != nil {
		return pendingLine{}, fmt.Errorf("%w: %v", store.ErrInvalid, err)
	}
	if !run.have {
		if err := run.startEmbedder(ctx, n, rec); err != nil {
			return pendingLine{}, err
		}
	}
	p := pendingLine{line: n, rec: rec, embed: rec.Vector == nil || rec.Embedder != run.info}
	// Check everything but the vector now, with a stand-in of the right
	// size, so that a bad line costs no embedding.
	check := rec
	check.Vector = make([]float32, run.info.Dimensions)
	check.Vector[0] = 1
	if !p.embed {
		check.Vector = slices.Clone(rec.Vector)
	}
	if err := store.ValidateRecord(&check, rec.Org, run.info.Dimensions); err != nil {
		return pendingLine{}, err
	}
	p.rec.ID, p.rec.Metadata = check.ID, check.Metadata
	if p.embed {
		p.rec.Vector = nil
	}
	return p, nil
}

// startEmbedder records an embedder in a store that has none: the one
// that made the first line's vector, or the one the options name.
func (run *importRun) startEmbedder(ctx context.Context, n int, rec store.Record) error {
	info := rec.Embedder
	if rec.Vector == nil || len(rec.Vector) != info.Dimensions {
		if run.opts.Initial == nil {
			return fmt.Errorf("%w: this store records no embedder yet and line %d has no usable vector: pass --embedder ollama (and --model) or --embedder builtin", errFatal, n)
		}
		e, err := run.opts.Embedder(ctx, *run.opts.Initial)
		if err != nil {
			return fmt.Errorf("%w: %w", errFatal, err)
		}
		run.embedder, info = e, embedderInfo(e.Info())
	}
	if err := run.st.SetEmbedder(ctx, info); err != nil {
		return fmt.Errorf("%w: %w", errFatal, err)
	}
	run.info, run.have = info, true
	return nil
}

// flush embeds what a batch of one org needs and imports it, dropping
// and reporting the lines the store refuses.
func (run *importRun) flush(ctx context.Context, batch []pendingLine) error {
	if err := run.embed(ctx, &batch); err != nil {
		return err
	}
	if len(batch) == 0 {
		return nil
	}
	id, err := operator(batch[0].rec.Org, run.opts.As)
	if err != nil {
		return err
	}
	for len(batch) > 0 {
		recs := make([]store.Record, len(batch))
		for i, p := range batch {
			recs[i] = p.rec
		}
		outs, err := run.im.Import(ctx, id, recs)
		var re *store.RecordError
		if errors.As(err, &re) && re.Index >= 0 && re.Index < len(batch) {
			run.bad(batch[re.Index].line, re.Err)
			batch = slices.Delete(batch, re.Index, re.Index+1)
			continue
		}
		if err != nil {
			return err
		}
		for _, o := range outs {
			if o == store.Imported {
				run.rep.Imported++
			} else {
				run.rep.Present++
			}
		}
		return nil
	}
	return nil
}

// embed fills in the vectors a batch needs with the store's embedder. A
// text the embedder refuses makes its line bad.
func (run *importRun) embed(ctx context.Context, batch *[]pendingLine) error {
	var texts []string
	var at []int
	for i, p := range *batch {
		if p.embed {
			texts, at = append(texts, p.rec.Content), append(at, i)
		}
	}
	if len(texts) == 0 {
		return nil
	}
	if run.embedder == nil {
		e, err := run.opts.Embedder(ctx, run.info)
		if err != nil {
			return fmt.Errorf("import: lines need vectors from the store's embedder %v: %w", run.info, err)
		}
		run.embedder = e
	}
	vecs, err := run.embedder.Embed(ctx, texts)
	if errors.Is(err, embed.ErrInput) {
		// Find the texts the embedder refuses, one by one.
		vecs = make([][]float32, len(texts))
		for i, t := range texts {
			v, err := run.embedder.Embed(ctx, []string{t})
			if err != nil && !errors.Is(err, embed.ErrInput) {
				return fmt.Errorf("import: embed: %w", err)
			}
			if err == nil {
				vecs[i] = v[0]
			}
		}
	} else if err != nil {
		return fmt.Errorf("import: embed: %w", err)
	}
	var drop []int
	for k, i := range at {
		if vecs[k] == nil {
			run.bad((*batch)[i].line, fmt.Errorf("%w: the embedder refused the content", store.ErrInvalid))
			drop = append(drop, i)
			continue
		}
		(*batch)[i].rec.Vector = vecs[k]
	}
	for j := len(drop) - 1; j >= 0; j-- {
		*batch = slices.Delete(*batch, drop[j], drop[j]+1)
	}
	return nil
}
