package scope_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/scopemem/scopemem/scope"
)

// FuzzClaims signs arbitrary claim sets with the verifier's secret and
// checks how they map to an identity: a token is either refused with an
// error wrapping ErrInvalidToken, or yields a valid identity whose org and
// user are exactly the org_id and sub claims and whose permissions are
// known and distinct.
func FuzzClaims(f *testing.F) {
	for _, s := range []string{
		`{"sub":"alice","org_id":"acme","exp":4102444800,"scope":"memory:read memory:write","teams":["api","web"],"agent":"coder"}`,
		`{"sub":"alice","org_id":"acme","exp":4102444800,"scp":["memory:read","openid"],"teams":"api,web ops"}`,
		`{"sub":"alice","org_id":"acme/other","exp":4102444800}`,
		`{"sub":"alice","org_id":"acme","exp":4102444800,"teams":["team:x"]}`,
		`{"sub":1,"org_id":"acme","exp":4102444800}`,
		`{"sub":"alice","org_id":null,"exp":4102444800}`,
		`{"sub":"alice","org_id":"acme","exp":"4102444800"}`,
		`{"sub":"alice","org_id":"acme","exp":1}`,
		`{"sub":"alice","org_id":"acme","exp":4102444800,"scope":["memory:read",7]}`,
		`{"sub":"al\u0000ice","org_id":"acme","exp":4102444800}`,
		`{"sub":"\ufffd","org_id":"acme","exp":4102444800}`,
	} {
		f.Add(s)
	}
	secret := []byte("fuzz-secret-fuzz-secret-fuzz-secret!!")
	v, err := scope.NewJWTVerifier(f.Context(), scope.JWTConfig{Secret: secret})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(v.Close)
	f.Fuzz(func(t *testing.T, raw string) {
		var claims map[string]any
		if json.Unmarshal([]byte(raw), &claims) != nil || claims == nil {
			return
		}
		tok, err := scope.MintHS256(secret, claims)
		if err != nil {
			return
		}
		id, err := v.Verify(t.Context(), tok)
		if err != nil {
			if !errors.Is(err, scope.ErrInvalidToken) {
				t.Fatalf("Verify(%s) error %v does not wrap ErrInvalidToken", raw, err)
			}
			return
		}
		if err := id.Validate(); err != nil {
			t.Fatalf("Verify(%s) = %+v, which does not validate: %v", raw, id, err)
		}
		if id.Org != claims["org_id"] || id.User != claims["sub"] {
			t.Fatalf("Verify(%s) = org %q user %q, want the org_id and sub claims", raw, id.Org, id.User)
		}
		for i, p := range id.Permissions {
			if !slices.Contains(scope.AllPermissions, p) || slices.Contains(id.Permissions[:i], p) {
				t.Fatalf("Verify(%s) permissions %v hold an unknown or repeated %q", raw, id.Permissions, p)
			}
		}
		for _, s := range id.Visible() {
			if !id.CanSee(s) {
				t.Fatalf("Verify(%s) = %+v, which cannot see its own visible scope %v", raw, id, s)
			}
		}
	})
}

// FuzzParseAPIKey checks the API key parser: a key it accepts has the
// live or test prefix, the full length, and an id that ValidAPIKeyID
// accepts; every refusal wraps ErrInvalidToken.
func FuzzParseAPIKey(f *testing.F) {
	live, _, err := scope.NewAPIKey(false)
	if err != nil {
		f.Fatal(err)
	}
	test, _, err := scope.NewAPIKey(true)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{live, test, live[:len(live)-1], live + "a", "", scope.LiveKeyPrefix, scope.TestKeyPrefix + "x_y",
		live[:len(scope.LiveKeyPrefix)] + "AAAA" + live[len(scope.LiveKeyPrefix)+4:]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		id, isTest, err := scope.ParseAPIKey(key)
		if err != nil {
			if !errors.Is(err, scope.ErrInvalidToken) {
				t.Fatalf("ParseAPIKey(%q) error %v does not wrap ErrInvalidToken", key, err)
			}
			return
		}
		prefix := scope.LiveKeyPrefix
		if isTest {
			prefix = scope.TestKeyPrefix
		}
		if len(key) < len(prefix) || key[:len(prefix)] != prefix {
			t.Fatalf("ParseAPIKey(%q) accepted a key without the %q prefix", key, prefix)
		}
		if !scope.ValidAPIKeyID(id) {
			t.Fatalf("ParseAPIKey(%q) returned id %q, which ValidAPIKeyID refuses", key, id)
		}
		if want, _, _ := scope.NewAPIKey(isTest); len(key) != len(want) {
			t.Fatalf("ParseAPIKey(%q) accepted a key of %d bytes, keys have %d", key, len(key), len(want))
		}
	})
}
