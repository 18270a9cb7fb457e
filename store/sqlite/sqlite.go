package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/scopemem/scopemem/store"
)

// Config configures [Open]. The zero value of every field but Path means
// its default.
type Config struct {
	// Path is the database file. It is created, with its parent directory,
	// if it does not exist.
	Path string
	// Logger receives diagnostics. Nil discards them.
	Logger *slog.Logger
	// BusyTimeout is how long a call waits for a write lock held by another
	// connection or process before it fails with store.ErrUnavailable.
	// Zero means 10 seconds.
	BusyTimeout time.Duration
	// ReadOnly opens the file for reading only: searches and reads work,
	// writes fail with store.ErrReadOnly (which wraps store.ErrUnavailable).
	// The file must exist and hold a current schema.
	ReadOnly bool
	// MaxReaders bounds the connections used for reads. Zero means
	// max(4, GOMAXPROCS).
	MaxReaders int
	// CacheBytes is about how much memory the in-process cache of
	// searched scopes (decoded vectors, their binary codes, the rows and
	// a full-text index) may hold; the least recently used scopes are
	// dropped beyond it and reloaded from the file when next searched.
	// A 768-dimension memory of a few hundred bytes of text takes about
	// 3.7 KiB. One search always holds every scope it reads, even beyond
	// the budget. Zero means 256 MiB.
	CacheBytes int64
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.BusyTimeout <= 0 {
		c.BusyTimeout = 10 * time.Second
	}
	if c.MaxReaders <= 0 {
		c.MaxReaders = max(4, runtime.GOMAXPROCS(0))
	}
	if c.CacheBytes <= 0 {
		c.CacheBytes = 256 << 20
	}
	return c
}

// Store is a [store.Store] in one SQLite file. It is safe for concurrent
// use, and several processes may open the same file.
type Store struct {
	cfg   Config
	path  string
	wdb   *sql.DB // one connection, which w holds once the first write takes it
	rdb   *sql.DB // readers
	w     writer
	cache *vecCache
	// scratch holds *scratch buffers for searches.
	scratch sync.Pool
	dims    atomic.Int64 // recorded embedder dimensions, 0 until known
	// immutable: the file was opened read-only as immutable (see Open).
	immutable bool
	// readOnlyWhy says why a read-only store is read-only, for the error
	// a write gets.
	readOnlyWhy string
	// stmts holds the prepared statements of the hot paths (stmts.go).
	stmtMu sync.Mutex
	stmts  map[stmtKey]*sql.Stmt
	gate   versionGate
	// prepWriter is set once the store is open and writable: the first
	// write then prepares the writer's statements, so that a start that
	// writes nothing does not prepare them.
	prepWriter bool
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database at cfg.Path, sets it to WAL
// mode and applies any pending schema migrations.
//
// When the file exists but cannot be opened for writing (it, its directory
// or its file system is read-only, so SQLite cannot create its -wal and
// -shm files beside it), Open logs a warning and opens it read-only, as
// [Config.ReadOnly] does: reads work, and writes fail with an error
// wrapping [store.ErrReadOnly] that says why and what to do.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if cfg.Path == "" {
		return nil, errors.New("sqlite: Config.Path is empty: name the database file, e.g. ~/.local/share/scopemem/memories.db")
	}
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: database path %q: %w", cfg.Path, err)
	}
	if cfg.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("sqlite: open %s read-only: %w", path, err)
		}
		return open(ctx, cfg, path, false, "it was opened read-only")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: create the directory of %s: %w", path, err)
	}
	s, err := open(ctx, cfg, path, false, "")
	if err == nil || !(errors.Is(err, errCantOpen) || errors.Is(err, store.ErrReadOnly)) {
		return s, err
	}
	if fi, serr := os.Stat(path); serr != nil || !fi.Mode().IsRegular() {
		return nil, err
	}
	why, unwritable := writeCheck(path)
	if !unwritable {
		return nil, err
	}
	s, roErr := openReadOnly(ctx, cfg, path, why)
	if roErr != nil {
		return nil, fmt.Errorf("%w; read-only, it cannot be opened either: %v", err, roErr)
	}
	cfg.Logger.Warn("the memory database cannot be written: serving it read-only; searches work, writes fail until "+
		"the file and its directory are writable and scopemem restarts", "path", path, "reason", s.readOnlyWhy)
	return s, nil
}

