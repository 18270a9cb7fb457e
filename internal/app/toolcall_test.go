package app

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/scopemem/scopemem/scope"
)

func TestParsePlainCall(t *testing.T) {
	for _, tc := range []struct {
		line       string
		name, args string // name "": not a plain call
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":1}}}`, "x", `{"a":1}`},
		{` { "params" : { "arguments" : { } , "name" : "search\u005fmemory" } , "id" : "a" , "method" : "tools/call" , "jsonrpc" : "2.0" } `, "search_memory", `{ }`},
		{`{"jsonrpc":"2\u002e0","id":1,"method":"tools/call","params":{"name":"x","arguments":{}}}`, "x", `{}`},
		{`{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{}}}`, "", ""},
		{`{"id":1,"method":"tools/call","params":{"name":"x","arguments":{}}}`, "", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{},"_meta":{"progressToken":1}}}`, "", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{},"task":{"ttl":5}}}`, "", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`, "", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":null}}`, "", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[1]}}`, "", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5,"arguments":{}}}`, "", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","name":"y","arguments":{}}}`, "", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{},"arguments":{}}}`, "", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"x","arguments":{}}}`, "", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","Params":{"name":"x","arguments":{}}}`, "", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{}},"params":{"name":"x","arguments":{}}}`, "", ""},
		{`{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{}}}`, "", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{}},"extra":1}`, "", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[]}`, "", ""},
	} {
		pc, ok := parsePlainCall([]byte(tc.line))
		if got := map[bool]string{true: pc.name}[ok]; got != tc.name || (ok && string(pc.args) != tc.args) {
			t.Errorf("parsePlainCall(%s) = %q %s, %v; want %q %s", tc.line, pc.name, pc.args, ok, tc.name, tc.args)
		}
	}
}

// TestStdioPlainCallsMatchHandleMessage sends the same requests to the
// app's MCP server through HandleMessage and through callTool, over one
// store, and wants the same answer, byte for byte, from both; and wants
// callTool to take the plain calls of registered tools and leave the
// others.
func TestStdioPlainCallsMatchHandleMessage(t *testing.T) {
	a, err := New(t.Context(), Config{DBPath: t.TempDir() + "/m.db", Embedder: "builtin", JanitorInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	id := scope.Identity{Org: "acme", User: "alice", Teams: []string{"api"}, Agent: "coder", Permissions: scope.AllPermissions}
	ctx := scope.WithIdentity(t.Context(), id)
	mws := a.toolMiddlewares()

	call := func(id, tool, args string) string {
		return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"` + tool + `","arguments":` + args + `}}`
	}
	for i, c := range []string{
		"Alice prefers dark mode <in> every editor & terminal",
		"The deploy key rotates every \"90\" days\u2028per policy",
		"Build with go 1.26; run tests with -race",
	} {
		args, _ := json.Marshal(map[string]any{"content": c, "tags": []string{"seed"}})
		resp, ok := callTool(ctx, a.MCP, mws, json.RawMessage("1"), mustPlain(t, call("1", "add_memory", string(args))))
		if r, isResp := resp.(mcp.JSONRPCResponse); !ok || !isResp || r.Result.(*mcp.CallToolResult).IsError {
			t.Fatalf("seed %d: %v %+v", i, ok, resp)
		}
	}
	search := `{"query":"which editor theme & keys <rotate>?","limit":5}`
	for _, tc := range []struct {
		name  string
		line  string
		taken bool
	}{
		{"search", call("7", "search_memory", search), true},
		{"search, string id", call(`"abc\"<d>"`, "search_memory", search), true},
		{"search, float id", call("7.0", "search_memory", search), true},
		{"search, large id", call("12345678901234567890", "search_memory", search), true},
		{"search in a scope", call("8", "search_memory", `{"query":"deploy key","scopes":["user","team:api"],"tags":["seed"]}`), true},
		{"search of another team", call("9", "search_memory", `{"query":"deploy key","scopes":["team:web"]}`), true},
		{"search with org_id", call("10", "search_memory", `{"query":"x","org_id":"globex"}`), true},
		{"argument name in another case", call("11", "search_memory", `{"Query":"x"}`), true},
		{"argument of the wrong type", call("12", "search_memory", `{"query":5}`), true},
		{"argument name with escapes", call("13", "search_memory", `{"qu\u0065ry":"deploy key"}`), true},
		{"tool name with escapes", call("14", `search\u005fmemory`, search), true},
		{"list_scopes", call("15", "list_scopes", `{}`), true},
		{"duplicate add", call("16", "add_memory", `{"content":"Build with go 1.26; run tests with -race"}`), true},
		{"empty content", call("17", "add_memory", `{"content":""}`), true},
		{"invalid UTF-8 in content", call("18", "add_memory", "{\"content\":\"a\xffb\"}"), true},
		{"unknown tool", call("19", "no_such_tool", `{}`), false},
		{"_meta", `{"jsonrpc":"2.0","id":20,"method":"tools/call","params":{"name":"list_scopes","arguments":{},"_meta":{"progressToken":"p"}}}`, false},
		{"modern _meta", `{"jsonrpc":"2.0","id":21,"method":"tools/call","params":{"name":"list_scopes","arguments":{},"_meta":{"` +
			mcp.MetaKeyProtocolVersion + `":"` + mcp.ProtocolVersion20260728 + `"}}}`, false},
		{"no arguments", `{"jsonrpc":"2.0","id":22,"method":"tools/call","params":{"name":"list_scopes"}}`, false},
		{"wrong JSON-RPC version", `{"jsonrpc":"1.0","id":23,"method":"tools/call","params":{"name":"list_scopes","arguments":{}}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := appendMessage(nil, a.MCP.HandleMessage(ctx, json.RawMessage(tc.line)))
			if err != nil {
				t.Fatal(err)
			}
			id, ok := toolCallID([]byte(tc.line))
			if !ok {
				t.Fatalf("toolCallID(%s) = false", tc.line)
			}
			var resp mcp.JSONRPCMessage
			pc, plain := parsePlainCall([]byte(tc.line))
			if plain {
				resp, plain = callTool(ctx, a.MCP, mws, id, pc)
			}
			if plain != tc.taken {
				t.Fatalf("taken: %v, want %v", plain, tc.taken)
			}
			if !plain {
				return
			}
			got, err := appendMessage(nil, resp)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("callTool's answer:\n%s\nHandleMessage's:\n%s", got, want)
			}
			if tc.name == "search" && !strings.Contains(string(got), `dark mode \u003cin\u003e every editor \u0026`) {
				t.Errorf("search answer does not hold the seeded memory: %s", got)
			}
		})
	}
}

func mustPlain(t *testing.T, line string) plainCall {
	t.Helper()
	pc, ok := parsePlainCall([]byte(line))
	if !ok {
		t.Fatalf("parsePlainCall(%s) = false", line)
	}
	return pc
}

// TestCallToolHandlerFailures wants a handler's panic, error or missing
// result answered as HandleMessage answers it, on a server with mcp-go's
// WithRecovery against callTool with recoverToolPanics.
func TestCallToolHandlerFailures(t *testing.T) {
	handlers := map[string]server.ToolHandlerFunc{
		"panics": func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) { panic("boom <1>") },
		"fails": func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return nil, errors.New("no \"luck\"")
		},
		"no_result": func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) { return nil, nil },
		"echo": func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText(string(req.Params.RawArguments) + " " + req.GetString("a", "?")), nil
		},
	}
	build := func(opts ...server.ServerOption) *server.MCPServer {
		s := server.NewMCPServer("t", "1", append([]server.ServerOption{server.WithToolCapabilities(false)}, opts...)...)
		for name, h := range handlers {
			s.AddTool(mcp.NewTool(name), h)
		}
		return s
	}
	theirs, ours := build(server.WithRecovery()), build()
	for name := range handlers {
		t.Run(name, func(t *testing.T) {
			line := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"` + name + `","arguments":{"a": "b"}}}`
			want, err := appendMessage(nil, theirs.HandleMessage(t.Context(), json.RawMessage(line)))
			if err != nil {
				t.Fatal(err)
			}
			resp, ok := callTool(t.Context(), ours, []server.ToolHandlerMiddleware{recoverToolPanics}, json.RawMessage("3"), mustPlain(t, line))
			if !ok {
				t.Fatal("callTool did not take the call")
			}
			got, err := appendMessage(nil, resp)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("callTool's answer:\n%s\nHandleMessage's:\n%s", got, want)
			}
		})
	}
}

