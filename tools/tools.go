package tools

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/scopemem/scopemem/embed"
	"github.com/scopemem/scopemem/internal/jsonscan"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// Embedder is what the tools need of an embedder.
type Embedder interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
}

// Limits bounds what callers may send. The zero value means the defaults.
type Limits struct {
	MaxContentBytes  int           // content of one memory; default 32 KiB
	MaxQueryBytes    int           // search query; default 4 KiB
	MaxTags          int           // tags on one memory; default 32
	MaxTagBytes      int           // one tag; default 64
	MaxMetadataBytes int           // metadata as JSON; default 8 KiB
	SessionTTL       time.Duration // default expiry of session memories; default 24h
	MaxTTL           time.Duration // longest ttl a caller may ask for; default 10 years
}

func (l Limits) withDefaults() Limits {
	if l.MaxContentBytes <= 0 {
		l.MaxContentBytes = 32 << 10
	}
	if l.MaxQueryBytes <= 0 {
		l.MaxQueryBytes = 4 << 10
	}
	if l.MaxTags <= 0 {
		l.MaxTags = 32
	}
	if l.MaxTagBytes <= 0 {
		l.MaxTagBytes = 64
	}
	if l.MaxMetadataBytes <= 0 {
		l.MaxMetadataBytes = 8 << 10
	}
	if l.SessionTTL <= 0 {
		l.SessionTTL = 24 * time.Hour
	}
	if l.MaxTTL <= 0 {
		l.MaxTTL = 10 * 365 * 24 * time.Hour
	}
	return l
}

// Handlers holds the tools' dependencies.
type Handlers struct {
	Store    store.Store
	Embedder Embedder
	Log      *slog.Logger // default: discard
	Limits   Limits
	// DefaultScope is where add_memory writes when no scope is named:
	// "session", "agent", "user", "team:<id>" or "org". Default "user".
	DefaultScope string
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// Options choose which tools Register adds.
type Options struct {
	// ReadOnly leaves out the tools that write (add_memory,
	// update_memory, delete_memory, purge).
	ReadOnly bool
}

// Register adds scopemem's tools to s.
func Register(s *server.MCPServer, h *Handlers, opts Options) {
	h.init()
	s.AddTool(searchMemoryTool, handle(h, "search_memory", h.searchMemory))
	s.AddTool(listScopesTool, handle(h, "list_scopes", h.listScopes))
	if opts.ReadOnly {
		return
	}
	s.AddTool(addMemoryTool, handle(h, "add_memory", h.addMemory))
	s.AddTool(updateMemoryTool, handle(h, "update_memory", h.updateMemory))
	s.AddTool(deleteMemoryTool, handle(h, "delete_memory", h.deleteMemory))
	s.AddTool(purgeTool, handle(h, "purge", h.purge))
}

func (h *Handlers) init() {
	h.Limits = h.Limits.withDefaults()
	if h.Log == nil {
		h.Log = slog.New(slog.DiscardHandler)
	}
	if h.Now == nil {
		h.Now = time.Now
	}
	if h.DefaultScope == "" {
		h.DefaultScope = "user"
	}
}

// handle adapts a typed tool function to mcp-go: it binds the arguments,
// finds the caller's identity, and turns the result or error into a tool
// result.
func handle[In, Out any](h *Handlers, name string, fn func(context.Context, scope.Identity, mcp.CallToolRequest, In) (Out, error)) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		in, err := bind[In](req)
		if err != nil {
			return mcp.NewToolResultError("invalid arguments: " + describeBindError(err)), nil
		}
		id, ok := scope.FromContext(ctx)
		if !ok {
			return mcp.NewToolResultError("no verified identity on this request: the server is misconfigured"), nil
		}
		out, err := fn(ctx, id, req, in)
		if err != nil {
			return h.toolError(ctx, name, id, err), nil
		}
		text, err := encodeOutput(out)
		if err != nil {
			return h.toolError(ctx, name, id, err), nil
		}
		// The result carries the JSON twice, as the text block clients
		// without structured content read and as structuredContent;
		// encoding it once and handing mcp-go the bytes spares a second
		// encoding of out. The text shares text's bytes, which nothing
		// writes once encoded: a copy would be a search answer's size.
		return &mcp.CallToolResult{
			Content:              []mcp.Content{mcp.NewTextContent(unsafe.String(unsafe.SliceData(text), len(text)))},
			StructuredContent:    json.RawMessage(text),
			RawStructuredContent: text,
		}, nil
	}
}

