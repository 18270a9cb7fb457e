package scope_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/scopemem/scopemem/scope"
)

func TestAgentConfigIdentity(t *testing.T) {
	t.Setenv("USER", "dev")
	all := scope.AllPermissions
	tests := []struct {
		name    string
		cfg     scope.AgentConfig
		key     string
		want    scope.Identity
		wantErr error // nil: want success; else ErrBadAgentConfig and this too
	}{
		{
			name: "zero value",
			key:  "p1",
			want: scope.Identity{Org: "local", User: "dev", Session: "p1", Permissions: all},
		},
		{
			name: "everything set",
			cfg: scope.AgentConfig{Org: "acme", User: "alice", Teams: []string{"api"}, Agent: "coder", DefaultScope: "agent",
				Permissions: perms(scope.PermRead, scope.PermWrite)},
			key:  "p1",
			want: scope.Identity{Org: "acme", User: "alice", Teams: []string{"api"}, Agent: "coder", Session: "p1", Permissions: perms(scope.PermRead, scope.PermWrite)},
		},
		{
			name: "fields trimmed, teams cleaned",
			cfg:  scope.AgentConfig{Org: " acme ", User: "alice\t", Teams: []string{" api", "", "web", "api", "  "}, Permissions: perms(" memory:read", "memory:write", "memory:read")},
			want: scope.Identity{Org: "acme", User: "alice", Teams: []string{"api", "web"}, Permissions: perms(scope.PermRead, scope.PermWrite)},
		},
		{name: "default scope session", cfg: scope.AgentConfig{DefaultScope: "session"}, key: "p1",
			want: scope.Identity{Org: "local", User: "dev", Session: "p1", Permissions: all}},
		{name: "default scope own team", cfg: scope.AgentConfig{Teams: []string{"api"}, DefaultScope: "team:api"},
			want: scope.Identity{Org: "local", User: "dev", Teams: []string{"api"}, Permissions: all}},
		{name: "default scope org", cfg: scope.AgentConfig{DefaultScope: " org "},
			want: scope.Identity{Org: "local", User: "dev", Permissions: all}},
		{name: "read-only with a shared default scope", cfg: scope.AgentConfig{DefaultScope: "org", Permissions: perms(scope.PermRead)},
			want: scope.Identity{Org: "local", User: "dev", Permissions: perms(scope.PermRead)}},

		{name: "default scope team not a member of", cfg: scope.AgentConfig{Teams: []string{"api"}, DefaultScope: "team:x"}, wantErr: scope.ErrBadScope},
		{name: "default scope agent without agent", cfg: scope.AgentConfig{DefaultScope: "agent"}, wantErr: scope.ErrBadScope},
		{name: "default scope session without key", cfg: scope.AgentConfig{DefaultScope: "session"}, wantErr: scope.ErrBadScope},
		{name: "default scope unknown", cfg: scope.AgentConfig{DefaultScope: "everyone"}, wantErr: scope.ErrBadScope},
		{name: "default scope another user", cfg: scope.AgentConfig{DefaultScope: "user:bob"}, wantErr: scope.ErrBadScope},
		{name: "default scope org without share", cfg: scope.AgentConfig{DefaultScope: "org", Permissions: perms(scope.PermRead, scope.PermWrite)}, wantErr: scope.ErrForbidden},
		{name: "unknown permission", cfg: scope.AgentConfig{Permissions: perms("memory:read", "memory:all")}, wantErr: scope.ErrBadAgentConfig},
		{name: "slash in org", cfg: scope.AgentConfig{Org: "acme/x"}, wantErr: scope.ErrBadAgentConfig},
		{name: "colon in user", cfg: scope.AgentConfig{User: "user:bob"}, wantErr: scope.ErrBadAgentConfig},
		{name: "slash in agent", cfg: scope.AgentConfig{Agent: "a/b"}, wantErr: scope.ErrBadAgentConfig},
		{name: "colon in team", cfg: scope.AgentConfig{Teams: []string{"team:x"}}, wantErr: scope.ErrBadAgentConfig},
		{name: "slash in session key", key: "a/b", wantErr: scope.ErrBadAgentConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cfg.Identity(tc.key)
			if tc.wantErr != nil {
				if !errors.Is(err, scope.ErrBadAgentConfig) || !errors.Is(err, tc.wantErr) {
					t.Fatalf("Identity(%q) = %+v, %v; want error wrapping ErrBadAgentConfig and %v", tc.key, got, err, tc.wantErr)
				}
				t.Logf("Identity(%q) error: %v", tc.key, err)
				return
			}
			if err != nil {
				t.Fatalf("Identity(%q) error = %v", tc.key, err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Identity(%q) mismatch (-want +got):\n%s", tc.key, diff)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Identity(%q).Validate() = %v", tc.key, err)
			}
			// The default scope resolves for the identity.
			if _, err := got.Resolve(tc.cfg.DefaultScopeName(), tc.key); err != nil {
				t.Errorf("Resolve(DefaultScopeName() = %q) = %v", tc.cfg.DefaultScopeName(), err)
			}
		})
	}
}

