package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/scopemem/scopemem/internal/jsonscan"
)

// directCalls serves the tools/call requests of a stdio client without
// mcp-go's stdio transport: a plain call (see plainCall) is answered by
// its tool's handler (callTool), any other goes to the MCP server's
// HandleMessage as the transport's workers would send it, and the answer
// is written here. The transport reads every line on a goroutine of its
// own, decodes it five times before a worker takes it, and encodes a tool
// result through a map, escaping its text and then validating and
// compacting its structured content twice (a search answer of ten hits is
// about 20 KB of JSON). Every other message (initialize, notifications,
// other requests) still goes through the transport.
type directCalls struct {
	mcp *server.MCPServer
	t   *drainTracker
	w   *countingWriter
	log *slog.Logger
	// ctx is the context the transport serves requests in (its session
	// and the caller's identity); nil until it starts listening.
	ctx atomic.Pointer[context.Context]
	// input passes the reading of input from one worker to another: the
	// worker that reads a call answers it itself, so that no call waits
	// for another goroutine to wake up before it starts, and hands input
	// over to an idle worker (one waiting here) when more input is
	// already there or once the call has run for handOverAfter. Workers
	// live as long as input does, so that each call runs on a stack
	// already grown by the ones before (a new goroutine's stack would
	// grow, by copying, on every call). At most stdioWorkers run; once
	// they are all busy, reading input waits for one, as with the
	// transport's worker pool.
	input   chan struct{}
	workers int // started; only the worker holding input reads or writes it
	// quick is set while the calls answered by the worker holding input
	// take less than handOverAfter: see handOverQuick.
	quick atomic.Bool
	// mws are the server's tool middlewares, for calls served without
	// HandleMessage (callTool).
	mws  []server.ToolHandlerMiddleware
	impl mcp.Implementation // the server's name and version, for modern results
	// protocols reads the calls' _meta.
	protocols protocols
	// inflight holds the calls taken and not yet answered, for
	// notifications/cancelled.
	inflight inflight
}

// directCall is one tools/call request to answer.
type directCall struct {
	ctx   context.Context
	id    any // as encoding/json decodes it
	line  []byte
	plain plainCall // args nil unless a plain call
	done  func()    // once answered
}

func newDirectCalls(s *server.MCPServer, impl mcp.Implementation, mws []server.ToolHandlerMiddleware, t *drainTracker, w *countingWriter, logger *slog.Logger) *directCalls {
	return &directCalls{mcp: s, impl: impl, mws: mws, t: t, w: w, log: logger, input: make(chan struct{})}
}

// start records the transport's request context: calls are served from
// then on.
func (c *directCalls) start(ctx context.Context) { c.ctx.Store(&ctx) }

// take returns line as a call to answer if it is a tools/call request
// that can be served now; a line it does not take goes to mcp-go's
// transport. Only the worker holding input calls it.
func (c *directCalls) take(line []byte) (directCall, bool) {
	ctx := c.ctx.Load()
	if ctx == nil {
		return directCall{}, false
	}
	rawID, pc, ok := readStdioCall(line)
	var id any
	if !ok || json.Unmarshal(rawID, &id) != nil || !c.t.take() {
		return directCall{}, false
	}
	// Registered before the next line is read, which may cancel it.
	callCtx, done := c.inflight.add(*ctx, caller{}, id)
	return directCall{ctx: callCtx, id: id, line: line, plain: pc, done: done}, true
}

// notTaken is told of every line take did not take: a
// notifications/cancelled naming a call taken cancels it.
func (c *directCalls) notTaken(line []byte) {
	// mcp-go's transport still gets the line (and cancels the calls it
	// runs).
	if id, ok := cancelledID(line); ok {
		c.inflight.cancel(caller{}, id)
	}
}

// run reads in on the first worker until input ends.
func (c *directCalls) run(in *drainReader) {
	c.workers = 1
	c.worker(in)
}

