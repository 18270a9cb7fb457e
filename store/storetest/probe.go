package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// The probe's world. User names trip naive prefix and LIKE matching: "an"
// is a prefix of "ann", and "a_n" matches "ann" as a LIKE pattern.
var (
	probeOrgs     = []string{"o0", "o1", "o2", "o3", "o4"}
	probeUsers    = []string{"ann", "an", "a_n", "bob"}
	probeTeams    = []string{"t0", "t1", "t2"}
	probeAgents   = []string{"", "a0", "a1"}
	probeSessions = []string{"", "s0", "s1", "s2"}
	probeTags     = []string{"red", "green", "blue"}
)

// probeMem is the model's copy of one stored memory.
type probeMem struct {
	id, org string
	scope   scope.Scope
	content string
	tags    []string
}

// probe drives random operations against a store and a model of what it
// must hold.
type probe struct {
	t    *testing.T
	s    store.Store
	r    *rand.Rand
	mems map[string]*probeMem
	ids  []string // keys of mems, for random picks (may hold deleted ids)
	n    int      // content counter
	op   int
	last string // the operation under way, for failure messages
}

// probeSettings reads SCOPEMEM_PROBE_SEED and SCOPEMEM_PROBE_OPS.
func probeSettings(t *testing.T) (seed uint64, ops int) {
	seed = uint64(time.Now().UnixNano())
	if v := os.Getenv("SCOPEMEM_PROBE_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SCOPEMEM_PROBE_SEED=%q is not a number", v)
		}
		seed = s
	}
	ops = 3000
	if testing.Short() || raceEnabled {
		ops = 1000
	}
	if v := os.Getenv("SCOPEMEM_PROBE_OPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("SCOPEMEM_PROBE_OPS=%q is not a positive number", v)
		}
		ops = n
	}
	return seed, ops
}

func testProbe(t *testing.T, open func(*testing.T) store.Store) {
	seed, ops := probeSettings(t)
	p := &probe{t: t, s: openStore(t, open), r: rand.New(rand.NewPCG(seed, 7)), mems: map[string]*probeMem{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cross-tenant probe failed at operation %d (%s); rerun with SCOPEMEM_PROBE_SEED=%d SCOPEMEM_PROBE_OPS=%d", p.op, p.last, seed, ops)
		}
	})
	// Seed every org with some memories so that early reads have targets.
	for range 150 {
		p.add()
	}
	for p.op = 0; p.op < ops && !t.Failed(); p.op++ {
		switch x := p.r.IntN(100); {
		case x < 30:
			p.add()
		case x < 36:
			p.addDuplicate()
		case x < 40:
			p.addInvisible()
		case x < 62:
			p.search()
		case x < 74:
			p.get()
		case x < 82:
			p.update()
		case x < 89:
			p.delete()
		case x < 97:
			p.list()
		default:
			p.purge()
		}
		if p.op%500 == 499 {
			p.verifyAll()
		}
	}
	if !t.Failed() {
		p.verifyAll()
		p.verifyCounts()
	}
}

func (p *probe) pick(list []string) string { return list[p.r.IntN(len(list))] }

// identity returns a random caller: random org, user, teams, agent,
// session and permissions.
func (p *probe) identity() scope.Identity {
	id := scope.Identity{Org: p.pick(probeOrgs), User: p.pick(probeUsers), Agent: p.pick(probeAgents), Session: p.pick(probeSessions)}
	for _, tm := range probeTeams {
		if p.r.IntN(2) == 0 {
			id.Teams = append(id.Teams, tm)
		}
	}
	for _, pc := range []struct {
		perm scope.Permission
		pct  int
	}{{scope.PermRead, 90}, {scope.PermWrite, 85}, {scope.PermShare, 50}, {scope.PermPurge, 40}, {scope.PermAdmin, 8}} {
		if p.r.IntN(100) < pc.pct {
			id.Permissions = append(id.Permissions, pc.perm)
		}
	}
	return id
}

// near returns a random caller that sees m's scope half of the time.
func (p *probe) near(m *probeMem) scope.Identity {
	id := p.identity()
	if m == nil || p.r.IntN(2) == 0 {
		return id
	}
	id.Org = m.org
	switch m.scope.Kind {
	case scope.KindSession:
		id.User, id.Session, _ = strings.Cut(m.scope.ID, "/")
	case scope.KindAgent:
		id.User, id.Agent, _ = strings.Cut(m.scope.ID, "/")
	case scope.KindUser:
		id.User = m.scope.ID
	case scope.KindTeam:
		if !id.InTeam(m.scope.ID) {
			id.Teams = append(id.Teams, m.scope.ID)
		}
	}
	return id
}

