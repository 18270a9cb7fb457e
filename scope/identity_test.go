package scope_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/scopemem/scopemem/scope"
)

// Identities used across the tables.
var (
	perms = func(ps ...scope.Permission) []scope.Permission { return ps }

	// alice is a full member: session, agent, two teams, read/write/share/purge.
	alice = scope.Identity{
		Org: "acme", User: "alice", Teams: []string{"api", "web"}, Agent: "coder", Session: "s1",
		Permissions: perms(scope.PermRead, scope.PermWrite, scope.PermShare, scope.PermPurge),
	}
	// writer may write only her own scopes.
	writer = scope.Identity{Org: "acme", User: "wendy", Teams: []string{"api"}, Permissions: perms(scope.PermRead, scope.PermWrite)}
	// reader may only read.
	reader = scope.Identity{Org: "acme", User: "rita", Teams: []string{"api"}, Permissions: perms(scope.PermRead)}
	// admin holds only memory:admin, which implies everything.
	admin = scope.Identity{Org: "acme", User: "root", Permissions: perms(scope.PermAdmin)}
	// purger may purge her own scopes but not shared ones.
	purger = scope.Identity{Org: "acme", User: "pat", Teams: []string{"api"}, Session: "k", Permissions: perms(scope.PermRead, scope.PermWrite, scope.PermPurge)}
)