// worker holds input first: it reads it up to a call, hands input over,
// answers the call and waits for input again, until input ends.
func (c *directCalls) worker(in *drainReader) {
	for {
		call, ok := in.next(c)
		if !ok {
			// The idle workers end now, the others once they have
			// answered their calls.
			close(c.input)
			return
		}
		if in.buffered() {
			// More input has come already: it may hold more calls.
			c.handOver(in)
			c.answer(call)
		} else {
			// Answered here while nothing else comes in: handing input
			// over wakes another thread, which costs a serial client
			// about a fifth of a search's time. A call that runs
			// longer (an embedder's, a busy database's) hands input
			// over once it has run for handOverAfter, for calls sent
			// meanwhile.
			after := handOverAfter
			if c.quick.Load() {
				after = handOverQuick
			}
			began := time.Now()
			t := time.AfterFunc(after, func() { c.handOver(in) })
			c.answer(call)
			c.quick.Store(time.Since(began) < handOverAfter)
			if t.Stop() {
				continue // input is still this worker's
			}
		}
		if _, ok := <-c.input; !ok {
			return
		}
	}
}

// handOverAfter is how long a call answered by the worker holding input
// runs before input passes to another worker, after a call that took at
// least as long (an embedder's, a busy database's).
//
// While calls take less, input passes after handOverQuick: a timer
// stopped before its time still wakes one of the process's idle threads
// then (Go's scheduler sleeps until the earliest timer), and with 1 ms a
// client calling one tool after another woke a thread every third call
// or so. At 10 ms those wake-ups are ten times rarer, and one session's
// searches were a few per cent faster (BENCHMARKS.md, "stdio: fewer
// wake-ups"); a call that turns out slow after quick ones keeps input
// 10 ms instead of 1.
const (
	handOverAfter = time.Millisecond
	handOverQuick = 10 * time.Millisecond
)

// handOver passes input to an idle worker, to a new one while fewer than
// stdioWorkers run, or else to the first to finish its call.
func (c *directCalls) handOver(in *drainReader) {
	select {
	case c.input <- struct{}{}:
		return
	default:
	}
	if c.workers < stdioWorkers {
		c.workers++
		go c.worker(in)
		return
	}
	c.input <- struct{}{}
}

// answer runs call and writes its response.
func (c *directCalls) answer(call directCall) {
	defer c.t.add(-1)
	defer call.done()
	resp := c.handle(call)
	if resp == nil {
		return
	}
	buf := responseBuffers.Get().(*[]byte)
	defer responseBuffers.Put(buf)
	b, err := appendMessage((*buf)[:0], resp)
	if err != nil {
		c.log.Warn("stdio: a tool call's response cannot be encoded", "err", err)
		return
	}
	b = append(b, '\n')
	*buf = b
	if err := c.w.writeLine(b); err != nil {
		c.log.Warn("stdio: writing a tool call's response failed", "err", err)
	}
}

// handle answers a plain call itself (callTool) and any other through
// HandleMessage, turning a panic into an internal error response to the
// request, as mcp-go's transport does.
func (c *directCalls) handle(call directCall) (resp mcp.JSONRPCMessage) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("stdio: panic recovered in a tool call", "panic", fmt.Sprint(r))
			resp = mcp.JSONRPCError{
				JSONRPC: mcp.JSONRPC_VERSION,
				ID:      mcp.NewRequestId(call.id),
				Error:   mcp.NewJSONRPCErrorDetails(mcp.INTERNAL_ERROR, fmt.Sprintf("internal panic: %v", r), nil),
			}
		}
	}()
	if resp, ok := c.callDirect(call.ctx, call.id, call.plain); ok {
		return resp
	}
	return c.mcp.HandleMessage(call.ctx, call.line)
}

// callDirect answers pc, a call with the id id, when it is plain (its
// args not nil) and callTool serves it.
func (c *directCalls) callDirect(ctx context.Context, id any, pc plainCall) (mcp.JSONRPCMessage, bool) {
	if pc.args == nil {
		return nil, false
	}
	p, ok := c.protocols.plainProtocol(pc)
	if !ok {
		return nil, false
	}
	return callTool(ctx, c.mcp, c.impl, c.mws, id, pc, p)
}

