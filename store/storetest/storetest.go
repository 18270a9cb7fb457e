package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// Dims is the vector dimension the suite uses.
const Dims = 16

// EmbedderInfo is what the suite records with SetEmbedder on every store it
// opens, so that every backend sees vectors of [Dims] dimensions. Treat it
// as a constant.
var EmbedderInfo = store.EmbedderInfo{Provider: "storetest", Model: "content-hash", Dimensions: Dims}

// Run runs the whole store contract against the backend that open returns.
// open must return a fresh, empty store on every call and arrange its own
// cleanup (Close, removing files or schemas) with t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		run  func(*testing.T, func(*testing.T) store.Store)
	}{
		{"Embedder", testEmbedder},
		{"Add", testAdd},
		{"AddDuplicates", testAddDuplicates},
		{"AddInvalid", testAddInvalid},
		{"Search", testSearch},
		{"SearchCollapse", testSearchCollapse},
		{"SearchQueryText", testSearchQueryText},
		{"Expiry", testExpiry},
		{"Get", testGet},
		{"Update", testUpdate},
		{"UpdateDeleteAccess", testUpdateDeleteAccess},
		{"ListScopes", testListScopes},
		{"Purge", testPurge},
		{"DeleteExpired", testDeleteExpired},
		{"Concurrency", testConcurrency},
		{"CrossTenantProbe", testProbe},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, open) })
	}
}

// Vector returns a deterministic unit vector of dims dimensions for text.
// Texts with the same [store.NormalizeContent] get the same vector; other
// texts get vectors that are, for practical purposes, never near-duplicates.
func Vector(text string, dims int) []float32 {
	h := fnv.New64a()
	h.Write([]byte(store.NormalizeContent(text)))
	return RandomVector(h.Sum64(), dims)
}

// RandomVector returns a unit vector of dims dimensions drawn from seed with
// coordinates spread over every direction. The same seed gives the same
// vector.
func RandomVector(seed uint64, dims int) []float32 {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	v := make([]float32, dims)
	var sum float64
	for i := range v {
		f := r.NormFloat64()
		v[i] = float32(f)
		sum += f * f
	}
	if sum == 0 {
		v[0], sum = 1, 1
	}
	inv := float32(1 / math.Sqrt(sum))
	for i := range v {
		v[i] *= inv
	}
	return v
}

// Mix returns the unit vector along a + w*b. With a small w the result is a
// near-duplicate of a; with w near 1 it is not.
func Mix(a, b []float32, w float32) []float32 {
	v := make([]float32, len(a))
	var sum float64
	for i := range v {
		v[i] = a[i] + w*b[i]
		sum += float64(v[i]) * float64(v[i])
	}
	inv := float32(1 / math.Sqrt(sum))
	for i := range v {
		v[i] *= inv
	}
	return v
}

// Member returns an identity of user in org, in the given teams, with every
// permission but memory:admin.
func Member(org, user string, teams ...string) scope.Identity {
	return scope.Identity{Org: org, User: user, Teams: teams, Permissions: []scope.Permission{
		scope.PermRead, scope.PermWrite, scope.PermShare, scope.PermPurge}}
}

// Admin returns an identity of user in org, in the given teams, with
// memory:admin.
func Admin(org, user string, teams ...string) scope.Identity {
	return scope.Identity{Org: org, User: user, Teams: teams, Permissions: []scope.Permission{scope.PermAdmin}}
}

// Reader returns an identity of user in org, in the given teams, that may
// only read.
func Reader(org, user string, teams ...string) scope.Identity {
	return scope.Identity{Org: org, User: user, Teams: teams, Permissions: []scope.Permission{scope.PermRead}}
}

