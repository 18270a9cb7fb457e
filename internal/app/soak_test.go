package app_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/embed/ollamatest"
	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/internal/pgtest"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store/postgres"
)

// soakFlag sets how long TestSoak drives load:
//
//	go test -run Soak -v ./internal/app/ -soak=10m
//
// Unset, the soak runs 2 minutes when CI is set and 20 seconds otherwise
// (10 with -short), so that a local `go test ./...` stays quick.
var soakFlag = flag.Duration("soak", 0, "how long TestSoak drives load (default 2m when CI is set, else 20s)")

func soakDuration() time.Duration {
	switch {
	case *soakFlag > 0:
		return *soakFlag
	case os.Getenv("CI") != "":
		return 2 * time.Minute
	case testing.Short():
		return 10 * time.Second
	}
	return 20 * time.Second
}

const (
	soakSessions  = 32 // concurrent MCP sessions, one per worker
	soakOrgs      = 50
	soakUsers     = 4 // per org
	soakTeams     = 3 // per org
	soakLegacy    = "2025-11-25"
	soakModern    = "2026-07-28"
	soakCallLimit = time.Minute // one call; far above any healthy latency
	// soakSessionTTL is the server's HTTPConfig.SessionIdleTTL: short, so
	// that abandoned sessions are swept before the end.
	soakSessionTTL = 3 * time.Second
)

