package scope_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/scopemem/scopemem/scope"
)

const (
	testIssuer   = "https://id.example.test/"
	testAudience = "https://memory.example.test/mcp"
)

// del marks a claim to remove from the base claims.
type del struct{}

// baseClaims returns a valid claim set changed by over; a del value removes
// a claim.
func baseClaims(over map[string]any) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"org_id": "acme",
		"sub":    "alice",
		"iss":    testIssuer,
		"aud":    testAudience,
		"exp":    now.Add(time.Hour).Unix(),
		"iat":    now.Unix(),
	}
	for k, v := range over {
		if _, ok := v.(del); ok {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// signer signs test tokens with one key.
type signer struct {
	name   string
	method jwt.SigningMethod
	key    any // private key, or []byte for HMAC
	kid    string
	use    jwkset.USE // "use" published in the JWKS; empty means "sig"
}

func (s signer) sign(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(s.method, claims)
	if s.kid != "" {
		tok.Header["kid"] = s.kid
	}
	str, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatalf("sign %s: %v", s.name, err)
	}
	return str
}

func (s signer) public() any {
	if cs, ok := s.key.(crypto.Signer); ok {
		return cs.Public()
	}
	return nil
}

func newRSASigner(t *testing.T, kid string) signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return signer{name: "RS256", method: jwt.SigningMethodRS256, key: k, kid: kid}
}

func newECSigner(t *testing.T, kid string) signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{name: "ES256", method: jwt.SigningMethodES256, key: k, kid: kid}
}

func newEdSigner(t *testing.T, kid string) signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{name: "EdDSA", method: jwt.SigningMethodEdDSA, key: k, kid: kid}
}

func randomSecret(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// jwksServer serves a JSON Web Key Set that a test can replace.
type jwksServer struct {
	*httptest.Server
	mu   sync.Mutex
	body []byte
	hits atomic.Int32
}

func newJWKSServer(t *testing.T, keys ...signer) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.setKeys(t, keys...)
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		body := s.body
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setKeys(t *testing.T, keys ...signer) {
	t.Helper()
	store := jwkset.NewMemoryStorage()
	for _, k := range keys {
		use := k.use
		if use == "" {
			use = jwkset.UseSig
		}
		jwk, err := jwkset.NewJWKFromKey(k.public(), jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: k.kid, USE: use},
		})
		if err != nil {
			t.Fatalf("JWK for %s: %v", k.kid, err)
		}
		if err := store.KeyWrite(t.Context(), jwk); err != nil {
			t.Fatal(err)
		}
	}
	body, err := store.JSONPublic(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.body = body
	s.mu.Unlock()
}

func newVerifier(t *testing.T, cfg scope.JWTConfig) *scope.JWTVerifier {
	t.Helper()
	v, err := scope.NewJWTVerifier(t.Context(), cfg)
	if err != nil {
		t.Fatalf("NewJWTVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// jwtCase is one token and what Verify must make of it.
type jwtCase struct {
	name  string
	token string
	want  scope.Identity // when cause and invalid are unset
	// invalid says Verify must fail with ErrInvalidToken; cause, when set,
	// must also match.
	invalid bool
	cause   error
}

func runJWTCases(t *testing.T, v *scope.JWTVerifier, cases []jwtCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := v.Verify(t.Context(), tc.token)
			if !tc.invalid {
				if err != nil {
					t.Fatalf("Verify() error = %v, want nil", err)
				}
				if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("Verify() identity mismatch (-want +got):\n%s", diff)
				}
				return
			}
			if !errors.Is(err, scope.ErrInvalidToken) {
				t.Fatalf("Verify() = %+v, %v; want error wrapping ErrInvalidToken", got, err)
			}
			t.Logf("Verify() error: %v", err)
			if tc.cause != nil && !errors.Is(err, tc.cause) {
				t.Errorf("Verify() error = %v, want it to wrap %v", err, tc.cause)
			}
			if tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Errorf("Verify() error text contains the raw token")
			}
			if parts := strings.Split(tc.token, "."); len(parts) == 3 && len(parts[2]) > 8 && strings.Contains(err.Error(), parts[2]) {
				t.Errorf("Verify() error text contains the token's signature")
			}
			if !cmp.Equal(got, scope.Identity{}, cmpopts.EquateEmpty()) {
				t.Errorf("Verify() identity = %+v on error, want zero", got)
			}
		})
	}
}

