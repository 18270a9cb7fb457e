package app_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "scopemem-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "scopemem")
	build := exec.Command("go", "build", "-race", "-o", binary, "github.com/scopemem/scopemem/cmd/scopemem")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building scopemem:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// stdioClient starts `scopemem serve` as a child process speaking MCP on its
// stdin and stdout, the way Claude Desktop does.
func stdioClient(t *testing.T, env []string, args ...string) *client.Client {
	t.Helper()
	c, err := client.NewStdioMCPClient(binary, append(os.Environ(), env...), append([]string{"serve"}, args...)...)
	if err != nil {
		t.Fatalf("start scopemem: %v", err)
	}
	initialize(t, c)
	return c
}

func TestStdioToolsEndToEnd(t *testing.T) {
	db := filepath.Join(t.TempDir(), "stdio.db")
	env := []string{"SCOPEMEM_DB=" + db, "SCOPEMEM_EMBEDDER=builtin", "SCOPEMEM_ORG=acme", "SCOPEMEM_USER=alice",
		"SCOPEMEM_TEAMS=api,web", "SCOPEMEM_AGENT=coder", "SCOPEMEM_LOG_LEVEL=debug"}
	c := stdioClient(t, env)

	a := ok[addOut](t, c, "add_memory", map[string]any{"content": "The staging database is called pluto", "tags": []string{"infra"}})
	if a.Scope != "user" {
		t.Errorf("default scope = %q, want user", a.Scope)
	}
	for _, sc := range []string{"session", "agent", "team:api", "org"} {
		m := ok[addOut](t, c, "add_memory", map[string]any{"content": "note kept in " + sc, "scope": sc})
		if m.Scope != sc {
			t.Errorf("add to %s landed in %s", sc, m.Scope)
		}
	}
	ls := ok[scopesOut](t, c, "list_scopes", map[string]any{})
	var names []string
	for _, sc := range ls.Scopes {
		names = append(names, sc.Scope)
	}
	if want := []string{"session", "agent", "user", "team:api", "team:web", "org"}; !slices.Equal(names, want) {
		t.Errorf("list_scopes = %v, want %v", names, want)
	}
	s := ok[searchOut](t, c, "search_memory", map[string]any{"query": "staging database name"})
	if len(s.Results) == 0 || s.Results[0].ID != a.ID {
		t.Errorf("search = %+v, want %s first", s.Results, a.ID)
	}
	ok[map[string]any](t, c, "update_memory", map[string]any{"id": a.ID, "tags": []string{"infra", "db"}})
	p := ok[map[string]any](t, c, "purge", map[string]any{"scope": "agent", "confirm": "agent"})
	if p["total"] != float64(1) {
		t.Errorf("purge agent = %v", p)
	}
	ok[map[string]any](t, c, "delete_memory", map[string]any{"id": a.ID})

	// A second process on the same file (a second Claude window) sees the
	// shared memories but not the first process's session.
	c2 := stdioClient(t, env)
	s = ok[searchOut](t, c2, "search_memory", map[string]any{"query": "note kept in", "limit": 50})
	var scopes []string
	for _, h := range s.Results {
		scopes = append(scopes, h.Scope)
	}
	slices.Sort(scopes)
	if want := []string{"org", "team:api"}; !slices.Equal(scopes, want) {
		t.Errorf("second process sees scopes %v, want %v", scopes, want)
	}
}

func TestStdioConfigFile(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "agent.json", `{"org":"acme","user":"bob","teams":["ops"],"default_scope":"team:ops","permissions":["memory:read","memory:write","memory:share"]}`)
	c := stdioClient(t, []string{"SCOPEMEM_DB=" + filepath.Join(dir, "m.db"), "SCOPEMEM_EMBEDDER=builtin"}, "--config", cfg)
	ls := ok[scopesOut](t, c, "list_scopes", map[string]any{})
	if ls.Org != "acme" || ls.User != "bob" {
		t.Errorf("identity from config file = %s/%s, want acme/bob", ls.Org, ls.User)
	}
	m := ok[addOut](t, c, "add_memory", map[string]any{"content": "ops rotates keys monthly"})
	if m.Scope != "team:ops" {
		t.Errorf("default scope from config = %q, want team:ops", m.Scope)
	}
	if msg := fails(t, c, "purge", map[string]any{"scope": "user", "confirm": "user"}); !strings.Contains(msg, "memory:purge") {
		t.Errorf("purge without permission: %q, want it to name memory:purge", msg)
	}
}

func TestStdioStartupErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		env  []string
	}{
		{"default scope needs share", []string{"--default-scope", "team:ops", "--teams", "ops", "--permissions", "memory:read,memory:write"}, nil},
		{"team not a member", []string{"--default-scope", "team:ops"}, nil},
		{"unknown permission", []string{"--permissions", "memory:everything"}, nil},
		{"bad org", nil, []string{"SCOPEMEM_ORG=a/b"}},
		{"profiles without a metrics address", []string{"--pprof"}, nil},
		{"unknown config key", []string{"--config", writeFile(t, dir, "bad.json", `{"org":"acme","temas":["x"]}`)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(binary, append([]string{"serve", "--db", filepath.Join(dir, "x.db"), "--embedder", "builtin"}, tc.args...)...)
			cmd.Env = append(os.Environ(), tc.env...)
			cmd.Stdin = strings.NewReader("")
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("scopemem started; want a configuration error. Output:\n%s", out)
			}
			if len(strings.TrimSpace(string(out))) == 0 {
				t.Errorf("no explanation printed")
			}
		})
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStdioTwoProcessesLoseNothing runs two stdio servers on one file, each
// adding memories concurrently, and counts every one afterwards.
func TestStdioTwoProcessesLoseNothing(t *testing.T) {
	db := filepath.Join(t.TempDir(), "shared.db")
	env := []string{"SCOPEMEM_DB=" + db, "SCOPEMEM_EMBEDDER=builtin", "SCOPEMEM_ORG=acme", "SCOPEMEM_USER=alice"}
	const perProc = 60
	var wg sync.WaitGroup
	clients := []*client.Client{stdioClient(t, env), stdioClient(t, env)}
	acked := make([][]string, len(clients))
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perProc {
				res := call(t, c, "add_memory", map[string]any{"content": fmt.Sprintf("process %d wrote fact number %d about topic %d", i, j, j*7919%1000)})
				if res.IsError {
					t.Errorf("add failed: %s", text(res))
					continue
				}
				acked[i] = append(acked[i], "x")
			}
		}()
	}
	wg.Wait()
	ls := ok[scopesOut](t, clients[0], "list_scopes", map[string]any{})
	total := 0
	for _, sc := range ls.Scopes {
		total += sc.Count
	}
	if want := len(acked[0]) + len(acked[1]); total != want || want != 2*perProc {
		t.Errorf("stored %d memories, acknowledged %d of %d", total, want, 2*perProc)
	}
}

// TestStdioAnswersEverythingBeforeExiting sends requests and closes stdin at
// once, as a client that exits after its last call does: every request must
// still be answered, the add stored, and the process must exit 0.
func TestStdioAnswersEverythingBeforeExiting(t *testing.T) {
	db := filepath.Join(t.TempDir(), "m.db")
	var in strings.Builder
	in.WriteString(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}` + "\n")
	in.WriteString(`{"jsonrpc":"2.0","method":"notifications/initialized"}` + "\n")
	const adds = 20
	for i := range adds {
		fmt.Fprintf(&in, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"add_memory","arguments":{"content":"fact %d sent just before stdin closed"}}}`+"\n", 100+i, i)
	}
	cmd := exec.Command(binary, "serve", "--db", db, "--embedder", "builtin")
	cmd.Stdin = strings.NewReader(in.String())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scopemem exited with %v; stderr:\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != adds+1 {
		t.Fatalf("got %d responses, want %d:\n%s", len(lines), adds+1, out)
	}
	for _, l := range lines {
		if strings.Contains(l, `"isError":true`) {
			t.Errorf("a call failed: %s", l)
		}
	}
	c := stdioClient(t, []string{"SCOPEMEM_DB=" + db, "SCOPEMEM_EMBEDDER=builtin"})
	ls := ok[scopesOut](t, c, "list_scopes", map[string]any{})
	total := 0
	for _, sc := range ls.Scopes {
		total += sc.Count
	}
	if total != adds {
		t.Errorf("%d memories stored, want %d", total, adds)
	}
}

