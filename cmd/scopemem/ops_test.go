package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/scopemem/scopemem/embed"
	"github.com/scopemem/scopemem/embed/ollamatest"
	"github.com/scopemem/scopemem/internal/pgtest"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/postgres"
	"github.com/scopemem/scopemem/store/sqlite"
)

// openSQLite opens a fresh SQLite store, closed when the test ends.
func openSQLite(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "m.db")})
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var builtin = embed.NewBuiltin(0)

// seedStore records the built-in embedder and adds n memories per org
// spread over every scope kind, with metadata, tags and an expiry on some.
func seedStore(t *testing.T, s store.Store, n int, orgs ...string) {
	t.Helper()
	if err := s.SetEmbedder(t.Context(), embedderInfo(builtin.Info())); err != nil {
		t.Fatalf("SetEmbedder: %v", err)
	}
	exp := time.Now().Add(48 * time.Hour)
	for _, org := range orgs {
		id := scope.Identity{Org: org, User: "alice", Teams: []string{"api"}, Agent: "coder", Session: "s1", Permissions: scope.AllPermissions}
		vis := id.Visible()
		var ms []store.NewMemory
		for i := range n {
			content := fmt.Sprintf("%s fact number %d about deploys and reviews", org, i)
			v, err := builtin.Embed(t.Context(), []string{content})
			if err != nil {
				t.Fatal(err)
			}
			m := store.NewMemory{Scope: vis[i%len(vis)], Content: content, Vector: v[0]}
			if i%3 == 0 {
				m.Tags, m.Metadata = []string{"deploy", "t" + fmt.Sprint(i)}, json.RawMessage(fmt.Sprintf(`{"n":%d,"src":"test"}`, i))
			}
			if i%4 == 1 {
				m.ExpiresAt = &exp
			}
			ms = append(ms, m)
		}
		if _, err := s.Add(t.Context(), id, ms); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
}

func exportString(t *testing.T, s store.Store, org string, f store.ExportFilter) string {
	t.Helper()
	id, err := operator(org, "ops")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := export(t.Context(), s, id, f, &b); err != nil {
		t.Fatalf("export(%s) = %v", org, err)
	}
	return b.String()
}

func builtinEmbedder(ctx context.Context, info store.EmbedderInfo) (embed.Embedder, error) {
	return newEmbedder(ctx, info, embedFlags{}, nil, nil)
}

// parseExport reads an export into records for comparison.
func parseExport(t *testing.T, s string) []recordJSON {
	t.Helper()
	var out []recordJSON
	for i, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var j recordJSON
		if err := json.Unmarshal([]byte(line), &j); err != nil {
			t.Fatalf("export line %d is not JSON: %v", i+1, err)
		}
		out = append(out, j)
	}
	return out
}

// recordOpts compare exported records across backends: times to the
// microsecond (PostgreSQL's precision), metadata as JSON values, vectors
// by direction.
var recordOpts = cmp.Options{
	cmpopts.EquateApproxTime(time.Microsecond),
	cmp.Transformer("json", func(r json.RawMessage) any {
		var v any
		if len(r) > 0 {
			_ = json.Unmarshal(r, &v)
		}
		return v
	}),
	cmp.Comparer(func(a, b []float32) bool { return len(a) == len(b) && (len(a) == 0 || store.Dot(a, b) > 0.9999) }),
}

