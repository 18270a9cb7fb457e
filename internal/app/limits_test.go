package app_test

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/store"
)

// TestHTTPAPIKeyEndToEnd connects a real MCP client with an API key: the
// key resolves to the identity it was made for.
func TestHTTPAPIKeyEndToEnd(t *testing.T) {
	forEachKeyBackend(t, func(t *testing.T, a *app.App, admin store.KeyAdmin) {
		f := newFortress(t, a, admin, nil)
		c := connect(t, f.url, f.keys["alice"])
		got := ok[scopesOut](t, c, "list_scopes", nil)
		if got.Org != "acme" || got.User != "alice" {
			t.Errorf("list_scopes as the key = org %q user %q, want acme/alice", got.Org, got.User)
		}
		add := ok[addOut](t, c, "add_memory", map[string]any{"content": "keys work end to end", "scope": "team:api"})
		if add.Scope != "team:api" {
			t.Errorf("add_memory scope = %q", add.Scope)
		}
		// The successor of the rotated key works.
		c2 := connect(t, f.url, f.keys["rotation successor"])
		if got := ok[scopesOut](t, c2, "list_scopes", nil); got.User != "alice" {
			t.Errorf("rotation successor acts as %q", got.User)
		}
	})
}

// TestHTTPRateLimits checks the per-user and per-org token buckets: 429
// with Retry-After once a bucket is empty, other users unaffected by a
// user's limit.
func TestHTTPRateLimits(t *testing.T) {
	a := newApp(t, nil)
	f := newFortress(t, a, a.BaseStore().(store.KeyAdmin), func(hc *app.HTTPConfig) {
		hc.OrgLimits = app.OrgLimitsFile{
			Default: app.OrgLimits{Principal: app.RateLimit{Rate: 0.01, Burst: 3}},
			Orgs:    map[string]app.OrgLimits{"globex": {Org: app.RateLimit{Rate: 0.01, Burst: 2}, Principal: app.RateLimit{Rate: -1}}},
		}
	})
	list := mcpCall("list_scopes", nil)
	tok := func(org, user string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, f.claims(org, user, nil), nil)}
	}
	for _, tc := range []struct {
		name  string
		hdr   map[string]string
		codes []int
	}{
		{"user burst of 3", tok("acme", "alice"), []int{200, 200, 200, 429}},
		{"another user of the org has its own bucket", tok("acme", "carol"), []int{200, 200}},
		{"org burst of 2 shared by its users", tok("globex", "bob"), []int{200, 200}},
		{"second globex user finds the org bucket empty", tok("globex", "dave"), []int{429}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i, want := range tc.codes {
				resp, body := f.do(t, attackReq{header: tc.hdr, body: list})
				if resp.StatusCode != want {
					t.Fatalf("request %d: status %d, want %d; %s", i+1, resp.StatusCode, want, body)
				}
				if want == 429 {
					if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
						t.Errorf("Retry-After = %q, want whole seconds >= 1", resp.Header.Get("Retry-After"))
					}
				}
			}
		})
	}
}

// TestHTTPFailedLoginLimit checks that an address sending bad credentials
// is answered 429 once its bucket is empty, even with a good token.
func TestHTTPFailedLoginLimit(t *testing.T) {
	a := newApp(t, nil)
	f := newFortress(t, a, a.BaseStore().(store.KeyAdmin), func(hc *app.HTTPConfig) {
		hc.AuthFailures = app.RateLimit{Rate: 0.01, Burst: 3}
	})
	bad := attackReq{header: map[string]string{"Authorization": "Bearer not.a.jwt"}, body: mcpCall("list_scopes", nil)}
	for i, want := range []int{401, 401, 401, 429} {
		if resp, body := f.do(t, bad); resp.StatusCode != want {
			t.Fatalf("bad request %d: status %d, want %d; %s", i+1, resp.StatusCode, want, body)
		}
	}
	good := attackReq{header: map[string]string{"Authorization": "Bearer " + f.keys["alice"]}, body: mcpCall("list_scopes", nil)}
	if resp, _ := f.do(t, good); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("good key from a blocked address: %d, want 429", resp.StatusCode)
	}
}

