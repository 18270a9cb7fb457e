package app_test

import (
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/sqlite"
)

// copyFile copies src to dst.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// chattrDir makes dir immutable (root can write to any directory whatever
// its mode, but not to an immutable one) until the test ends.
func chattrDir(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
		t.Skipf("chattr +i needs root and a file system with attributes: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("chattr", "-i", dir).CombinedOutput(); err != nil {
			t.Errorf("chattr -i %s: %v: %s", dir, err, out)
		}
	})
}

// remountReadOnly remounts the tmpfs at dir read-only, and read-write
// again when the test ends (before mountTmpfs unmounts it).
func remountReadOnly(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s read-only: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("mount", "-o", "remount,rw", dir).CombinedOutput(); err != nil {
			t.Errorf("remount %s read-write: %v: %s", dir, err, out)
		}
	})
}

// TestSQLiteReadOnlyDirectory serves a SQLite file whose directory or file
// system cannot be written, so that SQLite cannot create the -wal and -shm
// files WAL mode needs: the server starts anyway with a warning naming the
// reason, searches and list_scopes return everything stored, every write
// tool fails with an error that says the database is read-only, why, and
// what to do, the store's error wraps store.ErrReadOnly, and the file is
// unchanged and passes integrity_check afterwards.
func TestSQLiteReadOnlyDirectory(t *testing.T) {
	tests := []struct {
		name string
		// mount puts the database on its own tmpfs (else a plain
		// directory).
		mount bool
		// wal copies the file of a running server with its -wal and -shm
		// files, as a crash leaves them: the log holds the last changes.
		wal      bool
		readOnly func(t *testing.T, dir string)
		// wantWhy is in every write's tool error.
		wantWhy string
		// wantWarning: the server logs that it serves the file read-only.
		wantWarning bool
	}{
		{name: "immutable directory", readOnly: chattrDir, wantWhy: "cannot be written", wantWarning: true},
		{name: "read-only mount", mount: true, readOnly: remountReadOnly, wantWhy: "read-only file system", wantWarning: true},
		// SQLite opens a WAL file read-only by itself when -shm exists; the
		// changes in the log must be served.
		{name: "read-only mount with changes in the write-ahead log", mount: true, wal: true, readOnly: remountReadOnly,
			wantWhy: "is read-only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dir string
			if tt.mount {
				dir = mountTmpfs(t, 16<<20)
			} else {
				dir = t.TempDir()
			}
			db := filepath.Join(dir, "m.db")
			acked := seedReadOnly(t, db, tt.wal)
			tt.readOnly(t, dir)
			if f, err := os.Create(filepath.Join(dir, "probe")); err == nil {
				f.Close()
				t.Fatal("the read-only directory took a new file: the test proves nothing")
			}
			before, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}

			var logs lockedBuffer
			logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
			a, err := app.New(t.Context(), app.Config{DBPath: db, Embedder: "builtin", JanitorInterval: -1, Logger: logger})
			if err != nil {
				t.Fatalf("start on a read-only directory: %v", err)
			}
			closed := false
			t.Cleanup(func() {
				if !closed {
					a.Close()
				}
			})
			if got := strings.Contains(logs.String(), "serving it read-only"); got != tt.wantWarning {
				t.Errorf("read-only warning logged: %v, want %v; logs:\n%s", got, tt.wantWarning, logs.String())
			}
			ts := httpServer(t, a)
			c := connect(t, ts.URL, token(t, "acme", "alice", nil, allPerms...))
			for _, i := range []int{0, 5, len(acked) - 1} {
				s := ok[searchOut](t, c, "search_memory", map[string]any{"query": distinctFact("stored", i)})
				if len(s.Results) == 0 || s.Results[0].ID != acked[i] {
					t.Errorf("search for fact %d = %v, want %s first", i, ids(s.Results), acked[i])
				}
			}
			ls := ok[scopesOut](t, c, "list_scopes", map[string]any{})
			total := 0
			for _, sc := range ls.Scopes {
				total += sc.Count
			}
			if total != len(acked) {
				t.Errorf("list_scopes counts %d memories, want %d", total, len(acked))
			}
			for _, call := range []struct {
				tool string
				args map[string]any
			}{
				{"add_memory", map[string]any{"content": "cannot be written"}},
				{"update_memory", map[string]any{"id": acked[0], "tags": []string{"x"}}},
				{"update_memory", map[string]any{"id": acked[0], "content": "new words"}},
				{"delete_memory", map[string]any{"id": acked[1]}},
				{"purge", map[string]any{"scope": "user", "confirm": "user"}},
			} {
				msg := fails(t, c, call.tool, call.args)
				for _, want := range []string{"the memory store refuses writes", db + " is read-only", tt.wantWhy, "writable"} {
					if !strings.Contains(msg, want) {
						t.Errorf("%s failed with %q, want it to say %q", call.tool, msg, want)
					}
				}
			}
			userScope, err := alice.Resolve("user", "")
			if err != nil {
				t.Fatal(err)
			}
			vecs, err := a.Embedder.Embed(t.Context(), []string{"cannot be written"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.Store.Add(t.Context(), alice, []store.NewMemory{{Scope: userScope, Content: "cannot be written", Vector: vecs[0]}}); !errors.Is(err, store.ErrReadOnly) || !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("store Add = %v, want an error wrapping ErrReadOnly and ErrUnavailable", err)
			}
			if err := a.Store.Delete(t.Context(), alice, acked[2]); !errors.Is(err, store.ErrReadOnly) {
				t.Errorf("store Delete = %v, want an error wrapping ErrReadOnly", err)
			}
			for _, id := range acked {
				if _, err := a.Store.Get(t.Context(), alice, id); err != nil {
					t.Errorf("Get %s after the failed writes: %v", id, err)
				}
			}
			closed = true
			if err := a.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			after, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}
			if string(after) != string(before) {
				t.Error("the database file changed while read-only")
			}
			// A read-only open of its own (mode=ro, immutable when it must)
			// finds a healthy file.
			st, err := sqlite.Open(t.Context(), sqlite.Config{Path: db})
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer st.Close()
			if got := integrity(t, db, tt.wal); got != "ok" {
				t.Errorf("integrity_check = %q, want ok", got)
			}
		})
	}
}

