// Package app assembles a scopemem server from its configuration: it opens
// the store, chooses and checks the embedder, registers the tools and
// resources on an MCP server, and serves it over stdio or streamable HTTP.
//
// cmd/scopemem maps flags into a [Config] and calls [New]; tests and the
// load generator build an App the same way, so what they exercise is what
// ships.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"go.opentelemetry.io/otel/trace"

	"github.com/scopemem/scopemem/embed"
	"github.com/scopemem/scopemem/resources"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/postgres"
	"github.com/scopemem/scopemem/store/sqlite"
	"github.com/scopemem/scopemem/tools"
)

// Version is the server version reported to MCP clients.
var Version = "0.1.0-dev"

// Config configures an App. The zero value serves an embedded SQLite store
// under the user's data directory with the best embedder available.
type Config struct {
	// DBPath is the SQLite file; default DefaultDBPath(). Ignored when
	// DatabaseURL is set.
	DBPath string
	// DatabaseURL selects the PostgreSQL store.
	DatabaseURL string
	// MigrateURL, when set, is the PostgreSQL owner role's URL: migrations
	// are applied with it at start, the runtime role named in DatabaseURL
	// is created (with its password) or checked, and the janitor gives
	// large scopes their own approximate index (postgres.Maintain).
	MigrateURL string

	// Embedder is "auto" (default), "ollama", "builtin" or "fake". Auto
	// keeps the embedder the store already records; for a new store it uses
	// Ollama when it answers and has the model, and the built-in one
	// otherwise. Fake is the deterministic [embed.Fake], for load tests
	// only: its vectors carry no meaning.
	Embedder string
	// FakeDims is the fake embedder's dimension; default what the store
	// records for a fake embedder, else 768.
	FakeDims int
	// FakeDelay is how long each call of the fake embedder sleeps, standing
	// for a model's latency; default 0.
	FakeDelay time.Duration
	// FakeParallel is how many calls the fake embedder answers at once, as
	// a model server's workers; default 0, no limit.
	FakeParallel int
	// EmbedBatchMax is the most texts merged into one embedding request
	// (micro-batching of concurrent calls); default 64, 1 sends every
	// call's texts alone.
	EmbedBatchMax int
	// EmbedInFlight is how many merged embedding requests may be out at
	// once; calls arriving meanwhile gather into the next. Default 1.
	EmbedInFlight int
	// OllamaHost is Ollama's URL; default from OLLAMA_HOST, else
	// http://127.0.0.1:11434.
	OllamaHost string
	// Model is the Ollama embedding model; default nomic-embed-text.
	Model string
	// EmbedTimeout bounds one embedding request; default 30s.
	EmbedTimeout time.Duration
	// CacheSize is how many embeddings the LRU cache keeps; default 10000.
	CacheSize int
	// HTTPClient is used to reach Ollama; default http.DefaultClient.
	HTTPClient *http.Client

	// DefaultScope is where add_memory writes when no scope is named.
	DefaultScope string
	// Limits bounds tool input.
	Limits tools.Limits
	// ReadOnly registers only the reading tools.
	ReadOnly bool
	// JanitorInterval is how often expired memories are removed; default
	// 5m; negative disables the janitor.
	JanitorInterval time.Duration
	// StoreTimeout bounds each store call of a tool, a resource or
	// /readyz; a store that has not answered by then gives
	// store.ErrUnavailable (the "store unavailable, retry" tool error)
	// instead of a call that hangs. Default 10s; negative disables it. It
	// must exceed the slowest call expected, such as purging a large scope.
	StoreTimeout time.Duration
	// VectorCacheBytes is how much memory the PostgreSQL store's copies
	// of searched scopes' vectors may take: zero means the store's
	// default (256 MiB), negative turns the cache off.
	VectorCacheBytes int64

	// TracerProvider, when set, receives OpenTelemetry spans: one per tool
	// call ("tools/call <tool>") with children for embedding ("embed") and
	// store calls ("store.<op>"). Nil: no spans and no wrapping at all.
	TracerProvider trace.TracerProvider
	// TraceTenants adds the caller's org and user to tool call spans
	// (scopemem.org, enduser.id); off by default.
	TraceTenants bool

	// Logger receives the server's logs; default discard. It must not write
	// to stdout when serving stdio.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.DBPath == "" {
		c.DBPath = DefaultDBPath()
	}
	if c.Embedder == "" {
		c.Embedder = "auto"
	}
	if c.Model == "" {
		c.Model = "nomic-embed-text"
	}
	if c.EmbedTimeout <= 0 {
		c.EmbedTimeout = 30 * time.Second
	}
	if c.CacheSize <= 0 {
		c.CacheSize = 10000
	}
	if c.DefaultScope == "" {
		c.DefaultScope = "user"
	}
	if c.JanitorInterval == 0 {
		c.JanitorInterval = 5 * time.Minute
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// DefaultDBPath is the SQLite file used when none is configured:
// $XDG_DATA_HOME/scopemem/memories.db, ~/.local/share/scopemem/memories.db,
// or the platform's equivalent.
func DefaultDBPath() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "scopemem", "memories.db")
	}
	if d, err := os.UserConfigDir(); err == nil && filepath.Base(d) != ".config" {
		// macOS (Library/Application Support) and Windows (AppData).
		return filepath.Join(d, "scopemem", "memories.db")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "scopemem", "memories.db")
	}
	return "scopemem.db"
}