// Owner returns a read-only identity of org that can see s: the user,
// agent or session a scope id names, or a member of the team.
func Owner(org string, s scope.Scope) scope.Identity {
	id := scope.Identity{Org: org, User: "storetest-reader", Permissions: []scope.Permission{scope.PermRead}}
	switch s.Kind {
	case scope.KindSession:
		id.User, id.Session, _ = strings.Cut(s.ID, "/")
	case scope.KindAgent:
		id.User, id.Agent, _ = strings.Cut(s.ID, "/")
	case scope.KindUser:
		id.User = s.ID
	case scope.KindTeam:
		id.Teams = []string{s.ID}
	}
	return id
}

// New returns a memory to add in s with content, tags and the content's
// [Vector] of [Dims] dimensions.
func New(s scope.Scope, content string, tags ...string) store.NewMemory {
	return store.NewMemory{Scope: s, Content: content, Tags: tags, Vector: Vector(content, Dims)}
}

var corpusWords = strings.Fields(`alpha beta gamma delta deploy build release api team user
	oauth token database index query search memory vector cache session agent review merge
	branch commit test bench latency error retry timeout network proxy config secret key
	policy audit log metric trace span service client server request response schema table
	column migration backup restore replica shard tenant org project roadmap deadline meeting
	friday monday lunch coffee editor theme dark light mode font keyboard shortcut terminal
	shell script python golang rust docker kubernetes helm chart grafana alert oncall pager
	incident postmortem customer invoice billing plan quota limit feature flag rollout canary`)

// Corpus returns n memories for s with varied, distinct content drawn from
// seed and random vectors of dims dimensions, for benchmarks and recall
// tests.
func Corpus(n, dims int, s scope.Scope, seed uint64) []store.NewMemory {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]store.NewMemory, n)
	for i := range out {
		var b strings.Builder
		fmt.Fprintf(&b, "memory %d:", i)
		for range 6 + r.IntN(10) {
			b.WriteByte(' ')
			b.WriteString(corpusWords[r.IntN(len(corpusWords))])
		}
		out[i] = store.NewMemory{
			Scope:   s,
			Content: b.String(),
			Tags:    []string{corpusWords[r.IntN(8)]},
			Vector:  RandomVector(seed*1_000_003+uint64(i), dims),
		}
	}
	return out
}

// open returns a fresh store with [EmbedderInfo] recorded.
func openStore(t *testing.T, open func(*testing.T) store.Store) store.Store {
	t.Helper()
	s := open(t)
	if err := s.SetEmbedder(t.Context(), EmbedderInfo); err != nil {
		t.Fatalf("SetEmbedder(%v) on a fresh store = %v, want nil", EmbedderInfo, err)
	}
	return s
}

// mustAdd adds ms for id and fails the test on error.
func mustAdd(t *testing.T, s store.Store, id scope.Identity, ms ...store.NewMemory) []store.Added {
	t.Helper()
	got, err := s.Add(t.Context(), id, ms)
	if err != nil {
		t.Fatalf("Add(%s/%s, %d memories) = %v, want nil", id.Org, id.User, len(ms), err)
	}
	if len(got) != len(ms) {
		t.Fatalf("Add(%s/%s, %d memories) returned %d results", id.Org, id.User, len(ms), len(got))
	}
	return got
}

// mustAddOne adds one memory and returns it.
func mustAddOne(t *testing.T, s store.Store, id scope.Identity, m store.NewMemory) store.Memory {
	t.Helper()
	return mustAdd(t, s, id, m)[0].Memory
}

// memoryOpts compares memories: times to the millisecond, metadata as JSON
// values, tags as sets.
var memoryOpts = cmp.Options{
	cmp.Comparer(func(a, b time.Time) bool {
		d := a.Sub(b)
		return d < time.Millisecond && d > -time.Millisecond
	}),
	cmp.Transformer("jsonValue", func(r json.RawMessage) any {
		if len(r) == 0 {
			return nil
		}
		var v any
		if err := json.Unmarshal(r, &v); err != nil {
			return "invalid JSON: " + string(r)
		}
		return v
	}),
	cmpopts.SortSlices(func(a, b string) bool { return a < b }),
	cmp.FilterPath(func(p cmp.Path) bool { return p.Last().Type() == reflect.TypeFor[[]string]() }, cmpopts.EquateEmpty()),
}

