package storetest

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

var (
	userAlice  = scope.Scope{Kind: scope.KindUser, ID: "alice"}
	teamAPI    = scope.Scope{Kind: scope.KindTeam, ID: "api"}
	teamWeb    = scope.Scope{Kind: scope.KindTeam, ID: "web"}
	orgScope   = scope.Scope{Kind: scope.KindOrg}
	agentAlice = scope.Scope{Kind: scope.KindAgent, ID: "alice/coder"}
	sessAlice  = scope.Scope{Kind: scope.KindSession, ID: "alice/s1"}
)

// searchFixture is a store with memories of alice (acme, team api, agent
// coder, session s1) and foreign ones she must never see.
type searchFixture struct {
	s                          store.Store
	alice                      scope.Identity
	dark, deploy, oauth, parse store.Memory
	scratch                    store.Memory
	foreign                    []store.Memory
}

func newSearchFixture(t *testing.T, open func(*testing.T) store.Store) searchFixture {
	t.Helper()
	f := searchFixture{s: openStore(t, open)}
	f.alice = Member("acme", "alice", "api")
	f.alice.Agent, f.alice.Session = "coder", "s1"
	got := mustAdd(t, f.s, f.alice,
		New(userAlice, "Alice prefers dark mode in every editor", "ui", "pref"),
		New(teamAPI, "The API team deploys on Fridays after lunch", "deploy"),
		New(orgScope, "All public APIs must use OAuth2 tokens", "security", "pref"),
		New(agentAlice, "Refactor the parser before adding generics", "todo"),
		New(sessAlice, "Scratch: benchmark numbers look flaky", "todo", "ui"),
	)
	f.dark, f.deploy, f.oauth, f.parse, f.scratch = got[0].Memory, got[1].Memory, got[2].Memory, got[3].Memory, got[4].Memory
	bob := Member("acme", "bob", "web")
	bob.Agent, bob.Session = "coder", "s1"
	for _, a := range mustAdd(t, f.s, bob,
		New(scope.Scope{Kind: scope.KindUser, ID: "bob"}, "Bob prefers dark mode too", "ui", "pref"),
		New(teamWeb, "Web team dark launch checklist deploys", "deploy", "pref"),
		New(scope.Scope{Kind: scope.KindAgent, ID: "bob/coder"}, "Refactor the parser generics dark", "todo"),
		New(scope.Scope{Kind: scope.KindSession, ID: "bob/s1"}, "Scratch: dark numbers look flaky", "todo"),
	) {
		f.foreign = append(f.foreign, a.Memory)
	}
	globex := Member("globex", "alice", "api")
	globex.Agent, globex.Session = "coder", "s1"
	for _, a := range mustAdd(t, f.s, globex,
		New(userAlice, "Alice prefers dark mode in every editor at globex", "ui", "pref"),
		New(teamAPI, "The API team deploys on Fridays after lunch at globex", "deploy"),
		New(orgScope, "All public APIs must use OAuth2 tokens at globex", "security", "pref"),
		New(agentAlice, "Refactor the parser before adding generics at globex", "todo"),
		New(sessAlice, "Scratch: benchmark numbers look flaky at globex", "todo", "ui"),
	) {
		f.foreign = append(f.foreign, a.Memory)
	}
	return f
}

