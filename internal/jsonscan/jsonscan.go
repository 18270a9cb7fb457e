// Package jsonscan reads the top-level members of a JSON object without
// decoding their values: what the stdio server and the load generator
// need to tell a message apart (its id, method or result) on every line,
// where encoding/json would decode the whole message. It also writes
// strings as encoding/json does, without reflection (AppendString), for
// the tool results the server encodes itself, and checks that the member
// names of a document match a struct's field names exactly (ExactNames),
// which encoding/json matches in any case.
package jsonscan

import (
	"bytes"
	"encoding/json"
)

// Fields calls fn with the key (its raw text between the quotes, escapes
// left as they are: see KeyIs) and raw value of each member of the JSON
// object b, in order, until fn returns false, without decoding any value.
// b should be valid JSON (check with json.Valid first when it may not
// be); Fields reports false when b is not an object or ends early.
func Fields(b []byte, fn func(key, val []byte) bool) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) {
			return false
		}
		if b[i] == '}' {
			return true
		}
		if b[i] != '"' {
			return false
		}
		end := skipString(b, i)
		if end < 0 {
			return false
		}
		key := b[i+1 : end-1]
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		vend := skipValue(b, i)
		if vend < 0 {
			return false
		}
		if !fn(key, b[i:vend]) {
			return true
		}
		i = skipSpace(b, vend)
		if i < len(b) && b[i] == ',' {
			i++
			continue
		}
		return i < len(b) && b[i] == '}'
	}
}

// skipSpace returns the index of the first byte of b from i on that is
// not JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i], or -1.
func skipString(b []byte, i int) int {
	for j := i + 1; ; {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return -1
		}
		q := j + k
		n := 0
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return q + 1
		}
		j = q + 1
	}
}

// skipValue returns the index after the value starting at b[i], or -1.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); {
			switch b[j] {
			case '"':
				if j = skipString(b, j); j < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
			j++
		}
		return -1
	}
	j := i
	for j < len(b) && bytes.IndexByte([]byte(",}] \t\r\n"), b[j]) < 0 {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// KeyIs reports whether key, a member's key as Fields passes it, is s
// once its escapes are read.
func KeyIs(key []byte, s string) bool {
	if bytes.IndexByte(key, '\\') < 0 {
		return string(key) == s
	}
	var v string
	return json.Unmarshal(append(append([]byte{'"'}, key...), '"'), &v) == nil && v == s
}

// StringIs reports whether val, a valid JSON value, is the string s.
func StringIs(val []byte, s string) bool {
	if len(val) < 2 || val[0] != '"' {
		return false
	}
	return KeyIs(val[1:len(val)-1], s)
}