func TestExportImportRoundTrip(t *testing.T) {
	type backend struct {
		name string
		open func(t *testing.T) store.Store
	}
	backends := []backend{{"sqlite", func(t *testing.T) store.Store { return openSQLite(t) }}}
	if pgtestAvailable() {
		backends = append(backends, backend{"postgres", func(t *testing.T) store.Store { s, _ := pgtest.NewStore(t); return s }})
	}
	for _, src := range backends {
		for _, dst := range backends {
			t.Run(src.name+" to "+dst.name, func(t *testing.T) {
				from := src.open(t)
				seedStore(t, from, 24, "acme", "globex")
				tests := []struct {
					name   string
					filter store.ExportFilter
					embed  bool // import without vectors: the destination embeds
				}{
					{"whole org with vectors", store.ExportFilter{Vectors: true}, false},
					{"whole org without vectors", store.ExportFilter{}, true},
					{"one user", store.ExportFilter{User: "alice", Vectors: true}, false},
				}
				for _, tc := range tests {
					t.Run(tc.name, func(t *testing.T) {
						out := exportString(t, from, "acme", tc.filter)
						recs := parseExport(t, out)
						if len(recs) == 0 {
							t.Fatalf("export(%+v) wrote nothing", tc.filter)
						}
						for _, r := range recs {
							if r.Org != "acme" {
								t.Fatalf("export(acme) wrote a memory of org %q", r.Org)
							}
						}
						to := dst.open(t)
						opts := importOptions{As: "ops", Embedder: builtinEmbedder, Batch: 7}
						if tc.embed {
							opts.Initial = &store.EmbedderInfo{Provider: "builtin", Model: "lexical-v1"}
						}
						for round, want := range []importReport{
							{Lines: len(recs), Imported: len(recs)},
							{Lines: len(recs), Present: len(recs)},
						} {
							got, err := importLines(t.Context(), to, strings.NewReader(out), opts)
							if err != nil {
								t.Fatalf("import round %d = %v", round+1, err)
							}
							if diff := cmp.Diff(want, got); diff != "" {
								t.Errorf("import round %d report mismatch (-want +got):\n%s", round+1, diff)
							}
						}
						again := parseExport(t, exportString(t, to, "acme", store.ExportFilter{Vectors: true}))
						want := parseExport(t, exportString(t, from, "acme", tc.filter))
						if !tc.filter.Vectors {
							// The destination embedded with the same built-in
							// embedder: the vectors are the source's.
							want = parseExport(t, exportString(t, from, "acme", store.ExportFilter{Vectors: true}))
						}
						if diff := cmp.Diff(want, again, recordOpts); diff != "" {
							t.Errorf("export, import, export is not a round trip (-want +got):\n%s", diff)
						}
						if g := exportString(t, to, "globex", store.ExportFilter{}); g != "" {
							t.Errorf("after importing acme, export(globex) wrote %d bytes, want none", len(g))
						}
					})
				}
			})
		}
	}
}

// pgtestAvailable reports whether the PostgreSQL cases run: with a test
// database, or in CI, where pgtest fails them without one.
func pgtestAvailable() bool {
	return os.Getenv(pgtest.EnvURL) != "" || os.Getenv("CI") != ""
}