func testSearch(t *testing.T, open func(*testing.T) store.Store) {
	f := newSearchFixture(t, open)
	all := []string{f.dark.ID, f.deploy.ID, f.oauth.ID, f.parse.ID, f.scratch.ID}
	tests := []struct {
		name      string
		q         store.Query
		wantFirst string   // id of the expected first hit, if any
		wantIDs   []string // the exact set of hits, if not nil
		wantTop   bool     // the first hit must score 1
	}{
		{name: "vector only", q: store.Query{Vector: Vector(f.dark.Content, Dims)}, wantFirst: f.dark.ID, wantIDs: all, wantTop: true},
		{name: "text only", q: store.Query{Text: "deploys"}, wantFirst: f.deploy.ID, wantIDs: []string{f.deploy.ID}, wantTop: true},
		{name: "text only, two words", q: store.Query{Text: "parser generics"}, wantFirst: f.parse.ID, wantIDs: []string{f.parse.ID}, wantTop: true},
		{name: "hybrid", q: store.Query{Text: "OAuth2 tokens", Vector: Vector(f.oauth.Content, Dims)}, wantFirst: f.oauth.ID, wantIDs: all, wantTop: true},
		{name: "hybrid with min score", q: store.Query{Text: "OAuth2 tokens", Vector: Vector(f.oauth.Content, Dims), MinScore: 0.9},
			wantFirst: f.oauth.ID, wantIDs: []string{f.oauth.ID}, wantTop: true},
		{name: "limit", q: store.Query{Vector: Vector(f.scratch.Content, Dims), Limit: 2}, wantFirst: f.scratch.ID},
		{name: "one tag", q: store.Query{Vector: Vector(f.dark.Content, Dims), Tags: []string{"pref"}}, wantFirst: f.dark.ID, wantIDs: []string{f.dark.ID, f.oauth.ID}},
		{name: "every tag must match", q: store.Query{Vector: Vector(f.oauth.Content, Dims), Tags: []string{"ui", "pref"}}, wantIDs: []string{f.dark.ID}},
		{name: "tag nobody has", q: store.Query{Vector: Vector(f.oauth.Content, Dims), Tags: []string{"nope"}}, wantIDs: []string{}},
		{name: "text and tag", q: store.Query{Text: "dark flaky", Tags: []string{"todo"}}, wantIDs: []string{f.scratch.ID}},
		{name: "narrow to team", q: store.Query{Vector: Vector(f.dark.Content, Dims), Scopes: []scope.Scope{teamAPI}}, wantIDs: []string{f.deploy.ID}},
		{name: "narrow to user and org", q: store.Query{Vector: Vector(f.dark.Content, Dims), Scopes: []scope.Scope{userAlice, orgScope}},
			wantFirst: f.dark.ID, wantIDs: []string{f.dark.ID, f.oauth.ID}},
		{name: "narrow to session and agent", q: store.Query{Text: "flaky parser", Scopes: []scope.Scope{sessAlice, agentAlice}},
			wantIDs: []string{f.scratch.ID, f.parse.ID}},
		{name: "narrow to a foreign team only", q: store.Query{Text: "dark deploys", Vector: Vector(f.dark.Content, Dims), Scopes: []scope.Scope{teamWeb}}, wantIDs: []string{}},
		{name: "narrow to another user only", q: store.Query{Text: "dark", Scopes: []scope.Scope{{Kind: scope.KindUser, ID: "bob"}}}, wantIDs: []string{}},
		{name: "foreign scope ignored beside a visible one", q: store.Query{Text: "dark deploys",
			Scopes: []scope.Scope{teamWeb, teamAPI, {Kind: scope.KindSession, ID: "bob/s1"}}}, wantIDs: []string{f.deploy.ID}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hits := search(t, f.s, f.alice, tc.q)
			if tc.q.Limit > 0 && len(hits) != tc.q.Limit {
				t.Errorf("Search(limit %d) returned %d hits, want %d", tc.q.Limit, len(hits), tc.q.Limit)
			}
			if tc.wantFirst != "" {
				if len(hits) == 0 || hits[0].ID != tc.wantFirst {
					t.Fatalf("Search first hit = %v, want %s", hitIDs(hits), tc.wantFirst)
				}
			}
			if tc.wantIDs != nil {
				if diff := cmp.Diff(sorted(tc.wantIDs...), hitIDs(hits)); diff != "" {
					t.Errorf("Search hits mismatch (-want +got):\n%s", diff)
				}
			}
			if tc.wantTop && math.Abs(hits[0].Score-1) > 1e-6 {
				t.Errorf("first hit scores %v, want 1 (first in every half that ran)", hits[0].Score)
			}
			if tc.q.Vector != nil && len(hits) > 0 && hits[0].ID == tc.wantFirst && hits[0].Similarity < 0.999 {
				t.Errorf("first hit similarity = %v, want 1 for the query's own vector", hits[0].Similarity)
			}
			if tc.q.Vector == nil {
				for _, h := range hits {
					if h.Similarity != 0 {
						t.Errorf("text-only hit %s has similarity %v, want 0", h.ID, h.Similarity)
					}
				}
			}
			for _, h := range hits {
				if want := byID(f, h.ID); want != nil {
					if diff := cmp.Diff(*want, h.Memory, memoryOpts); diff != "" {
						t.Errorf("hit %s mismatch (-want +got):\n%s", h.ID, diff)
					}
				}
			}
		})
	}

	t.Run("default and largest limit", func(t *testing.T) {
		var extra []store.NewMemory
		for i := range 20 {
			extra = append(extra, New(userAlice, fmt.Sprintf("filler note number %d", i)))
		}
		mustAdd(t, f.s, f.alice, extra...)
		if hits := search(t, f.s, f.alice, store.Query{Vector: Vector("filler", Dims)}); len(hits) != store.DefaultLimit {
			t.Errorf("Search(limit 0) returned %d hits, want %d", len(hits), store.DefaultLimit)
		}
		if hits := search(t, f.s, f.alice, store.Query{Vector: Vector("filler", Dims), Limit: store.MaxLimit}); len(hits) != 25 {
			t.Errorf("Search(limit %d) returned %d hits, want all 25 visible", store.MaxLimit, len(hits))
		}
		if hits := search(t, f.s, f.alice, store.Query{Text: "filler", Limit: 3}); len(hits) != 3 {
			t.Errorf("Search(text, limit 3) returned %d hits, want 3", len(hits))
		}
	})

	t.Run("bad queries", func(t *testing.T) {
		for _, q := range []store.Query{
			{},
			{Vector: Vector("x", Dims/2)},
			{Text: "dark", Vector: Vector("x", Dims+1)},
			{Vector: make([]float32, Dims)},
		} {
			if _, err := f.s.Search(ctx(t), f.alice, q); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("Search(text %q, %d-dim vector) = %v, want ErrInvalid", q.Text, len(q.Vector), err)
			}
		}
	})

	t.Run("other org sees only its own", func(t *testing.T) {
		globex := Member("globex", "alice", "api")
		globex.Agent, globex.Session = "coder", "s1"
		hits := search(t, f.s, globex, store.Query{Text: "dark deploys OAuth2 parser flaky", Vector: Vector(f.dark.Content, Dims), Limit: 100})
		if len(hits) != 5 {
			t.Errorf("Search by globex/alice returned %d hits, want her 5", len(hits))
		}
		for _, h := range hits {
			if h.Org != "globex" {
				t.Errorf("Search by globex/alice returned %s of org %s", h.ID, h.Org)
			}
		}
	})
}

