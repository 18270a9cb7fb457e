-- scopemem schema, version 1. Runs as the owner role (the role that owns
-- the tables; never the role the server connects as).

-- +goose Up

-- pgvector. CREATE EXTENSION needs a superuser (pgvector is not a trusted
-- extension); when the owner is not one, a superuser must have created it
-- already in this database.
-- +goose StatementBegin
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector') THEN
		BEGIN
			CREATE EXTENSION vector;
		EXCEPTION WHEN insufficient_privilege THEN
			RAISE EXCEPTION 'the pgvector extension is not installed in database %, and role % may not create it', current_database(), current_user
				USING ERRCODE = 'insufficient_privilege',
				      HINT = 'ask a superuser to run: CREATE EXTENSION vector; in this database, then run scopemem migrate again';
		END;
	END IF;
END
$$;
-- +goose StatementEnd

-- One row per memory. Ids compare byte-wise (COLLATE "C"): faster, and a
-- user's agent and session scopes ('user/...') form one btree range.
-- org_id leads every key so the table can be
-- distributed by org_id (Citus) without rewriting a query.
--
-- embedding is an untyped vector: the dimension is a property of the
-- embedder recorded in meta, not of the schema, so a reindex with another
-- model needs no DDL. The store checks every vector's length against the
-- recorded dimension; per-tenant approximate indexes cast to vector(n).
CREATE TABLE memories (
	org_id       text        COLLATE "C" NOT NULL,
	id           uuid        NOT NULL,
	scope_kind   text        NOT NULL CHECK (scope_kind IN ('session', 'agent', 'user', 'team', 'org')),
	scope_id     text        COLLATE "C" NOT NULL,
	content      text        NOT NULL,
	content_hash bytea       NOT NULL,
	tags         text[]      NOT NULL DEFAULT '{}',
	metadata     jsonb,
	created_by   text        NOT NULL,
	created_at   timestamptz NOT NULL DEFAULT now(),
	updated_at   timestamptz NOT NULL DEFAULT now(),
	expires_at   timestamptz,
	embedding    vector,
	tsv          tsvector    GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED,
	PRIMARY KEY (org_id, id),
	CHECK ((scope_kind = 'org') = (scope_id = ''))
);

-- Keep vectors inline in the heap row (MAIN: compressed in place if that
-- helps, moved to TOAST only when the row would not fit a page), so an
-- exact scan reads no TOAST table: 768 float32 take 3 KB.
-- toast_tuple_target at its maximum keeps the short columns of such a row
-- (content, tsv) from being moved out of line to make room for it; long
-- content still goes to TOAST first.
ALTER TABLE memories ALTER COLUMN embedding SET STORAGE MAIN;
ALTER TABLE memories SET (toast_tuple_target = 8160);

-- The tenant key: every query narrows to (org, scope) first. Exact search
-- over an ordinary scope reads only its rows.
CREATE INDEX memories_scope ON memories (org_id, scope_kind, scope_id, created_at DESC);
-- Exact-duplicate check on add.
CREATE INDEX memories_hash ON memories (org_id, scope_kind, scope_id, content_hash);
-- Full text.
CREATE INDEX memories_tsv ON memories USING gin (tsv);
-- The janitor.
CREATE INDEX memories_expiry ON memories (expires_at) WHERE expires_at IS NOT NULL;

-- Row-level security: the runtime role sees and changes only the rows of
-- the identity whose settings its transaction carries. FORCE applies the
-- policies to the owner as well; only superusers and BYPASSRLS roles
-- escape them, and the runtime role is neither.
ALTER TABLE memories ENABLE ROW LEVEL SECURITY;
ALTER TABLE memories FORCE ROW LEVEL SECURITY;

