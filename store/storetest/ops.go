package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// OpsStores is what [RunOps] opens for each test: two handles on one fresh,
// empty store. Tenant serves tenants (on PostgreSQL: the runtime role);
// Operator is the operator's (on PostgreSQL: the owner's). A backend without
// roles may return the same store twice.
type OpsStores struct {
	Tenant, Operator store.Store
}

// RunOps runs the contract of the optional operator interfaces
// ([store.Exporter], [store.Importer], [store.Reindexer]) against the
// backend open returns. Export and import run on the tenant handle, as an
// org admin; reindex on the operator handle. open must return a fresh,
// empty store on every call and arrange its own cleanup.
func RunOps(t *testing.T, open func(t *testing.T) OpsStores) {
	t.Helper()
	tests := []struct {
		name string
		run  func(*testing.T, func(*testing.T) OpsStores)
	}{
		{"Export", testExport},
		{"ImportRoundTrip", testImportRoundTrip},
		{"ImportInvalid", testImportInvalid},
		{"Reindex", testReindex},
		{"ReindexRestart", testReindexRestart},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, open) })
	}
}

// openOps opens the stores and records [EmbedderInfo].
func openOps(t *testing.T, open func(*testing.T) OpsStores) OpsStores {
	t.Helper()
	ss := open(t)
	if err := ss.Tenant.SetEmbedder(t.Context(), EmbedderInfo); err != nil {
		t.Fatalf("SetEmbedder(%v) on a fresh store = %v, want nil", EmbedderInfo, err)
	}
	return ss
}

func exporter(t *testing.T, s store.Store) store.Exporter {
	t.Helper()
	ex, ok := s.(store.Exporter)
	if !ok {
		t.Fatalf("%T does not implement store.Exporter", s)
	}
	return ex
}

func importer(t *testing.T, s store.Store) store.Importer {
	t.Helper()
	im, ok := s.(store.Importer)
	if !ok {
		t.Fatalf("%T does not implement store.Importer", s)
	}
	return im
}

func reindexer(t *testing.T, s store.Store) store.Reindexer {
	t.Helper()
	r, ok := s.(store.Reindexer)
	if !ok {
		t.Fatalf("%T does not implement store.Reindexer", s)
	}
	return r
}

