package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/internal/pgtest"
	"github.com/scopemem/scopemem/scope"
)

// BenchmarkHTTPCall measures the server side of one MCP tool call over
// streamable HTTP: the handler chain (request id, Host and Origin checks,
// JWT verification, rate limits, body limit), mcp-go's stateless
// transport, the tool and the store, and the JSON answer. Requests go
// straight to the handler (no sockets, no client), so ns/op and allocs/op
// are the server's own. The identity's scopes hold a few memories, so
// the store's share is small; the PostgreSQL cases (skipped without
// SCOPEMEM_TEST_DATABASE_URL) include the database round trip.
//
//	scripts/testdb.sh run -- go test -run '^$' -bench HTTPCall -benchmem ./internal/app/
func BenchmarkHTTPCall(b *testing.B) {
	for _, be := range []struct {
		name  string
		setup func(b *testing.B, cfg *app.Config)
	}{
		{"sqlite", func(b *testing.B, cfg *app.Config) { cfg.DBPath = b.TempDir() + "/m.db" }},
		{"postgres", func(b *testing.B, cfg *app.Config) {
			d := pgtest.NewDatabase(b)
			cfg.DatabaseURL, cfg.MigrateURL = d.RuntimeURL, d.OwnerURL
		}},
	} {
		b.Run(be.name, func(b *testing.B) {
			cfg := app.Config{Embedder: "fake", FakeDims: 768, JanitorInterval: -1}
			be.setup(b, &cfg)
			a, err := app.New(b.Context(), cfg)
			if err != nil {
				b.Fatalf("app.New: %v", err)
			}
			b.Cleanup(func() { a.Close() })
			v, err := scope.NewJWTVerifier(b.Context(), scope.JWTConfig{Secret: testSecret, Issuer: "test-issuer", Audience: "scopemem-test"})
			if err != nil {
				b.Fatalf("NewJWTVerifier: %v", err)
			}
			b.Cleanup(v.Close)
			h := a.InstrumentHTTP(a.HTTPHandler(app.HTTPConfig{Verifier: v.Verify}))
			tok := benchToken(b)
			for i := range 20 {
				benchPost(b, h, tok, mcpCall("add_memory", map[string]any{"content": fmt.Sprintf("benchmark fact number %d about the deployment", i)}))
			}
			same := func(body string) func(int) string { return func(int) string { return body } }
			for _, tc := range []struct {
				name string
				body func(i int) string
			}{
				{"search_memory", same(mcpCall("search_memory", map[string]any{"query": "deployment fact", "limit": 10}))},
				{"list_scopes", same(mcpCall("list_scopes", nil))},
				{"tools_list", same(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`)},
				// Each add stores a new memory (the scope grows by b.N).
				{"add_memory", func(i int) string {
					return mcpCall("add_memory", map[string]any{"content": fmt.Sprintf("added fact %d: the rollout of service %d went fine", i, i*7919)})
				}},
			} {
				b.Run(tc.name, func(b *testing.B) {
					b.ReportAllocs()
					i := 0
					for b.Loop() {
						benchPost(b, h, tok, tc.body(i))
						i++
					}
				})
			}
		})
	}
}

func benchToken(b *testing.B) string {
	b.Helper()
	tok, err := scope.MintHS256(testSecret, map[string]any{
		"iss": "test-issuer", "aud": "scopemem-test", "sub": "alice", "org_id": "acme", "teams": []string{"api"},
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(), "scope": "memory:read memory:write",
	})
	if err != nil {
		b.Fatalf("MintHS256: %v", err)
	}
	return tok
}

// benchPost sends one JSON-RPC message to h as a client of protocol
// 2025-06-18 without a session would, and fails on anything but 200.
func benchPost(b *testing.B, h http.Handler, tok, body string) {
	req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "http://127.0.0.1/mcp", strings.NewReader(body))
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), `"isError":true`) {
		b.Fatalf("POST %s: status %d, body %s", body, rec.Code, rec.Body.String())
	}
}
