package app

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/scopemem/scopemem/embed"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// metrics are the server's Prometheus series, in a registry of its own.
// No label ever carries a tenant id (org, user, team, memory id): labels
// are tool names, outcomes, store operations and fixed reason codes, so
// the number of series stays small whatever the number of tenants.
type metrics struct {
	reg          *prometheus.Registry
	toolCalls    *prometheus.CounterVec
	toolSeconds  *prometheus.HistogramVec
	embedSeconds *prometheus.HistogramVec
	embedTexts   prometheus.Histogram
	storeSeconds *prometheus.HistogramVec
	authFailures *prometheus.CounterVec
}

// latencyBuckets span a cached lookup (0.5 ms) to a slow model (10 s).
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		toolCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scopemem_tool_calls_total", Help: "MCP tool calls by tool and outcome (ok, tool_error: the caller's mistake, error: the server's).",
		}, []string{"tool", "outcome"}),
		toolSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "scopemem_tool_call_duration_seconds", Help: "MCP tool call latency by tool.", Buckets: latencyBuckets,
		}, []string{"tool"}),
		embedSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "scopemem_embed_duration_seconds", Help: "Latency of embedding calls (through the cache) by outcome.", Buckets: latencyBuckets,
		}, []string{"outcome"}),
		embedTexts: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "scopemem_embed_batch_texts", Help: "Texts per embedding call.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
		storeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "scopemem_store_duration_seconds", Help: "Store call latency by operation and outcome.", Buckets: latencyBuckets,
		}, []string{"op", "outcome"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scopemem_auth_failures_total", Help: "HTTP requests refused before reaching MCP, by reason.",
		}, []string{"reason"}),
	}
	m.reg.MustRegister(m.toolCalls, m.toolSeconds, m.embedSeconds, m.embedTexts, m.storeSeconds, m.authFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// instrument puts metrics around the store, the embedder and (through
// newMCPServer's middleware) the tools. New calls it before building the
// MCP server.
func (a *App) instrument() {
	m := newMetrics()
	a.metrics = m
	if c, ok := a.Embedder.(interface{ Stats() embed.CacheStats }); ok {
		m.reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "scopemem_embed_cache_hits_total", Help: "Texts answered by the embedding cache."},
				func() float64 { return float64(c.Stats().Hits) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "scopemem_embed_cache_misses_total", Help: "Texts the embedding cache passed to the model."},
				func() float64 { return float64(c.Stats().Misses) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "scopemem_embed_cache_hit_ratio", Help: "Hits over lookups since start (0 before any)."},
				func() float64 {
					s := c.Stats()
					if s.Hits+s.Misses == 0 {
						return 0
					}
					return float64(s.Hits) / float64(s.Hits+s.Misses)
				}),
		)
	}
	if p, ok := a.Store.(interface{ PoolStat() *pgxpool.Stat }); ok {
		gauge := func(name, help string, f func(*pgxpool.Stat) float64) prometheus.Collector {
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(p.PoolStat()) })
		}
		counter := func(name, help string, f func(*pgxpool.Stat) float64) prometheus.Collector {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return f(p.PoolStat()) })
		}
		m.reg.MustRegister(
			gauge("scopemem_db_pool_acquired_connections", "Connections in use.", func(s *pgxpool.Stat) float64 { return float64(s.AcquiredConns()) }),
			gauge("scopemem_db_pool_idle_connections", "Idle connections.", func(s *pgxpool.Stat) float64 { return float64(s.IdleConns()) }),
			gauge("scopemem_db_pool_total_connections", "Open connections.", func(s *pgxpool.Stat) float64 { return float64(s.TotalConns()) }),
			gauge("scopemem_db_pool_max_connections", "The pool's limit.", func(s *pgxpool.Stat) float64 { return float64(s.MaxConns()) }),
			counter("scopemem_db_pool_acquires_total", "Connections acquired from the pool.", func(s *pgxpool.Stat) float64 { return float64(s.AcquireCount()) }),
			counter("scopemem_db_pool_empty_acquires_total", "Acquires that had to wait for a connection.", func(s *pgxpool.Stat) float64 { return float64(s.EmptyAcquireCount()) }),
			counter("scopemem_db_pool_acquire_wait_seconds_total", "Time spent acquiring connections.", func(s *pgxpool.Stat) float64 { return s.AcquireDuration().Seconds() }),
		)
	}
	a.Embedder = &measuredEmbedder{Embedder: a.Embedder, m: m}
	a.Store = &measuredStore{Store: a.Store, m: m}
}

// toolMiddleware counts and times tool calls.
func (m *metrics) toolMiddleware(next server.ToolHandlerFunc) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		start := time.Now()
		res, err := next(ctx, req)
		outcome := "ok"
		switch {
		case err != nil:
			outcome = "error"
		case res != nil && res.IsError:
			outcome = "tool_error"
		}
		tool := req.Params.Name
		if !knownTool(tool) {
			tool = "unknown" // never a caller-chosen label value
		}
		m.toolCalls.WithLabelValues(tool, outcome).Inc()
		m.toolSeconds.WithLabelValues(tool).Observe(time.Since(start).Seconds())
		return res, err
	}
}

func knownTool(name string) bool {
	switch name {
	case "add_memory", "search_memory", "list_scopes", "update_memory", "delete_memory", "purge":
		return true
	}
	return false
}

func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	return "error"
}