// randomScope returns any scope of the world (visible to the caller or not).
func (p *probe) randomScope() scope.Scope {
	u := p.pick(probeUsers)
	switch p.r.IntN(5) {
	case 0:
		return scope.Scope{Kind: scope.KindSession, ID: u + "/" + p.pick(probeSessions[1:])}
	case 1:
		return scope.Scope{Kind: scope.KindAgent, ID: u + "/" + p.pick(probeAgents[1:])}
	case 2:
		return scope.Scope{Kind: scope.KindUser, ID: u}
	case 3:
		return scope.Scope{Kind: scope.KindTeam, ID: p.pick(probeTeams)}
	}
	return scope.Scope{Kind: scope.KindOrg}
}

// randomMem returns a random live memory of the model, or nil.
func (p *probe) randomMem() *probeMem {
	for range 10 {
		if len(p.ids) == 0 {
			return nil
		}
		i := p.r.IntN(len(p.ids))
		if m, ok := p.mems[p.ids[i]]; ok {
			return m
		}
		p.ids[i] = p.ids[len(p.ids)-1]
		p.ids = p.ids[:len(p.ids)-1]
	}
	return nil
}

func (p *probe) newContent() string {
	p.n++
	return fmt.Sprintf("q%d %s note about %s and %s", p.n, p.pick(corpusWords), p.pick(corpusWords), p.pick(corpusWords))
}

func (p *probe) tags() []string {
	var out []string
	for _, tg := range probeTags {
		if p.r.IntN(3) == 0 {
			out = append(out, tg)
		}
	}
	return out
}

func (p *probe) failf(format string, args ...any) {
	p.t.Helper()
	p.t.Errorf("op %d (%s): %s", p.op, p.last, fmt.Sprintf(format, args...))
}

// canSee reports whether id may read m.
func canSee(id scope.Identity, m *probeMem) bool { return m.org == id.Org && id.CanSee(m.scope) }

// canWrite reports whether id may change m.
func canWrite(id scope.Identity, m *probeMem) bool {
	return m.org == id.Org && id.CanWrite(m.scope) == nil
}

func who(id scope.Identity) string {
	return fmt.Sprintf("%s/%s teams=%v agent=%q session=%q perms=%v", id.Org, id.User, id.Teams, id.Agent, id.Session, id.Permissions)
}

