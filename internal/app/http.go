package app

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// HTTPConfig configures the streamable HTTP transport. The zero value of
// every field but Verifier means its default; rate limits, quotas and the
// failed-login limit are off unless set (the serve command sets them).
type HTTPConfig struct {
	// Verifier resolves a bearer JWT into an identity. Nil accepts API
	// keys only.
	Verifier scope.Verifier
	// DisableAPIKeys refuses API keys (bearer tokens starting with smk_)
	// even when the store keeps them.
	DisableAPIKeys bool
	// MaxBodyBytes bounds one request body; default 1 MiB. A larger body
	// is answered 413 before it reaches MCP.
	MaxBodyBytes int64
	// Realm names the protected resource in WWW-Authenticate; default
	// "scopemem".
	Realm string

	// PublicURL is the canonical URL of the MCP endpoint as clients reach
	// it (e.g. https://mem.example.com/mcp), see [NormalizePublicURL]. It
	// is the resource of the protected resource metadata, its origin is an
	// allowed Origin, and its host an allowed Host on a loopback listener
	// (behind a reverse proxy). The JWT verifier should require it as the
	// audience (the serve command does). Empty: derived from each
	// request's Host.
	PublicURL string
	// AuthorizationServers are the issuer URLs of the OAuth authorization
	// servers named in the protected resource metadata.
	AuthorizationServers []string
	// AllowedOrigins are the browser origins (scheme://host[:port]) that
	// may call /mcp. A request with any other Origin header is answered
	// 403; requests without one (non-browser clients) pass.
	AllowedOrigins []string

	// OrgLimits are the per-org quotas and rate limits.
	OrgLimits OrgLimitsFile
	// AuthFailures limits failed logins per source address; past it the
	// address gets 429 until its bucket refills. Zero: unlimited.
	AuthFailures RateLimit
	// LimiterEntries bounds how many rate-limit buckets are kept (least
	// recently used are dropped); default 100000.
	LimiterEntries int
	// ConformanceFixture adds the tool test_error_handling, which always
	// fails, to the HTTP server: the fixture the MCP conformance suite's
	// tools-call-error scenario calls (e2e/conformance.sh). Never set it
	// in production.
	ConformanceFixture bool
	// TransportCalls sends tools/call requests through mcp-go's streamable
	// HTTP transport too, instead of answering them directly (see
	// httpCalls); the answers are the same.
	TransportCalls bool
	// FlushInterval is how often call counts and audit events are written
	// to the store; default 1s. They are also written on Close.
	FlushInterval time.Duration
	// SessionIdleTTL is how long the MCP transport keeps its record of a
	// session (protocol revisions before 2026-07-28) that sends nothing;
	// default 10m. Clients that end without a DELETE (a crash, or mcp-go's
	// client, whose DELETE carries no bearer token) would otherwise leave
	// it behind for good. Memories do not depend on it: a later request
	// with the same Mcp-Session-Id is served as before.
	SessionIdleTTL time.Duration

	// Timeouts and header limit of [App.NewHTTPServer]: defaults 10s, 60s,
	// 2m, 2m and 64 KiB.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
}

