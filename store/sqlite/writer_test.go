package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/storetest"
)

// TestWriteTransaction checks how a write transaction on the held
// writer connection ends: committed, rolled back on an error, a panic or
// a context that ends meanwhile, and with the connection replaced when
// its rollback fails; every later write, the add path's prepared
// statements included, still works.
func TestWriteTransaction(t *testing.T) {
	s, err := Open(t.Context(), Config{Path: filepath.Join(t.TempDir(), "m.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.SetEmbedder(t.Context(), storetest.EmbedderInfo); err != nil {
		t.Fatal(err)
	}
	alice := storetest.Member("acme", "alice", "api")
	user := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	// An add first, so that the writer knows the embedder's dimensions.
	first := store.NewMemory{Scope: user, Content: "first", Vector: storetest.Vector("first", storetest.EmbedderInfo.Dimensions)}
	if _, err := s.Add(t.Context(), alice, []store.NewMemory{first}); err != nil {
		t.Fatal(err)
	}

	errFn := errors.New("fn failed")
	insert := func(key string) func(context.Context, writeTx) error {
		return func(ctx context.Context, tx writeTx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, 'v')`, key)
			return err
		}
	}
	tests := []struct {
		name   string
		fn     func(context.Context, writeTx) error
		cancel bool // the context ends while fn runs
		panics bool
		kept   bool // the row fn inserts is committed
		// The connection is replaced: what was known as of its data
		// version is forgotten.
		replaced bool
		wantErr  error
	}{
		{name: "committed", fn: insert("committed"), kept: true},
		{name: "fn fails", fn: func(ctx context.Context, tx writeTx) error {
			if err := insert("fn fails")(ctx, tx); err != nil {
				return err
			}
			return errFn
		}, wantErr: errFn},
		{name: "context ends meanwhile", fn: insert("context ends meanwhile"), cancel: true, wantErr: context.Canceled},
		{name: "fn panics", fn: func(ctx context.Context, tx writeTx) error {
			if err := insert("fn panics")(ctx, tx); err != nil {
				return err
			}
			panic("fn panicked")
		}, panics: true},
		{name: "rollback fails", fn: func(ctx context.Context, tx writeTx) error {
			if err := insert("rollback fails")(ctx, tx); err != nil {
				return err
			}
			// The transaction ends here, so that writeOnce's own
			// rollback fails.
			if _, err := tx.ExecContext(ctx, `ROLLBACK`); err != nil {
				return err
			}
			return errFn
		}, replaced: true, wantErr: errFn},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			fn := tt.fn
			if tt.cancel {
				fn = func(ctx context.Context, tx writeTx) error {
					err := tt.fn(ctx, tx)
					cancel()
					return err
				}
			}
			err := func() (err error) {
				defer func() {
					if r := recover(); r != nil && !tt.panics {
						panic(r)
					} else if r == nil && tt.panics {
						err = errors.New("fn did not panic")
					}
				}()
				return s.write(ctx, func(tx writeTx) error { return fn(ctx, tx) })
			}()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("write: %v, want %v", err, tt.wantErr)
			}
			var n int
			if err := s.rdb.QueryRowContext(t.Context(), `SELECT count(*) FROM meta WHERE key = ?`, tt.name).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if got := n == 1; got != tt.kept {
				t.Errorf("row committed: %v, want %v", got, tt.kept)
			}
			if forgot := s.w.dims == (writerDims{}); forgot != tt.replaced {
				t.Errorf("the embedder's dimensions forgotten: %v, want %v", forgot, tt.replaced)
			}
			// The writer is free, out of any transaction, and its
			// prepared statements work.
			add, cancelAdd := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancelAdd()
			vec := make([]float32, storetest.EmbedderInfo.Dimensions)
			vec[0], vec[1] = 1, float32(i+1)
			m := store.NewMemory{Scope: user, Content: "after " + tt.name, Vector: vec}
			if _, err := s.Add(add, alice, []store.NewMemory{m}); err != nil {
				t.Fatalf("add after the write: %v", err)
			}
		})
	}
}

// TestWriterTurn checks that a write waiting for another to finish gives
// up when its context ends.
func TestWriterTurn(t *testing.T) {
	s, err := Open(t.Context(), Config{Path: filepath.Join(t.TempDir(), "m.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	held := make(chan struct{})
	done := make(chan struct{})
	go func() {
		s.write(t.Context(), func(tx writeTx) error {
			close(held)
			<-done
			return nil
		})
	}()
	<-held
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	err = s.write(ctx, func(writeTx) error { return nil })
	close(done)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("write while another holds the writer: %v, want %v", err, context.DeadlineExceeded)
	}
	if _, _, err := s.Embedder(t.Context()); err != nil {
		t.Fatalf("Embedder after: %v", err)
	}
}
