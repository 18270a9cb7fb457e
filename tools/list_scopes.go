package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/internal/view"
	"github.com/scopemem/scopemem/scope"
)

// ListScopesInput is the argument of the list_scopes tool.
type ListScopesInput struct {
	Session string `json:"session,omitempty" jsonschema:"a session key naming the session scope, for transports without MCP sessions; usually omitted"`
}

var listScopesTool = mcp.NewTool("list_scopes",
	mcp.WithToolTitle("List memory scopes"),
	mcp.WithDescription("List the memory scopes you can see (session, agent, user, your teams, org), "+
		"how many memories each holds, and which ones you may write to."),
	schemas("list_scopes"),
	mcp.WithReadOnlyHintAnnotation(true),
	mcp.WithDestructiveHintAnnotation(false),
	mcp.WithIdempotentHintAnnotation(true),
	mcp.WithOpenWorldHintAnnotation(false),
)

func (h *Handlers) listScopes(ctx context.Context, id scope.Identity, _ mcp.CallToolRequest, in ListScopesInput) (view.Scopes, error) {
	if err := id.Require(scope.PermRead); err != nil {
		return view.Scopes{}, err
	}
	key, err := sessionKey(ctx, id, in.Session)
	if err != nil {
		return view.Scopes{}, err
	}
	id.Session = key
	return view.ListScopes(ctx, h.Store, id, h.DefaultScope)
}
