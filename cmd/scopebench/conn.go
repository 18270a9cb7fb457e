package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/scope"
)

// target is the server the sessions talk to: scopemem processes started
// over stdio, or a server reached over streamable HTTP.
type target interface {
	// open connects session i and initializes it.
	open(ctx context.Context, i int) (*session, error)
	// verifier connects a fresh session able to act as identity ident,
	// for the checks after the run. Over stdio that is a new process, so
	// the check sees only what reached the database.
	verifier(ctx context.Context, ident int) (*session, error)
	// perIdentity reports whether a verifier serves only the identity it
	// was opened for (stdio) rather than any (HTTP).
	perIdentity() bool
	close() error
}

// session is one MCP client connection.
type session struct {
	c *client.Client
	// fixed is the identity every call of this session is made as (a
	// stdio process has one), or -1 when each call picks one (HTTP, where
	// each request carries its own token).
	fixed int
	// pid is the server process of a stdio session, 0 otherwise.
	pid int
	// lean: the client's transport is a leanTransport.
	lean bool
	// protocol is the MCP version the session speaks.
	protocol string
	closeFn  func() error
}

func (s *session) close() error {
	if s.closeFn != nil {
		return s.closeFn()
	}
	return s.c.Close()
}

// identKey carries the identity of one call in its context; the HTTP
// transport's header function turns it into that identity's token.
type identKey struct{}

func withIdent(ctx context.Context, ident int) context.Context {
	return context.WithValue(ctx, identKey{}, ident)
}

// initialize starts a session speaking protocol: "" for the newest the
// client knows (2026-07-28: no handshake, and every request carries the
// client's version, identity and capabilities in its _meta), or an
// earlier version, negotiated with the initialize handshake.
func initialize(ctx context.Context, c *client.Client, protocol string) (*mcp.InitializeResult, error) {
	req := mcp.InitializeRequest{}
	req.Params.ClientInfo = mcp.Implementation{Name: "scopebench", Version: "1"}
	req.Params.ProtocolVersion = protocol
	return c.Initialize(ctx, req)
}

// stdioTarget starts `scopemem serve` processes.
type stdioTarget struct {
	bin     string
	args    []string // after "serve", before the identity flags
	tenants *tenants
	shared  bool
	seed    uint64
	stderr  *tailBuffer
	// protocol is the MCP version the sessions speak (see initialize).
	protocol string

	// newApp, when set, assembles a server inside this process for each
	// session (as a process of its own would be, on the same database),
	// served over in-memory pipes instead of a child process: for CPU
	// profiles of the stdio path, not for figures (client and server share
	// one runtime).
	newApp func(ctx context.Context) (*app.App, error)

	mu     sync.Mutex
	one    *session // the shared process, when shared
	closed bool
}

func (t *stdioTarget) perIdentity() bool { return true }

func (t *stdioTarget) open(ctx context.Context, i int) (*session, error) {
	if !t.shared {
		return t.spawn(ctx, t.tenants.pick(newRand(t.seed, uint64(i), 1)))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.one == nil {
		s, err := t.spawn(ctx, 0)
		if err != nil {
			return nil, err
		}
		t.one = s
	}
	// Every session shares the process; the target closes it.
	return &session{c: t.one.c, fixed: t.one.fixed, pid: t.one.pid, lean: t.one.lean, closeFn: func() error { return nil }}, nil
}

func (t *stdioTarget) verifier(ctx context.Context, ident int) (*session, error) {
	return t.spawn(ctx, ident)
}

// spawn starts one server process acting as identity ident.
func (t *stdioTarget) spawn(ctx context.Context, ident int) (*session, error) {
	id := t.tenants.ids[ident]
	if t.newApp != nil {
		return t.serveInProcess(ctx, ident)
	}
	args := append([]string{"serve"}, t.args...)
	args = append(args, "--org", id.Org, "--user", id.User)
	// Not tied to a context: the process ends when its input closes
	// (session close), after answering what it has read.
	cmd := exec.Command(t.bin, args...)
	cmd.Env = append(os.Environ(), "SCOPEMEM_LOG_LEVEL=warn")
	cmd.Stderr = t.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", t.bin, err)
	}
	lr := newLeanReader(stdout)
	c := client.NewClient(leanTransport{Stdio: transport.NewIO(lr, stdin, nil), r: lr})
	closeFn := func() error {
		err := c.Close() // closes its input: the server answers what it read and exits
		return errors.Join(err, cmd.Wait())
	}
	if err := c.Start(context.WithoutCancel(ctx)); err != nil {
		cmd.Process.Kill()
		closeFn()
		return nil, fmt.Errorf("start %s: %w", t.bin, err)
	}
	res, err := initialize(ctx, c, t.protocol)
	if err != nil {
		cmd.Process.Kill()
		closeFn()
		return nil, fmt.Errorf("initialize %s serve: %w (its last log lines: %s)", t.bin, err, t.stderr.String())
	}
	return &session{c: c, fixed: ident, pid: cmd.Process.Pid, lean: true, protocol: res.ProtocolVersion, closeFn: closeFn}, nil
}

