package scope_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/scopemem/scopemem/scope"
)

// FuzzResolve checks that no scope string, however odd, resolves to a
// scope the identity cannot see, and that every failure is a known error.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{"session", "agent", "user", "org", "team:api", "team:", "team:ops", "user:bob", "all",
		" user ", "TEAM:api", "team:api:x", "org:other", "session:x", "\x00", "team:\u202e", "agent:alice/coder"} {
		f.Add(s, "k1")
	}
	alice := scope.Identity{Org: "acme", User: "alice", Teams: []string{"api", "web"}, Agent: "coder",
		Session: "s1", Permissions: scope.AllPermissions[:4]}
	f.Fuzz(func(t *testing.T, name, key string) {
		s, err := alice.Resolve(name, key)
		if err != nil {
			if !errors.Is(err, scope.ErrBadScope) {
				t.Fatalf("Resolve(%q, %q) error %v does not wrap ErrBadScope", name, key, err)
			}
			return
		}
		id := alice
		if key != "" {
			id.Session = key
		}
		if !id.CanSee(s) {
			t.Fatalf("Resolve(%q, %q) = %v, which the identity cannot see", name, key, s)
		}
	})
}

// FuzzResolveTarget checks that a purge target either resolves to one the
// identity may purge or fails with a known error.
func FuzzResolveTarget(f *testing.F) {
	for _, s := range []string{"user", "all", "user:bob", "user:", "team:ops", "org", "user:a/b", "user:alice"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, name string, admin bool) {
		id := scope.Identity{Org: "acme", User: "alice", Teams: []string{"api"}, Permissions: []scope.Permission{scope.PermRead, scope.PermPurge}}
		if admin {
			id.Permissions = append(id.Permissions, scope.PermAdmin)
		}
		tg, err := id.ResolveTarget(name, "s1")
		if err != nil {
			if !errors.Is(err, scope.ErrBadScope) && !errors.Is(err, scope.ErrForbidden) {
				t.Fatalf("ResolveTarget(%q) error %v wraps neither ErrBadScope nor ErrForbidden", name, err)
			}
			return
		}
		if err := id.CanPurge(tg); err != nil {
			t.Fatalf("ResolveTarget(%q) = %v but CanPurge says %v", name, tg, err)
		}
		if !admin && (tg.Kind == scope.TargetOrg || (tg.Kind == scope.TargetUser && tg.User != "alice")) {
			t.Fatalf("non-admin may purge %v", tg)
		}
	})
}

// FuzzParsePermissions checks that parsing either fails or yields only
// known permissions.
func FuzzParsePermissions(f *testing.F) {
	for _, s := range []string{"memory:read", "memory:read memory:write", "memory:read,,memory:admin", "", "memory:*", "admin"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := scope.ParsePermissions(s)
		if err != nil {
			return
		}
		for _, p := range ps {
			known := false
			for _, k := range scope.AllPermissions {
				known = known || p == k
			}
			if !known {
				t.Fatalf("ParsePermissions(%q) returned unknown %q", s, p)
			}
		}
	})
}

// FuzzVerifyToken feeds arbitrary bearer tokens to the HS256 verifier:
// every one must be rejected with ErrInvalidToken (none is signed with the
// secret), and none may panic.
func FuzzVerifyToken(f *testing.F) {
	secret := []byte("fuzz-secret-fuzz-secret-fuzz-secret!!")
	good, _ := scope.MintHS256(secret, map[string]any{"sub": "u", "org_id": "o", "exp": time.Now().Add(time.Hour).Unix()})
	other, _ := scope.MintHS256([]byte("another-secret-another-secret-another"), map[string]any{"sub": "u", "org_id": "o", "exp": time.Now().Add(time.Hour).Unix()})
	for _, s := range []string{other, good[:len(good)-2] + "xx", "a.b.c", "", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1In0.", "....", "Bearer x"} {
		f.Add(s)
	}
	v, err := scope.NewJWTVerifier(context.Background(), scope.JWTConfig{Secret: secret})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(v.Close)
	f.Fuzz(func(t *testing.T, tok string) {
		if tok == good {
			return
		}
		id, err := v.Verify(t.Context(), tok)
		if err == nil {
			t.Fatalf("Verify accepted a token not signed with the secret: %q -> %+v", tok, id)
		}
		if !errors.Is(err, scope.ErrInvalidToken) {
			t.Fatalf("Verify error %v does not wrap ErrInvalidToken", err)
		}
	})
}