// checkMemory checks that what the store returned for id is a memory the
// model holds, visible to id, and unchanged.
func (p *probe) checkMemory(id scope.Identity, got store.Memory, what string) {
	p.t.Helper()
	m, ok := p.mems[got.ID]
	if !ok {
		p.failf("%s returned %s (org %s scope %s %q), which the model does not hold", what, got.ID, got.Org, got.Scope.Qualified(), got.Content)
		return
	}
	if !canSee(id, m) {
		p.failf("ISOLATION: %s for %s returned %s of org %s scope %s", what, who(id), m.id, m.org, m.scope.Qualified())
	}
	if got.Org != m.org || got.Scope != m.scope || got.Content != m.content || !sameSet(got.Tags, m.tags) {
		p.failf("%s returned %s as {%s %s %q %v}, want {%s %s %q %v}", what, got.ID, got.Org, got.Scope.Qualified(), got.Content, got.Tags,
			m.org, m.scope.Qualified(), m.content, m.tags)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func (p *probe) remember(a store.Memory, tags []string) {
	p.mems[a.ID] = &probeMem{id: a.ID, org: a.Org, scope: a.Scope, content: a.Content, tags: tags}
	p.ids = append(p.ids, a.ID)
}

func (p *probe) add() {
	id := p.identity()
	writable := id.Writable()
	if len(writable) == 0 {
		return
	}
	n := 1 + p.r.IntN(3)
	batch := make([]store.NewMemory, n)
	for i := range batch {
		batch[i] = New(writable[p.r.IntN(len(writable))], p.newContent(), p.tags()...)
	}
	p.last = "add by " + who(id)
	got, err := p.s.Add(p.t.Context(), id, batch)
	if err != nil {
		p.failf("Add = %v, want nil", err)
		return
	}
	for i, a := range got {
		if a.Duplicate || a.Org != id.Org || a.Scope != batch[i].Scope || a.Content != batch[i].Content || a.CreatedBy != id.User {
			p.failf("Add(%q in %s) = {dup %v org %s scope %s %q by %s}", batch[i].Content, batch[i].Scope.Qualified(),
				a.Duplicate, a.Org, a.Scope.Qualified(), a.Content, a.CreatedBy)
			continue
		}
		if _, ok := p.mems[a.ID]; ok {
			p.failf("Add returned id %s, which already belongs to another memory", a.ID)
			continue
		}
		p.remember(a.Memory, batch[i].Tags)
	}
}

// addDuplicate adds the content of a random memory, possibly a foreign
// one, in a scope the caller may write: it must be a duplicate exactly when
// the model holds that content in the same org and scope.
func (p *probe) addDuplicate() {
	src := p.randomMem()
	if src == nil {
		return
	}
	id := p.near(src)
	writable := id.Writable()
	if len(writable) == 0 {
		return
	}
	sc := writable[p.r.IntN(len(writable))]
	content := src.content
	if p.r.IntN(2) == 0 {
		content = "  " + strings.ToUpper(content)
	}
	p.last = fmt.Sprintf("add duplicate of %s by %s into %s", src.id, who(id), sc.Qualified())
	got, err := p.s.Add(p.t.Context(), id, []store.NewMemory{New(sc, content)})
	if err != nil {
		p.failf("Add = %v, want nil", err)
		return
	}
	a := got[0]
	var existing []string
	for _, m := range p.mems {
		if m.org == id.Org && m.scope == sc && store.NormalizeContent(m.content) == store.NormalizeContent(content) {
			existing = append(existing, m.id)
		}
	}
	switch {
	case len(existing) > 0 && !a.Duplicate:
		p.failf("Add of content already in %s = new memory %s, want the duplicate %v", sc.Qualified(), a.ID, existing)
	case len(existing) > 0:
		if !slices.Contains(existing, a.ID) {
			p.failf("ISOLATION: Add returned duplicate %s, want one of %v", a.ID, existing)
		}
		p.checkMemory(id, a.Memory, "Add duplicate")
	case a.Duplicate:
		p.failf("ISOLATION: Add into %s/%s reported a duplicate of %s (org %s scope %s) that is not in that scope", id.Org, sc.Qualified(), a.ID, a.Org, a.Scope.Qualified())
	default:
		if _, ok := p.mems[a.ID]; ok || a.Org != id.Org || a.Scope != sc {
			p.failf("Add returned %s in %s/%s, want a new memory in %s/%s", a.ID, a.Org, a.Scope.Qualified(), id.Org, sc.Qualified())
			return
		}
		p.remember(a.Memory, nil)
	}
}

// addInvisible tries to add in a scope the caller cannot see.
func (p *probe) addInvisible() {
	id := p.identity()
	sc := p.randomScope()
	if id.CanSee(sc) {
		return
	}
	p.last = fmt.Sprintf("add into invisible %s by %s", sc.Qualified(), who(id))
	got, err := p.s.Add(p.t.Context(), id, []store.NewMemory{New(sc, p.newContent())})
	if !errors.Is(err, store.ErrInvalid) {
		p.failf("ISOLATION: Add into a scope the caller cannot see = %v, %v; want ErrInvalid", got, err)
	}
}

func (p *probe) search() {
	target := p.randomMem()
	if target == nil {
		return
	}
	id := p.near(target)
	q := store.Query{Limit: 1 + p.r.IntN(20)}
	mode := p.r.IntN(3)
	if mode != 1 {
		q.Vector = Vector(target.content, Dims)
	}
	if mode != 0 {
		q.Text = target.content
		if p.r.IntN(2) == 0 {
			q.Text = strings.Fields(target.content)[0] // the unique q<n> token
		}
	}
	if p.r.IntN(4) == 0 {
		for range 1 + p.r.IntN(3) {
			q.Scopes = append(q.Scopes, p.randomScope())
		}
		if p.r.IntN(2) == 0 {
			q.Scopes = append(q.Scopes, target.scope)
		}
	}
	if p.r.IntN(5) == 0 {
		q.Tags = []string{p.pick(probeTags)}
	}
	p.last = fmt.Sprintf("search for %s by %s (text %q, vector %v, scopes %v, tags %v)", target.id, who(id), q.Text, q.Vector != nil, q.Scopes, q.Tags)
	hits, err := p.s.Search(p.t.Context(), id, q)
	if err != nil {
		p.failf("Search = %v, want nil", err)
		return
	}
	if len(hits) > q.Limit {
		p.failf("Search returned %d hits, limit %d", len(hits), q.Limit)
	}
	for _, h := range hits {
		p.checkMemory(id, h.Memory, "Search")
		if q.Scopes != nil && !slices.Contains(q.Scopes, h.Scope) {
			p.failf("Search narrowed to %v returned a hit in %s", q.Scopes, h.Scope.Qualified())
		}
		for _, tg := range q.Tags {
			if m := p.mems[h.ID]; m != nil && !slices.Contains(m.tags, tg) {
				p.failf("Search with tag %s returned %s tagged %v", tg, h.ID, m.tags)
			}
		}
	}
	// The target itself must be found when the caller can see it and the
	// query names it exactly (its vector, or its unique token).
	findable := canSee(id, target) && (q.Scopes == nil || slices.Contains(q.Scopes, target.scope))
	for _, tg := range q.Tags {
		findable = findable && slices.Contains(target.tags, tg)
	}
	exact := q.Vector != nil || !strings.Contains(q.Text, " ")
	if findable && exact {
		norm := store.NormalizeContent(target.content)
		if len(hits) == 0 || store.NormalizeContent(hits[0].Content) != norm {
			p.failf("Search did not return %s (%q) first: %d hits", target.id, target.content, len(hits))
		}
	}
}

func (p *probe) get() {
	m := p.randomMem()
	id := p.near(m)
	memoryID := "0190a7c2-0000-7000-8000-00000000dead"
	if m != nil {
		memoryID = m.id
	}
	p.last = fmt.Sprintf("get %s by %s", memoryID, who(id))
	got, err := p.s.Get(p.t.Context(), id, memoryID)
	switch {
	case m != nil && canSee(id, m):
		if err != nil {
			p.failf("Get of a visible memory = %v, want it", err)
			return
		}
		p.checkMemory(id, got, "Get")
	case !errors.Is(err, store.ErrNotFound):
		p.failf("ISOLATION: Get of a memory the caller cannot see = %s %q, %v; want ErrNotFound", got.ID, got.Content, err)
	}
}

func (p *probe) update() {
	m := p.randomMem()
	if m == nil {
		return
	}
	id := p.near(m)
	content := p.newContent()
	tags := p.tags()
	p.last = fmt.Sprintf("update %s (org %s scope %s) by %s", m.id, m.org, m.scope.Qualified(), who(id))
	got, err := p.s.Update(p.t.Context(), id, m.id, store.Patch{Content: &content, Tags: &tags, Vector: Vector(content, Dims)})
	if canWrite(id, m) {
		if err != nil {
			p.failf("Update of a writable memory = %v, want nil", err)
			return
		}
		m.content, m.tags = content, tags
		p.checkMemory(id, got, "Update")
		return
	}
	if !errors.Is(err, store.ErrNotFound) {
		p.failf("ISOLATION: Update of a memory the caller may not write = %v, want ErrNotFound", err)
	}
	p.verify(m)
}

func (p *probe) delete() {
	m := p.randomMem()
	if m == nil {
		return
	}
	id := p.near(m)
	p.last = fmt.Sprintf("delete %s (org %s scope %s) by %s", m.id, m.org, m.scope.Qualified(), who(id))
	err := p.s.Delete(p.t.Context(), id, m.id)
	if canWrite(id, m) {
		if err != nil {
			p.failf("Delete of a writable memory = %v, want nil", err)
			return
		}
		delete(p.mems, m.id)
		if _, err := p.s.Get(p.t.Context(), Owner(m.org, m.scope), m.id); !errors.Is(err, store.ErrNotFound) {
			p.failf("Get after Delete = %v, want ErrNotFound", err)
		}
		return
	}
	if !errors.Is(err, store.ErrNotFound) {
		p.failf("ISOLATION: Delete of a memory the caller may not write = %v, want ErrNotFound", err)
	}
	p.verify(m)
}

// counts returns the model's number of memories in org and s.
func (p *probe) count(org string, s scope.Scope) int {
	n := 0
	for _, m := range p.mems {
		if m.org == org && m.scope == s {
			n++
		}
	}
	return n
}

func (p *probe) list() {
	id := p.identity()
	p.last = "list by " + who(id)
	p.checkList(id)
}

func (p *probe) checkList(id scope.Identity) {
	got, err := p.s.ListScopes(p.t.Context(), id)
	if err != nil {
		p.failf("ListScopes = %v", err)
		return
	}
	vis := id.Visible()
	if len(got) != len(vis) {
		p.failf("ListScopes returned %d scopes, want %d (%v)", len(got), len(vis), vis)
		return
	}
	for i, s := range vis {
		want := store.ScopeInfo{Scope: s, Count: p.count(id.Org, s), Writable: id.CanWrite(s) == nil}
		if got[i] != want {
			p.failf("ListScopes[%d] = %+v, want %+v", i, got[i], want)
		}
	}
}

func (p *probe) purge() {
	id := p.identity()
	if p.r.IntN(3) == 0 {
		id.Permissions = append(id.Permissions, scope.PermAdmin)
	}
	var t scope.Target
	switch x := p.r.IntN(20); {
	case x == 0:
		t = scope.Target{Kind: scope.TargetOrg}
	case x < 6:
		t = scope.Target{Kind: scope.TargetUser, User: p.pick(probeUsers)}
	case x < 12:
		vis := id.Visible()
		t = scope.Target{Scope: vis[p.r.IntN(len(vis))]}
	default:
		t = scope.Target{Scope: p.randomScope()}
	}
	p.last = fmt.Sprintf("purge %s by %s", t, who(id))
	if t.Kind == scope.TargetScope {
		p.last = fmt.Sprintf("purge %s by %s", t.Scope.Qualified(), who(id))
	}
	hit := func(m *probeMem) bool {
		if m.org != id.Org {
			return false
		}
		switch t.Kind {
		case scope.TargetOrg:
			return true
		case scope.TargetUser:
			switch m.scope.Kind {
			case scope.KindUser:
				return m.scope.ID == t.User
			case scope.KindAgent, scope.KindSession:
				return strings.HasPrefix(m.scope.ID, t.User+"/")
			}
			return false
		}
		return m.scope == t.Scope
	}
	got, err := p.s.Purge(p.t.Context(), id, t)
	if id.CanPurge(t) != nil {
		if !errors.Is(err, scope.ErrForbidden) {
			p.failf("ISOLATION: Purge the caller may not do = %v, %v; want ErrForbidden", got, err)
		}
		return
	}
	if err != nil {
		p.failf("Purge = %v, want nil", err)
		return
	}
	want := map[string]int{}
	var gone []*probeMem
	for _, m := range p.mems {
		if hit(m) {
			want[m.scope.Qualified()]++
			gone = append(gone, m)
		}
	}
	if g := nonZero(got); !mapsEqual(g, want) {
		p.failf("Purge counts = %v, want %v", g, want)
	}
	for _, m := range gone {
		delete(p.mems, m.id)
		if _, err := p.s.Get(p.t.Context(), Owner(m.org, m.scope), m.id); !errors.Is(err, store.ErrNotFound) {
			p.failf("Get of purged %s = %v, want ErrNotFound", m.id, err)
		}
	}
	// A sample of the rest must be untouched.
	for range 20 {
		if m := p.randomMem(); m != nil {
			p.verify(m)
		}
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// verify checks that m is still stored as the model says.
func (p *probe) verify(m *probeMem) {
	p.t.Helper()
	owner := Owner(m.org, m.scope)
	got, err := p.s.Get(p.t.Context(), owner, m.id)
	if err != nil {
		p.failf("memory %s (org %s scope %s) is gone: Get = %v", m.id, m.org, m.scope.Qualified(), err)
		return
	}
	p.checkMemory(owner, got, "Get by owner")
}

// verifyAll checks every memory of the model.
func (p *probe) verifyAll() {
	p.last = "verify every memory"
	for _, m := range p.mems {
		p.verify(m)
	}
}

// verifyCounts checks the store holds nothing the model does not: every
// scope of the world, listed by a caller who sees it, has the model's count.
func (p *probe) verifyCounts() {
	p.last = "verify counts"
	for _, org := range probeOrgs {
		for _, u := range probeUsers {
			for i := range max(len(probeAgents), len(probeSessions)) {
				id := scope.Identity{Org: org, User: u, Teams: probeTeams, Permissions: []scope.Permission{scope.PermRead},
					Agent: probeAgents[i%len(probeAgents)], Session: probeSessions[i%len(probeSessions)]}
				p.checkList(id)
			}
		}
	}
}
