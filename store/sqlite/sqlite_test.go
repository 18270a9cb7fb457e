package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/sqlite"
	"github.com/scopemem/scopemem/store/storetest"
)

// openTemp opens a store in a fresh file under t.TempDir and closes it at
// the end of the test.
func openTemp(t testing.TB) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "data", "memories.db")})
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
	})
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
}
