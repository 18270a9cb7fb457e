package main

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/scope"
)

var scopememBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "scopebench-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	scopememBin = filepath.Join(dir, "scopemem")
	build := exec.Command("go", "build", "-o", scopememBin, "github.com/scopemem/scopemem/cmd/scopemem")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building scopemem:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestParseMix(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]float64
		wantErr bool
	}{
		{in: "add=20,search=75,list=5", want: map[string]float64{opAdd: 20, opSearch: 75, opList: 5}},
		{in: " search=1 ", want: map[string]float64{opSearch: 1}},
		{in: "add=0,search=3", want: map[string]float64{opAdd: 0, opSearch: 3}},
		{in: "add=1,delete=1", wantErr: true},
		{in: "add", wantErr: true},
		{in: "add=-1,search=2", wantErr: true},
		{in: "add=x", wantErr: true},
		{in: "add=0", wantErr: true},
		{in: "add=1,add=2", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m, err := parseMix(tt.in)
			if tt.wantErr {
				if !errors.Is(err, errUsage) {
					t.Fatalf("parseMix(%q) error = %v, want errUsage", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseMix(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, m.weights); diff != "" {
				t.Errorf("parseMix(%q) weights (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestMixPickFollowsWeights(t *testing.T) {
	m, err := parseMix("add=20,search=75,list=5")
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	counts := map[string]int{}
	const n = 100000
	for range n {
		counts[m.pick(r)]++
	}
	for op, w := range m.weights {
		got := float64(counts[op]) / n * 100
		if got < w-1 || got > w+1 {
			t.Errorf("%s picked %.1f%% of the time, want %.0f%% ± 1", op, got, w)
		}
	}
}

func TestTenantsDistribution(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, dist := range []string{"uniform", "zipf"} {
		ten, err := newTenants(10, 3, dist, 1.1)
		if err != nil {
			t.Fatalf("newTenants(%s): %v", dist, err)
		}
		if len(ten.ids) != 30 {
			t.Fatalf("%s: %d identities, want 30", dist, len(ten.ids))
		}
		perOrg := map[string]int{}
		for range 30000 {
			i := ten.pick(r)
			if i < 0 || i >= len(ten.ids) {
				t.Fatalf("%s: pick = %d, outside 0..%d", dist, i, len(ten.ids)-1)
			}
			perOrg[ten.ids[i].Org]++
		}
		first, last := perOrg["org-000"], perOrg["org-009"]
		switch dist {
		case "uniform":
			if first < 2500 || first > 3500 || last < 2500 || last > 3500 {
				t.Errorf("uniform: org-000 %d, org-009 %d calls of 30000, want about 3000 each", first, last)
			}
		case "zipf":
			// p(k) ∝ 1/(k+1)^1.1: org-000 about 8.5 times org-009.
			if first < 6*last {
				t.Errorf("zipf: org-000 %d, org-009 %d calls, want the first far more often", first, last)
			}
		}
	}
	for _, bad := range []struct {
		orgs, users int
		dist        string
		s           float64
	}{{0, 1, "uniform", 1}, {1, 0, "uniform", 1}, {2, 1, "pareto", 1}, {2, 1, "zipf", 0}} {
		if _, err := newTenants(bad.orgs, bad.users, bad.dist, bad.s); !errors.Is(err, errUsage) {
			t.Errorf("newTenants(%+v) error = %v, want errUsage", bad, err)
		}
	}
}

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	st := summarize(lat, 2, time.Second)
	want := OpStats{Calls: 100, Errors: 2, PerSec: 100, Mean: 50500 * time.Microsecond,
		P50: 50 * time.Millisecond, P95: 95 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("summarize (-want +got):\n%s", diff)
	}
}

func TestContentsAreUnique(t *testing.T) {
	v := newVocabulary(2000)
	r := rand.New(rand.NewPCG(5, 6))
	seen := map[string]bool{}
	for i := range 1000 {
		c := v.content(r, 120, fmt.Sprintf("run-0-%d", i))
		if seen[c] {
			t.Fatalf("content %q generated twice", c)
		}
		seen[c] = true
		if len(c) < 120 || len(c) > 140 {
			t.Errorf("content of %d bytes, want about 120: %q", len(c), c)
		}
	}
}

var testSecret = []byte("0123456789abcdef0123456789abcdef-bench-secret")

func smallConfig(t *testing.T, sessions, calls int) Config {
	t.Helper()
	m, err := parseMix("add=30,search=60,list=10")
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		Sessions: sessions, Calls: calls, Mix: m, MixText: "add=30,search=60,list=10",
		Preload: 40, PreloadConc: 4, ContentBytes: 120, SearchLimit: 10,
		CallTimeout: 20 * time.Second, Seed: 1, Verify: true,
	}
}

// checkClean fails the test unless rep shows every call succeeding and
// every acknowledged add present.
func checkClean(t *testing.T, rep *Report, wantCalls int) {
	t.Helper()
	if n := rep.ErrorCount(); n != 0 {
		t.Errorf("%d calls failed: measuring %v, preloading %v", n, rep.Errors, rep.PreloadErrors)
	}
	if got := rep.Ops["all"].Calls; got != wantCalls {
		t.Errorf("measured %d calls, want %d", got, wantCalls)
	}
	if rep.Preloaded != 40 {
		t.Errorf("preloaded %d, want 40", rep.Preloaded)
	}
	v := rep.Verify
	if v == nil {
		t.Fatal("no verification in the report")
	}
	if v.Failed() || v.Present != v.Acknowledged || v.Acknowledged < 40 {
		t.Errorf("verify = %+v, want every one of at least 40 acknowledged adds present", *v)
	}
}

// serveHTTP serves a SQLite app (fake embedder of 64 dimensions, delay
// per call) over httptest, verifying HS256 tokens signed with testSecret
// for issuer and audience (none when empty), and returns it with a target
// of conns connections whose identities are ten's.
func serveHTTP(t *testing.T, delay time.Duration, issuer, audience string, ten *tenants, conns int) (*app.App, *httpTarget) {
	t.Helper()
	a, err := app.New(t.Context(), app.Config{
		DBPath: filepath.Join(t.TempDir(), "bench.db"), Embedder: "fake", FakeDims: 64, FakeDelay: delay, JanitorInterval: -1,
	})
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	v, err := scope.NewJWTVerifier(t.Context(), scope.JWTConfig{Secret: testSecret, Issuer: issuer, Audience: audience})
	if err != nil {
		t.Fatalf("NewJWTVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	ts := httptest.NewServer(a.HTTPHandler(app.HTTPConfig{Verifier: v.Verify}))
	t.Cleanup(ts.Close)
	tgt, err := newHTTPTarget(ts.URL, testSecret, issuer, audience, ten, time.Hour, conns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tgt.close() })
	return a, tgt
}

func TestRunHTTP(t *testing.T) {
	ten, err := newTenants(5, 2, "zipf", 1.1)
	if err != nil {
		t.Fatal(err)
	}
	a, tgt := serveHTTP(t, 0, "bench-issuer", "bench-aud", ten, 4)
	rep, err := Run(t.Context(), smallConfig(t, 4, 75), tgt, ten, io.Discard)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkClean(t, rep, 300)

	// The check must notice a memory that went missing: delete one behind
	// the load generator's back.
	gone := rep.acks[len(rep.acks)/2]
	id := ten.ids[gone.ident]
	owner := scope.Identity{Org: id.Org, User: id.User, Permissions: []scope.Permission{scope.PermRead, scope.PermWrite}}
	if err := a.Store.Delete(t.Context(), owner, gone.id); err != nil {
		t.Fatalf("Delete(%s): %v", gone.id, err)
	}
	before := map[int]int{}
	for ident := range ten.ids {
		before[ident] = 0
	}
	got := verify(t.Context(), tgt, ten, rep.acks, before, 4)
	if got.Lost != 1 || got.CountDelta != -1 || !got.Failed() {
		t.Errorf("verify after deleting one memory = %+v, want Lost 1, CountDelta -1", got)
	}

	// An id acknowledged for two contents is a duplicate.
	twice := append(rep.acks[:len(rep.acks):len(rep.acks)], ack{ident: rep.acks[0].ident, id: rep.acks[0].id, content: "other"})
	if got := verify(t.Context(), tgt, ten, twice, nil, 4); got.Duplicated != 1 {
		t.Errorf("verify with an id acknowledged twice = %+v, want Duplicated 1", got)
	}
}

// TestRunPaced checks --rate: calls start on their schedule, never ahead
// of it, and a call that starts late because the session's previous call
// ran long counts the wait in its latency.
func TestRunPaced(t *testing.T) {
	for _, tc := range []struct {
		name            string
		delay           time.Duration // the fake embedder's, per add
		sessions, calls int
		rate            float64
		minWall, minMax time.Duration
	}{
		// Four sessions each every 40 ms, the last starting 10 ms after the
		// first: the tenth round is due 9*40+30 ms after the start.
		{name: "on schedule", sessions: 4, calls: 10, rate: 100, minWall: 390 * time.Millisecond},
		// One session due every 10 ms whose adds take at least 30 ms: its
		// tenth call is due at 90 ms, starts after 270 and ends after 300.
		{name: "late", delay: 30 * time.Millisecond, sessions: 1, calls: 10, rate: 100, minWall: 300 * time.Millisecond, minMax: 210 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ten, err := newTenants(2, 1, "uniform", 1)
			if err != nil {
				t.Fatal(err)
			}
			_, tgt := serveHTTP(t, tc.delay, "", "", ten, tc.sessions)
			cfg := smallConfig(t, tc.sessions, tc.calls)
			if cfg.Mix, err = parseMix("add=100"); err != nil {
				t.Fatal(err)
			}
			cfg.MixText, cfg.Preload, cfg.Rate = "add=100", 0, tc.rate
			rep, err := Run(t.Context(), cfg, tgt, ten, io.Discard)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			all := rep.Ops["all"]
			if n := rep.ErrorCount(); n != 0 || all.Calls != tc.sessions*tc.calls {
				t.Errorf("%d calls, %d failed (%v), want %d without errors", all.Calls, n, rep.Errors, tc.sessions*tc.calls)
			}
			if rep.Wall < tc.minWall {
				t.Errorf("the run took %s: calls started ahead of their schedule (the last is due after %s)", rep.Wall, tc.minWall)
			}
			if all.Max < tc.minMax {
				t.Errorf("slowest call %s, want at least %s: the wait behind a late call is not counted", all.Max, tc.minMax)
			}
			if rep.Verify == nil || rep.Verify.Failed() {
				t.Errorf("verify = %+v, want nothing lost", rep.Verify)
			}
		})
	}
}

func TestRunStdio(t *testing.T) {
	for _, tc := range []struct {
		shared             bool
		protocol, speaking string // asked for, negotiated
	}{
		{shared: false, protocol: "", speaking: mcp.LATEST_PROTOCOL_VERSION},
		{shared: true, protocol: mcp.ProtocolVersion20251125, speaking: mcp.ProtocolVersion20251125},
		{shared: false, protocol: mcp.ProtocolVersion20250618, speaking: mcp.ProtocolVersion20250618},
	} {
		t.Run(fmt.Sprintf("shared=%v,protocol=%q", tc.shared, tc.protocol), func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "bench.db")
			flags := ServerFlags{Embedder: "fake", Dims: 64}
			ten, err := newTenants(2, 1, "uniform", 1)
			if err != nil {
				t.Fatal(err)
			}
			tgt := &stdioTarget{bin: scopememBin, args: flags.serveArgs(db), tenants: ten, shared: tc.shared, seed: 1, stderr: &tailBuffer{}, protocol: tc.protocol}
			s, err := tgt.spawn(t.Context(), 0)
			if err != nil {
				t.Fatalf("spawn: %v", err)
			}
			if s.protocol != tc.speaking {
				t.Errorf("session speaks %q, want %q", s.protocol, tc.speaking)
			}
			s.close()
			t.Cleanup(func() { tgt.close() })
			rep, err := Run(t.Context(), smallConfig(t, 3, 70), tgt, ten, io.Discard)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			checkClean(t, rep, 210)
		})
	}
}

func TestColdStart(t *testing.T) {
	flags := ServerFlags{Embedder: "fake", Dims: 64}
	ten, err := newTenants(1, 1, "uniform", 1)
	if err != nil {
		t.Fatal(err)
	}
	tgt := &stdioTarget{bin: scopememBin, args: flags.serveArgs(filepath.Join(t.TempDir(), "cold.db")), tenants: ten, stderr: &tailBuffer{}}
	samples, err := coldStarts(t.Context(), tgt, 2, 10*time.Millisecond)
	if err != nil {
		t.Fatalf("coldStarts: %v", err)
	}
	if len(samples) != 2 {
		t.Fatalf("%d samples, want 2", len(samples))
	}
	for _, s := range samples {
		if s.init <= 0 || s.list < s.init || s.rssStart <= 0 || s.rssIdle <= 0 {
			t.Errorf("sample %+v: want positive times with tools/list after initialize, and an RSS", s)
		}
	}
}
