package storetest

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

func testEmbedder(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	if info, ok, err := s.Embedder(ctx(t)); err != nil || ok {
		t.Fatalf("Embedder() on a fresh store = %v, %v, %v; want nothing recorded", info, ok, err)
	}
	if err := s.SetEmbedder(ctx(t), EmbedderInfo); err != nil {
		t.Fatalf("SetEmbedder(%v) = %v, want nil", EmbedderInfo, err)
	}
	info, ok, err := s.Embedder(ctx(t))
	if err != nil || !ok || info != EmbedderInfo {
		t.Fatalf("Embedder() = %v, %v, %v; want %v, true, nil", info, ok, err, EmbedderInfo)
	}
	if err := s.SetEmbedder(ctx(t), EmbedderInfo); err != nil {
		t.Errorf("SetEmbedder(same %v) = %v, want nil", EmbedderInfo, err)
	}
	for _, other := range []store.EmbedderInfo{
		{Provider: "ollama", Model: EmbedderInfo.Model, Dimensions: Dims},
		{Provider: EmbedderInfo.Provider, Model: "other-model", Dimensions: Dims},
		{Provider: EmbedderInfo.Provider, Model: EmbedderInfo.Model, Dimensions: 768},
	} {
		err := s.SetEmbedder(ctx(t), other)
		if !errors.Is(err, store.ErrEmbedderMismatch) {
			t.Errorf("SetEmbedder(%v) after %v = %v, want ErrEmbedderMismatch", other, EmbedderInfo, err)
		}
		var me *store.MismatchError
		if !errors.As(err, &me) {
			t.Errorf("SetEmbedder(%v) = %v, want a *store.MismatchError", other, err)
		} else if me.Stored != EmbedderInfo || me.Configured != other {
			t.Errorf("MismatchError = {Stored %v, Configured %v}, want {%v, %v}", me.Stored, me.Configured, EmbedderInfo, other)
		}
	}
	if info, ok, err := s.Embedder(ctx(t)); err != nil || !ok || info != EmbedderInfo {
		t.Errorf("Embedder() after refused changes = %v, %v, %v; want %v kept", info, ok, err, EmbedderInfo)
	}
}

func testAdd(t *testing.T, open func(*testing.T) store.Store) {
	s := openStore(t, open)
	alice := Member("acme", "alice", "api")
	alice.Agent, alice.Session = "coder", "s1"
	expires := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	in := []store.NewMemory{
		{Scope: scope.Scope{Kind: scope.KindUser, ID: "alice"}, Content: "Alice prefers dark mode", Tags: []string{"ui", "pref"},
			Metadata: json.RawMessage(`{"source":"chat","n":1}`), Vector: Vector("Alice prefers dark mode", Dims)},
		{Scope: scope.Scope{Kind: scope.KindTeam, ID: "api"}, Content: "The API team deploys on Fridays",
			Vector: Vector("The API team deploys on Fridays", Dims), ExpiresAt: &expires},
		New(scope.Scope{Kind: scope.KindOrg}, "All APIs must use OAuth2"),
		New(scope.Scope{Kind: scope.KindAgent, ID: "alice/coder"}, "Refactor the parser first"),
		New(scope.Scope{Kind: scope.KindSession, ID: "alice/s1"}, "Scratch: numbers look flaky"),
	}
	before := time.Now()
	got := mustAdd(t, s, alice, in...)
	after := time.Now()
	seen := map[string]bool{}
	for i, a := range got {
		if a.Duplicate {
			t.Errorf("Add result %d: Duplicate = true for new content %q", i, in[i].Content)
		}
		if a.ID == "" || seen[a.ID] {
			t.Errorf("Add result %d: ID %q is empty or repeated", i, a.ID)
		}
		seen[a.ID] = true
		want := store.Memory{
			ID: a.ID, Org: "acme", Scope: in[i].Scope, Content: in[i].Content, Tags: in[i].Tags,
			Metadata: in[i].Metadata, CreatedBy: "alice", CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt,
			ExpiresAt: in[i].ExpiresAt,
		}
		if diff := cmp.Diff(want, a.Memory, memoryOpts); diff != "" {
			t.Errorf("Add result %d mismatch (-want +got):\n%s", i, diff)
		}
		if a.CreatedAt.Before(before.Add(-time.Second)) || a.CreatedAt.After(after.Add(time.Second)) {
			t.Errorf("Add result %d: CreatedAt %v, want between %v and %v", i, a.CreatedAt, before, after)
		}
		if a.UpdatedAt.Before(a.CreatedAt) {
			t.Errorf("Add result %d: UpdatedAt %v before CreatedAt %v", i, a.UpdatedAt, a.CreatedAt)
		}
		wantGet(t, s, alice, a.Memory)
	}
	// The caller's input vectors are not the store's to keep: changing them
	// afterwards must not change what was stored.
	in[0].Vector[0] += 10
	hits := search(t, s, alice, store.Query{Vector: Vector("Alice prefers dark mode", Dims), Limit: 1})
	if len(hits) != 1 || hits[0].ID != got[0].ID || hits[0].Similarity < 0.999 {
		t.Errorf("Search(vector of %q) = %v, want %s first with similarity 1", in[0].Content, hits, got[0].ID)
	}
}

