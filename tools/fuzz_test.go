package tools

import (
	"encoding/json"
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mark3labs/mcp-go/mcp"
)

// FuzzBindArguments decodes arbitrary argument objects into every tool's
// input type: decoding must never panic, and a decoded value must never
// carry an argument outside the schema.
func FuzzBindArguments(f *testing.F) {
	for _, s := range []string{`{"content":"x"}`, `{"content":1}`, `{"org_id":"a"}`, `{"query":"q","limit":1e99}`, `{"tags":[1,2]}`,
		`{"metadata":{"a":{"b":[null]}}}`, `[]`, `null`, `{"content":"\ud800"}`, `{"scopes":"user"}`, `{"confirm":"user","scope":"user"}`,
		`{"query":"q","limit":10.0}`, `{"query":"q","limit":1e1}`, `{"content":"x","content":"y"}`, `{"content":"a\u00e9\u2028"}`,
		`{"query":"q","limit":9007199254740993}`, `{"metadata":{"n":1.5e300}}`, "{\"content\":\"\xff0\",\"Content\":\"\"}", `{"Query":"q","query":"r"}`} {
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

		// A call from the wire also holds the arguments' JSON: it binds to
		// what the map alone binds to, but for integers a float64 cannot
		// hold (16 digits or more), which it keeps exact.
		wire := req
		wire.Params.RawArguments = json.RawMessage(raw)
		if !longNumber.MatchString(raw) {
			sameBinding[AddMemoryInput](t, req, wire)
			sameBinding[SearchMemoryInput](t, req, wire)
			sameBinding[PurgeInput](t, req, wire)
			sameBinding[UpdateMemoryInput](t, req, wire)
		}
	})
}

// longNumber matches a run of digits too long for a float64 to hold exactly.
var longNumber = regexp.MustCompile(`[0-9]{16}`)

// sameBinding fails t unless bind gives the same value and the same
// error, if any, for both requests.
func sameBinding[In any](t *testing.T, fromMap, fromWire mcp.CallToolRequest) {
	t.Helper()
	want, wantErr := bind[In](fromMap)
	got, err := bind[In](fromWire)
	if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
		t.Fatalf("bind %T from the wire: error %v, from the map: %v", got, err, wantErr)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("bind %T from the wire differs from the map's (-map +wire):\n%s", got, diff)
	}
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