// TestSoak drives 32 concurrent MCP sessions over streamable HTTP against
// one server on PostgreSQL, spread over 50 orgs (one with a user in every
// session, the others with 4 users; some users have agents, some lack the
// share, purge or write permission; 3 teams per org), with a mix of add,
// search, list_scopes, update, delete, resource reads and (rarely) purges
// of the caller's own scopes. Sessions come and go: each worker reconnects
// as another of its users every few dozen calls, on either protocol
// revision, and abandons one session in five without ending it.
//
// An independent model says what every call must return. Only the outcomes
// it expects are allowed: refusals of writes the caller may not make, not
// found for memories it cannot see, and not found for a team or org memory
// that another session removed concurrently (checked at the end against
// that removal's timing). At the end every acknowledged add that was not
// deleted or purged is in the database exactly once with a content no
// later write replaced, nothing else is, and a probe by every identity
// (list_scopes, searches for other tenants' memories, reads of their ids)
// finds nothing it may not see.
//
// Every few seconds the test samples the process (goroutines, live heap
// after a forced GC, resident set, open files) and the database
// (connections of the runtime role and in all): the last third of the run
// must not have grown past the first by more than [soakLimits] allow, and
// the pool never exceeds its maximum. Once the load is over and every
// session has ended (the abandoned ones swept by the server after
// HTTPConfig.SessionIdleTTL), the goroutines return to their count before
// the load and the live heap to within limits.residue of it.
func TestSoak(t *testing.T) {
	dur := soakDuration()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SCOPEMEM_SOAK_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("SCOPEMEM_SOAK_SEED=%q: %v", s, err)
		}
	}
	t.Logf("soak for %s, seed %d (rerun with SCOPEMEM_SOAK_SEED=%d)", dur, seed, seed)

	ollama := ollamatest.NewServer(t, ollamatest.Config{Dims: 64, Model: "nomic-embed-text"})
	db := pgtest.NewDatabase(t)
	a := newApp(t, func(c *app.Config) {
		c.DatabaseURL, c.MigrateURL = db.RuntimeURL, db.OwnerURL
		c.Embedder, c.OllamaHost = "ollama", ollama.URL
		// A cache that fills within seconds, so that it is not mistaken
		// for a leak; the janitor runs several times during the soak.
		c.CacheSize = 512
		c.VectorCacheBytes = soakVectorCache
		c.JanitorInterval = 10 * time.Second
	})
	pg, isPG := a.BaseStore().(*postgres.Store)
	if !isPG {
		t.Fatalf("store is %T, want *postgres.Store", a.BaseStore())
	}
	ts := soakServer(t, a)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: soakSessions}}
	t.Cleanup(hc.CloseIdleConnections)
	admin, err := pgx.Connect(t.Context(), db.AdminURL)
	if err != nil {
		t.Fatalf("connect as the superuser: %v", err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	env := soakEnv{url: ts.URL, hc: hc, admin: admin, pg: pg, runtimeRole: db.RuntimeRole}
	limits := soakLimitsFor(pg.PoolStat().MaxConns())
	// The store's vector cache fills up to its budget (an estimate of its
	// size, so allow twice that) and keeps it: bounded, not a leak.
	limits.residue += 2 * soakVectorCache

	// Warm up every path once, so that lazily started goroutines, pools
	// and caches count in the baseline; the memory is deleted again.
	warm := connect(t, ts.URL, token(t, "soak-warm-up", "user", nil, allPerms...))
	added := ok[addOut](t, warm, "add_memory", map[string]any{"content": "warm-up memory"})
	ok[searchOut](t, warm, "search_memory", map[string]any{"query": "warm-up"})
	ok[scopesOut](t, warm, "list_scopes", map[string]any{})
	okRes(t, warm, "update_memory", map[string]any{"id": added.ID, "content": "warm-up memory, updated"})
	if _, err := warm.ReadResource(t.Context(), readReq("memory://memories/"+added.ID)); err != nil {
		t.Fatalf("warm-up read: %v", err)
	}
	okRes(t, warm, "delete_memory", map[string]any{"id": added.ID})
	okRes(t, warm, "purge", map[string]any{"scope": "user", "confirm": "user"})
	hc.CloseIdleConnections()
	baseGoroutines := settledGoroutines(0)
	baseHeap := liveHeap()

	tally := soakLoad(t, env, dur, seed, limits)

	// The load is over, every session closed or abandoned (and swept once
	// idle), and the model gone: the goroutines the sessions and their
	// calls used must be gone, and the heap must not have kept anything
	// that grows with calls or sessions, only what grows with the
	// principals and orgs the server has seen, which the world bounds.
	hc.CloseIdleConnections()
	time.Sleep(2*soakSessionTTL + time.Second)
	if n := settledGoroutines(baseGoroutines + 10); n > baseGoroutines+10 {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("%d goroutines once every session had ended, %d before the load:\n%s", n, baseGoroutines, buf)
	}
	heap := liveHeap()
	t.Logf("live heap %.1f MiB once every session had ended, %.1f MiB before the load", mib(heap), mib(baseHeap))
	if heap > baseHeap+limits.residue {
		t.Errorf("the load left %.1f MiB of live heap behind, more than the %.1f MiB allowed: sessions or calls are still held", mib(heap-baseHeap), mib(limits.residue))
	}

	t.Logf("outcomes:%s", tally.summary())
	if tally.nBad > 0 {
		t.Errorf("%d unexpected outcomes; the first %d:\n  %s", tally.nBad, len(tally.bad), strings.Join(tally.bad, "\n  "))
	}
	if n := tally.kinds["add: stored"]; n < soakSessions {
		t.Errorf("only %d adds were stored: the soak proved nothing", n)
	}
}

// soakLimitsFor returns the soak's limits for a pool of poolMax
// connections. Under -race on 2 cores the soak makes 40 to 230 calls a
// second; between the first and last thirds of a 2-minute run (some 50
// seconds) a leak of one goroutine or one open file per call adds
// thousands, and one of 10 KiB per call adds 20 MiB or more, well past
// these limits (TestSoakFlatness). A flat run stays well within them: its
// goroutines vary by about 30 with the calls in flight, its live heap by
// about 8 MiB, and the model the test keeps grows by some 300 bytes a
// call. Under -race the resident set grows with a flat heap, in jumps of
// up to 40 MiB (the race detector's own memory), so its limit is only a
// backstop for gross leaks outside the Go heap.
// soakVectorCache is the PostgreSQL store's vector cache budget in the
// soak: small, so that it fills early in the load.
const soakVectorCache = 1 << 20

func soakLimitsFor(poolMax int32) soakLimits {
	return soakLimits{
		goroutines: 50, fds: 20,
		heapBase: 8 << 20, heapPerCall: 2 << 10, residue: 3 << 20,
		rssBase: 128 << 20, rssPerCall: 8 << 10,
		poolMax: poolMax, pgExtra: 2,
	}
}

// soakEnv is what the load runs against.
type soakEnv struct {
	url         string
	hc          *http.Client
	admin       *pgx.Conn // superuser, on the test database
	pg          *postgres.Store
	runtimeRole string
}

// soakLoad runs the load for dur while sampling, checks the samples'
// flatness, the database against the model and the final probe, and
// returns the outcomes; the model and the world are garbage once it
// returns.
func soakLoad(t *testing.T, env soakEnv, dur time.Duration, seed uint64, limits soakLimits) *soakTally {
	workers := soakWorld(t, rand.New(rand.NewPCG(seed, 7)), seed)
	model := newSoakModel()
	tally := &soakTally{}
	for _, w := range workers {
		w.url, w.hc, w.model, w.tally = env.url, env.hc, model, tally
	}

	interval := min(max(dur/12, time.Second), 10*time.Second)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	begin := time.Now()
	for _, w := range workers {
		wg.Go(func() { w.run(stop) })
	}
	var samples []soakSample
	ticker := time.NewTicker(interval)
	for deadline := begin.Add(dur); time.Now().Before(deadline); {
		<-ticker.C
		s, err := takeSample(t.Context(), env.admin, env.pg, env.runtimeRole)
		if err != nil {
			t.Errorf("sample: %v", err)
			break
		}
		s.at, s.calls = time.Since(begin), tally.calls.Load()
		samples = append(samples, s)
	}
	ticker.Stop()
	close(stop)
	wg.Wait()
	elapsed := time.Since(begin)
	calls := tally.calls.Load()
	t.Logf("%d calls in %s (%.0f/s) by %d sessions; samples:", calls, elapsed.Round(time.Second), float64(calls)/elapsed.Seconds(), soakSessions)
	for _, s := range samples {
		t.Logf("  %s", s)
	}
	// The first sample, taken while the sessions were still starting, is
	// only shown.
	for _, p := range flatnessProblems(samples[min(1, len(samples)):], limits) {
		t.Error(p)
	}

	soakCheckDatabase(t, env.admin, model, tally)
	probeStart := time.Now()
	n := soakFinalProbe(workers)
	t.Logf("final probe by %d identities took %s", n, time.Since(probeStart).Round(time.Second))
	return tally
}

// soakWorld mints the identities of 50 orgs and deals their users out to
// the workers, every identity of a user to the same worker.
func soakWorld(t *testing.T, rng *rand.Rand, seed uint64) []*soakWorker {
	workers := make([]*soakWorker, soakSessions)
	for i := range workers {
		workers[i] = &soakWorker{n: i, rng: rand.New(rand.NewPCG(seed, uint64(i)+100))}
	}
	u := 0
	for o := range soakOrgs {
		org := fmt.Sprintf("soak-org-%02d", o)
		users := soakUsers
		if o == 0 {
			// One busy org with a user in every worker, so that sessions
			// often write, update and delete the same team and org
			// memories at the same time.
			users = soakSessions
		}
		for n := range users {
			user := fmt.Sprintf("user%d", n)
			var teams []string
			for tm := range soakTeams {
				if rng.IntN(3) > 0 {
					teams = append(teams, fmt.Sprintf("team%d", tm))
				}
			}
			perms := []scope.Permission{scope.PermRead}
			switch r := rng.IntN(10); {
			case r == 0: // a reader
			case r == 1: // no sharing: team and org are read-only
				perms = append(perms, scope.PermWrite, scope.PermPurge)
			case r == 2: // no purging
				perms = append(perms, scope.PermWrite, scope.PermShare)
			default:
				perms = append(perms, scope.PermWrite, scope.PermShare, scope.PermPurge)
			}
			agents := []string{""}
			for a := range rng.IntN(3) {
				agents = append(agents, fmt.Sprintf("agent%d", a))
			}
			w := workers[u%len(workers)]
			u++
			for _, agent := range agents {
				p := &soakIdent{org: org, user: user, agent: agent, teams: teams, perms: perms, keys: []string{"k1", "k2"}}
				claims := map[string]any{
					"iss": "test-issuer", "aud": "scopemem-test", "sub": user, "org_id": org, "teams": teams,
					"exp": time.Now().Add(2 * time.Hour).Unix(), "scope": joinPerms(perms),
				}
				if agent != "" {
					claims["agent"] = agent
				}
				var err error
				if p.token, err = scope.MintHS256(testSecret, claims); err != nil {
					t.Fatal(err)
				}
				w.idents = append(w.idents, p)
			}
		}
	}
	return workers
}

// soakWorker drives one MCP session at a time, as one of its identities.
type soakWorker struct {
	n      int
	rng    *rand.Rand
	idents []*soakIdent
	seq    int

	url   string
	hc    *http.Client
	model *soakModel
	tally *soakTally
	// sessionID is the MCP session id of the open session (legacy
	// protocol), the session key of calls that pass no session argument.
	sessionID string
}

// run opens sessions and calls tools until stop is closed.
func (w *soakWorker) run(stop <-chan struct{}) {
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	ops := []struct {
		weight int
		f      func(*client.Client, *soakIdent, string)
	}{{34, w.add}, {28, w.search}, {8, w.list}, {12, w.update}, {8, w.delete}, {8, w.read}, {2, w.purge}}
	for !stopped() {
		p := w.idents[w.rng.IntN(len(w.idents))]
		version := soakLegacy
		if w.rng.IntN(2) == 0 {
			version = soakModern
		}
		ctx, cancel := context.WithTimeout(context.Background(), soakCallLimit)
		c, err := w.open(ctx, p, version)
		cancel()
		if err != nil {
			w.tally.unexpected("%s: open a %s session: %v", p, version, err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		w.tally.count("session opened (" + version + ")")
		for range 10 + w.rng.IntN(40) {
			if stopped() {
				break
			}
			r := w.rng.IntN(100)
			for _, op := range ops {
				if r < op.weight {
					op.f(c, p, version)
					break
				}
				r -= op.weight
			}
		}
		if w.rng.IntN(5) == 0 {
			// Abandoned, as by a client that crashed: no DELETE ends the
			// MCP session.
			continue
		}
		c.Close()
	}
}

// open starts and initializes an MCP session as p.
func (w *soakWorker) open(ctx context.Context, p *soakIdent, version string) (*client.Client, error) {
	hc := &http.Client{Transport: bearer{p.token, w.hc.Transport}}
	c, err := client.NewStreamableHttpClient(w.url+"/mcp", transport.WithHTTPBasicClient(hc))
	if err != nil {
		return nil, err
	}
	client.WithProtocolVersion(version)(c)
	if err := c.Start(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("start: %w", err)
	}
	req := mcp.InitializeRequest{}
	req.Params.ClientInfo = mcp.Implementation{Name: "scopemem-soak", Version: "1"}
	if _, err := c.Initialize(ctx, req); err != nil {
		c.Close()
		return nil, fmt.Errorf("initialize: %w", err)
	}
	w.sessionID = c.GetSessionId()
	if version == soakLegacy && w.sessionID == "" {
		c.Close()
		return nil, errors.New("no MCP session id on the legacy protocol")
	}
	return c, nil
}

// bearer adds the caller's token to every request, also to the DELETE that
// ends a session, to which mcp-go's client (v1.2.1) adds none of the
// headers of transport.WithHTTPHeaders (the server would refuse it 401 and
// keep the session until it is idle for HTTPConfig.SessionIdleTTL).
type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// session picks the session key of the next call and the session argument
// that names it: on the legacy protocol the call may rely on the MCP
// session id; the modern one has none, so calls always name a key.
func (w *soakWorker) session(p *soakIdent, version string) (key string, args map[string]any) {
	if version == soakLegacy && w.rng.IntN(2) == 0 {
		return w.sessionID, map[string]any{}
	}
	key = p.keys[w.rng.IntN(len(p.keys))]
	return key, map[string]any{"session": key}
}

// toolCall calls a tool, counting the call and timing it.
func (w *soakWorker) toolCall(c *client.Client, tool string, args map[string]any) (*mcp.CallToolResult, soakSpan, error) {
	req := mcp.CallToolRequest{}
	req.Params.Name = tool
	req.Params.Arguments = args
	ctx, cancel := context.WithTimeout(context.Background(), soakCallLimit)
	defer cancel()
	start := time.Now()
	res, err := c.CallTool(ctx, req)
	span := soakSpan{start, time.Now()}
	w.tally.calls.Add(1)
	return res, span, err
}

var soakWords = func() []string {
	r := rand.New(rand.NewPCG(1, 2))
	words := make([]string, 1500)
	for i := range words {
		words[i] = fmt.Sprintf("w%04d%c%c", i, 'a'+rune(r.IntN(26)), 'a'+rune(r.IntN(26)))
	}
	return words
}()

// content is a memory's text: its token (the first word, which stays
// through updates) and random words.
func (w *soakWorker) content(token string) string {
	var b strings.Builder
	b.WriteString(token)
	for range 8 {
		b.WriteByte(' ')
		b.WriteString(soakWords[w.rng.IntN(len(soakWords))])
	}
	return b.String()
}

func soakToken(content string) string {
	tok, _, _ := strings.Cut(content, " ")
	return tok
}

func (w *soakWorker) add(c *client.Client, p *soakIdent, version string) {
	key, args := w.session(p, version)
	names := []string{"user", "user", "session", "agent", "org"}
	for range 2 {
		names = append(names, fmt.Sprintf("team:team%d", w.rng.IntN(soakTeams)))
	}
	name := names[w.rng.IntN(len(names))]
	w.seq++
	token := fmt.Sprintf("sk%02dn%06d", w.n, w.seq)
	kind, sid, ok := p.target(name, key)
	m := &soakMem{token: token, org: p.org, kind: kind, sid: sid}
	if !ok {
		m.kind, m.sid = "", "" // names nothing: must not be stored
	}
	expect := ok && p.writable(m, key)
	content := w.content(token)
	w.model.register(p, m)
	args["content"], args["scope"] = content, name
	res, span, err := w.toolCall(c, "add_memory", args)
	switch {
	case err != nil:
		w.tally.unexpected("%s: add to %s: %v", p, name, err)
		w.model.settleAdd(m, func() { m.unsure = true })
	case res.IsError && !expect:
		w.tally.count("add: refused, caller may not write the scope (expected)")
		w.model.settleAdd(m, func() { m.refused = true })
	case res.IsError:
		w.tally.unexpected("%s: add to %s failed: %s", p, name, text(res))
		w.model.settleAdd(m, func() { m.unsure = true })
	case !expect:
		w.tally.unexpected("%s (teams %v, perms %v): add to %s succeeded, want a refusal", p, p.teams, p.perms, name)
		w.model.settleAdd(m, func() { m.unsure = true })
	default:
		var out addOut
		if err := decodeInto(res, &out); err != nil || out.ID == "" || out.Duplicate || out.Scope != name {
			w.tally.unexpected("%s: add to %s = %+v (%v), want a new memory in %s", p, name, out, err, name)
			w.model.settleAdd(m, func() { m.unsure = true })
			return
		}
		w.tally.count("add: stored")
		w.model.settleAdd(m, func() {
			m.id, m.added = out.ID, true
			m.writes = append(m.writes, soakWrite{content, span})
		})
	}
}

// settleAdd records an add's outcome.
func (s *soakModel) settleAdd(m *soakMem, f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

// checkHits checks search results against the model: every hit is a memory
// the caller may see, named by its scope, and not removed before the search
// started.
func (w *soakWorker) checkHits(p *soakIdent, key string, hits []hit, span soakSpan, what string) {
	for _, h := range hits {
		m := w.model.lookup(soakToken(h.Content))
		if m == nil {
			w.tally.unexpected("%s: %s returned %s %q, which no soak session added", p, what, h.ID, h.Content)
			continue
		}
		if !p.visible(m, key) {
			w.tally.unexpected("%s (teams %v, session %q): %s returned %s of %s %s %q: not visible to the caller", p, p.teams, key, what, h.ID, m.org, m.kind, m.sid)
			continue
		}
		if h.Scope != m.scopeName() {
			w.tally.unexpected("%s: %s named the scope of %s %q, want %q", p, what, h.ID, h.Scope, m.scopeName())
		}
		w.model.mu.Lock()
		id, refused, removed := m.id, m.refused, m.removed
		w.model.mu.Unlock()
		switch {
		case refused:
			w.tally.unexpected("%s: %s returned %s (%s), whose add was refused", p, what, h.ID, m.token)
		case id != "" && id != h.ID:
			w.tally.unexpected("%s: %s returned %s for %s, which was stored as %s", p, what, h.ID, m.token, id)
		case removed != nil && removed.before(span):
			w.tally.unexpected("%s: %s returned %s, removed before the search started", p, what, h.ID)
		}
	}
}

func (w *soakWorker) search(c *client.Client, p *soakIdent, version string) {
	key, args := w.session(p, version)
	q := strings.Join([]string{soakWords[w.rng.IntN(len(soakWords))], soakWords[w.rng.IntN(len(soakWords))]}, " ")
	var pool func() []*soakMem
	switch r := w.rng.IntN(10); {
	case r < 4: // another tenant's memory, most likely
		pool = func() []*soakMem { return w.model.all }
	case r < 8:
		pool = func() []*soakMem { return w.model.byOrg[p.org] }
	}
	if pool != nil {
		if m, _, _ := w.model.pick(pool, w.rng.IntN); m != nil {
			w.model.mu.Lock()
			if len(m.writes) > 0 {
				q = m.writes[len(m.writes)-1].content
			}
			w.model.mu.Unlock()
		}
	}
	args["query"], args["limit"] = q, 10+w.rng.IntN(91)
	res, span, err := w.toolCall(c, "search_memory", args)
	if err != nil || res.IsError {
		w.tally.unexpected("%s: search: %v %s", p, err, resText(res))
		return
	}
	var out searchOut
	if err := decodeInto(res, &out); err != nil {
		w.tally.unexpected("%s: search result: %v", p, err)
		return
	}
	w.tally.count("search: answered")
	w.checkHits(p, key, out.Results, span, "search")
}

func resText(res *mcp.CallToolResult) string {
	if res == nil {
		return ""
	}
	return text(res)
}

// list checks list_scopes: only the caller's scopes, and exact counts for
// the scopes only this worker writes.
func (w *soakWorker) list(c *client.Client, p *soakIdent, version string) {
	key, args := w.session(p, version)
	res, _, err := w.toolCall(c, "list_scopes", args)
	if err != nil || res.IsError {
		w.tally.unexpected("%s: list_scopes: %v %s", p, err, resText(res))
		return
	}
	var out scopesOut
	if err := decodeInto(res, &out); err != nil {
		w.tally.unexpected("%s: list_scopes result: %v", p, err)
		return
	}
	w.tally.count("list_scopes: answered")
	if out.Org != p.org || out.User != p.user {
		w.tally.unexpected("%s: list_scopes names org %q user %q", p, out.Org, out.User)
	}
	for _, sc := range out.Scopes {
		kind, sid, ok := p.target(sc.Scope, key)
		if !ok {
			w.tally.unexpected("%s (teams %v, session %q): list_scopes lists %s, not one of the caller's scopes", p, p.teams, key, sc.Scope)
			continue
		}
		if kind == "team" || kind == "org" {
			continue // other sessions write them concurrently
		}
		if want := w.model.count(p.org, kind, sid); sc.Count != want {
			w.tally.unexpected("%s: list_scopes counts %d in %s, the model %d", p, sc.Count, sc.Scope, want)
		}
	}
}

// target picks a memory for update, delete or read: mostly the caller's
// own or its org's, sometimes any tenant's.
func (w *soakWorker) target(p *soakIdent) (m *soakMem, id string, removed *soakSpan) {
	var pool func() []*soakMem
	switch r := w.rng.IntN(100); {
	case r < 30:
		pool = func() []*soakMem { return w.model.byUser[p.org+"/"+p.user] }
	case r < 50: // the org's latest team and org memories: what other sessions are busy with
		pool = func() []*soakMem {
			var out []*soakMem
			l := w.model.byOrg[p.org]
			for i := len(l) - 1; i >= 0 && len(out) < 6; i-- {
				if l[i].shared() && l[i].id != "" {
					out = append(out, l[i])
				}
			}
			return out
		}
	case r < 75:
		pool = func() []*soakMem { return w.model.byOrg[p.org] }
	default:
		pool = func() []*soakMem { return w.model.all }
	}
	return w.model.pick(pool, w.rng.IntN)
}

// refusedOrRaced classifies a failed call on m that the model expected to
// succeed: on a team or org memory another session may have removed it in
// the meantime (checked once the load ends); otherwise it is unexpected.
func (w *soakWorker) refusedOrRaced(p *soakIdent, m *soakMem, span soakSpan, op, msg string) {
	if !m.shared() {
		w.tally.unexpected("%s: %s of its own %s memory %s failed: %s", p, op, m.kind, m.token, msg)
		return
	}
	w.tally.count(op + ": not found, removed by a concurrent session (expected)")
	w.model.mu.Lock()
	m.raced = append(m.raced, span)
	w.model.mu.Unlock()
}

func (w *soakWorker) update(c *client.Client, p *soakIdent, version string) {
	key, args := w.session(p, version)
	m, id, removed := w.target(p)
	if m == nil {
		return
	}
	content := w.content(m.token)
	args["id"], args["content"] = id, content
	start := time.Now()
	expect := (removed == nil || !removed.before(soakSpan{start: start})) && p.writable(m, key)
	res, span, err := w.toolCall(c, "update_memory", args)
	switch {
	case err != nil:
		w.tally.unexpected("%s: update %s: %v", p, m.token, err)
	case res.IsError && !expect:
		w.tally.count("update: not found, not writable by the caller or removed (expected)")
	case res.IsError:
		w.refusedOrRaced(p, m, span, "update", text(res))
	case !expect:
		w.tally.unexpected("%s (teams %v, perms %v, session %q): update of %s %s %s (%s) succeeded, want not found", p, p.teams, p.perms, key, m.org, m.kind, m.sid, m.token)
	default:
		w.tally.count("update: changed")
		w.model.mu.Lock()
		m.writes = append(m.writes, soakWrite{content, span})
		w.model.mu.Unlock()
	}
}

func (w *soakWorker) delete(c *client.Client, p *soakIdent, version string) {
	key, args := w.session(p, version)
	m, id, removed := w.target(p)
	if m == nil {
		return
	}
	args["id"] = id
	start := time.Now()
	expect := (removed == nil || !removed.before(soakSpan{start: start})) && p.writable(m, key)
	res, span, err := w.toolCall(c, "delete_memory", args)
	switch {
	case err != nil:
		w.tally.unexpected("%s: delete %s: %v", p, m.token, err)
	case res.IsError && !expect:
		w.tally.count("delete: not found, not writable by the caller or removed (expected)")
	case res.IsError:
		w.refusedOrRaced(p, m, span, "delete", text(res))
	case !expect:
		w.tally.unexpected("%s (teams %v, perms %v, session %q): delete of %s %s %s (%s) succeeded, want not found", p, p.teams, p.perms, key, m.org, m.kind, m.sid, m.token)
	default:
		w.tally.count("delete: deleted")
		w.model.mu.Lock()
		m.removals++
		if m.removed == nil {
			m.removed = &span
		}
		w.model.mu.Unlock()
	}
}

// read reads memory://memories/{id}. Resources take no session argument:
// the session scope is the MCP session's, and a modern session has none.
func (w *soakWorker) read(c *client.Client, p *soakIdent, version string) {
	key := ""
	if version == soakLegacy {
		key = w.sessionID
	}
	m, id, removed := w.target(p)
	if m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), soakCallLimit)
	defer cancel()
	start := time.Now()
	expect := (removed == nil || !removed.before(soakSpan{start: start})) && p.visible(m, key)
	rr, err := c.ReadResource(ctx, readReq("memory://memories/"+id))
	span := soakSpan{start, time.Now()}
	w.tally.calls.Add(1)
	switch {
	case err != nil && !resourceRefused(err):
		w.tally.unexpected("%s: read %s: %v", p, m.token, err)
	case err != nil && !expect:
		w.tally.count("read: not found, not visible to the caller or removed (expected)")
	case err != nil:
		w.refusedOrRaced(p, m, span, "read", err.Error())
	case !expect:
		w.tally.unexpected("%s (teams %v, session %q): read of %s %s %s (%s) succeeded, want not found", p, p.teams, key, m.org, m.kind, m.sid, m.token)
	default:
		var body string
		if len(rr.Contents) == 1 {
			if tc, ok := rr.Contents[0].(mcp.TextResourceContents); ok {
				body = tc.Text
			}
		}
		if !strings.Contains(body, m.token+" ") {
			w.tally.unexpected("%s: read of %s returned %q", p, m.token, body)
			return
		}
		w.tally.count("read: found")
	}
}

// resourceRefused reports whether err is the server's answer to a read of
// a memory the caller cannot see. The resource handler returns an error
// wrapping server.ErrResourceNotFound, which mcp-go (v1.2.1) sends to the
// client as a JSON-RPC internal error; a transport failure is neither.
func resourceRefused(err error) bool {
	return errors.Is(err, mcp.ErrResourceNotFound) || errors.Is(err, mcp.ErrInternalError)
}

// purge purges one of the caller's own scopes, which only this worker
// writes: the count removed must be the model's exactly.
func (w *soakWorker) purge(c *client.Client, p *soakIdent, version string) {
	key, args := w.session(p, version)
	name := []string{"user", "session", "agent"}[w.rng.IntN(3)]
	kind, sid, ok := p.target(name, key)
	expect := ok && p.has(scope.PermPurge)
	want := 0
	if ok {
		want = w.model.count(p.org, kind, sid)
	}
	args["scope"], args["confirm"] = name, name
	res, span, err := w.toolCall(c, "purge", args)
	switch {
	case err != nil:
		w.tally.unexpected("%s: purge %s: %v", p, name, err)
	case res.IsError && !expect:
		w.tally.count("purge: refused, no memory:purge or no such scope (expected)")
	case res.IsError:
		w.tally.unexpected("%s: purge %s failed: %s", p, name, text(res))
	case !expect:
		w.tally.unexpected("%s (perms %v): purge %s succeeded, want a refusal", p, p.perms, name)
	default:
		var out struct{ Total int }
		if err := decodeInto(res, &out); err != nil || out.Total != want {
			w.tally.unexpected("%s: purge %s removed %d (%v), the model says %d", p, name, out.Total, err, want)
		}
		w.tally.count("purge: purged")
		w.model.mu.Lock()
		defer w.model.mu.Unlock()
		for _, m := range w.model.byOrg[p.org] {
			if m.kind == kind && m.sid == sid && m.alive() {
				m.removals++
				m.removed = &span
			}
		}
	}
}

// soakCheckDatabase compares every row of the memories table with the
// model: each memory alive in the model is stored exactly once, in its
// scope, with a content no later write replaced; nothing else is stored.
func soakCheckDatabase(t *testing.T, admin *pgx.Conn, model *soakModel, tally *soakTally) {
	t.Helper()
	type row struct{ org, id, kind, sid, content string }
	rows, err := admin.Query(t.Context(), `SELECT org_id, id::text, scope_kind, scope_id, content FROM memories`)
	if err != nil {
		t.Fatalf("read the memories table: %v", err)
	}
	byToken := map[string][]row{}
	n := 0
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.org, &r.id, &r.kind, &r.sid, &r.content); err != nil {
			t.Fatal(err)
		}
		byToken[soakToken(r.content)] = append(byToken[soakToken(r.content)], r)
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	model.mu.Lock()
	defer model.mu.Unlock()
	alive := 0
	for _, m := range model.all {
		got := byToken[m.token]
		delete(byToken, m.token)
		if m.removals > 1 {
			tally.unexpected("%s (%s %s %s) was removed %d times", m.token, m.org, m.kind, m.sid, m.removals)
		}
		for _, r := range m.raced {
			if m.removed == nil || m.removed.start.After(r.end) {
				tally.unexpected("a call on %s (%s %s %s) failed as not found, but no removal started before it ended", m.token, m.org, m.kind, m.sid)
			}
		}
		for _, wr := range m.writes {
			if m.removed != nil && m.removed.before(wr.span) {
				tally.unexpected("%s (%s %s %s) was updated after it was removed", m.token, m.org, m.kind, m.sid)
			}
		}
		switch {
		case m.unsure:
			if len(got) > 1 {
				tally.unexpected("%s stored %d times", m.token, len(got))
			}
		case !m.alive():
			if len(got) != 0 {
				tally.unexpected("%s (%s %s %s, refused %v, removed %v) is stored %d times, want none", m.token, m.org, m.kind, m.sid, m.refused, m.removed != nil, len(got))
			}
		case len(got) != 1:
			tally.unexpected("acknowledged add %s (%s %s %s) is stored %d times, want once", m.token, m.org, m.kind, m.sid, len(got))
		default:
			alive++
			r := got[0]
			if r.id != m.id || r.org != m.org || r.kind != m.kind || r.sid != m.sid {
				tally.unexpected("%s stored as %+v, want id %s in %s %s %q", m.token, r, m.id, m.org, m.kind, m.sid)
			}
			if !slices.Contains(m.finalContents(), r.content) {
				tally.unexpected("%s holds %q, want one of %q", m.token, r.content, m.finalContents())
			}
		}
	}
	for tok, rs := range byToken {
		tally.unexpected("%d stored rows with token %q that no session added: %+v", len(rs), tok, rs[0])
	}
	t.Logf("database: %d rows, %d memories alive in the model, %d adds tried", n, alive, len(model.all))
}

// soakFinalProbe has every identity list its scopes, search for other
// tenants' memories and read their ids once the load is over: nothing it
// may not see may come back, its counts match the model exactly, and one of
// its own memories is found.
func soakFinalProbe(workers []*soakWorker) (identities int) {
	var wg sync.WaitGroup
	for _, w := range workers {
		identities += len(w.idents)
		wg.Go(func() {
			for _, p := range w.idents {
				w.probe(p)
			}
		})
	}
	wg.Wait()
	return identities
}

func (w *soakWorker) probe(p *soakIdent) {
	ctx, cancel := context.WithTimeout(context.Background(), soakCallLimit)
	defer cancel()
	// A legacy session, abandoned at the end (its state must be swept).
	c, err := w.open(ctx, p, soakLegacy)
	if err != nil {
		w.tally.unexpected("%s: probe session: %v", p, err)
		return
	}
	key := p.keys[0]

	res, _, err := w.toolCall(c, "list_scopes", map[string]any{"session": key})
	var ls scopesOut
	if err != nil || res.IsError || decodeInto(res, &ls) != nil {
		w.tally.unexpected("%s: probe list_scopes: %v %s", p, err, resText(res))
		return
	}
	listed := map[string]int{}
	for _, sc := range ls.Scopes {
		listed[sc.Scope] = sc.Count
		kind, sid, ok := p.target(sc.Scope, key)
		if !ok {
			w.tally.unexpected("probe: %s lists %s, not one of its scopes", p, sc.Scope)
			continue
		}
		if want := w.model.count(p.org, kind, sid); sc.Count != want {
			w.tally.unexpected("probe: %s counts %d in %s, the model %d", p, sc.Count, sc.Scope, want)
		}
	}

	// The model's view: what p sees, and memories it must not.
	w.model.mu.Lock()
	var mine, foreign []*soakMem
	for _, m := range w.model.all {
		if !m.alive() {
			continue
		}
		if p.visible(m, key) {
			mine = append(mine, m)
			if _, ok := listed[m.scopeName()]; !ok {
				w.tally.unexpected("probe: %s sees memories in %s, which list_scopes does not list", p, m.scopeName())
			}
		} else {
			foreign = append(foreign, m)
		}
	}
	last := func(m *soakMem) string { return m.writes[len(m.writes)-1].content }
	var queries []string
	var reads []string
	if len(foreign) > 0 {
		m := foreign[w.rng.IntN(len(foreign))]
		queries = append(queries, last(m))
		reads = append(reads, m.id)
	}
	// One of its own, whose stored content the model knows for sure (two
	// overlapping updates leave either content).
	var own *soakMem
	ownQuery := ""
	for range 8 {
		if len(mine) == 0 {
			break
		}
		if m := mine[w.rng.IntN(len(mine))]; len(m.finalContents()) == 1 {
			own, ownQuery = m, m.finalContents()[0]
			queries = append(queries, ownQuery)
			break
		}
	}
	w.model.mu.Unlock()

	for _, q := range queries {
		res, span, err := w.toolCall(c, "search_memory", map[string]any{"query": q, "limit": 50, "session": key})
		var out searchOut
		if err != nil || res.IsError || decodeInto(res, &out) != nil {
			w.tally.unexpected("%s: probe search: %v %s", p, err, resText(res))
			continue
		}
		w.tally.count("probe: search")
		w.checkHits(p, key, out.Results, span, "probe search")
		if own != nil && q == ownQuery && !slices.Contains(ids(out.Results), own.id) {
			w.tally.unexpected("probe: %s searched for its own %s (%s) by its content and did not find it", p, own.token, own.scopeName())
		}
	}
	for _, id := range reads {
		_, err := c.ReadResource(ctx, readReq("memory://memories/"+id))
		w.tally.calls.Add(1)
		if err == nil || !resourceRefused(err) {
			w.tally.unexpected("probe: %s read foreign memory %s: %v, want not found", p, id, err)
		}
		w.tally.count("probe: foreign read refused")
	}
}

// TestSoakFlatness checks the soak's leak detector on made-up samples: a
// flat run passes, and a leak of one goroutine, one open file or 10 KiB of
// heap (64 KiB of resident set) per call is caught at the soak's own call rate under -race on 2 cores (about
// 40 calls a second, the slowest seen), as is a pool over its maximum.
func TestSoakFlatness(t *testing.T) {
	limits := soakLimitsFor(4)
	const callsPerSample = 400 // 40 calls/s, a sample every 10s
	// run returns 12 samples of a run whose i-th sample is f(i) applied to
	// a noisy but flat baseline.
	run := func(f func(i int, s *soakSample)) []soakSample {
		out := make([]soakSample, 12)
		for i := range out {
			s := soakSample{
				at: time.Duration(i+1) * 10 * time.Second, calls: int64(i+1) * callsPerSample,
				goroutines: 230 + 15*(i%3), heapLive: uint64(6+5*(i%2)) << 20, rss: int64(170+5*i) << 20,
				fds: 85 + 3*(i%2), poolTotal: 4, pgRuntime: 4, pgAll: 4 + i%2,
			}
			if f != nil {
				f(i, &s)
			}
			out[i] = s
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		samples []soakSample
		want    int // problems
	}{
		{"flat", run(nil), 0},
		{"a goroutine per call", run(func(i int, s *soakSample) { s.goroutines += int(s.calls) }), 1},
		{"an open file per call", run(func(i int, s *soakSample) { s.fds += int(s.calls) }), 1},
		{"10 KiB per call", run(func(i int, s *soakSample) { s.heapLive += uint64(s.calls) * 10 << 10 }), 1},
		{"a goroutine per 10 calls", run(func(i int, s *soakSample) { s.goroutines += int(s.calls / 10) }), 1},
		{"resident set 64 KiB per call", run(func(i int, s *soakSample) { s.rss += s.calls * 64 << 10 }), 1},
		{"pool over its maximum", run(func(i int, s *soakSample) {
			if i == 5 {
				s.pgRuntime, s.pgAll = 5, 5
			}
		}), 1},
		{"a spike in the middle", run(func(i int, s *soakSample) {
			if i == 6 {
				s.goroutines, s.heapLive = 900, 90<<20
			}
		}), 0},
		{"too few samples", run(nil)[:5], 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := flatnessProblems(tc.samples, limits)
			if len(got) != tc.want {
				t.Errorf("flatnessProblems = %q, want %d problems", got, tc.want)
			}
		})
	}
}
