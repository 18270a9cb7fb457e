package sqlite_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/sqlite"
	"github.com/scopemem/scopemem/store/storetest"
)

// openAt opens the store at path, records storetest's embedder and closes
// it at the end of the test.
func openAt(t testing.TB, cfg sqlite.Config) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open(%s) = %v", cfg.Path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
	})
	return s
}

// openTemp opens a store in a fresh file (in a directory Open must create)
// under t.TempDir.
func openTemp(t testing.TB) *sqlite.Store {
	t.Helper()
	return openAt(t, sqlite.Config{Path: filepath.Join(t.TempDir(), "data", "memories.db")})
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
}

func setEmbedder(t testing.TB, s store.Store) {
	t.Helper()
	if err := s.SetEmbedder(t.Context(), storetest.EmbedderInfo); err != nil {
		t.Fatalf("SetEmbedder = %v", err)
	}
}

// rawCount counts rows straight from the file, bypassing the store.
func rawCount(t *testing.T, path, query string, args ...any) int {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestTwoStoresOneFile checks that a store sees what another connection
// (standing in for another process) wrote, although it caches vectors.
func TestTwoStoresOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	a := openAt(t, sqlite.Config{Path: path})
	b := openAt(t, sqlite.Config{Path: path})
	setEmbedder(t, a)
	if info, ok, err := b.Embedder(t.Context()); err != nil || !ok || info != storetest.EmbedderInfo {
		t.Fatalf("b.Embedder() = %v, %v, %v; want what a recorded", info, ok, err)
	}
	alice := storetest.Member("acme", "alice")
	user := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	first := mustAdd(t, a, alice, storetest.New(user, "first fact about kittens"))
	find := func(s *sqlite.Store, text string) []store.Hit {
		t.Helper()
		hits, err := s.Search(t.Context(), alice, store.Query{Vector: storetest.Vector(text, storetest.Dims), Limit: 100})
		if err != nil {
			t.Fatalf("Search = %v", err)
		}
		return hits
	}
	ids := func(hits []store.Hit) []string {
		var out []string
		for _, h := range hits {
			out = append(out, h.ID)
		}
		return out
	}
	if hits := find(b, "first fact about kittens"); len(hits) != 1 || hits[0].ID != first.ID {
		t.Fatalf("b finds %v, want [%s]", ids(hits), first.ID)
	}
	second := mustAdd(t, a, alice, storetest.New(user, "second fact about puppies"))
	if hits := find(b, "second fact about puppies"); len(hits) != 2 || hits[0].ID != second.ID {
		t.Errorf("after a second add elsewhere, b finds %v, want [%s %s]", ids(hits), second.ID, first.ID)
	}
	content := "first fact, now about ferrets"
	if _, err := a.Update(t.Context(), alice, first.ID, store.Patch{Content: &content, Vector: storetest.Vector(content, storetest.Dims)}); err != nil {
		t.Fatalf("a.Update = %v", err)
	}
	if hits := find(b, content); len(hits) != 2 || hits[0].ID != first.ID || hits[0].Similarity < 0.999 || hits[0].Content != content {
		t.Errorf("after an update elsewhere, b's best hit = %+v, want %s with the new vector", hits[0], first.ID)
	}
	if err := a.Delete(t.Context(), alice, second.ID); err != nil {
		t.Fatalf("a.Delete = %v", err)
	}
	if hits := find(b, "second fact about puppies"); len(hits) != 1 || hits[0].ID != first.ID {
		t.Errorf("after a delete elsewhere, b finds %v, want [%s]", ids(hits), first.ID)
	}
	// And the other way round, with both caches warm. A near-duplicate
	// added through a is found against b's write, although a's cache
	// predates it.
	third := mustAdd(t, b, alice, storetest.New(user, "third fact about owls"))
	dup := mustAddFull(t, a, alice, store.NewMemory{Scope: user, Content: "owls, third fact",
		Vector: storetest.Mix(storetest.Vector("third fact about owls", storetest.Dims), storetest.Vector("z", storetest.Dims), 0.05)})
	if !dup.Duplicate || dup.ID != third.ID {
		t.Errorf("a.Add(near-duplicate of b's memory) = %s duplicate %v, want %s", dup.ID, dup.Duplicate, third.ID)
	}
	if hits := find(a, "third fact about owls"); len(hits) != 2 || hits[0].ID != third.ID {
		t.Errorf("a finds %v, want [%s %s]", ids(hits), third.ID, first.ID)
	}
	if _, err := b.Purge(t.Context(), alice, scope.Target{Scope: user}); err != nil {
		t.Fatalf("b.Purge = %v", err)
	}
	if hits := find(a, "third fact about owls"); len(hits) != 0 {
		t.Errorf("after a purge elsewhere, a finds %v, want nothing", ids(hits))
	}
}

