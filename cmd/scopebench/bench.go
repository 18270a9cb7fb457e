package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"regexp"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/internal/view"
)

// Config is one load run. Run fills in nothing: every field is as given.
type Config struct {
	Sessions int // concurrent sessions, each a closed loop of calls
	// Rate paces the calls: this many a second in all, each session
	// starting its calls on a fixed schedule (open loop), their latency
	// counted from the scheduled start; 0: closed loops, each call as the
	// last returns.
	Rate         float64
	Calls        int           // measured calls per session (ignored when Duration > 0)
	Duration     time.Duration // measure for this long instead of Calls
	Warmup       time.Duration // unmeasured calls before measuring
	Mix          mix
	MixText      string
	Preload      int // memories added before measuring
	PreloadConc  int // concurrent adds while preloading
	ContentBytes int
	SearchLimit  int
	CallTimeout  time.Duration
	Seed         uint64
	Verify       bool   // check every acknowledged add afterwards
	CPUProfile   string // write a CPU profile of the measured phase here
	MemProfile   string // write the allocations of the measured phase here
	Describe     string // what the target is, for the report
	Client       string // how the client speaks and runs, for the report
}

// ack is one acknowledged add_memory.
type ack struct {
	ident     int
	id        string
	content   string
	duplicate bool
}

// OpStats summarises the calls of one tool.
type OpStats struct {
	Calls  int           `json:"calls"`
	Errors int           `json:"errors"`
	PerSec float64       `json:"per_sec"`
	Mean   time.Duration `json:"mean_ns"`
	P50    time.Duration `json:"p50_ns"`
	P95    time.Duration `json:"p95_ns"`
	P99    time.Duration `json:"p99_ns"`
	Max    time.Duration `json:"max_ns"`
}

// VerifyResult is what the check after the run found.
type VerifyResult struct {
	Acknowledged int `json:"acknowledged"` // adds the server acknowledged, preload included
	Present      int `json:"present"`      // found again with their content
	Lost         int `json:"lost"`         // acknowledged, then not found
	Duplicated   int `json:"duplicated"`   // one id acknowledged for two different contents
	Merged       int `json:"merged"`       // unique content reported as a duplicate of another memory
	Mismatched   int `json:"mismatched"`   // found with other content than was sent
	Unverified   int `json:"unverified"`   // could not be read back (errors other than not found)
	// CountDelta is, summed over identities, how many more memories the
	// user scopes hold than before the run minus the acknowledged new ones:
	// 0 when nothing was stored twice or dropped (only meaningful when
	// nobody else writes to those identities during the run).
	CountDelta  int      `json:"count_delta"`
	CountErrors int      `json:"count_errors"`
	Examples    []string `json:"examples,omitempty"`
}

// Failed reports whether the check found anything wrong.
func (v VerifyResult) Failed() bool {
	return v.Lost+v.Duplicated+v.Merged+v.Mismatched+v.Unverified+v.CountErrors > 0 || v.CountDelta != 0
}

// Report is the outcome of a run.
type Report struct {
	Describe      string             `json:"describe"`
	Client        string             `json:"client"`
	Sessions      int                `json:"sessions"`
	Rate          float64            `json:"rate,omitempty"`
	Mix           string             `json:"mix"`
	Preloaded     int                `json:"preloaded"`
	PreloadTime   time.Duration      `json:"preload_ns"`
	PreloadErrors map[string]int     `json:"preload_errors,omitempty"`
	Wall          time.Duration      `json:"wall_ns"`
	Ops           map[string]OpStats `json:"ops"`
	Errors        map[string]int     `json:"errors,omitempty"`
	Verify        *VerifyResult      `json:"verify,omitempty"`

	acks []ack
}

// ErrorCount is the number of failed calls while measuring and preloading.
func (r *Report) ErrorCount() int {
	n := 0
	for _, c := range r.Errors {
		n += c
	}
	for _, c := range r.PreloadErrors {
		n += c
	}
	return n
}

// recorder collects one goroutine's observations; recorders are merged
// after the goroutines end, so nothing is locked while measuring.
type recorder struct {
	lat    map[string][]time.Duration
	opErrs map[string]int
	errs   map[string]int
	acks   []ack
}

