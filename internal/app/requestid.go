package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// RequestIDHeader is the HTTP header that carries a request id, both ways.
const RequestIDHeader = "X-Request-Id"

// maxRequestIDLen bounds an incoming request id kept as it is.
const maxRequestIDLen = 64

type requestIDKey struct{}

// WithRequestID returns ctx carrying the request id id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// newRequestID returns 16 random hex digits.
func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validRequestID reports whether an incoming id may be kept: 1 to 64
// printable ASCII characters without spaces, so that it cannot forge log
// lines or carry much of anything.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// withRequestID gives every request an id: the client's X-Request-Id when
// it is short and printable, else a generated one. The id is echoed in the
// response's X-Request-Id and carried in the request's context, where
// [LogHandler] finds it.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set(RequestIDHeader, id)
		next.ServeHTTP(w, r.WithContext(WithRequestID(r.Context(), id)))
	})
}

// callIDMiddleware gives a tool call that arrived without a request id
// (over stdio) an id of its own, "call-" and 16 hex digits, so that the
// log lines of one call can be told from another's.
func callIDMiddleware(next server.ToolHandlerFunc) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		if RequestID(ctx) == "" {
			ctx = WithRequestID(ctx, "call-"+newRequestID())
		}
		return next(ctx, req)
	}
}

// LogHandler wraps h so that every record logged with a context carrying
// a request id (see [RequestID]) gets the attribute request_id. Log with
// the *Context methods (InfoContext, Log) for it to be found.
func LogHandler(h slog.Handler) slog.Handler { return requestIDHandler{h} }

type requestIDHandler struct{ h slog.Handler }

func (h requestIDHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r = r.Clone()
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.h.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.h.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.h.WithGroup(name)}
}
