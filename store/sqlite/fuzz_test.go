package sqlite_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/storetest"
)

// splitTags reads a fuzzed comma-separated tag list; "" is no tags.
func splitTags(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// FuzzSearchFilter fuzzes the filters of a search (text, tags, one scope,
// limit, minimum score, with or without a vector) and the tags and
// metadata of a memory added just before, on a store holding the same
// users, teams, contents and tags in two orgs. A search never returns a
// memory of another org or of a scope the caller cannot see, or outside
// the scope asked for, or lacking an asked tag, or more hits than the
// limit; the other org never finds the added memory; and every refusal,
// of the add or of the search, wraps store.ErrInvalid.
func FuzzSearchFilter(f *testing.F) {
	type seed struct {
		text, tags, kind, id string
		limit                int
		minScore             float64
		vector               bool
		addTags, addMeta     string
	}
	for _, s := range []seed{
		{"deploys on Fridays", "deploy", "", "", 10, 0, true, "deploy,api", `{"src":"chat"}`},
		{"deploys", "deploy,api", "team", "api", 5, 0.1, false, "", ""},
		{"reviews", "", "user", "alice", 100, 0, true, "x", `{"n":1}`},
		{"dark mode", "", "user", "bob", 0, 0, true, "", "null"},   // another user's scope
		{"dark mode", "", "team", "web", 0, 0, false, "", ""},      // a team the caller is not in
		{"dark mode", "", "org", "", 0, 0, true, "", `[1,2]`},      // metadata not an object
		{"x", "deploy", "session", "alice/s1", 1, 1, true, "", ""}, // min score 1
		{"", "", "", "", 10, 0, false, "", ""},                     // nothing to search for
		{"deploys", "", "", "", -1, 0, true, "", ""},               // bad limit
		{"deploys", "", "", "", 101, 0, true, "", ""},
		{"deploys", "", "", "", 10, math.NaN(), true, "", ""},
		{"deploys", ",", "", "", 10, 0, true, ",,", `{"a":`},
		{"\x00\xff", "\x00", "agent", "alice/coder", 10, 0, true, "\xff", `{"\u0000":1}`},
		{"deploys", "", "user", "alice:x", 10, 0, true, "", ""},
		{"deploys", "", "project", "x", 10, 0, true, "", ""},
	} {
		f.Add(s.text, s.tags, s.kind, s.id, s.limit, s.minScore, s.vector, s.addTags, s.addMeta)
	}
	s := openTemp(f)
	setEmbedder(f, s)
	acme := scope.Identity{Org: "acme", User: "alice", Teams: []string{"api"}, Agent: "coder", Session: "s1", Permissions: scope.AllPermissions}
	// The same names in another org: only the org tells them apart.
	globex := acme
	globex.Org = "globex"
	for _, id := range []scope.Identity{acme, globex} {
		var ms []store.NewMemory
		for i, sc := range id.Visible() {
			for j, content := range []string{"the API team deploys on Fridays", "alice prefers dark mode", "code reviews need two approvals"} {
				content = fmt.Sprintf("%s (%s %d %d)", content, id.Org, i, j)
				ms = append(ms, store.NewMemory{Scope: sc, Content: content, Tags: []string{"deploy", "api", fmt.Sprint("t", j)},
					Metadata: json.RawMessage(`{"org":"` + id.Org + `"}`), Vector: storetest.Vector(content, storetest.Dims)})
			}
		}
		if _, err := s.Add(f.Context(), id, ms); err != nil {
			f.Fatalf("seed %s: %v", id.Org, err)
		}
	}
	f.Fuzz(func(t *testing.T, text, tags, kind, scopeID string, limit int, minScore float64, vector bool, addTags, addMeta string) {
		ctx := t.Context()
		userScope := scope.Scope{Kind: scope.KindUser, ID: acme.User}
		content := "fuzz " + text
		var meta json.RawMessage
		if addMeta != "" {
			meta = json.RawMessage(addMeta)
		}
		added, err := s.Add(ctx, acme, []store.NewMemory{{Scope: userScope, Content: content, Tags: splitTags(addTags), Metadata: meta,
			Vector: storetest.Vector(content, storetest.Dims)}})
		addedID := ""
		switch {
		case err != nil && !errors.Is(err, store.ErrInvalid):
			t.Fatalf("Add(tags %q, metadata %q) error %v does not wrap ErrInvalid", addTags, addMeta, err)
		case err == nil && !added[0].Duplicate:
			addedID = added[0].ID
			defer func() {
				if err := s.Delete(ctx, acme, addedID); err != nil {
					t.Errorf("Delete(%s) = %v", addedID, err)
				}
			}()
			if added[0].Org != "acme" || added[0].Scope != userScope {
				t.Fatalf("Add stored %s in org %q scope %v, want acme %v", addedID, added[0].Org, added[0].Scope, userScope)
			}
		}
		q := store.Query{Text: text, Tags: splitTags(tags), Limit: limit, MinScore: minScore}
		if vector {
			q.Vector = storetest.Vector(text, storetest.Dims)
		}
		if kind != "" || scopeID != "" {
			q.Scopes = []scope.Scope{{Kind: scope.Kind(kind), ID: scopeID}}
		}
		for _, id := range []scope.Identity{acme, globex} {
			hits, err := s.Search(ctx, id, q)
			if err != nil {
				if !errors.Is(err, store.ErrInvalid) {
					t.Fatalf("Search(%s, %+v) error %v does not wrap ErrInvalid", id.Org, q, err)
				}
				continue
			}
			want := limit
			if want == 0 {
				want = store.DefaultLimit
			}
			if len(hits) > want {
				t.Fatalf("Search(%s, %+v) returned %d hits, over the limit %d", id.Org, q, len(hits), want)
			}
			for _, h := range hits {
				switch {
				case h.Org != id.Org:
					t.Fatalf("Search(%s, %+v) returned %s of org %q", id.Org, q, h.ID, h.Org)
				case !id.CanSee(h.Scope):
					t.Fatalf("Search(%s, %+v) returned %s of scope %v, which the caller cannot see", id.Org, q, h.ID, h.Scope)
				case q.Scopes != nil && !slices.Contains(q.Scopes, h.Scope):
					t.Fatalf("Search(%s, %+v) returned %s of scope %v, not one asked for", id.Org, q, h.ID, h.Scope)
				case id.Org != "acme" && h.ID == addedID:
					t.Fatalf("Search(%s, %+v) found %s, added to acme", id.Org, q, h.ID)
				}
				for _, tag := range q.Tags {
					if !slices.Contains(h.Tags, tag) {
						t.Fatalf("Search(%s, %+v) returned %s with tags %q, lacking %q", id.Org, q, h.ID, h.Tags, tag)
					}
				}
			}
		}
	})
}
