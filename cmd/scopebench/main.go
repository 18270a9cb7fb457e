// Command scopebench is scopemem's load generator. It drives a scopemem
// server through a real MCP client (mcp-go), over stdio or streamable HTTP,
// with many concurrent sessions calling a mix of tools as many tenants,
// prints throughput and latency percentiles per tool, and then checks that
// every add the server acknowledged is still there.
//
// Usage:
//
//	# stdio: start one `scopemem serve` per session on one SQLite file
//	scopebench run --transport stdio --sessions 8 --calls 2000 --preload 2000
//
//	# HTTP: a running server, tokens minted from its HS256 secret
//	scopebench run --transport http --url http://127.0.0.1:8080 \
//	    --jwt-secret-file secret --sessions 32 --orgs 100 --duration 30s
//
//	# stdio cold start and idle memory
//	scopebench coldstart --runs 21
//
// Servers scopebench starts use the fake embedder (deterministic vectors,
// an optional delay standing for a model) unless --embedder says otherwise;
// a server given by --url embeds with whatever it was started with.
//
// Progress goes to stderr, the report to stdout. The exit status is 1 when
// an acknowledged add is missing (or stored twice), or when calls failed
// and --allow-errors is not given.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/scope"
)

// CLI is the command line.
type CLI struct {
	Run       RunCmd       `cmd:"" help:"Drive a server with concurrent sessions and report throughput, latency and lost writes."`
	Coldstart ColdstartCmd `cmd:"" help:"Measure stdio cold start (spawn to initialize and to tools/list) and idle RSS."`
}

// errCheckFailed means the run completed but found lost writes or errors.
var errCheckFailed = errors.New("check failed")

func main() {
	if os.Getenv("GOGC") == "" {
		// The generator shares the machine with the server it measures, and
		// its heap is a few megabytes: collecting it a fifth as often
		// leaves more of the cores to the server.
		debug.SetGCPercent(400)
	}
	var cli CLI
	kctx := kong.Parse(&cli,
		kong.Name("scopebench"),
		kong.Description("Load generator for scopemem: throughput, latency and lost-write checks over stdio or streamable HTTP."),
		kong.UsageOnError(),
	)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	kctx.BindTo(ctx, (*context.Context)(nil))
	err := kctx.Run()
	stop()
	if err != nil {
		if !errors.Is(err, errCheckFailed) {
			fmt.Fprintln(os.Stderr, "scopebench:", err)
		}
		os.Exit(1)
	}
}

// ServerFlags say how to start the servers scopebench starts itself: the
// stdio processes, or the in-process HTTP server when no --url is given.
type ServerFlags struct {
	Scopemem    string        `default:"scopemem" help:"The scopemem binary to start for stdio: a path, or a name looked up in PATH." placeholder:"PATH"`
	DB          string        `name:"db" help:"SQLite file of the servers scopebench starts (default: a new file in a temporary directory, removed afterwards)." placeholder:"PATH"`
	DatabaseURL string        `name:"database-url" help:"PostgreSQL URL of the runtime role, for servers scopebench starts (instead of SQLite)." placeholder:"URL"`
	MigrateURL  string        `name:"migrate-database-url" help:"PostgreSQL URL of the schema owner: migrations are applied and the runtime role created at start." placeholder:"URL"`
	Embedder    string        `default:"fake" enum:"fake,builtin" help:"Embedder of the servers scopebench starts: fake (deterministic, for load tests) or builtin (lexical)."`
	Dims        int           `default:"768" help:"Vector dimensions of the fake embedder."`
	FakeDelay   time.Duration `name:"fake-delay" default:"0s" help:"Delay of each fake embedder call, standing for a model's latency."`
	FakePar     int           `name:"fake-parallel" help:"Calls the fake embedder answers at once, as a model server's workers (0: no limit; 1: like an Ollama with one worker)."`
	BatchMax    int           `name:"embed-batch-max" help:"Most texts per merged embedding request (1: one call's texts per request, no micro-batching; 0: the server's default)."`
	ServerArg   []string      `name:"server-arg" help:"Extra argument for scopemem serve (repeat the flag for several)." placeholder:"ARG"`
}

