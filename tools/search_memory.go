package tools

import (
	"context"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/internal/view"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// SearchMemoryInput is the argument of the search_memory tool.
type SearchMemoryInput struct {
	Query    string   `json:"query" jsonschema:"what to recall, in natural language or keywords"`
	Scopes   []string `json:"scopes,omitempty" jsonschema:"search only these scopes (session, agent, user, team:<id>, org); omit to search every scope you can see"`
	Tags     []string `json:"tags,omitempty" jsonschema:"keep only memories carrying all of these tags"`
	Limit    int      `json:"limit,omitempty" jsonschema:"how many results, 1 to 100; default 10"`
	MinScore float64  `json:"min_score,omitempty" jsonschema:"drop results scoring below this, 0 to 1; default 0"`
	Session  string   `json:"session,omitempty" jsonschema:"a session key naming the session scope, for transports without MCP sessions; usually omitted"`
}

// SearchHit is one result of search_memory.
type SearchHit struct {
	ID         string         `json:"id"`
	Content    string         `json:"content"`
	Scope      string         `json:"scope" jsonschema:"where the memory lives: session, agent, user, team:<id> or org"`
	Score      float64        `json:"score" jsonschema:"relevance from 0 to 1 (1: ranked first by both meaning and words)"`
	Tags       []string       `json:"tags"`
	Metadata   map[string]any `json:"metadata,omitempty"`
	CreatedBy  string         `json:"created_by"`
	CreatedAt  time.Time      `json:"created_at"`
	Similarity float64        `json:"similarity" jsonschema:"cosine similarity of meaning, -1 to 1"`
}

// SearchMemoryOutput is the result of the search_memory tool.
type SearchMemoryOutput struct {
	Results []SearchHit `json:"results" jsonschema:"best first; on equal scores the narrower scope first"`
}

var searchMemoryTool = mcp.NewTool("search_memory",
	mcp.WithToolTitle("Recall memories"),
	mcp.WithDescription("Search your memories by meaning and by words (hybrid search) across every scope you can see: "+
		"this session, this agent, you, your teams and your organization. Each result names its scope, score, creation time and tags. "+
		"Call it before answering questions that may depend on earlier conversations, preferences or decisions."),
	schemas("search_memory"),
	mcp.WithReadOnlyHintAnnotation(true),
	mcp.WithDestructiveHintAnnotation(false),
	mcp.WithIdempotentHintAnnotation(true),
	mcp.WithOpenWorldHintAnnotation(false),
)

func (h *Handlers) searchMemory(ctx context.Context, id scope.Identity, _ mcp.CallToolRequest, in SearchMemoryInput) (SearchMemoryOutput, error) {
	if err := id.Require(scope.PermRead); err != nil {
		return SearchMemoryOutput{}, err
	}
	if err := checkText("query", in.Query, h.Limits.MaxQueryBytes); err != nil {
		return SearchMemoryOutput{}, err
	}
	limit := in.Limit
	if limit == 0 {
		limit = store.DefaultLimit
	}
	if limit < 1 || limit > store.MaxLimit {
		return SearchMemoryOutput{}, badInput("limit %d is outside 1..%d", in.Limit, store.MaxLimit)
	}
	if in.MinScore < 0 || in.MinScore > 1 {
		return SearchMemoryOutput{}, badInput("min_score %g is outside 0..1", in.MinScore)
	}
	tags, err := h.checkTags(in.Tags)
	if err != nil {
		return SearchMemoryOutput{}, err
	}
	key, err := sessionKey(ctx, id, in.Session)
	if err != nil {
		return SearchMemoryOutput{}, err
	}
	id.Session = key
	var scopes []scope.Scope
	for _, name := range in.Scopes {
		sc, err := id.Resolve(name, key)
		if err != nil {
			return SearchMemoryOutput{}, err
		}
		scopes = append(scopes, sc)
	}
	vec, err := h.embedOne(ctx, in.Query)
	if err != nil {
		return SearchMemoryOutput{}, err
	}
	hits, err := h.Store.Search(ctx, id, store.Query{
		Text: in.Query, Vector: vec, Scopes: scopes, Tags: tags, Limit: limit, MinScore: in.MinScore,
	})
	if err != nil {
		return SearchMemoryOutput{}, err
	}
	out := SearchMemoryOutput{Results: make([]SearchHit, 0, len(hits))}
	for _, hit := range hits {
		v := view.Of(hit.Memory)
		out.Results = append(out.Results, SearchHit{
			ID: v.ID, Content: v.Content, Scope: v.Scope, Score: hit.Score, Tags: v.Tags, Metadata: v.Metadata,
			CreatedBy: v.CreatedBy, CreatedAt: v.CreatedAt, Similarity: hit.Similarity,
		})
	}
	return out, nil
}
