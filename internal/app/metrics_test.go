package app_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/scope"
)

// TestMetrics scrapes /metrics after a few tool calls and refused requests
// and checks the series, and that no tenant id appears in them.
func TestMetrics(t *testing.T) {
	a := newApp(t, func(c *app.Config) { c.Embedder = "fake"; c.FakeDims = 16 })
	v, err := scope.NewJWTVerifier(t.Context(), scope.JWTConfig{Secret: testSecret, Issuer: "test-issuer", Audience: "scopemem-test"})
	if err != nil {
		t.Fatalf("NewJWTVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	ts := httptest.NewServer(a.InstrumentHTTP(a.HTTPHandler(app.HTTPConfig{Verifier: v.Verify})))
	t.Cleanup(ts.Close)

	c := connect(t, ts.URL, token(t, "acme-tenant-org", "alice-tenant-user", []string{"secret-team"}, allPerms...))
	call(t, c, "add_memory", map[string]any{"content": "alice-private-content prefers dark mode"})
	call(t, c, "search_memory", map[string]any{"query": "dark mode"})
	call(t, c, "search_memory", map[string]any{"query": "dark mode"}) // the query's vector comes from the cache
	fails(t, c, "delete_memory", map[string]any{"id": "no-such-memory"})

	for _, h := range []string{"", "Bearer not-a-jwt"} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, ts.URL+"/mcp", strings.NewReader(`{}`))
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("POST /mcp with %q = %d, want 401", h, resp.StatusCode)
		}
	}

	stop, err := a.ServeMetrics("127.0.0.1:0", app.MetricsOptions{})
	if err != nil {
		t.Fatalf("ServeMetrics: %v", err)
	}
	t.Cleanup(stop)
	ms := httptest.NewServer(a.MetricsHandler())
	t.Cleanup(ms.Close)
	resp, err := http.Get(ms.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	got := string(body)
	for _, want := range []string{
		`scopemem_tool_calls_total{outcome="ok",tool="add_memory"} 1`,
		`scopemem_tool_calls_total{outcome="ok",tool="search_memory"} 2`,
		`scopemem_tool_calls_total{outcome="tool_error",tool="delete_memory"} 1`,
		`scopemem_tool_call_duration_seconds_count{tool="search_memory"} 2`,
		`scopemem_embed_duration_seconds_count{outcome="ok"} 3`,
		`scopemem_embed_batch_texts_count 3`,
		`scopemem_embed_cache_hits_total 1`,
		`scopemem_embed_cache_misses_total 2`,
		`scopemem_embed_cache_hit_ratio 0.3333333333333333`,
		`scopemem_store_duration_seconds_count{op="add",outcome="ok"} 1`,
		`scopemem_store_duration_seconds_count{op="search",outcome="ok"} 2`,
		`scopemem_store_duration_seconds_count{op="delete",outcome="refused"} 1`,
		`scopemem_auth_failures_total{reason="missing_token"} 1`,
		`scopemem_auth_failures_total{reason="invalid_token"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, secret := range []string{"acme-tenant-org", "alice-tenant-user", "secret-team", "alice-private-content"} {
		if strings.Contains(got, secret) {
			t.Errorf("/metrics contains the tenant value %q", secret)
		}
	}
	if t.Failed() {
		t.Logf("scopemem series:\n%s", grepLines(got, "scopemem_"))
	}
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestMetricsProfiling checks that the metrics listener serves the Go
// profiles only when asked to.
func TestMetricsProfiling(t *testing.T) {
	a := newApp(t, nil)
	for _, tc := range []struct {
		name       string
		opts       app.MetricsOptions
		wantPprof  int
		wantMetric int
	}{
		{"default", app.MetricsOptions{}, http.StatusNotFound, http.StatusOK},
		{"profiling", app.MetricsOptions{Profiling: true}, http.StatusOK, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			stop, err := a.ServeMetrics(addr, tc.opts)
			if err != nil {
				t.Fatalf("ServeMetrics: %v", err)
			}
			defer stop()
			for path, want := range map[string]int{"/debug/pprof/": tc.wantPprof, "/debug/pprof/cmdline": tc.wantPprof, "/metrics": tc.wantMetric} {
				resp, err := http.Get("http://" + addr + path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
				}
			}
		})
	}
}
