package app

import (
	"context"
	"errors"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/scopemem/scopemem/embed"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// tracerName is the instrumentation scope of scopemem's spans.
const tracerName = "github.com/scopemem/scopemem"

// tracing puts OpenTelemetry spans around tool calls, embedding calls and
// store calls. Attributes are tool names, store operations, counts and
// fixed outcome codes: never memory content, queries, tokens or error
// messages (which can quote what the caller sent), and tenant ids (org,
// user) only with Config.TraceTenants.
type tracing struct {
	tracer  trace.Tracer
	tenants bool
}

// instrumentTracing wraps the store and the embedder in spans when a
// tracer provider is configured; without one nothing is wrapped, so that
// tracing off costs nothing.
func (a *App) instrumentTracing() {
	if a.cfg.TracerProvider == nil {
		return
	}
	t := &tracing{tracer: a.cfg.TracerProvider.Tracer(tracerName, trace.WithInstrumentationVersion(Version)), tenants: a.cfg.TraceTenants}
	a.tracing = t
	system := "sqlite"
	if a.cfg.DatabaseURL != "" {
		system = "postgresql"
	}
	a.Embedder = &tracedEmbedder{Embedder: a.Embedder, t: t}
	a.Store = &tracedStore{Store: a.Store, t: t, system: system}
}

// toolMiddleware starts the span "tools/call <tool>" around a tool call;
// the embedding and store calls it makes are its children.
func (t *tracing) toolMiddleware(next server.ToolHandlerFunc) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		tool := req.Params.Name
		if !knownTool(tool) {
			tool = "unknown" // never a caller-chosen attribute value
		}
		attrs := []attribute.KeyValue{attribute.String("mcp.method.name", "tools/call"), attribute.String("gen_ai.tool.name", tool)}
		if t.tenants {
			if id, ok := scope.FromContext(ctx); ok {
				attrs = append(attrs, attribute.String("scopemem.org", id.Org), attribute.String("enduser.id", id.User))
			}
		}
		ctx, span := t.tracer.Start(ctx, "tools/call "+tool, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
		defer span.End()
		res, err := next(ctx, req)
		o := "ok"
		switch {
		case err != nil:
			o = "error"
			span.SetStatus(codes.Error, "tool call failed")
		case res != nil && res.IsError:
			o = "tool_error"
			span.SetAttributes(attribute.String("error.type", "tool_error"))
		}
		span.SetAttributes(attribute.String("scopemem.outcome", o))
		return res, err
	}
}

// endSpan records a child call's outcome on its span and ends it.
func endSpan(span trace.Span, err error) {
	switch {
	case err == nil:
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) || errors.Is(err, scope.ErrForbidden):
		span.SetAttributes(attribute.String("scopemem.outcome", "refused"))
	default:
		span.SetAttributes(attribute.String("error.type", errorType(err)))
		span.SetStatus(codes.Error, "failed")
	}
	span.End()
}

// errorType names err's class by its sentinel, never by its message.
func errorType(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, embed.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, store.ErrConflict):
		return "conflict"
	case errors.Is(err, embed.ErrModelNotFound):
		return "model_not_found"
	case errors.Is(err, embed.ErrBadVector):
		return "bad_vector"
	case errors.Is(err, embed.ErrInput):
		return "invalid_input"
	}
	return "_OTHER"
}

// tracedEmbedder puts a span around each embedding call.
type tracedEmbedder struct {
	embed.Embedder
	t *tracing
}

func (e *tracedEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	ctx, span := e.t.tracer.Start(ctx, "embed", trace.WithAttributes(
		attribute.String("gen_ai.operation.name", "embeddings"),
		attribute.String("gen_ai.provider.name", e.Info().Provider),
		attribute.String("gen_ai.request.model", e.Info().Model),
		attribute.Int("scopemem.embed.texts", len(texts)),
	))
	v, err := e.Embedder.Embed(ctx, texts)
	endSpan(span, err)
	return v, err
}

// tracedStore puts a span around each store call a tool makes.
type tracedStore struct {
	store.Store
	t      *tracing
	system string
}

// Unwrap returns the traced store, whose optional capabilities callers
// find by type assertion (see [App.BaseStore]).
func (s *tracedStore) Unwrap() store.Store { return s.Store }

func (s *tracedStore) start(ctx context.Context, op string) (context.Context, trace.Span) {
	return s.t.tracer.Start(ctx, "store."+op, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("db.system.name", s.system),
		attribute.String("db.operation.name", op),
	))
}

func (s *tracedStore) Add(ctx context.Context, id scope.Identity, ms []store.NewMemory) ([]store.Added, error) {
	ctx, span := s.start(ctx, "add")
	r, err := s.Store.Add(ctx, id, ms)
	endSpan(span, err)
	return r, err
}

func (s *tracedStore) Search(ctx context.Context, id scope.Identity, q store.Query) ([]store.Hit, error) {
	ctx, span := s.start(ctx, "search")
	r, err := s.Store.Search(ctx, id, q)
	endSpan(span, err)
	return r, err
}

func (s *tracedStore) Get(ctx context.Context, id scope.Identity, memoryID string) (store.Memory, error) {
	ctx, span := s.start(ctx, "get")
	r, err := s.Store.Get(ctx, id, memoryID)
	endSpan(span, err)
	return r, err
}

func (s *tracedStore) Update(ctx context.Context, id scope.Identity, memoryID string, p store.Patch) (store.Memory, error) {
	ctx, span := s.start(ctx, "update")
	r, err := s.Store.Update(ctx, id, memoryID, p)
	endSpan(span, err)
	return r, err
}

func (s *tracedStore) Delete(ctx context.Context, id scope.Identity, memoryID string) error {
	ctx, span := s.start(ctx, "delete")
	err := s.Store.Delete(ctx, id, memoryID)
	endSpan(span, err)
	return err
}

func (s *tracedStore) ListScopes(ctx context.Context, id scope.Identity) ([]store.ScopeInfo, error) {
	ctx, span := s.start(ctx, "list_scopes")
	r, err := s.Store.ListScopes(ctx, id)
	endSpan(span, err)
	return r, err
}

func (s *tracedStore) Purge(ctx context.Context, id scope.Identity, t scope.Target) (store.PurgeCounts, error) {
	ctx, span := s.start(ctx, "purge")
	r, err := s.Store.Purge(ctx, id, t)
	endSpan(span, err)
	return r, err
}