// App is an assembled server. Close releases it.
type App struct {
	cfg      Config
	Store    store.Store
	Embedder embed.Embedder
	MCP      *server.MCPServer
	log      *slog.Logger
	closers  []func()
	cancel   context.CancelFunc
	janitor  chan struct{}
	metrics  *metrics // Prometheus series; see metrics.go
	tracing  *tracing // nil unless Config.TracerProvider; see tracing.go
	// embedReady tells /readyz whether the embedder answers; see ready.go.
	embedReady *embedderCheck
}

// New opens the store and embedder and builds the MCP server. ctx bounds
// start-up only; background work runs until Close.
func New(ctx context.Context, cfg Config) (*App, error) {
	cfg = cfg.withDefaults()
	a := &App{cfg: cfg, log: cfg.Logger}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	a.Store = st
	e, err := chooseEmbedder(ctx, cfg, st)
	if err != nil {
		st.Close()
		return nil, err
	}
	a.Embedder = e
	if c, ok := e.(interface{ Close() }); ok {
		a.closers = append(a.closers, c.Close)
	}
	if a.embedReady, err = newEmbedderCheck(cfg, e); err != nil {
		for _, c := range a.closers {
			c()
		}
		st.Close()
		return nil, err
	}
	a.instrument()
	a.instrumentTracing()
	if cfg.StoreTimeout > 0 {
		// Outermost, so that the deadline covers the traced and measured
		// call and the metrics see the store's own outcome.
		a.Store = &deadlineStore{Store: a.Store, timeout: cfg.StoreTimeout}
	}
	a.MCP = a.newMCPServer()
	bg, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.janitor = make(chan struct{})
	go a.runJanitor(bg)
	return a, nil
}

func openStore(ctx context.Context, cfg Config) (store.Store, error) {
	if cfg.DatabaseURL != "" {
		if cfg.MigrateURL != "" {
			pc, err := pgx.ParseConfig(cfg.DatabaseURL)
			if err != nil {
				return nil, fmt.Errorf("database URL: %w", err)
			}
			opts := postgres.MigrateOptions{RuntimeRole: pc.User, RuntimePassword: pc.Password, Logger: cfg.Logger}
			if err := postgres.Migrate(ctx, cfg.MigrateURL, opts); err != nil {
				return nil, fmt.Errorf("migrate: %w", err)
			}
		}
		return postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, Logger: cfg.Logger, VectorCacheBytes: cfg.VectorCacheBytes})
	}
	return sqlite.Open(ctx, sqlite.Config{Path: cfg.DBPath, Logger: cfg.Logger})
}

