// Package resources serves scopemem's MCP resources: memory://scopes (the
// caller's scopes with counts, as list_scopes returns them) and the template
// memory://memories/{id} (one memory the caller can see).
//
// Like the tools, the resources read the caller's identity from the request
// context and never from the URI: a memory outside the caller's visible
// scopes reads as not found.
package resources

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/scopemem/scopemem/internal/view"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// The resource URIs.
const (
	ScopesURI      = "memory://scopes"
	MemoryTemplate = "memory://memories/{id}"
	memoryPrefix   = "memory://memories/"
)

// Handlers holds the resources' dependencies.
type Handlers struct {
	Store        store.Store
	Log          *slog.Logger // default: discard
	DefaultScope string       // as in tools.Handlers; default "user"
}

// Register adds the resources to s.
func Register(s *server.MCPServer, h *Handlers) {
	if h.Log == nil {
		h.Log = slog.New(slog.DiscardHandler)
	}
	if h.DefaultScope == "" {
		h.DefaultScope = "user"
	}
	s.AddResource(mcp.NewResource(ScopesURI, "scopes",
		mcp.WithResourceDescription("The memory scopes you can see, with memory counts and whether you may write to each."),
		mcp.WithMIMEType("application/json")), h.readScopes)
	s.AddResourceTemplate(mcp.NewResourceTemplate(MemoryTemplate, "memory",
		mcp.WithTemplateDescription("One memory by id, with its scope, tags, metadata and timestamps."),
		mcp.WithTemplateMIMEType("application/json")), h.readMemory)
}

func (h *Handlers) identity(ctx context.Context) (scope.Identity, error) {
	id, ok := scope.FromContext(ctx)
	if !ok {
		return scope.Identity{}, errors.New("no verified identity on this request")
	}
	return id, id.Require(scope.PermRead)
}

func (h *Handlers) readScopes(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	id, err := h.identity(ctx)
	if err != nil {
		return nil, err
	}
	out, err := view.ListScopes(ctx, h.Store, id, h.DefaultScope)
	if err != nil {
		return nil, h.fail(ctx, err)
	}
	return jsonContents(req.Params.URI, out)
}

func (h *Handlers) readMemory(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	id, err := h.identity(ctx)
	if err != nil {
		return nil, err
	}
	memID := strings.TrimPrefix(req.Params.URI, memoryPrefix)
	if memID == "" || len(memID) > 128 || strings.ContainsAny(memID, "/?#") {
		return nil, fmt.Errorf("%q names no memory: %w", req.Params.URI, server.ErrResourceNotFound)
	}
	m, err := h.Store.Get(ctx, id, memID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("no memory %q that you can see: %w", memID, server.ErrResourceNotFound)
	}
	if err != nil {
		return nil, h.fail(ctx, err)
	}
	return jsonContents(req.Params.URI, view.Of(m))
}

// fail logs a store error and returns one safe to show the client.
func (h *Handlers) fail(ctx context.Context, err error) error {
	h.Log.ErrorContext(ctx, "resource read failed", "err", err)
	if errors.Is(err, store.ErrUnavailable) {
		return errors.New("store unavailable, retry in a few seconds")
	}
	return errors.New("internal error; the server log has the details")
}

func jsonContents(uri string, v any) ([]mcp.ResourceContents, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return []mcp.ResourceContents{mcp.TextResourceContents{URI: uri, MIMEType: "application/json", Text: string(b)}}, nil
}
