package app_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/internal/app"
)

// TestHTTPToolCallsMatchTransport sends the same requests to a server
// that answers tools/call directly and to one that sends every request
// through mcp-go's transport, over one store, and wants the same status,
// content type and body, byte for byte, from both; and wants the
// requests the direct path is meant to take taken, and the others left
// to the transport.
func TestHTTPToolCallsMatchTransport(t *testing.T) {
	a := newApp(t, nil)
	direct := httpServer(t, a)
	viaTransport := httpServerWith(t, a, app.HTTPConfig{TransportCalls: true})

	tok := token(t, "acme", "alice", nil, allPerms...)
	seed := connect(t, direct.URL, tok)
	for _, c := range []string{
		"Alice prefers dark mode <in> every editor & terminal",
		"The deploy key rotates every \"90\" days\u2028per policy",
		"Build with go 1.26; run tests with -race",
	} {
		ok[map[string]any](t, seed, "add_memory", map[string]any{"content": c, "tags": []string{"seed"}})
	}

	const (
		session = "mcp-session-3f1c1a52-8a3e-4a43-9c55-0c6f2f0c9b11"
		legacy  = "2025-06-18"
		modern  = mcp.ProtocolVersion20260728
	)
	call := func(id, tool, args, meta string) string {
		switch meta {
		case "":
		case "full":
			// What a 2026-07-28 client sends: version, client and
			// capabilities.
			meta = `,"_meta":{"` + mcp.MetaKeyProtocolVersion + `":"` + modern + `","` + mcp.MetaKeyClientInfo +
				`":{"name":"probe","version":"1.0"},"` + mcp.MetaKeyClientCapabilities + `":{}}`
		default:
			meta = `,"_meta":{"` + mcp.MetaKeyProtocolVersion + `":"` + meta + `"}`
		}
		return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"` + tool + `","arguments":` + args + meta + `}}`
	}
	legacyHeaders := map[string]string{mcp.HeaderProtocolVersion: legacy, "Mcp-Session-Id": session}
	modernHeaders := func(tool string) map[string]string {
		return map[string]string{mcp.HeaderProtocolVersion: modern, mcp.HeaderMethod: "tools/call", mcp.HeaderName: tool}
	}
	with := func(h map[string]string, k, v string) map[string]string {
		out := map[string]string{}
		for k, v := range h {
			out[k] = v
		}
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}
	search := `{"query":"which editor theme & keys <rotate>?","limit":5}`
	tests := []struct {
		name    string
		headers map[string]string
		ctype   string
		body    string
		taken   bool
		direct  bool // answered by the tool's handler, without HandleMessage
	}{
		{"legacy search", legacyHeaders, "", call("7", "search_memory", search, ""), true, true},
		{"legacy list_scopes", legacyHeaders, "", call(`"abc"`, "list_scopes", `{}`, ""), true, true},
		{"legacy without version or session", nil, "", call("1", "list_scopes", `{}`, ""), true, true},
		{"legacy duplicate add", legacyHeaders, "", call("2", "add_memory", `{"content":"Build with go 1.26; run tests with -race"}`, ""), true, true},
		{"legacy empty content", legacyHeaders, "", call("3", "add_memory", `{"content":""}`, ""), true, true},
		{"legacy wrong argument type", legacyHeaders, "", call("4", "search_memory", `{"query":5}`, ""), true, true},
		{"legacy arguments not an object", legacyHeaders, "", call("4", "search_memory", `"deploy"`, ""), true, false},
		{"legacy another JSON-RPC version", legacyHeaders, "", strings.Replace(call("4", "list_scopes", `{}`, ""), `"2.0"`, `"1.0"`, 1), true, false},
		{"legacy member of another case", legacyHeaders, "", strings.Replace(call("4", "list_scopes", `{}`, ""), `"arguments"`, `"Arguments"`, 1), true, false},
		{"legacy unknown tool", legacyHeaders, "", call("5", "no_such_tool", `{}`, ""), false, false},
		{"legacy unknown version", with(legacyHeaders, mcp.HeaderProtocolVersion, "1999-01-01"), "", call("6", "list_scopes", `{}`, ""), false, false},
		{"legacy malformed session", with(legacyHeaders, "Mcp-Session-Id", "mcp-session-nope"), "", call("6", "list_scopes", `{}`, ""), false, false},
		{"modern search", modernHeaders("search_memory"), "", call("8", "search_memory", search, "full"), true, true},
		{"modern add", modernHeaders("add_memory"), "", call("8", "add_memory", `{"content":"Build with go 1.26; run tests with -race"}`, "full"), true, true},
		{"modern search, _meta without capabilities", modernHeaders("search_memory"), "", call("8", "search_memory", search, modern), true, false},
		{"modern invalid params", modernHeaders("search_memory"), "", call("9", "search_memory", `{"limit":"x"}`, "full"), true, true},
		{"modern without Mcp-Name", with(modernHeaders("search_memory"), mcp.HeaderName, ""), "", call("10", "search_memory", search, modern), false, false},
		{"modern Mcp-Name of another tool", modernHeaders("list_scopes"), "", call("11", "search_memory", search, modern), false, false},
		{"modern without _meta version", modernHeaders("list_scopes"), "", call("12", "list_scopes", `{}`, ""), false, false},
		{"modern header missing", with(modernHeaders("list_scopes"), mcp.HeaderProtocolVersion, ""), "", call("13", "list_scopes", `{}`, modern), false, false},
		{"modern with Last-Event-ID", with(modernHeaders("list_scopes"), mcp.HeaderLastEventID, "1"), "", call("14", "list_scopes", `{}`, modern), false, false},
		{"charset in content type", legacyHeaders, "application/json; charset=utf-8", call("15", "list_scopes", `{}`, ""), false, false},
		{"null id", legacyHeaders, "", call("null", "list_scopes", `{}`, ""), false, false},
		{"method of the wrong type", legacyHeaders, "", `{"jsonrpc":"2.0","id":1,"method":5}`, false, false},
		{"not JSON", legacyHeaders, "", `{"jsonrpc":"2.0","id":1,"method":"tools/call",`, false, false},
		{"tools/list", legacyHeaders, "", `{"jsonrpc":"2.0","id":16,"method":"tools/list"}`, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, beforeDirect := app.HTTPCallsTaken(), app.HTTPCallsDirect()
			gotStatus, gotType, got := post(t, direct.URL, tok, tc.ctype, tc.headers, tc.body)
			if taken := app.HTTPCallsTaken() > before; taken != tc.taken {
				t.Errorf("answered without the transport: %v, want %v", taken, tc.taken)
			}
			if direct := app.HTTPCallsDirect() > beforeDirect; direct != tc.direct {
				t.Errorf("answered by the tool's handler: %v, want %v", direct, tc.direct)
			}
			wantStatus, wantType, want := post(t, viaTransport.URL, tok, tc.ctype, tc.headers, tc.body)
			if gotStatus != wantStatus || gotType != wantType || !bytes.Equal(got, want) {
				t.Errorf("direct answer:\n%d %s %s\ntransport's:\n%d %s %s", gotStatus, gotType, got, wantStatus, wantType, want)
			}
			if tc.name == "legacy search" && !bytes.Contains(got, []byte(`dark mode \u003cin\u003e every editor \u0026`)) {
				t.Errorf("search answer does not hold the seeded memory: %s", got)
			}
		})
	}
}

// post sends body to url's /mcp with tok and headers, and returns the
// status, content type and body of the answer.
func post(t *testing.T, url, tok, ctype string, headers map[string]string, body string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/mcp", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype == "" {
		ctype = "application/json"
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}