// TestHTTPQuotas checks the per-org quotas: the refused write is a tool
// error naming the quota and its size, and nothing is stored.
func TestHTTPQuotas(t *testing.T) {
	forEachKeyBackend(t, func(t *testing.T, a *app.App, admin store.KeyAdmin) {
		f := newFortress(t, a, admin, func(hc *app.HTTPConfig) {
			hc.OrgLimits = app.OrgLimitsFile{
				Default: app.OrgLimits{MaxMemories: 2},
				Orgs:    map[string]app.OrgLimits{"globex": {MaxMemories: -1, MaxBytes: 40}},
			}
		})
		alice := connect(t, f.url, f.keys["alice"])
		ok[addOut](t, alice, "add_memory", map[string]any{"content": "first fact"})
		ok[addOut](t, alice, "add_memory", map[string]any{"content": "second fact"})
		msg := fails(t, alice, "add_memory", map[string]any{"content": "third fact"})
		if !strings.Contains(msg, "max_memories") || !strings.Contains(msg, "at most 2 memories") {
			t.Errorf("quota error %q does not name max_memories and its size", msg)
		}
		bob := connect(t, f.url, f.keys["bob"])
		ok[addOut](t, bob, "add_memory", map[string]any{"content": strings.Repeat("b", 30)})
		msg = fails(t, bob, "add_memory", map[string]any{"content": strings.Repeat("c", 30)})
		if !strings.Contains(msg, "max_bytes") || !strings.Contains(msg, "at most 40 bytes") {
			t.Errorf("quota error %q does not name max_bytes and its size", msg)
		}
		if got := storage(t, a, "acme", "globex"); got["acme"] != 2 || got["globex"] != 1 {
			t.Errorf("stored %v, want acme 2, globex 1", got)
		}
	})
}

// TestHTTPAuditAndUsage checks that writes, purges and failed logins are
// audited with their source address, and that calls are counted per org.
func TestHTTPAuditAndUsage(t *testing.T) {
	forEachKeyBackend(t, func(t *testing.T, a *app.App, admin store.KeyAdmin) {
		f := newFortress(t, a, admin, nil)
		alice := connect(t, f.url, f.keys["alice"])
		m := ok[addOut](t, alice, "add_memory", map[string]any{"content": "audit me"})
		ok[map[string]any](t, alice, "update_memory", map[string]any{"id": m.ID, "content": "audit me again"})
		ok[map[string]any](t, alice, "delete_memory", map[string]any{"id": m.ID})
		ok[addOut](t, alice, "add_memory", map[string]any{"content": "to be purged", "scope": "team:api"})
		ok[map[string]any](t, alice, "purge", map[string]any{"scope": "team:api", "confirm": "team:api"})
		f.do(t, attackReq{header: map[string]string{"Authorization": "Bearer " + f.keys["revoked"]}, body: mcpCall("list_scopes", nil)})
		f.do(t, attackReq{header: map[string]string{"Authorization": "Bearer garbage"}, body: mcpCall("list_scopes", nil)})

		// Every write is recorded once, with the caller's address: by the
		// store inside the write's transaction where it audits its own
		// writes (PostgreSQL: one row per scope written, so an add names
		// no memory id and a delete its scope), else by the HTTP server.
		type row struct{ Action, Actor, Scope, Target, Source string }
		want := []row{
			{"add", "alice", "user:alice", m.ID, "127.0.0.1"},
			{"update", "alice", "user:alice", m.ID, "127.0.0.1"},
			{"delete", "alice", "", m.ID, "127.0.0.1"},
			{"add", "alice", "team:api", "", "127.0.0.1"},
			{"purge", "alice", "", "team:api", "127.0.0.1"},
			{"auth_failure", "", "", "", "127.0.0.1"},
		}
		if wa, ok := a.BaseStore().(store.WriteAuditor); ok && wa.AuditsWrites() {
			want[0].Target = ""
			want[2].Scope = "user:alice"
			want[4].Scope = "team:api"
		}
		var got []row
		deadline := time.Now().Add(5 * time.Second)
		for {
			events, err := admin.AuditLog(t.Context(), "acme", time.Now().Add(-time.Hour), 100)
			if err != nil {
				t.Fatalf("AuditLog: %v", err)
			}
			got = got[:0]
			for _, e := range events {
				r := row{e.Action, e.Actor, e.Scope, e.Target, e.Source}
				if e.Action == "add" && e.Scope == "team:api" {
					r.Target = ""
				}
				got = append(got, r)
			}
			if len(got) >= len(want) || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("acme's audit log (-want +got):\n%s", diff)
		}
		// The failed login of an unknown org is flushed on its own, maybe
		// after acme's rows: wait for it too.
		var (
			unknown []store.AuditEvent
			err     error
		)
		for deadline := time.Now().Add(5 * time.Second); ; {
			if unknown, err = admin.AuditLog(t.Context(), "", time.Now().Add(-time.Hour), 100); err != nil {
				t.Fatal(err)
			}
			if slices.ContainsFunc(unknown, func(e store.AuditEvent) bool {
				return e.Action == store.AuditAuthFailure && e.Source == "127.0.0.1" && strings.Contains(e.Detail, "malformed")
			}) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("no audited failed login of unknown org in %+v", unknown)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}

		// Calls are flushed every FlushInterval: initialize and 5 tool calls.
		var u store.Usage
		for deadline := time.Now().Add(5 * time.Second); ; {
			if u, err = admin.Usage(t.Context(), "acme"); err != nil {
				t.Fatalf("Usage: %v", err)
			}
			if u.CallsDay >= 6 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if u.CallsDay < 6 || u.CallsDay != u.Calls30d || u.CallsEver != u.CallsDay || u.Memories != 0 || u.Bytes != 0 {
			t.Errorf("Usage(acme) = %+v, want >= 6 calls today and nothing stored", u)
		}
	})
}

// TestLoadOrgLimits checks the limits file: defaults, per-org overrides,
// negative values meaning unlimited, and unknown keys refused.
func TestLoadOrgLimits(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "limits.json")
	os.WriteFile(good, []byte(`{"default": {"max_memories": 100, "principal": {"rate": 5, "burst": 10}},
		"orgs": {"big": {"max_memories": -1, "max_bytes": 1000}, "slow": {"principal": {"rate": 1}}}}`), 0o600)
	f, err := app.LoadOrgLimits(good)
	if err != nil {
		t.Fatalf("LoadOrgLimits: %v", err)
	}
	for _, tc := range []struct {
		org  string
		want app.OrgLimits
	}{
		{"other", app.OrgLimits{MaxMemories: 100, Principal: app.RateLimit{Rate: 5, Burst: 10}}},
		{"big", app.OrgLimits{MaxBytes: 1000, Principal: app.RateLimit{Rate: 5, Burst: 10}}},
		{"slow", app.OrgLimits{MaxMemories: 100, Principal: app.RateLimit{Rate: 1}}},
	} {
		if diff := cmp.Diff(tc.want, f.For(tc.org)); diff != "" {
			t.Errorf("For(%s) (-want +got):\n%s", tc.org, diff)
		}
	}
	for _, doc := range []string{
		`{"default": {"max_memory": 1}}`,
		// Names in another case: encoding/json alone takes them.
		`{"default": {"Max_Memories": 1}}`,
		`{"orgs": {"big": {"max_memories": 5, "MAX_MEMORIES": -1}}}`,
		`{"default": {"principal": {"Rate": 1}}}`,
	} {
		bad := filepath.Join(dir, "bad.json")
		os.WriteFile(bad, []byte(doc), 0o600)
		if _, err := app.LoadOrgLimits(bad); err == nil {
			t.Errorf("LoadOrgLimits accepted an unknown key: %s", doc)
		}
	}
}