// openReadOnly opens an existing file that could not be opened for
// writing because of why. A WAL-mode file needs its -shm file, which SQLite cannot create
// in a read-only directory; then, as long as no write-ahead log holds
// changes, the file is opened as immutable: nobody can write it without
// creating a -wal or -journal file beside it, which the directory refuses.
func openReadOnly(ctx context.Context, cfg Config, path, why string) (*Store, error) {
	cfg.ReadOnly = true
	s, err := open(ctx, cfg, path, false, why)
	if err == nil || !errors.Is(err, errCantOpen) {
		return s, err
	}
	if fi, serr := os.Stat(path + "-wal"); serr == nil && fi.Size() > 0 {
		return nil, fmt.Errorf("its write-ahead log %s-wal holds changes not yet in the file, which SQLite cannot read "+
			"without creating %s-shm: make the directory writable once, then start scopemem: %w", path, path, err)
	}
	return open(ctx, cfg, path, true, why)
}

// writeCheck reports whether path cannot be written, and why: its
// directory refuses a new file, or the file refuses to open for writing.
func writeCheck(path string) (why string, unwritable bool) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".scopemem-write-check-*")
	if err != nil {
		return fmt.Sprintf("its directory %s cannot be written (%v), so SQLite cannot create its -wal and -shm files there",
			dir, cause(err)), true
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	f, err = os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Sprintf("the file cannot be opened for writing (%v)", cause(err)), true
	}
	f.Close()
	return "", false
}

// cause returns the reason of a *os.PathError (e.g. "read-only file
// system"), or err.
func cause(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// open opens the file at path with cfg. immutable tells SQLite that
// nothing can change the file (read-only only); readOnlyWhy is what a
// refused write reports as the reason.
func open(ctx context.Context, cfg Config, path string, immutable bool, readOnlyWhy string) (*Store, error) {
	s := &Store{cfg: cfg, path: path, immutable: immutable, readOnlyWhy: readOnlyWhy, cache: newVecCache(cfg.CacheBytes)}
	s.w.turn = make(chan struct{}, 1)
	s.scratch.New = func() any { return new(scratch) }
	var err error
	if s.wdb, err = sql.Open("sqlite", s.dsn(true)); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	s.wdb.SetConnMaxIdleTime(0)
	if s.rdb, err = sql.Open("sqlite", s.dsn(false)); err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s.rdb.SetMaxOpenConns(cfg.MaxReaders)
	s.rdb.SetMaxIdleConns(cfg.MaxReaders)
	s.rdb.SetConnMaxIdleTime(0)
	s.rdb.SetConnMaxLifetime(0)
	if err := s.setup(ctx); err != nil {
		s.Close()
		return nil, err
	}
	s.prepWriter = !cfg.ReadOnly
	cfg.Logger.Debug("sqlite store open", "path", path, "read_only", cfg.ReadOnly, "immutable", immutable)
	return s, nil
}

// dsn returns the driver's data source name: a file URI with the pragmas
// every connection needs.
func (s *Store) dsn(writer bool) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(s.path)}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(s.cfg.BusyTimeout.Milliseconds(), 10)+")")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "temp_store(MEMORY)")
	q.Add("_pragma", "cache_size(-16384)")
	q.Add("_pragma", "mmap_size(268435456)")
	if s.cfg.ReadOnly {
		q.Set("mode", "ro")
	}
	if s.immutable {
		q.Set("immutable", "1")
	}
	if writer {
		q.Set("_txlock", "immediate")
	}
	return u.String() + "?" + q.Encode()
}

