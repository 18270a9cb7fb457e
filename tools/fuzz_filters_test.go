package tools

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzCheckTags feeds tag lists, as JSON arrays the way a client sends
// them, to the validator that add_memory, update_memory and search_memory's
// tag filter share: a refusal wraps ErrInput; an accepted list is within
// the limits, trimmed, distinct, printable UTF-8, and keeps every tag given
// in its first position.
func FuzzCheckTags(f *testing.F) {
	for _, s := range []string{`["deploy","api"]`, `[" deploy ","deploy"]`, `[""]`, `["a\u0000b"]`, `["\ufffd"]`, `["tab\there"]`,
		`["` + strings.Repeat("x", 65) + `"]`, `["` + strings.Repeat("é", 32) + `"]`, `["\u200b"]`, `["a","b","c","a"]`, `[]`} {
		f.Add(s)
	}
	h := &Handlers{}
	h.init()
	f.Fuzz(func(t *testing.T, raw string) {
		var tags []string
		if json.Unmarshal([]byte(raw), &tags) != nil {
			return
		}
		out, err := h.checkTags(tags)
		if err != nil {
			if !errors.Is(err, ErrInput) {
				t.Fatalf("checkTags(%q) error %v does not wrap ErrInput", tags, err)
			}
			return
		}
		if len(out) > h.Limits.MaxTags {
			t.Fatalf("checkTags(%q) kept %d tags, over the limit of %d", tags, len(out), h.Limits.MaxTags)
		}
		for i, tag := range out {
			switch {
			case tag == "" || tag != strings.TrimSpace(tag):
				t.Fatalf("checkTags(%q) kept %q: empty or untrimmed", tags, tag)
			case len(tag) > h.Limits.MaxTagBytes:
				t.Fatalf("checkTags(%q) kept %q of %d bytes", tags, tag, len(tag))
			case !utf8.ValidString(tag) || strings.ContainsRune(tag, utf8.RuneError) || strings.IndexFunc(tag, unicode.IsControl) >= 0:
				t.Fatalf("checkTags(%q) kept %q with invalid or control characters", tags, tag)
			case slices.Contains(out[:i], tag):
				t.Fatalf("checkTags(%q) kept %q twice", tags, tag)
			}
		}
		var want []string
		for _, tag := range tags {
			if tag = strings.TrimSpace(tag); !slices.Contains(want, tag) {
				want = append(want, tag)
			}
		}
		if !slices.Equal(out, want) {
			t.Fatalf("checkTags(%q) = %q, want %q", tags, out, want)
		}
	})
}

// FuzzCheckMetadata feeds metadata objects, decoded from JSON the way the
// tools' arguments are, to the validator: a refusal wraps ErrInput; what it
// accepts is a JSON object within the size limit, valid UTF-8, that decodes
// back to the same value.
func FuzzCheckMetadata(f *testing.F) {
	for _, s := range []string{`{"source":"chat","n":1}`, `{}`, `{"a":{"b":[null,true,1e308,-0]}}`, `{"\u0000":"\ud800"}`,
		`{"big":"` + strings.Repeat("x", 9000) + `"}`, `{"html":"<b>&</b>"}`, `{"n":12345678901234567890}`, `{"a":"\u2028"}`} {
		f.Add(s)
	}
	h := &Handlers{}
	h.init()
	f.Fuzz(func(t *testing.T, raw string) {
		var m map[string]any
		if json.Unmarshal([]byte(raw), &m) != nil {
			return
		}
		b, err := h.checkMetadata(m)
		if err != nil {
			if !errors.Is(err, ErrInput) {
				t.Fatalf("checkMetadata(%s) error %v does not wrap ErrInput", raw, err)
			}
			return
		}
		if m == nil {
			if b != nil {
				t.Fatalf("checkMetadata(nil) = %s, want nil", b)
			}
			return
		}
		if len(b) > h.Limits.MaxMetadataBytes || !utf8.Valid(b) || len(b) == 0 || b[0] != '{' {
			t.Fatalf("checkMetadata(%s) = %s: not a UTF-8 JSON object within %d bytes", raw, b, h.Limits.MaxMetadataBytes)
		}
		var back map[string]any
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("checkMetadata(%s) = %s, which does not decode: %v", raw, b, err)
		}
		if !reflect.DeepEqual(back, m) {
			t.Fatalf("checkMetadata(%s) = %s, which decodes to %v, not %v", raw, b, back, m)
		}
	})
}
