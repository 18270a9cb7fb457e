-- scopemem schema: what the planner assumes of scope ids. Runs as the
-- owner role.
--
-- Searches of scopes without their own index run the connection's cached
-- generic plan, planned once without the parameters' values. Its choice of
-- index rests on how selective "scope_id = $n" looks, which ANALYZE
-- estimates from a sample: where most rows sit in one scope per org (a
-- new deployment, an org with one active user) it looks unselective, and
-- the plan read each scope through the primary key (org only), visiting
-- every row of the org for every scope of the search, empty ones
-- included. Scope ids are, by design, many: one per user, agent, session
-- and team. Saying so (about one distinct id per 20 rows) makes every
-- generic plan read a scope through an (org, scope) index, whatever the
-- sample held. Custom plans still use the sample's most common values.

-- +goose Up
ALTER TABLE memories ALTER COLUMN scope_id SET (n_distinct = -0.05);
ANALYZE memories;

-- +goose Down
ALTER TABLE memories ALTER COLUMN scope_id RESET (n_distinct);
ANALYZE memories;
