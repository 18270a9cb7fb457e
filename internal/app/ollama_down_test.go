package app_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scopemem/scopemem/embed/ollamatest"
	"github.com/scopemem/scopemem/internal/app"
)

// TestOllamaConnectionRefusedToolError serves a store made with Ollama while
// nothing listens on Ollama's port: the server starts (the store knows the
// dimensions), add_memory and search_memory fail soon with a tool error
// naming the address and saying how to start Ollama, nothing is stored,
// and list_scopes answers.
func TestOllamaConnectionRefusedToolError(t *testing.T) {
	db := filepath.Join(t.TempDir(), "m.db")
	up := ollamatest.NewServer(t, ollamatest.Config{Dims: 32})
	a, err := app.New(t.Context(), app.Config{DBPath: db, Embedder: "ollama", OllamaHost: up.URL, JanitorInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	func() {
		ts := httpServer(t, a)
		defer ts.Close()
		c := connect(t, ts.URL, token(t, "acme", "alice", nil, allPerms...))
		ok[addOut](t, c, "add_memory", map[string]any{"content": "stored while ollama was up"})
	}()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	host := "http://" + freeAddr(t)
	a = newApp(t, func(c *app.Config) { c.DBPath, c.Embedder, c.OllamaHost = db, "ollama", host })
	ts := httpServer(t, a)
	c := connect(t, ts.URL, token(t, "acme", "alice", nil, allPerms...))
	for _, call := range []struct {
		tool string
		args map[string]any
	}{
		{"add_memory", map[string]any{"content": "added while ollama is down"}},
		{"search_memory", map[string]any{"query": "anything"}},
	} {
		start := time.Now()
		msg := fails(t, c, call.tool, call.args)
		took := time.Since(start)
		for _, want := range []string{"not reachable at " + host, "connection refused", "ollama serve"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s failed with %q, want it to say %q", call.tool, msg, want)
			}
		}
		// Three retries, waits capped: well under the 30s request timeout.
		if took > 5*time.Second {
			t.Errorf("%s took %v to fail with Ollama down", call.tool, took)
		}
	}
	ls := ok[scopesOut](t, c, "list_scopes", map[string]any{})
	total := 0
	for _, sc := range ls.Scopes {
		total += sc.Count
	}
	if total != 1 {
		t.Errorf("list_scopes counts %d memories, want only the one stored while Ollama was up", total)
	}
}
