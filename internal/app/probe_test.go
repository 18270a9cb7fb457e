package app_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"

	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/scope"
)

// probeCaller is one identity of the probe with its own MCP client.
type probeCaller struct {
	org, user, agent string
	teams            []string
	perms            []scope.Permission
	c                *client.Client
}

func (p *probeCaller) has(perm scope.Permission) bool {
	return slices.Contains(p.perms, perm) || slices.Contains(p.perms, scope.PermAdmin)
}

// probeMem is the model's record of one stored memory.
type probeMem struct {
	org, kind, sid, content string
}

// visible is the probe's own statement of the visibility rules, written
// independently of package scope.
func (p *probeCaller) visible(m probeMem, session string) bool {
	if m.org != p.org {
		return false
	}
	switch m.kind {
	case "org":
		return true
	case "user":
		return m.sid == p.user
	case "team":
		return slices.Contains(p.teams, m.sid)
	case "agent":
		return p.agent != "" && m.sid == p.user+"/"+p.agent
	case "session":
		return m.sid == p.user+"/"+session
	}
	return false
}

func (p *probeCaller) writable(m probeMem, session string) bool {
	if !p.visible(m, session) || !p.has(scope.PermWrite) {
		return false
	}
	return (m.kind != "team" && m.kind != "org") || p.has(scope.PermShare)
}

// TestCrossTenantProbe drives thousands of random tool calls from callers in
// 5 orgs x 4 users x 3 teams with random permissions, agents and sessions,
// and checks every answer against an independent model: no call may return,
// change or erase a memory outside the caller's visible (or writable)
// scopes.
func TestCrossTenantProbe(t *testing.T) {
	forEachBackend(t, testCrossTenantProbe)
}