func newRecorder() *recorder {
	return &recorder{lat: map[string][]time.Duration{}, opErrs: map[string]int{}, errs: map[string]int{}}
}

// worker makes calls on one session.
type worker struct {
	cfg   *Config
	sess  *session
	ten   *tenants
	vocab vocabulary
	run   string // unique per run: keeps contents of two runs apart
	n     int    // worker number
	seq   int
	r     *mrand.Rand
}

func newRand(seed, a, b uint64) *mrand.Rand {
	return mrand.New(mrand.NewPCG(seed^(a*0x9e3779b97f4a7c15), b))
}

// call makes one call of op and records it when rec is not nil. Its
// latency counts from due when that is set (a paced call's scheduled
// start: the time it waited for the session's previous call counts, as
// it would for a client that meant to call then), else from its start.
func (w *worker) call(ctx context.Context, op string, rec *recorder, measure bool, due time.Time) {
	ident := w.sess.fixed
	if ident < 0 {
		ident = w.ten.pick(w.r)
	}
	req := mcp.CallToolRequest{}
	req.Params.Name = op
	var content string
	switch op {
	case opAdd:
		w.seq++
		content = w.vocab.content(w.r, w.cfg.ContentBytes, fmt.Sprintf("%s-%d-%d", w.run, w.n, w.seq))
		req.Params.Arguments = map[string]any{"content": content}
	case opSearch:
		req.Params.Arguments = map[string]any{"query": w.vocab.query(w.r), "limit": w.cfg.SearchLimit}
	case opList:
		req.Params.Arguments = map[string]any{}
	}
	cctx, cancel := context.WithTimeout(withIdent(ctx, ident), w.cfg.CallTimeout)
	start := time.Now()
	if !due.IsZero() {
		start = due
	}
	res, err := w.sess.callTool(cctx, req)
	d := time.Since(start)
	cancel()
	msg := ""
	switch {
	case err != nil:
		if ctx.Err() != nil {
			return // the run was stopped: not the server's failure
		}
		msg = "protocol: " + err.Error()
	case res.isError:
		msg = "tool: " + res.text
	}
	if msg != "" {
		rec.errs[op+": "+normalizeError(msg)]++
		rec.opErrs[op]++
	} else if op == opAdd {
		if res.id == "" {
			rec.errs[op+": result without an id"]++
			rec.opErrs[op]++
		} else {
			rec.acks = append(rec.acks, ack{ident: ident, id: res.id, content: content, duplicate: res.duplicate})
		}
	}
	if measure {
		rec.lat[op] = append(rec.lat[op], d)
	}
}

