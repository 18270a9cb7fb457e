package app

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// addConformanceFixture registers test_error_handling, the tool the MCP
// conformance suite's tools-call-error scenario expects: it always fails,
// so the suite can check that a failing tool reaches the client as a
// result with isError set, through this server's HTTP layer.
func addConformanceFixture(s *server.MCPServer) {
	s.AddTool(mcp.NewTool("test_error_handling",
		mcp.WithDescription("Conformance fixture: always returns a tool error."),
		mcp.WithReadOnlyHintAnnotation(true),
	), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultError("This tool intentionally returns an error for testing"), nil
	})
}