func mustAdd(t testing.TB, s store.Store, id scope.Identity, m store.NewMemory) store.Memory {
	t.Helper()
	return mustAddFull(t, s, id, m).Memory
}

func mustAddFull(t testing.TB, s store.Store, id scope.Identity, m store.NewMemory) store.Added {
	t.Helper()
	got, err := s.Add(t.Context(), id, []store.NewMemory{m})
	if err != nil {
		t.Fatalf("Add(%q) = %v", m.Content, err)
	}
	return got[0]
}

// The multi-process test re-executes the test binary; these variables tell
// a child what to do.
const (
	childPathEnv = "SCOPEMEM_SQLITE_CHILD_DB"
	childNameEnv = "SCOPEMEM_SQLITE_CHILD_NAME"
	childAdds    = 120
	sharedFacts  = 10
)

// writer adds n distinct memories as user name, and the shared facts to the
// org scope, calling ack with each acknowledged memory.
func writer(t *testing.T, s store.Store, name string, n int, ack func(id, content string)) error {
	id := storetest.Member("acme", name)
	for i := range n {
		content := fmt.Sprintf("%s note %d", name, i)
		sc := scope.Scope{Kind: scope.KindUser, ID: name}
		if i%3 == 0 {
			sc = scope.Scope{Kind: scope.KindOrg}
		}
		got, err := s.Add(t.Context(), id, []store.NewMemory{storetest.New(sc, content)})
		if err != nil {
			return fmt.Errorf("%s: Add %d: %w", name, i, err)
		}
		ack(got[0].ID, content)
		if i%sharedFacts == 0 {
			fact := fmt.Sprintf("shared fact %d", i/sharedFacts%sharedFacts)
			got, err := s.Add(t.Context(), id, []store.NewMemory{storetest.New(scope.Scope{Kind: scope.KindOrg}, fact)})
			if err != nil {
				return fmt.Errorf("%s: Add shared: %w", name, err)
			}
			ack(got[0].ID, fact)
		}
		if i%7 == 0 {
			if _, err := s.Search(t.Context(), id, store.Query{Text: "note", Vector: storetest.Vector(content, storetest.Dims)}); err != nil {
				return fmt.Errorf("%s: Search: %w", name, err)
			}
		}
	}
	return nil
}

