package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/scopemem/scopemem/store/sqlite"
	"github.com/scopemem/scopemem/store/storetest"
)

// TestOps runs the operator contract with two handles on one file, as a
// server and `scopemem reindex` would have.
func TestOps(t *testing.T) {
	storetest.RunOps(t, func(t *testing.T) storetest.OpsStores {
		path := filepath.Join(t.TempDir(), "m.db")
		return storetest.OpsStores{
			Tenant:   openAt(t, sqlite.Config{Path: path}),
			Operator: openAt(t, sqlite.Config{Path: path}),
		}
	})
}
