package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// accessFixture holds memories in several scopes of two orgs and callers
// with different reach.
type accessFixture struct {
	s                                store.Store
	alice, bob, carol, dave, gAlice  scope.Identity
	aUser, aTeam, aOrg, bUser, gUser store.Memory
	aAgent, aSession, bTeam, gTeam   store.Memory
	byName                           map[string]store.Memory
	aliceAgentSession                scope.Identity
}

func newAccessFixture(t *testing.T, open func(*testing.T) store.Store) *accessFixture {
	t.Helper()
	f := &accessFixture{s: openStore(t, open)}
	f.alice = Member("acme", "alice", "api")
	f.aliceAgentSession = f.alice
	f.aliceAgentSession.Agent, f.aliceAgentSession.Session = "coder", "s1"
	f.bob = Member("acme", "bob", "web")
	f.carol = Reader("acme", "carol", "api")
	f.dave = Member("acme", "dave", "api")
	f.dave.Permissions = []scope.Permission{scope.PermRead, scope.PermWrite, scope.PermPurge}
	f.gAlice = Member("globex", "alice", "api")
	got := mustAdd(t, f.s, f.aliceAgentSession,
		New(userAlice, "alice user note"), New(teamAPI, "api team note"), New(orgScope, "acme org note"),
		New(agentAlice, "alice agent note"), New(sessAlice, "alice session note"))
	f.aUser, f.aTeam, f.aOrg, f.aAgent, f.aSession = got[0].Memory, got[1].Memory, got[2].Memory, got[3].Memory, got[4].Memory
	got = mustAdd(t, f.s, f.bob, New(scope.Scope{Kind: scope.KindUser, ID: "bob"}, "bob user note"), New(teamWeb, "web team note"))
	f.bUser, f.bTeam = got[0].Memory, got[1].Memory
	got = mustAdd(t, f.s, f.gAlice, New(userAlice, "alice user note"), New(teamAPI, "api team note"))
	f.gUser, f.gTeam = got[0].Memory, got[1].Memory
	f.byName = map[string]store.Memory{
		"aUser": f.aUser, "aTeam": f.aTeam, "aOrg": f.aOrg, "aAgent": f.aAgent, "aSession": f.aSession,
		"bUser": f.bUser, "bTeam": f.bTeam, "gUser": f.gUser, "gTeam": f.gTeam,
	}
	return f
}

