package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/scopemem/scopemem/scope"
)

// DefaultDrainTimeout bounds how long stdio waits for calls in flight when
// its input ends or the process is told to stop.
const DefaultDrainTimeout = 10 * time.Second

// ServeStdio serves MCP over in and out (stdin and stdout of the process)
// as id, the identity from the agent config.
//
// When in reaches end of file (the client went away) or ctx ends (SIGTERM),
// no further request is read, and every request already read is answered
// before ServeStdio returns nil, waiting at most DefaultDrainTimeout: a
// client that sends its last call and closes its end still gets the answer,
// and an add that was acknowledged is stored.
func (a *App) ServeStdio(ctx context.Context, id scope.Identity, in io.Reader, out io.Writer) error {
	if err := id.Validate(); err != nil {
		return err
	}
	tr := newDrainTracker()
	w := tr.writer(out)
	calls := newDirectCalls(a.MCP, serverImplementation(), a.toolMiddlewares(), tr, w, a.log)
	s := server.NewStdioServer(a.MCP)
	// mcp-go answers tool calls with 5 workers by default: a client with
	// more calls in flight would queue behind them, and concurrent adds
	// could not share an embedding batch.
	server.WithWorkerPoolSize(stdioWorkers)(s)
	s.SetErrorLogger(log.New(slogWriter{a.log}, "", 0))
	s.SetContextFunc(func(ctx context.Context) context.Context {
		ctx = scope.WithIdentity(ctx, id)
		// ctx now names mcp-go's stdio session: tool calls served
		// directly run in it too.
		calls.start(ctx)
		return ctx
	})
	// Listen gets a context that only ends once input has ended and the
	// calls in flight are answered: cancelling it would cancel them.
	err := s.Listen(context.WithoutCancel(ctx), tr.reader(ctx, awaitInput(in, w), DefaultDrainTimeout, a.log, calls), w)
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// stdioWorkers is how many tool calls of one stdio client run at once.
const stdioWorkers = 64

// drainTracker counts JSON-RPC requests read and responses written, so that
// the end of input can wait until every request has its answer.
type drainTracker struct {
	mu      sync.Mutex
	pending int
	idle    chan struct{} // closed and replaced whenever pending drops to 0
	closed  bool          // input has ended: no request is taken any more
}

func newDrainTracker() *drainTracker {
	return &drainTracker{idle: make(chan struct{})}
}

// message is the part of a JSON-RPC message that tells requests (id and
// method) from responses (id, no method) and notifications (no id).
type message struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
}

func classify(line []byte) (isRequest, isResponse bool) {
	if req, resp, ok := classifyPrefix(line); ok {
		return req, resp
	}
	var m message
	if json.Unmarshal(line, &m) != nil || len(m.ID) == 0 || string(m.ID) == "null" {
		return false, false
	}
	return m.Method != "", m.Method == ""
}

// classifyPrefix classifies a message from its first members without
// scanning the rest: a response's "result" or "error" (which can be tens of
// kilobytes) is never read when its "id" came before it, as it does in
// everything mcp-go writes. ok is false when the prefix does not decide,
// and the caller decodes the whole line.
func classifyPrefix(line []byte) (isRequest, isResponse, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(line))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return false, false, false
	}
	var hasID, seenID bool
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return false, false, false
		}
		switch key, _ := t.(string); key {
		case "id":
			var id json.RawMessage
			if dec.Decode(&id) != nil {
				return false, false, false
			}
			seenID, hasID = true, len(id) > 0 && string(id) != "null"
		case "method":
			var m string
			if dec.Decode(&m) != nil || m == "" {
				return false, false, false
			}
			// A request, or a notification when it has no id: the id may
			// still follow, so only an id already seen decides.
			if seenID {
				return hasID, false, true
			}
			return false, false, false
		case "result", "error":
			if !seenID {
				return false, false, false
			}
			return false, hasID, true
		default:
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return false, false, false
			}
		}
	}
	return false, false, false
}

// take counts one request served outside mcp-go's transport, unless
// input has already ended.
func (t *drainTracker) take() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.pending++
	return true
}

// close marks the end of input: take refuses from now on.
func (t *drainTracker) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
}

func (t *drainTracker) add(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending += n
	if t.pending <= 0 {
		t.pending = 0
		close(t.idle)
		t.idle = make(chan struct{})
	}
}

// wait returns once no request is pending, or after timeout.
func (t *drainTracker) wait(timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		t.mu.Lock()
		n, idle := t.pending, t.idle
		t.mu.Unlock()
		if n == 0 {
			return true
		}
		select {
		case <-idle:
		case <-deadline:
			return false
		}
	}
}