func testCrossTenantProbe(t *testing.T, a *app.App) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SCOPEMEM_PROBE_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("probe seed %d (rerun with SCOPEMEM_PROBE_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	ops := 2500
	if testing.Short() {
		ops = 500
	}

	ts := httpServer(t, a)
	var callers []*probeCaller
	for o := range 5 {
		org := fmt.Sprintf("org%d", o)
		for u := range 4 {
			p := &probeCaller{org: org, user: fmt.Sprintf("user%d", u)}
			for tm := range 3 {
				if rng.IntN(2) == 0 {
					p.teams = append(p.teams, fmt.Sprintf("team%d", tm))
				}
			}
			if rng.IntN(2) == 0 {
				p.agent = "agent" + strconv.Itoa(rng.IntN(2))
			}
			p.perms = []scope.Permission{scope.PermRead}
			for _, perm := range []scope.Permission{scope.PermWrite, scope.PermShare, scope.PermPurge} {
				if rng.IntN(10) < 7 {
					p.perms = append(p.perms, perm)
				}
			}
			if rng.IntN(10) == 0 {
				p.perms = append(p.perms, scope.PermAdmin)
			}
			claims := map[string]any{
				"iss": "test-issuer", "aud": "scopemem-test", "sub": p.user, "org_id": org, "teams": p.teams,
				"exp": time.Now().Add(time.Hour).Unix(), "scope": joinPerms(p.perms),
			}
			if p.agent != "" {
				claims["agent"] = p.agent
			}
			tok, err := scope.MintHS256(testSecret, claims)
			if err != nil {
				t.Fatal(err)
			}
			p.c = connect(t, ts.URL, tok, client.WithProtocolVersion("2026-07-28"))
			callers = append(callers, p)
		}
	}

	model := map[string]probeMem{}
	var allIDs []string
	words := make([]string, 400)
	for i := range words {
		words[i] = fmt.Sprintf("w%03dx%c%c", i, 'a'+rune(rng.IntN(26)), 'a'+rune(rng.IntN(26)))
	}
	sentence := func() string {
		var b strings.Builder
		for i := range 6 {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(words[rng.IntN(len(words))])
		}
		return b.String()
	}
	scopeNames := []string{"session", "agent", "user", "org", "team:team0", "team:team1", "team:team2"}
	sessions := []string{"s1", "s2"}
	kindOf := func(p *probeCaller, name, session string) (string, string) {
		switch {
		case name == "session":
			return "session", p.user + "/" + session
		case name == "agent":
			return "agent", p.user + "/" + p.agent
		case name == "user":
			return "user", p.user
		case name == "org":
			return "org", ""
		default:
			return "team", strings.TrimPrefix(name, "team:")
		}
	}

	counts := map[string]int{}
	for i := range ops {
		p := callers[rng.IntN(len(callers))]
		session := sessions[rng.IntN(len(sessions))]
		op := rng.IntN(100)
		switch {
		case op < 35: // add
			name := scopeNames[rng.IntN(len(scopeNames))]
			content := fmt.Sprintf("%s %s %d", sentence(), p.org, i)
			kind, sid := kindOf(p, name, session)
			want := probeMem{p.org, kind, sid, content}
			allowed := (name != "agent" || p.agent != "") && p.writable(want, session)
			res := call(t, p.c, "add_memory", map[string]any{"content": content, "scope": name, "session": session})
			if res.IsError != !allowed {
				t.Fatalf("op %d: %s/%s add to %s: error=%v, want error=%v (%s)", i, p.org, p.user, name, res.IsError, !allowed, text(res))
			}
			if !res.IsError {
				var out addOut
				decode(t, res, &out)
				if _, dup := model[out.ID]; !dup {
					model[out.ID] = want
					allIDs = append(allIDs, out.ID)
				}
			}
			counts["add"]++
		case op < 65: // search, often with words of a foreign memory
			q := sentence()
			if len(allIDs) > 0 && rng.IntN(2) == 0 {
				if m, live := model[allIDs[rng.IntN(len(allIDs))]]; live {
					q = m.content
				}
			}
			var out searchOut
			decode(t, okRes(t, p.c, "search_memory", map[string]any{"query": q, "limit": 50, "session": session}), &out)
			for _, h := range out.Results {
				m, known := model[h.ID]
				if !known || !p.visible(m, session) {
					t.Fatalf("op %d: %s/%s (teams %v, agent %q, session %s) found memory %s in %v: outside its visible scopes", i, p.org, p.user, p.teams, p.agent, session, h.ID, m)
				}
			}
			counts["search"]++
		case op < 75: // update a random memory, foreign or not
			if len(allIDs) == 0 {
				continue
			}
			id := allIDs[rng.IntN(len(allIDs))]
			m, live := model[id]
			content := sentence() + " updated " + strconv.Itoa(i)
			res := call(t, p.c, "update_memory", map[string]any{"id": id, "content": content, "session": session})
			allowed := live && p.writable(m, session)
			if res.IsError != !allowed {
				t.Fatalf("op %d: %s/%s update %s (%v): error=%v, want error=%v (%s)", i, p.org, p.user, id, m, res.IsError, !allowed, text(res))
			}
			if allowed {
				m.content = content
				model[id] = m
			}
			counts["update"]++
		case op < 85: // delete a random memory
			if len(allIDs) == 0 {
				continue
			}
			id := allIDs[rng.IntN(len(allIDs))]
			m, live := model[id]
			res := call(t, p.c, "delete_memory", map[string]any{"id": id, "session": session})
			allowed := live && p.writable(m, session)
			if res.IsError != !allowed {
				t.Fatalf("op %d: %s/%s delete %s (%v): error=%v, want error=%v (%s)", i, p.org, p.user, id, m, res.IsError, !allowed, text(res))
			}
			if allowed {
				delete(model, id)
			}
			counts["delete"]++
		case op < 90: // purge one scope
			name := scopeNames[rng.IntN(len(scopeNames))]
			kind, sid := kindOf(p, name, session)
			probe := probeMem{p.org, kind, sid, ""}
			admin := slices.Contains(p.perms, scope.PermAdmin)
			allowed := (name != "agent" || p.agent != "") && (p.visible(probe, session) || (kind == "team" && admin)) && p.has(scope.PermPurge) &&
				((kind != "team" && kind != "org") || p.has(scope.PermShare))
			res := call(t, p.c, "purge", map[string]any{"scope": name, "confirm": name, "session": session})
			if res.IsError != !allowed {
				t.Fatalf("op %d: %s/%s purge %s: error=%v, want error=%v (%s)", i, p.org, p.user, name, res.IsError, !allowed, text(res))
			}
			if allowed {
				want := 0
				for id, m := range model {
					if m.org == p.org && m.kind == kind && m.sid == sid {
						delete(model, id)
						want++
					}
				}
				var out struct{ Total int }
				decode(t, res, &out)
				if out.Total != want {
					t.Fatalf("op %d: %s/%s purge %s removed %d, model says %d", i, p.org, p.user, name, out.Total, want)
				}
			}
			counts["purge"]++
		default: // list scopes: counts must match the model exactly
			var out scopesOut
			decode(t, okRes(t, p.c, "list_scopes", map[string]any{"session": session}), &out)
			for _, sc := range out.Scopes {
				kind, sid := kindOf(p, sc.Scope, session)
				want := 0
				for _, m := range model {
					if m.org == p.org && m.kind == kind && m.sid == sid {
						want++
					}
				}
				if sc.Count != want {
					t.Fatalf("op %d: %s/%s list_scopes %s count %d, model says %d", i, p.org, p.user, sc.Scope, sc.Count, want)
				}
			}
			counts["list"]++
		}
	}
	t.Logf("operations: %v; memories alive at the end: %d", counts, len(model))
	if counts["add"] < ops/5 || len(model) == 0 {
		t.Errorf("probe did too little: %v", counts)
	}
}

func joinPerms(ps []scope.Permission) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return strings.Join(s, " ")
}
