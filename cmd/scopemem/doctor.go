package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/scopemem/scopemem/embed"
	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/postgres"
	"github.com/scopemem/scopemem/store/sqlite"
)

// DoctorCmd checks what a server needs and says how to fix what is wrong.
type DoctorCmd struct {
	DB          string        `name:"db" env:"SCOPEMEM_DB" help:"SQLite file (default: the server's)." placeholder:"PATH"`
	DatabaseURL string        `name:"database-url" env:"SCOPEMEM_DATABASE_URL" help:"PostgreSQL URL the server connects with (the runtime role)." placeholder:"URL"`
	Embedder    string        `env:"SCOPEMEM_EMBEDDER" enum:"auto,ollama,builtin,fake" default:"auto" help:"The embedder the server is started with."`
	Model       string        `env:"SCOPEMEM_MODEL" default:"nomic-embed-text" help:"Ollama embedding model."`
	OllamaHost  string        `name:"ollama-host" env:"OLLAMA_HOST" help:"Ollama URL (default http://127.0.0.1:11434)." placeholder:"URL"`
	JWKSURL     string        `name:"jwks-url" env:"SCOPEMEM_JWKS_URL" help:"JWKS URL the server verifies tokens with." placeholder:"URL"`
	MaxSkew     time.Duration `name:"max-skew" default:"30s" help:"Largest clock difference tolerated with the database and the HTTP servers."`
	Timeout     time.Duration `default:"5s" help:"How long each check may take."`
}

// Run prints one line per check (and the fix of each failure) to stdout
// and fails when a check failed.
func (c *DoctorCmd) Run(env *runEnv) error {
	results := runDoctor(env.ctx, doctorConfig{
		DB: c.DB, DatabaseURL: c.DatabaseURL, Embedder: c.Embedder, Model: c.Model, OllamaHost: c.OllamaHost,
		JWKSURL: c.JWKSURL, MaxSkew: c.MaxSkew, Timeout: c.Timeout, Log: env.log,
	})
	failed := printChecks(os.Stdout, results)
	if failed > 0 {
		return fmt.Errorf("doctor: %d check(s) failed", failed)
	}
	return nil
}

// Check names, in the order they run.
const (
	checkDatabase   = "database"
	checkPgvector   = "pgvector"
	checkMigrations = "migrations"
	checkRLS        = "row-level security"
	checkOllama     = "ollama"
	checkModel      = "model"
	checkDims       = "embedder"
	checkJWKS       = "jwks"
	checkClock      = "clock"
)

// checkStatus is how a check went.
type checkStatus int

const (
	statusOK checkStatus = iota
	statusSkip
	statusWarn
	statusFail
)

func (s checkStatus) String() string {
	return [...]string{"ok", "skip", "WARN", "FAIL"}[s]
}

// checkResult is one check's outcome; Fix says what to do when it is not
// ok.
type checkResult struct {
	Name   string
	Status checkStatus
	Detail string
	Fix    string
}

// doctorConfig configures runDoctor.
type doctorConfig struct {
	DB, DatabaseURL   string
	Embedder, Model   string
	OllamaHost        string
	JWKSURL           string
	MaxSkew, Timeout  time.Duration
	Client            *http.Client     // default: one with Timeout
	Now               func() time.Time // default time.Now
	Log               *slog.Logger
	MinPgvector       string // default 0.5.0 (HNSW)
	RecommendPgvector string // default 0.8.0 (iterative index scans)
}

// clockSample is one remote clock reading.
type clockSample struct {
	source string
	skew   time.Duration
	slack  time.Duration // the reading's own resolution
}

type doctor struct {
	cfg     doctorConfig
	out     []checkResult
	clocks  []clockSample
	stored  store.EmbedderInfo
	haveEmb bool
}

func (d *doctor) add(name string, s checkStatus, detail, fix string) {
	d.out = append(d.out, checkResult{Name: name, Status: s, Detail: detail, Fix: fix})
}

