package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/scopemem/scopemem/store/sqlite"
	"github.com/scopemem/scopemem/store/storetest"
)

// TestOps runs the operator contract with two handles on one file, as a
// server and `scopemem reindex` would have, and with one handle doing
// both: what a handle knows of the embedder must follow a reindex
// committed by another connection and by itself.
func TestOps(t *testing.T) {
	t.Run("two handles", func(t *testing.T) {
		storetest.RunOps(t, func(t *testing.T) storetest.OpsStores {
			path := filepath.Join(t.TempDir(), "m.db")
			return storetest.OpsStores{
				Tenant:   openAt(t, sqlite.Config{Path: path}),
				Operator: openAt(t, sqlite.Config{Path: path}),
			}
		})
	})
	t.Run("one handle", func(t *testing.T) {
		storetest.RunOps(t, func(t *testing.T) storetest.OpsStores {
			s := openAt(t, sqlite.Config{Path: filepath.Join(t.TempDir(), "m.db")})
			return storetest.OpsStores{Tenant: s, Operator: s}
		})
	})
}
