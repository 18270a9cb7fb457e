-- scopemem schema: a version per scope. Runs as the owner role.
--
-- A server keeps the vectors of the scopes it searches in memory and
-- ranks them itself (see the store's vector cache); what it must know, in
-- the round trip of every search, is whether its copy is still the
-- scope's rows. Every statement that inserts, updates or deletes
-- memories bumps the version of each scope it touched, whoever runs it
-- (a replica, the janitor, an import, an operator's psql session), in the
-- same transaction: a snapshot that shows a scope's version shows exactly
-- the rows written up to it.

-- +goose Up

CREATE TABLE scope_versions (
	org_id     text   COLLATE "C" NOT NULL,
	scope_kind text   NOT NULL,
	scope_id   text   COLLATE "C" NOT NULL,
	version    bigint NOT NULL,
	PRIMARY KEY (org_id, scope_kind, scope_id)
);

-- The runtime role reads the versions of the scopes its identity sees,
-- under the same rule as memories_select, and may not write them: only
-- the trigger below does, as the owner (SECURITY DEFINER). No FORCE, so
-- the owner's trigger is not held by the policy.
ALTER TABLE scope_versions ENABLE ROW LEVEL SECURITY;
CREATE POLICY scope_versions_select ON scope_versions FOR SELECT
	USING (org_id = (SELECT scopemem_org())
		AND CASE scope_kind
			WHEN 'org' THEN scope_id = ''
			WHEN 'user' THEN scope_id = (SELECT NULLIF(current_setting('app.user_id', true), ''))
			WHEN 'agent' THEN scope_id = (SELECT NULLIF(current_setting('app.user_id', true), '') || '/' || NULLIF(current_setting('app.agent', true), ''))
			WHEN 'session' THEN scope_id = (SELECT NULLIF(current_setting('app.user_id', true), '') || '/' || NULLIF(current_setting('app.session_id', true), ''))
			WHEN 'team' THEN scope_id = ANY ((SELECT COALESCE(NULLIF(current_setting('app.team_ids', true), ''), '{}')::text[])::text[])
			ELSE false
		END);

INSERT INTO scope_versions (org_id, scope_kind, scope_id, version)
	SELECT DISTINCT org_id, scope_kind, scope_id, 1 FROM memories;

-- scopemem_bump_scope_versions runs once per statement on memories, with
-- the statement's rows as the transition table "changed". The scopes are
-- locked in key order, so two statements never wait for each other in a
-- cycle; writers of one scope wait for each other's commit, as adds to
-- one scope already do (their advisory lock).
-- +goose StatementBegin
DO $do$
BEGIN
	EXECUTE format($f$
CREATE FUNCTION scopemem_bump_scope_versions() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = %I, pg_temp AS $body$
BEGIN
	INSERT INTO scope_versions AS v (org_id, scope_kind, scope_id, version)
	SELECT DISTINCT org_id, scope_kind, scope_id, 1 FROM changed
	ORDER BY 1, 2, 3
	ON CONFLICT (org_id, scope_kind, scope_id) DO UPDATE SET version = v.version + 1;
	RETURN NULL;
END
$body$$f$, current_schema());
END
$do$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION scopemem_bump_scope_versions() FROM PUBLIC;

CREATE TRIGGER memories_version_insert AFTER INSERT ON memories
	REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION scopemem_bump_scope_versions();
CREATE TRIGGER memories_version_update AFTER UPDATE ON memories
	REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION scopemem_bump_scope_versions();
CREATE TRIGGER memories_version_delete AFTER DELETE ON memories
	REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION scopemem_bump_scope_versions();

-- +goose Down
DROP TRIGGER memories_version_delete ON memories;
DROP TRIGGER memories_version_update ON memories;
DROP TRIGGER memories_version_insert ON memories;
DROP FUNCTION scopemem_bump_scope_versions();
DROP TABLE scope_versions;