// chooseEmbedder picks the embedder, records it in a new store and refuses
// one that differs from what the store records.
func chooseEmbedder(ctx context.Context, cfg Config, st store.Store) (embed.Embedder, error) {
	stored, have, err := st.Embedder(ctx)
	if err != nil {
		return nil, err
	}
	provider := cfg.Embedder
	if provider == "auto" {
		provider = "builtin"
		if have {
			provider = stored.Provider
		}
	}
	var e embed.Embedder
	switch provider {
	case "builtin":
		dims := 0
		if have && stored.Provider == "builtin" {
			dims = stored.Dimensions
		}
		e = embed.NewBuiltin(dims)
	case "ollama":
		oc := embed.OllamaConfig{Host: cfg.OllamaHost, Model: cfg.Model, HTTPClient: cfg.HTTPClient, Timeout: cfg.EmbedTimeout, Logger: cfg.Logger}
		if have && stored.Provider == "ollama" && stored.Model == cfg.Model {
			oc.Dimensions = stored.Dimensions
		}
		o, err := embed.NewOllama(oc)
		if err != nil {
			return nil, err
		}
		if _, err := o.Probe(ctx); err != nil {
			if oc.Dimensions == 0 {
				return nil, fmt.Errorf("ollama embedder: %w", err)
			}
			// The store knows the dimensions: serve, and let calls that need
			// embeddings fail with a clear error until Ollama is back.
			cfg.Logger.Warn("ollama is not answering; calls that need embeddings will fail until it does", "err", err)
		}
		e = o
	case "fake":
		if cfg.FakeDims < 0 || cfg.FakeDelay < 0 || cfg.FakeParallel < 0 {
			return nil, fmt.Errorf("fake embedder: dimensions %d, delay %s and parallel %d must not be negative", cfg.FakeDims, cfg.FakeDelay, cfg.FakeParallel)
		}
		dims := cfg.FakeDims
		if dims == 0 && have && stored.Provider == "fake" {
			dims = stored.Dimensions
		}
		e = embed.NewFake(embed.FakeConfig{Dims: dims, Delay: cfg.FakeDelay, Parallel: cfg.FakeParallel})
	default:
		return nil, fmt.Errorf("unknown embedder %q: use auto, ollama or builtin (or fake, for load tests only)", cfg.Embedder)
	}
	if cfg.Embedder == "auto" && !have {
		if o, ok := probeOllama(ctx, cfg); ok {
			e = o
		}
	}
	info := e.Info()
	if err := st.SetEmbedder(ctx, store.EmbedderInfo{Provider: info.Provider, Model: info.Model, Dimensions: info.Dimensions}); err != nil {
		return nil, err
	}
	cfg.Logger.Info("embedder", "provider", info.Provider, "model", info.Model, "dimensions", info.Dimensions)
	if info.Provider == "builtin" {
		// Hashing a text costs less than a cache lookup, and there is no
		// model server to batch requests for.
		return e, nil
	}
	if cfg.EmbedBatchMax < 0 || cfg.EmbedInFlight < 0 {
		return nil, fmt.Errorf("embedding batches: max %d texts and %d in flight must not be negative", cfg.EmbedBatchMax, cfg.EmbedInFlight)
	}
	b := embed.NewBatcher(e, embed.BatcherConfig{MaxBatch: cfg.EmbedBatchMax, InFlight: cfg.EmbedInFlight})
	return closingCache{embed.NewCache(b, cfg.CacheSize), b}, nil
}

// closingCache is the cache in front of the batcher, closing the batcher
// with the app.
type closingCache struct {
	*embed.Cache
	b *embed.Batcher
}

func (c closingCache) Close() { c.b.Close() }