func byID(f searchFixture, id string) *store.Memory {
	for _, m := range []*store.Memory{&f.dark, &f.deploy, &f.oauth, &f.parse, &f.scratch} {
		if m.ID == id {
			return m
		}
	}
	return nil
}

func testSearchCollapse(t *testing.T, open func(*testing.T) store.Store) {
	s := openStore(t, open)
	alice := Member("acme", "alice", "api")
	alice.Session = "s1"
	const text = "Alice prefers dark mode in every editor"
	v := Vector(text, Dims)
	got := mustAdd(t, s, alice,
		New(orgScope, text),
		New(teamAPI, text),
		New(userAlice, text),
		store.NewMemory{Scope: sessAlice, Content: "Alice likes a black background in her tools", Vector: Mix(v, Vector("y", Dims), 0.05)},
		New(teamAPI, "Unrelated: the build is green"),
	)
	for i, a := range got {
		if a.Duplicate {
			t.Fatalf("Add %d reported a duplicate across scopes", i)
		}
	}
	for _, q := range []store.Query{
		{Vector: v},
		{Text: "dark editor", Vector: v},
		{Text: "dark editor"},
	} {
		hits := search(t, s, alice, q)
		var collapsed []store.Hit
		for _, h := range hits {
			if h.ID != got[4].ID {
				collapsed = append(collapsed, h)
			}
		}
		wantID := got[2].ID // user scope: exact copies collapse to it
		if q.Vector != nil {
			wantID = got[3].ID // session scope: its vector is near-identical
		}
		if len(collapsed) != 1 || collapsed[0].ID != wantID {
			t.Errorf("Search(text %q, vector %v) = %v, want the copies collapsed to %s", q.Text, q.Vector != nil, hitIDs(hits), wantID)
		}
	}
	// Narrowed to team and org, the team copy is the narrowest.
	hits := search(t, s, alice, store.Query{Vector: v, Scopes: []scope.Scope{orgScope, teamAPI}})
	if len(hits) != 2 || hits[0].ID != got[1].ID || hits[1].ID != got[4].ID {
		t.Errorf("Search(team and org) = %v, want [%s %s]", hitIDs(hits), got[1].ID, got[4].ID)
	}
	// Bob sees only the org copy, and nothing collapses into a memory of
	// alice's.
	hits = search(t, s, Member("acme", "bob"), store.Query{Vector: v})
	if len(hits) != 1 || hits[0].ID != got[0].ID {
		t.Errorf("Search by bob = %v, want only the org copy %s", hitIDs(hits), got[0].ID)
	}
}

