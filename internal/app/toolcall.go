package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/scopemem/scopemem/internal/jsonscan"
)

// plainCall is the tool, arguments and _meta of a tools/call request that
// is served without MCPServer.HandleMessage: see [readStdioCall] and
// [callTool].
type plainCall struct {
	name string
	args json.RawMessage // a JSON object
	meta json.RawMessage // a JSON object, or nil
}

// readStdioCall reads line, one line a stdio client sent (or the body of
// an HTTP request), in one pass:
// ok when it is a tools/call request with an id that is not null (id, its
// raw JSON), and pc (whose args are not nil) when it is also a plain call.
// It checks that line is valid JSON, then reads its top-level members
// without decoding other values than those. A plain call has the members
// jsonrpc ("2.0"), id, method and params, each once, and params holds a
// string name, an object of arguments, an object _meta or none, and
// nothing else. Anything else (a task; a member name that differs only in
// case, which encoding/json would match) goes to HandleMessage, which says
// what is wrong with it if anything is.
func readStdioCall(line []byte) (id json.RawMessage, pc plainCall, ok bool) {
	if !json.Valid(line) {
		return nil, plainCall{}, false
	}
	return readValidCall(line)
}

// readValidCall is readStdioCall for line known to be valid JSON (an HTTP
// body readToolCall has read).
func readValidCall(line []byte) (id json.RawMessage, pc plainCall, ok bool) {
	var seen uint8
	ok, plain := true, true
	complete := jsonscan.Fields(line, func(key, val []byte) bool {
		var member uint8
		switch {
		case jsonscan.KeyIs(key, "jsonrpc"):
			member = 1
			plain = plain && jsonscan.StringIs(val, mcp.JSONRPC_VERSION)
		case jsonscan.KeyIs(key, "id"):
			member, id = 2, val
			ok = ok && seen&member == 0 && string(val) != "null"
		case jsonscan.KeyIs(key, "method"):
			member = 4
			ok = ok && seen&member == 0 && jsonscan.StringIs(val, string(mcp.MethodToolsCall))
		case jsonscan.KeyIs(key, "params"):
			member = 8
			if plain {
				pc, plain = parsePlainParams(val)
			}
		default:
			plain = false
		}
		plain = plain && seen&member == 0
		seen |= member
		return ok
	})
	if !ok || seen&6 != 6 {
		return nil, plainCall{}, false
	}
	if !complete || !plain || seen != 15 {
		pc = plainCall{}
	}
	return id, pc, true
}

// parsePlainParams reads the params of a plain call: see readStdioCall.
func parsePlainParams(params []byte) (plainCall, bool) {
	var pc plainCall
	ok, haveName := true, false
	complete := jsonscan.Fields(params, func(key, val []byte) bool {
		switch {
		case jsonscan.KeyIs(key, "name") && !haveName && len(val) > 0 && val[0] == '"':
			haveName = true
			ok = json.Unmarshal(val, &pc.name) == nil
		case jsonscan.KeyIs(key, "arguments") && pc.args == nil && len(val) > 0 && val[0] == '{':
			pc.args = val
		case jsonscan.KeyIs(key, "_meta") && pc.meta == nil && len(val) > 0 && val[0] == '{':
			pc.meta = val
		default:
			ok = false
		}
		return ok
	})
	return pc, complete && ok && haveName && pc.args != nil
}

// callProtocol is what a plain call's _meta says: its protocol
// information, as HandleMessage reads it, and the _meta itself.
type callProtocol struct {
	info *server.RequestProtocolInfo
	meta *mcp.Meta // nil without _meta; shared by the calls that send the same, which only read it
}

// legacyCall is the protocol of a call without _meta.
var legacyCall = callProtocol{info: &server.RequestProtocolInfo{}}

// protocols reads the _meta of plain calls (read). A client sends the
// same _meta call after call: the last one read is remembered, and one
// the same to the byte is not decoded again.
type protocols struct {
	mu        sync.Mutex
	lastMeta  json.RawMessage
	lastProto callProtocol
}

