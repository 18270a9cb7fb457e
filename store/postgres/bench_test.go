package postgres_test

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/pgvector/pgvector-go"
	pgxvec "github.com/pgvector/pgvector-go/pgx"

	"github.com/scopemem/scopemem/internal/pgtest"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/postgres"
)

// benchDims is the dimension of the benchmark vectors (nomic-embed-text).
const benchDims = 768

// corpus makes vectors that look like sentence embeddings rather than
// isotropic noise (on which no approximate index recalls anything): a
// direction every vector shares, a few hundred topic centroids, and noise
// whose variance decays across dimensions, then normalized. Two vectors
// of one topic have a cosine around 0.6, of different topics around 0.2,
// so no two are near-duplicates (0.97).
type corpus struct {
	mean   []float32
	topics [][]float32
	sigma  []float32
}

// newCorpus builds a corpus with the given number of topics.
func newCorpus(seed uint64, topics int) *corpus {
	r := rand.New(rand.NewPCG(seed, 1))
	c := &corpus{mean: unit(gaussian(r, benchDims)), sigma: make([]float32, benchDims)}
	for range topics {
		c.topics = append(c.topics, unit(gaussian(r, benchDims)))
	}
	var norm float64
	for i := range c.sigma {
		s := 1 / math.Sqrt(1+float64(i)/40)
		c.sigma[i] = float32(s)
		norm += s * s
	}
	for i := range c.sigma { // noise of expected norm 0.8
		c.sigma[i] *= float32(0.8 / math.Sqrt(norm))
	}
	return c
}

// vector draws one vector of the given topic.
func (c *corpus) vector(r *rand.Rand, topic int) []float32 {
	t := c.topics[topic%len(c.topics)]
	v := make([]float32, benchDims)
	for i := range v {
		v[i] = 0.5*c.mean[i] + t[i] + c.sigma[i]*float32(r.NormFloat64())
	}
	return unit(v)
}

func gaussian(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func unit(v []float32) []float32 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	k := float32(1 / math.Sqrt(s))
	for i := range v {
		v[i] *= k
	}
	return v
}

// orgTopics returns the topics an org of the given size writes about:
// nt topics from first on, larger orgs more of them.
func (c *corpus) orgTopics(org string, size int) (first, nt int) {
	h := fnv.New64a()
	h.Write([]byte(org))
	return int(h.Sum64() % uint64(len(c.topics))), min(len(c.topics), 3+size/300)
}

// orgMemories draws the first n memories of an org of the given size,
// all in its org scope; the same org, size and seed give the same stream.
func (c *corpus) orgMemories(org string, size, n int, seed uint64) []store.NewMemory {
	r := rand.New(rand.NewPCG(seed, 2))
	first, nt := c.orgTopics(org, size)
	ms := make([]store.NewMemory, n)
	words := []string{"deploy", "billing", "oauth", "latency", "schema", "onboarding", "pricing", "incident", "release", "backup"}
	for i := range ms {
		t := first + r.IntN(nt)
		ms[i] = store.NewMemory{
			Scope:   scope.Scope{Kind: scope.KindOrg},
			Content: fmt.Sprintf("%s note %d on topic %d: %s and %s", org, i, t%len(c.topics), words[r.IntN(len(words))], words[r.IntN(len(words))]),
			Vector:  c.vector(r, t),
		}
	}
	return ms
}

// member is a reader of org with every permission it needs to search.
func member(org string) scope.Identity {
	return scope.Identity{Org: org, User: "reader", Permissions: []scope.Permission{scope.PermRead, scope.PermWrite, scope.PermShare}}
}

// benchStore opens a store on a fresh database with the 768-dimension
// embedder recorded.
func benchStore(b testing.TB, cfg postgres.Config) (*postgres.Store, *pgtest.Database) {
	s, d := pgtest.NewStore(b)
	if err := s.SetEmbedder(context.Background(), store.EmbedderInfo{Provider: "bench", Model: "clustered", Dimensions: benchDims}); err != nil {
		b.Fatal(err)
	}
	if cfg != (postgres.Config{}) {
		cfg.URL = d.RuntimeURL
		o, err := postgres.Open(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { o.Close() })
		return o, d
	}
	return s, d
}

