package app_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/scopemem/scopemem/embed/ollamatest"
	"github.com/scopemem/scopemem/internal/app"
)

// readyz returns the status code and body of GET /readyz.
func readyz(t *testing.T, ts *httptest.Server) (int, map[string]string) {
	t.Helper()
	resp, err := http.Get(ts.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode /readyz body: %v", err)
	}
	return resp.StatusCode, body
}

// TestReadyzChecksTheEmbedder checks that /readyz answers 503 while Ollama
// is down and 200 when it answers, revealing nothing else, and that
// repeated checks do not each reach the model server.
func TestReadyzChecksTheEmbedder(t *testing.T) {
	db := filepath.Join(t.TempDir(), "m.db")
	up := ollamatest.NewServer(t, ollamatest.Config{Dims: 64, Model: "nomic-embed-text"})
	open := func(host string) *app.App {
		a, err := app.New(t.Context(), app.Config{DBPath: db, Embedder: "ollama", OllamaHost: host, JanitorInterval: -1})
		if err != nil {
			t.Fatalf("app.New: %v", err)
		}
		return a
	}

	// The store learns Ollama's dimensions, so the server also starts
	// while Ollama is down.
	a := open(up.URL)
	ts := httpServer(t, a)
	before := up.Requests()
	for range 5 {
		if code, body := readyz(t, ts); code != http.StatusOK || !cmp.Equal(body, map[string]string{"status": "ready"}) {
			t.Fatalf("/readyz with Ollama up = %d %v, want 200 ready", code, body)
		}
	}
	if got := up.Requests() - before; got != 1 {
		t.Errorf("5 readiness checks sent %d requests to Ollama, want 1 (the result is cached)", got)
	}
	ts.Close()
	a.Close()

	down := ollamatest.NewServer(t, ollamatest.Config{Mode: ollamatest.Down})
	a = open(down.URL)
	t.Cleanup(func() { a.Close() })
	ts = httpServer(t, a)
	code, body := readyz(t, ts)
	if code != http.StatusServiceUnavailable || !cmp.Equal(body, map[string]string{"status": "unavailable"}) {
		t.Fatalf("/readyz with Ollama down = %d %v, want 503 and only {status: unavailable}", code, body)
	}
}

// TestReadyzWithoutModelServer checks that the built-in and fake embedders
// are always ready.
func TestReadyzWithoutModelServer(t *testing.T) {
	for _, embedder := range []string{"builtin", "fake"} {
		t.Run(embedder, func(t *testing.T) {
			ts := httpServer(t, newApp(t, func(c *app.Config) { c.Embedder = embedder; c.FakeDims = 8 }))
			if code, _ := readyz(t, ts); code != http.StatusOK {
				t.Errorf("/readyz = %d, want 200", code)
			}
		})
	}
}
