-- API keys, call counters and a wider audit log for the HTTP server.
-- Runs as the owner role.
--
-- The runtime role gets no privilege on the new tables. It reaches them
-- only through the SECURITY DEFINER functions below, each of which does
-- one narrow thing. Those functions keep PostgreSQL's default EXECUTE for
-- PUBLIC, because the runtime role's name is not known here (migrate
-- creates it after the migrations), and instead refuse any caller whose
-- login role (session_user) was not granted scopemem_delete_expired, which
-- only `scopemem migrate` grants (to the runtime role) and the owner holds.
--
-- Why a function for the key lookup: a key is checked before the caller's
-- identity is known, so no row-level security context exists yet that
-- could restrict the lookup to one org. Instead of letting the runtime
-- role read the key table (and every org's keys with it), it may ask for
-- one key by its id, which the caller must already hold, and gets that
-- key's hash and identity and nothing else.

-- +goose Up

CREATE TABLE api_keys (
	id          text        COLLATE "C" PRIMARY KEY,
	hash        bytea       NOT NULL CHECK (octet_length(hash) = 32),
	org_id      text        COLLATE "C" NOT NULL,
	user_id     text        NOT NULL,
	teams       text[]      NOT NULL DEFAULT '{}',
	agent       text        NOT NULL DEFAULT '',
	permissions text[]      NOT NULL DEFAULT '{}',
	test        boolean     NOT NULL DEFAULT false,
	created_at  timestamptz NOT NULL DEFAULT now(),
	expires_at  timestamptz,
	revoked_at  timestamptz,
	replaced_by text        NOT NULL DEFAULT ''
);
CREATE INDEX api_keys_org ON api_keys (org_id, created_at);
REVOKE ALL ON api_keys FROM PUBLIC;
-- No policy: a role other than the owner would see no row even if it were
-- granted the table by mistake.
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;

CREATE TABLE usage_calls (
	org_id text   COLLATE "C" NOT NULL,
	day    date   NOT NULL,
	calls  bigint NOT NULL CHECK (calls >= 0),
	PRIMARY KEY (org_id, day)
);
REVOKE ALL ON usage_calls FROM PUBLIC;
ALTER TABLE usage_calls ENABLE ROW LEVEL SECURITY;

-- The audit log gains the caller's address and a free-text detail, and
-- records failed logins, refused writes and key management. Rows the
-- store writes inside a change's own transaction keep source = ''.
ALTER TABLE audit ADD COLUMN source text NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN detail text NOT NULL DEFAULT '';
ALTER TABLE audit DROP CONSTRAINT audit_action_check;
ALTER TABLE audit ADD CONSTRAINT audit_action_check CHECK (action IN (
	'add', 'update', 'delete', 'purge', 'expire',
	'auth_failure', 'quota_exceeded', 'key_create', 'key_revoke', 'key_rotate'));

-- Reading one org's memory count and size for quotas and usage, as the
-- owner, only while scopemem_org_storage has set app.usage_org.
-- +goose StatementBegin
DO $$
BEGIN
	EXECUTE format($p$CREATE POLICY memories_usage_select ON memories FOR SELECT TO %I
		USING (org_id = NULLIF(current_setting('app.usage_org', true), ''))$p$, current_user);
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
DO $do$
BEGIN
	EXECUTE format($f$
CREATE FUNCTION scopemem_api_key(p_key_id text)
RETURNS TABLE (hash bytea, org_id text, user_id text, teams text[], agent text, permissions text[],
	test boolean, created_at timestamptz, expires_at timestamptz, revoked_at timestamptz, replaced_by text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = %1$I, pg_temp AS $body$
BEGIN
	IF NOT has_function_privilege(session_user, 'scopemem_delete_expired(timestamptz, integer)', 'EXECUTE') THEN
		RAISE EXCEPTION 'scopemem_api_key: role %% is not a scopemem runtime role', session_user
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	RETURN QUERY SELECT k.hash, k.org_id::text, k.user_id, k.teams, k.agent, k.permissions,
		k.test, k.created_at, k.expires_at, k.revoked_at, k.replaced_by
	FROM api_keys k WHERE k.id = p_key_id;
END
$body$;

CREATE FUNCTION scopemem_audit_record(events jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = %1$I, pg_temp AS $body$
BEGIN
	IF NOT has_function_privilege(session_user, 'scopemem_delete_expired(timestamptz, integer)', 'EXECUTE') THEN
		RAISE EXCEPTION 'scopemem_audit_record: role %% is not a scopemem runtime role', session_user
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	INSERT INTO audit (org_id, at, actor, agent, action, scope_kind, scope_id, target, count, source, detail)
	SELECT COALESCE(e.org_id, ''), COALESCE(e.at, now()), COALESCE(e.actor, ''), COALESCE(e.agent, ''), e.action,
		COALESCE(e.scope_kind, ''), COALESCE(e.scope_id, ''), COALESCE(e.target, ''), GREATEST(COALESCE(e.count, 0), 0),
		COALESCE(e.source, ''), COALESCE(e.detail, '')
	FROM jsonb_to_recordset(events) AS e(org_id text, at timestamptz, actor text, agent text, action text,
		scope_kind text, scope_id text, target text, count integer, source text, detail text);
END
$body$;

CREATE FUNCTION scopemem_usage_add(p_orgs text[], p_calls bigint[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = %1$I, pg_temp AS $body$
BEGIN
	IF NOT has_function_privilege(session_user, 'scopemem_delete_expired(timestamptz, integer)', 'EXECUTE') THEN
		RAISE EXCEPTION 'scopemem_usage_add: role %% is not a scopemem runtime role', session_user
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	INSERT INTO usage_calls AS u (org_id, day, calls)
	SELECT o, (now() AT TIME ZONE 'UTC')::date, GREATEST(c, 0) FROM unnest(p_orgs, p_calls) AS t(o, c)
	ON CONFLICT (org_id, day) DO UPDATE SET calls = u.calls + excluded.calls;
END
$body$;

CREATE FUNCTION scopemem_org_storage(p_org text, OUT n_memories bigint, OUT n_bytes bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = %1$I, pg_temp AS $body$
BEGIN
	IF NOT has_function_privilege(session_user, 'scopemem_delete_expired(timestamptz, integer)', 'EXECUTE') THEN
		RAISE EXCEPTION 'scopemem_org_storage: role %% is not a scopemem runtime role', session_user
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	IF p_org IS NULL OR p_org = '' THEN
		n_memories := 0; n_bytes := 0;
		RETURN;
	END IF;
	PERFORM set_config('app.usage_org', p_org, true);
	SELECT count(*), COALESCE(sum(octet_length(m.content)), 0) INTO n_memories, n_bytes
	FROM memories m WHERE m.org_id = p_org;
	PERFORM set_config('app.usage_org', '', true);
END
$body$;
$f$, current_schema());
END
$do$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION scopemem_org_storage(text);
DROP FUNCTION scopemem_usage_add(text[], bigint[]);
DROP FUNCTION scopemem_audit_record(jsonb);
DROP FUNCTION scopemem_api_key(text);
DROP POLICY memories_usage_select ON memories;
DELETE FROM audit WHERE action NOT IN ('add', 'update', 'delete', 'purge', 'expire');
ALTER TABLE audit DROP CONSTRAINT audit_action_check;
ALTER TABLE audit ADD CONSTRAINT audit_action_check CHECK (action IN ('add', 'update', 'delete', 'purge', 'expire'));
ALTER TABLE audit DROP COLUMN detail;
ALTER TABLE audit DROP COLUMN source;
DROP TABLE usage_calls;
DROP TABLE api_keys;
