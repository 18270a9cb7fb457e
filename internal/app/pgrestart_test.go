package app_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/internal/pgtest"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/postgres"
)

// pgCluster is a private PostgreSQL cluster, made and driven by
// `scripts/testdb.sh cluster`, that a test may stop, restart and freeze
// without disturbing the shared test server.
type pgCluster struct {
	dir string
	url string // a superuser's URL
}

// testdbScript is scripts/testdb.sh, seen from this package's directory.
const testdbScript = "../../scripts/testdb.sh"

// newPGCluster creates and starts a private cluster, destroyed when the
// test ends. Without the PostgreSQL binaries and pgvector it skips the
// test, or fails it when CI is set.
func newPGCluster(t *testing.T) *pgCluster {
	t.Helper()
	bin := os.Getenv("SCOPEMEM_PG_BIN")
	if bin == "" {
		bin = "/usr/lib/postgresql/15/bin"
	}
	missing := ""
	for _, f := range []string{"postgres", "initdb", "pg_ctl", "pg_config"} {
		if _, err := os.Stat(filepath.Join(bin, f)); err != nil {
			missing = fmt.Sprintf("PostgreSQL binaries not found (%v)", err)
			break
		}
	}
	if missing == "" {
		share, err := exec.Command(filepath.Join(bin, "pg_config"), "--sharedir").Output()
		if err != nil {
			missing = fmt.Sprintf("pg_config --sharedir: %v", err)
		} else if _, err := os.Stat(filepath.Join(strings.TrimSpace(string(share)), "extension", "vector.control")); err != nil {
			missing = fmt.Sprintf("pgvector is not installed (%v)", err)
		}
	}
	if missing != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s: CI must run the PostgreSQL restart test (scripts/testdb.sh install)", missing)
		}
		t.Skipf("%s; skipping (scripts/testdb.sh install sets them up)", missing)
	}
	// Under /tmp, not t.TempDir(): the cluster's user (not root) must
	// reach it.
	dir, err := os.MkdirTemp("", "scopemem-pgrestart-")
	if err != nil {
		t.Fatal(err)
	}
	c := &pgCluster{dir: dir}
	t.Cleanup(func() {
		c.run(t, "destroy")
		os.RemoveAll(dir)
	})
	c.url = strings.TrimSpace(c.run(t, "create"))
	if !strings.HasPrefix(c.url, "postgres://") {
		t.Fatalf("scripts/testdb.sh cluster create printed %q, want a postgres:// URL", c.url)
	}
	return c
}

// run runs `scripts/testdb.sh cluster <action> <dir>` and returns its
// standard output; a failure fails the test.
func (c *pgCluster) run(t *testing.T, action string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", testdbScript, "cluster", action, c.dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("scripts/testdb.sh cluster %s: %v\n%s", action, err, stderr.String())
	}
	return stdout.String()
}

// restartCall is one tool call of TestPostgresRestart.
type restartCall struct {
	tool        string
	content     string // add_memory's content
	id          string // add_memory's id when acknowledged
	start, end  time.Time
	unavailable bool // failed with the store unavailable, retry error
}

// window is a stretch of the test during which the database was away.
type window struct {
	name       string
	begin, end time.Time
}

func (w window) overlaps(c restartCall) bool { return c.start.Before(w.end) && c.end.After(w.begin) }

