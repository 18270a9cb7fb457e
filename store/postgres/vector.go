package postgres

import (
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
// partial HNSW index when it has one; it reads no row when the scope's
// version is $7 (the version of the vector cache's copy, which answered
// the check already). The result columns are memoryCols and the 1-based
// position in the array.
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
	WHERE m.dist <= $6
		AND $7::bigint IS DISTINCT FROM COALESCE((SELECT v.version FROM scope_versions v
			WHERE v.org_id = $1 AND v.scope_kind = $2 AND v.scope_id = $3), 0)`
}

// dupCheck is the duplicate check of one Add: queueDuplicates queues
// its statements into the batch that takes the scopes' locks, and finish
// reads what they found once that batch has run.
type dupCheck struct {
	cache    *vecCache // nil without a vector cache
	org      string
	groups   []*dupGroup
	byHash   []*store.Memory
	byVec    []*store.Memory
	versions map[scope.Scope]int64
}

// dupGroup is the new memories of one scope.
type dupGroup struct {
	scope  scope.Scope
	idx    []int // positions in ms
	hashes [][]byte
	vecs   []pgvector.Vector
	copy   *scopeVecs // a copy of the scope's rows, or nil
	near   []string   // per vector, the copy's duplicate of it, or ""
}

// queueDuplicates queues into b the check of which live memory of its
// scope each new memory duplicates (same normalized content first, else
// the nearest vector at least store.DuplicateSimilarity close): two
// statements per scope of ms, and the scopes' versions as the checks see
// them. A scope whose copy in the vector cache is at the scope's version
// answers the vector check from the copy (the statement, given the
// copy's version, then reads nothing).
func (s *Store) queueDuplicates(b *pgx.Batch, org string, ms []store.NewMemory,
	hashes [][]byte, vecs []pgvector.Vector, dims int, indexed bool, now time.Time) *dupCheck {
	d := &dupCheck{cache: s.vecs, org: org, byHash: make([]*store.Memory, len(ms)), byVec: make([]*store.Memory, len(ms))}
	byScope := map[scope.Scope]*dupGroup{}
	for i, m := range ms {
		g := byScope[m.Scope]
		if g == nil {
			g = &dupGroup{scope: m.Scope}
			byScope[m.Scope] = g
			d.groups = append(d.groups, g)
		}
		g.idx = append(g.idx, i)
		g.hashes = append(g.hashes, hashes[i])
		g.vecs = append(g.vecs, vecs[i])
	}
	collect := func(g *dupGroup, into []*store.Memory) func(pgx.Rows) error {
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
	// The hash checks are planned with their parameters: a generic plan,
	// costed for a scope of one row, reads the scope in created_at order
	// and tests every row's hash. The vector checks read the whole scope
	// either way, so they run generic plans unless a scope may have its
	// own index (indexed), which only a custom plan can use.
	scopes := make([]scope.Scope, len(d.groups))
	for i, g := range d.groups {
		scopes[i] = g.scope
		b.Queue(dupHashSQL, org, string(g.scope.Kind), g.scope.ID, now, g.hashes).Query(collect(g, d.byHash))
	}
	if !indexed {
		b.Queue(searchSettingsSQL, "force_generic_plan")
	}
	vecSQL := dupVectorSQL(dims)
	for _, g := range d.groups {
		copyVersion := int64(-1)
		if s.vecs != nil {
			if v := s.vecs.get(cacheKey{org: org, sc: g.scope, dims: dims}); v != nil && !v.tooBig {
				g.copy, copyVersion = v, v.version
				g.near = nearestInCopy(v, g.vecs, dims, now)
			}
		}
		b.Queue(vecSQL, org, string(g.scope.Kind), g.scope.ID, now, g.vecs, 1-store.DuplicateSimilarity, copyVersion).Query(collect(g, d.byVec))
	}
	kinds, sids := scopeArrays(scopes)
	d.versions = make(map[scope.Scope]int64, len(d.groups))
	queueVersions(b, org, kinds, sids, d.versions)
	return d
}

// finish returns, once the statements queueDuplicates queued have run,
// each new memory's duplicate or nil. A duplicate the vector cache found
// comes from the copy, which the versions just read show is current.
func (d *dupCheck) finish() ([]*store.Memory, error) {
	// The copies that were current answered the vector check.
	for _, g := range d.groups {
		if g.copy == nil || g.copy.version != d.versions[g.scope] {
			continue
		}
		d.cache.checked.Add(1)
		for j, id := range g.near {
			if id == "" {
				continue
			}
			row, ok := g.copy.index[id]
			if !ok {
				return nil, fmt.Errorf("duplicate check: memory %s is not in the copy of %s that found it", id, g.scope.Qualified())
			}
			m := g.copy.memory(int(row), d.org, g.scope)
			d.byVec[g.idx[j]] = &m
		}
	}
	for i := range d.byHash {
		if d.byHash[i] == nil {
			d.byHash[i] = d.byVec[i]
		}
	}
	return d.byHash, nil
}

// nearestInCopy returns, for each of vecs, the id of the live row of v
// (at now) nearest it when their cosine distance is at most 1 -
// store.DuplicateSimilarity, as dupVectorSQL finds it, or "".
func nearestInCopy(v *scopeVecs, vecs []pgvector.Vector, dims int, now time.Time) []string {
	at := now.UnixNano()
	out := make([]string, len(vecs))
	for j, q := range vecs {
		qv := q.Slice()
		best, bestDot := -1, -2.0
		for i := range v.ids {
			if e := v.expires[i]; e != 0 && e <= at {
				continue
			}
			if d := store.Dot(qv, v.vec(i, dims)); d > bestDot {
				best, bestDot = i, d
			}
		}
		if best >= 0 && 1-bestDot <= 1-store.DuplicateSimilarity {
			out[j] = v.ids[best]
		}
	}
	return out
}