// exportAll collects an export.
func exportAll(t *testing.T, s store.Store, id scope.Identity, f store.ExportFilter) ([]store.Record, error) {
	t.Helper()
	var out []store.Record
	err := exporter(t, s).Export(t.Context(), id, f, func(r store.Record) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

// opsFixture adds memories in every kind of scope of two orgs and returns
// them by org.
func opsFixture(t *testing.T, s store.Store) map[string][]store.Memory {
	t.Helper()
	out := map[string][]store.Memory{}
	exp := time.Now().Add(-time.Hour)
	for _, org := range []string{"acme", "globex"} {
		alice := scope.Identity{Org: org, User: "alice", Teams: []string{"api"}, Agent: "coder", Session: "s1",
			Permissions: scope.AllPermissions[:4]}
		bob := Member(org, "bob", "api")
		for _, m := range []store.NewMemory{
			New(scope.Scope{Kind: scope.KindUser, ID: "alice"}, org+" alice prefers dark mode", "ui"),
			New(scope.Scope{Kind: scope.KindAgent, ID: "alice/coder"}, org+" the coder agent uses gofmt"),
			New(scope.Scope{Kind: scope.KindSession, ID: "alice/s1"}, org+" scratch note for this run"),
			New(scope.Scope{Kind: scope.KindTeam, ID: "api"}, org+" the api team deploys on fridays", "deploy", "team"),
			New(scope.Scope{Kind: scope.KindOrg}, org+" all apis use oauth2"),
		} {
			out[org] = append(out[org], mustAddOne(t, s, alice, m))
		}
		withMeta := New(scope.Scope{Kind: scope.KindUser, ID: "bob"}, org+" bob is on call this week")
		withMeta.Metadata = []byte(`{"source":"pager","n":3}`)
		withMeta.ExpiresAt = &exp // expired: export keeps it
		out[org] = append(out[org], mustAddOne(t, s, bob, withMeta))
		// alicex shares alice's prefix: a user export of alice must not
		// include her.
		out[org] = append(out[org], mustAddOne(t, s, Member(org, "alicex"),
			New(scope.Scope{Kind: scope.KindUser, ID: "alicex"}, org+" alicex likes tea")))
	}
	return out
}

func ids(ms []store.Memory) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	slices.Sort(out)
	return out
}

func recordIDs(rs []store.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func testExport(t *testing.T, open func(*testing.T) OpsStores) {
	ss := openOps(t, open)
	fixture := opsFixture(t, ss.Tenant)
	acme := fixture["acme"]
	team := scope.Scope{Kind: scope.KindTeam, ID: "api"}
	tests := []struct {
		name    string
		id      scope.Identity
		filter  store.ExportFilter
		want    []string
		wantErr error
	}{
		{"whole org", Admin("acme", "ops"), store.ExportFilter{}, ids(acme), nil},
		{"one user's own scopes", Admin("acme", "ops"), store.ExportFilter{User: "alice"}, ids(acme[:3]), nil},
		{"one scope", Admin("acme", "ops"), store.ExportFilter{Scope: &team}, ids(acme[3:4]), nil},
		{"other org's admin", Admin("globex", "ops"), store.ExportFilter{User: "alice"}, ids(fixture["globex"][:3]), nil},
		{"unknown org", Admin("initech", "ops"), store.ExportFilter{}, []string{}, nil},
		{"not an admin", Member("acme", "alice", "api"), store.ExportFilter{}, nil, scope.ErrForbidden},
		{"user and scope", Admin("acme", "ops"), store.ExportFilter{User: "alice", Scope: &team}, nil, store.ErrInvalid},
		{"malformed user", Admin("acme", "ops"), store.ExportFilter{User: "a/b"}, nil, store.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := exportAll(t, ss.Tenant, tc.id, tc.filter)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Export(%s, %+v) = %v, want %v", tc.id.Org, tc.filter, err, tc.wantErr)
			}
			if tc.wantErr != nil {
				return
			}
			gotIDs := recordIDs(got)
			if !slices.IsSorted(gotIDs) {
				t.Errorf("Export(%s) ids %v are not in id order", tc.id.Org, gotIDs)
			}
			if diff := cmp.Diff(tc.want, gotIDs, memoryOpts); diff != "" {
				t.Errorf("Export(%s, %+v) ids mismatch (-want +got):\n%s", tc.id.Org, tc.filter, diff)
			}
			for _, r := range got {
				if r.Org != tc.id.Org {
					t.Errorf("Export(%s) returned memory %s of org %s", tc.id.Org, r.ID, r.Org)
				}
				if r.Vector != nil {
					t.Errorf("Export without Vectors returned a vector for %s", r.ID)
				}
			}
		})
	}
	t.Run("records", func(t *testing.T) {
		got, err := exportAll(t, ss.Tenant, Admin("acme", "ops"), store.ExportFilter{Vectors: true})
		if err != nil {
			t.Fatalf("Export(vectors) = %v", err)
		}
		want := slices.Clone(acme)
		slices.SortFunc(want, func(a, b store.Memory) int { return cmpString(a.ID, b.ID) })
		gotMems := make([]store.Memory, len(got))
		for i, r := range got {
			gotMems[i] = r.Memory
			if r.Embedder != EmbedderInfo || len(r.Vector) != Dims {
				t.Errorf("Export(vectors) record %s: embedder %v, %d dims; want %v, %d", r.ID, r.Embedder, len(r.Vector), EmbedderInfo, Dims)
				continue
			}
			if sim := store.Dot(r.Vector, Vector(r.Content, Dims)); sim < 0.999 {
				t.Errorf("Export(vectors) record %s: vector similarity to the added one %v, want 1", r.ID, sim)
			}
		}
		if diff := cmp.Diff(want, gotMems, memoryOpts); diff != "" {
			t.Errorf("Export(vectors) memories mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("callback error stops", func(t *testing.T) {
		stop := errors.New("stop")
		n := 0
		err := exporter(t, ss.Tenant).Export(t.Context(), Admin("acme", "ops"), store.ExportFilter{}, func(store.Record) error {
			n++
			return stop
		})
		if !errors.Is(err, stop) || n != 1 {
			t.Errorf("Export with a failing callback = %v after %d calls, want stop after 1", err, n)
		}
	})
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func testImportRoundTrip(t *testing.T, open func(*testing.T) OpsStores) {
	src := openOps(t, open)
	opsFixture(t, src.Tenant)
	admin := Admin("acme", "ops")
	exported, err := exportAll(t, src.Tenant, admin, store.ExportFilter{Vectors: true})
	if err != nil {
		t.Fatalf("Export = %v", err)
	}
	dst := openOps(t, open)
	im := importer(t, dst.Tenant)
	for round, want := range []store.ImportOutcome{store.Imported, store.AlreadyPresent} {
		in := make([]store.Record, len(exported))
		for i, r := range exported {
			in[i] = r
			in[i].Vector = slices.Clone(r.Vector)
		}
		got, err := im.Import(t.Context(), admin, in)
		if err != nil {
			t.Fatalf("Import round %d = %v, want nil", round+1, err)
		}
		for i, o := range got {
			if o != want {
				t.Errorf("Import round %d record %d (%s) = %v, want %v", round+1, i, in[i].ID, o, want)
			}
		}
	}
	again, err := exportAll(t, dst.Tenant, admin, store.ExportFilter{Vectors: true})
	if err != nil {
		t.Fatalf("Export after import = %v", err)
	}
	vecOpt := cmp.Comparer(func(a, b []float32) bool {
		return len(a) == len(b) && (len(a) == 0 || store.Dot(a, b) > 0.9999)
	})
	if diff := cmp.Diff(exported, again, memoryOpts, vecOpt); diff != "" {
		t.Errorf("export, import, export is not a round trip (-first +second):\n%s", diff)
	}
	// The imported memories serve their owners as if added there.
	for _, r := range again {
		if r.ExpiresAt != nil {
			continue
		}
		wantGet(t, dst.Tenant, Owner("acme", r.Scope), r.Memory)
	}
	hits := search(t, dst.Tenant, Member("acme", "alice", "api"), store.Query{Text: "fridays deploy", Vector: Vector("acme the api team deploys on fridays", Dims)})
	if len(hits) == 0 || hits[0].Content != "acme the api team deploys on fridays" {
		t.Errorf("Search after import: %d hits, want the team memory first", len(hits))
	}
	if got, _ := exportAll(t, dst.Tenant, Admin("globex", "ops"), store.ExportFilter{}); len(got) != 0 {
		t.Errorf("Export(globex) after importing acme returned %d memories, want 0", len(got))
	}
}

func testImportInvalid(t *testing.T, open func(*testing.T) OpsStores) {
	ss := openOps(t, open)
	admin := Admin("acme", "ops")
	good := func() store.Record {
		now := time.Now().UTC()
		return store.Record{Memory: store.Memory{
			ID: "0190b6a2-7c4e-7d3f-9a1b-2c3d4e5f6a7b", Org: "acme", Scope: scope.Scope{Kind: scope.KindTeam, ID: "api"},
			Content: "imported fact", CreatedBy: "carol", CreatedAt: now, UpdatedAt: now,
		}, Vector: Vector("imported fact", Dims)}
	}
	tests := []struct {
		name    string
		id      scope.Identity
		mod     func(*store.Record)
		wantErr error
	}{
		{"not an admin", Member("acme", "carol", "api"), func(*store.Record) {}, scope.ErrForbidden},
		{"other org", admin, func(r *store.Record) { r.Org = "globex" }, store.ErrInvalid},
		{"id not a uuid", admin, func(r *store.Record) { r.ID = "m1" }, store.ErrInvalid},
		{"unknown scope kind", admin, func(r *store.Record) { r.Scope.Kind = "project" }, store.ErrInvalid},
		{"agent scope without user", admin, func(r *store.Record) { r.Scope = scope.Scope{Kind: scope.KindAgent, ID: "coder"} }, store.ErrInvalid},
		{"blank content", admin, func(r *store.Record) { r.Content = " " }, store.ErrInvalid},
		{"no author", admin, func(r *store.Record) { r.CreatedBy = "" }, store.ErrInvalid},
		{"no times", admin, func(r *store.Record) { r.CreatedAt = time.Time{} }, store.ErrInvalid},
		{"metadata array", admin, func(r *store.Record) { r.Metadata = []byte(`[1]`) }, store.ErrInvalid},
		{"wrong dims", admin, func(r *store.Record) { r.Vector = Vector("x", Dims+1) }, store.ErrInvalid},
		{"no vector", admin, func(r *store.Record) { r.Vector = nil }, store.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, bad := good(), good()
			ok.ID = "0190b6a2-7c4e-7d3f-9a1b-000000000001"
			tc.mod(&bad)
			_, err := importer(t, ss.Tenant).Import(t.Context(), tc.id, []store.Record{ok, bad})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Import(%s) = %v, want %v", tc.name, err, tc.wantErr)
			}
			var re *store.RecordError
			if tc.wantErr == store.ErrInvalid && (!errors.As(err, &re) || re.Index != 1) {
				t.Errorf("Import(%s) = %v, want a *store.RecordError for record 1", tc.name, err)
			}
			if got, _ := exportAll(t, ss.Tenant, admin, store.ExportFilter{}); len(got) != 0 {
				t.Errorf("a refused import batch stored %d memories, want 0", len(got))
			}
		})
	}
}

// reindexAll stages a vector of dims dimensions for every pending memory,
// returning how many it staged.
func reindexAll(t *testing.T, r store.Reindexer, dims, batch int) int {
	t.Helper()
	n := 0
	var after *store.ReindexItem
	for {
		items, err := r.ReindexPending(t.Context(), after, batch)
		if err != nil {
			t.Fatalf("ReindexPending = %v", err)
		}
		if len(items) == 0 {
			return n
		}
		vs := make([]store.StagedVector, len(items))
		for i, it := range items {
			vs[i] = store.StagedVector{Org: it.Org, ID: it.ID, Hash: it.Hash, Vector: Vector(it.Content, dims)}
		}
		if err := r.StageVectors(t.Context(), vs); err != nil {
			t.Fatalf("StageVectors = %v", err)
		}
		n += len(items)
		after = &items[len(items)-1]
	}
}

func testReindex(t *testing.T, open func(*testing.T) OpsStores) {
	ss := openOps(t, open)
	fixture := opsFixture(t, ss.Tenant)
	total := len(fixture["acme"]) + len(fixture["globex"])
	r := reindexer(t, ss.Operator)
	target := store.EmbedderInfo{Provider: "storetest", Model: "small", Dimensions: 8}
	alice := Member("acme", "alice", "api")

	if _, err := r.ReindexPending(t.Context(), nil, 10); !errors.Is(err, store.ErrNoReindex) {
		t.Errorf("ReindexPending before BeginReindex = %v, want ErrNoReindex", err)
	}
	if err := r.CommitReindex(t.Context()); !errors.Is(err, store.ErrNoReindex) {
		t.Errorf("CommitReindex before BeginReindex = %v, want ErrNoReindex", err)
	}
	if _, err := r.BeginReindex(t.Context(), store.EmbedderInfo{Provider: "x", Model: "y"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("BeginReindex(no dimensions) = %v, want ErrInvalid", err)
	}
	st, err := r.BeginReindex(t.Context(), target)
	if err != nil {
		t.Fatalf("BeginReindex = %v", err)
	}
	if !st.Active || st.Target != target || st.Total != total || st.Done != 0 {
		t.Errorf("BeginReindex = %+v, want active, target %v, total %d, done 0", st, target, total)
	}
	// Stage the first three, in batches of two.
	items, err := r.ReindexPending(t.Context(), nil, 2)
	if err != nil || len(items) != 2 {
		t.Fatalf("ReindexPending(2) = %d items, %v", len(items), err)
	}
	more, err := r.ReindexPending(t.Context(), &items[1], 1)
	if err != nil || len(more) != 1 || more[0].ID == items[0].ID || more[0].ID == items[1].ID {
		t.Fatalf("ReindexPending(after) = %v, %v: want one item after the first two", more, err)
	}
	items = append(items, more...)
	vs := make([]store.StagedVector, len(items))
	for i, it := range items {
		vs[i] = store.StagedVector{Org: it.Org, ID: it.ID, Hash: it.Hash, Vector: Vector(it.Content, 8)}
	}
	if err := r.StageVectors(t.Context(), []store.StagedVector{{Org: vs[0].Org, ID: vs[0].ID, Hash: vs[0].Hash, Vector: Vector("x", 9)}}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("StageVectors(wrong dims) = %v, want ErrInvalid", err)
	}
	if err := r.StageVectors(t.Context(), vs); err != nil {
		t.Fatalf("StageVectors = %v", err)
	}
	if st, err := r.ReindexStatus(t.Context()); err != nil || st.Done != 3 || st.Total != total {
		t.Errorf("ReindexStatus = %+v, %v; want 3 of %d done", st, err, total)
	}
	// Old vectors keep serving while the reindex runs.
	q := store.Query{Text: "dark mode", Vector: Vector("acme alice prefers dark mode", Dims)}
	if hits := search(t, ss.Tenant, alice, q); len(hits) == 0 || hits[0].Similarity < 0.99 {
		t.Errorf("Search with the old embedder during a reindex: %d hits, want the memory by its vector", len(hits))
	}
	if err := r.CommitReindex(t.Context()); !errors.Is(err, store.ErrReindexPending) || !errors.Is(err, store.ErrConflict) {
		t.Errorf("CommitReindex with %d pending = %v, want ErrReindexPending", total-3, err)
	}
	if n := reindexAll(t, r, 8, 4); n != total-3 {
		t.Errorf("staged %d more, want %d", n, total-3)
	}
	// A memory added and one changed meanwhile are pending again.
	mustAddOne(t, ss.Tenant, alice, New(scope.Scope{Kind: scope.KindUser, ID: "alice"}, "acme alice added during the reindex"))
	newContent := "acme alice prefers light mode now"
	if _, err := ss.Tenant.Update(t.Context(), alice, fixture["acme"][0].ID, store.Patch{Content: &newContent, Vector: Vector(newContent, Dims)}); err != nil {
		t.Fatalf("Update = %v", err)
	}
	if err := ss.Tenant.Delete(t.Context(), alice, fixture["acme"][4].ID); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	if err := r.CommitReindex(t.Context()); !errors.Is(err, store.ErrReindexPending) {
		t.Errorf("CommitReindex after an add and an update = %v, want ErrReindexPending", err)
	}
	if n := reindexAll(t, r, 8, 100); n != 2 {
		t.Errorf("after an add and an update, %d memories were pending, want 2", n)
	}
	if err := r.CommitReindex(t.Context()); err != nil {
		t.Fatalf("CommitReindex = %v", err)
	}
	if got, ok, err := ss.Tenant.Embedder(t.Context()); err != nil || !ok || got != target {
		t.Errorf("Embedder after the reindex = %v, %v, %v; want %v", got, ok, err, target)
	}
	if st, err := r.ReindexStatus(t.Context()); err != nil || st.Active {
		t.Errorf("ReindexStatus after commit = %+v, %v; want inactive", st, err)
	}
	if _, err := r.ReindexPending(t.Context(), nil, 10); !errors.Is(err, store.ErrNoReindex) {
		t.Errorf("ReindexPending after commit = %v, want ErrNoReindex", err)
	}
	// Every memory now has the target's vector of its current content.
	for _, c := range []string{"acme alice added during the reindex", newContent, "acme the api team deploys on fridays"} {
		hits := search(t, ss.Tenant, alice, store.Query{Vector: Vector(c, 8), Limit: 1})
		if len(hits) != 1 || hits[0].Content != c || hits[0].Similarity < 0.999 {
			t.Errorf("Search by the new vector of %q = %v, want it first with similarity 1", c, hits)
		}
	}
	if _, err := ss.Tenant.Search(t.Context(), alice, store.Query{Vector: Vector("x", Dims)}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Search with an old-size vector after the reindex = %v, want ErrInvalid", err)
	}
	// Adds follow the new embedder too, on a handle that added before.
	after := "acme alice added after the reindex"
	aliceScope := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	if _, err := ss.Tenant.Add(t.Context(), alice, []store.NewMemory{New(aliceScope, after)}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Add with an old-size vector after the reindex = %v, want ErrInvalid", err)
	}
	mustAddOne(t, ss.Tenant, alice, store.NewMemory{Scope: aliceScope, Content: after, Vector: Vector(after, 8)})
	got, err := exportAll(t, ss.Tenant, Admin("acme", "ops"), store.ExportFilter{Vectors: true})
	if err != nil {
		t.Fatalf("Export = %v", err)
	}
	for _, rec := range got {
		if rec.Embedder != target || store.Dot(rec.Vector, Vector(rec.Content, 8)) < 0.999 {
			t.Errorf("memory %s after the reindex: embedder %v, want %v with its content's vector", rec.ID, rec.Embedder, target)
		}
	}
}

func testReindexRestart(t *testing.T, open func(*testing.T) OpsStores) {
	ss := openOps(t, open)
	opsFixture(t, ss.Tenant)
	r := reindexer(t, ss.Operator)
	a := store.EmbedderInfo{Provider: "storetest", Model: "a", Dimensions: 8}
	b := store.EmbedderInfo{Provider: "storetest", Model: "b", Dimensions: 4}
	if _, err := r.BeginReindex(t.Context(), a); err != nil {
		t.Fatalf("BeginReindex(a) = %v", err)
	}
	staged := reindexAll(t, r, 8, 3)
	tests := []struct {
		name     string
		target   store.EmbedderInfo
		wantDone int
	}{
		{"same target resumes", a, staged},
		{"other target starts over", b, 0},
	}
	for _, tc := range tests {
		st, err := r.BeginReindex(t.Context(), tc.target)
		if err != nil || st.Done != tc.wantDone || st.Target != tc.target {
			t.Errorf("%s: BeginReindex = %+v, %v; want %d done toward %v", tc.name, st, err, tc.wantDone, tc.target)
		}
	}
	if err := r.AbortReindex(t.Context()); err != nil {
		t.Fatalf("AbortReindex = %v", err)
	}
	if st, err := r.ReindexStatus(t.Context()); err != nil || st.Active {
		t.Errorf("ReindexStatus after abort = %+v, %v; want inactive", st, err)
	}
	if got, _, err := ss.Tenant.Embedder(t.Context()); err != nil || got != EmbedderInfo {
		t.Errorf("Embedder after abort = %v, %v; want %v kept", got, err, EmbedderInfo)
	}
}