-- scopemem_visible reports whether a row's scope is one the identity in
-- the transaction settings can see. Settings read '' after a transaction
-- that set them locally, hence NULLIF: an unset identity sees nothing.
-- +goose StatementBegin
CREATE FUNCTION scopemem_visible(kind text, sid text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	SELECT CASE kind
		WHEN 'org' THEN sid = ''
		WHEN 'user' THEN sid = NULLIF(current_setting('app.user_id', true), '')
		WHEN 'agent' THEN sid = NULLIF(current_setting('app.user_id', true), '') || '/' || NULLIF(current_setting('app.agent', true), '')
		WHEN 'session' THEN sid = NULLIF(current_setting('app.user_id', true), '') || '/' || NULLIF(current_setting('app.session_id', true), '')
		WHEN 'team' THEN sid = ANY (COALESCE(NULLIF(current_setting('app.team_ids', true), ''), '{}')::text[])
		ELSE false
	END
$$;
-- +goose StatementEnd

-- scopemem_has reports whether the identity holds a permission
-- (memory:admin implies all of them).
-- +goose StatementBegin
CREATE FUNCTION scopemem_has(perm text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	SELECT COALESCE(NULLIF(current_setting('app.perms', true), ''), '{}')::text[] && ARRAY[perm, 'memory:admin']
$$;
-- +goose StatementEnd

-- scopemem_org is the identity's org, or NULL.
-- +goose StatementBegin
CREATE FUNCTION scopemem_org() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	SELECT NULLIF(current_setting('app.org_id', true), '')
$$;
-- +goose StatementEnd

-- Read: the identity's visible scopes in its org.
CREATE POLICY memories_select ON memories FOR SELECT
	USING (org_id = scopemem_org() AND scopemem_visible(scope_kind, scope_id));

-- Add: only into a visible scope, as the identity.
CREATE POLICY memories_insert ON memories FOR INSERT
	WITH CHECK (org_id = scopemem_org() AND scopemem_visible(scope_kind, scope_id)
		AND created_by = NULLIF(current_setting('app.user_id', true), ''));

-- Update: only in scopes the identity may write (memory:write, and
-- memory:share for team and org), and the row may not move out of them.
CREATE POLICY memories_update ON memories FOR UPDATE
	USING (org_id = scopemem_org() AND scopemem_visible(scope_kind, scope_id)
		AND scopemem_has('memory:write') AND (scope_kind NOT IN ('team', 'org') OR scopemem_has('memory:share')))
	WITH CHECK (org_id = scopemem_org() AND scopemem_visible(scope_kind, scope_id)
		AND scopemem_has('memory:write') AND (scope_kind NOT IN ('team', 'org') OR scopemem_has('memory:share')));

-- Delete: in scopes the identity may write or purge.
CREATE POLICY memories_delete ON memories FOR DELETE
	USING (org_id = scopemem_org() AND scopemem_visible(scope_kind, scope_id)
		AND (scopemem_has('memory:write') OR scopemem_has('memory:purge'))
		AND (scope_kind NOT IN ('team', 'org') OR scopemem_has('memory:share')));

-- Purge paths, honoured only inside the transaction of a purge that the
-- store has already authorized (the settings are set nowhere else):
-- app.purge_user erases one user's own scopes (user, agent, session) --
-- the user themself with memory:purge, anyone else only with memory:admin;
-- app.purge_team erases one team's scope, which an admin may do without
-- being a member; app.purge_org = 'on' erases the whole org, memory:admin
-- only. DELETE with a WHERE clause also needs the rows to pass a SELECT
-- policy, hence the pair.
-- +goose StatementBegin
CREATE FUNCTION scopemem_purgeable(kind text, sid text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	SELECT (kind IN ('user', 'agent', 'session')
			AND split_part(sid, '/', 1) = NULLIF(current_setting('app.purge_user', true), '')
			AND (scopemem_has('memory:admin')
				OR (current_setting('app.purge_user', true) = current_setting('app.user_id', true)
					AND scopemem_has('memory:purge'))))
		OR (kind = 'team' AND sid = NULLIF(current_setting('app.purge_team', true), '')
			AND scopemem_has('memory:admin'))
		OR (current_setting('app.purge_org', true) = 'on' AND scopemem_has('memory:admin'))
$$;
-- +goose StatementEnd
CREATE POLICY memories_purge_select ON memories FOR SELECT
	USING (org_id = scopemem_org() AND scopemem_purgeable(scope_kind, scope_id));
CREATE POLICY memories_purge_delete ON memories FOR DELETE
	USING (org_id = scopemem_org() AND scopemem_purgeable(scope_kind, scope_id));

-- The janitor: rows past their expiry, for the owner only, and only while
-- scopemem_delete_expired has set app.expire_before. The runtime role
-- reaches it through that function and nothing else.
-- +goose StatementBegin
DO $$
BEGIN
	EXECUTE format($p$CREATE POLICY memories_expire_select ON memories FOR SELECT TO %I
		USING (expires_at < NULLIF(current_setting('app.expire_before', true), '')::timestamptz)$p$, current_user);
	-- SELECT ... FOR UPDATE needs an UPDATE policy; no row may change.
	EXECUTE format($p$CREATE POLICY memories_expire_lock ON memories FOR UPDATE TO %I
		USING (expires_at < NULLIF(current_setting('app.expire_before', true), '')::timestamptz)
		WITH CHECK (false)$p$, current_user);
	EXECUTE format($p$CREATE POLICY memories_expire_delete ON memories FOR DELETE TO %I
		USING (expires_at < NULLIF(current_setting('app.expire_before', true), '')::timestamptz)$p$, current_user);
END
$$;
-- +goose StatementEnd

-- Audit: who did what to which scope, how many rows, when. The runtime
-- role may only insert, for its own org and as itself; it can neither read
-- nor change the log. RLS is enabled but not forced: the owner (and the
-- janitor function running as the owner) writes and reads it freely.
CREATE TABLE audit (
	org_id     text        NOT NULL,
	id         bigint      GENERATED ALWAYS AS IDENTITY,
	at         timestamptz NOT NULL DEFAULT now(),
	actor      text        NOT NULL,
	agent      text        NOT NULL DEFAULT '',
	action     text        NOT NULL CHECK (action IN ('add', 'update', 'delete', 'purge', 'expire')),
	scope_kind text        NOT NULL DEFAULT '',
	scope_id   text        NOT NULL DEFAULT '',
	target     text        NOT NULL DEFAULT '',
	count      integer     NOT NULL CHECK (count >= 0),
	PRIMARY KEY (org_id, id)
);
CREATE INDEX audit_at ON audit (org_id, at);
ALTER TABLE audit ENABLE ROW LEVEL SECURITY;
CREATE POLICY audit_insert ON audit FOR INSERT
	WITH CHECK (org_id = scopemem_org() AND actor = NULLIF(current_setting('app.user_id', true), ''));

-- Store-wide settings; key 'embedder' records what made the vectors.
CREATE TABLE meta (
	key        text        PRIMARY KEY,
	value      jsonb       NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);

-- scopemem_delete_expired deletes at most max_rows memories that expired
-- before the given time and returns how many it deleted. It runs as the
-- owner (SECURITY DEFINER) and can do nothing else. Rows another caller
-- is deleting are skipped (FOR UPDATE SKIP LOCKED), so janitors on several
-- replicas never wait for or double-count each other; a skipped row is
-- either deleted by that caller or, if it rolls back, by the next run.
-- +goose StatementBegin
DO $do$
BEGIN
	EXECUTE format($f$
CREATE FUNCTION scopemem_delete_expired(before timestamptz, max_rows integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = %I, pg_temp AS $body$
DECLARE
	n integer;
BEGIN
	IF before IS NULL OR max_rows IS NULL OR max_rows < 1 THEN
		RAISE EXCEPTION 'scopemem_delete_expired: before must be set and max_rows positive'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM set_config('app.expire_before', before::text, true);
	WITH doomed AS (
		SELECT org_id, id FROM memories
		WHERE expires_at < before
		ORDER BY expires_at
		LIMIT max_rows
		FOR UPDATE SKIP LOCKED
	), gone AS (
		DELETE FROM memories m USING doomed d
		WHERE m.org_id = d.org_id AND m.id = d.id
		RETURNING m.org_id, m.scope_kind, m.scope_id
	), logged AS (
		INSERT INTO audit (org_id, actor, action, scope_kind, scope_id, count)
		SELECT org_id, '', 'expire', scope_kind, scope_id, count(*) FROM gone
		GROUP BY org_id, scope_kind, scope_id
		RETURNING count
	)
	SELECT COALESCE(sum(count), 0) INTO n FROM logged;
	PERFORM set_config('app.expire_before', '', true);
	RETURN n;
END
$body$
$f$, current_schema());
END
$do$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION scopemem_delete_expired(timestamptz, integer) FROM PUBLIC;

-- +goose Down
DROP FUNCTION scopemem_delete_expired(timestamptz, integer);
DROP TABLE meta;
DROP TABLE audit;
DROP TABLE memories;
DROP FUNCTION scopemem_purgeable(text, text);
DROP FUNCTION scopemem_org();
DROP FUNCTION scopemem_has(text);
DROP FUNCTION scopemem_visible(text, text);