// bind decodes the call's arguments into In, refusing unknown fields: an
// org_id or user_id argument is an error, never silently dropped.
//
// A call read from the wire keeps its arguments' JSON (RawArguments),
// decoded here directly rather than from the map mcp-go made of them,
// encoded again. Arguments the direct decoding refuses are decoded the
// second way, whose answer stands: a number written 10.0 or 1e1 is 10
// there, as the integer a schema allows it to be.
//
// encoding/json matches a field name in any case, and of two names that
// differ only in case the later one wins: {"content":"a","Content":"b"}
// would store b from the wire but a from the map (whose keys marshal
// sorted). Argument names are therefore checked exactly first, so that
// Content is an unknown argument like org_id.
func bind[In any](req mcp.CallToolRequest) (In, error) {
	if err := checkArgumentNames[In](req.Params.Arguments); err != nil {
		var in In
		return in, err
	}
	if raw := req.Params.RawArguments; len(raw) > 0 {
		if in, err := decodeArguments[In](raw); err == nil {
			return in, nil
		}
	}
	raw, err := json.Marshal(req.Params.Arguments)
	if err != nil {
		var in In
		return in, err
	}
	return decodeArguments[In](raw)
}

// decodeArguments decodes raw, a JSON object or null, into In, refusing
// unknown fields.
func decodeArguments[In any](raw []byte) (In, error) {
	var in In
	if string(raw) == "null" {
		raw = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return in, err
	}
	return in, nil
}

// argumentNames caches, per input type, the set of its JSON field names.
var argumentNames sync.Map // reflect.Type -> map[string]reflect.Type

// checkArgumentNames refuses an argument whose name is not exactly one of
// In's JSON field names (a [*jsonscan.NameError]), reporting the first
// such name in sorted order so that the error does not depend on map
// order. It reads the map mcp-go decoded the arguments into, as
// jsonscan.ExactNames would read them again: the inputs are flat structs.
func checkArgumentNames[In any](args any) error {
	m, ok := args.(map[string]any)
	if !ok {
		return nil
	}
	t := reflect.TypeFor[In]()
	v, ok := argumentNames.Load(t)
	if !ok {
		v, _ = argumentNames.LoadOrStore(t, jsonscan.FieldTypes(t))
	}
	names := v.(map[string]reflect.Type)
	var unknown *jsonscan.NameError
	for k := range m {
		if _, ok := names[k]; !ok && (unknown == nil || k < unknown.Name) {
			unknown = &jsonscan.NameError{Name: k}
		}
	}
	if unknown != nil {
		return unknown
	}
	return nil
}

func describeBindError(err error) string {
	var ne *jsonscan.NameError
	if errors.As(err, &ne) {
		return fmt.Sprintf("unknown argument %q: this tool takes only the arguments in its schema, named exactly so (identity comes from your credentials, never from arguments)", ne.Name)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%s must be %s, not %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
	}
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Sprintf("unknown argument %s: this tool takes only the arguments in its schema (identity comes from your credentials, never from arguments)", field)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return "arguments are not valid JSON"
	}
	return "arguments are not a JSON object matching the tool's schema"
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	case "bool":
		return "a boolean"
	case "int", "int64", "int32":
		return "a whole number"
	case "float64", "float32":
		return "a number"
	}
	return goKind
}

// inputError is a problem with the caller's arguments; its text goes to the
// model as it is.
type inputError struct{ msg string }

func (e *inputError) Error() string { return e.msg }

// ErrInput is wrapped by every argument error the tools return.
var ErrInput = errors.New("invalid input")

func (e *inputError) Unwrap() error { return ErrInput }

func badInput(format string, args ...any) error {
	return &inputError{fmt.Sprintf(format, args...)}
}

// toolError maps err to a tool result. Errors the caller can act on keep
// their message; anything else is logged and replaced by a reference.
func (h *Handlers) toolError(ctx context.Context, tool string, id scope.Identity, err error) *mcp.CallToolResult {
	msg := ""
	switch {
	case errors.Is(err, ErrInput), errors.Is(err, scope.ErrForbidden), errors.Is(err, scope.ErrBadScope),
		errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrEmbedderMismatch), errors.Is(err, store.ErrInvalid):
		msg = err.Error()
	case errors.Is(err, embed.ErrModelNotFound), errors.Is(err, embed.ErrUnavailable),
		errors.Is(err, embed.ErrBadVector), errors.Is(err, embed.ErrInput):
		msg = "embedding failed, nothing was stored: " + err.Error()
	case errors.Is(err, store.ErrReadOnly):
		// The store's message says why (a read-only file or a full disk)
		// and what to do; a retry alone will not help.
		msg = "the memory store refuses writes, searches still work: " + err.Error()
	case errors.Is(err, store.ErrUnavailable):
		msg = "store unavailable, retry in a few seconds; if this call was a write it may or may not have been applied, so search before repeating it"
	case errors.Is(err, context.DeadlineExceeded):
		msg = "the call timed out; nothing was changed if it was a write that did not return"
	case errors.Is(err, context.Canceled):
		msg = "the call was cancelled"
	}
	level := slog.LevelInfo
	if msg == "" || errors.Is(err, store.ErrUnavailable) {
		level = slog.LevelError
	}
	ref := newRef()
	h.Log.Log(ctx, level, "tool call failed", "tool", tool, "org", id.Org, "user", id.User, "ref", ref, "err", err)
	if msg == "" {
		msg = "internal error (reference " + ref + "); the server log has the details"
	}
	return mcp.NewToolResultError(msg)
}

