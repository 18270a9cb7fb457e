package sqlite_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/sqlite"
	"github.com/scopemem/scopemem/store/storetest"
)

const benchDims = 768

// alicesScopes are the scopes the benchmark memories are spread over.
var alicesScopes = []scope.Scope{{Kind: scope.KindUser, ID: "alice"}, {Kind: scope.KindTeam, ID: "api"}, {Kind: scope.KindOrg}}

// fixture is a store holding n memories from a [corpus] that alice sees,
// spread over her user scope, her team and the org, beside 2,000 memories
// of another org that every search must skip.
type fixture struct {
	s     *sqlite.Store
	path  string
	alice scope.Identity
	c     *corpus
	recs  []store.Record // alice's memories
}

// template is a database file built once per test process and copied
// for each fixture that needs its size.
type template struct {
	path string
	recs []store.Record
}

var (
	templatesMu  sync.Mutex
	templates    = map[[2]int]*template{}
	templatesDir string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if templatesDir != "" {
		os.RemoveAll(templatesDir)
	}
	os.Exit(code)
}

// buildTemplate returns the template of n memories of dims dimensions,
// building it on first use.
func buildTemplate(tb testing.TB, n, dims int) *template {
	tb.Helper()
	templatesMu.Lock()
	defer templatesMu.Unlock()
	if t := templates[[2]int{n, dims}]; t != nil {
		return t
	}
	if templatesDir == "" {
		dir, err := os.MkdirTemp("", "scopemem-bench-")
		if err != nil {
			tb.Fatal(err)
		}
		templatesDir = dir
	}
	t := &template{path: filepath.Join(templatesDir, fmt.Sprintf("%d-%d.db", n, dims))}
	s, err := sqlite.Open(tb.Context(), sqlite.Config{Path: t.path})
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	if err := s.SetEmbedder(tb.Context(), store.EmbedderInfo{Provider: "bench", Model: "corpus", Dimensions: dims}); err != nil {
		tb.Fatal(err)
	}
	t.recs = newCorpus(dims, 1).records(n, "acme", alicesScopes)
	other := newCorpus(dims, 2).records(2000, "globex", []scope.Scope{{Kind: scope.KindUser, ID: "alice"}, {Kind: scope.KindOrg}})
	for _, batch := range []struct {
		org  string
		recs []store.Record
	}{{"acme", t.recs}, {"globex", other}} {
		admin := storetest.Admin(batch.org, "admin")
		for rs := batch.recs; len(rs) > 0; {
			k := min(1000, len(rs))
			if _, err := s.Import(tb.Context(), admin, rs[:k]); err != nil {
				tb.Fatal(err)
			}
			rs = rs[k:]
		}
	}
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
	templates[[2]int{n, dims}] = t
	return t
}

func newFixture(tb testing.TB, n, dims int) *fixture {
	tb.Helper()
	t := buildTemplate(tb, n, dims)
	path := filepath.Join(tb.TempDir(), "bench.db")
	src, err := os.ReadFile(t.path)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, src, 0o600); err != nil {
		tb.Fatal(err)
	}
	return &fixture{s: openAt(tb, sqlite.Config{Path: path}), path: path, alice: storetest.Member("acme", "alice", "api"),
		c: newCorpus(dims, 3), recs: t.recs}
}

// queries returns n queries of the given mode ("vector", "hybrid" or
// "text") drawn from the fixture's corpus.
func (f *fixture) queries(mode string, n int) []store.Query {
	out := make([]store.Query, n)
	for i := range out {
		q := store.Query{Limit: 10}
		if mode != "text" {
			q.Vector = f.c.vector()
		}
		if mode != "vector" {
			q.Text = f.c.question()
		}
		out[i] = q
	}
	return out
}

// benchSearch runs the queries in turn, as one session would.
func benchSearch(b *testing.B, f *fixture, mode string) {
	qs := f.queries(mode, 512)
	// Warm the cache, as a running server's would be.
	if _, err := f.s.Search(b.Context(), f.alice, qs[0]); err != nil {
		b.Fatal(err)
	}
	// Collect the garbage of building the fixture and loading the cache
	// now: else its collection runs during the first mode measured.
	runtime.GC()
	i := 0
	cpu := cpuTime(b)
	for b.Loop() {
		hits, err := f.s.Search(b.Context(), f.alice, qs[i%len(qs)])
		if err != nil || (mode != "text" && len(hits) == 0) {
			b.Fatalf("Search = %d hits, %v", len(hits), err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "searches/s")
	b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N)/1e3, "cpu-µs/op")
}