// runDoctor runs every check. No check stops the others.
func runDoctor(ctx context.Context, cfg doctorConfig) []checkResult {
	if cfg.MaxSkew <= 0 {
		cfg.MaxSkew = 30 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MinPgvector == "" {
		cfg.MinPgvector = "0.5.0"
	}
	if cfg.RecommendPgvector == "" {
		cfg.RecommendPgvector = "0.8.0"
	}
	if cfg.Model == "" {
		cfg.Model = embed.DefaultOllamaModel
	}
	d := &doctor{cfg: cfg}
	if cfg.DatabaseURL != "" {
		d.postgres(ctx)
	} else {
		d.sqlite(ctx)
	}
	d.embedder(ctx)
	d.jwks(ctx)
	d.clock()
	return d.out
}

func (d *doctor) postgres(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	t0 := d.cfg.Now()
	in, err := postgres.Inspect(ctx, d.cfg.DatabaseURL)
	t1 := d.cfg.Now()
	if err != nil {
		d.add(checkDatabase, statusFail, err.Error(),
			"check --database-url (host, port, database, user, password) and that PostgreSQL is running and accepts connections from here")
		for _, n := range []string{checkPgvector, checkMigrations, checkRLS} {
			d.add(n, statusSkip, "the database is not reachable", "")
		}
		return
	}
	d.add(checkDatabase, statusOK, fmt.Sprintf("PostgreSQL reachable as role %q (round trip %s)", in.Role, in.RoundTrip.Round(time.Microsecond)), "")
	d.clocks = append(d.clocks, clockSample{"the database's now()", in.ServerTime.Sub(t0.Add(t1.Sub(t0) / 2)), t1.Sub(t0) / 2})

	switch {
	case in.Pgvector == "":
		d.add(checkPgvector, statusFail, "the vector extension is not installed in this database",
			"as a superuser, in this database: CREATE EXTENSION vector; (install pgvector on the server first), then run scopemem migrate")
	case versionLess(in.Pgvector, d.cfg.MinPgvector):
		d.add(checkPgvector, statusFail, "pgvector "+in.Pgvector+" is older than "+d.cfg.MinPgvector,
			"upgrade pgvector on the server, then as a superuser: ALTER EXTENSION vector UPDATE;")
	case versionLess(in.Pgvector, d.cfg.RecommendPgvector):
		d.add(checkPgvector, statusWarn, "pgvector "+in.Pgvector+" works; "+d.cfg.RecommendPgvector+" adds iterative index scans for large tenants",
			"upgrade pgvector, then ALTER EXTENSION vector UPDATE;")
	default:
		d.add(checkPgvector, statusOK, "pgvector "+in.Pgvector, "")
	}

	switch {
	case in.SchemaVersion < in.WantSchema:
		d.add(checkMigrations, statusFail, fmt.Sprintf("the schema is at version %d, this binary needs %d", in.SchemaVersion, in.WantSchema),
			"scopemem migrate --database-url <the owner's URL>")
	case in.SchemaVersion > in.WantSchema:
		d.add(checkMigrations, statusFail, fmt.Sprintf("the schema is at version %d, newer than this binary (%d)", in.SchemaVersion, in.WantSchema),
			"upgrade scopemem to the version that migrated this database")
	default:
		d.add(checkMigrations, statusOK, fmt.Sprintf("schema version %d", in.SchemaVersion), "")
	}

	switch {
	case in.Superuser:
		d.add(checkRLS, statusFail, fmt.Sprintf("role %q is a superuser: row-level security does not hold it", in.Role),
			"connect as the runtime role that scopemem migrate creates (--runtime-role, default scopemem_app)")
	case in.BypassRLS:
		d.add(checkRLS, statusFail, fmt.Sprintf("role %q has BYPASSRLS", in.Role), fmt.Sprintf("ALTER ROLE %s NOBYPASSRLS;", in.Role))
	case in.Owner:
		d.add(checkRLS, statusWarn, fmt.Sprintf("role %q owns the tables: FORCE ROW LEVEL SECURITY holds it, but it could turn it off", in.Role),
			"connect as the runtime role that scopemem migrate creates, which owns nothing")
	default:
		d.add(checkRLS, statusOK, fmt.Sprintf("role %q is neither superuser, BYPASSRLS nor owner", in.Role), "")
	}
	if in.SchemaVersion > 0 {
		if st, err := postgres.Open(ctx, postgres.Config{URL: d.cfg.DatabaseURL, AllowPrivilegedRole: true}); err == nil {
			d.stored, d.haveEmb, _ = st.Embedder(ctx)
			st.Close()
		}
	}
}

func (d *doctor) sqlite(ctx context.Context) {
	path := d.cfg.DB
	if path == "" {
		path = app.DefaultDBPath()
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		d.add(checkDatabase, statusWarn, path+" does not exist yet", "nothing to do: scopemem serve creates it (check --db if you expected one)")
	} else {
		st, err := sqlite.Open(ctx, sqlite.Config{Path: path, ReadOnly: true})
		if err != nil {
			d.add(checkDatabase, statusFail, err.Error(), "check --db and the file's permissions; run scopemem serve once with write access to migrate it")
		} else {
			d.add(checkDatabase, statusOK, "SQLite file "+st.Path(), "")
			d.stored, d.haveEmb, _ = st.Embedder(ctx)
			st.Close()
		}
	}
	d.add(checkPgvector, statusSkip, "SQLite store: vectors are scanned in Go", "")
	d.add(checkMigrations, statusSkip, "SQLite store: migrated when opened for writing", "")
	d.add(checkRLS, statusSkip, "SQLite store: one local user, no database roles", "")
}

// embedder checks Ollama, the model and that the embedder matches the
// store.
func (d *doctor) embedder(ctx context.Context) {
	provider := d.cfg.Embedder
	if provider == "auto" || provider == "" {
		provider = "ollama"
		if d.haveEmb {
			provider = d.stored.Provider
		}
	}
	// With auto and a new store, the server falls back to the built-in
	// embedder when Ollama is missing: a warning, not a failure.
	fail := statusFail
	if (d.cfg.Embedder == "auto" || d.cfg.Embedder == "") && !d.haveEmb {
		fail = statusWarn
	}
	if provider != "ollama" {
		d.add(checkOllama, statusSkip, "the embedder is "+provider, "")
		d.add(checkModel, statusSkip, "the embedder is "+provider, "")
		d.embedderMatch(embed.Info{Provider: provider})
		return
	}
	o, err := embed.NewOllama(embed.OllamaConfig{Host: d.cfg.OllamaHost, Model: d.cfg.Model, HTTPClient: d.cfg.Client,
		Timeout: d.cfg.Timeout, MaxRetries: -1})
	if err != nil {
		d.add(checkOllama, statusFail, err.Error(), "set --ollama-host (or OLLAMA_HOST) to Ollama's URL, e.g. http://127.0.0.1:11434")
		d.add(checkModel, statusSkip, "Ollama's URL is not valid", "")
		return
	}
	host := ollamaURL(d.cfg.OllamaHost)
	t0 := d.cfg.Now()
	resp, err := d.get(ctx, host+"/api/version")
	t1 := d.cfg.Now()
	if err != nil {
		d.add(checkOllama, fail, fmt.Sprintf("no answer from %s: %v", host, err),
			"start Ollama (ollama serve, or the ollama service of deploy/compose.yaml) or point --ollama-host at it")
		d.add(checkModel, statusSkip, "Ollama is not reachable", "")
		d.add(checkDims, statusSkip, "Ollama is not reachable", "")
		return
	}
	d.httpClock("Ollama's Date header", resp, t0, t1)
	d.add(checkOllama, statusOK, host+" answers", "")
	pctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	info, err := o.Probe(pctx)
	switch {
	case errors.Is(err, embed.ErrModelNotFound):
		d.add(checkModel, fail, "Ollama does not have "+d.cfg.Model, "ollama pull "+d.cfg.Model)
		d.add(checkDims, statusSkip, "the model is missing", "")
		return
	case err != nil:
		d.add(checkModel, statusFail, err.Error(), "check that "+d.cfg.Model+" is an embedding model and that Ollama can load it (ollama run logs)")
		d.add(checkDims, statusSkip, "the model does not embed", "")
		return
	}
	d.add(checkModel, statusOK, fmt.Sprintf("%s embeds (%d dimensions)", d.cfg.Model, info.Dimensions), "")
	d.embedderMatch(info)
}

// embedderMatch compares the embedder the server would use with the
// store's record.
func (d *doctor) embedderMatch(have embed.Info) {
	if !d.haveEmb {
		d.add(checkDims, statusOK, "the store records no embedder yet; the first server start records "+have.Provider, "")
		return
	}
	s := d.stored
	reindex := fmt.Sprintf("start with --embedder %s --model %s, or re-embed: scopemem reindex --embedder %s --model %s",
		s.Provider, s.Model, have.Provider, orDefault(have.Model, d.cfg.Model))
	switch {
	case s.Provider != have.Provider || (have.Model != "" && s.Model != have.Model):
		d.add(checkDims, statusFail, fmt.Sprintf("the store's vectors come from %v, the server is configured with %s/%s", s, have.Provider, orDefault(have.Model, "?")), reindex)
	case have.Dimensions != 0 && s.Dimensions != have.Dimensions:
		d.add(checkDims, statusFail, fmt.Sprintf("the store holds %d-dimension vectors, %s makes %d", s.Dimensions, have.Model, have.Dimensions),
			"scopemem reindex --embedder "+have.Provider+" --model "+have.Model)
	case s.Provider == "builtin":
		d.add(checkDims, statusWarn, "the store uses the built-in lexical embedder: it matches words, not meaning",
			"for semantic recall: ollama pull nomic-embed-text && scopemem reindex --embedder ollama --model nomic-embed-text")
	default:
		d.add(checkDims, statusOK, fmt.Sprintf("the store's vectors come from %v, as configured", s), "")
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// ollamaURL is Ollama's base URL as the embed package reads it.
func ollamaURL(host string) string {
	if host == "" {
		host = os.Getenv("OLLAMA_HOST")
	}
	if host == "" {
		return "http://127.0.0.1:11434"
	}
	if !strings.Contains(host, "://") {
		host = "http://" + host
	}
	return strings.TrimRight(host, "/")
}

func (d *doctor) get(ctx context.Context, url string) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.cfg.Client.Do(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp, nil
}

// httpClock records the skew of an HTTP Date header (one-second
// resolution) read between t0 and t1.
func (d *doctor) httpClock(source string, resp *http.Response, t0, t1 time.Time) {
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return
	}
	d.clocks = append(d.clocks, clockSample{source, date.Sub(t0.Add(t1.Sub(t0) / 2)), t1.Sub(t0)/2 + time.Second})
}

func (d *doctor) jwks(ctx context.Context) {
	if d.cfg.JWKSURL == "" {
		d.add(checkJWKS, statusSkip, "no --jwks-url", "")
		return
	}
	fix := "check --jwks-url: it must serve your identity provider's JSON Web Key Set (often https://<issuer>/.well-known/jwks.json) to this host"
	t0 := d.cfg.Now()
	resp, err := d.get(ctx, d.cfg.JWKSURL)
	t1 := d.cfg.Now()
	if err != nil {
		d.add(checkJWKS, statusFail, fmt.Sprintf("no answer from %s: %v", d.cfg.JWKSURL, err), fix)
		return
	}
	d.httpClock("the JWKS server's Date header", resp, t0, t1)
	if resp.StatusCode != http.StatusOK {
		d.add(checkJWKS, statusFail, fmt.Sprintf("%s answered HTTP %d", d.cfg.JWKSURL, resp.StatusCode), fix)
		return
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || len(set.Keys) == 0 {
		d.add(checkJWKS, statusFail, d.cfg.JWKSURL+" does not hold a JSON Web Key Set with keys", fix)
		return
	}
	d.add(checkJWKS, statusOK, fmt.Sprintf("%s serves %d key(s)", d.cfg.JWKSURL, len(set.Keys)), "")
}

func (d *doctor) clock() {
	if len(d.clocks) == 0 {
		d.add(checkClock, statusSkip, "no remote clock to compare with", "")
		return
	}
	var bad, good []string
	for _, c := range d.clocks {
		s := fmt.Sprintf("%s differs by %s", c.source, c.skew.Round(time.Millisecond))
		if c.skew.Abs() > d.cfg.MaxSkew+c.slack {
			bad = append(bad, s)
		} else {
			good = append(good, s)
		}
	}
	if len(bad) > 0 {
		d.add(checkClock, statusFail, strings.Join(bad, "; ")+fmt.Sprintf(" (more than %s): token expiry and memory TTLs will be wrong", d.cfg.MaxSkew),
			"synchronize this machine's clock (and the other's) with NTP, e.g. timedatectl set-ntp true or chrony")
		return
	}
	d.add(checkClock, statusOK, strings.Join(good, "; "), "")
}

// versionLess compares dotted versions numerically ("0.10.0" > "0.8.0").
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// printChecks writes one line per check, with the fix under each that is
// not ok, and returns how many failed.
func printChecks(w io.Writer, rs []checkResult) int {
	failed := 0
	for _, r := range rs {
		fmt.Fprintf(w, "%-4s  %-18s  %s\n", r.Status, r.Name, r.Detail)
		if r.Fix != "" && (r.Status == statusFail || r.Status == statusWarn) {
			fmt.Fprintf(w, "      %-18s  fix: %s\n", "", r.Fix)
		}
		if r.Status == statusFail {
			failed++
		}
	}
	return failed
}