// searchIDs runs q and returns the hit ids, checking every hit is visible
// to id and that scores do not increase.
func search(t *testing.T, s store.Store, id scope.Identity, q store.Query) []store.Hit {
	t.Helper()
	hits, err := s.Search(t.Context(), id, q)
	if err != nil {
		t.Fatalf("Search(%s/%s, text %q) = %v, want nil", id.Org, id.User, q.Text, err)
	}
	checkHits(t, id, q, hits)
	return hits
}

// checkHits checks what every result of a search must satisfy.
func checkHits(t *testing.T, id scope.Identity, q store.Query, hits []store.Hit) {
	t.Helper()
	limit := q.Limit
	if limit == 0 {
		limit = store.DefaultLimit
	}
	if len(hits) > limit {
		t.Errorf("Search(limit %d) returned %d hits", q.Limit, len(hits))
	}
	for i, h := range hits {
		if h.Org != id.Org || !id.CanSee(h.Scope) {
			t.Errorf("Search by %s/%s returned memory %s of org %q scope %s: not visible to the caller",
				id.Org, id.User, h.ID, h.Org, h.Scope.Qualified())
		}
		if q.Scopes != nil && !slices.Contains(q.Scopes, h.Scope) {
			t.Errorf("Search(scopes %v) returned a hit in scope %s", q.Scopes, h.Scope.Qualified())
		}
		for _, tag := range q.Tags {
			if !slices.Contains(h.Tags, tag) {
				t.Errorf("Search(tags %v) returned %s with tags %v", q.Tags, h.ID, h.Tags)
			}
		}
		if h.Score < q.MinScore {
			t.Errorf("Search(min score %v) returned a hit scoring %v", q.MinScore, h.Score)
		}
		if i > 0 && h.Score > hits[i-1].Score {
			t.Errorf("Search hits are not best first: hit %d scores %v after %v", i, h.Score, hits[i-1].Score)
		}
	}
}

// hitIDs returns the ids of hits, sorted.
func hitIDs(hits []store.Hit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.ID
	}
	sort.Strings(out)
	return out
}

// sorted returns ids sorted.
func sorted(ids ...string) []string {
	out := slices.Clone(ids)
	sort.Strings(out)
	return out
}

// wantGet checks that owner can get m and sees exactly m.
func wantGet(t *testing.T, s store.Store, owner scope.Identity, m store.Memory) {
	t.Helper()
	got, err := s.Get(t.Context(), owner, m.ID)
	if err != nil {
		t.Errorf("Get(%s/%s, %s) = %v, want the memory %q", owner.Org, owner.User, m.ID, err, m.Content)
		return
	}
	if diff := cmp.Diff(m, got, memoryOpts); diff != "" {
		t.Errorf("Get(%s/%s, %s) mismatch (-want +got):\n%s", owner.Org, owner.User, m.ID, diff)
	}
}

// wantGone checks that Get of memoryID by owner returns ErrNotFound.
func wantGone(t *testing.T, s store.Store, owner scope.Identity, memoryID string) {
	t.Helper()
	if _, err := s.Get(t.Context(), owner, memoryID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(%s/%s, %s) = %v, want ErrNotFound", owner.Org, owner.User, memoryID, err)
	}
}

// countScopes returns ListScopes as a map of qualified name to count.
func countScopes(t *testing.T, s store.Store, id scope.Identity) map[string]int {
	t.Helper()
	infos, err := s.ListScopes(t.Context(), id)
	if err != nil {
		t.Fatalf("ListScopes(%s/%s) = %v", id.Org, id.User, err)
	}
	out := map[string]int{}
	for _, in := range infos {
		out[in.Scope.Qualified()] = in.Count
	}
	return out
}

// nonZero drops zero counts so that a backend may report or omit them.
func nonZero(c map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range c {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// ctx is shorthand for the test's context.
func ctx(t *testing.T) context.Context { return t.Context() }
