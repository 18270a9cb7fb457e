package jsonscan

import (
	"math/bits"
	"unicode/utf8"
)

// PlainPrefix returns the length of the longest prefix of s that
// json.Marshal writes unchanged inside a string: printable ASCII other
// than ", \, <, > and &. It reads eight bytes at a time.
func PlainPrefix[T string | []byte](s T) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		// Read little-endian: the compiler makes this one load, with
		// one bounds check.
		b := s[i : i+8]
		w := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
			uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
		if m := notPlain(w); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			break
		}
	}
	return i
}

// notPlain returns a mask whose lowest set bit is the high bit of the
// first byte of w (eight bytes read little-endian) that is not plain (see
// PlainPrefix), or 0 when they all are. The tests for equal bytes only
// find out whether there is one, and may also mark a byte above (later
// than) a true one; the lowest mark is always true.
func notPlain(w uint64) uint64 {
	// A byte below 0x20 or above 0x7F, or one that is 0 once XORed with
	// ", \ or <. " is 0x22 and & is 0x26, < is 0x3C and > is 0x3E: each
	// pair is one byte once the bit they differ in is set.
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	q, a, b := (w|0x04*ones)^0x26*ones, (w|0x02*ones)^0x3E*ones, w^0x5C*ones
	return ((w-0x20*ones)&^w | w | (q-ones)&^q | (a-ones)&^a | (b-ones)&^b) & highs
}

// AppendString appends s quoted as json.Marshal writes a string: HTML
// characters, U+2028 and U+2029 escaped, invalid UTF-8 replaced by
// U+FFFD.
func AppendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if i += PlainPrefix(s[i:]); i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