func tamperSignature(tok string) string {
	parts := strings.Split(tok, ".")
	sig := []byte(parts[2])
	i := len(sig) / 2
	if sig[i] == 'A' {
		sig[i] = 'B'
	} else {
		sig[i] = 'A'
	}
	parts[2] = string(sig)
	return strings.Join(parts, ".")
}

// tamperPayload rewrites the payload to claim another user, keeping the
// header and signature.
func tamperPayload(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	c["sub"] = "mallory"
	raw, err = json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(raw)
	return strings.Join(parts, ".")
}

func noneToken(t *testing.T, claims jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodNone, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// commonCases are the cases every signing algorithm must get right.
func commonCases(t *testing.T, s signer) []jwtCase {
	now := time.Now()
	alice := scope.Identity{Org: "acme", User: "alice"}
	sign := func(over map[string]any) string { return s.sign(t, baseClaims(over)) }
	valid := sign(nil)
	return []jwtCase{
		{name: "valid", token: valid, want: alice},
		{name: "all claims", token: sign(map[string]any{"teams": []any{"api", "web"}, "agent": "coder", "scope": "memory:read memory:write"}),
			want: scope.Identity{Org: "acme", User: "alice", Teams: []string{"api", "web"}, Agent: "coder", Permissions: []scope.Permission{scope.PermRead, scope.PermWrite}}},
		{name: "expired", token: sign(map[string]any{"exp": now.Add(-10 * time.Minute).Unix(), "iat": now.Add(-time.Hour).Unix()}), invalid: true, cause: jwt.ErrTokenExpired},
		{name: "expired within leeway", token: sign(map[string]any{"exp": now.Add(-10 * time.Second).Unix(), "iat": now.Add(-time.Hour).Unix()}), want: alice},
		{name: "not yet valid", token: sign(map[string]any{"nbf": now.Add(10 * time.Minute).Unix()}), invalid: true, cause: jwt.ErrTokenNotValidYet},
		{name: "nbf within leeway", token: sign(map[string]any{"nbf": now.Add(10 * time.Second).Unix()}), want: alice},
		{name: "issued in the future", token: sign(map[string]any{"iat": now.Add(10 * time.Minute).Unix()}), invalid: true, cause: jwt.ErrTokenUsedBeforeIssued},
		{name: "missing exp", token: sign(map[string]any{"exp": del{}}), invalid: true, cause: jwt.ErrTokenRequiredClaimMissing},
		{name: "exp of wrong type", token: sign(map[string]any{"exp": "tomorrow"}), invalid: true, cause: jwt.ErrInvalidType},
		{name: "wrong issuer", token: sign(map[string]any{"iss": "https://evil.example.test/"}), invalid: true, cause: jwt.ErrTokenInvalidIssuer},
		{name: "missing issuer", token: sign(map[string]any{"iss": del{}}), invalid: true, cause: jwt.ErrTokenRequiredClaimMissing},
		{name: "wrong audience", token: sign(map[string]any{"aud": "https://other.example.test/mcp"}), invalid: true, cause: jwt.ErrTokenInvalidAudience},
		{name: "missing audience", token: sign(map[string]any{"aud": del{}}), invalid: true, cause: jwt.ErrTokenRequiredClaimMissing},
		{name: "audience list holding ours", token: sign(map[string]any{"aud": []any{"https://other.example.test/", testAudience}}), want: alice},
		{name: "alg none", token: noneToken(t, baseClaims(nil), s.kid), invalid: true, cause: jwt.ErrTokenSignatureInvalid},
		{name: "tampered signature", token: tamperSignature(valid), invalid: true, cause: jwt.ErrTokenSignatureInvalid},
		{name: "tampered payload", token: tamperPayload(t, valid), invalid: true, cause: jwt.ErrTokenSignatureInvalid},
		{name: "signature stripped", token: strings.Join(strings.Split(valid, ".")[:2], ".") + ".", invalid: true, cause: jwt.ErrTokenSignatureInvalid},
		{name: "missing org claim", token: sign(map[string]any{"org_id": del{}}), invalid: true},
		{name: "empty org claim", token: sign(map[string]any{"org_id": ""}), invalid: true},
		{name: "org claim not a string", token: sign(map[string]any{"org_id": 42}), invalid: true},
		{name: "missing sub", token: sign(map[string]any{"sub": del{}}), invalid: true},
		{name: "slash in org", token: sign(map[string]any{"org_id": "acme/other"}), invalid: true},
		{name: "colon in org", token: sign(map[string]any{"org_id": "acme:x"}), invalid: true},
		{name: "slash in user", token: sign(map[string]any{"sub": "alice/../bob"}), invalid: true},
		{name: "colon in user", token: sign(map[string]any{"sub": "user:bob"}), invalid: true},
		{name: "control character in user", token: sign(map[string]any{"sub": "ali\nce"}), invalid: true},
		{name: "slash in agent", token: sign(map[string]any{"agent": "a/b"}), invalid: true},
		{name: "slash in team", token: sign(map[string]any{"teams": []any{"api", "x/y"}}), invalid: true},
		{name: "colon in team string", token: sign(map[string]any{"teams": "api team:x"}), invalid: true},
		{name: "teams not strings", token: sign(map[string]any{"teams": []any{"api", 7}}), invalid: true},
		{name: "teams an object", token: sign(map[string]any{"teams": map[string]any{"api": true}}), invalid: true},
		{name: "teams as array", token: sign(map[string]any{"teams": []any{"api", "web", "api", " "}}),
			want: scope.Identity{Org: "acme", User: "alice", Teams: []string{"api", "web"}}},
		{name: "teams as string", token: sign(map[string]any{"teams": "api, web ops"}),
			want: scope.Identity{Org: "acme", User: "alice", Teams: []string{"api", "web", "ops"}}},
		{name: "permissions via scope", token: sign(map[string]any{"scope": "openid memory:read memory:share profile memory:read"}),
			want: scope.Identity{Org: "acme", User: "alice", Permissions: []scope.Permission{scope.PermRead, scope.PermShare}}},
		{name: "permissions via scp array", token: sign(map[string]any{"scp": []any{"memory:purge", "email", "memory:admin"}}),
			want: scope.Identity{Org: "acme", User: "alice", Permissions: []scope.Permission{scope.PermPurge, scope.PermAdmin}}},
		{name: "permissions via scp string", token: sign(map[string]any{"scp": "memory:write"}),
			want: scope.Identity{Org: "acme", User: "alice", Permissions: []scope.Permission{scope.PermWrite}}},
		{name: "scope wins over scp", token: sign(map[string]any{"scope": "memory:read", "scp": []any{"memory:admin"}}),
			want: scope.Identity{Org: "acme", User: "alice", Permissions: []scope.Permission{scope.PermRead}}},
		{name: "only unknown permissions", token: sign(map[string]any{"scope": "openid admin"}), want: alice},
		{name: "permissions not strings", token: sign(map[string]any{"scp": []any{true}}), invalid: true},
		{name: "oversized token", token: sign(map[string]any{"pad": strings.Repeat("x", scope.DefaultMaxTokenBytes)}), invalid: true},
		{name: "empty token", token: "", invalid: true},
		{name: "not a JWT", token: "not-a-jwt", invalid: true, cause: jwt.ErrTokenMalformed},
		{name: "bad base64", token: "***.e30.e30", invalid: true, cause: jwt.ErrTokenMalformed},
		{name: "no alg", token: "e30." + strings.SplitN(valid, ".", 2)[1], invalid: true, cause: jwt.ErrTokenUnverifiable},
		{name: "unknown alg", token: base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"XS256"}`)) + "." + strings.SplitN(valid, ".", 2)[1], invalid: true},
	}
}

func TestJWTVerifierHS256(t *testing.T) {
	secret := randomSecret(t, 32)
	v := newVerifier(t, scope.JWTConfig{Secret: secret, Issuer: testIssuer, Audience: testAudience})
	s := signer{name: "HS256", method: jwt.SigningMethodHS256, key: secret}
	rsaSigner := newRSASigner(t, "rsa-1")
	cases := commonCases(t, s)
	cases = append(cases,
		jwtCase{name: "other secret", token: signer{name: "HS256", method: jwt.SigningMethodHS256, key: randomSecret(t, 32)}.sign(t, baseClaims(nil)),
			invalid: true, cause: jwt.ErrTokenSignatureInvalid},
		jwtCase{name: "HS512 not in allowlist", token: signer{name: "HS512", method: jwt.SigningMethodHS512, key: secret}.sign(t, baseClaims(nil)),
			invalid: true, cause: jwt.ErrTokenSignatureInvalid},
		jwtCase{name: "RS256 with no JWKS", token: rsaSigner.sign(t, baseClaims(nil)), invalid: true, cause: jwt.ErrTokenSignatureInvalid},
	)
	runJWTCases(t, v, cases)
	// Verified tokens are remembered: a second pass answers from the
	// cache, and must answer exactly the same.
	t.Run("again", func(t *testing.T) { runJWTCases(t, v, cases) })
}

// TestJWTVerifierTokenCache checks that a remembered token stops being
// accepted when it expires, as an unremembered one would, and that the
// cache can be turned off.
func TestJWTVerifierTokenCache(t *testing.T) {
	secret := randomSecret(t, 32)
	s := signer{name: "HS256", method: jwt.SigningMethodHS256, key: secret}
	start := time.Now().Truncate(time.Second)
	exp := start.Add(time.Minute)
	tok := s.sign(t, baseClaims(map[string]any{"exp": exp.Unix(), "iat": start.Unix(), "teams": []any{"api"}}))
	alice := scope.Identity{Org: "acme", User: "alice", Teams: []string{"api"}}
	for _, tc := range []struct {
		name      string
		cacheSize int
		at        time.Time
		wantErr   error // nil: accepted as alice
	}{
		{"before exp", 0, start.Add(30 * time.Second), nil},
		{"after exp, within leeway", 0, exp.Add(10 * time.Second), nil},
		{"after exp and leeway", 0, exp.Add(scope.DefaultLeeway + time.Second), jwt.ErrTokenExpired},
		{"cache off, after exp and leeway", -1, exp.Add(scope.DefaultLeeway + time.Second), jwt.ErrTokenExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, scope.JWTConfig{Secret: secret, Issuer: testIssuer, Audience: testAudience, TokenCacheSize: tc.cacheSize})
			now := start
			scope.SetClock(v, func() time.Time { return now })
			for i := range 2 { // verified, then (with the cache) remembered
				got, err := v.Verify(t.Context(), tok)
				if err != nil || !cmp.Equal(got, alice) {
					t.Fatalf("Verify() #%d at issue = %+v, %v; want %+v", i+1, got, err, alice)
				}
			}
			now = tc.at
			for i := range 2 {
				got, err := v.Verify(t.Context(), tok)
				switch {
				case tc.wantErr == nil && (err != nil || !cmp.Equal(got, alice)):
					t.Errorf("Verify() #%d at %s = %+v, %v; want %+v", i+1, tc.at.Sub(start), got, err, alice)
				case tc.wantErr != nil && (!errors.Is(err, scope.ErrInvalidToken) || !errors.Is(err, tc.wantErr)):
					t.Errorf("Verify() #%d at %s = %+v, %v; want an error wrapping ErrInvalidToken and %v", i+1, tc.at.Sub(start), got, err, tc.wantErr)
				}
			}
		})
	}
}

func TestJWTVerifierJWKS(t *testing.T) {
	rs, es, ed := newRSASigner(t, "rsa-1"), newECSigner(t, "ec-1"), newEdSigner(t, "ed-1")
	enc := newECSigner(t, "enc-1")
	enc.use = jwkset.UseEnc
	srv := newJWKSServer(t, rs, es, ed, enc)
	v := newVerifier(t, scope.JWTConfig{JWKSURL: srv.URL, HTTPClient: srv.Client(), Issuer: testIssuer, Audience: testAudience})
	for _, s := range []signer{rs, es, ed} {
		t.Run(s.name, func(t *testing.T) { runJWTCases(t, v, commonCases(t, s)) })
	}

	pub, err := x509.MarshalPKIXPublicKey(rs.public())
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	stranger := newRSASigner(t, "rsa-1") // same kid, key not in the set
	noKid := rs
	noKid.kid = ""
	esAsRSA := es
	esAsRSA.kid = "rsa-1"
	alice := scope.Identity{Org: "acme", User: "alice"}
	t.Run("specific", func(t *testing.T) {
		runJWTCases(t, v, []jwtCase{
			{name: "HS256 signed with the RSA public key PEM", token: signer{name: "HS256", method: jwt.SigningMethodHS256, key: pemKey, kid: "rsa-1"}.sign(t, baseClaims(nil)),
				invalid: true, cause: jwt.ErrTokenSignatureInvalid},
			{name: "HS256 signed with the RSA modulus", token: signer{name: "HS256", method: jwt.SigningMethodHS256, key: rs.key.(*rsa.PrivateKey).N.Bytes(), kid: "rsa-1"}.sign(t, baseClaims(nil)),
				invalid: true, cause: jwt.ErrTokenSignatureInvalid},
			{name: "known kid, foreign key", token: stranger.sign(t, baseClaims(nil)), invalid: true, cause: jwt.ErrTokenSignatureInvalid},
			{name: "ES256 token naming an RSA kid", token: esAsRSA.sign(t, baseClaims(nil)), invalid: true, cause: jwt.ErrTokenSignatureInvalid},
			{name: "no kid", token: noKid.sign(t, baseClaims(nil)), want: alice},
			{name: "encryption key", token: enc.sign(t, baseClaims(nil)), invalid: true, cause: jwt.ErrTokenUnverifiable},
			{name: "encryption key, no kid", token: signer{name: "ES256", method: jwt.SigningMethodES256, key: enc.key}.sign(t, baseClaims(nil)),
				invalid: true, cause: jwt.ErrTokenSignatureInvalid},
			{name: "PS256 not in default allowlist", token: signer{name: "PS256", method: jwt.SigningMethodPS256, key: rs.key, kid: "rsa-1"}.sign(t, baseClaims(nil)),
				invalid: true, cause: jwt.ErrTokenSignatureInvalid},
		})
	})
	// The key set is fetched once and then served from the cache.
	if got := srv.hits.Load(); got != 1 {
		t.Errorf("JWKS fetched %d times for known keys, want 1", got)
	}
}

// TestJWTVerifierBoth checks that with a secret and a JWKS each algorithm
// family uses only its own key.
func TestJWTVerifierBoth(t *testing.T) {
	rs := newRSASigner(t, "rsa-1")
	srv := newJWKSServer(t, rs)
	secret := randomSecret(t, 48)
	v := newVerifier(t, scope.JWTConfig{Secret: secret, JWKSURL: srv.URL, HTTPClient: srv.Client()})
	pub, err := x509.MarshalPKIXPublicKey(rs.public())
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	alice := scope.Identity{Org: "acme", User: "alice"}
	runJWTCases(t, v, []jwtCase{
		{name: "HS256", token: signer{name: "HS256", method: jwt.SigningMethodHS256, key: secret}.sign(t, baseClaims(nil)), want: alice},
		{name: "RS256", token: rs.sign(t, baseClaims(nil)), want: alice},
		{name: "HS256 signed with the RSA public key PEM", token: signer{name: "HS256", method: jwt.SigningMethodHS256, key: pemKey, kid: "rsa-1"}.sign(t, baseClaims(nil)),
			invalid: true, cause: jwt.ErrTokenSignatureInvalid},
		{name: "alg none", token: noneToken(t, baseClaims(nil), "rsa-1"), invalid: true, cause: jwt.ErrTokenSignatureInvalid},
	})
}

func TestJWTVerifierUnknownKID(t *testing.T) {
	rs := newRSASigner(t, "rsa-1")
	srv := newJWKSServer(t, rs)
	v := newVerifier(t, scope.JWTConfig{JWKSURL: srv.URL, HTTPClient: srv.Client()})
	// The first unknown kid refetches the set; the second comes inside the
	// rate limit and must be rejected at once rather than wait for it.
	for i, kid := range []string{"nope-1", "nope-2", "nope-3"} {
		tok := newRSASigner(t, kid).sign(t, baseClaims(nil))
		start := time.Now()
		_, err := v.Verify(t.Context(), tok)
		elapsed := time.Since(start)
		t.Logf("Verify(kid %q) = %v after %v", kid, err, elapsed)
		if !errors.Is(err, scope.ErrInvalidToken) {
			t.Errorf("Verify(kid %q) error = %v, want ErrInvalidToken", kid, err)
		}
		// The first is looked up in a fresh set; the others are refused
		// without one.
		if i == 0 && !errors.Is(err, jwkset.ErrKeyNotFound) {
			t.Errorf("Verify(kid %q) error = %v, want jwkset.ErrKeyNotFound", kid, err)
		}
		if elapsed > 2*time.Second {
			t.Errorf("Verify(kid %q) took %v, want under 2s", kid, elapsed)
		}
		if i == 0 {
			if got := srv.hits.Load(); got != 2 {
				t.Errorf("JWKS fetched %d times after the first unknown kid, want 2 (start + refresh)", got)
			}
		}
	}
	if got := srv.hits.Load(); got != 2 {
		t.Errorf("JWKS fetched %d times after three unknown kids, want 2: refreshes must be rate limited", got)
	}
	// A known key still works.
	if _, err := v.Verify(t.Context(), rs.sign(t, baseClaims(nil))); err != nil {
		t.Errorf("Verify(known kid) after unknown kids: %v", err)
	}
}

func TestJWTVerifierUnknownKIDCancelled(t *testing.T) {
	rs := newRSASigner(t, "rsa-1")
	srv := newJWKSServer(t, rs)
	v := newVerifier(t, scope.JWTConfig{JWKSURL: srv.URL, HTTPClient: srv.Client(), JWKSWaitMax: time.Minute})
	// Use the one immediate refresh, so the next unknown kid has to wait.
	if _, err := v.Verify(t.Context(), newRSASigner(t, "nope-1").sign(t, baseClaims(nil))); !errors.Is(err, scope.ErrInvalidToken) {
		t.Fatalf("Verify(unknown kid) = %v, want ErrInvalidToken", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := v.Verify(ctx, newRSASigner(t, "nope-2").sign(t, baseClaims(nil)))
	if !errors.Is(err, scope.ErrInvalidToken) {
		t.Errorf("Verify(unknown kid, cancelled ctx) error = %v, want ErrInvalidToken", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Verify with a cancelled context took %v, want it to end with the context", elapsed)
	}
}

func TestJWTVerifierKeyRotation(t *testing.T) {
	oldKey, newKey := newRSASigner(t, "2026-01"), newEdSigner(t, "2026-02")
	srv := newJWKSServer(t, oldKey)
	v := newVerifier(t, scope.JWTConfig{JWKSURL: srv.URL, HTTPClient: srv.Client()})
	alice := scope.Identity{Org: "acme", User: "alice"}
	verify := func(s signer) error {
		t.Helper()
		got, err := v.Verify(t.Context(), s.sign(t, baseClaims(nil)))
		if err == nil {
			if diff := cmp.Diff(alice, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Verify(kid %s) identity mismatch (-want +got):\n%s", s.kid, diff)
			}
		}
		return err
	}
	if err := verify(oldKey); err != nil {
		t.Fatalf("Verify(old key) before rotation: %v", err)
	}
	// The identity provider publishes a new key and retires the old one.
	srv.setKeys(t, newKey)
	start := time.Now()
	if err := verify(newKey); err != nil {
		t.Errorf("Verify(new key) after rotation: %v, want the new kid fetched", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Verify(new key) took %v, want under 2s", elapsed)
	}
	// That fetch replaced the cached set, so the retired key is refused.
	if err := verify(oldKey); !errors.Is(err, scope.ErrInvalidToken) {
		t.Errorf("Verify(retired key) = %v, want ErrInvalidToken", err)
	}
}

// TestJWTVerifierBackgroundRefresh checks that the periodic refresh picks up
// a new key even when the unknown-kid refresh is rate limited, and that
// Close stops it.
func TestJWTVerifierBackgroundRefresh(t *testing.T) {
	oldKey, newKey := newECSigner(t, "old"), newECSigner(t, "new")
	srv := newJWKSServer(t, oldKey)
	v := newVerifier(t, scope.JWTConfig{JWKSURL: srv.URL, HTTPClient: srv.Client(), JWKSRefresh: 50 * time.Millisecond, JWKSUnknownKIDWait: time.Hour})
	// Spend the one immediate unknown-kid refresh.
	if _, err := v.Verify(t.Context(), newKey.sign(t, baseClaims(nil))); !errors.Is(err, scope.ErrInvalidToken) {
		t.Fatalf("Verify(unpublished key) = %v, want ErrInvalidToken", err)
	}
	srv.setKeys(t, newKey)
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err = v.Verify(t.Context(), newKey.sign(t, baseClaims(nil))); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("Verify(new key) never succeeded through the background refresh: %v", err)
	}
	v.Close()
	time.Sleep(100 * time.Millisecond) // let a fetch already under way finish
	hits := srv.hits.Load()
	time.Sleep(300 * time.Millisecond)
	if got := srv.hits.Load(); got != hits {
		t.Errorf("JWKS fetched %d more times after Close, want 0", got-hits)
	}
	// Cached keys keep working after Close.
	if _, err := v.Verify(t.Context(), newKey.sign(t, baseClaims(nil))); err != nil {
		t.Errorf("Verify after Close: %v", err)
	}
}

func TestJWTVerifierCustomClaims(t *testing.T) {
	secret := randomSecret(t, 32)
	v := newVerifier(t, scope.JWTConfig{
		Secret: secret,
		Claims: scope.ClaimNames{Org: "tenant", User: "email", Teams: "groups", Agent: "azp", Permissions: "perms"},
	})
	s := signer{name: "HS256", method: jwt.SigningMethodHS256, key: secret}
	exp := time.Now().Add(time.Hour).Unix()
	runJWTCases(t, v, []jwtCase{
		{name: "custom names", token: s.sign(t, jwt.MapClaims{"tenant": "globex", "email": "bob@globex.test", "groups": []any{"ops"}, "azp": "cli", "perms": []any{"memory:read"}, "exp": exp}),
			want: scope.Identity{Org: "globex", User: "bob@globex.test", Teams: []string{"ops"}, Agent: "cli", Permissions: []scope.Permission{scope.PermRead}}},
		{name: "scp fallback", token: s.sign(t, jwt.MapClaims{"tenant": "globex", "email": "bob", "scp": "memory:write", "exp": exp}),
			want: scope.Identity{Org: "globex", User: "bob", Permissions: []scope.Permission{scope.PermWrite}}},
		{name: "default names ignored", token: s.sign(t, jwt.MapClaims{"tenant": "globex", "email": "bob", "org_id": "acme", "teams": []any{"api"}, "agent": "x", "scope": "memory:admin", "exp": exp}),
			want: scope.Identity{Org: "globex", User: "bob"}},
		{name: "missing custom org", token: s.sign(t, jwt.MapClaims{"org_id": "acme", "email": "bob", "exp": exp}), invalid: true},
		{name: "missing custom user", token: s.sign(t, jwt.MapClaims{"tenant": "globex", "sub": "bob", "exp": exp}), invalid: true},
		{name: "no issuer or audience required", token: s.sign(t, jwt.MapClaims{"tenant": "globex", "email": "bob", "iss": "anyone", "aud": "anything", "exp": exp}),
			want: scope.Identity{Org: "globex", User: "bob"}},
	})
}

func TestJWTVerifierDefaultPermissions(t *testing.T) {
	secret := randomSecret(t, 32)
	v := newVerifier(t, scope.JWTConfig{Secret: secret, DefaultPermissions: []scope.Permission{scope.PermRead}})
	s := signer{name: "HS256", method: jwt.SigningMethodHS256, key: secret}
	runJWTCases(t, v, []jwtCase{
		{name: "no permission claim", token: s.sign(t, baseClaims(nil)),
			want: scope.Identity{Org: "acme", User: "alice", Permissions: []scope.Permission{scope.PermRead}}},
		{name: "empty scope claim", token: s.sign(t, baseClaims(map[string]any{"scope": ""})),
			want: scope.Identity{Org: "acme", User: "alice"}},
		{name: "explicit permissions", token: s.sign(t, baseClaims(map[string]any{"scope": "memory:write"})),
			want: scope.Identity{Org: "acme", User: "alice", Permissions: []scope.Permission{scope.PermWrite}}},
	})
}

func TestJWTVerifierMaxTokenBytes(t *testing.T) {
	secret := randomSecret(t, 32)
	v := newVerifier(t, scope.JWTConfig{Secret: secret, MaxTokenBytes: 300})
	s := signer{name: "HS256", method: jwt.SigningMethodHS256, key: secret}
	small := s.sign(t, baseClaims(nil))
	big := s.sign(t, baseClaims(map[string]any{"pad": strings.Repeat("x", 300-len(small)+1)}))
	runJWTCases(t, v, []jwtCase{
		{name: "under the limit", token: small, want: scope.Identity{Org: "acme", User: "alice"}},
		{name: "over the limit", token: big, invalid: true},
	})
}

func TestNewJWTVerifierConfig(t *testing.T) {
	srv := newJWKSServer(t, newRSASigner(t, "k"))
	secret := randomSecret(t, 32)
	tests := []struct {
		name string
		cfg  scope.JWTConfig
		ok   bool
	}{
		{name: "secret", cfg: scope.JWTConfig{Secret: secret}, ok: true},
		{name: "jwks", cfg: scope.JWTConfig{JWKSURL: srv.URL, HTTPClient: srv.Client()}, ok: true},
		{name: "nothing", cfg: scope.JWTConfig{}},
		{name: "short secret", cfg: scope.JWTConfig{Secret: secret[:31]}},
		{name: "empty secret", cfg: scope.JWTConfig{Secret: []byte{}}},
		{name: "HS512 with 32-byte secret", cfg: scope.JWTConfig{Secret: secret, Algorithms: []string{"HS512"}}},
		{name: "HS512 with 64-byte secret", cfg: scope.JWTConfig{Secret: randomSecret(t, 64), Algorithms: []string{"HS512"}}, ok: true},
		{name: "none", cfg: scope.JWTConfig{Secret: secret, Algorithms: []string{"HS256", "none"}}},
		{name: "None", cfg: scope.JWTConfig{Secret: secret, Algorithms: []string{"None"}}},
		{name: "unknown algorithm", cfg: scope.JWTConfig{Secret: secret, Algorithms: []string{"HS1"}}},
		{name: "RS256 without JWKS", cfg: scope.JWTConfig{Secret: secret, Algorithms: []string{"RS256"}}},
		{name: "HS256 without secret", cfg: scope.JWTConfig{JWKSURL: srv.URL, Algorithms: []string{"HS256", "RS256"}}},
		{name: "JWKS URL not http", cfg: scope.JWTConfig{JWKSURL: "file:///etc/jwks.json"}},
		{name: "JWKS URL relative", cfg: scope.JWTConfig{JWKSURL: "/jwks.json"}},
		{name: "negative leeway", cfg: scope.JWTConfig{Secret: secret, Leeway: -time.Second}},
		{name: "unknown default permission", cfg: scope.JWTConfig{Secret: secret, DefaultPermissions: []scope.Permission{"memory:everything"}}},
		// An unreachable JWKS is not fatal: the set is fetched again later.
		{name: "unreachable JWKS", cfg: scope.JWTConfig{JWKSURL: "http://127.0.0.1:1/jwks.json"}, ok: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := scope.NewJWTVerifier(t.Context(), tc.cfg)
			if tc.ok {
				if err != nil {
					t.Fatalf("NewJWTVerifier() error = %v, want nil", err)
				}
				v.Close()
				v.Close() // Close twice is fine.
				return
			}
			if err == nil {
				v.Close()
				t.Fatalf("NewJWTVerifier() error = nil, want a config error")
			}
		})
	}
}

func TestMintHS256(t *testing.T) {
	secret := randomSecret(t, 32)
	tok, err := scope.MintHS256(secret, map[string]any{"org_id": "acme", "sub": "alice", "exp": time.Now().Add(time.Minute).Unix(), "scope": "memory:read"})
	if err != nil {
		t.Fatalf("MintHS256: %v", err)
	}
	v := newVerifier(t, scope.JWTConfig{Secret: secret})
	got, err := v.Verify(t.Context(), tok)
	if err != nil {
		t.Fatalf("Verify(minted) error = %v", err)
	}
	want := scope.Identity{Org: "acme", User: "alice", Permissions: []scope.Permission{scope.PermRead}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Verify(minted) mismatch (-want +got):\n%s", diff)
	}
	if _, err := scope.MintHS256(secret[:16], map[string]any{"sub": "x"}); err == nil {
		t.Errorf("MintHS256(16-byte secret) error = nil, want error")
	}
}

func TestLoadJWTSecretFile(t *testing.T) {
	dir := t.TempDir()
	secret := strings.Repeat("s", 40)
	tests := []struct {
		name    string
		content string
		want    string // empty: want an error
	}{
		{name: "plain", content: secret, want: secret},
		{name: "trailing newline", content: secret + "\n", want: secret},
		{name: "trailing CRLF", content: secret + "\r\n", want: secret},
		{name: "too short", content: "short\n"},
		{name: "short once the newline is gone", content: strings.Repeat("s", 31) + "\n"},
		{name: "empty", content: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := scope.LoadJWTSecretFile(path)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("LoadJWTSecretFile() = %q, want error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadJWTSecretFile() error = %v", err)
			}
			if string(got) != tc.want {
				t.Errorf("LoadJWTSecretFile() = %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := scope.LoadJWTSecretFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadJWTSecretFile(missing) error = %v, want os.ErrNotExist", err)
	}
}