func TestParsePermissions(t *testing.T) {
	tests := []struct {
		in      string
		want    []scope.Permission
		wantErr bool
	}{
		{in: "", want: nil},
		{in: "   ", want: nil},
		{in: "memory:read", want: perms(scope.PermRead)},
		{in: "memory:read memory:write", want: perms(scope.PermRead, scope.PermWrite)},
		{in: "memory:read,memory:write", want: perms(scope.PermRead, scope.PermWrite)},
		{in: " memory:share , memory:purge,,memory:admin ", want: perms(scope.PermShare, scope.PermPurge, scope.PermAdmin)},
		{in: "memory:write memory:read memory:write", want: perms(scope.PermWrite, scope.PermRead)},
		{in: "memory:read openid", wantErr: true},
		{in: "memory:READ", wantErr: true},
		{in: "memory", wantErr: true},
		{in: "memory:read;memory:write", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := scope.ParsePermissions(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParsePermissions(%q) = %v, want error", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePermissions(%q) error = %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ParsePermissions(%q) mismatch (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestIdentityValidate(t *testing.T) {
	ok := scope.Identity{Org: "acme", User: "alice"}
	with := func(f func(*scope.Identity)) scope.Identity {
		id := alice
		id.Teams = append([]string(nil), alice.Teams...)
		f(&id)
		return id
	}
	tests := []struct {
		name    string
		id      scope.Identity
		wantErr bool
	}{
		{name: "minimal", id: ok},
		{name: "full", id: alice},
		{name: "spaces and unicode", id: scope.Identity{Org: "Acme Corp", User: "zoë@example.com", Teams: []string{"r&d"}}},
		{name: "256-byte id", id: scope.Identity{Org: "acme", User: strings.Repeat("u", 256)}},
		{name: "no org", id: scope.Identity{User: "alice"}, wantErr: true},
		{name: "no user", id: scope.Identity{Org: "acme"}, wantErr: true},
		{name: "empty", id: scope.Identity{}, wantErr: true},
		{name: "slash in org", id: with(func(id *scope.Identity) { id.Org = "a/b" }), wantErr: true},
		{name: "colon in org", id: with(func(id *scope.Identity) { id.Org = "a:b" }), wantErr: true},
		{name: "slash in user", id: with(func(id *scope.Identity) { id.User = "../bob" }), wantErr: true},
		{name: "colon in user", id: with(func(id *scope.Identity) { id.User = "user:bob" }), wantErr: true},
		{name: "slash in agent", id: with(func(id *scope.Identity) { id.Agent = "a/b" }), wantErr: true},
		{name: "colon in session", id: with(func(id *scope.Identity) { id.Session = "s:1" }), wantErr: true},
		{name: "slash in team", id: with(func(id *scope.Identity) { id.Teams = append(id.Teams, "x/y") }), wantErr: true},
		{name: "newline in user", id: with(func(id *scope.Identity) { id.User = "al\nice" }), wantErr: true},
		{name: "NUL in org", id: with(func(id *scope.Identity) { id.Org = "ac\x00me" }), wantErr: true},
		{name: "DEL in team", id: with(func(id *scope.Identity) { id.Teams = []string{"a\x7f"} }), wantErr: true},
		{name: "invalid UTF-8", id: with(func(id *scope.Identity) { id.User = "al\xffice" }), wantErr: true},
		{name: "257-byte id", id: scope.Identity{Org: "acme", User: strings.Repeat("u", 257)}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.id.Validate()
			if tc.wantErr && !errors.Is(err, scope.ErrInvalidToken) {
				t.Errorf("Validate(%+v) = %v, want error wrapping ErrInvalidToken", tc.id, err)
			}
			if !tc.wantErr && err != nil {
				t.Errorf("Validate(%+v) = %v, want nil", tc.id, err)
			}
		})
	}
}

func TestIdentityVisible(t *testing.T) {
	tests := []struct {
		name string
		id   scope.Identity
		want []scope.Scope
	}{
		{
			name: "user only",
			id:   scope.Identity{Org: "acme", User: "bob"},
			want: []scope.Scope{{Kind: scope.KindUser, ID: "bob"}, {Kind: scope.KindOrg}},
		},
		{
			name: "everything, narrowest first",
			id:   alice,
			want: []scope.Scope{
				{Kind: scope.KindSession, ID: "alice/s1"},
				{Kind: scope.KindAgent, ID: "alice/coder"},
				{Kind: scope.KindUser, ID: "alice"},
				{Kind: scope.KindTeam, ID: "api"},
				{Kind: scope.KindTeam, ID: "web"},
				{Kind: scope.KindOrg},
			},
		},
		{
			name: "empty team skipped",
			id:   scope.Identity{Org: "acme", User: "bob", Teams: []string{"", "ops"}},
			want: []scope.Scope{{Kind: scope.KindUser, ID: "bob"}, {Kind: scope.KindTeam, ID: "ops"}, {Kind: scope.KindOrg}},
		},
		{
			name: "permissions do not change visibility",
			id:   scope.Identity{Org: "acme", User: "bob", Session: "x"},
			want: []scope.Scope{{Kind: scope.KindSession, ID: "bob/x"}, {Kind: scope.KindUser, ID: "bob"}, {Kind: scope.KindOrg}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.id.Visible()
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Visible() mismatch (-want +got):\n%s", diff)
			}
			for i := 1; i < len(got); i++ {
				if got[i-1].Kind.Rank() > got[i].Kind.Rank() {
					t.Errorf("Visible()[%d] = %v is wider than [%d] = %v", i-1, got[i-1], i, got[i])
				}
			}
			for _, s := range got {
				if !tc.id.CanSee(s) {
					t.Errorf("CanSee(%v) = false for a visible scope", s)
				}
			}
		})
	}
}

func TestIdentityCanWrite(t *testing.T) {
	var (
		session = func(id scope.Identity) scope.Scope {
			return scope.Scope{Kind: scope.KindSession, ID: id.User + "/" + id.Session}
		}
		user = func(id scope.Identity) scope.Scope { return scope.Scope{Kind: scope.KindUser, ID: id.User} }
		team = func(t string) scope.Scope { return scope.Scope{Kind: scope.KindTeam, ID: t} }
		org  = scope.Scope{Kind: scope.KindOrg}
	)
	tests := []struct {
		name    string
		id      scope.Identity
		s       scope.Scope
		missing scope.Permission // "" means allowed; else the MissingPermissionError wanted
		foreign bool             // want ErrForbidden because the scope is not the caller's
	}{
		{name: "own session", id: alice, s: session(alice)},
		{name: "own agent", id: alice, s: scope.Scope{Kind: scope.KindAgent, ID: "alice/coder"}},
		{name: "own user", id: alice, s: user(alice)},
		{name: "own team with share", id: alice, s: team("web")},
		{name: "org with share", id: alice, s: org},
		{name: "writer own user", id: writer, s: user(writer)},
		{name: "writer team needs share", id: writer, s: team("api"), missing: scope.PermShare},
		{name: "writer org needs share", id: writer, s: org, missing: scope.PermShare},
		{name: "reader user needs write", id: reader, s: user(reader), missing: scope.PermWrite},
		{name: "reader team needs write", id: reader, s: team("api"), missing: scope.PermWrite},
		{name: "admin user", id: admin, s: user(admin)},
		{name: "admin org", id: admin, s: org},
		{name: "another user's scope", id: alice, s: scope.Scope{Kind: scope.KindUser, ID: "bob"}, foreign: true},
		{name: "admin, another user's scope", id: admin, s: scope.Scope{Kind: scope.KindUser, ID: "alice"}, foreign: true},
		{name: "another session", id: alice, s: scope.Scope{Kind: scope.KindSession, ID: "alice/s2"}, foreign: true},
		{name: "another user's session", id: alice, s: scope.Scope{Kind: scope.KindSession, ID: "bob/s1"}, foreign: true},
		{name: "another agent", id: alice, s: scope.Scope{Kind: scope.KindAgent, ID: "alice/other"}, foreign: true},
		{name: "team not a member of", id: alice, s: team("ops"), foreign: true},
		{name: "admin, team not a member of", id: admin, s: team("api"), foreign: true},
		{name: "org with an id", id: alice, s: scope.Scope{Kind: scope.KindOrg, ID: "other"}, foreign: true},
		{name: "unknown kind", id: alice, s: scope.Scope{Kind: "global"}, foreign: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.id.CanWrite(tc.s)
			switch {
			case tc.foreign:
				var mp *scope.MissingPermissionError
				if !errors.Is(err, scope.ErrForbidden) || errors.As(err, &mp) {
					t.Errorf("CanWrite(%v) = %v, want ErrForbidden for a foreign scope", tc.s, err)
				}
			case tc.missing != "":
				var mp *scope.MissingPermissionError
				if !errors.Is(err, scope.ErrForbidden) || !errors.As(err, &mp) || mp.Permission != tc.missing {
					t.Errorf("CanWrite(%v) = %v, want MissingPermissionError{%s}", tc.s, err, tc.missing)
				}
			default:
				if err != nil {
					t.Errorf("CanWrite(%v) = %v, want nil", tc.s, err)
				}
			}
		})
	}
}

