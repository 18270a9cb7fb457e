package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store/postgres"
)

// soakServer serves a over httptest with HS256 tokens signed by testSecret,
// as httpServer does, dropping idle MCP sessions after soakSessionTTL.
func soakServer(t *testing.T, a *app.App) *httptest.Server {
	t.Helper()
	v, err := scope.NewJWTVerifier(t.Context(), scope.JWTConfig{Secret: testSecret, Issuer: "test-issuer", Audience: "scopemem-test"})
	if err != nil {
		t.Fatalf("NewJWTVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	ts := httptest.NewServer(a.HTTPHandler(app.HTTPConfig{Verifier: v.Verify, SessionIdleTTL: soakSessionTTL}))
	t.Cleanup(ts.Close)
	return ts
}

// soakIdent is one caller of the soak test: a user of an org, possibly
// acting through a named agent, with its teams and permissions. All the
// identities of one user belong to one worker, so the user's own scopes
// (user, agent, session) have a single writer at a time and the model
// knows their content exactly; team and org scopes are shared by workers.
type soakIdent struct {
	org, user, agent string
	teams            []string
	perms            []scope.Permission
	token            string
	keys             []string // session keys passed as the session argument
}

func (p *soakIdent) String() string {
	s := p.org + "/" + p.user
	if p.agent != "" {
		s += "@" + p.agent
	}
	return s
}

func (p *soakIdent) has(perm scope.Permission) bool { return slices.Contains(p.perms, perm) }

// target resolves a scope name as the caller writes it into the row's
// scope kind and id; ok is false when the name needs an agent or a session
// key the caller does not have, or a team it is not in.
func (p *soakIdent) target(name, key string) (kind, sid string, ok bool) {
	switch {
	case name == "session":
		return "session", p.user + "/" + key, key != ""
	case name == "agent":
		return "agent", p.user + "/" + p.agent, p.agent != ""
	case name == "user":
		return "user", p.user, true
	case name == "org":
		return "org", "", true
	case strings.HasPrefix(name, "team:"):
		t := strings.TrimPrefix(name, "team:")
		return "team", t, slices.Contains(p.teams, t)
	}
	return "", "", false
}

// visible is the soak's own statement of the visibility rules, written
// independently of package scope (as probe_test.go's is).
func (p *soakIdent) visible(m *soakMem, key string) bool {
	if m.org != p.org || m.kind == "" {
		return false
	}
	switch m.kind {
	case "org":
		return true
	case "user":
		return m.sid == p.user
	case "team":
		return slices.Contains(p.teams, m.sid)
	case "agent":
		return p.agent != "" && m.sid == p.user+"/"+p.agent
	case "session":
		return key != "" && m.sid == p.user+"/"+key
	}
	return false
}

func (p *soakIdent) writable(m *soakMem, key string) bool {
	if !p.visible(m, key) || !p.has(scope.PermWrite) {
		return false
	}
	return !m.shared() || p.has(scope.PermShare)
}

// soakSpan is the interval between sending a call and receiving its answer:
// the call took effect at some instant inside it.
type soakSpan struct{ start, end time.Time }

// before reports whether s ended before o started: s certainly took effect
// first.
func (s soakSpan) before(o soakSpan) bool { return s.end.Before(o.start) }

// soakWrite is an acknowledged write of a memory's content.
type soakWrite struct {
	content string
	span    soakSpan
}

// soakMem is the model's record of one memory the soak tried to add. Its
// org, kind, sid and token never change after registration; the rest is
// guarded by soakModel.mu.
type soakMem struct {
	token, org, kind, sid string

	id      string      // set once the add is acknowledged
	added   bool        // the add succeeded
	refused bool        // the add failed as the model expected
	unsure  bool        // the add failed unexpectedly: stored or not
	writes  []soakWrite // the add, then every acknowledged update
	removed *soakSpan   // the first acknowledged delete or purge
	// removals counts acknowledged deletes and purges: at most one may
	// succeed.
	removals int
	// raced are calls on this memory that failed although the model
	// thought it alive and writable when they started; each must overlap
	// or follow the removal that explains it.
	raced []soakSpan
}

// shared reports whether several users (so several workers) write the
// memory's scope.
func (m *soakMem) shared() bool { return m.kind == "team" || m.kind == "org" }

// scopeName is the scope as a hit or list_scopes names it.
func (m *soakMem) scopeName() string {
	if m.kind == "team" {
		return "team:" + m.sid
	}
	return m.kind
}

// alive reports whether the memory exists once every call has ended.
func (m *soakMem) alive() bool { return m.added && m.removed == nil }

// finalContents are the contents the memory may hold once every call has
// ended: a write that ended before another write started cannot be the
// last.
func (m *soakMem) finalContents() []string {
	var out []string
	for i, w := range m.writes {
		last := true
		for j, o := range m.writes {
			if i != j && w.span.before(o.span) {
				last = false
				break
			}
		}
		if last {
			out = append(out, w.content)
		}
	}
	return out
}

// soakModel is the soak's independent record of every memory, shared by
// the workers.
type soakModel struct {
	mu      sync.Mutex
	byToken map[string]*soakMem
	byOrg   map[string][]*soakMem // org → its memories
	byUser  map[string][]*soakMem // org/user → the user's own scopes' memories
	all     []*soakMem
}

func newSoakModel() *soakModel {
	return &soakModel{byToken: map[string]*soakMem{}, byOrg: map[string][]*soakMem{}, byUser: map[string][]*soakMem{}}
}

// register records a memory before the add is sent, so that a search that
// finds it while the add is in flight knows what it is.
func (s *soakModel) register(p *soakIdent, m *soakMem) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byToken[m.token] = m
	s.all = append(s.all, m)
	s.byOrg[m.org] = append(s.byOrg[m.org], m)
	if !m.shared() {
		k := p.org + "/" + p.user
		s.byUser[k] = append(s.byUser[k], m)
	}
}

func (s *soakModel) lookup(token string) *soakMem {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byToken[token]
}

// count is how many memories of the scope are alive.
func (s *soakModel) count(org, kind, sid string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.byOrg[org] {
		if m.kind == kind && m.sid == sid && m.alive() {
			n++
		}
	}
	return n
}

// pick returns a random memory from list whose add was acknowledged, with
// its id and removal at the time of the call, or nil.
func (s *soakModel) pick(list func() []*soakMem, intn func(int) int) (m *soakMem, id string, removed *soakSpan) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := list()
	for range 4 {
		if len(l) == 0 {
			return nil, "", nil
		}
		m := l[intn(len(l))]
		if m.id != "" {
			return m, m.id, m.removed
		}
	}
	return nil, "", nil
}

