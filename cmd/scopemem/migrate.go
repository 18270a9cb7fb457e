package main

import (
	"errors"
	"os"
	"strings"

	"github.com/scopemem/scopemem/store/postgres"
)

// MigrateCmd applies the PostgreSQL migrations and sets up the runtime role.
type MigrateCmd struct {
	DatabaseURL         string `name:"database-url" env:"SCOPEMEM_MIGRATE_DATABASE_URL" required:"" help:"PostgreSQL URL of the role that owns the schema (not the runtime role)." placeholder:"URL"`
	RuntimeRole         string `name:"runtime-role" env:"SCOPEMEM_RUNTIME_ROLE" default:"scopemem_app" help:"The role the server connects as: it owns nothing and cannot bypass row-level security."`
	RuntimePasswordFile string `name:"runtime-password-file" env:"SCOPEMEM_RUNTIME_PASSWORD_FILE" help:"File with the runtime role's password: the role is created (or its password set) when given; without it the role must exist." placeholder:"FILE"`
}

// Run applies every pending migration, then creates or checks the runtime
// role and grants it the least it needs.
func (c *MigrateCmd) Run(env *runEnv) error {
	opts := postgres.MigrateOptions{RuntimeRole: c.RuntimeRole, Logger: env.log}
	if c.RuntimePasswordFile != "" {
		b, err := os.ReadFile(c.RuntimePasswordFile)
		if err != nil {
			return err
		}
		opts.RuntimePassword = strings.TrimRight(string(b), "\r\n")
		if opts.RuntimePassword == "" {
			return errors.New("the runtime password file is empty")
		}
	}
	if err := postgres.Migrate(env.ctx, c.DatabaseURL, opts); err != nil {
		return err
	}
	env.log.Info("migrations applied", "schema_version", postgres.SchemaVersion(), "runtime_role", c.RuntimeRole)
	return nil
}
