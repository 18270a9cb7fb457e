-- scopemem schema, version 2: approximate (HNSW) indexes for large scopes.
-- Runs as the owner role.

-- +goose Up

-- Ordinary scopes are searched exactly through the (org, scope) btree.
-- A scope that grows past a threshold gets its own partial HNSW index,
-- built by postgres.Maintain as the owner (only the owner of a table may
-- index it) with CREATE INDEX CONCURRENTLY, so that building it never
-- blocks another tenant's writes. This table records those indexes; the
-- runtime role has no access to it, and search does not read it: the
-- planner finds a scope's index from the literal org and scope of each
-- search branch.
CREATE TABLE scope_indexes (
	org_id     text        COLLATE "C" NOT NULL,
	scope_kind text        NOT NULL,
	scope_id   text        COLLATE "C" NOT NULL,
	dims       integer     NOT NULL CHECK (dims > 0),
	index_name text        NOT NULL UNIQUE,
	rows_built bigint      NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (org_id, scope_kind, scope_id, dims)
);

-- Maintain counts the rows of every scope to find the large ones. The
-- owner meets FORCE ROW LEVEL SECURITY like everyone else, so it reads the
-- table only while its transaction has set app.maintain to 'on'; the
-- policy is for the owner alone and lets it read, never change.
-- +goose StatementBegin
DO $$
BEGIN
	EXECUTE format($p$CREATE POLICY memories_maintain_select ON memories FOR SELECT TO %I
		USING (NULLIF(current_setting('app.maintain', true), '') = 'on')$p$, current_user);
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE
	ix text;
BEGIN
	FOR ix IN SELECT index_name FROM scope_indexes LOOP
		EXECUTE format('DROP INDEX IF EXISTS %I', ix);
	END LOOP;
END
$$;
-- +goose StatementEnd
DROP POLICY memories_maintain_select ON memories;
DROP TABLE scope_indexes;