func (c HTTPConfig) withDefaults() HTTPConfig {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.Realm == "" {
		c.Realm = "scopemem"
	}
	if c.LimiterEntries <= 0 {
		c.LimiterEntries = 100000
	}
	if c.SessionIdleTTL <= 0 {
		c.SessionIdleTTL = 10 * time.Minute
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = time.Second
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 60 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 2 * time.Minute
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 2 * time.Minute
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	return c
}

// HTTPHandler returns the HTTP routes: /mcp (streamable HTTP, bearer
// token required, each request given an id, see [RequestID]),
// /.well-known/oauth-protected-resource (RFC 9728, also under /mcp),
// /healthz and /readyz. Its background work (flushing call
// counts and audit events) stops when the App is closed.
//
// The transport is stateless: the server keeps no per-session state that
// a request depends on (the transport's own record of a session is dropped
// after [HTTPConfig.SessionIdleTTL]), so replicas can sit behind any load
// balancer and a restart never strands a client. Clients of protocol
// revisions with sessions get a generated Mcp-Session-Id, which keys their
// session scope; clients of 2026-07-28, which has no sessions, name a
// session with the tools' session argument.
func (a *App) HTTPHandler(hc HTTPConfig) http.Handler {
	hc = hc.withDefaults()
	g := newGuard(hc, a.Store, a.log)
	a.closers = append(a.closers, g.close)
	var keys *scope.APIKeyVerifier
	if kr, ok := a.BaseStore().(store.KeyResolver); ok && !hc.DisableAPIKeys {
		keys = &scope.APIKeyVerifier{Lookup: a.boundKeyLookup(kr.LookupKey)}
	}
	// A server of its own, so that the quota and audit middleware wraps
	// only the calls that arrive over HTTP.
	mcpServer := a.newMCPServer()
	mcpServer.Use(g.toolMiddleware)
	if hc.ConformanceFixture {
		addConformanceFixture(mcpServer)
	}
	sessions := &optionalSessionIDs{}
	mcpHandler := server.NewStreamableHTTPServer(mcpServer,
		server.WithSessionIdManager(sessions),
		server.WithDisableStreaming(true),
		server.WithStreamableHTTPLogger(a.log),
		// The Host check below does the same, and also admits the public
		// URL's host behind a reverse proxy on the same machine.
		server.WithDisableLocalhostProtection(true),
		server.WithSessionIdleTTL(hc.SessionIdleTTL),
	)
	// Shutdown stops the idle-session sweeper; the handler serves no
	// listener of its own.
	a.closers = append(a.closers, func() { _ = mcpHandler.Shutdown(context.Background()) })
	p := &protector{app: a, cfg: hc, guard: g, keys: keys}
	if !hc.TransportCalls {
		mws := append(a.toolMiddlewares(), g.toolMiddleware) // as mcpServer.Use added it
		p.calls = newHTTPCalls(mcpServer, serverImplementation(), mws, mcpHandler, sessions)
	}
	p.init()
	mux := http.NewServeMux()
	mux.Handle("/mcp", withRequestID(p.protect(mcpHandler)))
	for _, path := range p.metadataPaths() {
		mux.HandleFunc("GET "+path, p.metadata)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", a.ready)
	return p.checkHost(mux)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ready answers 200 when the store answers and the embedder is reachable
// (see [embedderCheck]); it reveals nothing else, not even which of them
// failed: that goes to the log.
func (a *App) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, _, err := a.Store.Embedder(ctx); err != nil {
		a.log.WarnContext(ctx, "readiness check failed: store", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
		return
	}
	if err := a.embedReady.check(ctx); err != nil {
		a.log.WarnContext(ctx, "readiness check failed: embedder", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// NewHTTPServer returns an http.Server for addr with timeouts that stop a
// slow or silent client from holding a connection forever: the headers
// must arrive within ReadHeaderTimeout, the whole request within
// ReadTimeout, and the response be written within WriteTimeout.
func (a *App) NewHTTPServer(addr string, hc HTTPConfig) *http.Server {
	hc = hc.withDefaults()
	return &http.Server{
		Addr:              addr,
		Handler:           a.HTTPHandler(hc),
		ReadHeaderTimeout: hc.ReadHeaderTimeout,
		ReadTimeout:       hc.ReadTimeout,
		WriteTimeout:      hc.WriteTimeout,
		IdleTimeout:       hc.IdleTimeout,
		MaxHeaderBytes:    hc.MaxHeaderBytes,
	}
}

// boundKeyLookup bounds each API-key lookup by Config.StoreTimeout, as
// deadlineStore bounds the tools' store calls: a database that does not
// answer fails the request with 503 (see protect) instead of holding it.
func (a *App) boundKeyLookup(lookup scope.APIKeyLookup) scope.APIKeyLookup {
	if a.cfg.StoreTimeout <= 0 {
		return lookup
	}
	return func(ctx context.Context, id string) (scope.APIKey, error) {
		ctx, cancel := context.WithTimeoutCause(ctx, a.cfg.StoreTimeout, errStoreTimeout)
		defer cancel()
		return lookup(ctx, id)
	}
}
