-- Row-level security that reads the identity once per statement. Runs as
-- the owner role.
--
-- The tenant policies of version 1 call scopemem_org(), scopemem_visible()
-- and scopemem_has(), which PostgreSQL inlines: every row a statement
-- reads then calls current_setting() (and parses app.team_ids and
-- app.perms into arrays) again, several times per policy, and for a read
-- every permissive SELECT policy (export, purge, then the tenant's own)
-- is tried in turn. Here every part of a policy that does not depend on
-- the row is a scalar sub-select, which the planner makes an InitPlan:
-- evaluated at most once per execution of the statement, its value then
-- compared with each row's columns. The settings are set by statements of
-- their own before any statement that reads them (never inside one), so
-- once per statement sees exactly what once per row saw.
--
-- The rules are unchanged: the same settings, the same comparisons, NULL
-- or '' settings still match no row. Only the order inside the purge,
-- export and import policies changes: their row-independent condition
-- comes first, so that outside a purge, an export or an import each row
-- fails them on one comparison.
--
-- The owner's own policies (janitor, Maintain, usage counts, reindex) are
-- left as they are: they run in maintenance statements, not per request.

-- +goose Up
-- Read: the identity's visible scopes in its org. (The cast after the
-- team list's sub-select makes "= ANY" compare with the elements of one
-- array; "= ANY ((SELECT ...))" alone would be the sub-query form.)
DROP POLICY memories_select ON memories;
CREATE POLICY memories_select ON memories FOR SELECT
	USING (org_id = (SELECT scopemem_org())
		AND CASE scope_kind
			WHEN 'org' THEN scope_id = ''
			WHEN 'user' THEN scope_id = (SELECT NULLIF(current_setting('app.user_id', true), ''))
			WHEN 'agent' THEN scope_id = (SELECT NULLIF(current_setting('app.user_id', true), '') || '/' || NULLIF(current_setting('app.agent', true), ''))
			WHEN 'session' THEN scope_id = (SELECT NULLIF(current_setting('app.user_id', true), '') || '/' || NULLIF(current_setting('app.session_id', true), ''))
			WHEN 'team' THEN scope_id = ANY ((SELECT COALESCE(NULLIF(current_setting('app.team_ids', true), ''), '{}')::text[])::text[])
			ELSE false
		END);

-- Add: only into a visible scope, as the identity.
DROP POLICY memories_insert ON memories;
CREATE POLICY memories_insert ON memories FOR INSERT
	WITH CHECK (org_id = (SELECT scopemem_org())
		AND CASE scope_kind
			WHEN 'org' THEN scope_id = ''
			WHEN 'user' THEN scope_id = (SELECT NULLIF(current_setting('app.user_id', true), ''))
			WHEN 'agent' THEN scope_id = (SELECT NULLIF(current_setting('app.user_id', true), '') || '/' || NULLIF(current_setting('app.agent', true), ''))
			WHEN 'session' THEN scope_id = (SELECT NULLIF(current_setting('app.user_id', true), '') || '/' || NULLIF(current_setting('app.session_id', true), ''))
			WHEN 'team' THEN scope_id = ANY ((SELECT COALESCE(NULLIF(current_setting('app.team_ids', true), ''), '{}')::text[])::text[])
			ELSE false
		END
		AND created_by = (SELECT NULLIF(current_setting('app.user_id', true), '')));

