package app_test

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/scope"
)

func TestHTTPRejectsRequestsWithoutAValidToken(t *testing.T) {
	ts := httpServer(t, newApp(t, nil))
	expired, err := scope.MintHS256(testSecret, map[string]any{"iss": "test-issuer", "aud": "scopemem-test", "sub": "u", "org_id": "o", "exp": time.Now().Add(-time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := scope.MintHS256([]byte("another-secret-another-secret-another"), map[string]any{"iss": "test-issuer", "aud": "scopemem-test", "sub": "u", "org_id": "o", "exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`
	for _, tc := range []struct {
		name, auth string
	}{
		{"no header", ""},
		{"basic scheme", "Basic dTpw"},
		{"empty bearer", "Bearer "},
		{"garbage", "Bearer not.a.jwt"},
		{"expired", "Bearer " + expired},
		{"forged", "Bearer " + forged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), "POST", ts.URL+"/mcp", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status = %d, want 401; body %s", resp.StatusCode, b)
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer ") {
				t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", got)
			}
			if strings.Contains(string(b), "add_memory") {
				t.Errorf("401 body leaks the tool list: %s", b)
			}
		})
	}
}

func TestHTTPHealthEndpoints(t *testing.T) {
	ts := httpServer(t, newApp(t, nil))
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s = %d, want 200", path, resp.StatusCode)
		}
	}
}

// TestHTTPToolsEndToEnd runs every tool through a real MCP client on each
// protocol revision the server supports.
func TestHTTPToolsEndToEnd(t *testing.T) {
	forEachBackend(t, func(t *testing.T, a *app.App) {
		for _, version := range []string{"2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"} {
			t.Run(version, func(t *testing.T) {
				ts := httpServer(t, a)
				tok := token(t, "acme", "alice-"+version, []string{"api"}, allPerms...)
				alice := connect(t, ts.URL, tok, client.WithProtocolVersion(version))

				tl, err := alice.ListTools(t.Context(), mcp.ListToolsRequest{})
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, tool := range tl.Tools {
					names = append(names, tool.Name)
				}
				slices.Sort(names)
				want := []string{"add_memory", "delete_memory", "list_scopes", "purge", "search_memory", "update_memory"}
				if !slices.Equal(names, want) {
					t.Fatalf("tools = %v, want %v", names, want)
				}

				a1 := ok[addOut](t, alice, "add_memory", map[string]any{"content": "Alice prefers dark mode in every editor", "tags": []string{"ui"}})
				if a1.Scope != "user" || a1.Duplicate || a1.ID == "" {
					t.Fatalf("add_memory = %+v, want a new memory in user", a1)
				}
				dup := ok[addOut](t, alice, "add_memory", map[string]any{"content": "alice prefers dark mode in every editor."})
				if !dup.Duplicate || dup.ID != a1.ID {
					t.Errorf("second add = %+v, want duplicate of %s", dup, a1.ID)
				}
				a2 := ok[addOut](t, alice, "add_memory", map[string]any{"content": "The API team deploys on Fridays", "scope": "team:api"})
				if a2.Scope != "team:api" {
					t.Errorf("team add scope = %q", a2.Scope)
				}

				s := ok[searchOut](t, alice, "search_memory", map[string]any{"query": "which color theme does alice like"})
				if len(s.Results) == 0 || s.Results[0].ID != a1.ID {
					t.Fatalf("search results = %+v, want %s first", s.Results, a1.ID)
				}
				s = ok[searchOut](t, alice, "search_memory", map[string]any{"query": "deploys", "scopes": []string{"team:api"}})
				if got := ids(s.Results); !slices.Equal(got, []string{a2.ID}) {
					t.Errorf("team-only search = %v, want [%s]", got, a2.ID)
				}
				s = ok[searchOut](t, alice, "search_memory", map[string]any{"query": "dark mode", "tags": []string{"ui"}})
				if got := ids(s.Results); !slices.Equal(got, []string{a1.ID}) {
					t.Errorf("tag search = %v, want [%s]", got, a1.ID)
				}

				ls := ok[scopesOut](t, alice, "list_scopes", map[string]any{})
				counts := map[string]int{}
				for _, sc := range ls.Scopes {
					counts[sc.Scope] = sc.Count
				}
				if counts["user"] != 1 || counts["team:api"] != 1 || ls.Org != "acme" || ls.User != "alice-"+version {
					t.Errorf("list_scopes = %+v", ls)
				}

				upd := ok[map[string]any](t, alice, "update_memory", map[string]any{"id": a1.ID, "content": "Alice prefers light mode now"})
				if upd["content"] != "Alice prefers light mode now" {
					t.Errorf("update_memory = %v", upd)
				}

				rr, err := alice.ReadResource(t.Context(), readReq("memory://memories/"+a1.ID))
				if err != nil {
					t.Fatalf("read memory resource: %v", err)
				}
				if txt := rr.Contents[0].(mcp.TextResourceContents).Text; !strings.Contains(txt, "light mode") {
					t.Errorf("memory resource = %s", txt)
				}
				if _, err := alice.ReadResource(t.Context(), readReq("memory://scopes")); err != nil {
					t.Errorf("read scopes resource: %v", err)
				}

				del := ok[map[string]any](t, alice, "delete_memory", map[string]any{"id": a1.ID})
				if del["deleted"] != true {
					t.Errorf("delete_memory = %v", del)
				}
				fails(t, alice, "delete_memory", map[string]any{"id": a1.ID})

				p := ok[map[string]any](t, alice, "purge", map[string]any{"scope": "team:api", "confirm": "team:api"})
				if p["total"] != float64(1) {
					t.Errorf("purge = %v, want total 1", p)
				}
			})
		}
	})
}

