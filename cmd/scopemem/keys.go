package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/postgres"
	"github.com/scopemem/scopemem/store/sqlite"
)

// adminStore names the store the operator commands (keys, usage, audit)
// work on: the SQLite file, or PostgreSQL as the schema owner.
type adminStore struct {
	DB          string `name:"db" env:"SCOPEMEM_DB" help:"SQLite file (default: scopemem/memories.db under the user's data directory)." placeholder:"PATH"`
	DatabaseURL string `name:"database-url" env:"SCOPEMEM_MIGRATE_DATABASE_URL" help:"PostgreSQL URL of the schema owner (the URL migrate uses, not the runtime role's: the runtime role cannot read keys)." placeholder:"URL"`
}

// open returns the store's key administration.
func (a adminStore) open(env *runEnv) (store.KeyAdmin, func(), error) {
	if a.DatabaseURL != "" {
		ad, err := postgres.OpenAdmin(env.ctx, a.DatabaseURL, env.log)
		if err != nil {
			return nil, nil, err
		}
		return ad, func() { ad.Close() }, nil
	}
	path := a.DB
	if path == "" {
		path = app.DefaultDBPath()
	}
	st, err := sqlite.Open(env.ctx, sqlite.Config{Path: path, Logger: env.log})
	if err != nil {
		return nil, nil, err
	}
	return st, func() { st.Close() }, nil
}

// operator names who ran a command, for the audit log.
func keysOperator() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "operator:" + u.Username
	}
	return "operator"
}

// auditOp records an operator action; a failure is logged, not fatal,
// since the action itself is done.
func auditOp(ctx context.Context, env *runEnv, ka store.KeyAdmin, e store.AuditEvent) {
	e.Actor, e.Source, e.At = keysOperator(), "cli", time.Now()
	if err := ka.RecordAudit(ctx, []store.AuditEvent{e}); err != nil {
		env.log.Warn("recording the audit event failed", "action", e.Action, "err", err)
	}
}

// parseAge parses a duration that may also be written in days ("90d").
func parseKeyAge(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("%q is not a number of days like 90d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration like 90d, 24h or 30m", s)
	}
	return d, nil
}

// KeysCmd manages API keys.
type KeysCmd struct {
	Create KeysCreateCmd `cmd:"" help:"Create an API key and print it once."`
	List   KeysListCmd   `cmd:"" help:"List API keys (never their secrets)."`
	Revoke KeysRevokeCmd `cmd:"" help:"Revoke an API key at once."`
	Rotate KeysRotateCmd `cmd:"" help:"Replace an API key; the old one keeps working for a grace period."`
}

// KeysCreateCmd creates an API key.
type KeysCreateCmd struct {
	adminStore  `embed:""`
	Org         string   `required:"" help:"Org the key acts in."`
	User        string   `required:"" help:"User the key acts as (e.g. support-bot)."`
	Teams       []string `sep:"," help:"Teams of that user, comma-separated."`
	Agent       string   `help:"Agent name, giving the key an agent scope."`
	Permissions []string `sep:"," required:"" help:"Permissions, comma-separated: memory:read, memory:write, memory:share, memory:purge, memory:admin."`
	Expires     string   `help:"Lifetime, e.g. 90d or 12h (default: no expiry)."`
	Test        bool     `help:"Make a test key (smk_test_...) instead of a live one."`
}

// Run creates the key and prints it on stdout; the details go to stderr.
func (c *KeysCreateCmd) Run(env *runEnv) error {
	perms, err := scope.ParsePermissions(strings.Join(c.Permissions, ","))
	if err != nil {
		return err
	}
	if len(perms) == 0 {
		return errors.New("--permissions is empty: name at least one, e.g. memory:read,memory:write")
	}
	ident := scope.Identity{Org: c.Org, User: c.User, Teams: c.Teams, Agent: c.Agent, Permissions: perms}
	if err := ident.Validate(); err != nil {
		return fmt.Errorf("key identity: %w", err)
	}
	key, rec, err := scope.NewAPIKey(c.Test)
	if err != nil {
		return err
	}
	rec.Identity, rec.CreatedAt = ident, time.Now().UTC()
	if c.Expires != "" {
		d, err := parseKeyAge(c.Expires)
		if err != nil {
			return fmt.Errorf("--expires: %w", err)
		}
		at := rec.CreatedAt.Add(d)
		rec.ExpiresAt = &at
	}
	ka, closeFn, err := c.open(env)
	if err != nil {
		return err
	}
	defer closeFn()
	if err := ka.CreateKey(env.ctx, rec); err != nil {
		return err
	}
	auditOp(env.ctx, env, ka, store.AuditEvent{Org: c.Org, Action: store.AuditKeyCreate, Target: rec.ID,
		Detail: "user " + c.User + ", permissions " + strings.Join(c.Permissions, ",")})
	fmt.Fprintf(os.Stderr, "created API key %s for %s/%s (%s), expires %s\n", rec.ID, c.Org, c.User, strings.Join(c.Permissions, ","), keysWhen(rec.ExpiresAt))
	fmt.Fprintln(os.Stderr, "the key is printed below once; store it now, it cannot be shown again:")
	fmt.Println(key)
	return nil
}

