package app

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/scopemem/scopemem/scope"
)

func TestReadStdioCallPlain(t *testing.T) {
	for _, tc := range []struct {
		line       string
		name, args string // name "": not a plain call
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":1}}}`, "x", `{"a":1}`},
		{` { "params" : { "arguments" : { } , "name" : "search\u005fmemory" } , "id" : "a" , "method" : "tools/call" , "jsonrpc" : "2.0" } `, "search_memory", `{ }`},
		{`{"jsonrpc":"2\u002e0","id":1,"method":"tools/call","params":{"name":"x","arguments":{}}}`, "x", `{}`},
		{`{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{}}}`, "", ""},
		{`{"id":1,"method":"tools/call","params":{"name":"x","arguments":{}}}`, "", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{},"_meta":{"progressToken":1}}}`, "x", `{}`},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{},"_meta":{},"_meta":{}}}`, "", ""},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{},"_meta":null}}`, "", ""},
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
		_, pc, call := readStdioCall([]byte(tc.line))
		ok := call && pc.args != nil
		if !call || (!ok && (pc.name != "" || pc.meta != nil)) {
			t.Errorf("readStdioCall(%s) = %+v, %v: a tool call, with nothing of a call that is not plain", tc.line, pc, call)
		}
		if got := map[bool]string{true: pc.name}[ok]; got != tc.name || (ok && string(pc.args) != tc.args) {
			t.Errorf("readStdioCall(%s) = %q %s, %v; want %q %s", tc.line, pc.name, pc.args, ok, tc.name, tc.args)
		}
	}
}

// TestStdioPlainCallsMatchHandleMessage sends the same requests to the
// app's MCP server through HandleMessage and through callDirect, over one
// store, each path in a session of its own, and wants the same answer,
// byte for byte, and the same client information in the sessions
// afterwards; and wants callDirect to take the plain calls of registered
// tools and leave the others.
func TestStdioPlainCallsMatchHandleMessage(t *testing.T) {
	a, err := New(t.Context(), Config{DBPath: t.TempDir() + "/m.db", Embedder: "builtin", JanitorInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	id := scope.Identity{Org: "acme", User: "alice", Teams: []string{"api"}, Agent: "coder", Permissions: scope.AllPermissions}
	theirs, ours := &testSession{id: "s1"}, &testSession{id: "s2"}
	viaMCP := a.MCP.WithContext(scope.WithIdentity(t.Context(), id), theirs)
	direct := a.MCP.WithContext(scope.WithIdentity(t.Context(), id), ours)
	c := newDirectCalls(a.MCP, serverImplementation(), a.toolMiddlewares(), nil, nil, nil)

	call := func(id, tool, args string) string {
		return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"` + tool + `","arguments":` + args + `}}`
	}
	withMeta := func(id, tool, args, meta string) string {
		return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"` + tool + `","arguments":` + args + `,"_meta":` + meta + `}}`
	}
	modern := func(client string, caps string) string {
		return `{"` + mcp.MetaKeyProtocolVersion + `":"` + mcp.ProtocolVersion20260728 + `","` + mcp.MetaKeyClientInfo + `":{"name":"` + client +
			`","version":"1.0"}` + caps + `}`
	}
	capsKey := `,"` + mcp.MetaKeyClientCapabilities + `":`
	for i, text := range []string{
		"Alice prefers dark mode <in> every editor & terminal",
		"The deploy key rotates every \"90\" days\u2028per policy",
		"Build with go 1.26; run tests with -race",
	} {
		args, _ := json.Marshal(map[string]any{"content": text, "tags": []string{"seed"}})
		id, pc := readCall(t, call("1", "add_memory", string(args)))
		resp, ok := c.callDirect(direct, id, pc)
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
		{"progress token", withMeta("19", "list_scopes", `{}`, `{"progressToken":"p"}`), true},
		{"legacy version in _meta", withMeta("20", "search_memory", search, `{"`+mcp.MetaKeyProtocolVersion+`":"2025-11-25"}`), true},
		{"version of the wrong type", withMeta("21", "list_scopes", `{}`, `{"`+mcp.MetaKeyProtocolVersion+`":5}`), true},
		{"modern search", withMeta("22", "search_memory", search, modern("one", capsKey+`{}`)), true},
		{"modern search again", withMeta("23", "search_memory", search, modern("one", capsKey+`{}`)), true},
		{"modern, another client", withMeta("24", "list_scopes", `{}`, modern("two", capsKey+`{"roots":{"listChanged":true}}`)), true},
		{"modern tool error", withMeta("25", "add_memory", `{"content":" "}`, modern("two", capsKey+`{"roots":{"listChanged":true}}`)), true},
		{"modern without capabilities", withMeta("26", "list_scopes", `{}`, modern("three", "")), false},
		{"modern, capabilities of the wrong type", withMeta("27", "list_scopes", `{}`, modern("three", capsKey+`[]`)), false},
		{"unknown modern version", withMeta("28", "list_scopes", `{}`, `{"`+mcp.MetaKeyProtocolVersion+`":"2099-01-01","`+
			mcp.MetaKeyClientCapabilities+`":{}}`), false},
		{"unknown tool", call("29", "no_such_tool", `{}`), false},
		{"modern unknown tool", withMeta("30", "no_such_tool", `{}`, modern("one", capsKey+`{}`)), false},
		{"no arguments", `{"jsonrpc":"2.0","id":31,"method":"tools/call","params":{"name":"list_scopes"}}`, false},
		{"wrong JSON-RPC version", `{"jsonrpc":"1.0","id":32,"method":"tools/call","params":{"name":"list_scopes","arguments":{}}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := appendMessage(nil, a.MCP.HandleMessage(viaMCP, json.RawMessage(tc.line)))
			if err != nil {
				t.Fatal(err)
			}
			id, pc := readCall(t, tc.line)
			resp, taken := c.callDirect(direct, id, pc)
			if taken != tc.taken {
				t.Fatalf("taken: %v, want %v", taken, tc.taken)
			}
			if !taken {
				return
			}
			got, err := appendMessage(nil, resp)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("callDirect's answer:\n%s\nHandleMessage's:\n%s", got, want)
			}
			if tc.name == "search" && !strings.Contains(string(got), `dark mode \u003cin\u003e every editor \u0026`) {
				t.Errorf("search answer does not hold the seeded memory: %s", got)
			}
			if g, w := ours.state(), theirs.state(); g != w {
				t.Errorf("session after callDirect: %s\nafter HandleMessage: %s", g, w)
			}
		})
	}
	if s := ours.state(); !strings.Contains(s, `"two"`) || !strings.Contains(s, "listChanged") {
		t.Errorf("session after the modern calls: %s", s)
	}
}

// readCall reads line as take does: the call's id decoded, and the call.
func readCall(t *testing.T, line string) (any, plainCall) {
	t.Helper()
	rawID, pc, ok := readStdioCall([]byte(line))
	var id any
	if !ok || json.Unmarshal(rawID, &id) != nil {
		t.Fatalf("readStdioCall(%s) = %s, %v", line, rawID, ok)
	}
	return id, pc
}

// testSession is a session that keeps what modern requests tell it.
type testSession struct {
	id          string
	mu          sync.Mutex
	initialized bool
	info        mcp.Implementation
	caps        mcp.ClientCapabilities
}

func (s *testSession) SessionID() string { return s.id }
func (s *testSession) NotificationChannel() chan<- mcp.JSONRPCNotification {
	return make(chan mcp.JSONRPCNotification, 1)
}
func (s *testSession) Initialize() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initialized = true
}
func (s *testSession) Initialized() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.initialized
}
func (s *testSession) GetClientInfo() mcp.Implementation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info
}
func (s *testSession) SetClientInfo(info mcp.Implementation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.info = info
}
func (s *testSession) GetClientCapabilities() mcp.ClientCapabilities {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.caps
}
func (s *testSession) SetClientCapabilities(caps mcp.ClientCapabilities) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.caps = caps
}

// state is what the session was told, as JSON.
func (s *testSession) state() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, _ := json.Marshal(map[string]any{"initialized": s.initialized, "info": s.info, "caps": s.caps})
	return string(b)
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
	c := newDirectCalls(ours, mcp.Implementation{Name: "t", Version: "1"}, []server.ToolHandlerMiddleware{recoverToolPanics}, nil, nil, nil)
	meta := map[string]string{
		"legacy": "",
		"modern": `,"_meta":{"` + mcp.MetaKeyProtocolVersion + `":"` + mcp.ProtocolVersion20260728 + `","` + mcp.MetaKeyClientCapabilities + `":{}}`,
	}
	for name := range handlers {
		for era, m := range meta {
			t.Run(name+"/"+era, func(t *testing.T) {
				line := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"` + name + `","arguments":{"a": "b"}` + m + `}}`
				want, err := appendMessage(nil, theirs.HandleMessage(t.Context(), json.RawMessage(line)))
				if err != nil {
					t.Fatal(err)
				}
				id, pc := readCall(t, line)
				resp, ok := c.callDirect(t.Context(), id, pc)
				if !ok {
					t.Fatal("callDirect did not take the call")
				}
				got, err := appendMessage(nil, resp)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != string(want) {
					t.Errorf("callDirect's answer:\n%s\nHandleMessage's:\n%s", got, want)
				}
			})
		}
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

