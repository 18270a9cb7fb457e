package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"golang.org/x/time/rate"

	"github.com/scopemem/scopemem/internal/jsonscan"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// RateLimit is a token bucket: Rate requests per second on average, bursts
// of up to Burst. A zero Rate means unlimited.
type RateLimit struct {
	Rate  float64 `json:"rate,omitempty"`
	Burst int     `json:"burst,omitempty"`
}

func (r RateLimit) limiter() *rate.Limiter {
	if r.Rate <= 0 {
		return rate.NewLimiter(rate.Inf, 0)
	}
	b := r.Burst
	if b <= 0 {
		b = max(1, int(math.Ceil(r.Rate)))
	}
	return rate.NewLimiter(rate.Limit(r.Rate), b)
}

// OrgLimits are one org's limits. A zero field means unlimited, or, in an
// org's entry of [OrgLimitsFile], the default's value.
type OrgLimits struct {
	// MaxMemories caps how many memories the org stores.
	MaxMemories int64 `json:"max_memories,omitempty"`
	// MaxBytes caps the total content size of the org's memories.
	MaxBytes int64 `json:"max_bytes,omitempty"`
	// Principal limits the requests of each user of the org.
	Principal RateLimit `json:"principal,omitempty"`
	// Org limits the requests of the whole org.
	Org RateLimit `json:"org,omitempty"`
}

func (l OrgLimits) over(d OrgLimits) OrgLimits {
	if l.MaxMemories == 0 {
		l.MaxMemories = d.MaxMemories
	}
	if l.MaxBytes == 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.Principal.Rate == 0 {
		l.Principal = d.Principal
	}
	if l.Org.Rate == 0 {
		l.Org = d.Org
	}
	return l
}

// OrgLimitsFile is the per-org limits configuration (serve --org-limits):
//
//	{"default": {"max_memories": 100000, "principal": {"rate": 20, "burst": 40}},
//	 "orgs": {"acme": {"max_memories": 1000000, "max_bytes": 1073741824}}}
//
// A field an org's entry leaves out (or sets to 0) takes the default's
// value; a negative value means unlimited for that org.
type OrgLimitsFile struct {
	Default OrgLimits            `json:"default"`
	Orgs    map[string]OrgLimits `json:"orgs"`
}

// For returns the limits of org.
func (f OrgLimitsFile) For(org string) OrgLimits {
	l := f.Default
	if o, ok := f.Orgs[org]; ok {
		l = o.over(f.Default)
	}
	if l.MaxMemories < 0 {
		l.MaxMemories = 0
	}
	if l.MaxBytes < 0 {
		l.MaxBytes = 0
	}
	if l.Principal.Rate < 0 {
		l.Principal = RateLimit{}
	}
	if l.Org.Rate < 0 {
		l.Org = RateLimit{}
	}
	return l
}

// LoadOrgLimits reads an [OrgLimitsFile], refusing unknown keys.
func LoadOrgLimits(path string) (OrgLimitsFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return OrgLimitsFile{}, fmt.Errorf("org limits: %w", err)
	}
	const want = `(want {"default": {...}, "orgs": {"<org>": {"max_memories": n, "max_bytes": n, "principal": {"rate": r, "burst": n}, "org": {...}}}})`
	// Names are matched exactly: encoding/json alone would take
	// "Max_Memories" for max_memories, and of the two keep the later.
	if err := jsonscan.ExactNames(b, reflect.TypeFor[OrgLimitsFile]()); err != nil {
		return OrgLimitsFile{}, fmt.Errorf("org limits file %s: %w; names are lower case %s", path, err, want)
	}
	var f OrgLimitsFile
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return OrgLimitsFile{}, fmt.Errorf("org limits file %s: %w %s", path, err, want)
	}
	return f, nil
}

// limiters keeps one token bucket per key in a bounded LRU: a key not
// seen for a while is forgotten (and starts with a full bucket), so memory
// stays bounded however many principals call.
type limiters struct {
	cache *lru.Cache[string, *rate.Limiter]
	mu    sync.Mutex
}

func newLimiters(size int) *limiters {
	c, _ := lru.New[string, *rate.Limiter](size) // size > 0
	return &limiters{cache: c}
}