// soakTally counts outcomes by kind and keeps the unexpected ones.
type soakTally struct {
	calls atomic.Int64
	mu    sync.Mutex
	kinds map[string]int
	bad   []string
	nBad  int
}

func (t *soakTally) count(kind string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.kinds == nil {
		t.kinds = map[string]int{}
	}
	t.kinds[kind]++
}

// unexpected records an outcome the model does not allow.
func (t *soakTally) unexpected(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nBad++
	if len(t.bad) < 30 {
		t.bad = append(t.bad, fmt.Sprintf(format, args...))
	}
}

func (t *soakTally) summary() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := make([]string, 0, len(t.kinds))
	for k := range t.kinds {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %-62s %7d", k, t.kinds[k])
	}
	return b.String()
}

// decodeInto decodes a tool result's structured content.
func decodeInto(res *mcp.CallToolResult, out any) error {
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// soakSample is one measurement of the process and the database.
type soakSample struct {
	at         time.Duration // since the load started
	calls      int64         // calls completed by then
	goroutines int
	heapLive   uint64 // bytes of live heap objects after a forced GC
	heapInuse  uint64 // bytes in in-use heap spans after that GC
	rss        int64  // resident set size of the process (server and clients)
	fds        int    // open file descriptors (sockets included)
	poolTotal  int32  // connections the store's pool holds
	pgRuntime  int    // server backends of the runtime role
	pgAll      int    // client backends on the test database but the sampler's
}

func (s soakSample) String() string {
	return fmt.Sprintf("%6.1fs calls %6d goroutines %4d heap live %6.1f MiB in use %6.1f MiB rss %6.1f MiB fds %3d pool %d pg runtime %d pg all %d",
		s.at.Seconds(), s.calls, s.goroutines, mib(s.heapLive), mib(s.heapInuse), mib(uint64(s.rss)), s.fds, s.poolTotal, s.pgRuntime, s.pgAll)
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// takeSample measures the process (after a forced GC) and counts the
// database's connections through admin, a superuser connection to it.
func takeSample(ctx context.Context, admin *pgx.Conn, st *postgres.Store, runtimeRole string) (soakSample, error) {
	var s soakSample
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.heapLive, s.heapInuse = ms.HeapAlloc, ms.HeapInuse
	s.goroutines = runtime.NumGoroutine()
	var err error
	if s.rss, err = processRSS(); err != nil {
		return s, err
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return s, fmt.Errorf("count open files: %w", err)
	}
	s.fds = len(fds)
	s.poolTotal = st.PoolStat().TotalConns()
	err = admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE usename = $1), count(*)
		FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
		runtimeRole).Scan(&s.pgRuntime, &s.pgAll)
	return s, err
}

