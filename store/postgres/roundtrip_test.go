package postgres_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/postgres"
	"github.com/scopemem/scopemem/store/storetest"
)

// turnCounter forwards TCP connections to a PostgreSQL server and counts
// round trips: the times a client sends after the server has answered
// (or first). A pipelined batch is one.
type turnCounter struct {
	ln     net.Listener
	target string
	turns  atomic.Int64
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newTurnCounter(t *testing.T, target string) *turnCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &turnCounter{ln: ln, target: target}
	c.wg.Go(c.accept)
	t.Cleanup(func() {
		ln.Close()
		c.mu.Lock()
		for _, conn := range c.conns {
			conn.Close()
		}
		c.mu.Unlock()
		c.wg.Wait()
	})
	return c
}

func (c *turnCounter) accept() {
	for {
		client, err := c.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", c.target)
		if err != nil {
			client.Close()
			continue
		}
		c.mu.Lock()
		c.conns = append(c.conns, client, server)
		c.mu.Unlock()
		var answered atomic.Bool
		answered.Store(true)
		pipe := func(dst, src net.Conn, fromClient bool) {
			defer dst.Close()
			defer src.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := src.Read(buf)
				if n > 0 {
					if fromClient {
						if answered.Swap(false) {
							c.turns.Add(1)
						}
					} else {
						answered.Store(true)
					}
					if _, werr := dst.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}
		c.wg.Go(func() { pipe(server, client, true) })
		c.wg.Go(func() { pipe(client, server, false) })
	}
}

// count returns how many round trips f made.
func (c *turnCounter) count(t *testing.T, f func() error) int64 {
	t.Helper()
	before := c.turns.Load()
	if err := f(); err != nil {
		t.Fatal(err)
	}
	return c.turns.Load() - before
}

// TestRoundTrips: the hot paths' round trips to the database, counted
// on the wire, once the pool's statements are prepared and the vector
// cache's copies loaded (two runs before the one counted): an add is
// two (BEGIN, identity, locks and duplicate checks; insert and COMMIT),
// whether it stores, finds a stored duplicate or finds one in the vector
// cache (whose copy holds its content), and once the scope's copy is
// cached whether or not a search loaded it; a search and list_scopes are
// one.
func TestRoundTrips(t *testing.T) {
	_, d := newEmbeddingStore(t)
	u, err := url.Parse(d.RuntimeURL)
	if err != nil {
		t.Fatal(err)
	}
	wire := newTurnCounter(t, u.Host)
	u.Host = wire.ln.Addr().String()
	open := func(cacheBytes int64) *postgres.Store {
		// One connection: its statements are prepared by the first run.
		s, err := postgres.Open(context.Background(), postgres.Config{URL: u.String(), MaxConns: 1, VectorCacheBytes: cacheBytes})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	withCache, plain := open(0), open(-1)

	alice := storetest.Member("acme", "alice", "api")
	user := scope.Scope{Kind: scope.KindUser, ID: "alice"}
	team := scope.Scope{Kind: scope.KindTeam, ID: "api"}
	add := func(s *postgres.Store, ms ...store.NewMemory) error {
		_, err := s.Add(t.Context(), alice, ms)
		return err
	}
	search := func(s *postgres.Store, run int) error {
		_, err := s.Search(t.Context(), alice, store.Query{Text: "deploy", Vector: storetest.RandomVector(uint64(run), storetest.Dims)})
		return err
	}
	cases := []struct {
		name string
		run  func(run int) error // runs 0 and 1 prepare, run 2 is counted
		want int64
	}{
		{"add new", func(run int) error {
			return add(plain, storetest.New(user, fmt.Sprintf("new memory %d", run)))
		}, 2},
		{"add new, two scopes and a repeat", func(run int) error {
			return add(plain, storetest.New(user, fmt.Sprintf("first %d", run)), storetest.New(team, fmt.Sprintf("second %d", run)),
				storetest.New(user, fmt.Sprintf("first %d", run)))
		}, 2},
		{"add a stored duplicate", func(run int) error {
			return add(plain, storetest.New(user, "new memory 0"))
		}, 2},
		{"add new, vector cache, no search", func(run int) error {
			return add(withCache, storetest.New(team, fmt.Sprintf("cached team note %d", run)))
		}, 2},
		{"add new, vector cache", func(run int) error {
			if err := search(withCache, run); err != nil { // the copy is current
				return err
			}
			return add(withCache, storetest.New(user, fmt.Sprintf("cached new %d", run)))
		}, 1 + 2},
		{"add a duplicate found in the vector cache", func(run int) error {
			if err := search(withCache, run); err != nil {
				return err
			}
			m := storetest.New(user, "new memory 0, said again")
			m.Vector = storetest.Vector("new memory 0", storetest.Dims)
			return add(withCache, m)
		}, 1 + 2},
		{"search", func(run int) error { return search(plain, run) }, 1},
		{"search, vector cache", func(run int) error { return search(withCache, run) }, 1},
		{"list scopes", func(int) error {
			_, err := plain.ListScopes(t.Context(), alice)
			return err
		}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for run := range 2 {
				wire.count(t, func() error { return c.run(run) })
			}
			if got := wire.count(t, func() error { return c.run(2) }); got != c.want {
				t.Errorf("%d round trips, want %d", got, c.want)
			}
		})
	}
}