// cpuTime returns the CPU time this process has used (user and system):
// on a shared machine, CPU per operation varies far less than wall time.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// goroutinesCreated returns how many goroutines the process has started:
// each one a call starts may wake an idle thread.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// BenchmarkSearch measures one session's searches per second at 2,000
// memories of 768 dimensions.
func BenchmarkSearch(b *testing.B) {
	f := newFixture(b, 2000, benchDims)
	for _, mode := range []string{"vector", "hybrid", "text"} {
		b.Run(mode, func(b *testing.B) { benchSearch(b, f, mode) })
	}
}

// BenchmarkSearch50k measures one session's searches per second at 50,000
// memories of 768 dimensions, and reports the recall@10 of vector searches
// against an exact scan.
func BenchmarkSearch50k(b *testing.B) {
	f := newFixture(b, 50000, benchDims)
	for _, mode := range []string{"vector", "hybrid", "text"} {
		b.Run(mode, func(b *testing.B) { benchSearch(b, f, mode) })
	}
	b.Run("recall", func(b *testing.B) {
		var recall float64
		for b.Loop() {
			recall = f.recall(b, 50)
		}
		b.ReportMetric(recall, "recall@10")
	})
}

// BenchmarkAdd measures one session's single-memory adds per second into a
// store of 2,000 memories of 768 dimensions (each add checks its scope for
// duplicates).
func BenchmarkAdd(b *testing.B) {
	f := newFixture(b, 2000, benchDims)
	if _, err := f.s.Search(b.Context(), f.alice, store.Query{Vector: f.c.vector()}); err != nil {
		b.Fatal(err)
	}
	i := 0
	cpu, started := cpuTime(b), goroutinesCreated()
	for b.Loop() {
		i++
		m := store.NewMemory{Scope: alicesScopes[i%len(alicesScopes)], Content: fmt.Sprintf("%s (%d)", f.c.sentence(), i), Vector: f.c.vector()}
		if _, err := f.s.Add(b.Context(), f.alice, []store.NewMemory{m}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "adds/s")
	b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N)/1e3, "cpu-µs/op")
	b.ReportMetric(float64(goroutinesCreated()-started)/float64(b.N), "goroutines/op")
}

