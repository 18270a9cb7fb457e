package scope_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/scopemem/scopemem/scope"
)

func TestNewAPIKeyForm(t *testing.T) {
	seen := map[string]bool{}
	for _, test := range []bool{false, true} {
		for range 50 {
			key, rec, err := scope.NewAPIKey(test)
			if err != nil {
				t.Fatalf("NewAPIKey(%v): %v", test, err)
			}
			want := scope.LiveKeyPrefix
			if test {
				want = scope.TestKeyPrefix
			}
			if !strings.HasPrefix(key, want) {
				t.Errorf("NewAPIKey(%v) = %q, want prefix %q", test, key, want)
			}
			id, gotTest, err := scope.ParseAPIKey(key)
			if err != nil || id != rec.ID || gotTest != test {
				t.Errorf("ParseAPIKey(%q) = %q, %v, %v; want %q, %v, nil", key, id, gotTest, err, rec.ID, test)
			}
			if !cmp.Equal(rec.Hash, scope.HashAPIKey(key)) || len(rec.Hash) != 32 {
				t.Errorf("record hash %x is not SHA-256 of the key", rec.Hash)
			}
			if strings.Contains(fmt.Sprint(rec), key[len(want)+13:]) {
				t.Errorf("record %v holds the secret", rec)
			}
			if seen[key] || seen[rec.ID] {
				t.Fatalf("NewAPIKey repeated %q", key)
			}
			seen[key], seen[rec.ID] = true, true
		}
	}
}

func TestParseAPIKeyRejects(t *testing.T) {
	key, _, err := scope.NewAPIKey(false)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"", "smk_", "smk_live_", key + "a", key[:len(key)-1], strings.Replace(key, "smk_live_", "smk_prod_", 1),
		strings.ToUpper(key), key[:21] + "-" + key[22:], strings.Replace(key, "_", ".", 3), "eyJhbGciOiJub25lIn0.e30.",
	} {
		if _, _, err := scope.ParseAPIKey(bad); !errors.Is(err, scope.ErrInvalidToken) {
			t.Errorf("ParseAPIKey(%q) = %v, want ErrInvalidToken", bad, err)
		}
	}
}

func TestAPIKeyVerifier(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	past, future := now.Add(-time.Minute), now.Add(time.Hour)
	ident := scope.Identity{Org: "acme", User: "bot", Teams: []string{"api"}, Agent: "x", Permissions: []scope.Permission{scope.PermRead}}
	type rec struct {
		key string
		k   scope.APIKey
	}
	mk := func(mod func(*scope.APIKey)) rec {
		key, k, err := scope.NewAPIKey(false)
		if err != nil {
			t.Fatal(err)
		}
		k.Identity = ident
		if mod != nil {
			mod(&k)
		}
		return rec{key, k}
	}
	good := mk(nil)
	revoked := mk(func(k *scope.APIKey) { k.RevokedAt = &past })
	expired := mk(func(k *scope.APIKey) { k.ExpiresAt = &past })
	graced := mk(func(k *scope.APIKey) { k.ExpiresAt = &future; k.ReplacedBy = "newer" })
	rotated := mk(func(k *scope.APIKey) { k.ExpiresAt = &past; k.ReplacedBy = "newer" })
	badIdent := mk(func(k *scope.APIKey) { k.Identity.User = "" })
	db := map[string]scope.APIKey{}
	for _, r := range []rec{good, revoked, expired, graced, rotated, badIdent} {
		db[r.k.ID] = r.k
	}
	failing := errors.New("database down")
	v := &scope.APIKeyVerifier{Now: func() time.Time { return now }, Lookup: func(ctx context.Context, id string) (scope.APIKey, error) {
		if id == "aaaaaaaaaaaa" {
			return scope.APIKey{}, failing
		}
		k, ok := db[id]
		if !ok {
			return scope.APIKey{}, fmt.Errorf("lookup: %w", scope.ErrUnknownAPIKey)
		}
		return k, nil
	}}
	forged := good.key[:len(good.key)-1] + map[bool]string{true: "b", false: "a"}[strings.HasSuffix(good.key, "a")]
	unknown := "smk_live_zzzzzzzzzzzz_" + strings.Repeat("a", 32)
	for _, tc := range []struct {
		name      string
		key       string
		wantErr   error
		wantOrg   bool // a *KeyFailure naming the org
		wantIdent bool
	}{
		{"good", good.key, nil, false, true},
		{"within grace", graced.key, nil, false, true},
		{"forged secret", forged, scope.ErrInvalidToken, true, false},
		{"revoked", revoked.key, scope.ErrInvalidToken, true, false},
		{"expired", expired.key, scope.ErrInvalidToken, true, false},
		{"rotated after grace", rotated.key, scope.ErrInvalidToken, true, false},
		{"identity invalid", badIdent.key, scope.ErrInvalidToken, true, false},
		{"unknown id", unknown, scope.ErrInvalidToken, false, false},
		{"malformed", "smk_live_x", scope.ErrInvalidToken, false, false},
		{"store failure", "smk_live_aaaaaaaaaaaa_" + strings.Repeat("a", 32), failing, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := v.Verify(t.Context(), tc.key)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify = %v, want nil", err)
				}
			} else if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify = %v, want %v", err, tc.wantErr)
			}
			if tc.name == "store failure" && errors.Is(err, scope.ErrInvalidToken) {
				t.Errorf("a store failure must not read as an invalid token: %v", err)
			}
			var kf *scope.KeyFailure
			if gotOrg := errors.As(err, &kf) && kf.Org == "acme"; gotOrg != tc.wantOrg {
				t.Errorf("KeyFailure naming acme = %v, want %v (err %v)", gotOrg, tc.wantOrg, err)
			}
			if tc.wantIdent {
				if diff := cmp.Diff(ident, got); diff != "" {
					t.Errorf("identity (-want +got):\n%s", diff)
				}
			}
		})
	}
}