// FuzzReadStdioCallPlain wants every plain call readStdioCall reads to be what
// mcp-go decodes the same way: a request of JSON-RPC 2.0 with the same
// tool name, the same arguments and _meta, and no task.
func FuzzReadStdioCallPlain(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":1}}}`,
		` { "params" : { "arguments" : { } , "name" : "search\u005fmemory", "_meta": {"progressToken": 1} } , "id" : "a" , "method" : "tools/call" , "jsonrpc" : "2.0" } `,
		`{"jsonrpc":"2\u002e0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"b":"}{\"]"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{},"task":{"ttl":5}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		_, pc, ok := readStdioCall(line)
		if !ok || pc.args == nil {
			return
		}
		var req struct {
			JSONRPC string `json:"jsonrpc"`
			mcp.CallToolRequest
		}
		var meta struct {
			Params struct {
				Meta json.RawMessage `json:"_meta"`
			} `json:"params"`
		}
		if err := json.Unmarshal(line, &req); err != nil {
			t.Fatalf("readStdioCall read %q as a plain call, which mcp-go cannot decode: %v", line, err)
		}
		if err := json.Unmarshal(line, &meta); err != nil {
			t.Fatal(err)
		}
		p := req.Params
		if req.JSONRPC != mcp.JSONRPC_VERSION || p.Name != pc.name || string(p.RawArguments) != string(pc.args) ||
			string(meta.Params.Meta) != string(pc.meta) || p.Task != nil {
			t.Errorf("readStdioCall(%q) = %q %s %s; mcp-go decodes version %q, %q %s %s, task %v",
				line, pc.name, pc.args, pc.meta, req.JSONRPC, p.Name, p.RawArguments, meta.Params.Meta, p.Task)
		}
	})
}

// TestInflightReusedID: a call that reuses the id of one still in flight
// stays cancellable after the first is answered, and a cancellation
// reaches the later call only.
func TestInflightReusedID(t *testing.T) {
	var f inflight
	cancelled := []byte(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}`)
	first, firstDone := f.add(context.Background(), caller{}, float64(7))
	second, secondDone := f.add(context.Background(), caller{}, float64(7))
	defer secondDone()
	firstDone()
	if second.Err() != nil {
		t.Fatalf("the later call was cancelled when the first was answered: %v", second.Err())
	}
	id, ok := cancelledID(cancelled)
	if !ok {
		t.Fatalf("cancelledID(%s) found no request id", cancelled)
	}
	f.cancel(caller{}, id)
	if !errors.Is(second.Err(), context.Canceled) {
		t.Fatalf("the later call was not cancelled: %v", second.Err())
	}
	if !errors.Is(first.Err(), context.Canceled) {
		t.Fatalf("an answered call's context was left open: %v", first.Err())
	}
}
