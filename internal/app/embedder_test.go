package app_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scopemem/scopemem/embed/ollamatest"
	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/store"
)

// TestEmbedderChoice checks which embedder a store gets and that a store
// never silently changes embedder.
func TestEmbedderChoice(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "m.db")
	ollama := ollamatest.NewServer(t, ollamatest.Config{Dims: 64, Model: "nomic-embed-text"})

	open := func(embedder, host string) (*app.App, error) {
		a, err := app.New(t.Context(), app.Config{DBPath: db, Embedder: embedder, OllamaHost: host, JanitorInterval: -1})
		if err == nil {
			t.Cleanup(func() { a.Close() })
		}
		return a, err
	}
	// A new store with Ollama answering picks Ollama.
	a, err := open("auto", ollama.URL)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Embedder.Info(); got.Provider != "ollama" || got.Dimensions != 64 {
		t.Fatalf("auto with Ollama up chose %v, want ollama with 64 dimensions", got)
	}
	a.Close()

	// Forcing the built-in embedder on that store is refused, naming both.
	_, err = open("builtin", ollama.URL)
	var mm *store.MismatchError
	if !errors.As(err, &mm) || !errors.Is(err, store.ErrEmbedderMismatch) {
		t.Fatalf("builtin on an ollama store: err = %v, want a MismatchError", err)
	}
	if !strings.Contains(err.Error(), "reindex") {
		t.Errorf("mismatch error %q does not say how to get out", err)
	}

	// With Ollama gone, auto keeps Ollama (the store knows its dimensions)
	// rather than falling back to the built-in embedder.
	down := ollamatest.NewServer(t, ollamatest.Config{Mode: ollamatest.Down})
	a, err = open("auto", down.URL)
	if err != nil {
		t.Fatalf("auto with Ollama down on an ollama store: %v", err)
	}
	if got := a.Embedder.Info(); got.Provider != "ollama" {
		t.Errorf("auto with Ollama down chose %v; it must not switch embedders", got)
	}
	a.Close()

	// A new store with nothing on Ollama's port gets the built-in embedder.
	b, err := app.New(t.Context(), app.Config{DBPath: filepath.Join(dir, "new.db"), OllamaHost: down.URL, JanitorInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got := b.Embedder.Info(); got.Provider != "builtin" {
		t.Errorf("auto with Ollama down on a new store chose %v, want builtin", got)
	}
}

// TestEmbedderFailuresStoreNothing breaks the embedding server in each way
// it can break and checks that calls needing it fail with a clear tool
// error, store nothing, and that calls not needing it keep working.
func TestEmbedderFailuresStoreNothing(t *testing.T) {
	ollama := ollamatest.NewServer(t, ollamatest.Config{Dims: 32})
	a := newApp(t, func(c *app.Config) {
		c.Embedder, c.OllamaHost, c.EmbedTimeout = "ollama", ollama.URL, 500*time.Millisecond
	})
	ts := httpServer(t, a)
	c := connect(t, ts.URL, token(t, "acme", "alice", nil, allPerms...))
	kept := ok[addOut](t, c, "add_memory", map[string]any{"content": "stored while ollama was healthy"})

	for _, tc := range []struct {
		mode ollamatest.Mode
		want string // what the tool error must tell the user
	}{
		{ollamatest.Status500, "unavailable"},
		{ollamatest.ModelNotFound, "ollama pull"},
		{ollamatest.WrongDims, "dimension"},
		{ollamatest.NaN, "embedding"},
		{ollamatest.ZeroVector, "embedding"},
		{ollamatest.Stall, "embedding"},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			ollama.SetMode(tc.mode)
			defer ollama.SetMode(ollamatest.OK)
			msg := fails(t, c, "add_memory", map[string]any{"content": "fact added during an outage: " + tc.mode.String()})
			t.Logf("%s: %s", tc.mode, msg)
			if !strings.Contains(strings.ToLower(msg), tc.want) {
				t.Errorf("add_memory error %q does not mention %q", msg, tc.want)
			}
			fails(t, c, "search_memory", map[string]any{"query": "outage " + tc.mode.String()})
			// Calls that need no embedding are unaffected.
			start := time.Now()
			ls := ok[scopesOut](t, c, "list_scopes", map[string]any{})
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("list_scopes took %v while the embedder was %s", d, tc.mode)
			}
			total := 0
			for _, sc := range ls.Scopes {
				total += sc.Count
			}
			if total != 1 {
				t.Errorf("%d memories stored, want only the one added before the outage", total)
			}
		})
	}
	// Healthy again: the same call succeeds and the first memory is intact.
	ok[addOut](t, c, "add_memory", map[string]any{"content": "stored after ollama recovered"})
	ok[map[string]any](t, c, "delete_memory", map[string]any{"id": kept.ID})
}
