package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/scopemem/scopemem/embed"
	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/postgres"
	"github.com/scopemem/scopemem/store/sqlite"
)

// errUnsupported is returned when the store cannot do an operator command.
var errUnsupported = errors.New("this store does not support the operation")

// openOpsStore opens the store an operator command works on: PostgreSQL
// when url is set, else the SQLite file at path (default
// app.DefaultDBPath()). privileged lets PostgreSQL connect as a superuser
// or BYPASSRLS role (the owner, for reindex).
func openOpsStore(ctx context.Context, path, url string, privileged bool, log *slog.Logger) (store.Store, error) {
	if url != "" {
		return postgres.Open(ctx, postgres.Config{URL: url, Logger: log, AllowPrivilegedRole: privileged})
	}
	if path == "" {
		path = app.DefaultDBPath()
	}
	return sqlite.Open(ctx, sqlite.Config{Path: path, Logger: log})
}

// operator returns the identity export and import act as: an admin of org
// named user (it appears in the audit log as the actor).
func operator(org, user string) (scope.Identity, error) {
	id := scope.Identity{Org: org, User: user, Permissions: []scope.Permission{scope.PermAdmin}}
	if err := id.Validate(); err != nil {
		return scope.Identity{}, fmt.Errorf("org %q or --as %q: %w", org, user, err)
	}
	return id, nil
}

// embedFlags choose an embedder on the command line.
type embedFlags struct {
	OllamaHost string        `name:"ollama-host" env:"OLLAMA_HOST" help:"Ollama URL (default http://127.0.0.1:11434)." placeholder:"URL"`
	Timeout    time.Duration `name:"embed-timeout" default:"60s" help:"How long one embedding request may take."`
}

// newEmbedder builds the embedder that info names. Ollama is probed, which
// learns its dimensions; a dimension in info must then match.
func newEmbedder(ctx context.Context, info store.EmbedderInfo, f embedFlags, client *http.Client, log *slog.Logger) (embed.Embedder, error) {
	var e embed.Embedder
	switch info.Provider {
	case "builtin":
		e = embed.NewBuiltin(info.Dimensions)
	case "fake":
		e = embed.NewFake(embed.FakeConfig{Dims: info.Dimensions})
	case "ollama":
		o, err := embed.NewOllama(embed.OllamaConfig{Host: f.OllamaHost, Model: info.Model, HTTPClient: client,
			Timeout: f.Timeout, Dimensions: info.Dimensions, Logger: log})
		if err != nil {
			return nil, err
		}
		if _, err := o.Probe(ctx); err != nil {
			return nil, fmt.Errorf("ollama: %w", err)
		}
		e = o
	default:
		return nil, fmt.Errorf("%w: cannot embed with provider %q; use ollama, builtin or fake", errUnsupported, info.Provider)
	}
	got := e.Info()
	if info.Model != "" && got.Model != info.Model {
		return nil, fmt.Errorf("%w: the %s embedder has model %q, not %q", errUnsupported, info.Provider, got.Model, info.Model)
	}
	return e, nil
}

// embedderInfo converts embed.Info to the store's record.
func embedderInfo(i embed.Info) store.EmbedderInfo {
	return store.EmbedderInfo{Provider: i.Provider, Model: i.Model, Dimensions: i.Dimensions}
}
