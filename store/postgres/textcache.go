package postgres

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// The text half from the cache.
//
// The text half ranks a scope's rows by ts_rank(tsv, q), where tsv is the
// row's generated tsvector ('simple' configuration) and q the OR of the
// query's words (ftsQuery). In SQL that reads every row of the scope
// that shares a word with the query, which for common words is most of
// them: for a scope of 1,000 memories, about 940 heap pages on every
// search. A copy in the vector cache therefore also keeps its rows'
// lexemes, as PostgreSQL stored them (read back as tsv::text, so the
// server's parser decided them), in an inverted index, and ranks them
// with ts_rank's own arithmetic: float32 where PostgreSQL computes in
// float, float64 where it computes in double, in its order, so that the
// ranks are the same numbers bit for bit and order the same way.
//
// A copy can rank the text half only when it holds every row of its scope
// (a row without a vector of the copy's dimension is not in it, yet the
// text half would find it), and a query only when PostgreSQL would turn
// each of its words into that same word as a lexeme: words of ASCII
// letters and digits. Otherwise the text half runs in SQL, as before.

// tsWeights are ts_rank's default weights of D, C, B and A positions.
var tsWeights = [4]float32{0.1, 0.2, 0.4, 1.0}

// tsMaxLexeme is the longest lexeme PostgreSQL indexes (MAXSTRLEN); a
// query word longer than that is dropped by to_tsquery.
const tsMaxLexeme = 2047

// posting is one row holding a lexeme, with the lexeme's share of the
// row's rank before ts_rank's division by 1.64493406685 (the sum of
// 1/i^2): the float value of (wjm + resj - wjm/((jm+1)^2)).
type posting struct {
	row int32
	w   float32
}

// lexemeWeight computes a lexeme's posting weight from the weights
// (0 = D ... 3 = A) of its positions, as calc_rank_or does.
func lexemeWeight(weights []uint8) float32 {
	if len(weights) == 0 {
		weights = []uint8{0} // a lexeme without positions counts as one D
	}
	var resj float32
	wjm, jm := float32(-1), 0
	for j, wt := range weights {
		wp := tsWeights[wt]
		resj = float32(resj + float32(wp/float32((j+1)*(j+1))))
		if wp > wjm {
			wjm, jm = wp, j
		}
	}
	return float32(float32(wjm+resj) - float32(wjm/float32((jm+1)*(jm+1))))
}

// addPosting adds w's share to a row's running rank, as calc_rank_or's
// res = res + (...) / 1.64493406685: float plus double, stored as float.
func addPosting(res, w float32) float32 {
	return float32(float64(res) + float64(w)/1.64493406685)
}

// parseTSVector calls fn for each lexeme of s, a tsvector's text output
// ('lexeme':1,5B 'other':2), with the weights of its positions.
func parseTSVector(s string, fn func(lexeme string, weights []uint8)) error {
	var (
		lex     strings.Builder
		weights []uint8
	)
	bad := func(at int, what string) error {
		return fmt.Errorf("tsvector %.40q: %s at byte %d", s, what, at)
	}
	i := 0
	for i < len(s) {
		if s[i] == ' ' {
			i++
			continue
		}
		if s[i] != '\'' {
			return bad(i, "expected a quoted lexeme")
		}
		i++
		lex.Reset()
		for {
			if i >= len(s) {
				return bad(i, "unterminated lexeme")
			}
			c := s[i]
			if c == '\'' && i+1 < len(s) && s[i+1] == '\'' {
				lex.WriteByte('\'')
				i += 2
				continue
			}
			if c == '\\' && i+1 < len(s) {
				lex.WriteByte(s[i+1])
				i += 2
				continue
			}
			if c == '\'' {
				i++
				break
			}
			lex.WriteByte(c)
			i++
		}
		weights = weights[:0]
		if i < len(s) && s[i] == ':' {
			i++
			for {
				start := i
				for i < len(s) && '0' <= s[i] && s[i] <= '9' {
					i++
				}
				if i == start {
					return bad(i, "expected a position")
				}
				var wt uint8
				if i < len(s) {
					switch s[i] {
					case 'A', 'a':
						wt, i = 3, i+1
					case 'B', 'b':
						wt, i = 2, i+1
					case 'C', 'c':
						wt, i = 1, i+1
					case 'D', 'd':
						i++
					}
				}
				weights = append(weights, wt)
				if i < len(s) && s[i] == ',' {
					i++
					continue
				}
				break
			}
		}
		if i < len(s) && s[i] != ' ' {
			return bad(i, "expected a space")
		}
		fn(lex.String(), weights)
	}
	return nil
}

// cacheLexemes returns the lexemes of the query text as to_tsquery
// ('simple', ftsQuery(text)) makes them, sorted and unique, and ok when
// it can say so without asking the server: every word of ASCII letters
// and digits, none longer than PostgreSQL indexes, and none holding a
// digit, an e and a digit in a row (PostgreSQL's parser reads "12e3" in
// "12e3x" as a number and splits the word into a phrase). Words are what
// ftsQuery keeps, so both halves see the same query.
func cacheLexemes(tsq string) (lexemes []string, ok bool) {
	if tsq == "" {
		return nil, true
	}
	for _, part := range strings.Split(tsq, " | ") {
		w := strings.TrimSuffix(strings.TrimPrefix(part, "'"), "'")
		if w == "" || len(w) > tsMaxLexeme {
			return nil, false
		}
		for i := 0; i < len(w); i++ {
			if c := w[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
				return nil, false
			}
			if w[i] == 'e' && i > 0 && i+1 < len(w) && isDigit(w[i-1]) && isDigit(w[i+1]) {
				return nil, false
			}
		}
		lexemes = append(lexemes, w)
	}
	slices.Sort(lexemes)
	return slices.Compact(lexemes), true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// rankText returns the n rows of snaps holding any of lexemes (sorted,
// unique) that are alive at now and carry tags, by ts_rank then newest
// first, then the higher id (as the statement's text half), best first.
// Each hit's dist is minus its rank, so that hits order as the vector
// half's do.
func rankText(snaps []*scopeVecs, lexemes []string, tags []string, now time.Time, n int) []vecHit {
	at := now.UnixNano()
	size := float32(len(lexemes))
	top := make([]vecHit, 0, n+1)
	for si, v := range snaps {
		acc := make([]float32, len(v.ids))
		var touched []int32
		for _, lx := range lexemes {
			for _, p := range v.postings[lx] {
				if acc[p.row] == 0 {
					touched = append(touched, p.row)
				}
				acc[p.row] = addPosting(acc[p.row], p.w)
			}
		}
	rows:
		for _, i := range touched {
			if e := v.expires[i]; e != 0 && e <= at {
				continue
			}
			for _, t := range tags {
				if !slices.Contains(v.tags[i], t) {
					continue rows
				}
			}
			rank := acc[i] / size
			top = offer(top, vecHit{snap: int32(si), row: i, dist: -float64(rank), created: v.created[i], id: v.ids[i]}, n)
		}
	}
	sortHits(top)
	return top
}
