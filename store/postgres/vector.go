package postgres

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgvector/pgvector-go"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// The vector statements below name one scope per branch with equality on
// bound parameters (org_id = $1 AND scope_kind = $k AND scope_id = $i),
// never a join against an array of scopes. Connections plan every
// execution with its parameters (plan_cache_mode=force_custom_plan), so
// the planner sees the literal org and scope of each branch and can prove
// the predicate of that scope's partial HNSW index (see [Maintain]): a
// large scope is searched through its own approximate index, an ordinary
// one exactly through the (org, scope) btree, and neither reads another
// tenant's rows. The distance is always written as
// (embedding::vector(dims)) <=> query, the expression the partial indexes
// are built on, with the dimension as a literal.

// annExpr is the indexed distance expression for vectors of dims
// dimensions, against the query vector written as arg.
func annExpr(col string, dims int, arg string) string {
	return "(" + col + "::vector(" + strconv.Itoa(dims) + ")) <=> " + arg
}

// dupHashSQL finds, for each content hash in $5, the oldest live memory of scope ($1, $2, $3) at $4 with the same hash, through
// the memories_hash btree. The result columns are memoryCols and the
// 1-based position in the arrays.
const dupHashSQL = `SELECT ` + memoryCols + `, n.ord
	FROM unnest($5::bytea[]) WITH ORDINALITY AS n(hash, ord)
	CROSS JOIN LATERAL (
		SELECT * FROM memories d
		WHERE d.org_id = $1 AND d.scope_kind = $2 AND d.scope_id = $3
			AND d.content_hash = n.hash
			AND (d.expires_at IS NULL OR d.expires_at > $4)
		ORDER BY d.created_at
		LIMIT 1
	) AS m`

// dupVectorSQL finds, for each vector in $5, the nearest live memory of
// scope ($1, $2, $3) at $4 and keeps it when its cosine distance is at
// most $6: exactly through the (org, scope) btree, or through the scope's
// partial HNSW index when it has one. The result columns are memoryCols
// and the 1-based position in the array.
func dupVectorSQL(dims int) string {
	dist := annExpr("d.embedding", dims, "n.vec")
	return `SELECT ` + memoryCols + `, n.ord
	FROM unnest($5::vector[]) WITH ORDINALITY AS n(vec, ord)
	CROSS JOIN LATERAL (
		SELECT d.*, ` + dist + ` AS dist FROM memories d
		WHERE d.org_id = $1 AND d.scope_kind = $2 AND d.scope_id = $3
			AND d.embedding IS NOT NULL AND vector_dims(d.embedding) = ` + strconv.Itoa(dims) + `
			AND (d.expires_at IS NULL OR d.expires_at > $4)
		ORDER BY ` + dist + `
		LIMIT 1
	) AS m
	WHERE m.dist <= $6`
}

// findDuplicates returns, for each new memory, the live memory of its
// scope that it duplicates (same normalized content first, else the
// nearest vector at least store.DuplicateSimilarity close), or nil. It
// sends two statements per scope of the batch, in one round trip.
func (s *Store) findDuplicates(ctx context.Context, tx pgx.Tx, org string, ms []store.NewMemory,
	hashes [][]byte, vecs []pgvector.Vector, dims int, now time.Time) ([]*store.Memory, error) {
	type group struct {
		scope  scope.Scope
		idx    []int // positions in ms
		hashes [][]byte
		vecs   []pgvector.Vector
	}
	var groups []*group
	byScope := map[scope.Scope]*group{}
	for i, m := range ms {
		g := byScope[m.Scope]
		if g == nil {
			g = &group{scope: m.Scope}
			byScope[m.Scope] = g
			groups = append(groups, g)
		}
		g.idx = append(g.idx, i)
		g.hashes = append(g.hashes, hashes[i])
		g.vecs = append(g.vecs, vecs[i])
	}
	byHash := make([]*store.Memory, len(ms))
	byVec := make([]*store.Memory, len(ms))
	collect := func(g *group, into []*store.Memory) func(pgx.Rows) error {
		return func(rows pgx.Rows) error {
			for rows.Next() {
				var ord int
				m, err := scanMemory(rows, &ord)
				if err != nil {
					return err
				}
				if ord < 1 || ord > len(g.idx) {
					return fmt.Errorf("duplicate check returned position %d of %d", ord, len(g.idx))
				}
				into[g.idx[ord-1]] = &m
			}
			return rows.Err()
		}
	}
	vecSQL := dupVectorSQL(dims)
	b := &pgx.Batch{}
	for _, g := range groups {
		kind, sid := string(g.scope.Kind), g.scope.ID
		b.Queue(dupHashSQL, org, kind, sid, now, g.hashes).Query(collect(g, byHash))
		b.Queue(vecSQL, org, kind, sid, now, g.vecs, 1-store.DuplicateSimilarity).Query(collect(g, byVec))
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	for i := range byHash {
		if byHash[i] == nil {
			byHash[i] = byVec[i]
		}
	}
	return byHash, nil
}