func readReq(uri string) mcp.ReadResourceRequest {
	r := mcp.ReadResourceRequest{}
	r.Params.URI = uri
	return r
}

// TestHTTPIsolation checks that a second org, a second user and a reader
// cannot see or change alice's memories, whatever they put in arguments.
func TestHTTPIsolation(t *testing.T) {
	forEachBackend(t, testHTTPIsolation)
}

func testHTTPIsolation(t *testing.T, a *app.App) {
	ts := httpServer(t, a)
	alice := connect(t, ts.URL, token(t, "acme", "alice", []string{"api"}, allPerms...))
	bob := connect(t, ts.URL, token(t, "acme", "bob", []string{"web"}, allPerms...))
	eve := connect(t, ts.URL, token(t, "evil", "alice", []string{"api"}, scope.AllPermissions...)) // admin of her own org
	reader := connect(t, ts.URL, token(t, "acme", "carol", []string{"api"}, scope.PermRead))

	private := ok[addOut](t, alice, "add_memory", map[string]any{"content": "alice's salary is confidential"})
	team := ok[addOut](t, alice, "add_memory", map[string]any{"content": "api team secret rotation plan", "scope": "team:api"})

	for _, tc := range []struct {
		name string
		c    *client.Client
		see  []string // ids a search for everything may return
	}{
		{"same user name, other org", eve, nil},
		{"other user, other team", bob, nil},
		{"reader in the team", reader, []string{team.ID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, q := range []string{"salary confidential", "api team secret rotation plan"} {
				s := ok[searchOut](t, tc.c, "search_memory", map[string]any{"query": q, "limit": 100})
				for _, h := range s.Results {
					if !slices.Contains(tc.see, h.ID) {
						t.Errorf("search %q returned foreign memory %s (%s)", q, h.ID, h.Content)
					}
				}
			}
			for _, id := range []string{private.ID, team.ID} {
				fails(t, tc.c, "update_memory", map[string]any{"id": id, "content": "overwritten"})
				fails(t, tc.c, "delete_memory", map[string]any{"id": id})
				_, err := tc.c.ReadResource(t.Context(), readReq("memory://memories/"+id))
				if err == nil && (id == private.ID || tc.c != reader) {
					t.Errorf("read memory://memories/%s succeeded for a caller who cannot see it", id)
				}
			}
			// Naming another org or user in arguments is rejected outright.
			fails(t, tc.c, "search_memory", map[string]any{"query": "salary", "org_id": "acme", "user_id": "alice"})
			fails(t, tc.c, "add_memory", map[string]any{"content": "x", "org_id": "acme"})
			// Purging "user:alice" reaches at most the alice of the caller's
			// own org (eve is alice in org evil); acme's alice keeps hers,
			// checked below.
			call(t, tc.c, "purge", map[string]any{"scope": "user:alice", "confirm": "user:alice"})
			call(t, tc.c, "purge", map[string]any{"scope": "team:api", "confirm": "team:api"})
			call(t, tc.c, "purge", map[string]any{"scope": "all", "confirm": "all"})
		})
	}
	for _, id := range []string{private.ID, team.ID} {
		if _, err := alice.ReadResource(t.Context(), readReq("memory://memories/"+id)); err != nil {
			t.Errorf("alice lost memory %s to another caller: %v", id, err)
		}
	}
	if msg := fails(t, reader, "add_memory", map[string]any{"content": "readers cannot write"}); !strings.Contains(msg, "memory:write") {
		t.Errorf("read-only add error = %q, want it to name memory:write", msg)
	}
	writer := connect(t, ts.URL, token(t, "acme", "dave", nil, scope.PermRead, scope.PermWrite))
	if msg := fails(t, writer, "add_memory", map[string]any{"content": "dave writes to org", "scope": "org"}); !strings.Contains(msg, "memory:share") {
		t.Errorf("org write without share = %q, want it to name memory:share", msg)
	}
}