// TestStdioCancelledCall wants a plain call that a client cancels
// (notifications/cancelled) to end at once: the search waits for an
// embedder that takes a minute.
func TestStdioCancelledCall(t *testing.T) {
	a, err := New(t.Context(), Config{DBPath: t.TempDir() + "/m.db", Embedder: "fake", FakeDims: 8, FakeDelay: time.Minute, JanitorInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	served := make(chan error, 1)
	go func() {
		served <- a.ServeStdio(context.Background(), scope.Identity{Org: "acme", User: "alice", Permissions: scope.AllPermissions}, inR, outW)
		outW.Close()
	}()
	lines := bufio.NewScanner(outR)
	lines.Buffer(nil, 1<<20)
	send := func(line string) {
		t.Helper()
		if _, err := io.WriteString(inW, line+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	if !lines.Scan() {
		t.Fatal("no answer to initialize")
	}
	send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	for _, id := range []string{"2", `"two"`} {
		send(`{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"search_memory","arguments":{"query":"anything"}}}`)
		time.Sleep(50 * time.Millisecond) // the call is waiting for its embedding
		began := time.Now()
		send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":` + id + `,"reason":"user"}}`)
		if !lines.Scan() {
			t.Fatalf("no answer to call %s", id)
		}
		var resp struct {
			ID     json.RawMessage
			Result mcp.CallToolResult
		}
		if err := json.Unmarshal(lines.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		if string(resp.ID) != id || !resp.Result.IsError || !slices.ContainsFunc(resp.Result.Content, func(c mcp.Content) bool {
			tc, ok := c.(mcp.TextContent)
			return ok && strings.Contains(tc.Text, "cancelled")
		}) {
			t.Errorf("answer to the cancelled call %s: %s", id, lines.Bytes())
		}
		if d := time.Since(began); d > 10*time.Second {
			t.Errorf("the cancelled call %s ended %s after its cancellation", id, d)
		}
	}
	inW.Close()
	if err := <-served; err != nil {
		t.Errorf("ServeStdio = %v", err)
	}
}
