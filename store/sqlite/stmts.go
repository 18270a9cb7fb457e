package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
)

// The statements of the add path, prepared on the writer connection by
// the first write after the store opens (see writerStmts).
const (
	sqlDataVersion  = `PRAGMA data_version`
	sqlReadEmbedder = `SELECT key, value FROM meta WHERE key IN ('embedder_provider', 'embedder_model', 'embedder_dimensions')`
	sqlScopeVersion = `SELECT version, reset FROM scope_versions WHERE org_id = ? AND scope_kind = ? AND scope_id = ?`
	sqlBumpVersion  = `INSERT INTO scope_versions (org_id, scope_kind, scope_id, version) VALUES (?, ?, ?, 1)
			ON CONFLICT (org_id, scope_kind, scope_id) DO UPDATE SET version = version + 1 RETURNING version`
	sqlDuplicateByHash = `SELECT ` + memoryCols + ` FROM memories
		WHERE org_id = ? AND scope_kind = ? AND scope_id = ? AND content_hash = ? AND ` + liveSQL + ` ORDER BY rid LIMIT 1`
	sqlMemoryByRid = `SELECT ` + memoryCols + ` FROM memories WHERE rid = ? AND org_id = ?`
	// changed as the migration's insert trigger would set it (schema.go),
	// without the trigger's second write of the row.
	sqlInsertMemory = `INSERT INTO memories (id, org_id, scope_kind, scope_id, content, content_hash, tags,
				metadata, created_by, created_at, updated_at, expires_at, changed)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 1 + coalesce((SELECT version FROM scope_versions
				WHERE org_id = ?2 AND scope_kind = ?3 AND scope_id = ?4), 0))`
	sqlInsertVector = `INSERT INTO memory_vectors (rid, vector) VALUES (?, ?)`
	sqlInsertTag    = `INSERT OR IGNORE INTO memory_tags (rid, tag) VALUES (?, ?)`
)

// writerStmts are prepared on the writer connection by prepareWriter.
var writerStmts = []string{
	sqlDataVersion, sqlReadEmbedder, sqlScopeVersion, sqlBumpVersion, sqlDuplicateByHash, sqlMemoryByRid,
	sqlInsertMemory, sqlInsertVector, sqlInsertTag,
}

// stmtKey names a prepared statement: its pool (writer or readers) and
// its text.
type stmtKey struct {
	writer bool
	query  string
}

// prepareWriter prepares writerStmts on the writer's connection. One
// that fails to prepare (it should not) runs unprepared, and reports its
// error where it runs. The writer's turn is held.
func (s *Store) prepareWriter(ctx context.Context, conn *sql.Conn) {
	for _, q := range writerStmts {
		st, err := conn.PrepareContext(ctx, q)
		if err != nil {
			s.cfg.Logger.Debug("sqlite: statement not prepared", "path", s.path, "err", err)
			continue
		}
		s.stmtMu.Lock()
		if s.stmts == nil {
			s.stmts = map[stmtKey]*sql.Stmt{}
		}
		s.stmts[stmtKey{true, q}] = st
		s.stmtMu.Unlock()
	}
}

// forgetWriterStmts closes the statements prepared on the writer's
// connection, before it is discarded. The writer's turn is held.
func (s *Store) forgetWriterStmts() {
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	for k, st := range s.stmts {
		if k.writer {
			st.Close()
			delete(s.stmts, k)
		}
	}
}

// stmt returns query prepared: on the readers, preparing it on first use
// (database/sql prepares it again on each reader connection it runs on,
// once); on the writer, only what prepareWriter prepared on its
// connection, or nil.
func (s *Store) stmt(ctx context.Context, writer bool, query string) *sql.Stmt {
	k := stmtKey{writer, query}
	s.stmtMu.Lock()
	st := s.stmts[k]
	s.stmtMu.Unlock()
	if st != nil || writer {
		return st
	}
	st, err := s.rdb.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if old := s.stmts[k]; old != nil {
		st.Close()
		return old
	}
	if s.stmts == nil {
		s.stmts = map[stmtKey]*sql.Stmt{}
	}
	s.stmts[k] = st
	return st
}

// prepared is a [querier] that runs statements prepared through
// [Store.stmt], in the write transaction tx or, when tx holds no
// connection ([Store.readers]), on the readers. A statement that is not
// prepared runs unprepared, so that any error comes back where it runs.
type prepared struct {
	s  *Store
	tx writeTx
}

// prep returns the prepared querier of the write transaction tx.
func (s *Store) prep(tx writeTx) prepared { return prepared{s: s, tx: tx} }

// readers returns the prepared querier of the readers.
func (s *Store) readers() prepared { return prepared{s: s} }