// BenchmarkOpen measures opening an existing file of 2,000 memories, and
// opening it plus its first search, which loads the vectors.
func BenchmarkOpen(b *testing.B) {
	f := newFixture(b, 2000, benchDims)
	q := f.queries("hybrid", 1)[0]
	for _, first := range []bool{false, true} {
		b.Run(map[bool]string{false: "open", true: "open+search"}[first], func(b *testing.B) {
			for b.Loop() {
				s, err := sqlite.Open(b.Context(), sqlite.Config{Path: f.path})
				if err != nil {
					b.Fatal(err)
				}
				if first {
					if _, err := s.Search(b.Context(), f.alice, q); err != nil {
						b.Fatal(err)
					}
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// recall returns the mean recall@10 of n vector searches against an exact
// scan of the fixture's memories.
func (f *fixture) recall(tb testing.TB, n int) float64 {
	tb.Helper()
	var sum float64
	for _, q := range f.queries("vector", n) {
		hits, err := f.s.Search(tb.Context(), f.alice, q)
		if err != nil {
			tb.Fatal(err)
		}
		want := exactTop(f.recs, q.Vector, 10)
		found := 0
		for _, h := range hits {
			if slices.Contains(want, h.ID) {
				found++
			}
		}
		sum += float64(found) / float64(len(want))
	}
	return sum / float64(n)
}

// exactTop returns the ids of the k records most similar to v.
func exactTop(recs []store.Record, v []float32, k int) []string {
	type scored struct {
		id  string
		sim float64
	}
	top := make([]scored, 0, k+1)
	for _, r := range recs {
		var s float64
		for i, x := range r.Vector {
			s += float64(x) * float64(v[i])
		}
		if len(top) == k && s <= top[k-1].sim {
			continue
		}
		top = append(top, scored{r.ID, s})
		slices.SortFunc(top, func(a, b scored) int {
			if a.sim > b.sim {
				return -1
			}
			if a.sim < b.sim {
				return 1
			}
			return 0
		})
		top = top[:min(len(top), k)]
	}
	out := make([]string, len(top))
	for i, s := range top {
		out[i] = s.id
	}
	return out
}

// TestRecall checks that vector searches find the exact scan's top ten at
// a size where the scan is approximate.
func TestRecall(t *testing.T) {
	n := 12000
	if testing.Short() {
		n = 4000
	}
	f := newFixture(t, n, benchDims)
	got := f.recall(t, 40)
	t.Logf("recall@10 at %d memories over %d scopes: %.3f", n, len(alicesScopes), got)
	if got < 0.95 {
		t.Errorf("recall@10 at %d memories = %.3f, want at least 0.95", n, got)
	}
}

// TestNearDuplicateLargeScope checks the near-duplicate check of Add in
// scopes large enough that it compares only the rows whose codes are
// nearest.
func TestNearDuplicateLargeScope(t *testing.T) {
	f := newFixture(t, 2000, benchDims)
	for _, i := range []int{5, 1000, 1999} {
		r := f.recs[i]
		near := storetest.Mix(r.Vector, f.c.vector(), 0.1)
		got, err := f.s.Add(t.Context(), f.alice, []store.NewMemory{{Scope: r.Scope, Content: "reworded: " + r.Content, Vector: near}})
		if err != nil {
			t.Fatalf("Add = %v", err)
		}
		if !got[0].Duplicate || got[0].ID != r.ID {
			t.Errorf("Add(near-copy of %s in %s) = %s duplicate %v, want a duplicate of %s", r.ID, r.Scope.Qualified(), got[0].ID, got[0].Duplicate, r.ID)
		}
		fresh, err := f.s.Add(t.Context(), f.alice, []store.NewMemory{{Scope: r.Scope, Content: "unrelated: " + r.Content, Vector: f.c.vector()}})
		if err != nil || fresh[0].Duplicate {
			t.Errorf("Add(unrelated vector) = duplicate %v, %v; want a new memory", fresh[0].Duplicate, err)
		}
	}
}

// fewWordsFact is the n-th memory of a corpus of twenty words, as
// e2e/bench.mjs writes them: "memory n: eight of the words noted on day
// d". Each word is in about a third of the rows and "memory", "noted",
// "on" and "day" in all of them, so a query's terms hold thousands of
// postings between them.
func fewWordsFact(n int) string {
	words := strings.Fields("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec romeo sierra tango")
	w := make([]string, 0, 8)
	for i, x := 0, n+1; i < 8; i, x = i+1, x/3+(i+1)*7919+n {
		w = append(w, words[x%len(words)])
	}
	return fmt.Sprintf("memory %d: %s noted on day %d", n, strings.Join(w, " "), n%365)
}

// BenchmarkSearchFewWords measures searches over 2,000 memories of one
// scope written from twenty words ([fewWordsFact]), each query another
// memory's text: the full-text half scores about 5,000 postings a search.
func BenchmarkSearchFewWords(b *testing.B) { benchFewWords(b, 2000) }

// BenchmarkSearchFewWords50k is BenchmarkSearchFewWords over 50,000
// memories, the corpus of e2e/bench.mjs --preload 50000: each of a
// query's eight words is in about a third of the rows.
func BenchmarkSearchFewWords50k(b *testing.B) { benchFewWords(b, 50000) }

func benchFewWords(b *testing.B, n int) {
	s := openAt(b, sqlite.Config{Path: filepath.Join(b.TempDir(), "few.db")})
	if err := s.SetEmbedder(b.Context(), store.EmbedderInfo{Provider: "bench", Model: "corpus", Dimensions: benchDims}); err != nil {
		b.Fatal(err)
	}
	c := newCorpus(benchDims, 4)
	user := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	recs := c.records(n, "acme", []scope.Scope{user})
	for i := range recs {
		recs[i].Content = fewWordsFact(i)
	}
	if _, err := s.Import(b.Context(), storetest.Admin("acme", "admin"), recs); err != nil {
		b.Fatal(err)
	}
	alice := storetest.Member("acme", "alice", "api")
	for _, mode := range []string{"text", "hybrid"} {
		b.Run(mode, func(b *testing.B) {
			qs := make([]store.Query, 512)
			for i := range qs {
				qs[i] = store.Query{Text: fewWordsFact(i * 3), Limit: 10, Scopes: []scope.Scope{user}}
				if mode == "hybrid" {
					qs[i].Vector = c.vector()
				}
			}
			if _, err := s.Search(b.Context(), alice, qs[0]); err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			i := 0
			cpu := cpuTime(b)
			for b.Loop() {
				hits, err := s.Search(b.Context(), alice, qs[i%len(qs)])
				if err != nil || len(hits) == 0 {
					b.Fatalf("Search = %d hits, %v", len(hits), err)
				}
				i++
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "searches/s")
			b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N)/1e3, "cpu-µs/op")
		})
	}
}