// addAll adds ms as id in batches.
func addAll(tb testing.TB, s *postgres.Store, id scope.Identity, ms []store.NewMemory, batch int) {
	tb.Helper()
	for i := 0; i < len(ms); i += batch {
		if _, err := s.Add(context.Background(), id, ms[i:min(i+batch, len(ms))]); err != nil {
			tb.Fatalf("Add: %v", err)
		}
	}
}

// BenchmarkSearch1k is one search of a caller whose visible scopes hold
// 1,000 memories (its org scope): a vector search, and a hybrid one whose
// query text shares words with most memories.
func BenchmarkSearch1k(b *testing.B) {
	s, _ := benchStore(b, postgres.Config{})
	c := newCorpus(1, 300)
	id := member("acme")
	addAll(b, s, id, c.orgMemories("acme", 1000, 1000, 7), 500)
	r := rand.New(rand.NewPCG(3, 4))
	words := []string{"deploy", "billing", "oauth", "latency", "schema", "onboarding", "pricing", "incident", "release", "backup"}
	queries := make([]store.Query, 64)
	for i := range queries {
		queries[i] = store.Query{Vector: c.vector(r, r.IntN(300)), Limit: 10,
			Text: words[r.IntN(len(words))] + " " + words[r.IntN(len(words))] + " notes"}
	}
	ctx := context.Background()
	for _, mode := range []string{"vector", "hybrid"} {
		b.Run(mode, func(b *testing.B) {
			i := 0
			for b.Loop() {
				q := queries[i%len(queries)]
				if mode == "vector" {
					q.Text = ""
				}
				hits, err := s.Search(ctx, id, q)
				if err != nil || len(hits) != 10 {
					b.Fatalf("Search: %d hits, %v", len(hits), err)
				}
				i++
			}
		})
	}
}

// BenchmarkAddBatch adds batches of 1,000 memories with precomputed
// vectors, each batch into a fresh org (so every batch pays the same
// duplicate check), and reports memories per second.
func BenchmarkAddBatch(b *testing.B) {
	s, _ := benchStore(b, postgres.Config{})
	c := newCorpus(1, 300)
	batches := make([][]store.NewMemory, 8)
	for i := range batches {
		batches[i] = c.orgMemories("org", 1000, 1000, uint64(100+i))
	}
	ctx := context.Background()
	n := 0
	for b.Loop() {
		org := "org" + strconv.Itoa(n)
		if _, err := s.Add(ctx, member(org), batches[n%len(batches)]); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n*1000)/b.Elapsed().Seconds(), "memories/s")
}