// take takes one token from key's bucket, made with rl if new; it returns
// how long to wait when the bucket is empty.
func (l *limiters) take(key string, rl RateLimit, now time.Time) (ok bool, retry time.Duration) {
	if rl.Rate <= 0 {
		return true, 0
	}
	l.mu.Lock()
	lim, found := l.cache.Get(key)
	if !found || lim.Limit() != rate.Limit(rl.Rate) {
		lim = rl.limiter()
		l.cache.Add(key, lim)
	}
	l.mu.Unlock()
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// empty reports whether key's bucket has no token left (without taking
// one), and how long until it has one.
func (l *limiters) empty(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	lim, found := l.cache.Get(key)
	l.mu.Unlock()
	if !found || lim.TokensAt(now) >= 1 {
		return false, 0
	}
	need := 1 - lim.TokensAt(now)
	return true, time.Duration(need / float64(lim.Limit()) * float64(time.Second))
}

// guard holds the HTTP server's per-tenant state: rate limiters, quota
// checks, call counters and the audit buffer. Its flush loop runs until
// close.
type guard struct {
	cfg     HTTPConfig
	log     *slog.Logger
	auditor store.Auditor    // nil: the store keeps no audit log
	meter   store.UsageMeter // nil: no usage accounting or quotas
	// storeAudits: the store records writes in its audit log itself
	// (store.WriteAuditor), so toolMiddleware does not.
	storeAudits bool
	limits      *limiters

	mu      sync.Mutex
	calls   map[string]int64
	events  []store.AuditEvent
	storage map[string]storageEntry

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type storageEntry struct {
	memories, bytes int64
	at              time.Time
}

func newGuard(cfg HTTPConfig, st store.Store, log *slog.Logger) *guard {
	g := &guard{
		cfg: cfg, log: log, limits: newLimiters(cfg.LimiterEntries),
		calls: map[string]int64{}, storage: map[string]storageEntry{},
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	base := baseStore(st)
	g.auditor, _ = base.(store.Auditor)
	g.meter, _ = base.(store.UsageMeter)
	if wa, ok := base.(store.WriteAuditor); ok && wa.AuditsWrites() {
		g.storeAudits = true
	}
	if g.auditor == nil {
		log.Warn("this store keeps no audit log: writes and failed logins are only logged")
	}
	go g.run()
	return g
}

// run flushes counters and audit events every FlushInterval until close.
func (g *guard) run() {
	defer close(g.done)
	t := time.NewTicker(g.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			g.flush(context.Background())
			return
		case <-t.C:
			g.flush(context.Background())
		}
	}
}

// close stops the flush loop after a last flush.
func (g *guard) close() {
	g.once.Do(func() { close(g.stop) })
	<-g.done
}

// flush writes buffered call counts and audit events to the store.
func (g *guard) flush(ctx context.Context) {
	g.mu.Lock()
	calls, events := g.calls, g.events
	g.calls, g.events = map[string]int64{}, nil
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if g.meter != nil && len(calls) > 0 {
		if err := g.meter.AddCalls(ctx, calls); err != nil {
			g.log.Warn("usage: counting calls failed", "err", err)
		}
	}
	if g.auditor != nil && len(events) > 0 {
		if err := g.auditor.RecordAudit(ctx, events); err != nil {
			// The events still reach the log, so nothing is lost silently.
			for _, e := range events {
				g.log.Warn("audit: recording failed", "err", err, "org", e.Org, "actor", e.Actor, "action", e.Action, "scope", e.Scope, "target", e.Target, "count", e.Count, "source", e.Source, "detail", e.Detail)
			}
		}
	}
}

// audit buffers an event and logs it with the request's id from ctx.
func (g *guard) audit(ctx context.Context, e store.AuditEvent) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	g.log.InfoContext(ctx, "audit", "org", e.Org, "actor", e.Actor, "agent", e.Agent, "action", e.Action, "scope", e.Scope, "target", e.Target, "count", e.Count, "source", e.Source, "detail", e.Detail)
	g.mu.Lock()
	g.events = append(g.events, e)
	g.mu.Unlock()
}

// countCall counts one request of org.
func (g *guard) countCall(org string) {
	g.mu.Lock()
	g.calls[org]++
	g.mu.Unlock()
}

// rateLimit takes a token for the principal and the org; it returns the
// wait when either is exhausted.
func (g *guard) rateLimit(id scope.Identity, now time.Time) (ok bool, retry time.Duration, which string) {
	l := g.cfg.OrgLimits.For(id.Org)
	if l.Org.Rate > 0 {
		if ok, d := g.limits.take("o\x00"+id.Org, l.Org, now); !ok {
			return false, d, "org " + id.Org
		}
	}
	if l.Principal.Rate > 0 {
		if ok, d := g.limits.take("p\x00"+id.Org+"\x00"+id.User, l.Principal, now); !ok {
			return false, d, "user " + id.User
		}
	}
	return true, 0, ""
}

// authFailureBlocked reports whether source has used up its failed logins.
func (g *guard) authFailureBlocked(source string, now time.Time) (bool, time.Duration) {
	if g.cfg.AuthFailures.Rate <= 0 {
		return false, 0
	}
	return g.limits.empty("f\x00"+source, now)
}

// authFailed takes a token from source's failed-login bucket; it reports
// whether the failure should still be audited (the bucket was not empty).
func (g *guard) authFailed(source string, now time.Time) bool {
	ok, _ := g.limits.take("f\x00"+source, g.cfg.AuthFailures, now)
	return ok
}

// storageTTL is how long a measured org storage is trusted before the
// store is asked again; writes through this server are added meanwhile.
const storageTTL = 5 * time.Second

// orgStorage returns the org's stored memories and bytes, cached briefly.
func (g *guard) orgStorage(ctx context.Context, org string) (int64, int64, error) {
	g.mu.Lock()
	e, ok := g.storage[org]
	g.mu.Unlock()
	if ok && time.Since(e.at) < storageTTL {
		return e.memories, e.bytes, nil
	}
	m, b, err := g.meter.OrgStorage(ctx, org)
	if err != nil {
		return 0, 0, err
	}
	g.mu.Lock()
	if len(g.storage) > g.cfg.LimiterEntries {
		clear(g.storage)
	}
	g.storage[org] = storageEntry{m, b, time.Now()}
	g.mu.Unlock()
	return m, b, nil
}

// stored adds what an add stored to the cached storage of org.
func (g *guard) stored(org string, memories, bytes int64) {
	g.mu.Lock()
	if e, ok := g.storage[org]; ok {
		e.memories += memories
		e.bytes += bytes
		g.storage[org] = e
	}
	g.mu.Unlock()
}

// forget drops the cached storage of org after a change of unknown size.
func (g *guard) forget(org string) {
	g.mu.Lock()
	delete(g.storage, org)
	g.mu.Unlock()
}

// QuotaError says which quota a write would exceed.
type QuotaError struct {
	Org   string
	Quota string // "max_memories" or "max_bytes"
	Limit int64
	Used  int64
}

func (e *QuotaError) Error() string {
	switch e.Quota {
	case "max_bytes":
		return fmt.Sprintf("quota exceeded: org %s may store at most %d bytes of memories (max_bytes) and holds %d; delete or purge memories, or ask the operator to raise the quota", e.Org, e.Limit, e.Used)
	}
	return fmt.Sprintf("quota exceeded: org %s may store at most %d memories (max_memories) and holds %d; delete or purge memories, or ask the operator to raise the quota", e.Org, e.Limit, e.Used)
}

// checkQuota returns a *QuotaError when adding n memories of size bytes
// would exceed the org's quotas.
func (g *guard) checkQuota(ctx context.Context, org string, n, size int64) error {
	if !g.quotas(org) {
		return nil
	}
	l := g.cfg.OrgLimits.For(org)
	mem, b, err := g.orgStorage(ctx, org)
	if err != nil {
		return err
	}
	if l.MaxMemories > 0 && mem+n > l.MaxMemories {
		return &QuotaError{Org: org, Quota: "max_memories", Limit: l.MaxMemories, Used: mem}
	}
	if l.MaxBytes > 0 && b+size > l.MaxBytes {
		return &QuotaError{Org: org, Quota: "max_bytes", Limit: l.MaxBytes, Used: b}
	}
	return nil
}

// writeTools maps the tools that change data to their audit action.
var writeTools = map[string]string{
	"add_memory": "add", "update_memory": "update", "delete_memory": "delete", "purge": "purge",
}

// toolMiddleware enforces quotas on writes and audits every write, unless
// the store audits its writes itself (store.WriteAuditor): then each write
// is recorded once, by the store, in the write's own transaction, with the
// source address the request's context carries (store.WithSource).
func (g *guard) toolMiddleware(next server.ToolHandlerFunc) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		action, isWrite := writeTools[req.Params.Name]
		id, ok := scope.FromContext(ctx)
		if !isWrite || !ok {
			return next(ctx, req)
		}
		args := req.GetArguments()
		content, hasContent := args["content"].(string)
		size := int64(len(content))
		ev := store.AuditEvent{Org: id.Org, Actor: id.User, Agent: id.Agent, Action: action, Source: store.SourceFrom(ctx)}
		if hasContent && (action == "add" || action == "update") {
			n := int64(1)
			if action == "update" {
				n = 0
			}
			err := g.checkQuota(ctx, id.Org, n, size)
			var qe *QuotaError
			switch {
			case errors.As(err, &qe):
				ev.Action, ev.Detail = store.AuditQuotaExceeded, qe.Quota
				g.audit(ctx, ev)
				return mcp.NewToolResultError(qe.Error()), nil
			case err != nil:
				g.log.ErrorContext(ctx, "quota check failed", "org", id.Org, "err", err)
				return mcp.NewToolResultError("the server could not check your organization's quota; try again later"), nil
			}
		}
		res, err := next(ctx, req)
		if err != nil || res == nil || res.IsError {
			return res, err
		}
		if g.storeAudits && !g.quotas(id.Org) {
			// Nothing to record, and no cached storage to keep up to date.
			return res, nil
		}
		var out struct {
			ID     string         `json:"id"`
			Scope  string         `json:"scope"`
			Dup    bool           `json:"duplicate"`
			Purged map[string]int `json:"purged"`
			Total  int            `json:"total"`
		}
		decodeResult(res, &out)
		switch action {
		case "add":
			if !out.Dup {
				g.stored(id.Org, 1, size)
			}
		default:
			g.forget(id.Org)
		}
		if g.storeAudits {
			return res, nil
		}
		ev.Target, ev.Count = out.ID, 1
		if out.Scope != "" {
			session, _ := args["session"].(string)
			ev.Scope = out.Scope
			if s, err := id.Resolve(out.Scope, session); err == nil {
				ev.Scope = s.Qualified()
			}
		}
		switch action {
		case "add":
			if out.Dup {
				ev.Count, ev.Detail = 0, "duplicate"
			}
		case "purge":
			ev.Target, _ = args["scope"].(string)
			ev.Count = out.Total
			if b, err := json.Marshal(out.Purged); err == nil {
				ev.Detail = string(b)
			}
		}
		g.audit(ctx, ev)
		return res, nil
	}
}