// serveInProcess serves one stdio session from t.app over pipes.
func (t *stdioTarget) serveInProcess(ctx context.Context, ident int) (*session, error) {
	id := t.tenants.ids[ident]
	key := make([]byte, 8)
	_, _ = rand.Read(key)
	sid, err := scope.AgentConfig{Org: id.Org, User: id.User}.Identity("stdio-" + hex.EncodeToString(key))
	if err != nil {
		return nil, err
	}
	a, err := t.newApp(ctx)
	if err != nil {
		return nil, err
	}
	serverIn, clientOut := io.Pipe()
	clientIn, serverOut := io.Pipe()
	done := make(chan error, 1)
	// The server returns once clientOut is closed (session close) and it
	// has answered what it read.
	go func() {
		err := a.ServeStdio(context.WithoutCancel(ctx), sid, serverIn, serverOut)
		serverOut.Close()
		done <- errors.Join(err, a.Close())
	}()
	lr := newLeanReader(clientIn)
	c := client.NewClient(leanTransport{Stdio: transport.NewIO(lr, clientOut, nil), r: lr})
	if err := c.Start(context.WithoutCancel(ctx)); err != nil {
		clientOut.Close()
		return nil, err
	}
	res, err := initialize(ctx, c, t.protocol)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("initialize in-process stdio server: %w", err)
	}
	return &session{c: c, fixed: ident, lean: true, protocol: res.ProtocolVersion, closeFn: func() error {
		err := c.Close()
		return errors.Join(err, <-done)
	}}, nil
}

func (t *stdioTarget) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.one != nil && !t.closed {
		t.closed = true
		return t.one.close()
	}
	return nil
}

// httpTarget reaches a server over streamable HTTP, each call with the
// bearer token of its identity.
type httpTarget struct {
	url      string
	tokens   []string
	hc       *http.Client
	protocol string // the MCP version the sessions speak (see initialize)
}

// newHTTPTarget mints one HS256 token per identity.
func newHTTPTarget(url string, secret []byte, issuer, audience string, ten *tenants, ttl time.Duration, conns int) (*httpTarget, error) {
	t := &httpTarget{
		url: strings.TrimSuffix(url, "/"),
		hc: &http.Client{Transport: leanRoundTripper{base: &http.Transport{
			MaxIdleConns:        conns * 2,
			MaxIdleConnsPerHost: conns * 2,
			IdleConnTimeout:     time.Minute,
		}}},
	}
	now := time.Now()
	for _, id := range ten.ids {
		claims := map[string]any{
			"org_id": id.Org, "sub": id.User, "scope": string(scope.PermRead) + " " + string(scope.PermWrite),
			"iat": now.Unix(), "exp": now.Add(ttl).Unix(),
		}
		if issuer != "" {
			claims["iss"] = issuer
		}
		if audience != "" {
			claims["aud"] = audience
		}
		tok, err := scope.MintHS256(secret, claims)
		if err != nil {
			return nil, err
		}
		t.tokens = append(t.tokens, tok)
	}
	return t, nil
}

func (t *httpTarget) perIdentity() bool { return false }

func (t *httpTarget) open(ctx context.Context, _ int) (*session, error) {
	c, err := client.NewStreamableHttpClient(t.url+"/mcp",
		transport.WithHTTPBasicClient(t.hc),
		transport.WithHTTPHeaderFunc(func(ctx context.Context) map[string]string {
			i, _ := ctx.Value(identKey{}).(int)
			return map[string]string{"Authorization": "Bearer " + t.tokens[i]}
		}),
	)
	if err != nil {
		return nil, err
	}
	if err := c.Start(context.WithoutCancel(ctx)); err != nil {
		return nil, fmt.Errorf("connect to %s: %w", t.url, err)
	}
	res, err := initialize(withIdent(ctx, 0), c, t.protocol)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("initialize over HTTP at %s/mcp: %w", t.url, err)
	}
	return &session{c: c, fixed: -1, lean: true, protocol: res.ProtocolVersion}, nil
}

func (t *httpTarget) verifier(ctx context.Context, _ int) (*session, error) { return t.open(ctx, 0) }

func (t *httpTarget) close() error {
	t.hc.CloseIdleConnections()
	return nil
}

// tailBuffer keeps the last few KiB written to it: the servers' stderr,
// shown when one fails to start.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailBytes = 4 << 10

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > tailBytes {
		b.buf = append([]byte(nil), b.buf[len(b.buf)-tailBytes:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimSpace(string(b.buf))
	if s == "" {
		return "(none)"
	}
	return s
}