// setup turns on WAL and migrates the schema (or, read-only, checks it).
func (s *Store) setup(ctx context.Context) error {
	if s.cfg.ReadOnly {
		var v int
		err := s.rdb.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
		if err != nil {
			return fmt.Errorf("sqlite: %s opened read-only has no scopemem schema: %w", s.path, s.translate(err))
		}
		if v != len(migrations()) {
			return fmt.Errorf("sqlite: %s is at schema version %d, this binary needs %d; open it writable once to migrate: %w",
				s.path, v, len(migrations()), store.ErrUnavailable)
		}
		return nil
	}
	var mode string
	if err := s.wdb.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		return fmt.Errorf("sqlite: open %s: %w", s.path, s.translate(err))
	}
	if mode != "wal" {
		if err := s.wdb.QueryRowContext(ctx, `PRAGMA journal_mode=WAL`).Scan(&mode); err != nil {
			return fmt.Errorf("sqlite: switch %s to WAL: %w", s.path, s.translate(err))
		}
		if mode != "wal" {
			return fmt.Errorf("sqlite: %s cannot use WAL mode (journal mode is %q); put the file on a local file system: %w",
				s.path, mode, store.ErrUnavailable)
		}
	}
	// Most opens find the schema current: check without the write lock,
	// so that a start does not queue behind another process's writes. The
	// check reads on the writer's connection, outside a transaction (a
	// read takes no write lock), so that a start opens no reader: the
	// first search does.
	var v int
	if err := s.wdb.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); err == nil && v == len(migrations()) {
		return nil
	}
	return s.migrate(ctx)
}

// Close closes the database. Call it once, after every other call has
// returned.
func (s *Store) Close() error {
	errs := []error{s.closeGate()}
	s.stmtMu.Lock()
	for _, st := range s.stmts {
		errs = append(errs, st.Close())
	}
	s.stmts = nil
	s.stmtMu.Unlock()
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	if s.w.conn != nil {
		errs = append(errs, s.w.conn.Close())
		s.w.conn = nil
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	return errors.Join(errs...)
}

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// querier is what *sql.DB, *sql.Conn and writeTx offer, so that the
// same code runs in or out of a transaction.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// write runs fn in a BEGIN IMMEDIATE transaction on the writer connection
// and commits it. fn's errors come back as they are; driver errors of the
// transaction itself are translated. A transaction that could not start
// because the database stayed busy is retried a few times.
func (s *Store) write(ctx context.Context, fn func(tx writeTx) error) error {
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			s.cfg.Logger.Debug("sqlite busy, retrying write", "path", s.path, "attempt", attempt, "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt*20) * time.Millisecond):
			}
		}
		if err = s.writeOnce(ctx, fn); !errors.Is(err, errBusy) {
			return err
		}
	}
	return err
}

// writeOnce runs fn in one transaction on the writer's connection.
//
// The transaction is BEGIN IMMEDIATE and COMMIT run on the connection
// rather than a database/sql Tx: a Tx watches its context on a goroutine
// of its own, and each query's rows on another, about seven goroutines an
// add, each waking an idle thread. Only BEGIN, which may wait for another
// connection's write lock, runs with ctx; fn's prepared statements run
// without its cancellation (see prepared), and a ctx that ends meanwhile
// rolls the transaction back instead of committing it.
func (s *Store) writeOnce(ctx context.Context, fn func(tx writeTx) error) (err error) {
	conn, err := s.acquireWriter(ctx)
	if err != nil {
		return err
	}
	defer s.releaseWriter()
	if s.prepWriter && !s.w.prepared {
		// Not cancellable: a write given up meanwhile must not leave
		// later ones unprepared.
		s.prepareWriter(context.WithoutCancel(ctx), conn)
		s.w.prepared = true
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return s.translate(err)
	}
	open := true
	defer func() {
		// Also when fn panics: the connection must not stay in a
		// transaction, nor the writer taken.
		if open {
			s.rollback(ctx, conn)
		}
	}()
	if err := fn(writeTx{conn}); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := conn.ExecContext(context.WithoutCancel(ctx), "COMMIT"); err != nil {
		return s.translate(err)
	}
	open = false
	return nil
}

// writeTx is a write transaction: the writer's connection between BEGIN
// IMMEDIATE and COMMIT or ROLLBACK (see writeOnce).
type writeTx struct{ *sql.Conn }

