package app_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"

	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/tools"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logLines decodes JSON log lines.
func logLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(log), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// withRequestID returns the log lines whose request_id is id.
func withRequestID(lines []map[string]any, id string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["request_id"] == id {
			out = append(out, l)
		}
	}
	return out
}

// newLoggedApp builds an App whose debug-level JSON log goes to the
// returned buffer, through app.LogHandler as the serve command does.
func newLoggedApp(t *testing.T) (*app.App, *syncBuffer) {
	t.Helper()
	var buf syncBuffer
	logger := slog.New(app.LogHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	return newApp(t, func(c *app.Config) {
		c.Logger = logger
		c.Limits = tools.Limits{MaxContentBytes: 200}
	}), &buf
}

// TestLogsCarryRequestIDsAndNoSecrets runs successful and failing tool
// calls and refused tokens over HTTP, and checks that their log lines
// carry the request id while no memory content, query or token appears in
// the log.
func TestLogsCarryRequestIDsAndNoSecrets(t *testing.T) {
	a, log := newLoggedApp(t)
	ts := httpServer(t, a)
	tok := token(t, "acme", "alice", []string{"api"}, allPerms...)
	const reqID = "client-req-0001"
	c, err := client.NewStreamableHttpClient(ts.URL+"/mcp", transport.WithHTTPHeaders(map[string]string{
		"Authorization": "Bearer " + tok, app.RequestIDHeader: reqID,
	}))
	if err != nil {
		t.Fatal(err)
	}
	initialize(t, c)

	secrets := []string{
		"the vault code is PLUM-4417-ORCHID",
		"SEARCHED-FOR-WALRUS-TOPIC",
		"update to KESTREL-9921 never stored",
		"forbidden team write QUINCE-0088",
		strings.Repeat("OVERSIZED-LYNX ", 20),
	}
	ok[addOut](t, c, "add_memory", map[string]any{"content": secrets[0]})
	ok[searchOut](t, c, "search_memory", map[string]any{"query": secrets[1]})
	fails(t, c, "update_memory", map[string]any{"id": "00000000-0000-0000-0000-000000000000", "content": secrets[2]})
	fails(t, c, "add_memory", map[string]any{"content": secrets[3], "scope": "team:not-mine"})
	fails(t, c, "add_memory", map[string]any{"content": secrets[4]})
	fails(t, c, "delete_memory", map[string]any{"id": "not-a-memory-id"})

	// Refused tokens: one signed with another key, one that is not a JWT.
	forged, err := scope.MintHS256([]byte("another-secret-another-secret-another"), map[string]any{"iss": "test-issuer", "aud": "scopemem-test", "sub": "mallory", "org_id": "acme"})
	if err != nil {
		t.Fatal(err)
	}
	badTokens := []string{forged, "smk_live_NOT-A-REAL-KEY-7731", "garbage.TOKEN-PIECE.x"}
	for i, bad := range badTokens {
		id := []string{"bad-token-1", "bad-token-2", "bad-token-3"}[i]
		req, _ := http.NewRequestWithContext(t.Context(), "POST", ts.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+bad)
		req.Header.Set(app.RequestIDHeader, id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("bad token %d: status %d, want 401", i, resp.StatusCode)
		}
		if got := resp.Header.Get(app.RequestIDHeader); got != id {
			t.Errorf("bad token %d: response %s = %q, want the request's %q", i, app.RequestIDHeader, got, id)
		}
	}

	text := log.String()
	lines := logLines(t, text)
	for _, s := range append(append(secrets, tok), badTokens...) {
		needle := strings.TrimSpace(s)
		if len(needle) > 40 {
			needle = needle[:40]
		}
		if strings.Contains(text, needle) {
			t.Errorf("the log contains %q:\n%s", needle, text)
		}
	}
	for _, part := range strings.Split(tok, ".") {
		if strings.Contains(text, part) {
			t.Errorf("the log contains a part of the token (%.20s...)", part)
		}
	}
	failed := 0
	for _, l := range withRequestID(lines, reqID) {
		if l["msg"] == "tool call failed" {
			failed++
		}
	}
	if failed != 4 {
		t.Errorf("%d tool call failures logged with request_id %q, want 4; log:\n%s", failed, reqID, text)
	}
	audited := 0
	for _, l := range withRequestID(lines, reqID) {
		if l["msg"] == "audit" && l["action"] == "add" {
			audited++
		}
	}
	if audited != 1 {
		t.Errorf("%d audit lines of the add logged with request_id %q, want 1; log:\n%s", audited, reqID, text)
	}
	for _, id := range []string{"bad-token-1", "bad-token-2", "bad-token-3"} {
		if len(withRequestID(lines, id)) < 2 { // the refusal and its audit line
			t.Errorf("no log line carries request_id %q; log:\n%s", id, text)
		}
	}
}

// TestRequestIDHeader checks that an unusable incoming X-Request-Id is
// replaced by a generated one, and that every request gets one.
func TestRequestIDHeader(t *testing.T) {
	ts := httpServer(t, newApp(t, nil))
	for _, tc := range []struct {
		name, in string
		kept     bool
	}{
		{"absent", "", false},
		{"kept", "abc-123_XYZ.7", true},
		{"space", "two words", false},
		{"too long", strings.Repeat("a", 65), false},
		{"longest kept", strings.Repeat("b", 64), true},
		{"non-ASCII", "idé", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), "POST", ts.URL+"/mcp", strings.NewReader(`{}`))
			if tc.in != "" {
				req.Header.Set(app.RequestIDHeader, tc.in)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := resp.Header.Get(app.RequestIDHeader)
			switch {
			case tc.kept && got != tc.in:
				t.Errorf("%s = %q, want the client's %q", app.RequestIDHeader, got, tc.in)
			case !tc.kept && (len(got) != 16 || strings.Trim(got, "0123456789abcdef") != ""):
				t.Errorf("%s = %q, want 16 generated hex digits", app.RequestIDHeader, got)
			}
		})
	}
}

// TestStdioCallsGetAnID checks that over stdio each tool call's log lines
// carry an id of that call.
func TestStdioCallsGetAnID(t *testing.T) {
	a, log := newLoggedApp(t)
	in := strings.Join([]string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"update_memory","arguments":{"id":"00000000-0000-0000-0000-000000000000","content":"STDIO-SECRET-HERON"}}}`,
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"delete_memory","arguments":{"id":"00000000-0000-0000-0000-000000000001"}}}`,
	}, "\n") + "\n"
	var out bytes.Buffer
	id := scope.Identity{Org: "local", User: "u", Session: "stdio-test", Permissions: scope.AllPermissions}
	if err := a.ServeStdio(t.Context(), id, strings.NewReader(in), &out); err != nil {
		t.Fatalf("ServeStdio: %v", err)
	}
	responses := 0
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		responses++
	}
	if responses != 3 {
		t.Fatalf("%d responses, want 3:\n%s", responses, out.String())
	}
	text := log.String()
	if strings.Contains(text, "STDIO-SECRET-HERON") {
		t.Errorf("the log contains memory content:\n%s", text)
	}
	ids := map[string]bool{}
	for _, l := range logLines(t, text) {
		if l["msg"] != "tool call failed" {
			continue
		}
		rid, _ := l["request_id"].(string)
		if !strings.HasPrefix(rid, "call-") {
			t.Errorf("tool failure logged with request_id %q, want call-...", rid)
		}
		ids[rid] = true
	}
	if len(ids) != 2 {
		t.Errorf("%d distinct call ids on the failures of 2 calls, want 2; log:\n%s", len(ids), text)
	}
}
