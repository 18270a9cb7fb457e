package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/scope"
)

// PurgeInput is the argument of the purge tool.
type PurgeInput struct {
	Scope   string `json:"scope" jsonschema:"what to erase: session, agent, user, team:<id> or org; admins may also name user:<id> (every memory of that user) or all (the whole organization)"`
	Confirm string `json:"confirm" jsonschema:"repeat the scope exactly, to confirm"`
	Session string `json:"session,omitempty" jsonschema:"a session key naming the session scope, for transports without MCP sessions; usually omitted"`
}

// PurgeOutput is the result of the purge tool.
type PurgeOutput struct {
	Purged  map[string]int `json:"purged" jsonschema:"memories deleted, per scope"`
	Total   int            `json:"total"`
	Message string         `json:"message"`
}

var purgeTool = mcp.NewTool("purge",
	mcp.WithToolTitle("Erase a whole scope"),
	mcp.WithDescription("Permanently delete every memory in one scope. This cannot be undone. "+
		"Only use it when the user explicitly asks to forget everything in a scope; to forget one memory use delete_memory. "+
		"confirm must repeat scope exactly. Returns how many memories were deleted per scope."),
	schemas("purge"),
	mcp.WithReadOnlyHintAnnotation(false),
	mcp.WithDestructiveHintAnnotation(true),
	mcp.WithIdempotentHintAnnotation(true),
	mcp.WithOpenWorldHintAnnotation(false),
)

func (h *Handlers) purge(ctx context.Context, id scope.Identity, _ mcp.CallToolRequest, in PurgeInput) (PurgeOutput, error) {
	if in.Scope == "" {
		return PurgeOutput{}, badInput("scope is empty: name the scope to erase")
	}
	if in.Confirm != in.Scope {
		return PurgeOutput{}, badInput("confirm (%q) does not repeat scope (%q): nothing was deleted", in.Confirm, in.Scope)
	}
	key, err := sessionKey(ctx, id, in.Session)
	if err != nil {
		return PurgeOutput{}, err
	}
	id.Session = key
	t, err := id.ResolveTarget(in.Scope, key)
	if err != nil {
		return PurgeOutput{}, err
	}
	counts, err := h.Store.Purge(ctx, id, t)
	if err != nil {
		return PurgeOutput{}, err
	}
	out := PurgeOutput{Purged: make(map[string]int, len(counts)), Total: counts.Total()}
	for name, n := range counts {
		out.Purged[callerName(id, name)] = n
	}
	out.Message = "erased " + t.String()
	return out, nil
}

// callerName turns a qualified scope name from the store ("user:alice",
// "agent:alice/coder") into the name the caller uses for it ("user",
// "agent") when it is the caller's own; other users' scopes (an admin's
// erasure) keep their qualified names.
func callerName(id scope.Identity, qualified string) string {
	for _, s := range id.Visible() {
		if s.Qualified() == qualified {
			return s.String()
		}
	}
	return qualified
}