func TestAgentConfigIdentityDoesNotAlias(t *testing.T) {
	cfg := scope.AgentConfig{User: "u"}
	id, err := cfg.Identity("")
	if err != nil {
		t.Fatal(err)
	}
	id.Permissions[0] = "changed"
	if scope.AllPermissions[0] != scope.PermRead {
		t.Fatalf("changing an identity's permissions changed AllPermissions to %v", scope.AllPermissions)
	}
}

func TestAgentConfigOSUser(t *testing.T) {
	tests := []struct {
		user, want string
	}{
		{user: "bob", want: "bob"},
		{user: `CORP\bob`, want: "bob"},
		{user: "a/b:c", want: "a_b_c"},
		{user: " carol ", want: "carol"},
		{user: "///", want: "local"},
		{user: `CORP\`, want: "local"},
	}
	for _, tc := range tests {
		t.Run(tc.user, func(t *testing.T) {
			t.Setenv("USER", tc.user)
			id, err := scope.AgentConfig{}.Identity("")
			if err != nil {
				t.Fatalf("Identity() with USER=%q error = %v", tc.user, err)
			}
			if id.User != tc.want {
				t.Errorf("Identity() with USER=%q: User = %q, want %q", tc.user, id.User, tc.want)
			}
		})
	}
	t.Run("no USER", func(t *testing.T) {
		t.Setenv("USER", "")
		t.Setenv("USERNAME", "")
		id, err := scope.AgentConfig{}.Identity("")
		if err != nil {
			t.Fatalf("Identity() without USER error = %v", err)
		}
		if id.User == "" {
			t.Errorf("Identity() without USER: User is empty")
		}
	})
}

func TestAgentConfigDefaultScopeName(t *testing.T) {
	for in, want := range map[string]string{"": "user", "  ": "user", "org": "org", " team:api ": "team:api"} {
		if got := (scope.AgentConfig{DefaultScope: in}).DefaultScopeName(); got != want {
			t.Errorf("DefaultScopeName() with DefaultScope %q = %q, want %q", in, got, want)
		}
	}
}

func TestLoadAgentConfigFile(t *testing.T) {
	t.Setenv("USER", "dev")
	tests := []struct {
		name    string
		file    string // a file under testdata/agent
		want    scope.AgentConfig
		wantErr error // nil: want success; else ErrBadAgentConfig and this too
	}{
		{name: "full", file: "full.json", want: scope.AgentConfig{
			Org: "acme", User: "alice", Teams: []string{"api"}, Agent: "coder", DefaultScope: "user",
			Permissions: perms(scope.PermRead, scope.PermWrite),
		}},
		{name: "empty object", file: "empty_object.json", want: scope.AgentConfig{}},
		{name: "session default scope", file: "session.json", want: scope.AgentConfig{User: "bob", DefaultScope: "session"}},
		{name: "unknown field", file: "unknown_field.json", wantErr: scope.ErrBadAgentConfig},
		{name: "misspelled field", file: "misspelled.json", wantErr: scope.ErrBadAgentConfig},
		{name: "a field named twice in two cases", file: "case_variant.json", wantErr: scope.ErrBadAgentConfig},
		{name: "upper-case field", file: "upper_case.json", wantErr: scope.ErrBadAgentConfig},
		{name: "teams as string", file: "teams_string.json", wantErr: scope.ErrBadAgentConfig},
		{name: "org as number", file: "org_number.json", wantErr: scope.ErrBadAgentConfig},
		{name: "syntax error", file: "syntax.json", wantErr: scope.ErrBadAgentConfig},
		{name: "truncated", file: "truncated.json", wantErr: scope.ErrBadAgentConfig},
		{name: "array", file: "array.json", wantErr: scope.ErrBadAgentConfig},
		{name: "two objects", file: "two_objects.json", wantErr: scope.ErrBadAgentConfig},
		{name: "empty file", file: "empty.json", wantErr: scope.ErrBadAgentConfig},
		{name: "unknown permission", file: "bad_permission.json", wantErr: scope.ErrBadAgentConfig},
		{name: "team not a member of", file: "bad_team_scope.json", wantErr: scope.ErrBadScope},
		{name: "slash in user", file: "bad_user.json", wantErr: scope.ErrBadAgentConfig},
		{name: "missing file", file: "does_not_exist.json", wantErr: os.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata", "agent", tc.file)
			got, err := scope.LoadAgentConfigFile(path)
			if tc.wantErr != nil {
				if !errors.Is(err, scope.ErrBadAgentConfig) || !errors.Is(err, tc.wantErr) {
					t.Fatalf("LoadAgentConfigFile(%s) = %+v, %v; want error wrapping ErrBadAgentConfig and %v", tc.file, got, err, tc.wantErr)
				}
				t.Logf("LoadAgentConfigFile(%s) error: %v", tc.file, err)
				return
			}
			if err != nil {
				t.Fatalf("LoadAgentConfigFile(%s) error = %v", tc.file, err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("LoadAgentConfigFile(%s) mismatch (-want +got):\n%s", tc.file, diff)
			}
		})
	}
}
