package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/alecthomas/kong"
	"go.opentelemetry.io/otel/trace"

	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/tools"
)

// ServeCmd serves MCP.
type ServeCmd struct {
	Config kong.ConfigFlag `help:"JSON file with any of these settings, keyed by flag name (default_scope, teams, db, ...). Flags and environment variables override it." placeholder:"FILE"`

	// Storage and embedding.
	DB              string        `name:"db" env:"SCOPEMEM_DB" help:"SQLite file (default: scopemem/memories.db under the user's data directory)." placeholder:"PATH" group:"Storage"`
	DatabaseURL     string        `name:"database-url" env:"SCOPEMEM_DATABASE_URL" help:"PostgreSQL URL; selects the PostgreSQL store instead of SQLite." placeholder:"URL" group:"Storage"`
	MigrateURL      string        `name:"migrate-database-url" env:"SCOPEMEM_MIGRATE_DATABASE_URL" help:"PostgreSQL URL of the schema owner: apply migrations at start and create the runtime role of --database-url (with its password) if missing." placeholder:"URL" group:"Storage"`
	StoreTimeout    time.Duration `name:"store-timeout" env:"SCOPEMEM_STORE_TIMEOUT" default:"10s" help:"Longest a tool waits for the store; a database that has not answered by then gives the 'store unavailable, retry' tool error instead of a call that hangs (0: no limit). Must exceed the slowest call expected, such as purging a large scope." group:"Storage"`
	VectorCacheMB   int           `name:"vector-cache-mb" env:"SCOPEMEM_VECTOR_CACHE_MB" default:"256" help:"PostgreSQL store: memory, in MiB, for copies of searched scopes' rows (vectors and content), which the server ranks and answers from itself (versions checked on every search; scopes of more than 512 memories on the rows their binary codes pick); 0 ranks every search in the database." group:"Storage"`
	Embedder        string        `env:"SCOPEMEM_EMBEDDER" enum:"auto,ollama,builtin,fake" default:"auto" help:"auto: keep what the store records, else Ollama when it answers, else built-in. ollama or builtin force one. fake: meaningless deterministic vectors, for load tests only." group:"Embedding"`
	FakeDims        int           `name:"fake-dims" env:"SCOPEMEM_FAKE_DIMS" help:"Dimensions of the fake embedder's vectors (default: what the store records, else 768)." group:"Embedding"`
	FakeDelay       time.Duration `name:"fake-delay" env:"SCOPEMEM_FAKE_DELAY" default:"0s" help:"How long each fake embedder call sleeps, standing for a model's latency." group:"Embedding"`
	FakeParallel    int           `name:"fake-parallel" env:"SCOPEMEM_FAKE_PARALLEL" help:"Calls the fake embedder answers at once, as a model server's workers (0: no limit)." group:"Embedding"`
	EmbedBatchMax   int           `name:"embed-batch-max" env:"SCOPEMEM_EMBED_BATCH_MAX" default:"64" help:"Most texts merged into one embedding request from concurrent calls (1: every call's texts sent alone)." group:"Embedding"`
	EmbedInFlight   int           `name:"embed-in-flight" env:"SCOPEMEM_EMBED_IN_FLIGHT" default:"1" help:"Embedding requests out to the model server at once; calls arriving meanwhile gather into the next request (a lone call is sent at once). Raise it for a model server with several workers." group:"Embedding"`
	OllamaHost      string        `name:"ollama-host" env:"OLLAMA_HOST" help:"Ollama URL (default http://127.0.0.1:11434)." placeholder:"URL" group:"Embedding"`
	Model           string        `env:"SCOPEMEM_MODEL" default:"nomic-embed-text" help:"Ollama embedding model." group:"Embedding"`
	ReadOnly        bool          `name:"read-only" env:"SCOPEMEM_READ_ONLY" help:"Offer only search_memory and list_scopes."`
	MaxContentBytes int           `name:"max-content-bytes" env:"SCOPEMEM_MAX_CONTENT_BYTES" default:"32768" help:"Largest memory accepted, in bytes."`
	SessionTTL      time.Duration `name:"session-ttl" env:"SCOPEMEM_SESSION_TTL" default:"24h" help:"How long session memories live unless a ttl is given."`

	// Stdio identity (the agent config).
	Org          string   `env:"SCOPEMEM_ORG" help:"Org of the stdio caller (default local)." group:"Stdio identity"`
	User         string   `env:"SCOPEMEM_USER" help:"User of the stdio caller (default: the OS user)." group:"Stdio identity"`
	Teams        []string `env:"SCOPEMEM_TEAMS" sep:"," help:"Teams of the stdio caller, comma-separated." group:"Stdio identity"`
	Agent        string   `env:"SCOPEMEM_AGENT" help:"Agent name, giving the caller an agent scope." group:"Stdio identity"`
	DefaultScope string   `name:"default-scope" env:"SCOPEMEM_DEFAULT_SCOPE" help:"Where add_memory writes by default: session, agent, user, team:<id> or org (default user)." group:"Stdio identity"`
	Permissions  []string `env:"SCOPEMEM_PERMISSIONS" sep:"," help:"Narrow the stdio caller's permissions (default all): memory:read, memory:write, memory:share, memory:purge, memory:admin." group:"Stdio identity"`

	// HTTP.
	HTTP             string        `name:"http" env:"SCOPEMEM_HTTP" help:"Serve streamable HTTP on this address (e.g. 127.0.0.1:8080) instead of stdio." placeholder:"ADDR" group:"HTTP"`
	JWTSecretFile    string        `name:"jwt-secret-file" env:"SCOPEMEM_JWT_SECRET_FILE" help:"File holding the HS256 shared secret (at least 32 bytes)." placeholder:"FILE" group:"HTTP"`
	JWKSURL          string        `name:"jwks-url" env:"SCOPEMEM_JWKS_URL" help:"JWKS URL for RS256/ES256/EdDSA tokens." placeholder:"URL" group:"HTTP"`
	JWTIssuer        string        `name:"jwt-issuer" env:"SCOPEMEM_JWT_ISSUER" help:"Required token issuer (iss)." group:"HTTP"`
	JWTAudience      string        `name:"jwt-audience" env:"SCOPEMEM_JWT_AUDIENCE" help:"Required token audience (aud): this server's canonical URL." group:"HTTP"`
	JWTAlgorithms    []string      `name:"jwt-algorithms" env:"SCOPEMEM_JWT_ALGORITHMS" sep:"," help:"Allowed signing algorithms (default HS256 with a secret; RS256,ES256,EdDSA with JWKS)." group:"HTTP"`
	ClaimOrg         string        `name:"claim-org" env:"SCOPEMEM_CLAIM_ORG" default:"org_id" help:"Claim holding the org." group:"HTTP"`
	ClaimUser        string        `name:"claim-user" env:"SCOPEMEM_CLAIM_USER" default:"sub" help:"Claim holding the user." group:"HTTP"`
	ClaimTeams       string        `name:"claim-teams" env:"SCOPEMEM_CLAIM_TEAMS" default:"teams" help:"Claim holding the teams." group:"HTTP"`
	ClaimAgent       string        `name:"claim-agent" env:"SCOPEMEM_CLAIM_AGENT" default:"agent" help:"Claim holding the agent." group:"HTTP"`
	ClaimPermissions string        `name:"claim-permissions" env:"SCOPEMEM_CLAIM_PERMISSIONS" default:"scope" help:"Claim holding the permissions (scp is read when it is absent)." group:"HTTP"`
	ShutdownTimeout  time.Duration `name:"shutdown-timeout" env:"SCOPEMEM_SHUTDOWN_TIMEOUT" default:"15s" help:"How long in-flight HTTP calls may take to finish on SIGTERM." group:"HTTP"`
	MetricsAddr      string        `name:"metrics-addr" env:"SCOPEMEM_METRICS_ADDR" help:"Serve Prometheus /metrics on this separate address (e.g. 127.0.0.1:9090), over either transport; off by default." placeholder:"ADDR" group:"Telemetry"`
	Pprof            bool          `name:"pprof" env:"SCOPEMEM_PPROF" help:"Also serve Go profiles (net/http/pprof) under /debug/pprof/ on --metrics-addr; keep that address private." group:"Telemetry"`

	httpSecurityFlags `embed:""`
	telemetryFlags    `embed:""`
}