// read returns the protocol of a call with the _meta raw, as
// HandleMessage reads it, when HandleMessage would serve the call: the
// era its version names (2026-07-28 and later carry their version, client
// information and capabilities in every request), the version known and
// the capabilities there in a modern one.
func (c *protocols) read(raw json.RawMessage) (callProtocol, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastMeta != nil && string(raw) == string(c.lastMeta) {
		return c.lastProto, true
	}
	m := new(mcp.Meta)
	if json.Unmarshal(raw, m) != nil {
		return callProtocol{}, false
	}
	p := callProtocol{info: &server.RequestProtocolInfo{ProtocolVersion: m.ProtocolVersion()}, meta: m}
	if mcp.IsModernProtocol(p.info.ProtocolVersion) {
		caps := m.ClientCapabilities()
		if !mcp.IsValidProtocolVersion(p.info.ProtocolVersion) || caps == nil {
			return callProtocol{}, false
		}
		p.info.Modern, p.info.ClientInfo, p.info.LogLevel, p.info.ClientCapabilities = true, m.ClientInfo(), m.LogLevel(), caps
	}
	c.lastMeta, c.lastProto = slices.Clone(raw), p
	return p, true
}

// plainProtocol returns the protocol of pc, a plain call, when callTool
// may serve it.
func (c *protocols) plainProtocol(pc plainCall) (callProtocol, bool) {
	if pc.meta == nil {
		return legacyCall, true
	}
	return c.read(pc.meta)
}

// callTool answers pc, a plain call with the JSON-RPC id id whose _meta
// says p, as MCPServer.HandleMessage answers it for the server
// newMCPServer builds, whose implementation is impl: the tool's handler
// in the server's tool middlewares (mws, outermost first), given the
// request HandleMessage would decode (arguments as a map and as their
// JSON), in ctx with the protocol information; the session takes the
// client information and capabilities of a modern call, and its result
// carries the result type and the server's implementation; a handler's
// error or missing result is an internal error. It reports false, having
// run nothing, for what it does not serve that way: a tool that is not
// registered, or that runs as a task.
//
// HandleMessage decodes such a request four times over (its id and
// method, its _meta for the protocol version and for the trace context,
// then all of it); on the 2-core machine of BENCHMARKS.md ("stdio: a
// plain tool call decoded once") that was 39-52 µs of a search's 350 µs
// round trip. What HandleMessage would do besides for this server, none
// of it configured by newMCPServer (hooks, tool filters, schema
// validation, request logging, tracing spans and propagation of its own,
// session tools), is not done here, nor what the callers have done
// already (the standard headers of an HTTP request, which httpCalls
// checks, and the request's headers, which no tool reads);
// TestStdioPlainCallsMatchHandleMessage and
// TestHTTPToolCallsMatchTransport want the same answers from both.
// Cancellation (notifications/cancelled) reaches the call through an
// inflight registry, in which directCalls and the HTTP handler register
// every call they take.
func callTool(ctx context.Context, s *server.MCPServer, impl mcp.Implementation, mws []server.ToolHandlerMiddleware, id any, pc plainCall, p callProtocol) (mcp.JSONRPCMessage, bool) {
	tool := s.GetTool(pc.name)
	if tool == nil || tool.Tool.Execution != nil {
		return nil, false
	}
	session := server.ClientSessionFromContext(ctx)
	if st, ok := session.(server.SessionWithTools); ok {
		if _, own := st.GetSessionTools()[pc.name]; own {
			return nil, false
		}
	}
	var args any
	if json.Unmarshal(pc.args, &args) != nil {
		return nil, false
	}
	if p.info.Modern && session != nil {
		// The session state the handshake of earlier versions set.
		if withInfo, ok := session.(server.SessionWithClientInfo); ok {
			if p.info.ClientInfo != nil {
				withInfo.SetClientInfo(*p.info.ClientInfo)
			}
			withInfo.SetClientCapabilities(*p.info.ClientCapabilities)
		}
		if !session.Initialized() {
			session.Initialize()
		}
	}
	req := mcp.CallToolRequest{
		Request: mcp.Request{Method: string(mcp.MethodToolsCall)},
		Params:  mcp.CallToolParams{Name: pc.name, Arguments: args, Meta: p.meta, RawArguments: pc.args},
	}
	ctx = server.WithRequestProtocolInfo(ctx, p.info)
	h := tool.Handler
	for _, mw := range slices.Backward(mws) {
		h = mw(h)
	}
	res, err := h(ctx, req)
	if err == nil && res == nil {
		err = fmt.Errorf("tool '%s' handler returned no result", pc.name)
	}
	if err != nil {
		return mcp.JSONRPCError{
			JSONRPC: mcp.JSONRPC_VERSION,
			ID:      mcp.NewRequestId(id),
			Error:   mcp.NewJSONRPCErrorDetails(mcp.INTERNAL_ERROR, err.Error(), nil),
		}, true
	}
	if p.info.Modern {
		if res.ResultType == "" {
			res.ResultType = mcp.ResultTypeComplete
		}
		if meta := res.EnsureResultMeta(); meta.ServerInfo() == nil {
			meta.SetServerInfo(impl)
		}
	}
	return mcp.NewJSONRPCResultResponse(mcp.NewRequestId(id), res), true
}