// serveArgs returns the arguments after "serve" for a stdio server on db.
func (f *ServerFlags) serveArgs(db string) []string {
	args := []string{"--embedder", f.Embedder}
	if f.Embedder == "fake" {
		args = append(args, "--fake-dims", strconv.Itoa(f.Dims), "--fake-delay", f.FakeDelay.String(), "--fake-parallel", strconv.Itoa(f.FakePar))
	}
	if f.BatchMax > 0 {
		args = append(args, "--embed-batch-max", strconv.Itoa(f.BatchMax))
	}
	if f.DatabaseURL != "" {
		args = append(args, "--database-url", f.DatabaseURL)
		if f.MigrateURL != "" {
			args = append(args, "--migrate-database-url", f.MigrateURL)
		}
	} else {
		args = append(args, "--db", db)
	}
	return append(args, f.ServerArg...)
}

// database returns the SQLite file to use and a function removing it when
// scopebench made it.
func (f *ServerFlags) database() (string, func(), error) {
	if f.DB != "" || f.DatabaseURL != "" {
		return f.DB, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "scopebench-")
	if err != nil {
		return "", nil, err
	}
	return filepath.Join(dir, "bench.db"), func() { os.RemoveAll(dir) }, nil
}

func (f *ServerFlags) binary() (string, error) {
	p, err := exec.LookPath(f.Scopemem)
	if err != nil {
		return "", fmt.Errorf("scopemem binary %q not found: build it (go build -o scopemem ./cmd/scopemem) and pass --scopemem ./scopemem: %w", f.Scopemem, err)
	}
	return p, nil
}

func (f *ServerFlags) describeStore() string {
	if f.DatabaseURL != "" {
		return "PostgreSQL"
	}
	return "SQLite"
}

func (f *ServerFlags) describeEmbedder() string {
	var d string
	if f.Embedder == "fake" {
		d = fmt.Sprintf("fake embedder %d dims, %s delay", f.Dims, f.FakeDelay)
		if f.FakePar > 0 {
			d += fmt.Sprintf(", %d at once", f.FakePar)
		}
	} else {
		d = f.Embedder + " embedder"
	}
	if f.BatchMax > 0 {
		d += fmt.Sprintf(", batches of at most %d texts", f.BatchMax)
	}
	return d
}

// RunCmd is `scopebench run`.
type RunCmd struct {
	ServerFlags `embed:""`

	Transport     string `default:"stdio" enum:"stdio,http" help:"stdio (scopebench starts scopemem serve) or http."`
	URL           string `name:"url" help:"Base URL of a running server (http), e.g. http://127.0.0.1:8080; without it scopebench serves one in-process." placeholder:"URL"`
	JWTSecretFile string `name:"jwt-secret-file" help:"File with the server's HS256 secret, to mint each identity's token (required with --url)." placeholder:"FILE"`
	JWTIssuer     string `name:"jwt-issuer" help:"iss claim of the minted tokens (the server's --jwt-issuer)."`
	JWTAudience   string `name:"jwt-audience" help:"aud claim of the minted tokens (the server's --jwt-audience)."`
	StdioProcess  string `name:"stdio-process" default:"per-session" enum:"per-session,shared" help:"stdio: one server process per session (several processes on one file), or one shared by every session."`
	InProcess     bool   `name:"in-process" help:"stdio: serve every session inside scopebench over pipes instead of starting scopemem, so that --cpuprofile covers the server (for profiles, not for figures)."`
	Protocol      string `default:"2026-07-28" enum:"2026-07-28,2025-11-25,2025-06-18,2025-03-26" help:"MCP version the sessions speak: 2026-07-28 has no handshake and every request carries the client's version, identity and capabilities in its _meta; earlier versions start with the initialize handshake (the TypeScript SDK 1.32 and the desktop clients built on it speak 2025-11-25)."`
	Procs         int    `name:"procs" help:"Threads running scopebench's own Go code (GOMAXPROCS; 0: one, or all CPUs when the server runs inside scopebench)." placeholder:"N"`

	Sessions     int           `default:"1" help:"Concurrent sessions, each calling in a closed loop."`
	Rate         float64       `name:"rate" help:"Pace the calls at this many a second in all, each session on a fixed schedule (open loop), latency counted from each call's scheduled start (0: closed loops, as fast as the server answers)." placeholder:"CALLS/S"`
	Calls        int           `default:"1000" help:"Measured calls per session."`
	Duration     time.Duration `help:"Measure for this long instead of --calls."`
	Warmup       time.Duration `default:"1s" help:"Unmeasured calls for this long before measuring."`
	Mix          string        `default:"add=20,search=75,list=5" help:"Relative weights of add (add_memory), search (search_memory) and list (list_scopes)."`
	Preload      int           `help:"Memories added before measuring, in parallel."`
	PreloadConc  int           `name:"preload-concurrency" default:"8" help:"Adds in flight while preloading (spread over the sessions)."`
	Orgs         int           `default:"1" help:"Orgs the identities belong to."`
	Users        int           `default:"1" help:"Users per org. Over HTTP each call picks an identity; over stdio each process has one."`
	Distribution string        `default:"uniform" enum:"uniform,zipf" help:"How calls spread over orgs."`
	ZipfS        float64       `name:"zipf-s" default:"1.1" help:"Exponent of the zipf distribution."`
	ContentBytes int           `name:"content-bytes" default:"200" help:"Size of each added memory."`
	SearchLimit  int           `name:"search-limit" default:"10" help:"limit of each search."`
	CallTimeout  time.Duration `name:"call-timeout" default:"30s" help:"Timeout of one call."`
	Seed         uint64        `default:"1" help:"Seed of the random choices."`
	Verify       bool          `default:"true" negatable:"" help:"Afterwards, read back every acknowledged add and compare scope counts."`
	AllowErrors  bool          `name:"allow-errors" help:"Exit 0 even when calls failed (lost writes still fail the run)."`
	CPUProfile   string        `name:"cpuprofile" help:"Write a CPU profile of the measured phase to this file (it covers the server too when it runs in-process)." placeholder:"FILE"`
	MemProfile   string        `name:"memprofile" help:"After the measured phase, write a profile of the allocations made so far, warm-up included, to this file (go tool pprof -sample_index=alloc_space; it covers the server too when it runs in-process)." placeholder:"FILE"`
	JSON         bool          `name:"json" help:"Print the report as JSON."`
}

