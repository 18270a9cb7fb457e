package tools

import (
	"context"
	"encoding/json"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/internal/view"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// UpdateMemoryInput is the argument of the update_memory tool.
type UpdateMemoryInput struct {
	ID       string         `json:"id" jsonschema:"the id of the memory, from add_memory or search_memory"`
	Content  *string        `json:"content,omitempty" jsonschema:"new content, replacing the old"`
	Tags     *[]string      `json:"tags,omitempty" jsonschema:"new tags, replacing the old ones ([] removes all)"`
	Metadata map[string]any `json:"metadata,omitempty" jsonschema:"new metadata object, replacing the old one"`
	Session  string         `json:"session,omitempty" jsonschema:"a session key naming the session scope, for transports without MCP sessions; usually omitted"`
}

var updateMemoryTool = mcp.NewTool("update_memory",
	mcp.WithToolTitle("Correct a memory"),
	mcp.WithDescription("Change the content, tags or metadata of one memory you may write, when a remembered fact has changed. "+
		"Fields you omit stay as they are."),
	schemas("update_memory"),
	mcp.WithReadOnlyHintAnnotation(false),
	mcp.WithDestructiveHintAnnotation(true),
	mcp.WithIdempotentHintAnnotation(true),
	mcp.WithOpenWorldHintAnnotation(false),
)

func (h *Handlers) updateMemory(ctx context.Context, id scope.Identity, _ mcp.CallToolRequest, in UpdateMemoryInput) (view.Memory, error) {
	if err := id.Require(scope.PermWrite); err != nil {
		return view.Memory{}, err
	}
	if err := checkID(in.ID); err != nil {
		return view.Memory{}, err
	}
	if in.Content == nil && in.Tags == nil && in.Metadata == nil {
		return view.Memory{}, badInput("nothing to change: give content, tags or metadata")
	}
	var p store.Patch
	if in.Content != nil {
		if err := checkText("content", *in.Content, h.Limits.MaxContentBytes); err != nil {
			return view.Memory{}, err
		}
		p.Content = in.Content
	}
	if in.Tags != nil {
		tags, err := h.checkTags(*in.Tags)
		if err != nil {
			return view.Memory{}, err
		}
		p.Tags = &tags
	}
	if in.Metadata != nil {
		meta, err := h.checkMetadata(in.Metadata)
		if err != nil {
			return view.Memory{}, err
		}
		raw := json.RawMessage(meta)
		p.Metadata = &raw
	}
	key, err := sessionKey(ctx, id, in.Session)
	if err != nil {
		return view.Memory{}, err
	}
	id.Session = key
	if p.Content != nil {
		vec, err := h.embedOne(ctx, *p.Content)
		if err != nil {
			return view.Memory{}, err
		}
		p.Vector = vec
	}
	m, err := h.Store.Update(ctx, id, in.ID, p)
	if err != nil {
		return view.Memory{}, err
	}
	return view.Of(m), nil
}

// checkID rejects an empty or absurd memory id before it reaches the store.
func checkID(id string) error {
	if id == "" {
		return badInput("id is empty: pass the id from add_memory or search_memory")
	}
	if len(id) > 128 {
		return badInput("id is longer than any memory id")
	}
	return checkText("id", id, 128)
}