func TestIdentityWritable(t *testing.T) {
	tests := []struct {
		name string
		id   scope.Identity
		want []scope.Scope
	}{
		{name: "full", id: alice, want: alice.Visible()},
		{name: "writer", id: writer, want: []scope.Scope{{Kind: scope.KindUser, ID: "wendy"}}},
		{name: "reader", id: reader, want: nil},
		{name: "admin", id: admin, want: admin.Visible()},
		{name: "purger", id: purger, want: []scope.Scope{{Kind: scope.KindSession, ID: "pat/k"}, {Kind: scope.KindUser, ID: "pat"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.id.Writable(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Writable() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIdentityResolve(t *testing.T) {
	noSession := alice
	noSession.Session = ""
	noAgent := alice
	noAgent.Agent = ""
	tests := []struct {
		name, scopeName, key string
		id                   scope.Identity
		want                 scope.Scope
		wantErr              bool
	}{
		{name: "session", id: alice, scopeName: "session", want: scope.Scope{Kind: scope.KindSession, ID: "alice/s1"}},
		{name: "session with key", id: alice, scopeName: "session", key: "run-7", want: scope.Scope{Kind: scope.KindSession, ID: "alice/run-7"}},
		{name: "session key without transport session", id: noSession, scopeName: "session", key: "run-7", want: scope.Scope{Kind: scope.KindSession, ID: "alice/run-7"}},
		{name: "session without any key", id: noSession, scopeName: "session", wantErr: true},
		{name: "session key with slash", id: alice, scopeName: "session", key: "x/../bob", wantErr: true},
		{name: "session key with colon", id: alice, scopeName: "session", key: "a:b", wantErr: true},
		{name: "session key with newline", id: alice, scopeName: "session", key: "a\nb", wantErr: true},
		{name: "session key too long", id: alice, scopeName: "session", key: strings.Repeat("k", 257), wantErr: true},
		{name: "session with id", id: alice, scopeName: "session:s1", wantErr: true},
		{name: "agent", id: alice, scopeName: "agent", want: scope.Scope{Kind: scope.KindAgent, ID: "alice/coder"}},
		{name: "agent without agent", id: noAgent, scopeName: "agent", wantErr: true},
		{name: "agent with id", id: alice, scopeName: "agent:coder", wantErr: true},
		{name: "user", id: alice, scopeName: "user", want: scope.Scope{Kind: scope.KindUser, ID: "alice"}},
		{name: "user padded", id: alice, scopeName: "  user\n", want: scope.Scope{Kind: scope.KindUser, ID: "alice"}},
		{name: "another user", id: alice, scopeName: "user:bob", wantErr: true},
		{name: "own user by id", id: alice, scopeName: "user:alice", wantErr: true},
		{name: "team", id: alice, scopeName: "team:web", want: scope.Scope{Kind: scope.KindTeam, ID: "web"}},
		{name: "team not a member of", id: alice, scopeName: "team:ops", wantErr: true},
		{name: "team without id", id: alice, scopeName: "team", wantErr: true},
		{name: "team with empty id", id: alice, scopeName: "team:", wantErr: true},
		{name: "team id case matters", id: alice, scopeName: "team:API", wantErr: true},
		{name: "team id with colon", id: alice, scopeName: "team:api:x", wantErr: true},
		{name: "admin, team not a member of", id: admin, scopeName: "team:api", wantErr: true},
		{name: "org", id: alice, scopeName: "org", want: scope.Scope{Kind: scope.KindOrg}},
		{name: "another org", id: alice, scopeName: "org:globex", wantErr: true},
		{name: "empty", id: alice, scopeName: "", wantErr: true},
		{name: "unknown", id: alice, scopeName: "global", wantErr: true},
		{name: "upper case", id: alice, scopeName: "USER", wantErr: true},
		{name: "all is not a scope", id: admin, scopeName: "all", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.id.Resolve(tc.scopeName, tc.key)
			if tc.wantErr {
				if !errors.Is(err, scope.ErrBadScope) {
					t.Errorf("Resolve(%q, %q) = %v, %v; want error wrapping ErrBadScope", tc.scopeName, tc.key, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(%q, %q) error = %v", tc.scopeName, tc.key, err)
			}
			if got != tc.want {
				t.Errorf("Resolve(%q, %q) = %v, want %v", tc.scopeName, tc.key, got, tc.want)
			}
			if tc.key == "" && !tc.id.CanSee(got) {
				t.Errorf("Resolve(%q) = %v, which is not visible", tc.scopeName, got)
			}
		})
	}
}

func TestIdentityResolveTarget(t *testing.T) {
	tests := []struct {
		name, target string
		id           scope.Identity
		want         scope.Target
		wantErr      error
		missing      scope.Permission
	}{
		{name: "own session", id: purger, target: "session", want: scope.Target{Kind: scope.TargetScope, Scope: scope.Scope{Kind: scope.KindSession, ID: "pat/k"}}},
		{name: "own user", id: purger, target: "user", want: scope.Target{Kind: scope.TargetScope, Scope: scope.Scope{Kind: scope.KindUser, ID: "pat"}}},
		{name: "own team needs share", id: purger, target: "team:api", missing: scope.PermShare},
		{name: "org needs share", id: purger, target: "org", missing: scope.PermShare},
		{name: "team with share", id: alice, target: "team:api", want: scope.Target{Kind: scope.TargetScope, Scope: scope.Scope{Kind: scope.KindTeam, ID: "api"}}},
		{name: "org with share", id: alice, target: "org", want: scope.Target{Kind: scope.TargetScope, Scope: scope.Scope{Kind: scope.KindOrg}}},
		{name: "writer cannot purge", id: writer, target: "user", missing: scope.PermPurge},
		{name: "reader cannot purge", id: reader, target: "user", missing: scope.PermPurge},
		{name: "own memories by user id", id: purger, target: "user:pat", want: scope.Target{Kind: scope.TargetUser, User: "pat"}},
		{name: "another user needs admin", id: alice, target: "user:bob", missing: scope.PermAdmin},
		{name: "admin, another user", id: admin, target: "user:bob", want: scope.Target{Kind: scope.TargetUser, User: "bob"}},
		{name: "whole org needs admin", id: alice, target: "all", missing: scope.PermAdmin},
		{name: "admin, whole org", id: admin, target: " all ", want: scope.Target{Kind: scope.TargetOrg}},
		{name: "admin, own user", id: admin, target: "user", want: scope.Target{Kind: scope.TargetScope, Scope: scope.Scope{Kind: scope.KindUser, ID: "root"}}},
		{name: "admin, org scope", id: admin, target: "org", want: scope.Target{Kind: scope.TargetScope, Scope: scope.Scope{Kind: scope.KindOrg}}},
		{name: "empty user", id: admin, target: "user:", wantErr: scope.ErrBadScope},
		{name: "user with slash", id: admin, target: "user:a/b", wantErr: scope.ErrBadScope},
		{name: "user with colon", id: admin, target: "user:a:b", wantErr: scope.ErrBadScope},
		{name: "team not a member of", id: alice, target: "team:ops", wantErr: scope.ErrBadScope},
		// memory:admin reaches every team of the org, member or not.
		{name: "admin, team not a member of", id: admin, target: "team:api", want: scope.Target{Kind: scope.TargetScope, Scope: scope.Scope{Kind: scope.KindTeam, ID: "api"}}},
		{name: "session without key", id: writer, target: "session", wantErr: scope.ErrBadScope},
		{name: "unknown", id: admin, target: "everything", wantErr: scope.ErrBadScope},
		{name: "empty", id: admin, target: "", wantErr: scope.ErrBadScope},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.id.ResolveTarget(tc.target, "")
			switch {
			case tc.missing != "":
				var mp *scope.MissingPermissionError
				if !errors.Is(err, scope.ErrForbidden) || !errors.As(err, &mp) || mp.Permission != tc.missing {
					t.Errorf("ResolveTarget(%q) = %v, %v; want MissingPermissionError{%s}", tc.target, got, err, tc.missing)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("ResolveTarget(%q) = %v, %v; want %v", tc.target, got, err, tc.wantErr)
				}
			default:
				if err != nil {
					t.Fatalf("ResolveTarget(%q) error = %v", tc.target, err)
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("ResolveTarget(%q) mismatch (-want +got):\n%s", tc.target, diff)
				}
			}
		})
	}
}

func TestIdentityCanPurge(t *testing.T) {
	tests := []struct {
		name    string
		id      scope.Identity
		target  scope.Target
		wantErr bool
	}{
		{name: "own user scope", id: purger, target: scope.Target{Kind: scope.TargetScope, Scope: scope.Scope{Kind: scope.KindUser, ID: "pat"}}},
		{name: "another user's scope", id: purger, target: scope.Target{Kind: scope.TargetScope, Scope: scope.Scope{Kind: scope.KindUser, ID: "alice"}}, wantErr: true},
		{name: "admin, another user's scope", id: admin, target: scope.Target{Kind: scope.TargetScope, Scope: scope.Scope{Kind: scope.KindUser, ID: "alice"}}, wantErr: true},
		{name: "another session", id: purger, target: scope.Target{Kind: scope.TargetScope, Scope: scope.Scope{Kind: scope.KindSession, ID: "pat/other"}}, wantErr: true},
		{name: "team not a member of", id: alice, target: scope.Target{Kind: scope.TargetScope, Scope: scope.Scope{Kind: scope.KindTeam, ID: "ops"}}, wantErr: true},
		{name: "own user target", id: purger, target: scope.Target{Kind: scope.TargetUser, User: "pat"}},
		{name: "own user target without purge", id: writer, target: scope.Target{Kind: scope.TargetUser, User: "wendy"}, wantErr: true},
		{name: "another user target", id: alice, target: scope.Target{Kind: scope.TargetUser, User: "bob"}, wantErr: true},
		{name: "admin, another user target", id: admin, target: scope.Target{Kind: scope.TargetUser, User: "bob"}},
		{name: "org target", id: alice, target: scope.Target{Kind: scope.TargetOrg}, wantErr: true},
		{name: "admin, org target", id: admin, target: scope.Target{Kind: scope.TargetOrg}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.id.CanPurge(tc.target)
			if tc.wantErr && !errors.Is(err, scope.ErrForbidden) {
				t.Errorf("CanPurge(%v) = %v, want ErrForbidden", tc.target, err)
			}
			if !tc.wantErr && err != nil {
				t.Errorf("CanPurge(%v) = %v, want nil", tc.target, err)
			}
		})
	}
}

func TestIdentityRequire(t *testing.T) {
	tests := []struct {
		name    string
		id      scope.Identity
		ps      []scope.Permission
		missing scope.Permission
	}{
		{name: "nothing asked", id: reader},
		{name: "held", id: writer, ps: perms(scope.PermRead, scope.PermWrite)},
		{name: "first missing named", id: reader, ps: perms(scope.PermRead, scope.PermShare, scope.PermPurge), missing: scope.PermShare},
		{name: "admin implies all", id: admin, ps: scope.AllPermissions},
		{name: "no permissions", id: scope.Identity{Org: "acme", User: "x"}, ps: perms(scope.PermRead), missing: scope.PermRead},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.id.Require(tc.ps...)
			if tc.missing == "" {
				if err != nil {
					t.Errorf("Require(%v) = %v, want nil", tc.ps, err)
				}
				return
			}
			var mp *scope.MissingPermissionError
			if !errors.Is(err, scope.ErrForbidden) || !errors.As(err, &mp) || mp.Permission != tc.missing {
				t.Errorf("Require(%v) = %v, want MissingPermissionError{%s}", tc.ps, err, tc.missing)
			}
		})
	}
}

func TestScopeStrings(t *testing.T) {
	tests := []struct {
		s              scope.Scope
		str, qualified string
		rank           int
	}{
		{scope.Scope{Kind: scope.KindSession, ID: "alice/k1"}, "session", "session:alice/k1", 0},
		{scope.Scope{Kind: scope.KindAgent, ID: "alice/coder"}, "agent", "agent:alice/coder", 1},
		{scope.Scope{Kind: scope.KindUser, ID: "alice"}, "user", "user:alice", 2},
		{scope.Scope{Kind: scope.KindTeam, ID: "api"}, "team:api", "team:api", 3},
		{scope.Scope{Kind: scope.KindOrg}, "org", "org", 4},
		{scope.Scope{Kind: "global", ID: "x"}, "global", "global:x", 5},
	}
	for _, tc := range tests {
		if got := tc.s.String(); got != tc.str {
			t.Errorf("%#v.String() = %q, want %q", tc.s, got, tc.str)
		}
		if got := tc.s.Qualified(); got != tc.qualified {
			t.Errorf("%#v.Qualified() = %q, want %q", tc.s, got, tc.qualified)
		}
		if got := tc.s.Kind.Rank(); got != tc.rank {
			t.Errorf("%q.Rank() = %d, want %d", tc.s.Kind, got, tc.rank)
		}
	}
	targets := []struct {
		t    scope.Target
		want string
	}{
		{scope.Target{Kind: scope.TargetScope, Scope: scope.Scope{Kind: scope.KindTeam, ID: "api"}}, "team:api"},
		{scope.Target{Kind: scope.TargetUser, User: "bob"}, "user:bob"},
		{scope.Target{Kind: scope.TargetOrg}, "all"},
	}
	for _, tc := range targets {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.t, got, tc.want)
		}
	}
	// Every visible scope's String resolves back to itself.
	for _, s := range alice.Visible() {
		got, err := alice.Resolve(s.String(), "")
		if err != nil || got != s {
			t.Errorf("Resolve(%q) = %v, %v; want %v", s.String(), got, err, s)
		}
	}
}

func TestIdentityContext(t *testing.T) {
	if got, ok := scope.FromContext(context.Background()); ok {
		t.Errorf("FromContext(empty) = %+v, true; want false", got)
	}
	ctx := scope.WithIdentity(t.Context(), alice)
	got, ok := scope.FromContext(ctx)
	if !ok {
		t.Fatal("FromContext() ok = false after WithIdentity")
	}
	if diff := cmp.Diff(alice, got); diff != "" {
		t.Errorf("FromContext() mismatch (-want +got):\n%s", diff)
	}
}