func testAddDuplicates(t *testing.T, open func(*testing.T) store.Store) {
	userScope := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	teamScope := scope.Scope{Kind: scope.KindTeam, ID: "api"}
	alice := Member("acme", "alice", "api")
	const first = "Alice prefers dark mode"
	v := Vector(first, Dims)
	other := Vector("something else entirely", Dims)
	near := Mix(v, other, 0.1)
	far := Mix(v, other, 0.6)
	if store.Dot(near, v) < store.DuplicateSimilarity || store.Dot(far, v) >= store.DuplicateSimilarity {
		t.Fatalf("test vectors are wrong: near %v, far %v", store.Dot(near, v), store.Dot(far, v))
	}
	tests := []struct {
		name    string
		id      scope.Identity
		add     store.NewMemory
		wantDup bool
	}{
		{"exact", alice, store.NewMemory{Scope: userScope, Content: first, Vector: other}, true},
		{"case and space", alice, store.NewMemory{Scope: userScope, Content: "  alice PREFERS\tdark   mode ", Vector: other}, true},
		{"near vector", alice, store.NewMemory{Scope: userScope, Content: "Alice likes the dark theme", Vector: near}, true},
		{"far vector", alice, store.NewMemory{Scope: userScope, Content: "Alice likes the dark theme", Vector: far}, false},
		{"same content other scope", alice, store.NewMemory{Scope: teamScope, Content: first, Vector: v}, false},
		{"same content other user", Member("acme", "bob"), store.NewMemory{Scope: scope.Scope{Kind: scope.KindUser, ID: "bob"}, Content: first, Vector: v}, false},
		{"same content other org", Member("globex", "alice", "api"), store.NewMemory{Scope: userScope, Content: first, Vector: v}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, open)
			orig := mustAddOne(t, s, alice, store.NewMemory{Scope: userScope, Content: first, Vector: v, Tags: []string{"pref"}})
			got := mustAdd(t, s, tc.id, tc.add)[0]
			if got.Duplicate != tc.wantDup {
				t.Fatalf("Add(%q) Duplicate = %v, want %v", tc.add.Content, got.Duplicate, tc.wantDup)
			}
			if tc.wantDup {
				if diff := cmp.Diff(orig, got.Memory, memoryOpts); diff != "" {
					t.Errorf("Add(duplicate) should return the existing memory (-want +got):\n%s", diff)
				}
				if n := countScopes(t, s, alice)[userScope.Qualified()]; n != 1 {
					t.Errorf("after a duplicate add, scope %s holds %d memories, want 1", userScope.Qualified(), n)
				}
				return
			}
			if got.ID == orig.ID || got.Org != tc.id.Org || got.Scope != tc.add.Scope || got.Content != tc.add.Content {
				t.Errorf("Add(%q) = %+v, want a new memory in %s/%s", tc.add.Content, got.Memory, tc.id.Org, tc.add.Scope.Qualified())
			}
			wantGet(t, s, tc.id, got.Memory)
			wantGet(t, s, alice, orig)
		})
	}

	t.Run("within one batch", func(t *testing.T) {
		s := openStore(t, open)
		got := mustAdd(t, s, alice,
			New(userScope, first), New(userScope, "unrelated note"),
			store.NewMemory{Scope: userScope, Content: "ALICE prefers dark mode", Vector: other},
			New(teamScope, first))
		if got[0].Duplicate || got[1].Duplicate || !got[2].Duplicate || got[3].Duplicate {
			t.Fatalf("Duplicate flags = %v %v %v %v, want false false true false",
				got[0].Duplicate, got[1].Duplicate, got[2].Duplicate, got[3].Duplicate)
		}
		if got[2].ID != got[0].ID || got[3].ID == got[0].ID {
			t.Errorf("ids = %s %s %s %s, want the third equal to the first and the fourth new", got[0].ID, got[1].ID, got[2].ID, got[3].ID)
		}
		if n := countScopes(t, s, alice); n[userScope.Qualified()] != 2 || n[teamScope.Qualified()] != 1 {
			t.Errorf("ListScopes counts = %v, want 2 in user:alice and 1 in team:api", n)
		}
	})
}