func resultText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func decodeStructured(res *mcp.CallToolResult, v any) error {
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

var refPattern = regexp.MustCompile(`[0-9a-f]{8,}(-[0-9a-f]{4,})*`)

// normalizeError folds error messages that differ only in ids or
// references into one line of the report.
func normalizeError(msg string) string {
	msg = refPattern.ReplaceAllString(msg, "…")
	if len(msg) > 160 {
		msg = msg[:160] + "…"
	}
	return msg
}

// Run drives tgt as cfg says and returns what it measured. It closes the
// sessions it opens but not tgt.
func Run(ctx context.Context, cfg Config, tgt target, ten *tenants, progress io.Writer) (*Report, error) {
	if cfg.Sessions < 1 {
		return nil, fmt.Errorf("--sessions %d must be at least 1: %w", cfg.Sessions, errUsage)
	}
	if cfg.Rate < 0 || math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0) {
		return nil, fmt.Errorf("--rate %v must be a positive number of calls a second, or 0 for closed loops: %w", cfg.Rate, errUsage)
	}
	if cfg.Calls < 1 && cfg.Duration <= 0 {
		return nil, fmt.Errorf("give --calls (at least 1) or --duration: %w", errUsage)
	}
	var rb [6]byte
	_, _ = rand.Read(rb[:])
	runID := hex.EncodeToString(rb[:])
	vocab := newVocabulary(2000)
	rep := &Report{Describe: cfg.Describe, Client: cfg.Client, Sessions: cfg.Sessions, Rate: cfg.Rate, Mix: cfg.MixText, Ops: map[string]OpStats{}}

	// Connect every session.
	sessions := make([]*session, cfg.Sessions)
	errs := make([]error, cfg.Sessions)
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Go(func() { sessions[i], errs[i] = tgt.open(ctx, i) })
	}
	wg.Wait()
	closeAll := func() {
		for _, s := range sessions {
			if s != nil {
				s.close()
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		closeAll()
		return nil, err
	}
	workers := make([]*worker, cfg.Sessions)
	for i, s := range sessions {
		workers[i] = &worker{cfg: &cfg, sess: s, ten: ten, vocab: vocab, run: runID, n: i, r: newRand(cfg.Seed, uint64(i), 2)}
	}

	// The scope counts before, to find rows stored twice afterwards.
	var before map[int]int
	if cfg.Verify {
		var err error
		if before, err = countScopes(ctx, sessions, ten); err != nil {
			closeAll()
			return nil, fmt.Errorf("counting memories before the run: %w", err)
		}
	}

	var acks []ack
	// Preload.
	if cfg.Preload > 0 {
		fmt.Fprintf(progress, "preloading %d memories with %d concurrent adds...\n", cfg.Preload, cfg.PreloadConc)
		jobs := make(chan struct{})
		recs := make([]*recorder, max(cfg.PreloadConc, 1))
		start := time.Now()
		for g := range recs {
			recs[g] = newRecorder()
			w := &worker{cfg: &cfg, sess: sessions[g%len(sessions)], ten: ten, vocab: vocab, run: runID, n: 1000 + g, r: newRand(cfg.Seed, uint64(g), 3)}
			wg.Go(func() {
				for range jobs {
					w.call(ctx, opAdd, recs[g], false, time.Time{})
				}
			})
		}
	feed:
		for range cfg.Preload {
			select {
			case jobs <- struct{}{}:
			case <-ctx.Done():
				break feed
			}
		}
		close(jobs)
		wg.Wait()
		rep.PreloadTime = time.Since(start)
		rep.PreloadErrors = map[string]int{}
		for _, r := range recs {
			acks = append(acks, r.acks...)
			for k, v := range r.errs {
				rep.PreloadErrors[k] += v
			}
		}
		rep.Preloaded = len(acks)
		fmt.Fprintf(progress, "preloaded %d in %s (%.0f adds/s)\n", rep.Preloaded, rep.PreloadTime.Round(time.Millisecond), float64(rep.Preloaded)/rep.PreloadTime.Seconds())
	}

	// Warm up, then measure: each session is a closed loop, or with a
	// rate calls on its schedule: every Sessions/Rate, the sessions' starts
	// spread evenly over that period.
	phase := func(measure bool, calls int, d time.Duration) []*recorder {
		recs := make([]*recorder, len(workers))
		begin := time.Now()
		var deadline time.Time
		if d > 0 {
			deadline = begin.Add(d)
		}
		var every time.Duration
		if cfg.Rate > 0 {
			every = time.Duration(float64(cfg.Sessions) / cfg.Rate * float64(time.Second))
		}
		for i, w := range workers {
			recs[i] = newRecorder()
			wg.Go(func() {
				for n := 0; ctx.Err() == nil; n++ {
					var due time.Time
					if every > 0 {
						due = begin.Add(every*time.Duration(n) + every*time.Duration(i)/time.Duration(cfg.Sessions))
						if d > 0 && due.After(deadline) {
							return
						}
					}
					if d > 0 {
						if time.Now().After(deadline) {
							return
						}
					} else if n >= calls {
						return
					}
					if wait := time.Until(due); wait > 0 && !sleepCtx(ctx, wait) {
						return
					}
					w.call(ctx, cfg.Mix.pick(w.r), recs[i], measure, due)
				}
			})
		}
		wg.Wait()
		return recs
	}
	if cfg.Warmup > 0 {
		fmt.Fprintf(progress, "warming up for %s...\n", cfg.Warmup)
		for _, r := range phase(false, 0, cfg.Warmup) {
			acks = append(acks, r.acks...)
		}
	}
	fmt.Fprintf(progress, "measuring...\n")
	if cfg.CPUProfile != "" {
		stop, err := startProfile(cfg.CPUProfile)
		if err != nil {
			closeAll()
			return nil, err
		}
		defer stop()
	}
	start := time.Now()
	recs := phase(true, cfg.Calls, cfg.Duration)
	rep.Wall = time.Since(start)
	if cfg.CPUProfile != "" {
		pprof.StopCPUProfile()
	}
	if cfg.MemProfile != "" {
		if err := writeAllocs(cfg.MemProfile); err != nil {
			closeAll()
			return nil, err
		}
	}
	rep.Errors = map[string]int{}
	all := []time.Duration{}
	allErrs := 0
	perOp := map[string][]time.Duration{}
	opErrs := map[string]int{}
	for _, r := range recs {
		acks = append(acks, r.acks...)
		for op, l := range r.lat {
			perOp[op] = append(perOp[op], l...)
			all = append(all, l...)
		}
		for k, v := range r.errs {
			rep.Errors[k] += v
		}
		for k, v := range r.opErrs {
			opErrs[k] += v
			allErrs += v
		}
	}
	for op, l := range perOp {
		rep.Ops[op] = summarize(l, opErrs[op], rep.Wall)
	}
	rep.Ops["all"] = summarize(all, allErrs, rep.Wall)
	rep.acks = acks
	closeAll()
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	if cfg.Verify {
		fmt.Fprintf(progress, "verifying %d acknowledged adds...\n", len(acks))
		v := verify(ctx, tgt, ten, acks, before, max(cfg.PreloadConc, cfg.Sessions))
		rep.Verify = &v
	}
	return rep, nil
}

// sleepCtx sleeps for d, or until ctx ends; it reports whether it slept
// the whole time.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// writeAllocs writes the allocations made so far (pprof's allocs
// profile) to path.
func writeAllocs(path string) error {
	f, err := createFile(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("allocation profile: %w", err)
	}
	return f.Close()
}

// startProfile starts a CPU profile into path; stop ends it if Run did
// not.
func startProfile(path string) (stop func(), err error) {
	f, err := createFile(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// summarize computes exact percentiles from every latency.
func summarize(lat []time.Duration, errs int, wall time.Duration) OpStats {
	st := OpStats{Calls: len(lat), Errors: errs}
	if len(lat) == 0 {
		return st
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	st.Mean = sum / time.Duration(len(lat))
	st.P50 = percentile(lat, 0.50)
	st.P95 = percentile(lat, 0.95)
	st.P99 = percentile(lat, 0.99)
	st.Max = lat[len(lat)-1]
	if wall > 0 {
		st.PerSec = float64(len(lat)) / wall.Seconds()
	}
	return st
}

// percentile returns the nearest-rank percentile of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p*float64(len(sorted))+0.999999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// countScopes returns, for every identity the sessions can act as, how
// many memories its user scope holds.
func countScopes(ctx context.Context, sessions []*session, ten *tenants) (map[int]int, error) {
	out := map[int]int{}
	for _, s := range sessions {
		idents := []int{s.fixed}
		if s.fixed < 0 {
			idents = make([]int, len(ten.ids))
			for i := range idents {
				idents[i] = i
			}
		}
		for _, ident := range idents {
			if _, done := out[ident]; done {
				continue
			}
			n, err := userCount(ctx, s, ident)
			if err != nil {
				return nil, err
			}
			out[ident] = n
		}
	}
	return out, nil
}

// userCount asks list_scopes, as ident, how many memories its user scope
// holds.
func userCount(ctx context.Context, s *session, ident int) (int, error) {
	req := mcp.CallToolRequest{}
	req.Params.Name = opList
	req.Params.Arguments = map[string]any{}
	cctx, cancel := context.WithTimeout(withIdent(ctx, ident), 30*time.Second)
	defer cancel()
	res, err := s.c.CallTool(cctx, req)
	if err != nil {
		return 0, err
	}
	if res.IsError {
		return 0, fmt.Errorf("list_scopes: %s", resultText(res))
	}
	var out view.Scopes
	if err := decodeStructured(res, &out); err != nil {
		return 0, err
	}
	for _, sc := range out.Scopes {
		if sc.Scope == "user" {
			return sc.Count, nil
		}
	}
	return 0, errors.New("list_scopes shows no user scope")
}
