package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// recordJSON is one line of an export: one memory.
type recordJSON struct {
	ID        string          `json:"id"`
	Org       string          `json:"org"`
	Scope     string          `json:"scope"` // qualified: org, user:<id>, agent:<user>/<agent>, session:<user>/<key>, team:<id>
	Content   string          `json:"content"`
	Tags      []string        `json:"tags,omitempty"`
	Metadata  json.RawMessage `json:"metadata,omitempty"`
	CreatedBy string          `json:"created_by"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
	ExpiresAt *time.Time      `json:"expires_at,omitempty"`
	Vector    []float32       `json:"vector,omitempty"`
	Embedder  *embedderJSON   `json:"embedder,omitempty"`
}

// embedderJSON names the embedder of an exported vector.
type embedderJSON struct {
	Provider   string `json:"provider"`
	Model      string `json:"model"`
	Dimensions int    `json:"dimensions"`
}

func toJSON(r store.Record) recordJSON {
	j := recordJSON{
		ID: r.ID, Org: r.Org, Scope: r.Scope.Qualified(), Content: r.Content, Tags: r.Tags, Metadata: r.Metadata,
		CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
	}
	if r.ExpiresAt != nil {
		t := r.ExpiresAt.UTC()
		j.ExpiresAt = &t
	}
	if r.Vector != nil {
		j.Vector = r.Vector
		j.Embedder = &embedderJSON{r.Embedder.Provider, r.Embedder.Model, r.Embedder.Dimensions}
	}
	return j
}

func (j recordJSON) record() (store.Record, error) {
	s, err := parseQualified(j.Scope)
	if err != nil {
		return store.Record{}, err
	}
	r := store.Record{Memory: store.Memory{
		ID: j.ID, Org: j.Org, Scope: s, Content: j.Content, Tags: j.Tags, Metadata: j.Metadata,
		CreatedBy: j.CreatedBy, CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt, ExpiresAt: j.ExpiresAt,
	}, Vector: j.Vector}
	if j.Vector != nil {
		if j.Embedder == nil {
			return store.Record{}, fmt.Errorf("%w: a vector needs its embedder", store.ErrInvalid)
		}
		r.Embedder = store.EmbedderInfo{Provider: j.Embedder.Provider, Model: j.Embedder.Model, Dimensions: j.Embedder.Dimensions}
	}
	return r, nil
}

// parseQualified reads a scope as [scope.Scope.Qualified] writes it.
func parseQualified(q string) (scope.Scope, error) {
	if q == "org" {
		return scope.Scope{Kind: scope.KindOrg}, nil
	}
	kind, id, ok := strings.Cut(q, ":")
	switch scope.Kind(kind) {
	case scope.KindUser, scope.KindTeam, scope.KindAgent, scope.KindSession:
		if ok && id != "" {
			return scope.Scope{Kind: scope.Kind(kind), ID: id}, nil
		}
	}
	return scope.Scope{}, fmt.Errorf("%w: scope %q is not one of org, user:<id>, team:<id>, agent:<user>/<agent>, session:<user>/<key>", store.ErrInvalid, q)
}

// ExportCmd writes the memories of one org as JSON lines.
type ExportCmd struct {
	Org     string `required:"" help:"The org to export; nothing of any other org is read."`
	User    string `xor:"filter" help:"Only this user's own memories (their user, agent and session scopes): the answer to a data-access request."`
	Scope   string `xor:"filter" help:"Only this scope: org, team:<id>, user:<id>, agent:<user>/<agent> or session:<user>/<key>."`
	Vectors bool   `help:"Include each memory's vector and the embedder that made it (an import into a store with the same embedder then needs no embedding)."`
	Output  string `short:"o" default:"-" help:"File to write; - is stdout." placeholder:"FILE"`
	As      string `default:"scopemem-admin" help:"The operator's name, acting as an admin of the org."`

	DB          string `name:"db" env:"SCOPEMEM_DB" help:"SQLite file (default: the server's)." placeholder:"PATH"`
	DatabaseURL string `name:"database-url" env:"SCOPEMEM_DATABASE_URL" help:"PostgreSQL URL (the runtime role is enough)." placeholder:"URL"`
}

// Run writes the export.
func (c *ExportCmd) Run(env *runEnv) error {
	id, err := operator(c.Org, c.As)
	if err != nil {
		return err
	}
	f := store.ExportFilter{User: c.User, Vectors: c.Vectors}
	if c.Scope != "" {
		s, err := parseQualified(c.Scope)
		if err != nil {
			return err
		}
		f.Scope = &s
	}
	st, err := openOpsStore(env.ctx, c.DB, c.DatabaseURL, false, env.log)
	if err != nil {
		return err
	}
	defer st.Close()
	var w io.Writer = os.Stdout
	if c.Output != "-" {
		file, err := os.OpenFile(c.Output, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		defer file.Close()
		w = file
	}
	n, err := export(env.ctx, st, id, f, w)
	if err != nil {
		return err
	}
	env.log.Info("exported memories", "org", c.Org, "user", c.User, "scope", c.Scope, "count", n, "by", c.As)
	return nil
}

// export writes every memory f keeps as one JSON line each and returns how
// many it wrote.
func export(ctx context.Context, st store.Store, id scope.Identity, f store.ExportFilter, w io.Writer) (int, error) {
	ex, ok := st.(store.Exporter)
	if !ok {
		return 0, fmt.Errorf("export: %w", errUnsupported)
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	n := 0
	err := ex.Export(ctx, id, f, func(r store.Record) error {
		n++
		return enc.Encode(toJSON(r))
	})
	if err != nil {
		return n, err
	}
	return n, bw.Flush()
}
