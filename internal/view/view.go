// Package view holds the JSON shapes that both the tools and the resources
// return, so a memory or a scope list looks the same wherever it is read.
package view

import (
	"context"
	"encoding/json"
	"time"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// Memory is a memory as the tools and resources return it.
type Memory struct {
	ID        string         `json:"id"`
	Scope     string         `json:"scope" jsonschema:"the scope the memory lives in: session, agent, user, team:<id> or org"`
	Content   string         `json:"content"`
	Tags      []string       `json:"tags"`
	Metadata  map[string]any `json:"metadata,omitempty"`
	CreatedBy string         `json:"created_by"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	ExpiresAt *time.Time     `json:"expires_at,omitempty"`
}

// Of converts a stored memory for output.
func Of(m store.Memory) Memory {
	v := Memory{
		ID: m.ID, Scope: m.Scope.String(), Content: m.Content, Tags: m.Tags,
		CreatedBy: m.CreatedBy, CreatedAt: m.CreatedAt.UTC(), UpdatedAt: m.UpdatedAt.UTC(), ExpiresAt: m.ExpiresAt,
	}
	if v.Tags == nil {
		v.Tags = []string{}
	}
	if len(m.Metadata) > 0 {
		_ = json.Unmarshal(m.Metadata, &v.Metadata)
	}
	return v
}

// Scope describes one scope the caller can see.
type Scope struct {
	Scope    string `json:"scope" jsonschema:"the name to pass as scope: session, agent, user, team:<id> or org"`
	Kind     string `json:"kind"`
	Count    int    `json:"count" jsonschema:"memories stored there now"`
	Writable bool   `json:"writable" jsonschema:"whether you may add memories there"`
}

// Scopes is what list_scopes and memory://scopes return.
type Scopes struct {
	Scopes       []Scope `json:"scopes" jsonschema:"narrowest first"`
	DefaultScope string  `json:"default_scope" jsonschema:"where add_memory writes when no scope is named"`
	Org          string  `json:"org"`
	User         string  `json:"user"`
}

// ListScopes reads the caller's scopes from the store.
func ListScopes(ctx context.Context, s store.Store, id scope.Identity, defaultScope string) (Scopes, error) {
	infos, err := s.ListScopes(ctx, id)
	if err != nil {
		return Scopes{}, err
	}
	out := Scopes{Scopes: make([]Scope, 0, len(infos)), DefaultScope: defaultScope, Org: id.Org, User: id.User}
	for _, si := range infos {
		out.Scopes = append(out.Scopes, Scope{Scope: si.Scope.String(), Kind: string(si.Scope.Kind), Count: si.Count, Writable: si.Writable})
	}
	return out, nil
}
