package app_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/internal/pgtest"
	"github.com/scopemem/scopemem/scope"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")

// newApp builds an App on a fresh SQLite file with the built-in embedder.
func newApp(t *testing.T, mod func(*app.Config)) *app.App {
	t.Helper()
	cfg := app.Config{DBPath: t.TempDir() + "/m.db", Embedder: "builtin", JanitorInterval: -1}
	if mod != nil {
		mod(&cfg)
	}
	a, err := app.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// httpServer serves a over httptest with HS256 tokens signed by testSecret.
func httpServer(t *testing.T, a *app.App) *httptest.Server {
	t.Helper()
	return httpServerWith(t, a, app.HTTPConfig{})
}

// httpServerWith is httpServer with hc, whose Verifier it sets.
func httpServerWith(t *testing.T, a *app.App, hc app.HTTPConfig) *httptest.Server {
	t.Helper()
	v, err := scope.NewJWTVerifier(t.Context(), scope.JWTConfig{Secret: testSecret, Issuer: "test-issuer", Audience: "scopemem-test"})
	if err != nil {
		t.Fatalf("NewJWTVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	hc.Verifier = v.Verify
	ts := httptest.NewServer(a.HTTPHandler(hc))
	t.Cleanup(ts.Close)
	return ts
}

// token mints a token for org/user with teams and permissions.
func token(t *testing.T, org, user string, teams []string, perms ...scope.Permission) string {
	t.Helper()
	ps := make([]string, len(perms))
	for i, p := range perms {
		ps[i] = string(p)
	}
	claims := map[string]any{
		"iss": "test-issuer", "aud": "scopemem-test", "sub": user, "org_id": org,
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(), "scope": strings.Join(ps, " "),
	}
	if teams != nil {
		claims["teams"] = teams
	}
	tok, err := scope.MintHS256(testSecret, claims)
	if err != nil {
		t.Fatalf("MintHS256: %v", err)
	}
	return tok
}

var allPerms = scope.AllPermissions[:4] // everything but admin

// connect starts an MCP client over streamable HTTP with the token.
func connect(t *testing.T, url, tok string, opts ...client.ClientOption) *client.Client {
	t.Helper()
	c, err := client.NewStreamableHttpClient(url+"/mcp", transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + tok}))
	if err != nil {
		t.Fatalf("NewStreamableHttpClient: %v", err)
	}
	for _, o := range opts {
		o(c)
	}
	initialize(t, c)
	return c
}

func initialize(t *testing.T, c *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("client start: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	req := mcp.InitializeRequest{}
	req.Params.ClientInfo = mcp.Implementation{Name: "scopemem-test", Version: "1"}
	if _, err := c.Initialize(ctx, req); err != nil {
		t.Fatalf("initialize: %v", err)
	}
}

// call calls a tool and returns its result; a protocol error fails the test.
func call(t *testing.T, c *client.Client, tool string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	req := mcp.CallToolRequest{}
	req.Params.Name = tool
	req.Params.Arguments = args
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatalf("CallTool(%s, %v): %v", tool, args, err)
	}
	return res
}

// ok calls a tool that must succeed and decodes its structured result.
func ok[T any](t *testing.T, c *client.Client, tool string, args map[string]any) T {
	t.Helper()
	res := call(t, c, tool, args)
	if res.IsError {
		t.Fatalf("%s(%v) failed: %s", tool, args, text(res))
	}
	var out T
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatalf("marshal structured content: %v", err)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: decode %s: %v", tool, b, err)
	}
	return out
}

// fails calls a tool that must return a tool error and returns its text.
func fails(t *testing.T, c *client.Client, tool string, args map[string]any) string {
	t.Helper()
	res := call(t, c, tool, args)
	if !res.IsError {
		t.Fatalf("%s(%v) succeeded, want a tool error; result %s", tool, args, text(res))
	}
	return text(res)
}

func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

type addOut struct {
	ID        string `json:"id"`
	Scope     string `json:"scope"`
	Duplicate bool   `json:"duplicate"`
}

type hit struct {
	ID      string  `json:"id"`
	Content string  `json:"content"`
	Scope   string  `json:"scope"`
	Score   float64 `json:"score"`
}

type searchOut struct {
	Results []hit `json:"results"`
}

type scopesOut struct {
	Scopes []struct {
		Scope    string `json:"scope"`
		Count    int    `json:"count"`
		Writable bool   `json:"writable"`
	} `json:"scopes"`
	Org  string `json:"org"`
	User string `json:"user"`
}

func ids(hs []hit) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.ID
	}
	return out
}

// okRes calls a tool that must succeed and returns the raw result.
func okRes(t *testing.T, c *client.Client, tool string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	res := call(t, c, tool, args)
	if res.IsError {
		t.Fatalf("%s(%v) failed: %s", tool, args, text(res))
	}
	return res
}

// decode decodes a tool result's structured content into out.
func decode(t *testing.T, res *mcp.CallToolResult, out any) {
	t.Helper()
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

// backends lists the stores the end-to-end tests run against: SQLite, and
// PostgreSQL migrated at start by the owner and served as the runtime role
// (skipped without SCOPEMEM_TEST_DATABASE_URL, a failure in CI).
var backends = []struct {
	name  string
	setup func(t *testing.T, cfg *app.Config)
}{
	{"sqlite", func(t *testing.T, cfg *app.Config) {}},
	{"postgres", func(t *testing.T, cfg *app.Config) {
		d := pgtest.NewDatabase(t)
		cfg.DatabaseURL, cfg.MigrateURL = d.RuntimeURL, d.OwnerURL
	}},
}

// forEachBackend runs f as a subtest per backend with an App on it.
func forEachBackend(t *testing.T, f func(t *testing.T, a *app.App)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			f(t, newApp(t, func(cfg *app.Config) { b.setup(t, cfg) }))
		})
	}
}