func newRef() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// sessionKey returns the session key for this call: the session argument,
// else the transport's (the identity's, or the MCP session id).
func sessionKey(ctx context.Context, id scope.Identity, arg string) (string, error) {
	if arg != "" {
		if err := checkText("session", arg, 128); err != nil {
			return "", err
		}
		if strings.ContainsAny(arg, "/:") {
			return "", badInput("session may not contain '/' or ':'")
		}
		return arg, nil
	}
	if id.Session != "" {
		return id.Session, nil
	}
	if cs := server.ClientSessionFromContext(ctx); cs != nil {
		return cs.SessionID(), nil
	}
	return "", nil
}

// checkText rejects empty, oversized, non-UTF-8 or control-character text.
func checkText(field, s string, max int) error {
	if strings.TrimSpace(s) == "" {
		return badInput("%s is empty: give a non-blank string", field)
	}
	if len(s) > max {
		return badInput("%s is %d bytes, over the limit of %d: shorten it or split it", field, len(s), max)
	}
	if !utf8.ValidString(s) || strings.ContainsRune(s, utf8.RuneError) {
		// JSON decoding turns invalid UTF-8 into U+FFFD, so its presence is
		// how invalid input shows up here.
		return badInput("%s is not valid UTF-8 (it holds invalid bytes or U+FFFD replacement characters): send text encoded as UTF-8", field)
	}
	if strings.ContainsRune(s, 0) {
		return badInput("%s contains a NUL character", field)
	}
	return nil
}

// checkTags validates and normalizes tags: trimmed, unique, in input order.
func (h *Handlers) checkTags(tags []string) ([]string, error) {
	if len(tags) > h.Limits.MaxTags {
		return nil, badInput("%d tags given, the limit is %d", len(tags), h.Limits.MaxTags)
	}
	out := make([]string, 0, len(tags))
	seen := make(map[string]bool, len(tags))
	for i, t := range tags {
		t = strings.TrimSpace(t)
		if err := checkText(fmt.Sprintf("tags[%d]", i), t, h.Limits.MaxTagBytes); err != nil {
			return nil, err
		}
		if strings.IndexFunc(t, unicode.IsControl) >= 0 {
			return nil, badInput("tags[%d] contains a control character", i)
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out, nil
}

// checkMetadata encodes metadata and checks its size.
func (h *Handlers) checkMetadata(m map[string]any) (json.RawMessage, error) {
	if m == nil {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, badInput("metadata cannot be encoded as JSON")
	}
	if len(b) > h.Limits.MaxMetadataBytes {
		return nil, badInput("metadata is %d bytes as JSON, over the limit of %d", len(b), h.Limits.MaxMetadataBytes)
	}
	if !utf8.Valid(b) {
		return nil, badInput("metadata is not valid UTF-8")
	}
	return b, nil
}

// parseTTL reads a duration such as "90m", "24h" or "7d".
func (h *Handlers) parseTTL(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days float64
		days, err = strconv.ParseFloat(n, 64)
		d = time.Duration(days * float64(24*time.Hour))
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, badInput("ttl %q is not a positive duration: write it like 30m, 24h or 7d", s)
	}
	if d > h.Limits.MaxTTL {
		return 0, badInput("ttl %q is longer than the limit of %s", s, h.Limits.MaxTTL)
	}
	return d, nil
}

// embedOne embeds one text.
func (h *Handlers) embedOne(ctx context.Context, text string) ([]float32, error) {
	vs, err := h.Embedder.Embed(ctx, []string{text})
	if err != nil {
		return nil, err
	}
	if len(vs) != 1 {
		return nil, fmt.Errorf("%w: embedder returned %d vectors for 1 text", embed.ErrBadVector, len(vs))
	}
	return vs[0], nil
}