// TestSQLiteReadOnlyUnreadableLog checks the one case a read-only
// directory cannot be served: the write-ahead log holds changes but its
// -shm file is gone, so SQLite cannot read the log, and ignoring it would
// serve an old state. Open fails with an error saying what to do.
func TestSQLiteReadOnlyUnreadableLog(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "m.db")
	seedReadOnly(t, db, true)
	if err := os.Remove(db + "-shm"); err != nil {
		t.Fatal(err)
	}
	chattrDir(t, dir)
	st, err := sqlite.Open(t.Context(), sqlite.Config{Path: db})
	if err == nil {
		st.Close()
		t.Fatal("Open served a file whose write-ahead log it cannot read")
	}
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Open = %v, want an error wrapping ErrUnavailable", err)
	}
	for _, want := range []string{db + "-wal", "make the directory writable"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open = %q, want it to say %q", err, want)
		}
	}
}

// seedReadOnly stores ten memories through a server on db and returns
// their ids. With wal, db and its -wal and -shm files are copies taken
// while the server runs, the last changes still in the log; else the
// server closed db cleanly.
func seedReadOnly(t *testing.T, db string, wal bool) []string {
	t.Helper()
	src := db
	if wal {
		src = filepath.Join(t.TempDir(), "m.db")
	}
	a, err := app.New(t.Context(), app.Config{DBPath: src, Embedder: "builtin", JanitorInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ts := httpServer(t, a)
	c := connect(t, ts.URL, token(t, "acme", "alice", nil, allPerms...))
	var acked []string
	for i := range 10 {
		acked = append(acked, ok[addOut](t, c, "add_memory", map[string]any{"content": distinctFact("stored", i)}).ID)
	}
	ts.Close()
	if wal {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			copyFile(t, src+suffix, db+suffix)
		}
		if fi, err := os.Stat(db + "-wal"); err != nil || fi.Size() == 0 {
			t.Fatalf("the write-ahead log is empty (%v): the test proves nothing", err)
		}
		return acked
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(db + "-wal"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a clean close left %s-wal (%v): the test proves nothing", db, err)
	}
	return acked
}

// integrity runs PRAGMA integrity_check on the read-only file.
func integrity(t *testing.T, db string, wal bool) string {
	t.Helper()
	dsn := "file:" + db + "?mode=ro"
	if !wal {
		dsn += "&immutable=1"
	}
	raw, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var res string
	if err := raw.QueryRow(`PRAGMA integrity_check`).Scan(&res); err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	return res
}