// appendMessage appends msg as json.Marshal encodes it (as mcp-go's
// transport writes it). A tool result holding one plain text block and
// structured content given as compact JSON, as every tool here returns,
// is written directly.
func appendMessage(b []byte, msg mcp.JSONRPCMessage) ([]byte, error) {
	if resp, ok := msg.(mcp.JSONRPCResponse); ok && resp.JSONRPC == mcp.JSONRPC_VERSION {
		var r *mcp.CallToolResult
		switch v := resp.Result.(type) {
		case *mcp.CallToolResult:
			r = v
		case mcp.CallToolResult:
			r = &v
		}
		if out, ok := appendToolResponse(b, resp.ID, r); ok {
			return out, nil
		}
	}
	j, err := json.Marshal(msg)
	return append(b, j...), err
}

// plainToolResult returns the text of r when appendToolResponse may write
// r as json.Marshal would: r is not nil, holds one text block with no
// annotations or metadata, and no input requests. Its structured
// content, if any, is raw JSON (appendToolResponse checks that it needs
// no compacting or escaping).
func plainToolResult(r *mcp.CallToolResult) (string, bool) {
	if r == nil || len(r.InputRequests) > 0 || r.RequestState != "" || len(r.Content) != 1 {
		return "", false
	}
	tc, ok := r.Content[0].(mcp.TextContent)
	if !ok || tc.Annotations != nil || tc.Meta != nil || tc.Type != "text" {
		return "", false
	}
	if len(r.RawStructuredContent) == 0 && r.StructuredContent != nil {
		return "", false
	}
	return tc.Text, true
}

// appendToolResponse appends the response with id to a tools/call whose
// result is r, as json.Marshal writes it (with the members in the order
// of the map mcp-go encodes a result through), when r is a
// plainToolResult whose structured content needs no compacting or
// escaping; otherwise it reports false and b is to be written another
// way.
func appendToolResponse(b []byte, rid mcp.RequestId, r *mcp.CallToolResult) ([]byte, bool) {
	text, ok := plainToolResult(r)
	if !ok {
		return b, false
	}
	raw := r.RawStructuredContent
	// A tool here returns the JSON of its output both as its text and as
	// its structured content: written together, in one pass.
	mirrored := len(raw) > 0 && text == string(raw)
	if len(raw) > 0 && !mirrored && !compactAndSafe(raw) {
		return b, false
	}
	id, err := json.Marshal(rid)
	if err != nil {
		return b, false
	}
	var meta []byte
	if r.Meta != nil {
		if meta, err = json.Marshal(r.Meta); err != nil {
			return b, false
		}
	}
	start := len(b)
	// The text grows by its escapes: a few per cent for prose, more for
	// JSON.
	b = slices.Grow(b, 128+len(id)+len(meta)+len(text)+len(text)/8+len(raw))
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	b = append(b, id...)
	b = append(b, `,"result":{`...)
	if meta != nil {
		b = append(b, `"_meta":`...)
		b = append(b, meta...)
		b = append(b, ',')
	}
	b = append(b, `"content":[{"type":"text","text":`...)
	if mirrored {
		if b, ok = appendQuotedJSON(b, raw); !ok {
			return b[:start], false
		}
	} else {
		b = jsonscan.AppendString(b, text)
	}
	b = append(b, "}]"...)
	if r.IsError {
		b = append(b, `,"isError":true`...)
	}
	if r.ResultType != "" {
		b = append(b, `,"resultType":`...)
		b = jsonscan.AppendString(b, string(r.ResultType))
	}
	if len(raw) > 0 {
		b = append(b, `,"structuredContent":`...)
		b = append(b, raw...)
	}
	return append(b, "}}"...), true
}

