package app_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/internal/pgtest"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/postgres"
)

// canary is content only acme's alice may read; no response to an attack
// may contain it.
const canary = "the launch code is 7-alpha-zulu"

// recorder is an HTTP server that counts requests and remembers their
// headers and URLs: the JWKS, and the attacker's server that injected
// jku/x5u headers point at.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string // "Authorization: ..." and URLs of every request
	hits atomic.Int32
}

func newRecorder(t *testing.T, body func() []byte) *recorder {
	t.Helper()
	rec := &recorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.hits.Add(1)
		rec.mu.Lock()
		rec.seen = append(rec.seen, r.URL.String(), "Authorization: "+r.Header.Get("Authorization"))
		rec.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(body())
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (r *recorder) saw(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.seen {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

// jwksJSON publishes an RSA public key as a JWK Set.
func jwksJSON(kid string, pub *rsa.PublicKey) []byte {
	b, _ := json.Marshal(map[string]any{"keys": []map[string]any{{
		"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}}})
	return b
}

// fortress is a server under attack: HS256 and RS256 (JWKS) tokens for
// audience publicURL, API keys, an Origin allowlist and a small body
// limit, on a real listener, with seeded data in orgs acme and globex.
type fortress struct {
	a         *app.App
	url       string // http://127.0.0.1:port
	publicURL string // url + "/mcp": the token audience
	rsaKey    *rsa.PrivateKey
	jwks      *recorder
	evil      *recorder
	evilKey   *rsa.PrivateKey
	admin     store.KeyAdmin
	keys      map[string]string // name -> API key
}

type backendSetup func(t *testing.T, cfg *app.Config) func(t *testing.T, a *app.App) store.KeyAdmin

// keyBackends are the stores the attack table runs on, each with its key
// administration: the SQLite store itself, or postgres.Admin as the owner.
var keyBackends = []struct {
	name  string
	setup backendSetup
}{
	{"sqlite", func(t *testing.T, cfg *app.Config) func(*testing.T, *app.App) store.KeyAdmin {
		return func(t *testing.T, a *app.App) store.KeyAdmin { return a.BaseStore().(store.KeyAdmin) }
	}},
	{"postgres", func(t *testing.T, cfg *app.Config) func(*testing.T, *app.App) store.KeyAdmin {
		d := pgtest.NewDatabase(t)
		cfg.DatabaseURL, cfg.MigrateURL = d.RuntimeURL, d.OwnerURL
		return func(t *testing.T, a *app.App) store.KeyAdmin {
			ad, err := postgres.OpenAdmin(t.Context(), d.OwnerURL, nil)
			if err != nil {
				t.Fatalf("OpenAdmin: %v", err)
			}
			t.Cleanup(func() { ad.Close() })
			return ad
		}
	}},
}

func forEachKeyBackend(t *testing.T, f func(t *testing.T, a *app.App, admin store.KeyAdmin)) {
	for _, b := range keyBackends {
		t.Run(b.name, func(t *testing.T) {
			var cfg app.Config
			mkAdmin := b.setup(t, &cfg)
			a := newApp(t, func(c *app.Config) { c.DatabaseURL, c.MigrateURL = cfg.DatabaseURL, cfg.MigrateURL })
			f(t, a, mkAdmin(t, a))
		})
	}
}

func newFortress(t *testing.T, a *app.App, admin store.KeyAdmin, mod func(*app.HTTPConfig)) *fortress {
	t.Helper()
	f := &fortress{a: a, admin: admin, keys: map[string]string{}}
	var err error
	if f.rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if f.evilKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	f.jwks = newRecorder(t, func() []byte { return jwksJSON("k1", &f.rsaKey.PublicKey) })
	f.evil = newRecorder(t, func() []byte { return jwksJSON("k1", &f.evilKey.PublicKey) })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.url = "http://" + ln.Addr().String()
	f.publicURL = f.url + "/mcp"
	v, err := scope.NewJWTVerifier(t.Context(), scope.JWTConfig{
		Secret: testSecret, JWKSURL: f.jwks.URL, Algorithms: []string{"HS256", "RS256"},
		Issuer: "test-issuer", Audience: f.publicURL,
	})
	if err != nil {
		t.Fatalf("NewJWTVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	hc := app.HTTPConfig{
		Verifier: v.Verify, PublicURL: f.publicURL, AuthorizationServers: []string{"https://id.example.com"},
		AllowedOrigins: []string{"https://app.example.com"}, MaxBodyBytes: 64 << 10,
		FlushInterval: 20 * time.Millisecond,
	}
	if mod != nil {
		mod(&hc)
	}
	srv := a.NewHTTPServer(ln.Addr().String(), hc)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	// Keys: good ones for acme/alice and globex/bob, and bad ones.
	now := time.Now().UTC()
	past := now.Add(-time.Hour)
	mk := func(name string, ident scope.Identity, mod func(*scope.APIKey)) string {
		key, rec, err := scope.NewAPIKey(false)
		if err != nil {
			t.Fatal(err)
		}
		rec.Identity, rec.CreatedAt = ident, now
		if mod != nil {
			mod(&rec)
		}
		if err := admin.CreateKey(t.Context(), rec); err != nil {
			t.Fatalf("CreateKey(%s): %v", name, err)
		}
		f.keys[name] = key
		return rec.ID
	}
	alice := scope.Identity{Org: "acme", User: "alice", Teams: []string{"api"}, Permissions: allPerms}
	bob := scope.Identity{Org: "globex", User: "bob", Permissions: allPerms}
	mk("alice", alice, nil)
	mk("bob", bob, nil)
	revoked := mk("revoked", alice, nil)
	if err := admin.RevokeKey(t.Context(), revoked, now); err != nil {
		t.Fatal(err)
	}
	mk("expired", alice, func(k *scope.APIKey) { k.ExpiresAt = &past })
	rotated := mk("rotated", alice, nil)
	next, rec, err := scope.NewAPIKey(false)
	if err != nil {
		t.Fatal(err)
	}
	rec.Identity, rec.CreatedAt = alice, now
	if err := admin.RotateKey(t.Context(), rotated, rec, now.Add(-time.Second)); err != nil {
		t.Fatalf("RotateKey: %v", err)
	}
	f.keys["rotation successor"] = next
	return f
}

// hs256 mints an HS256 token for the fortress's audience.
func (f *fortress) claims(org, user string, over map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss": "test-issuer", "aud": f.publicURL, "sub": user, "org_id": org,
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(), "scope": "memory:read memory:write",
	}
	for k, v := range over {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// mcpCall is a JSON-RPC tools/call body.
func mcpCall(tool string, args map[string]any) string {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": map[string]any{"name": tool, "arguments": args}})
	return string(b)
}

type attackReq struct {
	method, path string
	header       map[string]string
	body         string
}

func (f *fortress) do(t *testing.T, r attackReq) (*http.Response, string) {
	t.Helper()
	if r.method == "" {
		r.method = "POST"
	}
	if r.path == "" {
		r.path = "/mcp"
	}
	req, err := http.NewRequestWithContext(t.Context(), r.method, f.url+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range r.header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// storage returns the memories each org stores.
func storage(t *testing.T, a *app.App, orgs ...string) map[string]int64 {
	t.Helper()
	m := a.BaseStore().(store.UsageMeter)
	out := map[string]int64{}
	for _, o := range orgs {
		n, _, err := m.OrgStorage(t.Context(), o)
		if err != nil {
			t.Fatalf("OrgStorage(%s): %v", o, err)
		}
		out[o] = n
	}
	return out
}

// TestHTTPAttacks runs hostile requests over a real listener on each
// store. Every case asserts its status code, that the canary never
// appears in a response, and that no org's stored memories changed.
func TestHTTPAttacks(t *testing.T) {
	forEachKeyBackend(t, func(t *testing.T, a *app.App, admin store.KeyAdmin) {
		f := newFortress(t, a, admin, nil)
		bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
		good := f.keys["alice"]
		goodJWT := sign(t, jwt.SigningMethodHS256, testSecret, f.claims("acme", "alice", nil), nil)
		rsJWT := sign(t, jwt.SigningMethodRS256, f.rsaKey, f.claims("acme", "alice", nil), map[string]any{"kid": "k1"})

		// Seed: alice stores the canary through the front door.
		resp, body := f.do(t, attackReq{header: bearer(good), body: mcpCall("add_memory", map[string]any{"content": canary})})
		if resp.StatusCode != 200 || strings.Contains(body, `"isError":true`) {
			t.Fatalf("seeding with a good key: %d %s", resp.StatusCode, body)
		}
		for _, tok := range []string{goodJWT, rsJWT} {
			resp, body = f.do(t, attackReq{header: bearer(tok), body: mcpCall("search_memory", map[string]any{"query": "launch code"})})
			if resp.StatusCode != 200 || !strings.Contains(body, canary) {
				t.Fatalf("a good token must read the canary (else the table proves nothing): %d %s", resp.StatusCode, body)
			}
		}
		orgs := []string{"acme", "globex", "mallory", ""}
		before := storage(t, a, orgs...)

		write := mcpCall("add_memory", map[string]any{"content": "attacker was here"})
		read := mcpCall("search_memory", map[string]any{"query": "launch code"})
		pubDER, _ := x509.MarshalPKIXPublicKey(&f.rsaKey.PublicKey)
		pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
		evilJWK := json.RawMessage(jwksJSON("k1", &f.evilKey.PublicKey))
		tampered := func(tok string) string {
			p := strings.Split(tok, ".")
			raw, _ := base64.RawURLEncoding.DecodeString(p[1])
			raw = bytes.Replace(raw, []byte(`"alice"`), []byte(`"bob__"`), 1)
			p[1] = base64.RawURLEncoding.EncodeToString(raw)
			return strings.Join(p, ".")
		}
		hour := time.Hour
		now := time.Now()
		noneTok := func() string {
			s, err := jwt.NewWithClaims(jwt.SigningMethodNone, f.claims("acme", "alice", nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}()
		unknownKey := "smk_live_zzzzzzzzzzzz_" + strings.Repeat("q", 32)
		forgedKey := good[:len(good)-4] + "aaaa"
		if forgedKey == good {
			forgedKey = good[:len(good)-4] + "bbbb"
		}

		cases := []struct {
			name    string
			req     attackReq
			status  int
			toolErr bool // 200 with a tool error
		}{
			{"no token", attackReq{body: read}, 401, false},
			{"basic scheme", attackReq{header: map[string]string{"Authorization": "Basic YWxpY2U6cHc="}, body: read}, 401, false},
			{"empty bearer", attackReq{header: map[string]string{"Authorization": "Bearer "}, body: read}, 401, false},
			{"bearer without space", attackReq{header: map[string]string{"Authorization": "Bearer" + goodJWT}, body: read}, 401, false},
			{"malformed jwt", attackReq{header: bearer("not.a.jwt"), body: read}, 401, false},
			{"two segments", attackReq{header: bearer("eyJhbGciOiJIUzI1NiJ9.e30"), body: read}, 401, false},
			{"alg none", attackReq{header: bearer(noneTok), body: read}, 401, false},
			{"alg none with stripped signature of a good token", attackReq{header: bearer(strings.Join(strings.Split(goodJWT, ".")[:2], ".") + "."), body: read}, 401, false},
			{"HS256 signed with the RSA public key (HS/RS confusion)", attackReq{header: bearer(sign(t, jwt.SigningMethodHS256, pubPEM, f.claims("acme", "alice", nil), map[string]any{"kid": "k1"})), body: read}, 401, false},
			{"HS512 not allowed", attackReq{header: bearer(sign(t, jwt.SigningMethodHS512, append(append([]byte{}, testSecret...), testSecret...), f.claims("acme", "alice", nil), nil)), body: read}, 401, false},
			{"RS256 by an unknown key with kid k1", attackReq{header: bearer(sign(t, jwt.SigningMethodRS256, f.evilKey, f.claims("acme", "alice", nil), map[string]any{"kid": "k1"})), body: read}, 401, false},
			{"kid unknown", attackReq{header: bearer(sign(t, jwt.SigningMethodRS256, f.rsaKey, f.claims("acme", "alice", nil), map[string]any{"kid": "k2"})), body: read}, 401, false},
			{"kid path traversal", attackReq{header: bearer(sign(t, jwt.SigningMethodRS256, f.evilKey, f.claims("acme", "alice", nil), map[string]any{"kid": "../../../../dev/null"})), body: read}, 401, false},
			{"kid SQL injection", attackReq{header: bearer(sign(t, jwt.SigningMethodRS256, f.evilKey, f.claims("acme", "alice", nil), map[string]any{"kid": "k1' OR '1'='1"})), body: read}, 401, false},
			{"jku header injection", attackReq{header: bearer(sign(t, jwt.SigningMethodRS256, f.evilKey, f.claims("acme", "alice", nil), map[string]any{"kid": "k1", "jku": f.evil.URL + "/jwks.json"})), body: read}, 401, false},
			{"x5u header injection", attackReq{header: bearer(sign(t, jwt.SigningMethodRS256, f.evilKey, f.claims("acme", "alice", nil), map[string]any{"kid": "evil", "x5u": f.evil.URL + "/cert.pem"})), body: read}, 401, false},
			{"jwk header injection", attackReq{header: bearer(sign(t, jwt.SigningMethodRS256, f.evilKey, f.claims("acme", "alice", nil), map[string]any{"jwk": evilJWK})), body: read}, 401, false},
			{"expired", attackReq{header: bearer(sign(t, jwt.SigningMethodHS256, testSecret, f.claims("acme", "alice", map[string]any{"exp": now.Add(-hour).Unix(), "iat": now.Add(-2 * hour).Unix()}), nil)), body: read}, 401, false},
			{"no exp", attackReq{header: bearer(sign(t, jwt.SigningMethodHS256, testSecret, f.claims("acme", "alice", map[string]any{"exp": nil}), nil)), body: read}, 401, false},
			{"not yet valid", attackReq{header: bearer(sign(t, jwt.SigningMethodHS256, testSecret, f.claims("acme", "alice", map[string]any{"nbf": now.Add(hour).Unix()}), nil)), body: read}, 401, false},
			{"issued in the future", attackReq{header: bearer(sign(t, jwt.SigningMethodHS256, testSecret, f.claims("acme", "alice", map[string]any{"iat": now.Add(hour).Unix()}), nil)), body: read}, 401, false},
			{"wrong issuer", attackReq{header: bearer(sign(t, jwt.SigningMethodHS256, testSecret, f.claims("acme", "alice", map[string]any{"iss": "https://evil.example"}), nil)), body: read}, 401, false},
			{"wrong audience", attackReq{header: bearer(sign(t, jwt.SigningMethodHS256, testSecret, f.claims("acme", "alice", map[string]any{"aud": "https://other-server.example/mcp"}), nil)), body: read}, 401, false},
			{"no audience", attackReq{header: bearer(sign(t, jwt.SigningMethodHS256, testSecret, f.claims("acme", "alice", map[string]any{"aud": nil}), nil)), body: read}, 401, false},
			{"tampered payload", attackReq{header: bearer(tampered(goodJWT)), body: read}, 401, false},
			{"oversized token", attackReq{header: bearer(sign(t, jwt.SigningMethodHS256, testSecret, f.claims("acme", "alice", map[string]any{"pad": strings.Repeat("x", 20000)}), nil)), body: read}, 401, false},
			{"valid token in the query string", attackReq{path: "/mcp?access_token=" + goodJWT, body: read}, 401, false},
			{"valid key in the query string beside a valid header", attackReq{path: "/mcp?key=" + good, header: bearer(good), body: read}, 401, false},
			{"revoked key", attackReq{header: bearer(f.keys["revoked"]), body: read}, 401, false},
			{"expired key", attackReq{header: bearer(f.keys["expired"]), body: read}, 401, false},
			{"rotated key after grace", attackReq{header: bearer(f.keys["rotated"]), body: read}, 401, false},
			{"forged key secret", attackReq{header: bearer(forgedKey), body: read}, 401, false},
			{"unknown key id", attackReq{header: bearer(unknownKey), body: read}, 401, false},
			{"malformed key", attackReq{header: bearer("smk_live_" + strings.Repeat("a", 200)), body: read}, 401, false},
			{"key of another org reads", attackReq{header: bearer(f.keys["bob"]), body: read}, 200, false},
			{"org named in tool arguments", attackReq{header: bearer(f.keys["bob"]), body: mcpCall("add_memory", map[string]any{"content": "x", "org_id": "acme"})}, 200, true},
			{"user named in tool arguments", attackReq{header: bearer(f.keys["bob"]), body: mcpCall("search_memory", map[string]any{"query": "launch code", "user_id": "alice", "org": "acme"})}, 200, true},
			{"scope of another team", attackReq{header: bearer(f.keys["bob"]), body: mcpCall("add_memory", map[string]any{"content": "x", "scope": "team:api"})}, 200, true},
			{"read-only token writes", attackReq{header: bearer(sign(t, jwt.SigningMethodHS256, testSecret, f.claims("acme", "alice", map[string]any{"scope": "memory:read"}), nil)), body: write}, 200, true},
			{"token with no permission", attackReq{header: bearer(sign(t, jwt.SigningMethodHS256, testSecret, f.claims("acme", "alice", map[string]any{"scope": "openid profile"}), nil)), body: read}, 403, false},
			{"foreign Origin with a valid key", attackReq{header: map[string]string{"Authorization": "Bearer " + good, "Origin": "https://evil.example"}, body: write}, 403, false},
			{"null Origin", attackReq{header: map[string]string{"Authorization": "Bearer " + good, "Origin": "null"}, body: write}, 403, false},
			{"rebinding Host", attackReq{header: map[string]string{"Authorization": "Bearer " + good, "Host": "evil.example"}, body: write}, 403, false},
			{"oversized body", attackReq{header: bearer(good), body: mcpCall("add_memory", map[string]any{"content": strings.Repeat("y", 100<<10)})}, 413, false},
			{"batch JSON-RPC", attackReq{header: bearer(good), body: "[" + write + "," + write + "]"}, 400, false},
			{"unknown MCP-Protocol-Version", attackReq{header: map[string]string{"Authorization": "Bearer " + good, "MCP-Protocol-Version": "1999-01-01"}, body: write}, 400, false},
			{"not JSON content type", attackReq{header: map[string]string{"Authorization": "Bearer " + good, "Content-Type": "text/plain"}, body: write}, 400, false},
			{"invalid JSON", attackReq{header: bearer(good), body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_memory","arguments":{"content":"x"}`}, 400, false},
		}
		if len(cases) < 30 {
			t.Fatalf("only %d attack cases", len(cases))
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				resp, body := f.do(t, tc.req)
				if resp.StatusCode != tc.status {
					t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tc.status, body)
				}
				if strings.Contains(body, canary) {
					t.Errorf("response leaks the canary: %s", body)
				}
				if tc.status == 401 {
					if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, `Bearer resource_metadata="`+f.url+`/.well-known/oauth-protected-resource/mcp"`) {
						t.Errorf("WWW-Authenticate = %q, want a Bearer challenge naming the resource metadata", got)
					}
				}
				if tc.status == 403 && strings.Contains(tc.name, "permission") {
					if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, `error="insufficient_scope"`) {
						t.Errorf("WWW-Authenticate = %q, want error=\"insufficient_scope\"", got)
					}
				}
				if isErr := strings.Contains(body, `"isError":true`); isErr != tc.toolErr {
					t.Errorf("tool error = %v, want %v; body %s", isErr, tc.toolErr, body)
				}
				if after := storage(t, a, orgs...); fmt.Sprint(after) != fmt.Sprint(before) {
					t.Errorf("stored memories changed: %v -> %v", before, after)
				}
			})
		}
		if n := f.evil.hits.Load(); n != 0 {
			t.Errorf("the attacker's server got %d requests: injected jku/x5u headers were followed", n)
		}
		for _, tok := range []string{goodJWT, rsJWT, good, "Bearer"} {
			if tok != "Bearer" && f.jwks.saw(tok[:20]) {
				t.Errorf("a client's token reached the JWKS server")
			}
		}
		if f.jwks.saw("Authorization: Bearer") {
			t.Errorf("the JWKS fetch carried an Authorization header")
		}
	})
}

// TestHTTPProtectedResourceMetadata checks RFC 9728 discovery: both
// well-known paths, and the URL every 401 names.
func TestHTTPProtectedResourceMetadata(t *testing.T) {
	a := newApp(t, nil)
	f := newFortress(t, a, a.BaseStore().(store.KeyAdmin), nil)
	resp, _ := f.do(t, attackReq{body: mcpCall("list_scopes", nil)})
	challenge := resp.Header.Get("WWW-Authenticate")
	_, rest, _ := strings.Cut(challenge, `resource_metadata="`)
	metaURL, _, _ := strings.Cut(rest, `"`)
	if metaURL != f.url+"/.well-known/oauth-protected-resource/mcp" {
		t.Fatalf("resource_metadata = %q in %q", metaURL, challenge)
	}
	for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		resp, body := f.do(t, attackReq{method: "GET", path: path})
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d", path, resp.StatusCode)
		}
		var m struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
			ScopesSupported      []string `json:"scopes_supported"`
			BearerMethods        []string `json:"bearer_methods_supported"`
		}
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
		want := []string{"memory:read", "memory:write", "memory:share", "memory:purge", "memory:admin"}
		if m.Resource != f.publicURL || fmt.Sprint(m.AuthorizationServers) != "[https://id.example.com]" ||
			fmt.Sprint(m.ScopesSupported) != fmt.Sprint(want) || fmt.Sprint(m.BearerMethods) != "[header]" {
			t.Errorf("GET %s = %+v", path, m)
		}
	}
}

// TestHTTPSlowClients checks that a client sending its headers byte by
// byte, or never finishing its body, is cut off within the configured
// timeouts and writes nothing.
func TestHTTPSlowClients(t *testing.T) {
	a := newApp(t, nil)
	f := newFortress(t, a, a.BaseStore().(store.KeyAdmin), func(hc *app.HTTPConfig) {
		hc.ReadHeaderTimeout = 300 * time.Millisecond
		hc.ReadTimeout = 600 * time.Millisecond
	})
	host := strings.TrimPrefix(f.url, "http://")
	body := mcpCall("add_memory", map[string]any{"content": "slow client was here"})
	for _, tc := range []struct {
		name  string
		send  func(c net.Conn) error
		limit time.Duration
	}{
		{"headers byte by byte", func(c net.Conn) error {
			head := "POST /mcp HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + f.keys["alice"] + "\r\nContent-Type: application/json\r\n"
			for i := range len(head) {
				if _, err := c.Write([]byte{head[i]}); err != nil {
					return err
				}
				time.Sleep(50 * time.Millisecond)
			}
			return nil
		}, 300 * time.Millisecond},
		{"body never finished", func(c net.Conn) error {
			head := fmt.Sprintf("POST /mcp HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: %d\r\n\r\n", host, f.keys["alice"], len(body))
			if _, err := c.Write([]byte(head + body[:len(body)/2])); err != nil {
				return err
			}
			time.Sleep(5 * time.Second)
			_, err := c.Write([]byte(body[len(body)/2:]))
			return err
		}, 600 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", host)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			closed := make(chan time.Duration, 1)
			go func() {
				// The server closing the connection ends this read.
				io.Copy(io.Discard, c)
				closed <- time.Since(start)
			}()
			sendErr := make(chan error, 1)
			go func() { sendErr <- tc.send(c) }()
			select {
			case d := <-closed:
				if d > tc.limit+time.Second {
					t.Errorf("connection closed after %s, want within %s", d, tc.limit)
				}
			case <-time.After(tc.limit + 3*time.Second):
				t.Fatalf("connection still open after %s", tc.limit+3*time.Second)
			}
			c.Close()
			<-sendErr
		})
	}
	if got := storage(t, a, "acme"); got["acme"] != 0 {
		t.Errorf("a slow client stored %d memories", got["acme"])
	}
}