func TestImportBadLines(t *testing.T) {
	src := openSQLite(t)
	seedStore(t, src, 3, "acme")
	good := strings.Split(strings.TrimSpace(exportString(t, src, "acme", store.ExportFilter{Vectors: true})), "\n")
	mod := func(line string, f func(map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	lines := []struct {
		text    string
		wantBad bool
	}{
		{good[0], false},
		{"this is not json", true},
		{mod(good[1], func(m map[string]any) { m["colour"] = "blue" }), true}, // unknown field
		{mod(good[1], func(m map[string]any) { m["Org"] = "globex" }), true},  // org in two cases
		{mod(good[1], func(m map[string]any) { delete(m, "content"); m["CONTENT"] = "x" }), true},
		{mod(good[1], func(m map[string]any) { m["embedder"].(map[string]any)["Model"] = "other" }), true},
		{mod(good[1], func(m map[string]any) { m["scope"] = "project:x" }), true},      // bad scope
		{mod(good[1], func(m map[string]any) { m["org"] = "globex" }), true},           // not --org
		{mod(good[1], func(m map[string]any) { m["content"] = "  " }), true},           // blank
		{mod(good[1], func(m map[string]any) { m["id"] = "42" }), true},                // not a UUID
		{mod(good[1], func(m map[string]any) { m["metadata"] = []int{1} }), true},      // metadata not an object
		{mod(good[1], func(m map[string]any) { m["vector"] = []float32{1, 2} }), true}, // the store's embedder, the wrong size
		{"", false}, // blank lines are skipped
		{good[2], false},
		{good[0], false}, // a repeat: already present
	}
	var in, errs strings.Builder
	var wantBad []int
	nonBlank := 0
	for i, l := range lines {
		in.WriteString(l.text + "\n")
		if l.text != "" {
			nonBlank++
		}
		if l.wantBad {
			wantBad = append(wantBad, i+1)
		}
	}
	dst := openSQLite(t)
	rep, err := importLines(t.Context(), dst, strings.NewReader(in.String()),
		importOptions{Org: "acme", As: "ops", Embedder: builtinEmbedder, Errors: &errs})
	if err != nil {
		t.Fatalf("importLines = %v, want the good lines imported and the bad ones reported", err)
	}
	var gotBad []int
	for _, b := range rep.Bad {
		gotBad = append(gotBad, b.Line)
		if !errors.Is(b.Err, store.ErrInvalid) {
			t.Errorf("bad line %d: %v, want an error wrapping store.ErrInvalid", b.Line, b.Err)
		}
	}
	if diff := cmp.Diff(wantBad, gotBad); diff != "" {
		t.Errorf("bad line numbers mismatch (-want +got):\n%s\nreported:\n%s", diff, errs.String())
	}
	if rep.Imported != 2 || rep.Present != 1 || rep.Lines != nonBlank {
		t.Errorf("import report = %+v, want 2 imported, 1 already present, %d lines", rep, nonBlank)
	}
	if got := strings.Count(errs.String(), "\n"); got != len(wantBad) {
		t.Errorf("reported %d lines on the error writer, want %d:\n%s", got, len(wantBad), errs.String())
	}
}

func TestImportNeedsAnEmbedder(t *testing.T) {
	src := openSQLite(t)
	seedStore(t, src, 2, "acme")
	out := exportString(t, src, "acme", store.ExportFilter{})
	_, err := importLines(t.Context(), openSQLite(t), strings.NewReader(out), importOptions{As: "ops", Embedder: builtinEmbedder})
	if !errors.Is(err, errFatal) {
		t.Errorf("import without vectors into a store with no embedder and no --embedder = %v, want errFatal", err)
	}
}

// countingEmbedder counts how often each text is embedded.
type countingEmbedder struct {
	embed.Embedder
	mu sync.Mutex
	n  map[string]int
}

func (c *countingEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	c.mu.Lock()
	for _, t := range texts {
		c.n[t]++
	}
	c.mu.Unlock()
	return c.Embedder.Embed(ctx, texts)
}

func TestReindexInterruptedAndResumed(t *testing.T) {
	type backend struct {
		name string
		open func(t *testing.T) (tenant, operator store.Store)
	}
	backends := []backend{{"sqlite", func(t *testing.T) (store.Store, store.Store) {
		path := filepath.Join(t.TempDir(), "m.db")
		open := func() store.Store {
			s, err := sqlite.Open(t.Context(), sqlite.Config{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		return open(), open()
	}}}
	if pgtestAvailable() {
		backends = append(backends, backend{"postgres", func(t *testing.T) (store.Store, store.Store) {
			s, d := pgtest.NewStore(t)
			o, err := postgres.Open(t.Context(), postgres.Config{URL: d.OwnerURL})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { o.Close() })
			return s, o
		}})
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			tenant, op := b.open(t)
			const perOrg = 150
			seedStore(t, tenant, perOrg, "acme", "globex")
			const dims = 24
			srv := ollamatest.NewServer(t, ollamatest.Config{Dims: dims, Model: "mxbai-embed-large", Delay: 20 * time.Millisecond})
			o, err := embed.NewOllama(embed.OllamaConfig{Host: srv.URL, Model: "mxbai-embed-large"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := o.Probe(t.Context()); err != nil {
				t.Fatalf("Probe: %v", err)
			}
			probes := srv.Inputs()
			e := &countingEmbedder{Embedder: o, n: map[string]int{}}

			// Interrupt after a few steps.
			ctx, cancel := context.WithCancel(t.Context())
			go func() {
				for srv.Requests() < 4 && ctx.Err() == nil {
					time.Sleep(time.Millisecond)
				}
				cancel()
			}()
			var progress bytes.Buffer
			first, err := reindex(ctx, op, e, reindexOptions{Batch: 20, Progress: &progress, Every: time.Nanosecond})
			cancel()
			if !errors.Is(err, errInterrupted) {
				t.Fatalf("interrupted reindex = %v, want errInterrupted", err)
			}
			if first.Embedded == 0 || first.Embedded >= 2*perOrg {
				t.Fatalf("interrupted reindex embedded %d of %d memories, want some but not all", first.Embedded, 2*perOrg)
			}
			// The old vectors still serve, and the store still records the
			// old embedder.
			if got, _, err := tenant.Embedder(t.Context()); err != nil || got != embedderInfo(builtin.Info()) {
				t.Errorf("Embedder during the reindex = %v, %v; want the built-in one", got, err)
			}
			alice := scope.Identity{Org: "acme", User: "alice", Teams: []string{"api"}, Permissions: scope.AllPermissions}
			q, _ := builtin.Embed(t.Context(), []string{"acme fact number 2 about deploys and reviews"})
			if hits, err := tenant.Search(t.Context(), alice, store.Query{Vector: q[0], Limit: 1}); err != nil || len(hits) != 1 || hits[0].Similarity < 0.99 {
				t.Errorf("Search with the old embedder mid-reindex = %v, %v; want the memory by its old vector", hits, err)
			}

			second, err := reindex(t.Context(), op, e, reindexOptions{Batch: 20, Progress: &progress, Every: time.Nanosecond})
			if err != nil {
				t.Fatalf("resumed reindex = %v", err)
			}
			if first.Embedded+second.Embedded != 2*perOrg {
				t.Errorf("embedded %d + %d memories, want %d in all", first.Embedded, second.Embedded, 2*perOrg)
			}
			if got := srv.Inputs() - probes; got != 2*perOrg {
				t.Errorf("the Ollama server received %d texts to embed, want %d (each memory once)", got, 2*perOrg)
			}
			for text, n := range e.n {
				if n != 1 {
					t.Errorf("%q was embedded %d times, want once", text, n)
				}
			}
			if len(e.n) != 2*perOrg {
				t.Errorf("%d distinct memories were embedded, want %d", len(e.n), 2*perOrg)
			}
			want := store.EmbedderInfo{Provider: "ollama", Model: "mxbai-embed-large", Dimensions: dims}
			if got, _, err := tenant.Embedder(t.Context()); err != nil || got != want {
				t.Errorf("Embedder after the reindex = %v, %v; want %v", got, err, want)
			}
			for _, org := range []string{"acme", "globex"} {
				for _, r := range parseExport(t, exportString(t, tenant, org, store.ExportFilter{Vectors: true})) {
					if store.Dot(r.Vector, ollamatest.Vector(r.Content, dims)) < 0.9999 {
						t.Errorf("memory %s does not carry the new model's vector of its content", r.ID)
					}
				}
			}
			if !strings.Contains(progress.String(), fmt.Sprintf("%d/%d memories (100.0%%)", 2*perOrg, 2*perOrg)) {
				t.Errorf("plain progress lines do not reach 100%%:\n%s", progress.String())
			}
			// Nothing left to do.
			if third, err := reindex(t.Context(), op, e, reindexOptions{}); err != nil || !third.UpToDate {
				t.Errorf("third reindex = %+v, %v; want up to date", third, err)
			}
		})
	}
}

func TestReindexProgressBar(t *testing.T) {
	s := openSQLite(t)
	seedStore(t, s, 30, "acme")
	var out bytes.Buffer
	res, err := reindex(t.Context(), s, embed.NewFake(embed.FakeConfig{Dims: 8}), reindexOptions{Batch: 7, Progress: &out, Terminal: true})
	if err != nil || res.Embedded != 30 {
		t.Fatalf("reindex = %+v, %v; want 30 embedded", res, err)
	}
	if !strings.Contains(out.String(), "reindex") || !strings.Contains(out.String(), "30/30") {
		t.Errorf("progress bar output lacks the description or the count:\n%q", out.String())
	}
}