// liveHeap returns the bytes of live heap objects after two forced GCs.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// processRSS reads VmRSS from /proc/self/status.
func processRSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read /proc/self/status: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "VmRSS:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", f[1], err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS line in /proc/self/status")
}

// soakLimits is how much growth the soak tolerates from the first third of
// its samples to the last third, and the connection bounds it holds
// throughout.
type soakLimits struct {
	// goroutines and fds may grow by this many.
	goroutines, fds int
	// heapBase bytes of live heap growth are allowed, plus heapPerCall per
	// call made between the two windows (the test's own model grows a
	// little with each memory added).
	heapBase, heapPerCall uint64
	// rssBase and rssPerCall are the same for the resident set.
	rssBase, rssPerCall uint64
	// residue is how much more live heap the process may hold once the
	// load is over, every session has ended and the model is dropped,
	// than before the load.
	residue uint64
	// poolMax bounds the runtime role's connections at every sample;
	// pgExtra more are allowed to the database in all (the janitor's
	// owner connection).
	poolMax int32
	pgExtra int
}

// flatnessProblems compares the smallest value of the last third of the
// samples with the largest of the first third (so that a passing spike does
// not count, but steady growth does), and checks the connection bounds at
// every sample.
func flatnessProblems(samples []soakSample, l soakLimits) []string {
	n := len(samples)
	if n < 6 {
		return []string{fmt.Sprintf("only %d samples: too few to compare the first and last thirds of the run", n)}
	}
	first, last := samples[:n/3], samples[n-n/3:]
	calls := last[0].calls - first[len(first)-1].calls
	var out []string
	peak := func(ss []soakSample, f func(soakSample) int64) int64 {
		m := f(ss[0])
		for _, s := range ss[1:] {
			m = max(m, f(s))
		}
		return m
	}
	floor := func(ss []soakSample, f func(soakSample) int64) int64 {
		m := f(ss[0])
		for _, s := range ss[1:] {
			m = min(m, f(s))
		}
		return m
	}
	for _, c := range []struct {
		what    string
		f       func(soakSample) int64
		allowed int64
		unit    float64
	}{
		{"goroutines", func(s soakSample) int64 { return int64(s.goroutines) }, int64(l.goroutines), 1},
		{"open files", func(s soakSample) int64 { return int64(s.fds) }, int64(l.fds), 1},
		{"live heap (MiB)", func(s soakSample) int64 { return int64(s.heapLive) }, int64(l.heapBase + l.heapPerCall*uint64(max(calls, 0))), 1 << 20},
		{"resident set (MiB)", func(s soakSample) int64 { return s.rss }, int64(l.rssBase + l.rssPerCall*uint64(max(calls, 0))), 1 << 20},
	} {
		before, after := peak(first, c.f), floor(last, c.f)
		if after-before > c.allowed {
			out = append(out, fmt.Sprintf("%s grew from at most %.1f in the first third to at least %.1f in the last (%d calls later): more than the %.1f allowed",
				c.what, float64(before)/c.unit, float64(after)/c.unit, calls, float64(c.allowed)/c.unit))
		}
	}
	for _, s := range samples {
		if s.pgRuntime > int(l.poolMax) || s.poolTotal > l.poolMax {
			out = append(out, fmt.Sprintf("at %s the runtime role held %d connections (pool %d), over the pool's maximum %d", s.at.Round(time.Second), s.pgRuntime, s.poolTotal, l.poolMax))
		}
		if s.pgAll > int(l.poolMax)+l.pgExtra {
			out = append(out, fmt.Sprintf("at %s the database had %d client connections, over the pool's maximum %d + %d", s.at.Round(time.Second), s.pgAll, l.poolMax, l.pgExtra))
		}
	}
	return out
}