// TestStdioSlowCallDoesNotHoldUpOthers sends a tool call whose embedder
// takes 400 ms, then a call that needs no embedding, either at once or
// while the first is running: the second must be answered first, as from
// a server answering calls concurrently.
func TestStdioSlowCallDoesNotHoldUpOthers(t *testing.T) {
	const (
		slow = `{"jsonrpc":"2.0","id":"slow","method":"tools/call","params":{"name":"add_memory","arguments":{"content":"a fact that takes long to embed"}}}` + "\n"
		fast = `{"jsonrpc":"2.0","id":"fast","method":"tools/call","params":{"name":"list_scopes","arguments":{}}}` + "\n"
	)
	for _, tc := range []struct {
		name string
		gap  time.Duration // between the two calls; 0: one write
	}{
		{"one write", 0},
		{"second call 50ms later", 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(binary, "serve", "--db", filepath.Join(t.TempDir(), "m.db"),
				"--embedder", "fake", "--fake-dims", "64", "--fake-delay", "400ms")
			stdin, stdout := stdioPipes(t, cmd)
			p := start(t, cmd)
			defer func() {
				stdin.Close()
				if err := p.wait(t, 10*time.Second); err != nil {
					t.Errorf("scopemem exited with %v; stderr:\n%s", err, p.stderr.String())
				}
			}()
			out := bufio.NewScanner(stdout)
			out.Buffer(nil, 1<<20)
			readID := func() string {
				t.Helper()
				if !out.Scan() {
					t.Fatalf("no response: %v; stderr:\n%s", out.Err(), p.stderr.String())
				}
				var resp struct {
					ID     any             `json:"id"`
					Result json.RawMessage `json:"result"`
				}
				if err := json.Unmarshal(out.Bytes(), &resp); err != nil || resp.Result == nil {
					t.Fatalf("response %s: %v", out.Bytes(), err)
				}
				return fmt.Sprint(resp.ID)
			}
			write := func(s string) {
				t.Helper()
				if _, err := io.WriteString(stdin, s); err != nil {
					t.Fatal(err)
				}
			}
			write(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}` + "\n")
			if id := readID(); id != "0" {
				t.Fatalf("answer to initialize has id %s", id)
			}
			write(`{"jsonrpc":"2.0","method":"notifications/initialized"}` + "\n")
			// A first call, so that the server's tool calls have started.
			write(strings.ReplaceAll(fast, `"fast"`, `"first"`))
			if id := readID(); id != "first" {
				t.Fatalf("answer to the first call has id %s", id)
			}
			if tc.gap == 0 {
				write(slow + fast)
			} else {
				write(slow)
				time.Sleep(tc.gap)
				write(fast)
			}
			start := time.Now()
			first, second := readID(), readID()
			if first != "fast" || second != "slow" {
				t.Errorf("answers came in the order %s, %s; want fast, slow", first, second)
			}
			t.Logf("both answered in %v", time.Since(start))
		})
	}
}

// TestStdioMetrics checks that --metrics-addr serves a stdio server's
// metrics (its tool calls counted) and, with --pprof, its profiles, as
// it does over HTTP.
func TestStdioMetrics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	db := filepath.Join(t.TempDir(), "stdio.db")
	c := stdioClient(t, []string{"SCOPEMEM_DB=" + db, "SCOPEMEM_EMBEDDER=builtin"}, "--metrics-addr", addr, "--pprof")
	defer c.Close()
	ok[scopesOut](t, c, "list_scopes", map[string]any{})
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, `scopemem_tool_calls_total{outcome="ok",tool="list_scopes"} 1`) {
		t.Errorf("GET /metrics = %d, want 200 counting the list_scopes call:\n%.2000s", code, body)
	}
	if code, _ := get("/debug/pprof/"); code != http.StatusOK {
		t.Errorf("GET /debug/pprof/ = %d, want 200", code)
	}
}