// appendQuotedJSON appends raw, taken to be valid JSON, as json.Marshal
// writes it as a string, when raw is also what json.Marshal makes of it
// as JSON (compactAndSafe): one pass checks the one and writes the
// other. Such JSON holds no control characters, HTML characters, U+2028,
// U+2029 or white space outside its strings, so its quotes and
// backslashes are all that its string form escapes; its other non-ASCII
// bytes must be valid UTF-8 (json.Marshal replaces invalid bytes in a
// string). It reports false, having written part of it, otherwise.
func appendQuotedJSON(b, raw []byte) ([]byte, bool) {
	b = append(b, '"')
	inString := false
	start := 0
	for i := 0; i < len(raw); i++ {
		if inString {
			// Most of the JSON is inside strings, passed over up to
			// the first byte that needs a look.
			if i += jsonscan.PlainPrefix(raw[i:]); i >= len(raw) {
				break
			}
		}
		switch jsonClass[raw[i]] {
		case jsonPlain:
			continue
		case jsonSpace:
			// Between tokens json.Marshal writes none; inside a string
			// valid JSON holds only the space itself unescaped.
			if !inString || raw[i] != ' ' {
				return b, false
			}
			continue
		case jsonQuote:
			inString = !inString
			b = append(b, raw[start:i]...)
			b = append(b, '\\', '"')
		case jsonBackslash:
			// Only inside a string, where it escapes the byte after it:
			// one of "\/bfnrtu, of which the first two are escaped again.
			if !inString || i+1 >= len(raw) {
				return b, false
			}
			b = append(b, raw[start:i]...)
			b = append(b, '\\', '\\')
			i++
			switch c := raw[i]; c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '/', 'b', 'f', 'n', 'r', 't', 'u':
				b = append(b, c)
			default:
				return b, false
			}
		case jsonMultibyte:
			// A string form replaces invalid UTF-8, which the JSON keeps.
			r, size := utf8.DecodeRune(raw[i:])
			if (r == utf8.RuneError && size == 1) || lineSeparator(raw[i:]) {
				return b, false
			}
			i += size - 1
			continue
		default: // jsonEscaped
			return b, false
		}
		start = i + 1
	}
	b = append(b, raw[start:]...)
	return append(b, '"'), !inString
}

// compactAndSafe reports whether raw, taken to be valid JSON, is already
// what json.Marshal makes of it: no white space between tokens, and
// nothing it escapes inside strings (<, >, &, U+2028 and U+2029).
func compactAndSafe(raw []byte) bool {
	inString := false
	for i := 0; i < len(raw); i++ {
		switch jsonClass[raw[i]] {
		case jsonQuote:
			inString = !inString
		case jsonBackslash:
			i++ // only inside a string, where it escapes the next byte
		case jsonSpace:
			if !inString {
				return false
			}
		case jsonMultibyte:
			if lineSeparator(raw[i:]) {
				return false
			}
		case jsonEscaped:
			return false
		}
	}
	return !inString
}

// lineSeparator reports whether b begins with U+2028 or U+2029, the two
// characters besides <, > and & that json.Marshal escapes in JSON. Their
// first byte, 0xE2, also begins dashes, curly quotes, the ellipsis and
// the euro sign, which it leaves as they are.
func lineSeparator(b []byte) bool {
	return len(b) >= 3 && b[0] == 0xE2 && b[1] == 0x80 && (b[2] == 0xA8 || b[2] == 0xA9)
}

// The classes of bytes compactAndSafe and appendQuotedJSON tell apart.
const (
	jsonPlain = iota
	jsonSpace
	jsonQuote
	jsonBackslash
	jsonMultibyte
	jsonEscaped
)

// jsonClass is the class of each byte: JSON's white space, quote,
// backslash, the bytes of characters beyond ASCII, and what json.Marshal
// never leaves unescaped (control characters, <, > and &).
var jsonClass = func() (c [256]uint8) {
	for i := range 0x20 {
		c[i] = jsonEscaped
	}
	for i := utf8.RuneSelf; i < 256; i++ {
		c[i] = jsonMultibyte
	}
	c[' '], c['\t'], c['\n'], c['\r'] = jsonSpace, jsonSpace, jsonSpace, jsonSpace
	c['"'], c['\\'] = jsonQuote, jsonBackslash
	c['<'], c['>'], c['&'] = jsonEscaped, jsonEscaped, jsonEscaped
	return c
}()
