package main

import (
	"bytes"
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/sqlite"
)

// importSeeds are export lines for both import fuzz targets: a good line
// with and without its vector, and the shapes of bad lines import must
// report rather than store.
var importSeeds = []string{
	`{"id":"0196b4a4-6c1b-7a3e-9d3c-5f2e8b7a1c00","org":"acme","scope":"user:alice","content":"the API team deploys on Fridays","tags":["deploy"],"metadata":{"src":"chat"},"created_by":"alice","created_at":"2025-05-01T10:00:00Z","updated_at":"2025-05-01T10:00:00Z"}`,
	`{"id":"0196b4a4-6c1b-7a3e-9d3c-5f2e8b7a1c01","org":"acme","scope":"agent:alice/coder","content":"prefers tabs","created_by":"alice","created_at":"2025-05-01T10:00:00Z","updated_at":"2025-05-01T10:00:00Z","expires_at":"2030-01-01T00:00:00Z","vector":[1,0,0],"embedder":{"provider":"builtin","model":"lexical-v1","dimensions":3}}`,
	`{"id":"0196b4a4-6c1b-7a3e-9d3c-5f2e8b7a1c02","org":"globex","scope":"org","content":"another org","created_by":"bob","created_at":"2025-05-01T10:00:00Z","updated_at":"2025-05-01T10:00:00Z"}`,
	`{"id":"0196B4A4-6C1B-7A3E-9D3C-5F2E8B7A1C03","org":"acme","scope":"team:api","content":"upper-case id","created_by":"alice","created_at":"2025-05-01T10:00:00Z","updated_at":"2025-05-01T10:00:00Z"}`,
	`{"id":"0196b4a4-6c1b-7a3e-9d3c-5f2e8b7a1c04","org":"acme","scope":"session:alice","content":"session without a key","created_by":"alice","created_at":"2025-05-01T10:00:00Z","updated_at":"2025-05-01T10:00:00Z"}`,
	`{"id":"0196b4a4-6c1b-7a3e-9d3c-5f2e8b7a1c05","org":"acme","scope":"user:alice","content":"a\u0000b","created_by":"a:b","created_at":"2025-05-01T10:00:00Z","updated_at":"0001-01-01T00:00:00Z","metadata":[1]}`,
	`{"id":"0196b4a4-6c1b-7a3e-9d3c-5f2e8b7a1c06","org":"acme","scope":"user:alice","content":"vector without embedder","created_by":"alice","created_at":"2025-05-01T10:00:00Z","updated_at":"2025-05-01T10:00:00Z","vector":[0,0,0]}`,
	`{"id":"42","org":"acme","scope":"project:x","content":" ","colour":"blue"}`,
	`{"id":"0196b4a4-6c1b-7a3e-9d3c-5f2e8b7a1c07","org":"acme"} {"id":"x"}`,
	`{"id":"0196b4a4-6c1b-7a3e-9d3c-5f2e8b7a1c08","org":"","scope":"org","content":"no org","created_by":"alice","created_at":"2025-05-01T10:00:00Z","updated_at":"2025-05-01T10:00:00Z"}`,
	`not json`,
}

// FuzzImportLine feeds arbitrary lines to the import line parser and
// validator: a line is either refused with an error wrapping
// store.ErrInvalid, or yields a record of a valid org that
// store.ValidateRecord accepts, marked for embedding exactly when its
// vector cannot be used as it is.
func FuzzImportLine(f *testing.F) {
	for _, s := range importSeeds {
		f.Add(s)
	}
	info := embedderInfo(builtin.Info())
	f.Fuzz(func(t *testing.T, line string) {
		run := &importRun{opts: importOptions{As: "ops"}, info: info, have: true}
		p, err := run.parse(t.Context(), 1, []byte(line))
		if err != nil {
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("parse(%s) error %v does not wrap store.ErrInvalid", line, err)
			}
			return
		}
		if _, err := operator(p.rec.Org, "ops"); err != nil {
			t.Fatalf("parse(%s) accepted org %q: %v", line, p.rec.Org, err)
		}
		if p.embed != (p.rec.Vector == nil) {
			t.Fatalf("parse(%s): embed %v with vector %v", line, p.embed, p.rec.Vector)
		}
		rec := p.rec
		if p.embed {
			rec.Vector = make([]float32, info.Dimensions)
			rec.Vector[0] = 1
		} else {
			rec.Vector = slices.Clone(rec.Vector)
		}
		if err := store.ValidateRecord(&rec, p.rec.Org, info.Dimensions); err != nil {
			t.Fatalf("parse(%s) accepted a record ValidateRecord refuses: %v", line, err)
		}
	})
}