// TestHTTPBadInput checks that each kind of bad input gets a tool error and
// stores nothing.
func TestHTTPBadInput(t *testing.T) {
	ts := httpServer(t, newApp(t, nil))
	c := connect(t, ts.URL, token(t, "acme", "alice", []string{"api"}, allPerms...))
	manyTags := make([]string, 33)
	for i := range manyTags {
		manyTags[i] = "t" + strings.Repeat("x", i)
	}
	for _, tc := range []struct {
		name string
		tool string
		args map[string]any
	}{
		{"empty content", "add_memory", map[string]any{"content": ""}},
		{"blank content", "add_memory", map[string]any{"content": " \n\t "}},
		{"oversized content", "add_memory", map[string]any{"content": strings.Repeat("a", 32<<10+1)}},
		{"replacement characters", "add_memory", map[string]any{"content": "bad \ufffd bytes"}},
		{"content not a string", "add_memory", map[string]any{"content": 42}},
		{"missing content", "add_memory", map[string]any{"tags": []string{"x"}}},
		{"too many tags", "add_memory", map[string]any{"content": "x", "tags": manyTags}},
		{"metadata too big", "add_memory", map[string]any{"content": "x", "metadata": map[string]any{"k": strings.Repeat("m", 9000)}}},
		{"unknown scope", "add_memory", map[string]any{"content": "x", "scope": "planet"}},
		{"team not a member", "add_memory", map[string]any{"content": "x", "scope": "team:web"}},
		{"bad ttl", "add_memory", map[string]any{"content": "x", "ttl": "soon"}},
		{"limit too big", "search_memory", map[string]any{"query": "x", "limit": 101}},
		{"limit negative", "search_memory", map[string]any{"query": "x", "limit": -1}},
		{"min_score above 1", "search_memory", map[string]any{"query": "x", "min_score": 2}},
		{"empty query", "search_memory", map[string]any{"query": ""}},
		{"unknown search scope", "search_memory", map[string]any{"query": "x", "scopes": []string{"team:web"}}},
		{"purge without confirm", "purge", map[string]any{"scope": "user", "confirm": ""}},
		{"purge wrong confirm", "purge", map[string]any{"scope": "user", "confirm": "org"}},
		{"update nothing", "update_memory", map[string]any{"id": "abc"}},
		{"unknown argument", "list_scopes", map[string]any{"org_id": "other"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if msg := fails(t, c, tc.tool, tc.args); msg == "" {
				t.Error("tool error has no message")
			}
		})
	}
	ls := ok[scopesOut](t, c, "list_scopes", map[string]any{})
	for _, sc := range ls.Scopes {
		if sc.Count != 0 {
			t.Errorf("scope %s holds %d memories after only bad input", sc.Scope, sc.Count)
		}
	}
}

