package sqlite

import (
	"bytes"
	"slices"
	"unicode"
	"unicode/utf8"
)

// maxQueryWords bounds the distinct words of a full-text query.
const maxQueryWords = 64

// BM25 parameters, as SQLite's FTS5 uses them.
const (
	bm25K1 = 1.2
	bm25B  = 0.75
	// bm25MinIDF is the IDF of a term held by half the rows or more, as
	// FTS5 floors it: such a term adds almost nothing to a score.
	bm25MinIDF = 1e-6
)

// isTokenRune reports whether r belongs to a word: letters, digits, marks
// and private-use characters, as SQLite's unicode61 tokenizer sees words.
func isTokenRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.IsMark(r) || unicode.Is(unicode.Co, r)
}

// latinBase maps U+00C0..U+017F to their letters without diacritics (0:
// keep the rune, lower-cased).
var latinBase = func() [0x180 - 0xC0]byte {
	const s = "aaaaaa\x00ceeeeiiii\x00nooooo\x00ouuuuy\x00\x00aaaaaa\x00ceeeeiiii\x00nooooo\x00ouuuuy\x00yaaaaaaccccccccddddeeeeeeeeeegggggggghhhhiiiiiiiiii\x00\x00jjkk\x00llllll\x00\x00llnnnnnn\x00\x00\x00oooooo\x00\x00rrrrrrssssssssttttttuuuuuuuuuuuuwwyyyzzzzzzs"
	var t [0x180 - 0xC0]byte
	copy(t[:], s)
	return t
}()

// foldRune lower-cases r and strips a Latin diacritic; it returns -1 for
// a combining mark, which is dropped.
func foldRune(r rune) rune {
	if r < 0x80 {
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}
	if 0x300 <= r && r < 0x370 {
		return -1
	}
	r = unicode.ToLower(r)
	if 0xC0 <= r && r < 0x180 {
		if b := latinBase[r-0xC0]; b != 0 {
			return rune(b)
		}
	}
	return r
}

// tokenizer splits text into folded terms. Its buffers are reused from
// call to call, so one tokenizer serves one goroutine.
type tokenizer struct {
	buf   []byte
	spans [][2]int32
}

// terms calls fn once for each distinct term of s, with the number of
// times it occurs. term is valid only during the call.
func (tk *tokenizer) terms(s string, fn func(term []byte, tf int)) {
	tk.buf, tk.spans = tk.buf[:0], tk.spans[:0]
	start := -1
	for _, r := range s {
		if r == utf8.RuneError || !isTokenRune(r) {
			if start >= 0 && len(tk.buf) > start {
				tk.spans = append(tk.spans, [2]int32{int32(start), int32(len(tk.buf))})
			}
			start = -1
			continue
		}
		if start < 0 {
			start = len(tk.buf)
		}
		if f := foldRune(r); f >= 0 {
			tk.buf = utf8.AppendRune(tk.buf, f)
		}
	}
	if start >= 0 && len(tk.buf) > start {
		tk.spans = append(tk.spans, [2]int32{int32(start), int32(len(tk.buf))})
	}
	buf := tk.buf
	slices.SortFunc(tk.spans, func(a, b [2]int32) int { return bytes.Compare(buf[a[0]:a[1]], buf[b[0]:b[1]]) })
	for i := 0; i < len(tk.spans); {
		t := buf[tk.spans[i][0]:tk.spans[i][1]]
		j := i + 1
		for j < len(tk.spans) && bytes.Equal(buf[tk.spans[j][0]:tk.spans[j][1]], t) {
			j++
		}
		fn(t, j-i)
		i = j
	}
}

// queryTerms returns the distinct terms of a query, in the order they
// first occur, at most maxQueryWords of them.
func queryTerms(text string) []string {
	var out []string
	var tk tokenizer
	// Keep the query's order: tokenize word by word.
	start := -1
	flush := func(end int) {
		if start < 0 {
			return
		}
		tk.terms(text[start:end], func(t []byte, _ int) {
			if len(out) < maxQueryWords && !slices.Contains(out, string(t)) {
				out = append(out, string(t))
			}
		})
		start = -1
	}
	for i, r := range text {
		if r == utf8.RuneError || !isTokenRune(r) {
			flush(i)
		} else if start < 0 {
			start = i
		}
	}
	flush(len(text))
	return out
}