-- Update: only in scopes the identity may write (memory:write, and
-- memory:share for team and org), and the row may not move out of them.
DROP POLICY memories_update ON memories;
CREATE POLICY memories_update ON memories FOR UPDATE
	USING (org_id = (SELECT scopemem_org())
		AND CASE scope_kind
			WHEN 'org' THEN scope_id = ''
			WHEN 'user' THEN scope_id = (SELECT NULLIF(current_setting('app.user_id', true), ''))
			WHEN 'agent' THEN scope_id = (SELECT NULLIF(current_setting('app.user_id', true), '') || '/' || NULLIF(current_setting('app.agent', true), ''))
			WHEN 'session' THEN scope_id = (SELECT NULLIF(current_setting('app.user_id', true), '') || '/' || NULLIF(current_setting('app.session_id', true), ''))
			WHEN 'team' THEN scope_id = ANY ((SELECT COALESCE(NULLIF(current_setting('app.team_ids', true), ''), '{}')::text[])::text[])
			ELSE false
		END
		AND (SELECT scopemem_has('memory:write'))
		AND (scope_kind NOT IN ('team', 'org') OR (SELECT scopemem_has('memory:share'))))
	WITH CHECK (org_id = (SELECT scopemem_org())
		AND CASE scope_kind
			WHEN 'org' THEN scope_id = ''
			WHEN 'user' THEN scope_id = (SELECT NULLIF(current_setting('app.user_id', true), ''))
			WHEN 'agent' THEN scope_id = (SELECT NULLIF(current_setting('app.user_id', true), '') || '/' || NULLIF(current_setting('app.agent', true), ''))
			WHEN 'session' THEN scope_id = (SELECT NULLIF(current_setting('app.user_id', true), '') || '/' || NULLIF(current_setting('app.session_id', true), ''))
			WHEN 'team' THEN scope_id = ANY ((SELECT COALESCE(NULLIF(current_setting('app.team_ids', true), ''), '{}')::text[])::text[])
			ELSE false
		END
		AND (SELECT scopemem_has('memory:write'))
		AND (scope_kind NOT IN ('team', 'org') OR (SELECT scopemem_has('memory:share'))));

-- Delete: in scopes the identity may write or purge.
DROP POLICY memories_delete ON memories;
CREATE POLICY memories_delete ON memories FOR DELETE
	USING (org_id = (SELECT scopemem_org())
		AND CASE scope_kind
			WHEN 'org' THEN scope_id = ''
			WHEN 'user' THEN scope_id = (SELECT NULLIF(current_setting('app.user_id', true), ''))
			WHEN 'agent' THEN scope_id = (SELECT NULLIF(current_setting('app.user_id', true), '') || '/' || NULLIF(current_setting('app.agent', true), ''))
			WHEN 'session' THEN scope_id = (SELECT NULLIF(current_setting('app.user_id', true), '') || '/' || NULLIF(current_setting('app.session_id', true), ''))
			WHEN 'team' THEN scope_id = ANY ((SELECT COALESCE(NULLIF(current_setting('app.team_ids', true), ''), '{}')::text[])::text[])
			ELSE false
		END
		AND (SELECT scopemem_has('memory:write') OR scopemem_has('memory:purge'))
		AND (scope_kind NOT IN ('team', 'org') OR (SELECT scopemem_has('memory:share'))));

-- Purge paths (see version 1): a user's own scopes while app.purge_user
-- names them, a team's scope while app.purge_team names it, the whole org
-- while app.purge_org is 'on'. Each alternative first asks, once per
-- statement, whether that purge is under way and allowed: a named user
-- (the caller with memory:purge, or anyone for memory:admin), a named
-- team (memory:admin), the org (memory:admin). Outside a purge every row
-- fails the three on that answer.
DROP POLICY memories_purge_select ON memories;
CREATE POLICY memories_purge_select ON memories FOR SELECT
	USING (((SELECT NULLIF(current_setting('app.purge_user', true), '') IS NOT NULL
				AND (scopemem_has('memory:admin')
					OR (current_setting('app.purge_user', true) = current_setting('app.user_id', true)
						AND scopemem_has('memory:purge'))))
			AND scope_kind IN ('user', 'agent', 'session')
			AND split_part(scope_id, '/', 1) = (SELECT NULLIF(current_setting('app.purge_user', true), ''))
			AND org_id = (SELECT scopemem_org()))
		OR ((SELECT NULLIF(current_setting('app.purge_team', true), '') IS NOT NULL AND scopemem_has('memory:admin'))
			AND scope_kind = 'team'
			AND scope_id = (SELECT NULLIF(current_setting('app.purge_team', true), ''))
			AND org_id = (SELECT scopemem_org()))
		OR ((SELECT current_setting('app.purge_org', true) = 'on' AND scopemem_has('memory:admin'))
			AND org_id = (SELECT scopemem_org())));