// writer is the writer pool's one connection, held from the first write
// until Close, so that the add path's statements stay prepared on it
// (database/sql has no way to run a statement prepared on a pool on a
// connection taken from it).
type writer struct {
	// turn holds a token while a caller uses conn: taking it waits for
	// the writer as the pool did, and gives up when the caller's context
	// ends.
	turn chan struct{}
	conn *sql.Conn // nil until the first write, or after a failed rollback
	// prepared: the add path's statements are prepared on conn.
	prepared bool
	// dims is what write transactions know of the embedder, as of conn's
	// data version (see txDims): only read and written inside them.
	dims writerDims
}

// acquireWriter waits for the writer's turn and returns its connection,
// taking it from the pool when it is not held yet. Call releaseWriter
// afterwards.
func (s *Store) acquireWriter(ctx context.Context) (*sql.Conn, error) {
	select {
	case s.w.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if s.w.conn == nil {
		conn, err := s.wdb.Conn(ctx)
		if err != nil {
			<-s.w.turn
			return nil, s.translate(err)
		}
		s.w.conn = conn
	}
	return s.w.conn, nil
}

// releaseWriter gives the writer's turn back.
func (s *Store) releaseWriter() { <-s.w.turn }

// rollback ends the transaction on conn. A rollback that fails (SQLite
// has rolled back already after some errors, and then says so) leaves
// the connection in doubt: it is discarded with its statements, and the
// next write takes a new one from the pool.
func (s *Store) rollback(ctx context.Context, conn *sql.Conn) {
	_, err := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
	if err == nil {
		return
	}
	s.cfg.Logger.Debug("sqlite: rollback failed; the writer's connection is replaced", "path", s.path, "err", err)
	s.forgetWriterStmts()
	// A driver.ErrBadConn from Raw makes database/sql close the
	// connection rather than return it to the pool.
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	conn.Close()
	// What was known as of the connection's data version goes with it:
	// a new connection counts its versions afresh.
	s.w.conn, s.w.prepared, s.w.dims = nil, false, writerDims{}
}

// errBusy marks translated SQLITE_BUSY and SQLITE_LOCKED errors, so that
// write can retry them. It unwraps to store.ErrUnavailable.
var errBusy = fmt.Errorf("database is locked: %w", store.ErrUnavailable)

// errCantOpen marks translated SQLITE_CANTOPEN, SQLITE_PERM and
// SQLITE_AUTH errors, so that Open can retry read-only. It unwraps to
// store.ErrUnavailable.
var errCantOpen = fmt.Errorf("cannot open the database: %w", store.ErrUnavailable)

// translate turns driver errors into the store's sentinels: sql.ErrNoRows
// into ErrNotFound; read-only and full databases into ErrReadOnly; busy and
// unreadable ones into ErrUnavailable; each with a message saying what to
// do. Context errors and
// others pass through.
func (s *Store) translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return fmt.Errorf("%s stayed locked by another connection or process for longer than %s (%v): %w",
			s.path, s.cfg.BusyTimeout, err, errBusy)
	case sqlite3.SQLITE_READONLY:
		why := s.readOnlyWhy
		if why == "" {
			why = "the file, its directory or its file system refuses writes"
		}
		return fmt.Errorf("the memory database at %s is read-only: %s (%v); searches still work; to add, change or delete "+
			"memories, make the file and its directory writable (or move the file somewhere writable), then restart scopemem: %w",
			s.path, why, err, store.ErrReadOnly)
	case sqlite3.SQLITE_FULL:
		return fmt.Errorf("the disk holding the memory database at %s is full (%v); searches still work; free some space "+
			"and retry the write: %w", s.path, err, store.ErrReadOnly)
	case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH:
		return fmt.Errorf("cannot open %s (%v); check the path and its permissions: %w", s.path, err, errCantOpen)
	case sqlite3.SQLITE_IOERR:
		return fmt.Errorf("I/O error on %s (%v): %w", s.path, err, store.ErrUnavailable)
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return fmt.Errorf("%s is not a healthy SQLite database (%v); restore it from a backup or export what is readable: %w",
			s.path, err, store.ErrUnavailable)
	}
	return err
}