func keysWhen(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

// KeysListCmd lists keys.
type KeysListCmd struct {
	adminStore `embed:""`
	Org        string `help:"Only this org's keys (default: every org)."`
}

// Run prints one line per key on stdout.
func (c *KeysListCmd) Run(env *runEnv) error {
	ka, closeFn, err := c.open(env)
	if err != nil {
		return err
	}
	defer closeFn()
	keys, err := ka.ListKeys(env.ctx, c.Org)
	if err != nil {
		return err
	}
	now := time.Now()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tORG\tUSER\tAGENT\tTEAMS\tPERMISSIONS\tCREATED\tEXPIRES\tSTATUS")
	for _, k := range keys {
		kind := "live"
		if k.Test {
			kind = "test"
		}
		perms := make([]string, len(k.Identity.Permissions))
		for i, p := range k.Identity.Permissions {
			perms[i] = string(p)
		}
		status := "active"
		switch {
		case k.RevokedAt != nil:
			status = "revoked " + k.RevokedAt.UTC().Format(time.RFC3339)
		case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
			status = "expired"
		case k.ReplacedBy != "":
			status = "rotated to " + k.ReplacedBy + " (grace)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, kind, k.Identity.Org, k.Identity.User, keysDash(k.Identity.Agent),
			keysDash(strings.Join(k.Identity.Teams, ",")), strings.Join(perms, ","), k.CreatedAt.UTC().Format(time.RFC3339), keysWhen(k.ExpiresAt), status)
	}
	return tw.Flush()
}

func keysDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// KeysRevokeCmd revokes a key.
type KeysRevokeCmd struct {
	adminStore `embed:""`
	ID         string `arg:"" help:"The key id (the 12 characters after smk_live_, as keys list shows)."`
}

// Run revokes the key.
func (c *KeysRevokeCmd) Run(env *runEnv) error {
	id := keyID(c.ID)
	ka, closeFn, err := c.open(env)
	if err != nil {
		return err
	}
	defer closeFn()
	old, err := lookupExisting(env, ka, id)
	if err != nil {
		return err
	}
	if err := ka.RevokeKey(env.ctx, id, time.Now().UTC()); err != nil {
		return err
	}
	auditOp(env.ctx, env, ka, store.AuditEvent{Org: old.Identity.Org, Action: store.AuditKeyRevoke, Target: id})
	fmt.Fprintf(os.Stderr, "revoked API key %s (%s/%s)\n", id, old.Identity.Org, old.Identity.User)
	return nil
}

// lookupExisting returns the key with id, or an error saying there is
// none and where to look.
func lookupExisting(env *runEnv, ka store.KeyAdmin, id string) (scope.APIKey, error) {
	k, err := ka.LookupKey(env.ctx, id)
	if errors.Is(err, scope.ErrUnknownAPIKey) {
		return k, fmt.Errorf("no API key has id %q (see scopemem keys list)", id)
	}
	return k, err
}

// keyID accepts a key id, or a whole key (whose id is then used; the
// secret is not kept).
func keyID(s string) string {
	if id, _, err := scope.ParseAPIKey(s); err == nil {
		return id
	}
	return s
}

// KeysRotateCmd replaces a key.
type KeysRotateCmd struct {
	adminStore `embed:""`
	ID         string        `arg:"" help:"The key id to replace."`
	Grace      time.Duration `default:"24h" help:"How long the old key keeps working (0 ends it now)."`
	Expires    string        `help:"Lifetime of the new key, e.g. 90d (default: no expiry)."`
}

// Run creates the replacement with the same identity and prints it once.
func (c *KeysRotateCmd) Run(env *runEnv) error {
	if c.Grace < 0 {
		return errors.New("--grace may not be negative")
	}
	id := keyID(c.ID)
	ka, closeFn, err := c.open(env)
	if err != nil {
		return err
	}
	defer closeFn()
	old, err := lookupExisting(env, ka, id)
	if err != nil {
		return err
	}
	key, rec, err := scope.NewAPIKey(old.Test)
	if err != nil {
		return err
	}
	rec.Identity, rec.CreatedAt = old.Identity, time.Now().UTC()
	if c.Expires != "" {
		d, err := parseKeyAge(c.Expires)
		if err != nil {
			return fmt.Errorf("--expires: %w", err)
		}
		at := rec.CreatedAt.Add(d)
		rec.ExpiresAt = &at
	}
	graceEnd := rec.CreatedAt.Add(c.Grace)
	if err := ka.RotateKey(env.ctx, id, rec, graceEnd); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("API key %s is revoked or expired: create a new one with scopemem keys create", id)
		}
		return err
	}
	auditOp(env.ctx, env, ka, store.AuditEvent{Org: old.Identity.Org, Action: store.AuditKeyRotate, Target: id, Detail: "replaced by " + rec.ID + ", grace " + c.Grace.String()})
	fmt.Fprintf(os.Stderr, "API key %s is replaced by %s; the old key works until %s\n", id, rec.ID, graceEnd.Format(time.RFC3339))
	fmt.Fprintln(os.Stderr, "the new key is printed below once; store it now, it cannot be shown again:")
	fmt.Println(key)
	return nil
}
