package tools

import (
	"context"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// AddMemoryInput is the argument of the add_memory tool.
type AddMemoryInput struct {
	Content  string         `json:"content" jsonschema:"the fact to remember: one or a few self-contained sentences (at most 32 KiB of UTF-8)"`
	Scope    string         `json:"scope,omitempty" jsonschema:"where to store it: session (this run only), agent (this agent), user (all of this user's agents), team:<id> (a team you belong to) or org (everyone in the organization). Omit to use the default scope"`
	Tags     []string       `json:"tags,omitempty" jsonschema:"short labels to filter by later, at most 32"`
	Metadata map[string]any `json:"metadata,omitempty" jsonschema:"any JSON object to keep with the memory (at most 8 KiB)"`
	TTL      string         `json:"ttl,omitempty" jsonschema:"forget the memory after this long, written like 30m, 24h or 7d. Session memories expire after 24h unless set"`
	Session  string         `json:"session,omitempty" jsonschema:"a session key naming the session scope, for transports without MCP sessions; usually omitted"`
}

// AddMemoryOutput is the result of the add_memory tool.
type AddMemoryOutput struct {
	ID        string     `json:"id" jsonschema:"the memory's id, for update_memory and delete_memory"`
	Scope     string     `json:"scope" jsonschema:"the scope it was stored in"`
	Duplicate bool       `json:"duplicate" jsonschema:"true when an identical or near-identical memory was already in that scope: nothing new was stored and id is the existing memory"`
	Content   string     `json:"content" jsonschema:"the stored content (the existing memory's, for a duplicate)"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Message   string     `json:"message"`
}

var addMemoryTool = mcp.NewTool("add_memory",
	mcp.WithToolTitle("Remember a fact"),
	mcp.WithDescription("Store one memory: a fact, preference or decision worth recalling in later conversations. "+
		"It goes to your default scope unless scope names another one you may write (see list_scopes). "+
		"If the same or nearly the same memory is already in that scope, nothing new is stored and the existing one is returned with duplicate=true. "+
		"Store facts, not chit-chat; one idea per memory."),
	schemas("add_memory"),
	mcp.WithReadOnlyHintAnnotation(false),
	mcp.WithDestructiveHintAnnotation(false),
	mcp.WithIdempotentHintAnnotation(true),
	mcp.WithOpenWorldHintAnnotation(false),
)

func (h *Handlers) addMemory(ctx context.Context, id scope.Identity, _ mcp.CallToolRequest, in AddMemoryInput) (AddMemoryOutput, error) {
	if err := id.Require(scope.PermWrite); err != nil {
		return AddMemoryOutput{}, err
	}
	if err := checkText("content", in.Content, h.Limits.MaxContentBytes); err != nil {
		return AddMemoryOutput{}, err
	}
	tags, err := h.checkTags(in.Tags)
	if err != nil {
		return AddMemoryOutput{}, err
	}
	meta, err := h.checkMetadata(in.Metadata)
	if err != nil {
		return AddMemoryOutput{}, err
	}
	key, err := sessionKey(ctx, id, in.Session)
	if err != nil {
		return AddMemoryOutput{}, err
	}
	id.Session = key
	name := in.Scope
	if name == "" {
		name = h.DefaultScope
	}
	sc, err := id.Resolve(name, key)
	if err != nil {
		return AddMemoryOutput{}, err
	}
	if err := id.CanWrite(sc); err != nil {
		return AddMemoryOutput{}, err
	}
	var expires *time.Time
	if in.TTL != "" {
		d, err := h.parseTTL(in.TTL)
		if err != nil {
			return AddMemoryOutput{}, err
		}
		t := h.Now().Add(d).UTC()
		expires = &t
	} else if sc.Kind == scope.KindSession {
		t := h.Now().Add(h.Limits.SessionTTL).UTC()
		expires = &t
	}
	vec, err := h.embedOne(ctx, in.Content)
	if err != nil {
		return AddMemoryOutput{}, err
	}
	added, err := h.Store.Add(ctx, id, []store.NewMemory{{
		Scope: sc, Content: in.Content, Tags: tags, Metadata: meta, Vector: vec, ExpiresAt: expires,
	}})
	if err != nil {
		return AddMemoryOutput{}, err
	}
	a := added[0]
	out := AddMemoryOutput{ID: a.ID, Scope: a.Scope.String(), Duplicate: a.Duplicate, Content: a.Content, ExpiresAt: a.ExpiresAt}
	if a.Duplicate {
		out.Message = "already remembered in " + out.Scope + ": nothing new was stored"
	} else {
		out.Message = "remembered in " + out.Scope
	}
	return out, nil
}