// reader returns in as line-at-a-time input that reports end of file when
// in ends or ctx ends, but only after the requests read so far are
// answered. Tool calls that calls can serve never reach the returned
// reader.
func (t *drainTracker) reader(ctx context.Context, in io.Reader, drain time.Duration, logger *slog.Logger, calls *directCalls) io.Reader {
	r := &drainReader{t: t, ctx: ctx, in: bufio.NewReaderSize(in, 64<<10), lines: make(chan []byte), drain: drain, log: logger}
	// The workers end when in ends; a blocked read of stdin ends with
	// the process.
	go calls.run(r)
	return r
}

type drainReader struct {
	t     *drainTracker
	ctx   context.Context
	in    *bufio.Reader // read by the worker of calls holding input
	eof   bool          // in has ended; likewise
	lines chan []byte
	buf   []byte
	drain time.Duration
	log   *slog.Logger
	done  bool
	// waiting is set while mcp-go waits in Read for a new line, so it
	// has handled every line before: a tool call served directly then
	// cannot overtake a message read before it (a notification, which
	// mcp-go handles before reading on).
	waiting atomic.Bool
}

// buffered reports whether input has been read ahead of the last line.
func (r *drainReader) buffered() bool { return r.in.Buffered() > 0 }

// next reads input up to the next tool call that calls takes (only while
// mcp-go is waiting for input) and returns it; every other line goes to
// Read. It reports false, once, when input has ended.
func (r *drainReader) next(calls *directCalls) (directCall, bool) {
	for !r.eof {
		line, err := r.in.ReadBytes('\n')
		r.eof = err != nil
		if len(line) == 0 {
			continue
		}
		if r.waiting.Load() && r.ctx.Err() == nil {
			if call, ok := calls.take(line); ok {
				return call, true
			}
		}
		calls.notTaken(line)
		r.lines <- line
	}
	close(r.lines)
	return directCall{}, false
}

func (r *drainReader) Read(p []byte) (int, error) {
	if len(r.buf) == 0 {
		if r.done {
			return 0, io.EOF
		}
		r.waiting.Store(true)
		select {
		case line, ok := <-r.lines:
			r.waiting.Store(false)
			if !ok {
				return 0, r.end("input closed")
			}
			if req, _ := classify(bytes.TrimSpace(line)); req {
				r.t.add(1)
			}
			r.buf = line
		case <-r.ctx.Done():
			r.waiting.Store(false)
			return 0, r.end("shutting down")
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *drainReader) end(why string) error {
	r.done = true
	r.t.close()
	if !r.t.wait(r.drain) {
		r.log.Warn("stdio: calls still running after the drain timeout; stopping anyway", "reason", why, "timeout", r.drain)
	}
	return io.EOF
}

// writer passes output through and counts the responses in it.
func (t *drainTracker) writer(out io.Writer) *countingWriter {
	return &countingWriter{t: t, out: out}
}

type countingWriter struct {
	t    *drainTracker
	out  io.Writer
	mu   sync.Mutex
	part []byte
	// wrote is when the last write ended, as time since processStart
	// (0: nothing written yet).
	wrote atomic.Int64
}

// processStart is the origin of countingWriter.wrote.
var processStart = time.Now()

// sinceWrite returns how long ago the last write to w ended, or a day
// when nothing was written yet.
func (w *countingWriter) sinceWrite() time.Duration {
	wrote := w.wrote.Load()
	if wrote == 0 {
		return 24 * time.Hour
	}
	return time.Since(processStart) - time.Duration(wrote)
}

// written records a write that just ended.
func (w *countingWriter) written() { w.wrote.Store(int64(max(time.Since(processStart), 1))) }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	n, err := w.out.Write(p)
	w.part = append(w.part, p[:n]...)
	responses := 0
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		if _, resp := classify(w.part[:i]); resp {
			responses++
		}
		w.part = w.part[i+1:]
	}
	w.mu.Unlock()
	w.written()
	if responses > 0 {
		w.t.add(-responses)
	}
	return n, err
}

// writeLine writes one whole line that is not counted (a response to a
// request counted by take), between mcp-go's writes.
func (w *countingWriter) writeLine(line []byte) error {
	w.mu.Lock()
	_, err := w.out.Write(line)
	w.mu.Unlock()
	w.written()
	return err
}

// slogWriter sends the stdio server's log lines to slog (stderr), never to
// stdout.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn("stdio transport", "msg", string(bytes.TrimSpace(p)))
	return len(p), nil
}