// checkAll checks every fixture memory is still there, unchanged, except
// those named in gone.
func (f *accessFixture) checkAll(t *testing.T, gone ...string) {
	t.Helper()
	for name, m := range f.byName {
		owner := Owner(m.Org, m.Scope)
		if contains(gone, name) {
			wantGone(t, f.s, owner, m.ID)
			continue
		}
		wantGet(t, f.s, owner, m)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func testGet(t *testing.T, open func(*testing.T) store.Store) {
	f := newAccessFixture(t, open)
	tests := []struct {
		name   string
		caller scope.Identity
		id     string
		want   *store.Memory // nil: ErrNotFound
	}{
		{"own user", f.alice, f.aUser.ID, &f.aUser},
		{"own team", f.alice, f.aTeam.ID, &f.aTeam},
		{"own org", f.alice, f.aOrg.ID, &f.aOrg},
		{"own agent", f.aliceAgentSession, f.aAgent.ID, &f.aAgent},
		{"own session", f.aliceAgentSession, f.aSession.ID, &f.aSession},
		{"agent scope without the agent", f.alice, f.aAgent.ID, nil},
		{"session scope without the session", f.alice, f.aSession.ID, nil},
		{"reader in the team", f.carol, f.aTeam.ID, &f.aTeam},
		{"reader, org", f.carol, f.aOrg.ID, &f.aOrg},
		{"other user's user scope", f.bob, f.aUser.ID, nil},
		{"team not a member of", f.bob, f.aTeam.ID, nil},
		{"org of the same org", f.bob, f.aOrg.ID, &f.aOrg},
		{"same names, other org", f.gAlice, f.aUser.ID, nil},
		{"other org's team", f.gAlice, f.aTeam.ID, nil},
		{"other org's org", f.gAlice, f.aOrg.ID, nil},
		{"into other org", f.alice, f.gUser.ID, nil},
		{"missing", f.alice, "0190a7c2-0000-7000-8000-000000000000", nil},
		{"empty id", f.alice, "", nil},
		{"not an id", f.alice, "not-an-id", nil},
		{"SQL in the id", f.alice, "' OR '1'='1", nil},
		{"id with a wildcard", f.alice, "%", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f.s.Get(ctx(t), tc.caller, tc.id)
			if tc.want == nil {
				if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("Get(%s/%s, %q) = %v, %v; want ErrNotFound", tc.caller.Org, tc.caller.User, tc.id, got.ID, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get(%s/%s, %q) = %v, want nil", tc.caller.Org, tc.caller.User, tc.id, err)
			}
			if diff := cmp.Diff(*tc.want, got, memoryOpts); diff != "" {
				t.Errorf("Get mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func testUpdate(t *testing.T, open func(*testing.T) store.Store) {
	s := openStore(t, open)
	alice := Member("acme", "alice", "api")
	orig := mustAdd(t, s, alice, store.NewMemory{Scope: userAlice, Content: "The cat is named Whiskers",
		Tags: []string{"pets"}, Metadata: json.RawMessage(`{"a":1}`), Vector: Vector("The cat is named Whiskers", Dims)})[0].Memory
	other := mustAddOne(t, s, alice, New(userAlice, "The dog is named Rex"))
	time.Sleep(5 * time.Millisecond)

	content := "The cat is now named Mittens"
	tags := []string{"pets", "renamed"}
	meta := json.RawMessage(`{"b":[true]}`)
	got, err := s.Update(ctx(t), alice, orig.ID, store.Patch{Content: &content, Tags: &tags, Metadata: &meta, Vector: Vector(content, Dims)})
	if err != nil {
		t.Fatalf("Update(content, tags, metadata) = %v, want nil", err)
	}
	want := orig
	want.Content, want.Tags, want.Metadata, want.UpdatedAt = content, tags, meta, got.UpdatedAt
	if diff := cmp.Diff(want, got, memoryOpts); diff != "" {
		t.Errorf("Update result mismatch (-want +got):\n%s", diff)
	}
	if !got.UpdatedAt.After(orig.UpdatedAt) {
		t.Errorf("Update: UpdatedAt %v, want after %v", got.UpdatedAt, orig.UpdatedAt)
	}
	wantGet(t, s, alice, got)
	wantGet(t, s, alice, other)

	// Both halves of search follow the new content.
	if hits := search(t, s, alice, store.Query{Text: "Mittens"}); len(hits) != 1 || hits[0].ID != orig.ID {
		t.Errorf("Search(new word) = %v, want [%s]", hitIDs(hits), orig.ID)
	}
	if hits := search(t, s, alice, store.Query{Text: "Whiskers"}); len(hits) != 0 {
		t.Errorf("Search(old word) = %v, want nothing", hitIDs(hits))
	}
	if hits := search(t, s, alice, store.Query{Vector: Vector(content, Dims), Limit: 1}); len(hits) != 1 || hits[0].ID != orig.ID || hits[0].Similarity < 0.999 {
		t.Errorf("Search(new vector) = %v, want %s with similarity 1", hits, orig.ID)
	}
	if hits := search(t, s, alice, store.Query{Text: "Mittens", Tags: []string{"renamed"}}); len(hits) != 1 {
		t.Errorf("Search(new tag) = %v, want [%s]", hitIDs(hits), orig.ID)
	}

	// Partial patches leave the other fields alone.
	none := []string{}
	got2, err := s.Update(ctx(t), alice, orig.ID, store.Patch{Tags: &none})
	if err != nil {
		t.Fatalf("Update(tags only) = %v", err)
	}
	want = got
	want.Tags, want.UpdatedAt = nil, got2.UpdatedAt
	if diff := cmp.Diff(want, got2, memoryOpts); diff != "" {
		t.Errorf("Update(tags only) mismatch (-want +got):\n%s", diff)
	}
	if hits := search(t, s, alice, store.Query{Text: "Mittens", Tags: []string{"pets"}}); len(hits) != 0 {
		t.Errorf("Search(removed tag) = %v, want nothing", hitIDs(hits))
	}

	bad := "new content"
	empty := "  "
	badMeta := json.RawMessage(`"a string"`)
	for _, tc := range []struct {
		name string
		p    store.Patch
	}{
		{"content without vector", store.Patch{Content: &bad}},
		{"blank content", store.Patch{Content: &empty, Vector: Vector(empty, Dims)}},
		{"wrong dimension", store.Patch{Content: &bad, Vector: Vector(bad, Dims*2)}},
		{"NaN vector", store.Patch{Content: &bad, Vector: []float32{float32(nanValue())}}},
		{"metadata not an object", store.Patch{Metadata: &badMeta}},
	} {
		if _, err := s.Update(ctx(t), alice, orig.ID, tc.p); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Update(%s) = %v, want ErrInvalid", tc.name, err)
		}
	}
	wantGet(t, s, alice, got2)
}

func nanValue() float64 {
	var zero float64
	return zero / zero
}

func testUpdateDeleteAccess(t *testing.T, open func(*testing.T) store.Store) {
	tests := []struct {
		name     string
		caller   func(*accessFixture) scope.Identity
		target   string // fixture memory name, or "" for a missing id
		writable bool
	}{
		{"own user", func(f *accessFixture) scope.Identity { return f.alice }, "aUser", true},
		{"own team with share", func(f *accessFixture) scope.Identity { return f.alice }, "aTeam", true},
		{"org with share", func(f *accessFixture) scope.Identity { return f.alice }, "aOrg", true},
		{"own agent", func(f *accessFixture) scope.Identity { return f.aliceAgentSession }, "aAgent", true},
		{"own session", func(f *accessFixture) scope.Identity { return f.aliceAgentSession }, "aSession", true},
		{"agent scope without the agent", func(f *accessFixture) scope.Identity { return f.alice }, "aAgent", false},
		{"org without share", func(f *accessFixture) scope.Identity { return f.dave }, "aOrg", false},
		{"team without share", func(f *accessFixture) scope.Identity { return f.dave }, "aTeam", false},
		{"reader in the team", func(f *accessFixture) scope.Identity { return f.carol }, "aTeam", false},
		{"reader on org", func(f *accessFixture) scope.Identity { return f.carol }, "aOrg", false},
		{"other user's user scope", func(f *accessFixture) scope.Identity { return f.bob }, "aUser", false},
		{"team not a member of", func(f *accessFixture) scope.Identity { return f.bob }, "aTeam", false},
		{"admin on another user's scope", func(f *accessFixture) scope.Identity { return Admin("acme", "root") }, "aUser", false},
		{"same names, other org", func(f *accessFixture) scope.Identity { return f.gAlice }, "aUser", false},
		{"other org's team", func(f *accessFixture) scope.Identity { return f.gAlice }, "aTeam", false},
		{"into other org", func(f *accessFixture) scope.Identity { return f.alice }, "gUser", false},
		{"other org's admin", func(f *accessFixture) scope.Identity { return Admin("globex", "alice", "api") }, "aOrg", false},
		{"missing", func(f *accessFixture) scope.Identity { return f.alice }, "", false},
	}
	for _, op := range []string{"Update", "Delete"} {
		for _, tc := range tests {
			t.Run(op+"/"+tc.name, func(t *testing.T) {
				f := newAccessFixture(t, open)
				caller := tc.caller(f)
				id := "0190a7c2-0000-7000-8000-000000000000"
				if tc.target != "" {
					id = f.byName[tc.target].ID
				}
				var err error
				newContent := "changed by " + caller.User
				if op == "Update" {
					var got store.Memory
					got, err = f.s.Update(ctx(t), caller, id, store.Patch{Content: &newContent, Vector: Vector(newContent, Dims)})
					if err == nil && tc.writable {
						m := f.byName[tc.target]
						m.Content, m.UpdatedAt = newContent, got.UpdatedAt
						if diff := cmp.Diff(m, got, memoryOpts); diff != "" {
							t.Errorf("Update result mismatch (-want +got):\n%s", diff)
						}
						f.byName[tc.target] = m
					}
				} else {
					err = f.s.Delete(ctx(t), caller, id)
				}
				switch {
				case tc.writable && err != nil:
					t.Fatalf("%s(%s/%s, %s) = %v, want nil", op, caller.Org, caller.User, tc.target, err)
				case !tc.writable && !errors.Is(err, store.ErrNotFound):
					t.Fatalf("%s(%s/%s, %s) = %v, want ErrNotFound", op, caller.Org, caller.User, tc.target, err)
				}
				if op == "Delete" && tc.writable {
					f.checkAll(t, tc.target)
					if err := f.s.Delete(ctx(t), caller, id); !errors.Is(err, store.ErrNotFound) {
						t.Errorf("Delete twice = %v, want ErrNotFound", err)
					}
					return
				}
				f.checkAll(t)
			})
		}
	}
}

func testListScopes(t *testing.T, open func(*testing.T) store.Store) {
	s := openStore(t, open)
	sharer := Member("acme", "alice", "api", "ops")
	sharer.Agent, sharer.Session = "coder", "s1"
	past := time.Now().Add(-time.Minute)
	expired := New(userAlice, "expired note")
	expired.ExpiresAt = &past
	mustAdd(t, s, sharer,
		New(sessAlice, "session one"), New(sessAlice, "session two"),
		New(agentAlice, "agent one"),
		New(userAlice, "user one"), New(userAlice, "user two"), New(userAlice, "user three"), expired,
		New(teamAPI, "team one"),
		New(orgScope, "org one"), New(orgScope, "org two"))
	bob := Member("acme", "bob", "api", "web")
	bob.Agent, bob.Session = "coder", "s1"
	mustAdd(t, s, bob, New(scope.Scope{Kind: scope.KindUser, ID: "bob"}, "bob one"), New(teamWeb, "web one"),
		New(teamAPI, "team by bob"), New(scope.Scope{Kind: scope.KindAgent, ID: "bob/coder"}, "bob agent"),
		New(scope.Scope{Kind: scope.KindSession, ID: "bob/s1"}, "bob session"))
	globex := Member("globex", "alice", "api", "ops")
	globex.Agent, globex.Session = "coder", "s1"
	mustAdd(t, s, globex, New(userAlice, "g user"), New(teamAPI, "g team"), New(orgScope, "g org"), New(sessAlice, "g session"))

	noShare := sharer
	noShare.Permissions = []scope.Permission{scope.PermRead, scope.PermWrite}
	tests := []struct {
		name string
		id   scope.Identity
		want []store.ScopeInfo
	}{
		{"writer without share", noShare, []store.ScopeInfo{
			{Scope: sessAlice, Count: 2, Writable: true},
			{Scope: agentAlice, Count: 1, Writable: true},
			{Scope: userAlice, Count: 3, Writable: true},
			{Scope: teamAPI, Count: 2, Writable: false},
			{Scope: scope.Scope{Kind: scope.KindTeam, ID: "ops"}, Count: 0, Writable: false},
			{Scope: orgScope, Count: 2, Writable: false},
		}},
		{"sharer", sharer, []store.ScopeInfo{
			{Scope: sessAlice, Count: 2, Writable: true},
			{Scope: agentAlice, Count: 1, Writable: true},
			{Scope: userAlice, Count: 3, Writable: true},
			{Scope: teamAPI, Count: 2, Writable: true},
			{Scope: scope.Scope{Kind: scope.KindTeam, ID: "ops"}, Count: 0, Writable: true},
			{Scope: orgScope, Count: 2, Writable: true},
		}},
		{"reader, no agent or session", Reader("acme", "alice"), []store.ScopeInfo{
			{Scope: userAlice, Count: 3, Writable: false},
			{Scope: orgScope, Count: 2, Writable: false},
		}},
		{"other session of alice", func() scope.Identity { id := sharer; id.Session = "s2"; id.Agent = ""; return id }(), []store.ScopeInfo{
			{Scope: scope.Scope{Kind: scope.KindSession, ID: "alice/s2"}, Count: 0, Writable: true},
			{Scope: userAlice, Count: 3, Writable: true},
			{Scope: teamAPI, Count: 2, Writable: true},
			{Scope: scope.Scope{Kind: scope.KindTeam, ID: "ops"}, Count: 0, Writable: true},
			{Scope: orgScope, Count: 2, Writable: true},
		}},
		{"other org", globex, []store.ScopeInfo{
			{Scope: sessAlice, Count: 1, Writable: true},
			{Scope: agentAlice, Count: 0, Writable: true},
			{Scope: userAlice, Count: 1, Writable: true},
			{Scope: teamAPI, Count: 1, Writable: true},
			{Scope: scope.Scope{Kind: scope.KindTeam, ID: "ops"}, Count: 0, Writable: true},
			{Scope: orgScope, Count: 1, Writable: true},
		}},
		{"new org", Member("initech", "alice", "api"), []store.ScopeInfo{
			{Scope: userAlice, Count: 0, Writable: true},
			{Scope: teamAPI, Count: 0, Writable: true},
			{Scope: orgScope, Count: 0, Writable: true},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListScopes(ctx(t), tc.id)
			if err != nil {
				t.Fatalf("ListScopes = %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ListScopes mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// purgeFixture fills two orgs with memories of users whose names trip
// naive prefix matching ("al" and "alice", "a_b" and "axb", "a%").
type purgeFixture struct {
	s    store.Store
	mems map[string][]store.Memory // by org + " " + qualified scope
}

var purgeUsers = []string{"alice", "al", "a_b", "axb", "a%"}

func newPurgeFixture(t *testing.T, open func(*testing.T) store.Store) *purgeFixture {
	t.Helper()
	f := &purgeFixture{s: openStore(t, open), mems: map[string][]store.Memory{}}
	for _, org := range []string{"acme", "globex"} {
		for _, u := range purgeUsers {
			for _, agent := range []string{"coder", "writer"} {
				id := Member(org, u, "api")
				id.Agent, id.Session = agent, "s-"+agent
				var ms []store.NewMemory
				for _, s := range id.Visible() {
					if s.Kind == scope.KindUser && agent == "writer" {
						continue
					}
					ms = append(ms, New(s, fmt.Sprintf("%s %s %s %s note", org, u, agent, s.Qualified())))
				}
				for _, a := range mustAdd(t, f.s, id, ms...) {
					k := org + " " + a.Scope.Qualified()
					f.mems[k] = append(f.mems[k], a.Memory)
				}
			}
		}
	}
	return f
}

// check verifies that exactly the memories of the removed keys are gone.
func (f *purgeFixture) check(t *testing.T, removed map[string]bool) {
	t.Helper()
	for k, ms := range f.mems {
		for _, m := range ms {
			if removed[k] {
				wantGone(t, f.s, Owner(m.Org, m.Scope), m.ID)
			} else {
				wantGet(t, f.s, Owner(m.Org, m.Scope), m)
			}
		}
	}
}

func testPurge(t *testing.T, open func(*testing.T) store.Store) {
	withSession := func(id scope.Identity, agent, session string) scope.Identity {
		id.Agent, id.Session = agent, session
		return id
	}
	noShare := Member("acme", "alice", "api")
	noShare.Permissions = []scope.Permission{scope.PermRead, scope.PermWrite, scope.PermPurge}
	noPurge := Member("acme", "alice", "api")
	noPurge.Permissions = []scope.Permission{scope.PermRead, scope.PermWrite, scope.PermShare}
	userKeys := func(org, u string) []string {
		return []string{org + " user:" + u, org + " agent:" + u + "/coder", org + " agent:" + u + "/writer",
			org + " session:" + u + "/s-coder", org + " session:" + u + "/s-writer"}
	}
	tests := []struct {
		name    string
		id      scope.Identity
		target  scope.Target
		removed []string // org + " " + qualified scope
		wantErr error
	}{
		{"own user scope", Member("acme", "alice"), scope.Target{Scope: userAlice}, []string{"acme user:alice"}, nil},
		{"own session", withSession(Member("acme", "alice"), "", "s-coder"), scope.Target{Scope: scope.Scope{Kind: scope.KindSession, ID: "alice/s-coder"}},
			[]string{"acme session:alice/s-coder"}, nil},
		{"own agent", withSession(Member("acme", "al"), "writer", ""), scope.Target{Scope: scope.Scope{Kind: scope.KindAgent, ID: "al/writer"}},
			[]string{"acme agent:al/writer"}, nil},
		{"team with share", Member("acme", "alice", "api"), scope.Target{Scope: teamAPI}, []string{"acme team:api"}, nil},
		{"org as admin", Admin("acme", "root"), scope.Target{Scope: orgScope}, []string{"acme org"}, nil},
		{"one user as admin", Admin("acme", "root"), scope.Target{Kind: scope.TargetUser, User: "alice"}, userKeys("acme", "alice"), nil},
		{"user with a prefix name", Admin("acme", "root"), scope.Target{Kind: scope.TargetUser, User: "al"}, userKeys("acme", "al"), nil},
		{"user with an underscore", Admin("acme", "root"), scope.Target{Kind: scope.TargetUser, User: "a_b"}, userKeys("acme", "a_b"), nil},
		{"user with a percent sign", Admin("acme", "root"), scope.Target{Kind: scope.TargetUser, User: "a%"}, userKeys("acme", "a%"), nil},
		{"oneself", Member("globex", "axb"), scope.Target{Kind: scope.TargetUser, User: "axb"}, userKeys("globex", "axb"), nil},
		{"user who has nothing", Admin("acme", "root"), scope.Target{Kind: scope.TargetUser, User: "nobody"}, nil, nil},
		{"whole org", Admin("globex", "root"), scope.Target{Kind: scope.TargetOrg}, func() []string {
			var out []string
			for _, u := range purgeUsers {
				out = append(out, userKeys("globex", u)...)
			}
			return append(out, "globex team:api", "globex org")
		}(), nil},
		{"without purge", noPurge, scope.Target{Scope: userAlice}, nil, scope.ErrForbidden},
		{"team without share", noShare, scope.Target{Scope: teamAPI}, nil, scope.ErrForbidden},
		{"org without share", noShare, scope.Target{Scope: orgScope}, nil, scope.ErrForbidden},
		{"team not a member of", Member("acme", "alice"), scope.Target{Scope: teamAPI}, nil, scope.ErrForbidden},
		{"another user's scope", Member("acme", "alice"), scope.Target{Scope: scope.Scope{Kind: scope.KindUser, ID: "al"}}, nil, scope.ErrForbidden},
		{"another user's session", Member("acme", "alice"), scope.Target{Scope: scope.Scope{Kind: scope.KindSession, ID: "al/s-coder"}}, nil, scope.ErrForbidden},
		{"another user without admin", Member("acme", "alice"), scope.Target{Kind: scope.TargetUser, User: "al"}, nil, scope.ErrForbidden},
		{"org without admin", Member("acme", "alice", "api"), scope.Target{Kind: scope.TargetOrg}, nil, scope.ErrForbidden},
		{"admin, a scope not visible", Admin("acme", "root"), scope.Target{Scope: userAlice}, nil, scope.ErrForbidden},
		{"unknown target kind", Admin("acme", "root"), scope.Target{Kind: 42}, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newPurgeFixture(t, open)
			got, err := f.s.Purge(ctx(t), tc.id, tc.target)
			if tc.name == "unknown target kind" {
				if err == nil {
					t.Fatalf("Purge(target kind 42) = %v, nil; want an error", got)
				}
				f.check(t, nil)
				return
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Purge(%s by %s/%s) = %v, %v; want %v", tc.target, tc.id.Org, tc.id.User, got, err, tc.wantErr)
				}
				f.check(t, nil)
				return
			}
			if err != nil {
				t.Fatalf("Purge(%s by %s/%s) = %v, want nil", tc.target, tc.id.Org, tc.id.User, err)
			}
			removed := map[string]bool{}
			want := map[string]int{}
			for _, k := range tc.removed {
				removed[k] = true
				if n := len(f.mems[k]); n > 0 {
					_, q, _ := cutSpace(k)
					want[q] = n
				}
			}
			if diff := cmp.Diff(want, nonZero(got)); diff != "" {
				t.Errorf("Purge(%s) counts mismatch (-want +got):\n%s", tc.target, diff)
			}
			f.check(t, removed)
		})
	}
}

func cutSpace(s string) (string, string, bool) {
	for i := range len(s) {
		if s[i] == ' ' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func testDeleteExpired(t *testing.T, open func(*testing.T) store.Store) {
	s := openStore(t, open)
	now := time.Now()
	past, soon := now.Add(-time.Minute), now.Add(time.Hour)
	with := func(m store.NewMemory, at *time.Time) store.NewMemory { m.ExpiresAt = at; return m }
	alice, gAlice := Member("acme", "alice", "api"), Member("globex", "alice")
	a := mustAdd(t, s, alice, with(New(userAlice, "old a"), &past), with(New(teamAPI, "old team"), &past),
		with(New(userAlice, "soon a"), &soon), New(userAlice, "forever a"))
	g := mustAdd(t, s, gAlice, with(New(userAlice, "old g"), &past), New(orgScope, "forever g"))

	n, err := s.DeleteExpired(ctx(t), now)
	if err != nil || n != 3 {
		t.Fatalf("DeleteExpired(now) = %d, %v; want 3, nil", n, err)
	}
	if n, err := s.DeleteExpired(ctx(t), now); err != nil || n != 0 {
		t.Errorf("DeleteExpired(now) again = %d, %v; want 0, nil", n, err)
	}
	wantGet(t, s, alice, a[2].Memory)
	wantGet(t, s, alice, a[3].Memory)
	wantGet(t, s, gAlice, g[1].Memory)
	n, err = s.DeleteExpired(ctx(t), now.Add(2*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("DeleteExpired(in two hours) = %d, %v; want 1, nil", n, err)
	}
	// Purge counts and scope counts no longer see the deleted rows.
	counts, err := s.Purge(ctx(t), alice, scope.Target{Scope: userAlice})
	if err != nil || counts.Total() != 1 {
		t.Errorf("Purge(user) after DeleteExpired = %v, %v; want 1 memory", counts, err)
	}
	wantGet(t, s, gAlice, g[1].Memory)
}

func testConcurrency(t *testing.T, open func(*testing.T) store.Store) {
	s := openStore(t, open)
	const workers, perWorker = 8, 20
	type acked struct {
		id scope.Identity
		m  store.Memory
	}
	var (
		mu     sync.Mutex
		all    []acked
		shared []string // ids returned for the same content added by every worker
		wg     sync.WaitGroup
		errs   = make(chan error, workers)
	)
	for w := range workers {
		wg.Go(func() {
			id := Member("acme", fmt.Sprintf("user%d", w%4), "api")
			id.Session = fmt.Sprintf("s%d", w)
			if w%2 == 1 {
				id = Member("globex", fmt.Sprintf("user%d", w%4), "api")
			}
			for i := range perWorker {
				sc := id.Visible()[i%len(id.Visible())]
				got, err := s.Add(ctx(t), id, []store.NewMemory{New(sc, fmt.Sprintf("worker %d note %d", w, i))})
				if err != nil {
					errs <- fmt.Errorf("worker %d: Add: %w", w, err)
					return
				}
				mu.Lock()
				all = append(all, acked{id: id, m: got[0].Memory})
				mu.Unlock()
				if _, err := s.Search(ctx(t), id, store.Query{Text: "note", Vector: Vector(fmt.Sprintf("worker %d note %d", w, i/2), Dims)}); err != nil {
					errs <- fmt.Errorf("worker %d: Search: %w", w, err)
					return
				}
			}
			got, err := s.Add(ctx(t), Member("acme", "alice"), []store.NewMemory{New(orgScope, "the same fact from every worker")})
			if err != nil {
				errs <- fmt.Errorf("worker %d: Add shared: %w", w, err)
				return
			}
			mu.Lock()
			shared = append(shared, got[0].ID)
			mu.Unlock()
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
	if len(all) != workers*perWorker {
		t.Fatalf("%d adds acknowledged, want %d", len(all), workers*perWorker)
	}
	for _, a := range all {
		wantGet(t, s, Owner(a.m.Org, a.m.Scope), a.m)
	}
	for _, id := range shared[1:] {
		if id != shared[0] {
			t.Errorf("concurrent adds of one text in one scope returned ids %v, want one id", shared)
			break
		}
	}
	wantOrg := 1 // the shared fact
	for _, a := range all {
		if a.m.Org == "acme" && a.m.Scope.Kind == scope.KindOrg {
			wantOrg++
		}
	}
	if n := countScopes(t, s, Member("acme", "nobody"))["org"]; n != wantOrg {
		t.Errorf("org scope of acme holds %d memories, want %d", n, wantOrg)
	}
}
