package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/scope"
)

// DeleteMemoryInput is the argument of the delete_memory tool.
type DeleteMemoryInput struct {
	ID      string `json:"id" jsonschema:"the id of the memory to forget"`
	Session string `json:"session,omitempty" jsonschema:"a session key naming the session scope, for transports without MCP sessions; usually omitted"`
}

// DeleteMemoryOutput is the result of the delete_memory tool.
type DeleteMemoryOutput struct {
	ID      string `json:"id"`
	Deleted bool   `json:"deleted"`
}

var deleteMemoryTool = mcp.NewTool("delete_memory",
	mcp.WithToolTitle("Forget a memory"),
	mcp.WithDescription("Permanently delete one memory you may write, by id, when it is wrong or the user asks to forget it."),
	schemas("delete_memory"),
	mcp.WithReadOnlyHintAnnotation(false),
	mcp.WithDestructiveHintAnnotation(true),
	mcp.WithIdempotentHintAnnotation(true),
	mcp.WithOpenWorldHintAnnotation(false),
)

func (h *Handlers) deleteMemory(ctx context.Context, id scope.Identity, _ mcp.CallToolRequest, in DeleteMemoryInput) (DeleteMemoryOutput, error) {
	if err := id.Require(scope.PermWrite); err != nil {
		return DeleteMemoryOutput{}, err
	}
	if err := checkID(in.ID); err != nil {
		return DeleteMemoryOutput{}, err
	}
	key, err := sessionKey(ctx, id, in.Session)
	if err != nil {
		return DeleteMemoryOutput{}, err
	}
	id.Session = key
	if err := h.Store.Delete(ctx, id, in.ID); err != nil {
		return DeleteMemoryOutput{}, err
	}
	return DeleteMemoryOutput{ID: in.ID, Deleted: true}, nil
}