// probeOllama returns an Ollama embedder when one answers quickly with the
// configured model.
func probeOllama(ctx context.Context, cfg Config) (*embed.Ollama, bool) {
	o, err := embed.NewOllama(embed.OllamaConfig{Host: cfg.OllamaHost, Model: cfg.Model, HTTPClient: cfg.HTTPClient, Timeout: 2 * time.Second, MaxRetries: -1, Logger: cfg.Logger})
	if err != nil {
		return nil, false
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := o.Probe(pctx); err != nil {
		cfg.Logger.Info("ollama not available, using the built-in lexical embedder", "reason", err)
		return nil, false
	}
	o2, err := embed.NewOllama(embed.OllamaConfig{Host: cfg.OllamaHost, Model: cfg.Model, HTTPClient: cfg.HTTPClient, Timeout: cfg.EmbedTimeout, Dimensions: o.Info().Dimensions, Logger: cfg.Logger})
	if err != nil {
		return nil, false
	}
	return o2, true
}

// serverImplementation is how the MCP server names itself.
func serverImplementation() mcp.Implementation {
	return mcp.Implementation{Name: "scopemem", Version: Version}
}

// toolMiddlewares returns what every tool call runs in, outermost first:
// panics recovered, a call id, a tracing span when tracing is on, and the
// call's metrics. Stdio calls served without HandleMessage (callTool) run
// in the same.
func (a *App) toolMiddlewares() []server.ToolHandlerMiddleware {
	mws := []server.ToolHandlerMiddleware{recoverToolPanics, callIDMiddleware}
	if a.tracing != nil {
		mws = append(mws, a.tracing.toolMiddleware)
	}
	return append(mws, a.metrics.toolMiddleware)
}

func (a *App) newMCPServer() *server.MCPServer {
	opts := []server.ServerOption{
		server.WithToolCapabilities(false),
		server.WithResourceCapabilities(false, false),
	}
	for _, mw := range a.toolMiddlewares() {
		opts = append(opts, server.WithToolHandlerMiddleware(mw))
	}
	opts = append(opts,
		server.WithResourceRecovery(),
		server.WithInstructions("scopemem is your long-term memory. Call search_memory before answering anything that may depend on "+
			"earlier conversations, the user's preferences or past decisions; call add_memory when you learn a durable fact. "+
			"Memories live in scopes: session (this run), agent, user, team:<id> and org; list_scopes shows yours."),
	)
	impl := serverImplementation()
	s := server.NewMCPServer(impl.Name, impl.Version, opts...)
	tools.Register(s, &tools.Handlers{
		Store: a.Store, Embedder: a.Embedder, Log: a.log, Limits: a.cfg.Limits, DefaultScope: a.cfg.DefaultScope,
	}, tools.Options{ReadOnly: a.cfg.ReadOnly})
	resources.Register(s, &resources.Handlers{Store: a.Store, Log: a.log, DefaultScope: a.cfg.DefaultScope})
	return s
}

// janitorFirstPass is how long after the start the janitor first runs (or
// JanitorInterval, if shorter).
const janitorFirstPass = 3 * time.Second

// runJanitor removes expired memories until ctx ends; it closes a.janitor
// when it returns.
func (a *App) runJanitor(ctx context.Context) {
	defer close(a.janitor)
	if a.cfg.JanitorInterval < 0 {
		return
	}
	// The first pass waits a moment: a stdio server starts once per
	// conversation, and its first moments belong to the client's
	// handshake and first calls (which skip expired memories anyway).
	first := time.NewTimer(min(a.cfg.JanitorInterval, janitorFirstPass))
	select {
	case <-ctx.Done():
		first.Stop()
		return
	case <-first.C:
	}
	t := time.NewTicker(a.cfg.JanitorInterval)
	defer t.Stop()
	for {
		n, err := a.Store.DeleteExpired(ctx, time.Now())
		switch {
		case err != nil && ctx.Err() == nil:
			a.log.Warn("janitor: removing expired memories failed", "err", err)
		case n > 0:
			a.log.Info("janitor: removed expired memories", "count", n)
		}
		if a.cfg.DatabaseURL != "" && a.cfg.MigrateURL != "" {
			// With the owner's URL, large scopes get (and shrunk ones lose)
			// their own approximate index; one replica does it at a time.
			if _, err := postgres.Maintain(ctx, a.cfg.MigrateURL, postgres.MaintainOptions{Logger: a.log}); err != nil && ctx.Err() == nil {
				a.log.Warn("janitor: maintaining per-scope indexes failed", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Close stops background work and closes the embedder and store.
func (a *App) Close() error {
	a.cancel()
	<-a.janitor
	for _, c := range a.closers {
		c()
	}
	return a.Store.Close()
}
