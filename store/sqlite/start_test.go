package sqlite

import (
	"fmt"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/storetest"
)

// TestVersionGate checks the gate's life: no reader at open, a data
// version from the first search on that moves only when another
// connection commits, and none once closed.
func TestVersionGate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gate.db")
	s, err := Open(t.Context(), Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.gate.tried || s.rdb.Stats().OpenConnections != 0 {
		t.Fatalf("after Open: gate tried %v, %d reader connections; want neither", s.gate.tried, s.rdb.Stats().OpenConnections)
	}
	first, ok := s.dataVersion(t.Context())
	if !ok {
		t.Fatal("no data version on first use: the gate did not open")
	}
	if again, ok := s.dataVersion(t.Context()); !ok || again != first {
		t.Errorf("nothing committed, yet the data version went %d -> %d (ok %v)", first, again, ok)
	}

	other, err := Open(t.Context(), Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.SetEmbedder(t.Context(), storetest.EmbedderInfo); err != nil {
		t.Fatal(err)
	}
	if after, ok := s.dataVersion(t.Context()); !ok || after == first {
		t.Errorf("another connection committed, yet the data version stayed %d (ok %v)", after, ok)
	}
	if runtime.GOOS == "linux" && s.gate.wal == nil {
		t.Error("no view of the WAL-index header: every check runs PRAGMA data_version")
	}
	// Commits and checks in turn: each commit is seen, and no check
	// without a commit between sees one.
	alice := storetest.Member("acme", "alice")
	last, ok := s.dataVersion(t.Context())
	if !ok {
		t.Fatal("no data version")
	}
	for i := range 50 {
		if _, err := other.Add(t.Context(), alice, []store.NewMemory{storetest.New(scope.Scope{Kind: scope.KindUser, ID: "alice"}, fmt.Sprintf("note %d", i))}); err != nil {
			t.Fatal(err)
		}
		v, ok := s.dataVersion(t.Context())
		if !ok || v == last {
			t.Fatalf("commit %d: the data version stayed %d (ok %v)", i, v, ok)
		}
		if again, ok := s.dataVersion(t.Context()); !ok || again != v {
			t.Fatalf("after commit %d nothing was committed, yet the data version went %d -> %d (ok %v)", i, v, again, ok)
		}
		last = v
	}

	if err := s.closeGate(); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.dataVersion(t.Context()); ok {
		t.Error("a closed gate still answers")
	}
}

// TestWriterStatementsOnFirstWrite checks that opening a store prepares no
// statement and that its first write prepares every one of writerStmts.
func TestWriterStatementsOnFirstWrite(t *testing.T) {
	s, err := Open(t.Context(), Config{Path: filepath.Join(t.TempDir(), "w.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	prepared := func() int {
		s.stmtMu.Lock()
		defer s.stmtMu.Unlock()
		n := 0
		for _, q := range writerStmts {
			if s.stmts[stmtKey{true, q}] != nil {
				n++
			}
		}
		return n
	}
	if n := prepared(); n != 0 {
		t.Fatalf("after Open: %d writer statements prepared, want none", n)
	}
	if err := s.SetEmbedder(t.Context(), store.EmbedderInfo{Provider: "fake", Model: "fake-v1", Dimensions: 8}); err != nil {
		t.Fatal(err)
	}
	if n := prepared(); n != len(writerStmts) {
		t.Errorf("after the first write: %d of %d writer statements prepared", n, len(writerStmts))
	}
}

// BenchmarkDataVersion measures the check every search makes for commits
// since its scopes were last read (PRAGMA data_version on the gate's
// connection).
func BenchmarkDataVersion(b *testing.B) {
	s, err := Open(b.Context(), Config{Path: filepath.Join(b.TempDir(), "dv.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for b.Loop() {
		if _, ok := s.dataVersion(b.Context()); !ok {
			b.Fatal("no data version")
		}
	}
}