func (c *ServeCmd) appConfig(env *runEnv, tp trace.TracerProvider) app.Config {
	return app.Config{
		TracerProvider: tp, TraceTenants: c.OTLPTenantAttributes,
		DBPath: c.DB, DatabaseURL: c.DatabaseURL, MigrateURL: c.MigrateURL,
		Embedder: c.Embedder, OllamaHost: c.OllamaHost, Model: c.Model, FakeDims: c.FakeDims, FakeDelay: c.FakeDelay,
		FakeParallel: c.FakeParallel, EmbedBatchMax: c.EmbedBatchMax, EmbedInFlight: c.EmbedInFlight,
		DefaultScope: c.DefaultScope, ReadOnly: c.ReadOnly, StoreTimeout: storeTimeout(c.StoreTimeout),
		VectorCacheBytes: vectorCacheBytes(c.VectorCacheMB),
		Limits:           tools.Limits{MaxContentBytes: c.MaxContentBytes, SessionTTL: c.SessionTTL},
		Logger:           env.log,
	}
}

// Run serves until the client goes away (stdio) or a signal arrives.
func (c *ServeCmd) Run(env *runEnv) error {
	if c.VectorCacheMB < 0 {
		return fmt.Errorf("--vector-cache-mb %d is negative: give a size in MiB such as 256, or 0 to rank every search in the database", c.VectorCacheMB)
	}
	if c.StoreTimeout < 0 {
		return fmt.Errorf("--store-timeout %s is negative: give a duration such as 10s, or 0 for no limit", c.StoreTimeout)
	}
	tp, stopTracing, err := c.tracerProvider(env.ctx, env.log)
	if err != nil {
		return err
	}
	defer stopTracing()
	if c.Pprof && c.MetricsAddr == "" {
		return errors.New("--pprof serves profiles on the metrics listener: give --metrics-addr too (e.g. 127.0.0.1:9090)")
	}
	if c.HTTP == "" {
		return c.serveStdio(env, tp)
	}
	return c.serveHTTP(env, tp)
}