// TestHTTPSessionScope checks that session memories follow the MCP session
// id (or the session argument) and stay invisible to the user's other
// sessions.
func TestHTTPSessionScope(t *testing.T) {
	ts := httpServer(t, newApp(t, nil))
	tok := token(t, "acme", "alice", nil, allPerms...)
	s1 := connect(t, ts.URL, tok, client.WithProtocolVersion("2025-11-25"))
	s2 := connect(t, ts.URL, tok, client.WithProtocolVersion("2025-11-25"))
	if s1.GetSessionId() == "" || s1.GetSessionId() == s2.GetSessionId() {
		t.Fatalf("session ids %q and %q: want two distinct ids", s1.GetSessionId(), s2.GetSessionId())
	}
	m := ok[addOut](t, s1, "add_memory", map[string]any{"content": "scratch: the build is broken on main", "scope": "session"})
	if m.Scope != "session" {
		t.Fatalf("scope = %q", m.Scope)
	}
	if got := ok[searchOut](t, s1, "search_memory", map[string]any{"query": "build broken"}); !slices.Contains(ids(got.Results), m.ID) {
		t.Errorf("own session does not see its scratch note: %v", got.Results)
	}
	if got := ok[searchOut](t, s2, "search_memory", map[string]any{"query": "build broken"}); slices.Contains(ids(got.Results), m.ID) {
		t.Errorf("another session sees the scratch note")
	}

	// 2026-07-28 has no sessions: the session argument names one.
	modern := connect(t, ts.URL, tok, client.WithProtocolVersion("2026-07-28"))
	fails(t, modern, "add_memory", map[string]any{"content": "needs a session", "scope": "session"})
	n := ok[addOut](t, modern, "add_memory", map[string]any{"content": "run 7 scratch", "scope": "session", "session": "run-7"})
	if got := ok[searchOut](t, modern, "search_memory", map[string]any{"query": "run 7 scratch", "session": "run-7"}); !slices.Contains(ids(got.Results), n.ID) {
		t.Errorf("session argument: note not found")
	}
	if got := ok[searchOut](t, modern, "search_memory", map[string]any{"query": "run 7 scratch", "session": "run-8"}); slices.Contains(ids(got.Results), n.ID) {
		t.Errorf("another session key sees run-7's note")
	}
	bob := connect(t, ts.URL, token(t, "acme", "bob", nil, allPerms...), client.WithProtocolVersion("2026-07-28"))
	if got := ok[searchOut](t, bob, "search_memory", map[string]any{"query": "run 7 scratch", "session": "run-7"}); slices.Contains(ids(got.Results), n.ID) {
		t.Errorf("bob sees alice's session note by naming her session key")
	}
}

// TestHTTPWithoutSession checks that a client may call tools without
// initializing a session (the server keeps none), and that a session id
// from another replica or before a restart is accepted.
func TestHTTPWithoutSession(t *testing.T) {
	ts := httpServer(t, newApp(t, nil))
	tok := token(t, "acme", "alice", nil, allPerms...)
	for _, tc := range []struct{ name, session string }{
		{"no session id", ""},
		{"id minted elsewhere", "mcp-session-0b6f5b2e-8a47-4b8e-9a39-3f7f0c1d2e3a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_scopes","arguments":{}}}`
			req, _ := http.NewRequestWithContext(t.Context(), "POST", ts.URL+"/mcp", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if tc.session != "" {
				req.Header.Set("Mcp-Session-Id", tc.session)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(b), `"org":"acme"`) {
				t.Errorf("status %d, body %s; want list_scopes' answer", resp.StatusCode, b)
			}
		})
	}
}