// BenchmarkAddOne adds one memory per call to a scope of 1,000 whose
// copy the vector cache holds (as under a mixed load, where searches
// keep it loaded and every add patches it): the duplicate check reads
// the copy, so the database's share is the statements and their round
// trips.
func BenchmarkAddOne(b *testing.B) {
	s, _ := benchStore(b, postgres.Config{})
	c := newCorpus(1, 300)
	id := member("acme")
	addAll(b, s, id, c.orgMemories("acme", 1000, 1000, 7), 500)
	ctx := context.Background()
	more := c.orgMemories("acme", 1000, 20000, 8)
	if _, err := s.Search(ctx, id, store.Query{Vector: more[0].Vector, Limit: 10}); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		m := more[i%len(more)]
		m.Content = fmt.Sprintf("%s (added %d)", m.Content, i)
		if _, err := s.Add(ctx, id, []store.NewMemory{m}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkUpdateDelete reads one memory of a scope of 1,000, changes
// it (its tags), or adds one and deletes it: each a statement that finds
// the memory by its primary key, in one transaction.
func BenchmarkUpdateDelete(b *testing.B) {
	s, _ := benchStore(b, postgres.Config{})
	c := newCorpus(1, 300)
	id := member("acme")
	addAll(b, s, id, c.orgMemories("acme", 1000, 1000, 7), 500)
	ctx := context.Background()
	added, err := s.Add(ctx, id, c.orgMemories("acme", 1, 1, 9))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("get", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Get(ctx, id, added[0].ID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("update", func(b *testing.B) {
		i := 0
		for b.Loop() {
			tags := []string{"t" + strconv.Itoa(i%7)}
			if _, err := s.Update(ctx, id, added[0].ID, store.Patch{Tags: &tags}); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	more := c.orgMemories("acme", 1000, 20000, 8)
	b.Run("delete", func(b *testing.B) {
		i := 0
		for b.Loop() {
			b.StopTimer()
			m := more[i%len(more)]
			m.Content = fmt.Sprintf("%s (to delete %d)", m.Content, i)
			a, err := s.Add(ctx, id, []store.NewMemory{m})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := s.Delete(ctx, id, a[0].ID); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// scaleEnv runs TestScale when set: its value is the total number of
// memories to load (at least 200,000), or anything else (e.g. 1) for
// the full 1,000,000.
const scaleEnv = "SCOPEMEM_BENCH_SCALE"

// scaleTotal reads the total of TestScale from scaleEnv.
func scaleTotal(v string) int {
	if n, err := strconv.Atoi(v); err == nil && n >= 200_000 {
		return n
	}
	return 1_000_000
}

// TestScale loads memories over many orgs the way an operator would
// (the first 10,000 through Store.Add, the rest through Store.Import in
// bulk, then one Maintain pass that builds the large scopes' HNSW
// indexes) and measures search latency and recall per scope size. It
// takes minutes and gigabytes, so it runs only with SCOPEMEM_BENCH_SCALE
// set; see BENCHMARKS.md for the command.
func TestScale(t *testing.T) {
	v := os.Getenv(scaleEnv)
	if v == "" {
		t.Skip(scaleEnv + " unset: the 1,000,000-memory benchmark runs only on request (see BENCHMARKS.md)")
	}
	total := scaleTotal(v)
	ctx := context.Background()
	s, d := pgtest.NewStore(t)
	if err := s.SetEmbedder(ctx, store.EmbedderInfo{Provider: "bench", Model: "clustered", Dimensions: benchDims}); err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, d.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if err := pgxvec.RegisterTypes(ctx, admin); err != nil {
		t.Fatal(err)
	}
	c := newCorpus(1, 300)

	// Org sizes, for 1,000,000: 3 orgs of 100,000, 3 of 10,000, 5 probes
	// of 1,000, and 9,989 small orgs (log-normal sizes, median about 30)
	// filling the rest. A smaller total keeps the skew: total/100 orgs,
	// 3*total/1,000,000 rounded (at least one) of 100,000.
	type org struct {
		name    string
		n, size int // load the first n of size memories
	}
	var big, mid, probes, small []org
	for i := range max(1, (3*total+500_000)/1_000_000) {
		big = append(big, org{fmt.Sprintf("big%d", i), 100_000, 100_000})
	}
	for i := range 3 {
		mid = append(mid, org{fmt.Sprintf("mid%d", i), 10_000, 10_000})
	}
	for i := range 5 {
		probes = append(probes, org{fmt.Sprintf("probe%d", i), 1_000, 1_000})
	}
	rest := total - 100_000*len(big) - 30_000 - 5_000
	r := rand.New(rand.NewPCG(9, 9))
	raw := make([]float64, total/100-len(big)-len(mid)-len(probes))
	var sum float64
	for i := range raw {
		raw[i] = math.Exp(3.4 + 1.1*r.NormFloat64())
		sum += raw[i]
	}
	left := rest
	for i := range raw {
		n := max(1, int(raw[i]*float64(rest)/sum))
		if i == len(raw)-1 {
			n = left
		}
		n = min(n, left-(len(raw)-1-i))
		left -= n
		small = append(small, org{fmt.Sprintf("small%d", i), n, n})
	}
	t.Logf("layout: %d memories in %d orgs: %d of 100,000, %d of 10,000, %d probes of 1,000, %d small",
		total, len(big)+len(mid)+len(probes)+len(small), len(big), len(mid), len(probes), len(small))

	// The orgs of phase one (10,000 memories in all): the probes and
	// small orgs up to the total.
	var phase1, phase2 []org
	total1 := 0
	phase1 = append(phase1, probes...)
	total1 += 5_000
	for _, o := range small {
		if total1+o.n <= 10_000 && len(phase2) == 0 {
			phase1 = append(phase1, o)
			total1 += o.n
			continue
		}
		phase2 = append(phase2, o)
	}
	if total1 != 10_000 {
		// top up with one more org of the exact remainder
		phase1 = append(phase1, org{"fill", 10_000 - total1, 10_000 - total1})
		total1 = 10_000
	}

	// load stores each org's memories in batches of 1,000 with workers
	// clients, through Add (duplicate checks) or Import (bulk, as
	// records, the way an operator restores or migrates an org).
	load := func(orgs []org, workers int, bulk bool) (rows int, took time.Duration) {
		start := time.Now()
		var next atomic.Int64
		var n atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= len(orgs) {
						return
					}
					o := orgs[i]
					id := member(o.name)
					id.Permissions = append(id.Permissions, scope.PermAdmin)
					all := c.orgMemories(o.name, o.size, o.n, 11)
					for j := 0; j < len(all); j += 1000 {
						ms := all[j:min(j+1000, len(all))]
						var err error
						if bulk {
							_, err = s.Import(ctx, id, records(o.name, ms))
						} else {
							_, err = s.Add(ctx, id, ms)
						}
						if err != nil {
							errs <- fmt.Errorf("load %s: %w", o.name, err)
							return
						}
						n.Add(int64(len(ms)))
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		return int(n.Load()), time.Since(start)
	}

	queries := func(o org, k int) [][]float32 {
		r := rand.New(rand.NewPCG(uint64(len(o.name)), 77))
		first, nt := c.orgTopics(o.name, o.size)
		qs := make([][]float32, k)
		for i := range qs {
			// About the org's own topics, as a real query would be.
			qs[i] = c.vector(r, first+r.IntN(nt))
		}
		return qs
	}
	// exact is the true top 10 of a query, by a sequential read of the
	// scope's rows (the expression differs from the per-scope indexes',
	// so no approximate index can answer it).
	truth := map[string][]string{}
	exact := func(o org, i int, q []float32) []string {
		key := o.name + "/" + strconv.Itoa(i)
		if ids, ok := truth[key]; ok {
			return ids
		}
		rows, err := admin.Query(ctx, `SELECT id::text FROM memories WHERE org_id = $1 AND scope_kind = 'org' AND scope_id = ''
			ORDER BY embedding <=> $2 LIMIT 10`, o.name, pgvector.NewVector(q))
		if err != nil {
			t.Fatal(err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		truth[key] = ids
		return ids
	}
	type result struct{ p50, p90, p99, recall float64 }
	measure := func(st *postgres.Store, orgs []org, perOrg int) result {
		var lat []float64
		var hit, want int
		for _, o := range orgs {
			id := member(o.name)
			qs := queries(o, perOrg)
			for _, q := range qs[:5] { // warm up
				st.Search(ctx, id, store.Query{Vector: q, Limit: 10})
			}
			// Time the searches back to back, then check them against
			// exact search, so that the exact scans do not interleave.
			got := make([][]store.Hit, len(qs))
			for i, q := range qs {
				start := time.Now()
				hits, err := st.Search(ctx, id, store.Query{Vector: q, Limit: 10})
				lat = append(lat, float64(time.Since(start).Microseconds())/1000)
				if err != nil {
					t.Fatal(err)
				}
				got[i] = hits
			}
			for i, q := range qs {
				truth := exact(o, i, q)
				for _, h := range got[i] {
					if slices.Contains(truth, h.ID) {
						hit++
					}
				}
				want += len(truth)
			}
		}
		slices.Sort(lat)
		pct := func(p float64) float64 { return lat[int(p*float64(len(lat)-1))] }
		return result{p50: pct(0.5), p90: pct(0.9), p99: pct(0.99), recall: float64(hit) / float64(max(want, 1))}
	}
	report := func(name string, r result) {
		t.Logf("%-34s p50 %7.3f ms  p90 %7.3f ms  p99 %7.3f ms  recall@10 %.3f", name, r.p50, r.p90, r.p99, r.recall)
	}
	analyze := func() {
		start := time.Now()
		if _, err := admin.Exec(ctx, `VACUUM ANALYZE memories`); err != nil {
			t.Fatal(err)
		}
		t.Logf("VACUUM ANALYZE in %v", time.Since(start).Round(time.Millisecond))
	}

	rows, took := load(phase1, 2, false)
	t.Logf("phase 1 (Add): %d memories in %d orgs in %v (%.0f/s, 2 clients)", rows, len(phase1), took.Round(time.Millisecond), float64(rows)/took.Seconds())
	analyze()
	at10k := measure(s, probes, 200)
	report("1k scope, 10k total", at10k)

	// Phase two, in bulk: every other org, the large ones included, whose
	// indexes do not exist yet; then one Maintain pass builds them.
	large := append(slices.Clone(big), mid...)
	rows, took = load(append(slices.Clone(large), phase2...), 2, true)
	t.Logf("phase 2 (Import): %d memories in %d orgs in %v (%.0f/s, 2 clients)", rows, len(phase2)+len(large), took.Round(time.Millisecond), float64(rows)/took.Seconds())
	analyze()
	start := time.Now()
	res, err := postgres.Maintain(ctx, d.OwnerURL, postgres.MaintainOptions{MaintenanceWorkMem: "2GB"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Maintain: %d per-scope HNSW indexes created in %v", len(res.Created), time.Since(start).Round(time.Millisecond))
	var count int64
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM memories`).Scan(&count); err != nil {
		t.Fatal(err)
	}
	t.Logf("total memories: %d", count)
	analyze()

	atTotal := measure(s, probes, 200)
	report(fmt.Sprintf("1k scope, %d total", count), atTotal)
	t.Logf("1k scope p50 ratio %d/10k: %.2f", count, atTotal.p50/at10k.p50)
	report("10k scope (indexed)", measure(s, mid, 100))
	report("100k scope (indexed), ef_search 100", measure(s, big, 300/len(big)))
	for _, ef := range []int{40, 64, 200} {
		o, err := postgres.Open(ctx, postgres.Config{URL: d.RuntimeURL, EFSearch: ef})
		if err != nil {
			t.Fatal(err)
		}
		report("100k scope, ef_search "+strconv.Itoa(ef), measure(o, big, 300/len(big)))
		o.Close()
	}
	// The 1k scope again at the end: the first measurement after a bulk
	// load and the index builds may still see cold pages.
	again := measure(s, probes, 200)
	report("1k scope, again", again)
	t.Logf("1k scope p50 ratio %d/10k (again): %.2f", count, again.p50/at10k.p50)
}

// records turns the memories of an org into import records.
func records(org string, ms []store.NewMemory) []store.Record {
	now := time.Now()
	rs := make([]store.Record, len(ms))
	for i, m := range ms {
		rs[i] = store.Record{
			Memory: store.Memory{ID: uuid.Must(uuid.NewV7()).String(), Org: org, Scope: m.Scope, Content: m.Content,
				CreatedBy: "loader", CreatedAt: now, UpdatedAt: now},
			Vector: m.Vector,
		}
	}
	return rs
}