DROP POLICY memories_purge_delete ON memories;
CREATE POLICY memories_purge_delete ON memories FOR DELETE
	USING (((SELECT NULLIF(current_setting('app.purge_user', true), '') IS NOT NULL
				AND (scopemem_has('memory:admin')
					OR (current_setting('app.purge_user', true) = current_setting('app.user_id', true)
						AND scopemem_has('memory:purge'))))
			AND scope_kind IN ('user', 'agent', 'session')
			AND split_part(scope_id, '/', 1) = (SELECT NULLIF(current_setting('app.purge_user', true), ''))
			AND org_id = (SELECT scopemem_org()))
		OR ((SELECT NULLIF(current_setting('app.purge_team', true), '') IS NOT NULL AND scopemem_has('memory:admin'))
			AND scope_kind = 'team'
			AND scope_id = (SELECT NULLIF(current_setting('app.purge_team', true), ''))
			AND org_id = (SELECT scopemem_org()))
		OR ((SELECT current_setting('app.purge_org', true) = 'on' AND scopemem_has('memory:admin'))
			AND org_id = (SELECT scopemem_org())));

-- Export and import (see version 200): an admin of the org, only inside
-- an export or import transaction.
DROP POLICY memories_export_select ON memories;
CREATE POLICY memories_export_select ON memories FOR SELECT
	USING ((SELECT current_setting('app.export_org', true) = 'on' AND scopemem_has('memory:admin'))
		AND org_id = (SELECT scopemem_org()));
DROP POLICY memories_import_insert ON memories;
CREATE POLICY memories_import_insert ON memories FOR INSERT
	WITH CHECK ((SELECT current_setting('app.import_org', true) = 'on' AND scopemem_has('memory:admin'))
		AND org_id = (SELECT scopemem_org()));

-- Audit rows: for the identity's org and as itself.
DROP POLICY audit_insert ON audit;
CREATE POLICY audit_insert ON audit FOR INSERT
	WITH CHECK (org_id = (SELECT scopemem_org())
		AND actor = (SELECT NULLIF(current_setting('app.user_id', true), '')));

-- +goose Down
DROP POLICY audit_insert ON audit;
CREATE POLICY audit_insert ON audit FOR INSERT
	WITH CHECK (org_id = scopemem_org() AND actor = NULLIF(current_setting('app.user_id', true), ''));

DROP POLICY memories_import_insert ON memories;
CREATE POLICY memories_import_insert ON memories FOR INSERT
	WITH CHECK (org_id = scopemem_org() AND current_setting('app.import_org', true) = 'on'
		AND scopemem_has('memory:admin'));
DROP POLICY memories_export_select ON memories;
CREATE POLICY memories_export_select ON memories FOR SELECT
	USING (org_id = scopemem_org() AND current_setting('app.export_org', true) = 'on'
		AND scopemem_has('memory:admin'));

DROP POLICY memories_purge_delete ON memories;
CREATE POLICY memories_purge_delete ON memories FOR DELETE
	USING (org_id = scopemem_org() AND scopemem_purgeable(scope_kind, scope_id));
DROP POLICY memories_purge_select ON memories;
CREATE POLICY memories_purge_select ON memories FOR SELECT
	USING (org_id = scopemem_org() AND scopemem_purgeable(scope_kind, scope_id));

DROP POLICY memories_delete ON memories;
CREATE POLICY memories_delete ON memories FOR DELETE
	USING (org_id = scopemem_org() AND scopemem_visible(scope_kind, scope_id)
		AND (scopemem_has('memory:write') OR scopemem_has('memory:purge'))
		AND (scope_kind NOT IN ('team', 'org') OR scopemem_has('memory:share')));

DROP POLICY memories_update ON memories;
CREATE POLICY memories_update ON memories FOR UPDATE
	USING (org_id = scopemem_org() AND scopemem_visible(scope_kind, scope_id)
		AND scopemem_has('memory:write') AND (scope_kind NOT IN ('team', 'org') OR scopemem_has('memory:share')))
	WITH CHECK (org_id = scopemem_org() AND scopemem_visible(scope_kind, scope_id)
		AND scopemem_has('memory:write') AND (scope_kind NOT IN ('team', 'org') OR scopemem_has('memory:share')));

DROP POLICY memories_insert ON memories;
CREATE POLICY memories_insert ON memories FOR INSERT
	WITH CHECK (org_id = scopemem_org() AND scopemem_visible(scope_kind, scope_id)
		AND created_by = NULLIF(current_setting('app.user_id', true), ''));

DROP POLICY memories_select ON memories;
CREATE POLICY memories_select ON memories FOR SELECT
	USING (org_id = scopemem_org() AND scopemem_visible(scope_kind, scope_id));
