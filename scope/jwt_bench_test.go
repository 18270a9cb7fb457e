package scope_test

import (
	"testing"
	"time"

	"github.com/scopemem/scopemem/scope"
)

// BenchmarkJWTVerifyHS256 measures verifying one HS256 token as every
// HTTP request does: the same token again and again, as a client reuses
// its token until it expires.
func BenchmarkJWTVerifyHS256(b *testing.B) {
	secret := []byte("0123456789abcdef0123456789abcdef-bench-secret")
	v, err := scope.NewJWTVerifier(b.Context(), scope.JWTConfig{Secret: secret, Issuer: "https://issuer.example.test/", Audience: "https://mem.example.test/mcp"})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	tok, err := scope.MintHS256(secret, map[string]any{
		"iss": "https://issuer.example.test/", "aud": "https://mem.example.test/mcp", "sub": "alice", "org_id": "acme",
		"teams": []string{"api", "web"}, "scope": "memory:read memory:write", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(b.Context(), tok); err != nil {
			b.Fatal(err)
		}
	}
}
