package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scopemem/scopemem/embed/ollamatest"
	"github.com/scopemem/scopemem/internal/pgtest"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/sqlite"
)

// closedURL returns a URL on a loopback port with nothing listening.
func closedURL(t *testing.T, scheme string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return scheme + "://" + addr
}

// sqliteWith returns a SQLite file recording info (none when zero).
func sqliteWith(t *testing.T, info store.EmbedderInfo) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.db")
	s, err := sqlite.Open(t.Context(), sqlite.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if info.Provider != "" {
		if err := s.SetEmbedder(t.Context(), info); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func jwksServer(t *testing.T, status int, body string) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

const goodJWKS = `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1"}]}`

func statuses(rs []checkResult) map[string]checkStatus {
	out := map[string]checkStatus{}
	for _, r := range rs {
		out[r.Name] = r.Status
		if r.Status == statusFail && r.Fix == "" {
			out[r.Name+" (no fix)"] = r.Status
		}
	}
	return out
}

func TestDoctor(t *testing.T) {
	nomic := store.EmbedderInfo{Provider: "ollama", Model: "nomic-embed-text", Dimensions: 768}
	healthy := func(t *testing.T) doctorConfig {
		srv := ollamatest.NewServer(t, ollamatest.Config{Dims: 768, Model: "nomic-embed-text"})
		return doctorConfig{DB: sqliteWith(t, nomic), Embedder: "auto", Model: "nomic-embed-text", OllamaHost: srv.URL,
			JWKSURL: jwksServer(t, 200, goodJWKS), Timeout: 3 * time.Second}
	}
	tests := []struct {
		name string
		cfg  func(t *testing.T) doctorConfig
		pg   bool
		// fail lists the checks that must fail; every other check must not.
		fail []string
	}{
		{"healthy", healthy, false, nil},
		{"database unreachable", func(t *testing.T) doctorConfig {
			c := healthy(t)
			c.DatabaseURL = closedURL(t, "postgres") + "/scopemem?connect_timeout=2"
			return c
		}, false, []string{checkDatabase}},
		{"sqlite file unreadable", func(t *testing.T) doctorConfig {
			c := healthy(t)
			c.DB = t.TempDir() // a directory is not a database
			return c
		}, false, []string{checkDatabase}},
		{"ollama unreachable", func(t *testing.T) doctorConfig {
			c := healthy(t)
			c.OllamaHost = ollamatest.NewServer(t, ollamatest.Config{Mode: ollamatest.Down}).URL
			return c
		}, false, []string{checkOllama}},
		{"model not pulled", func(t *testing.T) doctorConfig {
			c := healthy(t)
			c.OllamaHost = ollamatest.NewServer(t, ollamatest.Config{Model: "all-minilm"}).URL
			return c
		}, false, []string{checkModel}},
		{"dimensions differ from the store", func(t *testing.T) doctorConfig {
			c := healthy(t)
			c.OllamaHost = ollamatest.NewServer(t, ollamatest.Config{Dims: 1024}).URL
			return c
		}, false, []string{checkDims}},
		{"model differs from the store", func(t *testing.T) doctorConfig {
			c := healthy(t)
			c.Model = "mxbai-embed-large"
			c.OllamaHost = ollamatest.NewServer(t, ollamatest.Config{Dims: 1024}).URL
			return c
		}, false, []string{checkDims}},
		{"jwks unreachable", func(t *testing.T) doctorConfig {
			c := healthy(t)
			c.JWKSURL = closedURL(t, "http") + "/jwks.json"
			return c
		}, false, []string{checkJWKS}},
		{"jwks not a key set", func(t *testing.T) doctorConfig {
			c := healthy(t)
			c.JWKSURL = jwksServer(t, 200, `{"keys":[]}`)
			return c
		}, false, []string{checkJWKS}},
		{"jwks error status", func(t *testing.T) doctorConfig {
			c := healthy(t)
			c.JWKSURL = jwksServer(t, 503, goodJWKS)
			return c
		}, false, []string{checkJWKS}},
		{"clock skew against HTTP dates", func(t *testing.T) doctorConfig {
			c := healthy(t)
			c.Now = func() time.Time { return time.Now().Add(-5 * time.Minute) }
			return c
		}, false, []string{checkClock}},
		{"postgres healthy", func(t *testing.T) doctorConfig {
			_, d := pgtest.NewStore(t)
			c := healthy(t)
			c.DB, c.DatabaseURL, c.Embedder = "", d.RuntimeURL, "builtin"
			return c
		}, true, nil},
		{"postgres without pgvector", func(t *testing.T) doctorConfig {
			d := pgtest.NewDatabase(t)
			d.Exec(t, `DROP EXTENSION vector`)
			c := healthy(t)
			c.DB, c.DatabaseURL, c.Embedder = "", d.OwnerURL, "builtin"
			return c
		}, true, []string{checkPgvector, checkMigrations}},
		{"postgres pgvector too old", func(t *testing.T) doctorConfig {
			_, d := pgtest.NewStore(t)
			c := healthy(t)
			c.DB, c.DatabaseURL, c.Embedder, c.MinPgvector = "", d.RuntimeURL, "builtin", "99.0.0"
			return c
		}, true, []string{checkPgvector}},
		{"postgres not migrated", func(t *testing.T) doctorConfig {
			d := pgtest.NewDatabase(t)
			c := healthy(t)
			c.DB, c.DatabaseURL, c.Embedder = "", d.OwnerURL, "builtin"
			return c
		}, true, []string{checkMigrations}},
		{"postgres as a role that bypasses RLS", func(t *testing.T) doctorConfig {
			_, d := pgtest.NewStore(t)
			c := healthy(t)
			c.DB, c.DatabaseURL, c.Embedder = "", d.AdminURL, "builtin"
			return c
		}, true, []string{checkRLS}},
		{"postgres BYPASSRLS runtime role", func(t *testing.T) doctorConfig {
			_, d := pgtest.NewStore(t)
			d.Exec(t, `ALTER ROLE "`+d.RuntimeRole+`" BYPASSRLS`)
			c := healthy(t)
			c.DB, c.DatabaseURL, c.Embedder = "", d.RuntimeURL, "builtin"
			return c
		}, true, []string{checkRLS}},
		{"postgres clock skew", func(t *testing.T) doctorConfig {
			_, d := pgtest.NewStore(t)
			c := healthy(t)
			c.DB, c.DatabaseURL, c.Embedder, c.JWKSURL = "", d.RuntimeURL, "builtin", ""
			c.Now = func() time.Time { return time.Now().Add(2 * time.Minute) }
			return c
		}, true, []string{checkClock}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.pg && !pgtestAvailable() {
				pgtest.DSN(t) // skips, naming the variable
			}
			rs := runDoctor(t.Context(), tc.cfg(t))
			got := statuses(rs)
			var out bytes.Buffer
			printChecks(&out, rs)
			for _, name := range []string{checkDatabase, checkPgvector, checkMigrations, checkRLS, checkOllama, checkModel, checkDims, checkJWKS, checkClock} {
				if _, ok := got[name]; !ok {
					t.Errorf("check %q was not reported:\n%s", name, out.String())
				}
			}
			for name, s := range got {
				if strings.HasSuffix(name, "(no fix)") {
					t.Errorf("check %s failed without a fix:\n%s", strings.TrimSuffix(name, " (no fix)"), out.String())
					continue
				}
				want := !contains(tc.fail, name)
				if (s != statusFail) != want {
					t.Errorf("check %q = %v, want failing %v:\n%s", name, s, !want, out.String())
				}
			}
		})
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func TestVersionLess(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"0.8.0", "0.5.0", false},
		{"0.4.4", "0.5.0", true},
		{"0.10.0", "0.8.0", false},
		{"0.8", "0.8.0", false},
		{"1.0.0", "0.8.1", false},
	}
	for _, tc := range tests {
		if got := versionLess(tc.a, tc.b); got != tc.want {
			t.Errorf("versionLess(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestDoctorAutoWithoutOllamaWarns(t *testing.T) {
	down := ollamatest.NewServer(t, ollamatest.Config{Mode: ollamatest.Down})
	rs := runDoctor(t.Context(), doctorConfig{DB: sqliteWith(t, store.EmbedderInfo{}), Embedder: "auto", OllamaHost: down.URL})
	if got := statuses(rs)[checkOllama]; got != statusWarn {
		t.Errorf("ollama check with auto and a store without embedder = %v, want WARN (the server falls back to built-in)", got)
	}
	rs = runDoctor(t.Context(), doctorConfig{DB: sqliteWith(t, store.EmbedderInfo{}), Embedder: "ollama", OllamaHost: down.URL})
	if got := statuses(rs)[checkOllama]; got != statusFail {
		t.Errorf("ollama check with --embedder ollama = %v, want FAIL", got)
	}
}
