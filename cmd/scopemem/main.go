// Command scopemem is a Model Context Protocol memory server whose tenant
// isolation is enforced by verified identity and by the database.
//
// Usage:
//
//	scopemem serve                          # MCP over stdio, SQLite store
//	scopemem serve --http 127.0.0.1:8080    # streamable HTTP, bearer tokens
//	scopemem migrate --database-url ...     # apply PostgreSQL migrations
//
// Run `scopemem --help` for every command and flag. Logs go to stderr:
// stdout carries the stdio transport.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/scopemem/scopemem/internal/app"
)

// CLI is the command line: every flag can also come from the environment
// variable named in its tag, and serve's flags from a JSON --config file.
type CLI struct {
	ServeCLI
	Migrate  MigrateCmd  `cmd:"" help:"Apply the PostgreSQL migrations and create the runtime role."`
	Maintain MaintainCmd `cmd:"" help:"Give large PostgreSQL scopes their own approximate index (serve does this with --migrate-database-url)."`
	Token    TokenCmd    `cmd:"" help:"Mint an HS256 token for development (production tokens come from your identity provider)."`
	Version  VersionCmd  `cmd:"" help:"Print the version."`
	Export   ExportCmd   `cmd:"" help:"Write the memories of one org (or one user or scope of it) as JSON lines."`
	Import   ImportCmd   `cmd:"" help:"Read memories written by export; importing a file twice stores each memory once."`
	Reindex  ReindexCmd  `cmd:"" help:"Re-embed every memory with another embedder, resumably, while searches go on."`
	Doctor   DoctorCmd   `cmd:"" help:"Check the database, the embedder, the JWKS and the clock, and say how to fix what fails."`
	Keys     KeysCmd     `cmd:"" help:"Create, list, revoke and rotate API keys for machine clients."`
	Usage    UsageCmd    `cmd:"" help:"Show an org's stored memories, bytes and calls."`
	Audit    AuditCmd    `cmd:"" help:"Show an org's audit log: writes, purges, failed logins, key changes."`
}

// ServeCLI is the global flags and the serve command: the whole command
// line of `scopemem serve ...`, which is how MCP clients start the stdio
// server, once per conversation. Parsing it alone builds kong's model of
// one command rather than of all of them, in under half the time and
// memory (BENCHMARKS.md, "Less work before the first answer").
type ServeCLI struct {
	LogLevel  slog.Level `name:"log-level" env:"SCOPEMEM_LOG_LEVEL" default:"info" help:"Log level: debug, info, warn or error. Logs go to stderr."`
	LogFormat string     `name:"log-format" env:"SCOPEMEM_LOG_FORMAT" enum:"text,json" default:"text" help:"Log format: text or json."`

	Serve ServeCmd `cmd:"" help:"Serve MCP over stdio (default) or streamable HTTP (--http)."`
}

// cliModel returns what kong parses args (without the program name) into:
// cli's ServeCLI when they start with the serve command, cli otherwise
// (the same flags and help either way).
func cliModel(cli *CLI, args []string) any {
	if len(args) > 0 && args[0] == "serve" {
		return &cli.ServeCLI
	}
	return cli
}

func main() {
	deferCollection(startQuiet)
	var cli CLI
	kctx := kong.Parse(cliModel(&cli, os.Args[1:]),
		kong.Name("scopemem"),
		kong.Description("A Model Context Protocol memory server with scoped, isolated memories."),
		kong.UsageOnError(),
		kong.Configuration(strictJSON),
	)
	logger := newLogger(cli.LogLevel, cli.LogFormat)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := kctx.Run(&runEnv{ctx: ctx, log: logger})
	if err != nil {
		logger.Error("scopemem failed", "err", err)
		fmt.Fprintln(os.Stderr, "scopemem:", err)
		stop()
		os.Exit(1)
	}
}

// runEnv is what every command's Run receives.
type runEnv struct {
	ctx context.Context
	log *slog.Logger
}

// newLogger logs to stderr in format, adding the request id of the call a
// record belongs to (see app.LogHandler).
func newLogger(level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if format == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	return slog.New(app.LogHandler(h))
}

// startQuiet is how long after main begins the garbage collector waits
// (see deferCollection), and startLimit the memory limit meanwhile.
const (
	startQuiet = 500 * time.Millisecond
	startLimit = 128 << 20
)

// deferCollection holds the garbage collector off for quiet, unless GOGC
// or GOMEMLIMIT says how it should run. By the end of package
// initialization the heap is near the 4 MB at which the first collection
// starts, and that collection then runs alongside parsing the command
// line and opening the store: on a 2-core machine it made the parse take
// 7-9 ms instead of 3-4, on every stdio start (once per conversation). A
// start allocates a few megabytes more, collected after the quiet time,
// when a stdio server waits for its first call. A memory limit of
// startLimit meanwhile keeps anything that allocates more in its first
// moments (an import, a large first search) collecting as usual.
func deferCollection(quiet time.Duration) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	percent := debug.SetGCPercent(-1)
	limit := debug.SetMemoryLimit(startLimit)
	time.AfterFunc(quiet, func() {
		debug.SetMemoryLimit(limit)
		debug.SetGCPercent(percent)
	})
}
