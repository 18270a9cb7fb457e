package sqlite

import (
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/storetest"
)

// TestCatchUp checks that a store's cached copy of a scope follows what
// another store on the same file (another process) writes: rows added or
// updated there are read alone, a row deleted there, or a switch of every
// vector, makes the copy read the whole scope again, and every search
// sees exactly what the file holds, whether the copy catches up in a
// search or inside a write transaction.
func TestCatchUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	open := func() *Store {
		s, err := Open(t.Context(), Config{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	if err := a.SetEmbedder(t.Context(), storetest.EmbedderInfo); err != nil {
		t.Fatal(err)
	}
	alice := storetest.Member("acme", "alice", "api")
	user := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	dims := storetest.EmbedderInfo.Dimensions

	held := map[string]string{} // id -> content, what the file holds
	add := func(s *Store, content string) string {
		t.Helper()
		got, err := s.Add(t.Context(), alice, []store.NewMemory{{Scope: user, Content: content, Vector: storetest.Vector(content, dims)}})
		if err != nil {
			t.Fatalf("Add(%q): %v", content, err)
		}
		held[got[0].ID] = content
		return got[0].ID
	}
	// check searches a and compares what it finds with held.
	check := func(step string) {
		t.Helper()
		hits, err := a.Search(t.Context(), alice, store.Query{Vector: storetest.Vector("anything", dims), Limit: store.MaxLimit})
		if err != nil {
			t.Fatalf("%s: Search: %v", step, err)
		}
		found := map[string]string{}
		for _, h := range hits {
			found[h.ID] = h.Content
		}
		if !maps.Equal(found, held) {
			t.Fatalf("%s: search found %v, the file holds %v", step, found, held)
		}
	}
	installs := func() int64 {
		e := a.cache.lookup(keyOf("acme", user))
		if e == nil {
			t.Fatal("no cached copy of the scope")
		}
		e.mu.RLock()
		defer e.mu.RUnlock()
		return e.installs
	}

	first := add(a, "the build runs on Fridays")
	check("a's own add")
	base := installs()

	var second string
	steps := []struct {
		name  string
		write func()
		whole bool // a reads the scope again whole
	}{
		{name: "another store adds", write: func() {
			second = add(b, "deploys need two approvals")
			add(b, "the staging database is reset nightly")
		}},
		{name: "another store updates content and vector", write: func() {
			content := "the build runs on Mondays"
			if _, err := b.Update(t.Context(), alice, first, store.Patch{Content: &content, Vector: storetest.Vector(content, dims)}); err != nil {
				t.Fatal(err)
			}
			held[first] = content
		}},
		{name: "another store adds, then this one adds", write: func() {
			add(b, "on-call rotates every Monday")
			// The add's near-duplicate check catches up inside the write
			// transaction; the search after it uses that copy.
			add(a, "release notes live in the wiki")
		}},
		{name: "another store deletes", whole: true, write: func() {
			if err := b.Delete(t.Context(), alice, second); err != nil {
				t.Fatal(err)
			}
			delete(held, second)
		}},
		{name: "another store adds after the delete", write: func() {
			add(b, "backups are tested monthly")
		}},
		{name: "another store imports", write: func() {
			// Import's insert leaves changed to the trigger.
			content := "the wiki moved to the new host"
			r := store.Record{Memory: store.Memory{ID: "01a24a19-0000-7000-8000-000000000001", Org: "acme", Scope: user, Content: content,
				CreatedBy: "alice", CreatedAt: time.Unix(1, 0), UpdatedAt: time.Unix(1, 0)},
				Vector: storetest.Vector(content, dims), Embedder: storetest.EmbedderInfo}
			if _, err := b.Import(t.Context(), storetest.Admin("acme", "alice", "api"), []store.Record{r}); err != nil {
				t.Fatal(err)
			}
			held[r.ID] = content
		}},
		{name: "another store deletes, then this one adds", whole: true, write: func() {
			id := slices.Sorted(maps.Keys(held))[0]
			if err := b.Delete(t.Context(), alice, id); err != nil {
				t.Fatal(err)
			}
			delete(held, id)
			add(a, "incidents get a review within a week")
		}},
	}
	for _, step := range steps {
		step.write()
		check(step.name)
		got := installs()
		if whole := got > base; whole != step.whole {
			t.Errorf("%s: read the scope whole %v, want %v", step.name, whole, step.whole)
		}
		base = got
	}
}