// startMetrics serves /metrics (and, with --pprof, Go profiles) of a on
// --metrics-addr, for either transport; stop ends it.
func (c *ServeCmd) startMetrics(a *app.App) (stop func(), err error) {
	if c.MetricsAddr == "" {
		return func() {}, nil
	}
	stop, err = a.ServeMetrics(c.MetricsAddr, app.MetricsOptions{Profiling: c.Pprof})
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	return stop, nil
}

func (c *ServeCmd) serveStdio(env *runEnv, tp trace.TracerProvider) error {
	perms, err := scope.ParsePermissions(joinList(c.Permissions))
	if err != nil {
		return err
	}
	ac := scope.AgentConfig{Org: c.Org, User: c.User, Teams: c.Teams, Agent: c.Agent, DefaultScope: c.DefaultScope, Permissions: perms}
	id, err := ac.Identity(newSessionKey())
	if err != nil {
		return err
	}
	cfg := c.appConfig(env, tp)
	cfg.DefaultScope = ac.DefaultScopeName()
	a, err := app.New(env.ctx, cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	stopMetrics, err := c.startMetrics(a)
	if err != nil {
		return err
	}
	defer stopMetrics()
	env.log.Info("serving MCP on stdio", "org", id.Org, "user", id.User, "agent", id.Agent, "teams", id.Teams)
	return a.ServeStdio(env.ctx, id, os.Stdin, os.Stdout)
}

func (c *ServeCmd) serveHTTP(env *runEnv, tp trace.TracerProvider) error {
	hc, err := c.httpSecurityFlags.config(c.HTTP)
	if err != nil {
		return err
	}
	audience, err := c.audience(hc.PublicURL, c.JWTAudience)
	if err != nil {
		return err
	}
	jc := scope.JWTConfig{
		JWKSURL: c.JWKSURL, Issuer: c.JWTIssuer, Audience: audience, Algorithms: c.JWTAlgorithms,
		Claims: scope.ClaimNames{Org: c.ClaimOrg, User: c.ClaimUser, Teams: c.ClaimTeams, Agent: c.ClaimAgent, Permissions: c.ClaimPermissions},
		Logger: env.log,
	}
	if c.JWTSecretFile != "" {
		secret, err := scope.LoadJWTSecretFile(c.JWTSecretFile)
		if err != nil {
			return err
		}
		jc.Secret = secret
	}
	if jc.Secret == nil && jc.JWKSURL == "" && c.NoAPIKeys {
		return errors.New("serving HTTP needs --jwt-secret-file or --jwks-url (or API keys, which --no-api-keys turns off): every request must carry a verified bearer token")
	}
	if jc.Secret != nil || jc.JWKSURL != "" {
		v, err := scope.NewJWTVerifier(env.ctx, jc)
		if err != nil {
			return err
		}
		defer v.Close()
		hc.Verifier = v.Verify
	} else {
		env.log.Info("no --jwt-secret-file or --jwks-url: accepting API keys only (scopemem keys create)")
	}
	a, err := app.New(env.ctx, c.appConfig(env, tp))
	if err != nil {
		return err
	}
	defer a.Close()
	srv := a.NewHTTPServer(c.HTTP, hc)
	srv.Handler = a.InstrumentHTTP(srv.Handler)
	stopMetrics, err := c.startMetrics(a)
	if err != nil {
		return err
	}
	defer stopMetrics()
	ln, err := net.Listen("tcp", c.HTTP)
	if err != nil {
		return err
	}
	env.log.Info("serving MCP over streamable HTTP", "addr", ln.Addr().String(), "path", "/mcp")
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-env.ctx.Done():
	}
	env.log.Info("shutting down: draining in-flight calls", "timeout", c.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// storeTimeout maps --store-timeout to app.Config.StoreTimeout, where zero
// means the default and a negative value no limit.
func storeTimeout(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

func joinList(xs []string) string {
	out := ""
	for i, x := range xs {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}

// newSessionKey returns the session key of this stdio process.
func newSessionKey() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "stdio-" + hex.EncodeToString(b[:])
}

// VersionCmd prints the version.
type VersionCmd struct{}

// Run prints the version to stdout.
func (VersionCmd) Run() error {
	fmt.Println(versionString())
	return nil
}

// vectorCacheBytes maps --vector-cache-mb to app.Config.VectorCacheBytes,
// where zero means the default and negative means off.
func vectorCacheBytes(mb int) int64 {
	if mb == 0 {
		return -1
	}
	return int64(mb) << 20
}