// TestMultiProcess runs two child processes and four goroutines of this
// process adding to one file at once, and checks that every acknowledged
// add is stored exactly once.
func TestMultiProcess(t *testing.T) {
	if path := os.Getenv(childPathEnv); path != "" {
		// Child: write, printing one line per acknowledged add.
		s, err := sqlite.Open(t.Context(), sqlite.Config{Path: path})
		if err != nil {
			t.Fatalf("child Open = %v", err)
		}
		defer s.Close()
		out := bufio.NewWriter(os.Stdout)
		err = writer(t, s, os.Getenv(childNameEnv), childAdds, func(id, content string) { fmt.Fprintf(out, "ACK\t%s\t%s\n", id, content) })
		out.Flush()
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	path := filepath.Join(t.TempDir(), "multi.db")
	s := openAt(t, sqlite.Config{Path: path})
	setEmbedder(t, s)

	acked := map[string]string{} // id -> content
	var mu sync.Mutex
	ack := func(id, content string) {
		mu.Lock()
		defer mu.Unlock()
		if prev, ok := acked[id]; ok && store.NormalizeContent(prev) != store.NormalizeContent(content) {
			t.Errorf("id %s acknowledged for %q and %q", id, prev, content)
		}
		acked[id] = content
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for c := range 2 {
		wg.Go(func() {
			name := fmt.Sprintf("proc%d", c)
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestMultiProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), childPathEnv+"="+path, childNameEnv+"="+name)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				errs <- fmt.Errorf("child %s: %v\n%s%s", name, err, stdout.String(), stderr.String())
			}
			n := 0
			for line := range strings.Lines(stdout.String()) {
				f := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
				if len(f) == 3 && f[0] == "ACK" {
					ack(f[1], f[2])
					n++
				}
			}
			if n < childAdds {
				errs <- fmt.Errorf("child %s acknowledged %d adds, want at least %d", name, n, childAdds)
			}
		})
	}
	for g := range 4 {
		wg.Go(func() {
			if err := writer(t, s, fmt.Sprintf("goroutine%d", g), childAdds/2, ack); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	wantRows := 2*childAdds + 4*childAdds/2 + sharedFacts
	if len(acked) != wantRows {
		t.Errorf("%d distinct memories acknowledged, want %d", len(acked), wantRows)
	}
	if n := rawCount(t, path, `SELECT count(*) FROM memories`); n != wantRows {
		t.Errorf("the file holds %d memories, want %d", n, wantRows)
	}
	for id, content := range acked {
		if n := rawCount(t, path, `SELECT count(*) FROM memories WHERE id = ? AND content = ?`, id, content); n != 1 {
			t.Errorf("acknowledged memory %s %q is stored %d times, want once", id, content, n)
		}
	}
	for k := range sharedFacts {
		if n := rawCount(t, path, `SELECT count(*) FROM memories WHERE content = ?`, fmt.Sprintf("shared fact %d", k)); n != 1 {
			t.Errorf("shared fact %d is stored %d times, want once", k, n)
		}
	}
}

// TestConcurrentSessions runs 8 sessions, each with its own Store on one
// file as separate processes would, adding and searching at once.
func TestConcurrentSessions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	setEmbedder(t, openAt(t, sqlite.Config{Path: path}))
	const sessions, adds = 8, 40
	type ack struct {
		who scope.Identity
		m   store.Memory
	}
	acks := make([][]ack, sessions)
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for i := range sessions {
		wg.Go(func() {
			s, err := sqlite.Open(t.Context(), sqlite.Config{Path: path})
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			id := storetest.Member("acme", fmt.Sprintf("user%d", i%3), "api")
			id.Session = fmt.Sprintf("s%d", i)
			for j := range adds {
				sc := id.Visible()[j%len(id.Visible())]
				got, err := s.Add(t.Context(), id, []store.NewMemory{storetest.New(sc, fmt.Sprintf("session %d memory %d", i, j))})
				if err != nil {
					errs <- fmt.Errorf("session %d: %w", i, err)
					return
				}
				acks[i] = append(acks[i], ack{id, got[0].Memory})
				if _, err := s.Search(t.Context(), id, store.Query{Text: "memory " + got[0].Content}); err != nil {
					errs <- fmt.Errorf("session %d: Search: %w", i, err)
					return
				}
				hits, err := s.Search(t.Context(), id, store.Query{Vector: storetest.Vector(got[0].Content, storetest.Dims), Limit: 1})
				if err != nil {
					errs <- fmt.Errorf("session %d: Search: %w", i, err)
					return
				}
				if len(hits) != 1 || hits[0].ID != got[0].ID {
					errs <- fmt.Errorf("session %d: its own fresh memory %s is not its best hit: %v", i, got[0].ID, hits)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	check := openAt(t, sqlite.Config{Path: path})
	total := 0
	for _, list := range acks {
		for _, a := range list {
			total++
			got, err := check.Get(t.Context(), a.who, a.m.ID)
			if err != nil || got.Content != a.m.Content {
				t.Errorf("Get(%s) = %q, %v; want %q", a.m.ID, got.Content, err, a.m.Content)
			}
		}
	}
	if n := rawCount(t, path, `SELECT count(*) FROM memories`); n != total || total != sessions*adds {
		t.Errorf("the file holds %d memories, %d acknowledged, want %d", n, total, sessions*adds)
	}
}

func TestReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ro.db")
	w, err := sqlite.Open(t.Context(), sqlite.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	setEmbedder(t, w)
	alice := storetest.Member("acme", "alice")
	user := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	m := mustAdd(t, w, alice, storetest.New(user, "written before going read-only"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	check := func(t *testing.T, s store.Store) {
		if got, err := s.Get(t.Context(), alice, m.ID); err != nil || got.Content != m.Content {
			t.Errorf("Get = %q, %v; want %q", got.Content, err, m.Content)
		}
		hits, err := s.Search(t.Context(), alice, store.Query{Text: "written", Vector: storetest.Vector(m.Content, storetest.Dims)})
		if err != nil || len(hits) != 1 {
			t.Errorf("Search = %d hits, %v; want 1", len(hits), err)
		}
		if _, err := s.ListScopes(t.Context(), alice); err != nil {
			t.Errorf("ListScopes = %v", err)
		}
		if err := s.SetEmbedder(t.Context(), storetest.EmbedderInfo); err != nil {
			t.Errorf("SetEmbedder(same) = %v, want nil", err)
		}
		content := "changed"
		writes := map[string]error{}
		_, writes["Add"] = s.Add(t.Context(), alice, []store.NewMemory{storetest.New(user, "a new memory")})
		_, writes["Update"] = s.Update(t.Context(), alice, m.ID, store.Patch{Content: &content, Vector: storetest.Vector(content, storetest.Dims)})
		writes["Delete"] = s.Delete(t.Context(), alice, m.ID)
		_, writes["Purge"] = s.Purge(t.Context(), alice, scope.Target{Scope: user})
		_, writes["DeleteExpired"] = s.DeleteExpired(t.Context(), time.Now())
		for op, err := range writes {
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("%s on a read-only store = %v, want ErrUnavailable", op, err)
			}
		}
		if got, err := s.Get(t.Context(), alice, m.ID); err != nil || got.Content != m.Content {
			t.Errorf("Get after refused writes = %q, %v; want %q unchanged", got.Content, err, m.Content)
		}
	}
	t.Run("Config.ReadOnly", func(t *testing.T) {
		check(t, openAt(t, sqlite.Config{Path: path, ReadOnly: true}))
	})
	t.Run("file mode", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("running as root, which may write any file; Config.ReadOnly covers the read-only path")
		}
		dir := filepath.Dir(path)
		if err := os.Chmod(path, 0o444); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755); os.Chmod(path, 0o644) })
		s, err := sqlite.Open(t.Context(), sqlite.Config{Path: path, ReadOnly: true})
		if err != nil {
			t.Fatalf("Open(read-only file) = %v", err)
		}
		defer s.Close()
		check(t, s)
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := sqlite.Open(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "none.db"), ReadOnly: true})
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Open(missing file, read-only) = %v, want ErrNotExist", err)
		}
	})
}