// Run runs the load.
func (c *RunCmd) Run(ctx context.Context) error {
	m, err := parseMix(c.Mix)
	if err != nil {
		return err
	}
	ten, err := newTenants(c.Orgs, c.Users, c.Distribution, c.ZipfS)
	if err != nil {
		return err
	}
	if c.ContentBytes < 1 || c.SearchLimit < 1 || c.SearchLimit > 100 || c.PreloadConc < 1 {
		return fmt.Errorf("--content-bytes and --preload-concurrency must be positive, --search-limit within 1..100: %w", errUsage)
	}
	cfg := Config{
		Sessions: c.Sessions, Rate: c.Rate, Calls: c.Calls, Duration: c.Duration, Warmup: c.Warmup, Mix: m, MixText: c.Mix,
		Preload: c.Preload, PreloadConc: c.PreloadConc, ContentBytes: c.ContentBytes, SearchLimit: c.SearchLimit,
		CallTimeout: c.CallTimeout, Seed: c.Seed, Verify: c.Verify, CPUProfile: c.CPUProfile, MemProfile: c.MemProfile,
	}
	db, cleanup, err := c.database()
	if err != nil {
		return err
	}
	defer cleanup()
	procs := c.threads()

	var tgt target
	switch c.Transport {
	case "stdio":
		st := &stdioTarget{tenants: ten, shared: c.StdioProcess == "shared", seed: c.Seed, stderr: &tailBuffer{}, protocol: c.Protocol}
		if c.InProcess {
			st.newApp = func(ctx context.Context) (*app.App, error) { return c.newApp(ctx, db) }
		} else {
			if st.bin, err = c.binary(); err != nil {
				return err
			}
			st.args = c.serveArgs(db)
		}
		// One process first creates the schema and records the embedder,
		// so that concurrent starts find them.
		s, err := st.spawn(ctx, 0)
		if err != nil {
			return err
		}
		s.close()
		tgt = st
		cfg.Describe = fmt.Sprintf("stdio (%s process), %s, %s", c.StdioProcess, c.describeStore(), c.describeEmbedder())
		if c.InProcess {
			cfg.Describe = fmt.Sprintf("stdio (in-process pipes), %s, %s", c.describeStore(), c.describeEmbedder())
		}
	case "http":
		url, secret := c.URL, []byte(nil)
		if c.JWTSecretFile != "" {
			if secret, err = scope.LoadJWTSecretFile(c.JWTSecretFile); err != nil {
				return err
			}
		}
		if url == "" {
			if secret == nil {
				secret = make([]byte, 32)
				_, _ = rand.Read(secret)
			}
			var stop func()
			url, stop, err = c.serveInProcess(ctx, db, secret)
			if err != nil {
				return err
			}
			defer stop()
			cfg.Describe = fmt.Sprintf("streamable HTTP (in-process server), JWT, %s, %s", c.describeStore(), c.describeEmbedder())
		} else {
			if secret == nil {
				return fmt.Errorf("--url needs --jwt-secret-file: the server's HS256 secret, to mint a token per identity: %w", errUsage)
			}
			cfg.Describe = "streamable HTTP at " + url + ", JWT"
		}
		ht, err := newHTTPTarget(url, secret, c.JWTIssuer, c.JWTAudience, ten, 24*time.Hour, max(c.Sessions, c.PreloadConc))
		if err != nil {
			return err
		}
		ht.protocol = c.Protocol
		tgt = ht
	}
	defer tgt.close()
	cfg.Describe += fmt.Sprintf(", %d orgs x %d users (%s)", c.Orgs, c.Users, c.Distribution)
	handshake := "initialize handshake"
	if mcp.IsModernProtocol(c.Protocol) {
		handshake = "no handshake, _meta on every request"
	}
	cfg.Client = fmt.Sprintf("MCP %s (%s), GOMAXPROCS %d", c.Protocol, handshake, procs)

	rep, err := Run(ctx, cfg, tgt, ten, os.Stderr)
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		rep.print(os.Stdout)
	}
	if rep.Verify != nil && rep.Verify.Failed() {
		return errCheckFailed
	}
	if rep.ErrorCount() > 0 && !c.AllowErrors {
		fmt.Fprintf(os.Stderr, "scopebench: %d calls failed (pass --allow-errors to tolerate)\n", rep.ErrorCount())
		return errCheckFailed
	}
	return nil
}