// quotas reports whether org has a storage quota, which the cached
// storage must follow.
func (g *guard) quotas(org string) bool {
	l := g.cfg.OrgLimits.For(org)
	return (l.MaxMemories != 0 || l.MaxBytes != 0) && g.meter != nil
}

// decodeResult reads a tool result's structured content into out: the
// raw JSON the tools hand to mcp-go, or whatever value another tool set.
func decodeResult(res *mcp.CallToolResult, out any) {
	raw := res.RawStructuredContent
	if len(raw) == 0 {
		switch sc := res.StructuredContent.(type) {
		case json.RawMessage:
			raw = sc
		case nil:
			return
		default:
			b, err := json.Marshal(sc)
			if err != nil {
				return
			}
			raw = b
		}
	}
	_ = json.Unmarshal(raw, out)
}

// BaseStore returns the store the App opened, under any wrapper (such as
// the one that times store calls), so that its optional capabilities
// ([store.KeyResolver], [store.Auditor], ...) can be found by type
// assertion. A wrapper either has an Unwrap() store.Store method or embeds
// the store as its field Store.
func (a *App) BaseStore() store.Store { return baseStore(a.Store) }

var storeType = reflect.TypeFor[store.Store]()

func baseStore(s store.Store) store.Store {
	for range 8 {
		if u, ok := s.(interface{ Unwrap() store.Store }); ok {
			s = u.Unwrap()
			continue
		}
		v := reflect.ValueOf(s)
		if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
			return s
		}
		f, ok := v.Elem().Type().FieldByName("Store")
		if !ok || !f.Anonymous || f.Type != storeType {
			return s
		}
		inner, ok := v.Elem().FieldByIndex(f.Index).Interface().(store.Store)
		if !ok || inner == nil {
			return s
		}
		s = inner
	}
	return s
}
