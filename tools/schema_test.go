package tools

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mark3labs/mcp-go/mcp"
)

var update = flag.Bool("update", false, "rewrite the tool schema snapshots in testdata")

// TestToolSchemasMatchSnapshots keeps each tool's published definition
// (name, description, annotations, input and output schema) in
// testdata/<tool>.json. The schema is API for LLM clients: a change must be
// deliberate, so a stale or missing snapshot fails; regenerate with
// `go test ./tools -run TestToolSchemas -update` and review the diff.
func TestToolSchemasMatchSnapshots(t *testing.T) {
	for _, tool := range []mcp.Tool{addMemoryTool, searchMemoryTool, listScopesTool, purgeTool, updateMemoryTool, deleteMemoryTool} {
		t.Run(tool.Name, func(t *testing.T) {
			got, err := json.MarshalIndent(tool, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tool.Name+".json")
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("no snapshot for %s (%v): run go test ./tools -run TestToolSchemas -update and commit testdata", tool.Name, err)
			}
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(want, &w); err != nil {
				t.Fatalf("snapshot %s is not JSON: %v", path, err)
			}
			if diff := cmp.Diff(w, g); diff != "" {
				t.Errorf("%s schema changed (-snapshot +now):\n%s\nIf intended, rerun with -update and commit.", tool.Name, diff)
			}
		})
	}
}

// TestToolAnnotations pins the hints clients use to decide what to confirm
// with the user.
func TestToolAnnotations(t *testing.T) {
	for _, tc := range []struct {
		tool                  mcp.Tool
		readOnly, destructive bool
	}{
		{searchMemoryTool, true, false},
		{listScopesTool, true, false},
		{addMemoryTool, false, false},
		{updateMemoryTool, false, true},
		{deleteMemoryTool, false, true},
		{purgeTool, false, true},
	} {
		a := tc.tool.Annotations
		if a.ReadOnlyHint == nil || *a.ReadOnlyHint != tc.readOnly || a.DestructiveHint == nil || *a.DestructiveHint != tc.destructive ||
			a.OpenWorldHint == nil || *a.OpenWorldHint {
			t.Errorf("%s annotations = %+v, want readOnly=%v destructive=%v openWorld=false", tc.tool.Name, a, tc.readOnly, tc.destructive)
		}
	}
}