// measuredEmbedder times embedding calls and records their sizes.
type measuredEmbedder struct {
	embed.Embedder
	m *metrics
}

func (e *measuredEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	start := time.Now()
	v, err := e.Embedder.Embed(ctx, texts)
	e.m.embedSeconds.WithLabelValues(outcome(err)).Observe(time.Since(start).Seconds())
	e.m.embedTexts.Observe(float64(len(texts)))
	return v, err
}

// measuredStore times every store call.
type measuredStore struct {
	store.Store
	m *metrics
}

// Unwrap returns the measured store, whose optional capabilities callers
// find by type assertion (see [App.BaseStore]).
func (s *measuredStore) Unwrap() store.Store { return s.Store }

func (s *measuredStore) observe(op string, start time.Time, err error) {
	o := outcome(err)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) || errors.Is(err, scope.ErrForbidden) {
		o = "refused"
	}
	s.m.storeSeconds.WithLabelValues(op, o).Observe(time.Since(start).Seconds())
}

func (s *measuredStore) Add(ctx context.Context, id scope.Identity, ms []store.NewMemory) (r []store.Added, err error) {
	defer func(t time.Time) { s.observe("add", t, err) }(time.Now())
	return s.Store.Add(ctx, id, ms)
}

func (s *measuredStore) Search(ctx context.Context, id scope.Identity, q store.Query) (r []store.Hit, err error) {
	defer func(t time.Time) { s.observe("search", t, err) }(time.Now())
	return s.Store.Search(ctx, id, q)
}

func (s *measuredStore) Get(ctx context.Context, id scope.Identity, memoryID string) (r store.Memory, err error) {
	defer func(t time.Time) { s.observe("get", t, err) }(time.Now())
	return s.Store.Get(ctx, id, memoryID)
}

func (s *measuredStore) Update(ctx context.Context, id scope.Identity, memoryID string, p store.Patch) (r store.Memory, err error) {
	defer func(t time.Time) { s.observe("update", t, err) }(time.Now())
	return s.Store.Update(ctx, id, memoryID, p)
}

func (s *measuredStore) Delete(ctx context.Context, id scope.Identity, memoryID string) (err error) {
	defer func(t time.Time) { s.observe("delete", t, err) }(time.Now())
	return s.Store.Delete(ctx, id, memoryID)
}

func (s *measuredStore) ListScopes(ctx context.Context, id scope.Identity) (r []store.ScopeInfo, err error) {
	defer func(t time.Time) { s.observe("list_scopes", t, err) }(time.Now())
	return s.Store.ListScopes(ctx, id)
}

func (s *measuredStore) Purge(ctx context.Context, id scope.Identity, t scope.Target) (r store.PurgeCounts, err error) {
	defer func(start time.Time) { s.observe("purge", start, err) }(time.Now())
	return s.Store.Purge(ctx, id, t)
}

func (s *measuredStore) DeleteExpired(ctx context.Context, now time.Time) (n int, err error) {
	defer func(t time.Time) { s.observe("delete_expired", t, err) }(time.Now())
	return s.Store.DeleteExpired(ctx, now)
}

// wwwAuthError reads the error code of a WWW-Authenticate challenge.
var wwwAuthError = regexp.MustCompile(`error="([a-z_]+)"`)

// InstrumentHTTP wraps the HTTP routes to count requests refused before
// MCP (HTTP 401, 403 and 429) by a fixed reason: missing_token (no
// credentials), the RFC 6750 error code of the challenge (invalid_token,
// invalid_request, insufficient_scope), forbidden, rate_limited.
func (a *App) InstrumentHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if a.metrics == nil {
			return
		}
		switch sw.status {
		case http.StatusUnauthorized:
			reason := "missing_token"
			if m := wwwAuthError.FindStringSubmatch(w.Header().Get("WWW-Authenticate")); m != nil {
				switch m[1] {
				case "invalid_token", "invalid_request", "insufficient_scope":
					reason = m[1]
				default:
					reason = "other"
				}
			}
			a.metrics.authFailures.WithLabelValues(reason).Inc()
		case http.StatusForbidden:
			a.metrics.authFailures.WithLabelValues("forbidden").Inc()
		case http.StatusTooManyRequests:
			a.metrics.authFailures.WithLabelValues("rate_limited").Inc()
		}
	})
}

// statusWriter remembers the response status.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush passes on to the wrapped writer when it can flush.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the wrapped writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// MetricsHandler serves the Prometheus series at any path.
func (a *App) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{})
}

// MetricsOptions configures the listener of [App.ServeMetrics].
type MetricsOptions struct {
	// Profiling also serves the Go runtime's profiles (net/http/pprof)
	// under /debug/pprof/, e.g. a CPU profile of the next 30 seconds at
	// /debug/pprof/profile?seconds=30. They name no tenant, but reveal the
	// server's internals and cost CPU while taken: keep the listener
	// private. Off by default.
	Profiling bool
}

// ServeMetrics serves /metrics on its own listener at addr, apart from the
// MCP routes (so it need not be exposed where /mcp is), until stop is
// called.
func (a *App) ServeMetrics(addr string, opts MetricsOptions) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.MetricsHandler())
	if opts.Profiling {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics listener stopped", "err", err)
		}
	}()
	a.log.Info("serving Prometheus metrics", "addr", ln.Addr().String(), "path", "/metrics", "profiling", opts.Profiling)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
