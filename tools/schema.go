package tools

import (
	"bytes"
	"embed"
	"encoding/json"

	"github.com/mark3labs/mcp-go/mcp"
)

// The tools' input and output schemas, as mcp.WithInputSchema and
// mcp.WithOutputSchema reflect them from the Go types, written out ahead
// of time: reflecting them at start took about 10 ms of a stdio server's
// start (Claude Desktop starts one per conversation). TestSchemasCurrent
// checks them against the types; `go test ./tools -run TestSchemasCurrent
// -update` rewrites them.
//
//go:embed schemas/*.json
var schemaFiles embed.FS

// schema returns the schema file schemas/name.json.
func schema(name string) json.RawMessage {
	b, err := schemaFiles.ReadFile("schemas/" + name + ".json")
	if err != nil {
		panic("tools: no schema " + name + ": " + err.Error())
	}
	return json.RawMessage(bytes.TrimSpace(b))
}

// schemas gives a tool its schemas from schemas/name.input.json and
// schemas/name.output.json, as mcp.WithInputSchema and
// mcp.WithOutputSchema would set them.
func schemas(name string) mcp.ToolOption {
	in, out := schema(name+".input"), schema(name+".output")
	return func(t *mcp.Tool) {
		t.InputSchema.Type = "" // the raw schema replaces it
		t.RawInputSchema = in
		t.RawOutputSchema = out
	}
}
