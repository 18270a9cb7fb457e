package tools

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/internal/view"
)

// reflected is each tool's schemas as mcp-go reflects them from the Go
// types: what schemas/*.json must hold.
func reflected() map[string]mcp.Tool {
	return map[string]mcp.Tool{
		"add_memory":    mcp.NewTool("add_memory", mcp.WithInputSchema[AddMemoryInput](), mcp.WithOutputSchema[AddMemoryOutput]()),
		"delete_memory": mcp.NewTool("delete_memory", mcp.WithInputSchema[DeleteMemoryInput](), mcp.WithOutputSchema[DeleteMemoryOutput]()),
		"list_scopes":   mcp.NewTool("list_scopes", mcp.WithInputSchema[ListScopesInput](), mcp.WithOutputSchema[view.Scopes]()),
		"purge":         mcp.NewTool("purge", mcp.WithInputSchema[PurgeInput](), mcp.WithOutputSchema[PurgeOutput]()),
		"search_memory": mcp.NewTool("search_memory", mcp.WithInputSchema[SearchMemoryInput](), mcp.WithOutputSchema[SearchMemoryOutput]()),
		"update_memory": mcp.NewTool("update_memory", mcp.WithInputSchema[UpdateMemoryInput](), mcp.WithOutputSchema[view.Memory]()),
	}
}

// TestSchemasCurrent wants schemas/*.json to be what the Go types reflect
// to, and every tool to describe itself (tools/list) exactly as it would
// with the schemas reflected at start. With -update (the flag of
// schema_test.go) it rewrites the files.
func TestSchemasCurrent(t *testing.T) {
	tools := map[string]mcp.Tool{
		"add_memory": addMemoryTool, "delete_memory": deleteMemoryTool, "list_scopes": listScopesTool,
		"purge": purgeTool, "search_memory": searchMemoryTool, "update_memory": updateMemoryTool,
	}
	for name, r := range reflected() {
		out, err := json.Marshal(r.OutputSchema)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []struct {
			file string
			want []byte
		}{{name + ".input", r.RawInputSchema}, {name + ".output", out}} {
			if *update {
				var pretty bytes.Buffer
				if err := json.Indent(&pretty, f.want, "", "  "); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join("schemas", f.file+".json"), append(pretty.Bytes(), '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			var got, want bytes.Buffer
			if err := json.Compact(&got, schema(f.file)); err != nil {
				t.Fatalf("schemas/%s.json: %v", f.file, err)
			}
			if err := json.Compact(&want, f.want); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Errorf("schemas/%s.json is not what the Go types reflect to (run go test ./tools -run TestSchemasCurrent -update):\n got %s\nwant %s", f.file, got.Bytes(), want.Bytes())
			}
		}
		if *update {
			continue
		}
		// The whole tool, as tools/list shows it.
		tool := tools[name]
		withReflected := tool
		withReflected.RawInputSchema, withReflected.InputSchema = r.RawInputSchema, r.InputSchema
		withReflected.RawOutputSchema, withReflected.OutputSchema = nil, r.OutputSchema
		got, err := json.Marshal(tool)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(withReflected)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s lists as\n%s\nwant, with the schemas reflected,\n%s", name, got, want)
		}
	}
}