// recoverToolPanics turns a tool handler's panic into its error, worded as
// mcp-go's WithRecovery words it: the first of the server's tool
// middlewares, so that calls served without HandleMessage recover too.
func recoverToolPanics(next server.ToolHandlerFunc) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (res *mcp.CallToolResult, err error) {
		defer func() {
			if r := recover(); r != nil {
				res, err = nil, fmt.Errorf("panic recovered in %s tool handler: %v", req.Params.Name, r)
			}
		}()
		return next(ctx, req)
	}
}

// inflight holds the cancel functions of the tool calls being answered,
// by caller and request id as notifications/cancelled names them. A
// client that reuses the id of a call still in flight (which JSON-RPC
// forbids) can cancel the later call, and only that one.
type inflight struct {
	mu    sync.Mutex
	calls map[inflightKey]*context.CancelFunc
}

// caller is who sent a request, as far as cancelling it goes: over HTTP
// the verified identity and the Mcp-Session-Id header, over stdio (one
// client a process) no one in particular. Request ids are counters every
// client starts afresh: only a notification from the same caller names
// the same call.
type caller struct {
	org, user, agent, session string
}

type inflightKey struct {
	from caller
	id   string // requestKey
}

// requestKey is how a request id is matched: the value encoding/json
// decodes, printed as mcp-go prints it for its own in-flight requests
// (so 7 and 7.0 are one id).
func requestKey(id any) string { return fmt.Sprint(id) }

// add registers a call of from's with the JSON-RPC id id (as
// encoding/json decodes it) and returns its context and what to call
// once it is answered.
func (f *inflight) add(ctx context.Context, from caller, id any) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	key, entry := inflightKey{from, requestKey(id)}, &cancel
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[inflightKey]*context.CancelFunc{}
	}
	f.calls[key] = entry
	f.mu.Unlock()
	return ctx, func() {
		f.mu.Lock()
		// A later call with the same id keeps its registration.
		if f.calls[key] == entry {
			delete(f.calls, key)
		}
		f.mu.Unlock()
		cancel()
	}
}

// cancel cancels the call from caller with the JSON-RPC id id, if one is
// in flight.
func (f *inflight) cancel(from caller, id any) {
	f.mu.Lock()
	entry := f.calls[inflightKey{from, requestKey(id)}]
	f.mu.Unlock()
	if entry != nil {
		(*entry)()
	}
}

// cancelledID returns the request id that msg, one JSON-RPC message,
// names when it is a notifications/cancelled notification.
func cancelledID(msg []byte) (any, bool) {
	if !bytes.Contains(msg, []byte("cancelled")) && !bytes.Contains(msg, []byte(`\`)) {
		return nil, false // the method is not notifications/cancelled, even escaped
	}
	var n struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params map[string]any  `json:"params"`
	}
	if json.Unmarshal(msg, &n) != nil || n.Method != string(mcp.MethodNotificationCancelled) ||
		(len(n.ID) > 0 && string(n.ID) != "null") {
		return nil, false
	}
	id, ok := n.Params["requestId"]
	return id, ok
}
