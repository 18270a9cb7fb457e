package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations returns the schema changes in order; migration i brings the
// schema from version i to i+1. They only ever move forward: a released
// migration is never edited, a change is a new one appended.
func migrations() []string {
	return []string{
		// 1: memories, their full-text index (dropped by 4), per-scope
		// change counters and store metadata.
		`
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE memories (
	rid          INTEGER PRIMARY KEY,
	id           TEXT NOT NULL UNIQUE,
	org_id       TEXT NOT NULL,
	scope_kind   TEXT NOT NULL CHECK (scope_kind IN ('session', 'agent', 'user', 'team', 'org')),
	scope_id     TEXT NOT NULL,
	content      TEXT NOT NULL,
	content_hash BLOB NOT NULL,
	tags         TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tags) AND json_type(tags) = 'array'),
	metadata     TEXT CHECK (metadata IS NULL OR (json_valid(metadata) AND json_type(metadata) = 'object')),
	created_by   TEXT NOT NULL,
	created_at   INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL,
	expires_at   INTEGER
);
CREATE INDEX memories_scope ON memories (org_id, scope_kind, scope_id, content_hash);
CREATE INDEX memories_expiry ON memories (expires_at) WHERE expires_at IS NOT NULL;

-- Vectors live apart, so that memories stays a few rows per page for the
-- full-text join and the filters, and only a cache load reads vectors.
CREATE TABLE memory_vectors (
	rid    INTEGER PRIMARY KEY REFERENCES memories (rid) ON DELETE CASCADE,
	vector BLOB NOT NULL
);

CREATE TABLE memory_tags (
	rid INTEGER NOT NULL REFERENCES memories (rid) ON DELETE CASCADE,
	tag TEXT NOT NULL,
	PRIMARY KEY (tag, rid)
) WITHOUT ROWID;
CREATE INDEX memory_tags_rid ON memory_tags (rid);

CREATE TABLE scope_versions (
	org_id     TEXT NOT NULL,
	scope_kind TEXT NOT NULL,
	scope_id   TEXT NOT NULL,
	version    INTEGER NOT NULL,
	PRIMARY KEY (org_id, scope_kind, scope_id)
) WITHOUT ROWID;

CREATE VIRTUAL TABLE memories_fts USING fts5(
	content,
	content = 'memories',
	content_rowid = 'rid',
	tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
	INSERT INTO memories_fts (rowid, content) VALUES (new.rid, new.content);
END;
CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
	INSERT INTO memories_fts (memories_fts, rowid, content) VALUES ('delete', old.rid, old.content);
END;
CREATE TRIGGER memories_fts_update AFTER UPDATE OF content ON memories BEGIN
	INSERT INTO memories_fts (memories_fts, rowid, content) VALUES ('delete', old.rid, old.content);
	INSERT INTO memories_fts (rowid, content) VALUES (new.rid, new.content);
END;
`,
		// 2: vectors staged by `scopemem reindex` beside the ones that keep
		// serving searches until the switch (store/sqlite/ops.go).
		`
CREATE TABLE reindex_vectors (
	rid          INTEGER PRIMARY KEY REFERENCES memories (rid) ON DELETE CASCADE,
	content_hash BLOB NOT NULL,
	vector       BLOB NOT NULL
);
`,
		// 3: API keys (only their SHA-256), the audit log and per-org call
		// counters, for the HTTP server (keys.go).
		`
CREATE TABLE api_keys (
	id          TEXT PRIMARY KEY,
	hash        BLOB NOT NULL,
	org_id      TEXT NOT NULL,
	user_id     TEXT NOT NULL,
	teams       TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(teams) AND json_type(teams) = 'array'),
	agent       TEXT NOT NULL DEFAULT '',
	permissions TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(permissions) AND json_type(permissions) = 'array'),
	test        INTEGER NOT NULL DEFAULT 0,
	created_at  INTEGER NOT NULL,
	expires_at  INTEGER,
	revoked_at  INTEGER,
	replaced_by TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE INDEX api_keys_org ON api_keys (org_id, created_at);

CREATE TABLE audit (
	id      INTEGER PRIMARY KEY,
	org_id  TEXT NOT NULL,
	at      INTEGER NOT NULL,
	actor   TEXT NOT NULL DEFAULT '',
	agent   TEXT NOT NULL DEFAULT '',
	action  TEXT NOT NULL,
	scope   TEXT NOT NULL DEFAULT '',
	target  TEXT NOT NULL DEFAULT '',
	count   INTEGER NOT NULL DEFAULT 0 CHECK (count >= 0),
	source  TEXT NOT NULL DEFAULT '',
	detail  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_org_at ON audit (org_id, at);

CREATE TABLE usage_calls (
	org_id TEXT NOT NULL,
	day    TEXT NOT NULL,
	calls  INTEGER NOT NULL,
	PRIMARY KEY (org_id, day)
) WITHOUT ROWID;
`,
		// 4: searches rank text with BM25 over an index kept in memory
		// (cache.go), so nothing reads the FTS5 table any more; dropping it
		// and its triggers takes its share off every insert, update and
		// delete.
		`
DROP TRIGGER memories_fts_insert;
DROP TRIGGER memories_fts_delete;
DROP TRIGGER memories_fts_update;
DROP TABLE memories_fts;
`,
		// 5: what a process's cache needs to catch up with another's
		// writes without reading a whole scope again (cache.go). A row's
		// changed is the scope's version its last insert or update made
		// (the version when it was written, plus the bump that ends every
		// write transaction; at least that, in any order); a scope's reset
		// is the version from which rows have left it (deletes, and a
		// switch of every vector), so that a copy older than that is read
		// again whole. Triggers keep both for every statement that writes
		// rows, whichever code path runs it (the add path's insert sets
		// changed itself, sparing the row a second write).
		`
ALTER TABLE memories ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE scope_versions ADD COLUMN reset INTEGER NOT NULL DEFAULT 0;
CREATE INDEX memories_changed ON memories (org_id, scope_kind, scope_id, changed);

CREATE TRIGGER memories_changed_update AFTER UPDATE ON memories WHEN new.changed = old.changed BEGIN
	UPDATE memories SET changed = 1 + coalesce((SELECT version FROM scope_versions
		WHERE org_id = new.org_id AND scope_kind = new.scope_kind AND scope_id = new.scope_id), 0)
	WHERE rid = new.rid;
	UPDATE scope_versions SET reset = version + 1
	WHERE org_id = old.org_id AND scope_kind = old.scope_kind AND scope_id = old.scope_id
		AND (old.org_id <> new.org_id OR old.scope_kind <> new.scope_kind OR old.scope_id <> new.scope_id);
END;
-- An insert that did not set changed, and a vector's update, touch the
-- row so that the trigger above computes it.
CREATE TRIGGER memories_changed_insert AFTER INSERT ON memories WHEN new.changed = 0 BEGIN
	UPDATE memories SET changed = changed WHERE rid = new.rid;
END;
CREATE TRIGGER memories_changed_delete AFTER DELETE ON memories BEGIN
	UPDATE scope_versions SET reset = version + 1
	WHERE org_id = old.org_id AND scope_kind = old.scope_kind AND scope_id = old.scope_id;
END;
CREATE TRIGGER memory_vectors_changed AFTER UPDATE ON memory_vectors BEGIN
	UPDATE memories SET changed = changed WHERE rid = new.rid;
END;
`,
	}
}

// migrate applies the pending migrations in one write transaction, so that
// two processes starting at once migrate once.
func (s *Store) migrate(ctx context.Context) error {
	all := migrations()
	return s.write(ctx, func(tx writeTx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
			return fmt.Errorf("sqlite: migrate %s: %w", s.path, s.translate(err))
		}
		var v int
		err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
		if err == sql.ErrNoRows {
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
				return fmt.Errorf("sqlite: migrate %s: %w", s.path, s.translate(err))
			}
		} else if err != nil {
			return fmt.Errorf("sqlite: migrate %s: %w", s.path, s.translate(err))
		}
		if v > len(all) {
			return fmt.Errorf("sqlite: %s is at schema version %d but this binary knows only %d; upgrade scopemem", s.path, v, len(all))
		}
		for i := v; i < len(all); i++ {
			if _, err := tx.ExecContext(ctx, all[i]); err != nil {
				return fmt.Errorf("sqlite: migration %d of %s: %w", i+1, s.path, s.translate(err))
			}
			s.cfg.Logger.Info("sqlite schema migrated", "path", s.path, "version", i+1)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, len(all)); err != nil {
			return fmt.Errorf("sqlite: migrate %s: %w", s.path, s.translate(err))
		}
		return nil
	})
}
