-- Paths for the operator commands export, import and reindex. Runs as the
-- owner role.

-- +goose Up

-- Export: every memory of the identity's org, for an identity holding
-- memory:admin, and only inside the transaction of an export that the
-- store has already authorized (app.export_org is set nowhere else). Like
-- every tenant policy it compares org_id with the transaction's org: an
-- export of one org never reads another's rows.
CREATE POLICY memories_export_select ON memories FOR SELECT
	USING (org_id = scopemem_org() AND current_setting('app.export_org', true) = 'on'
		AND scopemem_has('memory:admin'));

-- Import: rows keep their ids, scopes, authors and times, so the insert
-- policy's "created by the caller, in a visible scope" cannot hold; an
-- admin of the org may insert into any scope of that org, only inside an
-- import transaction (app.import_org).
CREATE POLICY memories_import_insert ON memories FOR INSERT
	WITH CHECK (org_id = scopemem_org() AND current_setting('app.import_org', true) = 'on'
		AND scopemem_has('memory:admin'));

-- Reindex crosses orgs, so only the owner may do it (policies TO the
-- owner; the runtime role cannot set them off), and only while
-- app.reindex is on. Columns other than embedding are never changed by it.
-- +goose StatementBegin
DO $$
BEGIN
	EXECUTE format($p$CREATE POLICY memories_reindex_select ON memories FOR SELECT TO %I
		USING (current_setting('app.reindex', true) = 'on')$p$, current_user);
	EXECUTE format($p$CREATE POLICY memories_reindex_update ON memories FOR UPDATE TO %I
		USING (current_setting('app.reindex', true) = 'on')
		WITH CHECK (current_setting('app.reindex', true) = 'on')$p$, current_user);
END
$$;
-- +goose StatementEnd

-- New vectors staged by a reindex, beside the old ones that keep serving
-- searches until the switch. content_hash is the content a vector was
-- made from: a memory whose content changed since is embedded again. The
-- runtime role has no grant on it.
CREATE TABLE reindex_vectors (
	org_id       text   COLLATE "C" NOT NULL,
	id           uuid   NOT NULL,
	content_hash bytea  NOT NULL,
	embedding    vector NOT NULL,
	PRIMARY KEY (org_id, id)
);
ALTER TABLE reindex_vectors ALTER COLUMN embedding SET STORAGE MAIN;

-- +goose Down
DROP TABLE reindex_vectors;
DROP POLICY memories_reindex_update ON memories;
DROP POLICY memories_reindex_select ON memories;
DROP POLICY memories_import_insert ON memories;
DROP POLICY memories_export_select ON memories;