func testSearchQueryText(t *testing.T, open func(*testing.T) store.Store) {
	s := openStore(t, open)
	alice := Member("acme", "alice")
	dark := mustAddOne(t, s, alice, New(userAlice, "Alice prefers dark mode in every editor"))
	mustAdd(t, s, alice,
		New(userAlice, `She said "use tabs" OR spaces; never both -- really*`),
		New(userAlice, "The build runs on every push"),
		New(userAlice, "Lunch is at noon on Thursdays"),
		New(userAlice, "Backups are kept for thirty days"),
		New(userAlice, "The staging database is reset weekly"),
	)
	tests := []struct {
		text     string
		wantDark bool
	}{
		{`"dark" OR mode*`, true},
		{`dark*`, true},
		{`(dark)`, true},
		{`dark -editor`, true},
		{`^dark`, true},
		{`dark AND (mode`, true},
		{`"dark`, true},
		{`dark"`, true},
		{`'dark'`, true},
		{`DARK`, true},
		{`dark mode!`, true},
		{`NEAR(dark mode)`, false},
		{`content:dark`, false},
		{`'; DROP TABLE memories; --`, false},
		{`" OR 1=1 --`, false},
		{`*`, false},
		{`"`, false},
		{`""`, false},
		{`-`, false},
		{`!!!`, false},
		{`a:b:c {x} [y] <z> @w #v $u %t &s |r ~q`, false},
		{`\\ \' \" \n`, false},
		{`日本語 テキスト ✓ 🙂`, false},
		{`AND OR NOT NEAR`, false},
	}
	for _, tc := range tests {
		t.Run(tc.text, func(t *testing.T) {
			for _, q := range []store.Query{{Text: tc.text}, {Text: tc.text, Vector: Vector("x", Dims)}} {
				hits, err := s.Search(ctx(t), alice, q)
				if err != nil {
					t.Fatalf("Search(text %q, vector %v) = %v, want nil", q.Text, q.Vector != nil, err)
				}
				checkHits(t, alice, q, hits)
				if tc.wantDark && q.Vector == nil && (len(hits) == 0 || hits[0].ID != dark.ID) {
					t.Errorf("Search(text %q) = %v, want %s first", q.Text, hitIDs(hits), dark.ID)
				}
			}
		})
	}
}

func testExpiry(t *testing.T, open func(*testing.T) store.Store) {
	s := openStore(t, open)
	alice := Member("acme", "alice", "api")
	past := time.Now().Add(-time.Minute)
	future := time.Now().Add(time.Hour)
	expired := store.NewMemory{Scope: userAlice, Content: "expired secret launch code", Vector: Vector("expired secret launch code", Dims), ExpiresAt: &past}
	expiredTeam := store.NewMemory{Scope: teamAPI, Content: "expired team secret", Vector: Vector("expired team secret", Dims), ExpiresAt: &past}
	live := store.NewMemory{Scope: userAlice, Content: "live secret handshake", Vector: Vector("live secret handshake", Dims), ExpiresAt: &future}
	got := mustAdd(t, s, alice, expired, expiredTeam, live)
	for _, q := range []store.Query{
		{Text: "expired secret launch code"},
		{Vector: expired.Vector},
		{Text: "expired secret", Vector: expiredTeam.Vector, Limit: 100},
	} {
		hits := search(t, s, alice, q)
		for _, h := range hits {
			if h.ID == got[0].ID || h.ID == got[1].ID {
				t.Errorf("Search(text %q) returned expired memory %s", q.Text, h.ID)
			}
		}
		if !slices.ContainsFunc(hits, func(h store.Hit) bool { return h.ID == got[2].ID }) {
			t.Errorf("Search(text %q) = %v, want the live memory %s", q.Text, hitIDs(hits), got[2].ID)
		}
	}
	wantGone(t, s, alice, got[0].ID)
	wantGone(t, s, alice, got[1].ID)
	wantGet(t, s, alice, got[2].Memory)
	if n := countScopes(t, s, alice); n[userAlice.Qualified()] != 1 || n[teamAPI.Qualified()] != 0 {
		t.Errorf("ListScopes counts = %v, want 1 live memory in user:alice and none in team:api", n)
	}
	// An expired memory is not a duplicate: adding its content again stores
	// a new, live memory.
	again := mustAdd(t, s, alice, New(userAlice, expired.Content))[0]
	if again.Duplicate || again.ID == got[0].ID {
		t.Errorf("Add(content of an expired memory) = %+v, want a new memory", again)
	}
	wantGet(t, s, alice, again.Memory)
}