// TestHTTPOrigins checks the Origin rules: no Origin (a non-browser
// client), the server's own origin and an allowed origin pass, with CORS
// headers for the allowed one and its preflight; any other is 403.
func TestHTTPOrigins(t *testing.T) {
	a := newApp(t, nil)
	f := newFortress(t, a, a.BaseStore().(store.KeyAdmin), nil)
	list := mcpCall("list_scopes", nil)
	for _, tc := range []struct {
		name, method, origin string
		status               int
		cors                 bool
	}{
		{"no Origin", "POST", "", 200, false},
		{"same origin", "POST", f.url, 200, true},
		{"allowed origin", "POST", "https://app.example.com", 200, true},
		{"allowed origin preflight", "OPTIONS", "https://app.example.com", 204, true},
		{"foreign origin", "POST", "https://evil.example", 403, false},
		{"foreign origin preflight", "OPTIONS", "https://evil.example", 403, false},
		{"allowed host, other scheme", "POST", "http://app.example.com", 403, false},
		{"localhost on another port", "POST", "http://localhost:1", 403, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{"Authorization": "Bearer " + f.keys["alice"]}
			if tc.origin != "" {
				h["Origin"] = tc.origin
			}
			resp, body := f.do(t, attackReq{method: tc.method, header: h, body: list})
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; %s", resp.StatusCode, tc.status, body)
			}
			if got := tc.origin != "" && resp.Header.Get("Access-Control-Allow-Origin") == tc.origin; got != tc.cors {
				t.Errorf("Access-Control-Allow-Origin = %q, want CORS %v", resp.Header.Get("Access-Control-Allow-Origin"), tc.cors)
			}
		})
	}
}