func testAddInvalid(t *testing.T, open func(*testing.T) store.Store) {
	userScope := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	alice := Member("acme", "alice", "api")
	alice.Agent, alice.Session = "coder", "s1"
	nan := Vector("x", Dims)
	nan[3] = float32(math.NaN())
	inf := Vector("x", Dims)
	inf[0] = float32(math.Inf(1))
	ok := New(userScope, "a valid memory")
	with := func(f func(*store.NewMemory)) store.NewMemory {
		m := New(userScope, "another valid memory")
		f(&m)
		return m
	}
	tests := []struct {
		name  string
		batch []store.NewMemory
	}{
		{"empty batch", nil},
		{"team not a member of", []store.NewMemory{New(scope.Scope{Kind: scope.KindTeam, ID: "web"}, "x")}},
		{"other user's scope", []store.NewMemory{New(scope.Scope{Kind: scope.KindUser, ID: "bob"}, "x")}},
		{"other user's agent", []store.NewMemory{New(scope.Scope{Kind: scope.KindAgent, ID: "bob/coder"}, "x")}},
		{"other agent", []store.NewMemory{New(scope.Scope{Kind: scope.KindAgent, ID: "alice/writer"}, "x")}},
		{"other session", []store.NewMemory{New(scope.Scope{Kind: scope.KindSession, ID: "alice/s2"}, "x")}},
		{"org scope with an id", []store.NewMemory{New(scope.Scope{Kind: scope.KindOrg, ID: "globex"}, "x")}},
		{"unknown kind", []store.NewMemory{New(scope.Scope{Kind: "planet", ID: "alice"}, "x")}},
		{"empty scope", []store.NewMemory{New(scope.Scope{}, "x")}},
		{"wrong dimension", []store.NewMemory{with(func(m *store.NewMemory) { m.Vector = Vector("x", Dims/2) })}},
		{"no vector", []store.NewMemory{with(func(m *store.NewMemory) { m.Vector = nil })}},
		{"NaN", []store.NewMemory{with(func(m *store.NewMemory) { m.Vector = nan })}},
		{"Inf", []store.NewMemory{with(func(m *store.NewMemory) { m.Vector = inf })}},
		{"zero vector", []store.NewMemory{with(func(m *store.NewMemory) { m.Vector = make([]float32, Dims) })}},
		{"blank content", []store.NewMemory{with(func(m *store.NewMemory) { m.Content = " \t\n" })}},
		{"metadata not an object", []store.NewMemory{with(func(m *store.NewMemory) { m.Metadata = json.RawMessage(`[1,2]`) })}},
		{"metadata not JSON", []store.NewMemory{with(func(m *store.NewMemory) { m.Metadata = json.RawMessage(`{"a":`) })}},
		{"valid then invalid", []store.NewMemory{ok, with(func(m *store.NewMemory) { m.Vector = nan })}},
		{"valid then invisible", []store.NewMemory{ok, New(scope.Scope{Kind: scope.KindTeam, ID: "web"}, "x")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, open)
			got, err := s.Add(ctx(t), alice, tc.batch)
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("Add(%s) = %v, %v; want ErrInvalid", tc.name, got, err)
			}
			// Nothing of the batch may be stored, in any scope.
			if n := nonZero(countScopes(t, s, alice)); len(n) != 0 {
				t.Errorf("after a failed Add, ListScopes counts = %v, want none", n)
			}
			for _, who := range []scope.Identity{Member("acme", "bob", "web"), Member("acme", "alice", "web")} {
				if n := nonZero(countScopes(t, s, who)); len(n) != 0 {
					t.Errorf("after a failed Add, ListScopes(%s) counts = %v, want none", who.User, n)
				}
			}
			hits := search(t, s, alice, store.Query{Text: "valid memory", Vector: ok.Vector})
			if len(hits) != 0 {
				t.Errorf("after a failed Add, Search found %d memories, want 0", len(hits))
			}
		})
	}

	t.Run("invalid identity", func(t *testing.T) {
		s := openStore(t, open)
		for _, id := range []scope.Identity{
			{User: "alice", Permissions: alice.Permissions},
			{Org: "acme", Permissions: alice.Permissions},
		} {
			_, err := s.Add(ctx(t), id, []store.NewMemory{New(scope.Scope{Kind: scope.KindOrg}, "x")})
			if !errors.Is(err, store.ErrInvalid) && !errors.Is(err, scope.ErrInvalidToken) {
				t.Errorf("Add(identity %+v) = %v, want ErrInvalid or ErrInvalidToken", id, err)
			}
			if _, err := s.Search(ctx(t), id, store.Query{Text: "x"}); !errors.Is(err, store.ErrInvalid) && !errors.Is(err, scope.ErrInvalidToken) {
				t.Errorf("Search(identity %+v) = %v, want ErrInvalid or ErrInvalidToken", id, err)
			}
		}
		if n := nonZero(countScopes(t, s, Member("acme", "alice"))); len(n) != 0 {
			t.Errorf("after refused adds, ListScopes counts = %v, want none", n)
		}
	})
}
