package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/internal/jsonscan"
)

// Measured calls read their results once, for what the load
// generator checks, rather than through mcp-go's client: its transport
// decodes every response line in full, and its CallTool decodes a tool
// result three more times (the structured content into maps). With ten
// hits a search answer is about 9 KB of JSON, and on the two cores the
// server shares with scopebench that decoding cost about as much CPU as
// the server's own work for a search.
//
// A leanReader sits between the server's output and mcp-go's stdio
// transport. When it reads the answer to a measured call (registered
// through a leanTransport, which sees the request's id), it takes
// isError and, for adds, the structured id from the line with a scan that
// skips what it does not need, and hands the transport a minimal result in
// its place. Errors, and every other message, pass through untouched.
// Over streamable HTTP a leanRoundTripper, under mcp-go's HTTP
// transport, does the same to the JSON body answering a measured call.

// callResult is what the measured loop needs of a tools/call result.
type callResult struct {
	structured bool   // read structuredContent's id and duplicate (adds)
	read       bool   // the leanReader read the result
	isError    bool   //
	text       string // the text blocks, for errors
	id         string // structuredContent.id (add_memory)
	duplicate  bool   // structuredContent.duplicate (add_memory)
}

// leanKey marks, in a call's context, the *callResult to fill in.
type leanKey struct{}

// leanReader reads a stdio server's output for mcp-go's transport; see
// above.
type leanReader struct {
	src  *bufio.Reader
	line []byte // the line being read
	out  []byte // what Read has still to return
	err  error  // the source's error, once out is drained

	mu   sync.Mutex
	want map[string]*callResult // by the JSON of the request id
}

func newLeanReader(src io.Reader) *leanReader {
	return &leanReader{src: bufio.NewReaderSize(src, 64<<10), want: map[string]*callResult{}}
}

// Read returns the server's output, a line at a time, with the answers
// to measured calls shortened.
func (r *leanReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.line = r.line[:0]
		for {
			chunk, err := r.src.ReadSlice('\n')
			r.line = append(r.line, chunk...)
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			r.err = err
			break
		}
		r.out = r.rewrite(r.line)
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

// expect registers out for the answer to the request with id.
func (r *leanReader) expect(id string, out *callResult) {
	r.mu.Lock()
	r.want[id] = out
	r.mu.Unlock()
}

// forget drops the registration of id, if the answer never came.
func (r *leanReader) forget(id string) {
	r.mu.Lock()
	delete(r.want, id)
	r.mu.Unlock()
}

// rewrite returns line, or a short stand-in when it answers a measured
// call without an error.
func (r *leanReader) rewrite(line []byte) []byte {
	r.mu.Lock()
	pending := len(r.want)
	r.mu.Unlock()
	if pending == 0 {
		return line
	}
	id, result, ok := idAndResult(line)
	if !ok {
		return line
	}
	r.mu.Lock()
	out := r.want[string(id)]
	delete(r.want, string(id))
	r.mu.Unlock()
	if out == nil {
		return line
	}
	if short, ok := shorten(id, result, out); ok {
		return append(short, '\n')
	}
	return line
}

// idAndResult returns the raw id and result of the JSON-RPC response b,
// and whether it has both.
func idAndResult(b []byte) (id, result []byte, ok bool) {
	ok = jsonscan.Fields(b, func(k, v []byte) bool {
		switch string(k) {
		case "id":
			id = v
		case "result":
			result = v
		}
		return id == nil || result == nil
	})
	return id, result, ok && id != nil && result != nil
}

// shorten returns the stand-in for the answer (request id, result) to a
// measured call, having filled in out, or false when the answer must
// reach mcp-go whole (an error, or a result it cannot read).
func shorten(id, result []byte, out *callResult) ([]byte, bool) {
	var isError bool
	var structured []byte
	if !jsonscan.Fields(result, func(k, v []byte) bool {
		switch string(k) {
		case "isError":
			isError = string(v) == "true"
		case "structuredContent":
			structured = v
		}
		return true
	}) || isError {
		return nil, false // mcp-go reads the error text
	}
	if out.structured && structured != nil {
		var s struct {
			ID        string `json:"id"`
			Duplicate bool   `json:"duplicate"`
		}
		if json.Unmarshal(structured, &s) != nil {
			return nil, false
		}
		out.id, out.duplicate = s.ID, s.Duplicate
	}
	out.read = true
	short := append([]byte(`{"jsonrpc":"2.0","id":`), id...)
	return append(short, `,"result":{"content":[]}}`...), true
}

// leanRoundTripper does for streamable HTTP what a leanReader does for
// stdio: the JSON answer to a measured call (its request's context
// carries a *callResult) reaches mcp-go's transport as a stand-in.
// Errors, event streams and every other exchange pass through untouched.
type leanRoundTripper struct {
	base http.RoundTripper
}

func (t leanRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	out, _ := req.Context().Value(leanKey{}).(*callResult)
	if err != nil || out == nil || resp.StatusCode != http.StatusOK ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if id, result, ok := idAndResult(body); ok {
		if short, ok := shorten(id, result, out); ok {
			body = short
		}
	}
	resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// leanTransport registers measured calls with its leanReader; everything
// else is the wrapped mcp-go stdio transport.
type leanTransport struct {
	*transport.Stdio
	r *leanReader
}

// SendRequest sends req, registering it with the reader when its context
// carries a *callResult.
func (t leanTransport) SendRequest(ctx context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
	out, _ := ctx.Value(leanKey{}).(*callResult)
	if out == nil || req.Method != string(mcp.MethodToolsCall) {
		return t.Stdio.SendRequest(ctx, req)
	}
	id, err := json.Marshal(req.ID)
	if err != nil {
		return nil, err
	}
	t.r.expect(string(id), out)
	defer t.r.forget(string(id))
	return t.Stdio.SendRequest(ctx, req)
}

// callTool calls a tool and returns what the measured loop checks.
func (s *session) callTool(ctx context.Context, req mcp.CallToolRequest) (callResult, error) {
	out := callResult{structured: req.Params.Name == opAdd}
	if s.lean {
		ctx = context.WithValue(ctx, leanKey{}, &out)
	}
	res, err := s.c.CallTool(ctx, req)
	if err != nil || out.read {
		return out, err
	}
	out.isError = res.IsError
	if res.IsError {
		out.text = resultText(res)
		return out, nil
	}
	if out.structured {
		var r struct {
			ID        string `json:"id"`
			Duplicate bool   `json:"duplicate"`
		}
		if err := decodeStructured(res, &r); err == nil {
			out.id, out.duplicate = r.ID, r.Duplicate
		}
	}
	return out, nil
}

// CloseIdleConnections closes the wrapped transport's idle connections.
func (t leanRoundTripper) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
