package app

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// httpCalls answers the POSTed tools/call requests of the streamable HTTP
// transport without mcp-go's transport, as directCalls does over stdio.
// For each request the transport decodes the body twice more before
// MCPServer.HandleMessage runs it, starts a goroutine and three channels
// to forward notifications, and writes the answer through json.Encoder:
// the result is encoded through a map, its text escaped, its structured
// content validated and compacted twice, and the whole sent in 2 KB
// chunks. Here the request goes to HandleMessage with the same context
// the transport would give it (the caller's session and the protocol
// versions served) and the answer is written once, with a length.
//
// A plain call (see readStdioCall) is answered by its tool's handler
// (callTool), as over stdio, any other by HandleMessage. Both run in the
// context protect registered the request under, which a
// notifications/cancelled from the same caller cancels.
//
// Only requests whose every check passes are taken; anything else
// (other methods, notifications, responses, a missing or mismatched
// protocol version, an unknown session id, a Last-Event-ID, another
// content type, a tool that maps parameters to headers) goes to the
// transport, which answers it as before, errors included.
type httpCalls struct {
	mcp      *server.MCPServer
	sessions *optionalSessionIDs
	versions []string // the protocol versions served, newest first
	// mws are the server's tool middlewares, outermost first, and impl
	// its name and version, for callTool.
	mws       []server.ToolHandlerMiddleware
	impl      mcp.Implementation
	protocols protocols
	// plain holds the names of the tools whose input maps no parameter
	// to a header (x-mcp-header), whose calls need no header check
	// beyond Mcp-Method and Mcp-Name.
	plain map[string]bool
}

func newHTTPCalls(s *server.MCPServer, impl mcp.Implementation, mws []server.ToolHandlerMiddleware, h *server.StreamableHTTPServer, sessions *optionalSessionIDs) *httpCalls {
	c := &httpCalls{mcp: s, impl: impl, mws: mws, sessions: sessions, versions: server.FilterSupportedVersions(h), plain: map[string]bool{}}
	for name, t := range s.ListTools() {
		raw, err := json.Marshal(t.Tool)
		if err == nil && !strings.Contains(string(raw), "x-mcp-header") {
			c.plain[name] = true
		}
	}
	return c
}

// httpCallsTaken counts the calls httpCalls has answered, and
// httpCallsDirect those of them callTool answered, for tests.
var httpCallsTaken, httpCallsDirect atomic.Int64

// toolCall is what httpCalls reads of a request before taking it.
type toolCall struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

// callParams is what httpCalls reads of a tools/call request's params.
type callParams struct {
	Name string                     `json:"name"`
	Meta map[string]json.RawMessage `json:"_meta"`
}