// statementContext returns the context a statement runs in. In a write
// transaction, ctx without its cancellation: the add path's statements
// (writerStmts) each touch a row or two, and a cancellable statement
// costs the driver a goroutine to watch ctx, each waking an idle thread.
// The transaction was begun with ctx, so waiting for the write lock still
// ends with it, and a ctx that ends meanwhile rolls the transaction back
// at its end (see writeOnce). Statements that may run long (loading a
// scope's rows) do not go through prepared.
func (p prepared) statementContext(ctx context.Context) context.Context {
	if p.tx.Conn != nil {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

func (p prepared) get(ctx context.Context, query string) *sql.Stmt {
	// A writer's statement is prepared on the transaction's connection.
	return p.s.stmt(ctx, p.tx.Conn != nil, query)
}

func (p prepared) unprepared() querier {
	if p.tx.Conn != nil {
		return p.tx
	}
	return p.s.rdb
}

// ExecContext runs a statement that returns no rows.
func (p prepared) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = p.statementContext(ctx)
	if st := p.get(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return p.unprepared().ExecContext(ctx, query, args...)
}

// QueryContext runs a query.
func (p prepared) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx = p.statementContext(ctx)
	if st := p.get(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return p.unprepared().QueryContext(ctx, query, args...)
}

// QueryRowContext runs a query expected to return at most one row.
func (p prepared) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	ctx = p.statementContext(ctx)
	if st := p.get(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return p.unprepared().QueryRowContext(ctx, query, args...)
}

// versionGate tells whether the file may have changed since a search last
// compared its scopes' versions with scope_versions: PRAGMA data_version
// on a connection of its own changes whenever another connection (this
// store's writer, or another process) commits. One statement on a
// prepared connection costs a fraction of the versions query, which a
// search then skips when nothing was committed since its scopes were
// last checked.
//
// The statement runs on the driver's connection (sql.Conn.Raw), prepared
// there once: every search runs it, and database/sql's statement, rows
// and row around one integer cost about as much as SQLite's own work.
type versionGate struct {
	mu    sync.Mutex
	tried bool      // the connection was opened, or failed to, or the gate closed
	conn  *sql.Conn // nil: no gate, every search checks the versions
	stmt  gateStmt
	row   []driver.Value // the statement's one column, reused
	// wal, when not nil, reads the WAL-index header: while it is the
	// header read before the statement last ran (seen), nothing was
	// committed since and the statement would answer version again.
	wal     *walView
	mapped  bool // the view was tried
	seen    walHeader
	version int64
	known   bool // seen and version go together
}

// gateStmt is the gate's statement, prepared on the driver's connection.
type gateStmt interface {
	driver.Stmt
	driver.StmtQueryContext
}

// openGate sets up the gate's connection, on the first search rather than
// at open, so that a server starts without opening a reader; without one,
// searches check the versions every time. The gate's lock is held.
func (s *Store) openGate(ctx context.Context) {
	g := &s.gate
	g.tried = true
	// Not cancellable: a search given up while the connection opens must
	// not leave every later search without a gate.
	ctx = context.WithoutCancel(ctx)
	conn, err := s.rdb.Conn(ctx)
	if err != nil {
		return
	}
	err = conn.Raw(func(dc any) error {
		pc, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return errors.ErrUnsupported
		}
		st, err := pc.PrepareContext(ctx, `PRAGMA data_version`)
		if err != nil {
			return err
		}
		q, ok := st.(gateStmt)
		if !ok || st.NumInput() > 0 {
			st.Close()
			return errors.ErrUnsupported
		}
		g.stmt = q
		return nil
	})
	if err != nil {
		conn.Close()
		return
	}
	g.conn, g.row = conn, make([]driver.Value, 1)
}

// dataVersion returns the file's data version as the gate's connection
// sees it, or false when the gate is busy, closed or failed (then the
// caller checks the versions).
func (s *Store) dataVersion(ctx context.Context) (int64, bool) {
	g := &s.gate
	if !g.mu.TryLock() {
		return 0, false
	}
	defer g.mu.Unlock()
	if !g.tried {
		s.openGate(ctx)
	}
	if g.conn == nil {
		return 0, false
	}
	// Read before the statement runs: a commit between the two is then
	// seen as a change next time.
	var hdr walHeader
	current := false
	if g.wal != nil {
		hdr, current = g.wal.header()
		if current && g.known && hdr == g.seen {
			return g.version, true
		}
	}
	var v int64
	err := g.conn.Raw(func(any) error {
		// The statement only reads a counter, so it is not made
		// cancellable: a cancellable context costs the driver a
		// goroutine per statement to watch it.
		rows, err := g.stmt.QueryContext(context.Background(), nil)
		if err != nil {
			return err
		}
		err = rows.Next(g.row)
		if cerr := rows.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		var ok bool
		if v, ok = g.row[0].(int64); !ok {
			return fmt.Errorf("PRAGMA data_version returned %T", g.row[0])
		}
		return nil
	})
	if err != nil {
		// A connection that fails once is not trusted again.
		s.dropGate()
		return 0, false
	}
	g.seen, g.version, g.known = hdr, v, current
	if !g.mapped {
		// Once a read transaction has run on the gate's connection,
		// SQLite has the -shm file open.
		g.mapped = true
		g.wal = openWALView(s.path)
	}
	return v, true
}

// dropGate closes the gate's statement and connection. The gate's lock is
// held.
func (s *Store) dropGate() error {
	g := &s.gate
	if g.conn == nil {
		return nil
	}
	err := g.conn.Raw(func(any) error { return g.stmt.Close() })
	err = errors.Join(err, g.conn.Close())
	g.conn, g.stmt = nil, nil
	// The view is only used while the gate's connection keeps the -shm
	// file open.
	if g.wal != nil {
		err = errors.Join(err, g.wal.close())
		g.wal = nil
	}
	g.known = false
	return err
}

// closeGate releases the gate's connection.
func (s *Store) closeGate() error {
	g := &s.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	g.tried = true
	return s.dropGate()
}