// FuzzImportSQLite imports arbitrary lines with --org acme into a SQLite
// store that already holds a memory of org globex, and also hands each
// line's record straight to Import as an admin of acme: nothing panics,
// every line refused is reported with an error wrapping store.ErrInvalid
// or store.ErrConflict, nothing is ever stored in an org other than acme,
// and globex's memory is untouched, even when a line reuses its id.
func FuzzImportSQLite(f *testing.F) {
	for _, s := range importSeeds {
		f.Add(s)
	}
	path := filepath.Join(f.TempDir(), "m.db")
	st, err := sqlite.Open(f.Context(), sqlite.Config{Path: path})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	info := embedderInfo(builtin.Info())
	if err := st.SetEmbedder(f.Context(), info); err != nil {
		f.Fatal(err)
	}
	globex := scope.Identity{Org: "globex", User: "bob", Permissions: scope.AllPermissions}
	v, err := builtin.Embed(f.Context(), []string{"globex's own memory"})
	if err != nil {
		f.Fatal(err)
	}
	theirs, err := st.Add(f.Context(), globex, []store.NewMemory{{Scope: scope.Scope{Kind: scope.KindOrg}, Content: "globex's own memory", Vector: v[0]}})
	if err != nil {
		f.Fatal(err)
	}
	// The same line, with globex's id: import must refuse it, not move
	// the memory to acme.
	f.Add(strings.Replace(importSeeds[0], "0196b4a4-6c1b-7a3e-9d3c-5f2e8b7a1c00", theirs[0].ID, 1))
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { raw.Close() })
	acme, err := operator("acme", "ops")
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, line string) {
		ctx := t.Context()
		rep, err := importLines(ctx, st, strings.NewReader(line), importOptions{Org: "acme", As: "ops", Embedder: builtinEmbedder})
		if err != nil {
			t.Fatalf("import of %q failed as a whole: %v", line, err)
		}
		for _, b := range rep.Bad {
			if !errors.Is(b.Err, store.ErrInvalid) && !errors.Is(b.Err, store.ErrConflict) {
				t.Fatalf("import of %q: line %d refused with %v, which wraps neither ErrInvalid nor ErrConflict", line, b.Line, b.Err)
			}
		}
		// Straight to Import, without the --org check: a record of another
		// org must be refused.
		run := &importRun{opts: importOptions{As: "ops"}, info: info, have: true}
		if p, err := run.parse(ctx, 1, bytes.TrimSpace([]byte(line))); err == nil {
			rec := p.rec
			if p.embed {
				vs, err := builtin.Embed(ctx, []string{rec.Content})
				if err != nil {
					return
				}
				rec.Vector = vs[0]
			}
			_, err := st.Import(ctx, acme, []store.Record{rec})
			if err == nil && rec.Org != "acme" {
				t.Fatalf("Import as an admin of acme stored a record of org %q", rec.Org)
			}
		}
		var others int
		if err := raw.QueryRowContext(ctx, `SELECT count(*) FROM memories WHERE org_id NOT IN ('acme', 'globex')`).Scan(&others); err != nil {
			t.Fatal(err)
		}
		if others != 0 {
			t.Fatalf("after importing %q, %d memories are of an org other than acme", line, others)
		}
		var n int
		var content string
		if err := raw.QueryRowContext(ctx, `SELECT count(*), max(content) FROM memories WHERE org_id = 'globex'`).Scan(&n, &content); err != nil {
			t.Fatal(err)
		}
		if n != 1 || content != "globex's own memory" {
			t.Fatalf("after importing %q, globex holds %d memories (content %q), want its one memory untouched", line, n, content)
		}
		var org string
		if err := raw.QueryRowContext(ctx, `SELECT org_id FROM memories WHERE id = ?`, theirs[0].ID).Scan(&org); err != nil || org != "globex" {
			t.Fatalf("after importing %q, globex's memory %s is of org %q (%v)", line, theirs[0].ID, org, err)
		}
	})
}