// serve answers r, whose body is body, if it is a tools/call request
// that the transport would hand to HandleMessage, and reports whether it
// did. ctx is the request's context (the caller's identity).
func (c *httpCalls) serve(ctx context.Context, w http.ResponseWriter, r *http.Request, call *toolCall, body []byte) bool {
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" ||
		r.Header.Get(mcp.HeaderLastEventID) != "" ||
		call.Method != string(mcp.MethodToolsCall) || len(call.ID) == 0 || string(call.ID) == "null" {
		return false
	}
	name, metaVersion, ok := readCallParams(call.Params)
	if !ok || !c.plain[name] {
		return false
	}
	headerVersion := r.Header.Get(mcp.HeaderProtocolVersion)
	modern := mcp.IsModernProtocol(metaVersion) || mcp.IsModernProtocol(headerVersion)
	sessionID := ""
	if modern {
		// The transport's checks of a 2026-07-28 request, then the
		// Mcp-Method and Mcp-Name headers HandleMessage checks.
		if headerVersion == "" || headerVersion != metaVersion || !mcp.IsValidProtocolVersion(metaVersion) ||
			mcp.ValidateStandardHeaders(r.Header.Get, metaVersion, mcp.MethodToolsCall, call.Params) != nil {
			return false
		}
	} else {
		if headerVersion != "" && !mcp.IsValidProtocolVersion(headerVersion) {
			return false
		}
		sessionID = r.Header.Get(server.HeaderKeySessionID)
		if terminated, err := c.sessions.Validate(sessionID); err != nil || terminated {
			return false
		}
	}
	httpCallsTaken.Add(1)
	sess := newCallSession(sessionID)
	defer sess.release()
	ctx = server.WithSupportedProtocolVersions(c.mcp.WithContext(ctx, sess), c.versions)
	resp, direct := c.callDirect(ctx, body)
	if direct {
		httpCallsDirect.Add(1)
	} else {
		resp = c.mcp.HandleMessage(ctx, body)
	}
	if resp == nil {
		w.WriteHeader(http.StatusAccepted)
		return true
	}
	if len(sess.ch) > 0 {
		// A notification sent while the call ran: the transport would
		// have answered with an event stream.
		c.writeEvents(w, sess.ch, resp)
		return true
	}
	buf := responseBuffers.Get().(*[]byte)
	defer responseBuffers.Put(buf)
	b, err := appendMessage((*buf)[:0], resp)
	if err != nil {
		writeHTTPText(w, http.StatusInternalServerError, "the response could not be encoded")
		return true
	}
	b = append(b, '\n') // as json.Encoder ends it
	*buf = b
	status := http.StatusOK
	if e, ok := resp.(mcp.JSONRPCError); ok && modern {
		status = statusOfError(e.Error.Code)
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	_, _ = w.Write(b)
	return true
}

// callDirect answers body, a tools/call request that readToolCall has
// read (so valid JSON), through callTool when it is a plain call that
// callTool serves.
func (c *httpCalls) callDirect(ctx context.Context, body []byte) (mcp.JSONRPCMessage, bool) {
	rawID, pc, ok := readValidCall(body)
	if !ok || pc.args == nil {
		return nil, false
	}
	var id any
	if json.Unmarshal(rawID, &id) != nil {
		return nil, false
	}
	p, ok := c.protocols.plainProtocol(pc)
	if !ok {
		return nil, false
	}
	return callTool(ctx, c.mcp, c.impl, c.mws, id, pc, p)
}

// requestID returns the id of call, as encoding/json decodes it, when
// call is a request: it has a method and an id that is not null (which
// mcp-go takes for a notification's), whatever the method.
func requestID(call *toolCall) (any, bool) {
	if call.Method == "" || len(call.ID) == 0 {
		return nil, false
	}
	var id any
	if json.Unmarshal(call.ID, &id) != nil || id == nil {
		return nil, false
	}
	return id, true
}

// writeEvents answers with the notifications queued on ch, then resp, as
// an event stream, as the transport does once a call has notified.
func (c *httpCalls) writeEvents(w http.ResponseWriter, ch chan mcp.JSONRPCNotification, resp mcp.JSONRPCMessage) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Connection", "keep-alive")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	event := func(msg any) {
		b, err := json.Marshal(msg)
		if err != nil {
			return
		}
		_, _ = w.Write(append(append([]byte("event: message\ndata: "), b...), '\n', '\n'))
	}
	for len(ch) > 0 {
		event(<-ch)
	}
	event(resp)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

// statusOfError is the HTTP status protocol version 2026-07-28 gives a
// JSON-RPC error, as the transport maps it.
func statusOfError(code int) int {
	switch code {
	case mcp.METHOD_NOT_FOUND:
		return http.StatusNotFound
	case mcp.HEADER_MISMATCH, mcp.MISSING_REQUIRED_CLIENT_CAPABILITY, mcp.UNSUPPORTED_PROTOCOL_VERSION,
		mcp.INVALID_REQUEST, mcp.INVALID_PARAMS, mcp.PARSE_ERROR:
		return http.StatusBadRequest
	default:
		return http.StatusOK
	}
}

func writeHTTPText(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg + "\n"))
}

// responseBuffers hold encoded answers between calls: a search answer is
// tens of kilobytes.
var responseBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

// callSession is the session of one call: its id (empty for 2026-07-28
// clients, which have none) and a channel for the notifications sent
// while it runs, as the transport gives each request.
type callSession struct {
	id string
	ch chan mcp.JSONRPCNotification
}

var callSessions = sync.Pool{New: func() any { return &callSession{ch: make(chan mcp.JSONRPCNotification, 100)} }}

func newCallSession(id string) *callSession {
	s := callSessions.Get().(*callSession)
	s.id = id
	return s
}

// release returns s for another call once its channel is empty; a
// handler that kept the session past its call could still send to it,
// so a session that received anything is not reused.
func (s *callSession) release() {
	if len(s.ch) == 0 {
		callSessions.Put(s)
	}
}

func (s *callSession) Initialize()                                         {}
func (s *callSession) Initialized() bool                                   { return true }
func (s *callSession) NotificationChannel() chan<- mcp.JSONRPCNotification { return s.ch }
func (s *callSession) SessionID() string                                   { return s.id }