// TestBusy holds the write lock from another connection: a write must give
// up after the busy timeout with ErrUnavailable, and reads go on.
func TestBusy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "busy.db")
	s := openAt(t, sqlite.Config{Path: path, BusyTimeout: 50 * time.Millisecond})
	setEmbedder(t, s)
	alice := storetest.Member("acme", "alice")
	user := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	m := mustAdd(t, s, alice, storetest.New(user, "before the lock"))

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.Add(t.Context(), alice, []store.NewMemory{storetest.New(user, "while locked")})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Add while another connection holds the write lock = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Add gave up after %v, want about the busy timeout", d)
	}
	if got, err := s.Get(t.Context(), alice, m.ID); err != nil || got.ID != m.ID {
		t.Errorf("Get while locked = %v, want the memory", err)
	}
	if _, err := conn.ExecContext(t.Context(), `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(t.Context(), alice, []store.NewMemory{storetest.New(user, "after the lock")}); err != nil {
		t.Errorf("Add after the lock is released = %v", err)
	}
}

func TestOpen(t *testing.T) {
	t.Run("no path", func(t *testing.T) {
		if s, err := sqlite.Open(t.Context(), sqlite.Config{}); err == nil {
			s.Close()
			t.Error("Open(no path) = nil error")
		}
	})
	t.Run("reopen keeps data and schema", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "a", "b", "m.db")
		s, err := sqlite.Open(t.Context(), sqlite.Config{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		setEmbedder(t, s)
		alice := storetest.Member("acme", "alice")
		m := mustAdd(t, s, alice, storetest.New(scope.Scope{Kind: scope.KindOrg}, "kept"))
		s.Close()
		s = openAt(t, sqlite.Config{Path: path})
		if got, err := s.Get(t.Context(), alice, m.ID); err != nil || got.Content != "kept" {
			t.Errorf("Get after reopen = %q, %v", got.Content, err)
		}
		if n := rawCount(t, path, `SELECT count(*) FROM schema_version`); n != 1 {
			t.Errorf("schema_version has %d rows, want 1", n)
		}
		if mode := rawString(t, path, `PRAGMA journal_mode`); mode != "wal" {
			t.Errorf("journal mode = %q, want wal", mode)
		}
	})
	t.Run("newer schema refused", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "m.db")
		s, err := sqlite.Open(t.Context(), sqlite.Config{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(t.Context(), `UPDATE schema_version SET version = version + 1`); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if s, err := sqlite.Open(t.Context(), sqlite.Config{Path: path}); err == nil {
			s.Close()
			t.Error("Open(file from a newer version) = nil error, want a refusal")
		}
	})
	t.Run("not a database", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "junk.db")
		if err := os.WriteFile(path, bytes.Repeat([]byte("not sqlite "), 1000), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := sqlite.Open(t.Context(), sqlite.Config{Path: path})
		if !errors.Is(err, store.ErrUnavailable) {
			if s != nil {
				s.Close()
			}
			t.Errorf("Open(junk file) = %v, want ErrUnavailable", err)
		}
	})
}

func rawString(t *testing.T, path, query string) string {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	if err := db.QueryRowContext(t.Context(), query).Scan(&v); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return v
}

// TestAddCancelled checks that an add whose context ends before it
// commits stores nothing and says why: already cancelled, or ended while
// it waits for a write lock another connection holds (the wait must not
// outlast the context).
func TestAddCancelled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	s := openAt(t, sqlite.Config{Path: path})
	if err := s.SetEmbedder(t.Context(), storetest.EmbedderInfo); err != nil {
		t.Fatal(err)
	}
	alice := storetest.Member("acme", "alice", "api")
	user := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	stored := func() int {
		t.Helper()
		var n int
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.QueryRow(`SELECT count(*) FROM memories`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	locked := func(t *testing.T) func() {
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := db.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(t.Context(), `BEGIN IMMEDIATE`); err != nil {
			t.Fatal(err)
		}
		return func() {
			conn.ExecContext(t.Context(), `ROLLBACK`)
			conn.Close()
			db.Close()
		}
	}
	tests := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		lock    bool
		wantErr error
	}{
		{"cancelled before", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			return ctx, cancel
		}, false, context.Canceled},
		{"deadline while waiting for the write lock", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(t.Context(), 300*time.Millisecond)
		}, true, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.lock {
				defer locked(t)()
			}
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			_, err := s.Add(ctx, alice, []store.NewMemory{storetest.New(user, "added under "+tt.name)})
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Add = %v, want %v", err, tt.wantErr)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("Add returned after %v, long after its context ended", took)
			}
		})
	}
	if n := stored(); n != 0 {
		t.Errorf("%d memories stored by cancelled adds, want 0", n)
	}
	if _, err := s.Add(t.Context(), alice, []store.NewMemory{storetest.New(user, "added afterwards")}); err != nil {
		t.Fatalf("Add after the cancelled ones = %v", err)
	}
}

// childAddEnv names the content a child process of
// TestSearchSeesOtherProcessAdds adds.
const childAddEnv = "SCOPEMEM_SQLITE_CHILD_ADD"

// TestSearchSeesOtherProcessAdds checks that a search finds what another
// process added since this one last searched, its scope already cached:
// nothing committed elsewhere may be missed by the check that lets a
// search skip reading the scopes' versions.
func TestSearchSeesOtherProcessAdds(t *testing.T) {
	alice := storetest.Member("acme", "alice")
	mine := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	if content := os.Getenv(childAddEnv); content != "" {
		s, err := sqlite.Open(t.Context(), sqlite.Config{Path: os.Getenv(childPathEnv)})
		if err != nil {
			t.Fatalf("child Open = %v", err)
		}
		defer s.Close()
		if _, err := s.Add(t.Context(), alice, []store.NewMemory{storetest.New(mine, content)}); err != nil {
			t.Fatalf("child Add = %v", err)
		}
		return
	}
	path := filepath.Join(t.TempDir(), "seen.db")
	s := openAt(t, sqlite.Config{Path: path})
	setEmbedder(t, s)
	if _, err := s.Add(t.Context(), alice, []store.NewMemory{storetest.New(mine, "the first note")}); err != nil {
		t.Fatal(err)
	}
	find := func(text string) bool {
		t.Helper()
		hits, err := s.Search(t.Context(), alice, store.Query{Text: text, Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(hits, func(h store.Hit) bool { return h.Content == text })
	}
	for round := range 4 {
		content := fmt.Sprintf("zebra%d crossed the road", round)
		if find(content) {
			t.Fatalf("round %d: %q found before it was added", round, content)
		}
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestSearchSeesOtherProcessAdds$", "-test.count=1")
		cmd.Env = append(os.Environ(), childPathEnv+"="+path, childAddEnv+"="+content)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		if !find(content) {
			t.Errorf("round %d: %q, added by another process, not found", round, content)
		}
	}
}
