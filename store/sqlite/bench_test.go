package sqlite_test

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/storetest"
)

const (
	benchMemories = 2000
	benchDims     = 768
)

// benchStore returns a store holding n memories of dims dimensions that
// alice sees, spread over her user scope, her team and the org, and the
// identity of alice.
func benchStore(b *testing.B, n, dims int) (store.Store, scope.Identity) {
	b.Helper()
	s := openTemp(b)
	if err := s.SetEmbedder(b.Context(), store.EmbedderInfo{Provider: "bench", Model: "random", Dimensions: dims}); err != nil {
		b.Fatal(err)
	}
	alice := storetest.Member("acme", "alice", "api")
	scopes := []scope.Scope{{Kind: scope.KindUser, ID: "alice"}, {Kind: scope.KindTeam, ID: "api"}, {Kind: scope.KindOrg}}
	for i, sc := range scopes {
		part := storetest.Corpus(n/len(scopes)+1, dims, sc, uint64(i+1))
		for len(part) > 0 {
			k := min(200, len(part))
			if _, err := s.Add(b.Context(), alice, part[:k]); err != nil {
				b.Fatal(err)
			}
			part = part[k:]
		}
	}
	// Another org's memories, which a search must skip.
	bob := storetest.Member("globex", "bob")
	if _, err := s.Add(b.Context(), bob, storetest.Corpus(200, dims, scope.Scope{Kind: scope.KindUser, ID: "bob"}, 99)); err != nil {
		b.Fatal(err)
	}
	return s, alice
}

// BenchmarkSearch measures searches per second at 2,000 memories of 768
// dimensions, with both cores searching.
func BenchmarkSearch(b *testing.B) {
	s, alice := benchStore(b, benchMemories, benchDims)
	for _, mode := range []string{"vector", "hybrid", "text"} {
		b.Run(mode, func(b *testing.B) {
			var seed atomic.Uint64
			b.RunParallel(func(pb *testing.PB) {
				r := rand.New(rand.NewPCG(seed.Add(1), 3))
				for pb.Next() {
					q := store.Query{Limit: 10}
					if mode != "text" {
						q.Vector = storetest.RandomVector(r.Uint64(), benchDims)
					}
					if mode != "vector" {
						q.Text = "deploy friday oauth token"
					}
					hits, err := s.Search(b.Context(), alice, q)
					if err != nil || len(hits) == 0 {
						b.Errorf("Search = %d hits, %v", len(hits), err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "searches/s")
		})
	}
}

// BenchmarkAdd measures single-memory adds per second into a store of 2,000
// memories of 768 dimensions (each add checks its scope for duplicates).
func BenchmarkAdd(b *testing.B) {
	s, alice := benchStore(b, benchMemories, benchDims)
	user := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	i := 0
	for b.Loop() {
		i++
		m := store.NewMemory{Scope: user, Content: fmt.Sprintf("benchmark memory %d about latency", i),
			Vector: storetest.RandomVector(uint64(1e9+i), benchDims)}
		if _, err := s.Add(b.Context(), alice, []store.NewMemory{m}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "adds/s")
}
