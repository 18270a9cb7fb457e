package main

import (
	"github.com/scopemem/scopemem/store/postgres"
)

// MaintainCmd gives large PostgreSQL scopes their own approximate index.
type MaintainCmd struct {
	DatabaseURL string `name:"database-url" env:"SCOPEMEM_MIGRATE_DATABASE_URL" required:"" help:"PostgreSQL URL of the role that owns the schema." placeholder:"URL"`
	MinRows     int    `name:"min-rows" default:"10000" help:"Scope size at which a scope gets its own HNSW index (dropped again below half)."`
	WorkMem     string `name:"maintenance-work-mem" default:"" help:"maintenance_work_mem for the index builds, e.g. 1GB (default: the server's)."`
}

// Run builds and drops per-scope indexes once. serve does the same in its
// janitor when started with --migrate-database-url.
func (c *MaintainCmd) Run(env *runEnv) error {
	res, err := postgres.Maintain(env.ctx, c.DatabaseURL, postgres.MaintainOptions{MinRows: c.MinRows, MaintenanceWorkMem: c.WorkMem, Logger: env.log})
	if err != nil {
		return err
	}
	env.log.Info("maintain done", "created", len(res.Created), "dropped", len(res.Dropped), "indexed_scopes", len(res.Indexed), "busy", res.Busy)
	return nil
}
