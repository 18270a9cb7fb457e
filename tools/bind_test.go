package tools

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/internal/jsonscan"
)

// TestBindArgumentNames checks that argument names match the schema
// exactly, from the map and from the wire alike: encoding/json alone would
// take Content for content, and of two such names keep whichever came
// last, which differs between the wire's order and the map's.
func TestBindArgumentNames(t *testing.T) {
	for _, tc := range []struct {
		name    string
		raw     string
		unknown string // the argument refused, when refused
		refused bool
		content string
	}{
		{"exact", `{"content":"a","tags":["t"]}`, "", false, "a"},
		{"repeated exact name, the last wins", `{"content":"a","content":"b"}`, "", false, "b"},
		{"capitalized", `{"Content":"a"}`, "Content", true, ""},
		{"upper case", `{"CONTENT":"a"}`, "CONTENT", true, ""},
		{"two cases of one name", "{\"content\":\"\xff0\",\"Content\":\"\"}", "Content", true, ""},
		{"first unknown in sorted order", `{"zeta":1,"Tags":[],"content":"a"}`, "Tags", true, ""},
		{"empty name first", `{"":"","limit":0,"content":"a"}`, "", true, ""},
		{"identity argument", `{"content":"a","org_id":"other"}`, "org_id", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var args any
			if err := json.Unmarshal([]byte(tc.raw), &args); err != nil {
				t.Fatal(err)
			}
			fromMap := mcp.CallToolRequest{}
			fromMap.Params.Arguments = args
			fromWire := fromMap
			fromWire.Params.RawArguments = json.RawMessage(tc.raw)
			for _, req := range []mcp.CallToolRequest{fromMap, fromWire} {
				in, err := bind[AddMemoryInput](req)
				var ne *jsonscan.NameError
				switch {
				case !tc.refused && err != nil:
					t.Fatalf("bind: %v", err)
				case !tc.refused && in.Content != tc.content:
					t.Fatalf("content = %q, want %q", in.Content, tc.content)
				case tc.refused && !errors.As(err, &ne):
					t.Fatalf("bind: error %v, want an unknown argument", err)
				case tc.refused && ne.Name != tc.unknown:
					t.Fatalf("unknown argument %q, want %q", ne.Name, tc.unknown)
				}
			}
		})
	}
}
