package tools

import (
	"encoding/json"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

// FuzzBindArguments decodes arbitrary argument objects into every tool's
// input type: decoding must never panic, and a decoded value must never
// carry an argument outside the schema.
func FuzzBindArguments(f *testing.F) {
	for _, s := range []string{`{"content":"x"}`, `{"content":1}`, `{"org_id":"a"}`, `{"query":"q","limit":1e99}`, `{"tags":[1,2]}`,
		`{"metadata":{"a":{"b":[null]}}}`, `[]`, `null`, `{"content":"\ud800"}`, `{"scopes":"user"}`, `{"confirm":"user","scope":"user"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var args any
		if json.Unmarshal([]byte(raw), &args) != nil {
			return
		}
		req := mcp.CallToolRequest{}
		req.Params.Arguments = args
		check := func(err error, v any) {
			if err != nil {
				_ = describeBindError(err)
				return
			}
			if m, ok := args.(map[string]any); ok {
				if _, has := m["org_id"]; has {
					t.Fatalf("arguments with org_id decoded into %T without error", v)
				}
			}
		}
		a, err := bind[AddMemoryInput](req)
		check(err, a)
		s, err := bind[SearchMemoryInput](req)
		check(err, s)
		p, err := bind[PurgeInput](req)
		check(err, p)
		u, err := bind[UpdateMemoryInput](req)
		check(err, u)
	})
}

// FuzzCheckText checks the text validator never accepts invalid UTF-8,
// blank text or NUL characters.
func FuzzCheckText(f *testing.F) {
	for _, s := range []string{"hello", "", " ", "\xff", "a\x00b", "\ufffd", "ok ✓"} {
		f.Add(s)
	}
	h := &Handlers{}
	h.init()
	f.Fuzz(func(t *testing.T, s string) {
		if err := checkText("content", s, h.Limits.MaxContentBytes); err != nil {
			return
		}
		for i, r := range s {
			if r == 0 || r == 0xFFFD {
				t.Fatalf("accepted %q with %U at %d", s, r, i)
			}
		}
		if len(s) == 0 {
			t.Fatal("accepted empty text")
		}
	})
}