// TestPostgresRestart runs eight MCP sessions adding and searching against
// a private PostgreSQL cluster while the cluster is stopped (pg_ctl stop -m
// fast) for 3 s and started again, and then frozen (SIGSTOP) past the store
// timeout and thawed. Calls while the database is away fail with the
// "store unavailable, retry" tool error (store.ErrUnavailable in process)
// within the store timeout, even when the database does not answer at all;
// calls after it is back succeed without restarting scopemem; every
// acknowledged add is stored exactly once, none twice, and retrying the
// failed ones stores each of them once.
func TestPostgresRestart(t *testing.T) {
	cl := newPGCluster(t)
	t.Setenv(pgtest.EnvURL, cl.url)
	d := pgtest.NewDatabase(t)

	const (
		sessions     = 8
		storeTimeout = 2 * time.Second
		// slack covers scheduling on a loaded machine: a call may take the
		// store timeout and this much more, never longer.
		slack  = 2 * time.Second
		outage = 3 * time.Second
		// unavailablePause is how long a session waits after the
		// store unavailable error.
		unavailablePause = 20 * time.Millisecond
		freeze           = storeTimeout + 1500*time.Millisecond
	)
	a := newApp(t, func(c *app.Config) {
		c.DatabaseURL, c.MigrateURL = d.RuntimeURL, d.OwnerURL
		c.StoreTimeout = storeTimeout
	})
	ts := httpServer(t, a)
	tok := token(t, "acme", "alice", nil, allPerms...)

	// An API key, whose record is read from the database on every request:
	// while the database is away such a request is answered 503 within the
	// store timeout, not 401 (the key is not at fault).
	keys, err := postgres.OpenAdmin(t.Context(), d.OwnerURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, rec, err := scope.NewAPIKey(false)
	if err != nil {
		t.Fatal(err)
	}
	rec.Identity, rec.CreatedAt = scope.Identity{Org: "acme", User: "alice", Permissions: allPerms}, time.Now().UTC()
	if err := keys.CreateKey(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	keys.Close()
	keyRequest := func() (int, time.Duration) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, ts.URL+"/mcp",
			strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+key)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, time.Since(start)
	}
	if code, _ := keyRequest(); code == http.StatusUnauthorized || code == http.StatusServiceUnavailable {
		t.Fatalf("a request with a valid API key = %d before the outage", code)
	}

	var (
		mu       sync.Mutex
		calls    []restartCall
		wg       sync.WaitGroup
		done     = make(chan struct{})
		stopOnce sync.Once
	)
	stopSessions := func() {
		stopOnce.Do(func() { close(done) })
		wg.Wait()
	}
	// A test that fails half-way must not leave the cluster stopped or
	// frozen for the cleanups that drop the database, nor sessions
	// running once it has ended.
	stopped, frozen := false, false
	defer func() {
		if frozen {
			cl.run(t, "thaw")
		}
		if stopped {
			cl.run(t, "start")
		}
		stopSessions()
	}()

	record := func(c restartCall) {
		mu.Lock()
		calls = append(calls, c)
		mu.Unlock()
	}
	for i := range sessions {
		c := connect(t, ts.URL, tok)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-done:
					return
				default:
				}
				content := distinctFact(fmt.Sprintf("session %d", i), j)
				for _, tc := range []struct {
					tool string
					args map[string]any
				}{
					{"add_memory", map[string]any{"content": content}},
					{"search_memory", map[string]any{"query": content, "limit": 5}},
				} {
					rc := restartCall{tool: tc.tool, start: time.Now()}
					res, err := tryCall(t.Context(), c, tc.tool, tc.args)
					rc.end = time.Now()
					if err != nil {
						t.Errorf("session %d: %s: %v", i, tc.tool, err)
						return
					}
					if tc.tool == "add_memory" {
						rc.content = content
					}
					switch {
					case !res.IsError && tc.tool == "add_memory":
						rc.id = addedID(t, res)
					case res.IsError && strings.HasPrefix(text(res), "store unavailable, retry"):
						rc.unavailable = true
						// A client retries a moment later, as the
						// error says; without the pause a stopped
						// database fails thousands of adds a second,
						// each retried one by one below.
						time.Sleep(unavailablePause)
					case res.IsError:
						t.Errorf("session %d: %s failed with %q, want success or the store unavailable, retry error", i, tc.tool, text(res))
					}
					record(rc)
				}
			}
		}()
	}

	// direct calls the store as the tools do, in process and at once,
	// while the database is away: each must fail with
	// store.ErrUnavailable within the store timeout. When the database
	// does not answer at all, a call whose caller gives up first fails with
	// the caller's own context error instead.
	userScope, err := alice.Resolve("user", "")
	if err != nil {
		t.Fatal(err)
	}
	var directAdds []string
	direct := func(what string, answers bool) {
		t.Helper()
		content := distinctFact("direct "+what, 0)
		directAdds = append(directAdds, content)
		vecs, err := a.Embedder.Embed(t.Context(), []string{content})
		if err != nil {
			t.Fatal(err)
		}
		type op struct {
			op   string
			f    func(ctx context.Context) error
			ctx  time.Duration // the caller's own deadline, if any
			want error
		}
		ops := []op{
			{op: "Add", f: func(ctx context.Context) error {
				_, err := a.Store.Add(ctx, alice, []store.NewMemory{{Scope: userScope, Content: content, Vector: vecs[0]}})
				return err
			}},
			{op: "Search", f: func(ctx context.Context) error {
				_, err := a.Store.Search(ctx, alice, store.Query{Text: content, Vector: vecs[0]})
				return err
			}},
			{op: "ListScopes", f: func(ctx context.Context) error {
				_, err := a.Store.ListScopes(ctx, alice)
				return err
			}},
		}
		for i := range ops {
			ops[i].want = store.ErrUnavailable
		}
		if !answers {
			ops = append(ops, op{op: "ListScopes with the caller's deadline of 300ms", f: ops[2].f, ctx: 300 * time.Millisecond, want: context.DeadlineExceeded})
		}
		var dwg sync.WaitGroup
		for _, c := range ops {
			dwg.Add(1)
			go func() {
				defer dwg.Done()
				ctx := t.Context()
				if c.ctx > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, c.ctx)
					defer cancel()
				}
				start := time.Now()
				err := c.f(ctx)
				took := time.Since(start)
				if !errors.Is(err, c.want) || (c.want != store.ErrUnavailable && errors.Is(err, store.ErrUnavailable)) {
					t.Errorf("%s: store %s = %v, want %v", what, c.op, err, c.want)
				}
				if took > storeTimeout+slack {
					t.Errorf("%s: store %s took %v, over the store timeout of %v", what, c.op, took, storeTimeout)
				}
				t.Logf("%s: store %s failed after %v: %v", what, c.op, took.Round(time.Millisecond), err)
			}()
		}
		dwg.Wait()
		if code, took := keyRequest(); code != http.StatusServiceUnavailable || took > storeTimeout+slack {
			t.Errorf("%s: a request with an API key = %d after %v, want 503 within the store timeout", what, code, took)
		}
	}

	time.Sleep(time.Second) // every session adding and searching
	stopBegin := time.Now()
	cl.run(t, "stop")
	stopped = true
	stoppedAt := time.Now()
	direct("stopped", true)
	time.Sleep(outage - time.Since(stoppedAt))
	cl.run(t, "start")
	stopped = false
	upAt := time.Now()

	time.Sleep(1500 * time.Millisecond)
	freezeBegin := time.Now()
	cl.run(t, "freeze")
	frozen = true
	direct("frozen", false)
	time.Sleep(freeze - time.Since(freezeBegin))
	cl.run(t, "thaw")
	frozen = false
	thawedAt := time.Now()

	time.Sleep(2 * time.Second)
	stopSessions()
	if t.Failed() {
		return
	}

	windows := []window{{"stopped", stopBegin, upAt}, {"frozen", freezeBegin, thawedAt}}
	var (
		acked, failedAdds []restartCall
		unavailable       = map[string]int{}
		timedOut          int // calls in the freeze that waited the store timeout
		after             = map[string]int{}
	)
	for _, c := range calls {
		took := c.end.Sub(c.start)
		if took > storeTimeout+slack {
			t.Errorf("%s took %v (from %s), over the store timeout of %v", c.tool, took, c.start.Format("15:04:05.000"), storeTimeout)
		}
		in := ""
		for _, w := range windows {
			if w.overlaps(c) {
				in = w.name
			}
		}
		switch {
		case c.unavailable && in == "":
			t.Errorf("%s from %s to %s failed with the store unavailable error while the database was up",
				c.tool, c.start.Format("15:04:05.000"), c.end.Format("15:04:05.000"))
		case c.unavailable:
			unavailable[in]++
			if in == "frozen" && took >= storeTimeout-100*time.Millisecond {
				timedOut++
			}
		case c.start.After(upAt) && in == "":
			after[c.tool]++
		}
		if c.tool == "add_memory" {
			if c.id != "" {
				acked = append(acked, c)
			} else {
				failedAdds = append(failedAdds, c)
			}
		}
	}
	t.Logf("%d calls; store unavailable while stopped: %d, while frozen: %d (%d of them after the full store timeout); %d adds acknowledged, %d failed; after the restart %d adds and %d searches succeeded",
		len(calls), unavailable["stopped"], unavailable["frozen"], timedOut, len(acked), len(failedAdds), after["add_memory"], after["search_memory"])
	for _, w := range windows {
		if unavailable[w.name] == 0 {
			t.Errorf("no call failed while the database was %s: the test proved nothing", w.name)
		}
	}
	if timedOut == 0 {
		t.Error("no call waited for the store timeout while the database was frozen: the timeout was not exercised")
	}
	if after["add_memory"] == 0 || after["search_memory"] == 0 {
		t.Errorf("after the restart %d adds and %d searches succeeded, want some of each", after["add_memory"], after["search_memory"])
	}

	// Every acknowledged add is stored once, under its id; nothing is
	// stored twice.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, d.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	count := func(content string) (n int, ids []string) {
		t.Helper()
		if err := admin.QueryRow(ctx, `SELECT count(*), coalesce(array_agg(id::text), '{}') FROM memories WHERE content = $1`, content).Scan(&n, &ids); err != nil {
			t.Fatal(err)
		}
		return n, ids
	}
	for _, c := range acked {
		if n, ids := count(c.content); n != 1 || ids[0] != c.id {
			t.Errorf("acknowledged add %s stored %d times (ids %v), want once", c.id, n, ids)
		}
	}
	for _, c := range failedAdds {
		if n, _ := count(c.content); n > 1 {
			t.Errorf("failed add of %q stored %d times", c.content, n)
		}
	}
	for _, content := range directAdds {
		if n, _ := count(content); n > 1 {
			t.Errorf("failed direct add of %q stored %d times", content, n)
		}
	}

	// The same App serves again: retrying each failed add (as the error
	// says to) stores it, or finds it stored, once.
	c := connect(t, ts.URL, tok)
	dups := 0
	for _, f := range failedAdds {
		out := ok[addOut](t, c, "add_memory", map[string]any{"content": f.content})
		if out.Duplicate {
			dups++
		}
		if n, ids := count(f.content); n != 1 || ids[0] != out.ID {
			t.Errorf("retried add of %q: stored %d times (ids %v), want once as %s", f.content, n, ids, out.ID)
		}
	}
	t.Logf("%d failed adds retried: %d had been stored after all", len(failedAdds), dups)
	ls := ok[scopesOut](t, c, "list_scopes", map[string]any{})
	total := 0
	for _, s := range ls.Scopes {
		total += s.Count
	}
	var rows int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM memories`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if want := len(acked) + len(failedAdds); total != rows || rows < want || rows > want+len(directAdds) {
		t.Errorf("list_scopes counts %d memories and the table holds %d; want both %d (the acknowledged and retried adds) plus at most the %d direct adds",
			total, rows, want, len(directAdds))
	}
}