// threads sets how many threads run scopebench's Go code (GOMAXPROCS) and
// returns it. By default it is one: the generator's work a call is a
// fraction of the server's, and a second thread mostly woke, spun and
// slept again each time a response readied a calling goroutine, on the
// cores the server and its database need (one stdio session: 2,331 ->
// 2,758 searches/s; 32 HTTP sessions: 1,713-1,839 -> 2,317-2,393/s;
// BENCHMARKS.md). A server running inside scopebench (--in-process, or
// HTTP without --url) keeps every CPU, as does a GOMAXPROCS set in the
// environment.
func (c *RunCmd) threads() int {
	if c.Procs > 0 {
		runtime.GOMAXPROCS(c.Procs)
	} else if os.Getenv("GOMAXPROCS") == "" && !c.InProcess && (c.Transport == "stdio" || c.URL != "") {
		runtime.GOMAXPROCS(1)
	}
	return runtime.GOMAXPROCS(0)
}

// serveInProcess serves scopemem over HTTP inside this process, on a free
// loopback port, until stop is called.
func (c *RunCmd) serveInProcess(ctx context.Context, db string, secret []byte) (url string, stop func(), err error) {
	a, err := c.newApp(ctx, db)
	if err != nil {
		return "", nil, err
	}
	v, err := scope.NewJWTVerifier(ctx, scope.JWTConfig{Secret: secret, Issuer: c.JWTIssuer, Audience: c.JWTAudience, Logger: warnLogger()})
	if err != nil {
		a.Close()
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		v.Close()
		a.Close()
		return "", nil, err
	}
	srv := a.NewHTTPServer(ln.Addr().String(), app.HTTPConfig{Verifier: v.Verify})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	return "http://" + ln.Addr().String(), func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
		v.Close()
		a.Close()
	}, nil
}

// newApp assembles a server inside this process, as scopemem serve would.
func (f *ServerFlags) newApp(ctx context.Context, db string) (*app.App, error) {
	return app.New(ctx, app.Config{
		DBPath: db, DatabaseURL: f.DatabaseURL, MigrateURL: f.MigrateURL,
		Embedder: f.Embedder, FakeDims: f.Dims, FakeDelay: f.FakeDelay, FakeParallel: f.FakePar, EmbedBatchMax: f.BatchMax,
		JanitorInterval: -1, Logger: warnLogger(),
	})
}

// warnLogger logs warnings and errors of in-process servers to stderr.
func warnLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// createFile creates path for writing.
func createFile(path string) (*os.File, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return f, nil
}
