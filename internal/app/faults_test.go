package app_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/embed/ollamatest"
	"github.com/scopemem/scopemem/internal/app"
	"github.com/scopemem/scopemem/internal/pgtest"
	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
	"github.com/scopemem/scopemem/store/sqlite"
)

// distinctFact returns the i-th of a series of memories that share no
// words, so that none is taken for a near-duplicate of another.
func distinctFact(prefix string, i int) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s-%d", prefix, i))
	return fmt.Sprintf("%s %d: the code word is %x and the room is %x", prefix, i, h[:6], h[6:12])
}

// lockedBuffer is a bytes.Buffer safe for a child process to write to
// while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proc is a scopemem child process.
type proc struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // cmd.Wait's error, set before done is closed
}

// start starts cmd, collecting its stderr, and kills it when the test ends
// if it is still running.
func start(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start scopemem: %v", err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// stdioPipes returns the pipes to cmd's standard input and output, to be
// called before start.
func stdioPipes(t *testing.T, cmd *exec.Cmd) (io.WriteCloser, io.ReadCloser) {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	return stdin, stdout
}

// wait waits at most d for the process to exit and returns its exit error.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		t.Fatalf("scopemem still running %s later; stderr:\n%s", d, p.stderr.String())
		return nil
	}
}

// freeAddr returns a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startHTTPBinary runs `scopemem serve --http` on a free loopback port with
// HS256 tokens signed by testSecret and no rate limits, and returns it with
// its base URL once /healthz answers.
func startHTTPBinary(t *testing.T, args ...string) (*proc, string) {
	t.Helper()
	secret := writeFile(t, t.TempDir(), "jwt.secret", string(testSecret))
	addr := freeAddr(t)
	base := []string{"serve", "--http", addr, "--jwt-secret-file", secret, "--jwt-issuer", "test-issuer", "--jwt-audience", "scopemem-test",
		"--rate-limit", "0", "--org-rate-limit", "0", "--auth-failures-per-minute", "0"}
	p := start(t, exec.Command(binary, append(base, args...)...))
	url := "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, url
			}
		}
		select {
		case <-p.done:
			t.Fatalf("scopemem exited before serving (%v); stderr:\n%s", p.err, p.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("scopemem did not answer /healthz within a minute; stderr:\n%s", p.stderr.String())
		}
	}
}

// tryCall calls a tool and returns the transport error instead of failing
// the test: the server may be gone.
func tryCall(ctx context.Context, c *client.Client, tool string, args map[string]any) (*mcp.CallToolResult, error) {
	req := mcp.CallToolRequest{}
	req.Params.Name = tool
	req.Params.Arguments = args
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return c.CallTool(ctx, req)
}

// addedID returns the id of the memory an add_memory result names.
func addedID(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	var a addOut
	decode(t, res, &a)
	if a.ID == "" {
		t.Fatalf("add_memory succeeded without an id: %s", text(res))
	}
	return a.ID
}

var alice = scope.Identity{Org: "acme", User: "alice", Permissions: scope.AllPermissions}

// TestSIGKILLWhileAddingSQLite kills a stdio server with SIGKILL while a
// client keeps four adds in flight, then checks the file: it passes
// integrity_check, every acknowledged add is in it with its vector, and a
// new process serves it.
func TestSIGKILLWhileAddingSQLite(t *testing.T) {
	db := filepath.Join(t.TempDir(), "killed.db")
	cmd := exec.Command(binary, "serve", "--db", db, "--embedder", "builtin")
	cmd.Env = append(os.Environ(), "SCOPEMEM_ORG=acme", "SCOPEMEM_USER=alice")
	stdin, stdout := stdioPipes(t, cmd)
	p := start(t, cmd)

	var wmu sync.Mutex
	send := func(line string) error {
		wmu.Lock()
		defer wmu.Unlock()
		_, err := io.WriteString(stdin, line+"\n")
		return err
	}
	if err := send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	if !sc.Scan() {
		t.Fatalf("no answer to initialize; stderr:\n%s", p.stderr.String())
	}
	if err := send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`); err != nil {
		t.Fatal(err)
	}

	// Four adds in flight at a time, until the process is killed.
	const inFlight, killAfter = 4, 60
	slots := make(chan struct{}, inFlight)
	stop := make(chan struct{})
	sent := make(chan int, 1)
	go func() {
		n := 0
		defer func() { sent <- n }()
		for {
			select {
			case slots <- struct{}{}:
			case <-stop:
				return
			}
			req := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"add_memory","arguments":{"content":%q}}}`,
				100+n, distinctFact("killed", n))
			if send(req) != nil {
				return
			}
			n++
		}
	}()
	var acked []string
	for sc.Scan() {
		var resp struct {
			ID     int `json:"id"`
			Result struct {
				IsError           bool   `json:"isError"`
				StructuredContent addOut `json:"structuredContent"`
				Content           []any  `json:"content"`
			} `json:"result"`
			Error *struct{ Message string } `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &resp); err != nil {
			t.Fatalf("bad response %q: %v", sc.Text(), err)
		}
		if resp.Error != nil || resp.Result.IsError || resp.Result.StructuredContent.ID == "" {
			t.Errorf("add %d failed before the kill: %s", resp.ID, sc.Text())
		} else {
			acked = append(acked, resp.Result.StructuredContent.ID)
		}
		<-slots
		if len(acked) == killAfter {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	n := <-sent
	var exit *exec.ExitError
	if err := p.wait(t, 10*time.Second); !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("scopemem exited with %v, want killed by SIGKILL; stderr:\n%s", err, p.stderr.String())
	}
	if len(acked) < killAfter {
		t.Fatalf("only %d adds acknowledged before the kill", len(acked))
	}
	t.Logf("%d adds sent, %d acknowledged before SIGKILL", n, len(acked))

	// The file as the killed process left it: no repair, no orphan rows.
	raw, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	var integrity string
	if err := raw.QueryRow(`PRAGMA integrity_check`).Scan(&integrity); err != nil || integrity != "ok" {
		t.Errorf("integrity_check = %q, %v; want ok", integrity, err)
	}
	var rows, orphans int
	if err := raw.QueryRow(`SELECT count(*) FROM memories`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if err := raw.QueryRow(`SELECT count(*) FROM memories m WHERE NOT EXISTS (SELECT 1 FROM memory_vectors v WHERE v.rid = m.rid)`).Scan(&orphans); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	if orphans != 0 {
		t.Errorf("%d memories without a vector", orphans)
	}
	if rows < len(acked) || rows > n {
		t.Errorf("%d memories stored; %d were acknowledged and %d sent", rows, len(acked), n)
	}

	st, err := sqlite.Open(t.Context(), sqlite.Config{Path: db})
	if err != nil {
		t.Fatalf("reopen the killed file: %v", err)
	}
	for _, id := range acked {
		if _, err := st.Get(t.Context(), alice, id); err != nil {
			t.Errorf("acknowledged memory %s: %v", id, err)
		}
	}
	st.Close()

	// A new process serves the file and writes to it.
	c := stdioClient(t, []string{"SCOPEMEM_DB=" + db, "SCOPEMEM_EMBEDDER=builtin", "SCOPEMEM_ORG=acme", "SCOPEMEM_USER=alice"})
	ok[addOut](t, c, "add_memory", map[string]any{"content": "written after the restart"})
	ls := ok[scopesOut](t, c, "list_scopes", map[string]any{})
	total := 0
	for _, s := range ls.Scopes {
		total += s.Count
	}
	if total != rows+1 {
		t.Errorf("list_scopes counts %d memories after the restart, want %d", total, rows+1)
	}
}

// TestSIGKILLWhileAddingPostgres kills an HTTP server on PostgreSQL with
// SIGKILL while four clients add, restarts it on the same database, and
// checks that every acknowledged add is there once, with its vector.
func TestSIGKILLWhileAddingPostgres(t *testing.T) {
	d := pgtest.NewDatabase(t)
	args := []string{"--database-url", d.RuntimeURL, "--migrate-database-url", d.OwnerURL, "--embedder", "builtin"}
	p, url := startHTTPBinary(t, args...)
	tok := token(t, "acme", "alice", nil, allPerms...)

	const clients, killAfter = 4, 60
	var (
		mu      sync.Mutex
		acked   []string
		sent    int
		wg      sync.WaitGroup
		killed  = make(chan struct{})
		killErr error
		once    sync.Once
	)
	for i := range clients {
		c := connect(t, url, tok)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				mu.Lock()
				sent++
				mu.Unlock()
				res, err := tryCall(t.Context(), c, "add_memory", map[string]any{"content": distinctFact(fmt.Sprintf("client %d", i), j)})
				if err != nil {
					select {
					case <-killed:
					default:
						t.Errorf("add failed before the kill: %v", err)
					}
					return
				}
				if res.IsError {
					t.Errorf("add failed: %s", text(res))
					return
				}
				mu.Lock()
				acked = append(acked, addedID(t, res))
				if len(acked) >= killAfter {
					once.Do(func() {
						close(killed)
						killErr = p.cmd.Process.Signal(syscall.SIGKILL)
					})
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if killErr != nil {
		t.Fatal(killErr)
	}
	p.wait(t, 10*time.Second)
	t.Logf("%d adds sent, %d acknowledged before SIGKILL", sent, len(acked))

	_, url2 := startHTTPBinary(t, args...)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, id := range acked {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM memories WHERE id = $1 AND embedding IS NOT NULL`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("acknowledged memory %s stored %d times with its vector, want once", id, n)
		}
	}
	var rows, noVector int
	if err := conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE embedding IS NULL) FROM memories`).Scan(&rows, &noVector); err != nil {
		t.Fatal(err)
	}
	if noVector != 0 {
		t.Errorf("%d memories without a vector", noVector)
	}
	if rows < len(acked) || rows > sent {
		t.Errorf("%d memories stored; %d were acknowledged and %d sent", rows, len(acked), sent)
	}
	c := connect(t, url2, tok)
	ok[addOut](t, c, "add_memory", map[string]any{"content": "written after the restart"})
	ls := ok[scopesOut](t, c, "list_scopes", map[string]any{})
	total := 0
	for _, s := range ls.Scopes {
		total += s.Count
	}
	if total != rows+1 {
		t.Errorf("list_scopes counts %d memories after the restart, want %d", total, rows+1)
	}
}

// TestSIGTERMDrainsHTTP sends SIGTERM to an HTTP server while a slow add is
// in flight: the add completes and is stored, a new connection is refused,
// and the process exits 0 within the shutdown timeout.
func TestSIGTERMDrainsHTTP(t *testing.T) {
	db := filepath.Join(t.TempDir(), "m.db")
	const delay = 3 * time.Second
	p, url := startHTTPBinary(t, "--db", db, "--embedder", "fake", "--fake-dims", "8", "--fake-delay", delay.String(),
		"--shutdown-timeout", "20s")
	tok := token(t, "acme", "alice", nil, allPerms...)
	c := connect(t, url, tok)

	type result struct {
		res *mcp.CallToolResult
		err error
	}
	inflight := make(chan result, 1)
	go func() {
		res, err := tryCall(t.Context(), c, "add_memory", map[string]any{"content": "sent just before SIGTERM"})
		inflight <- result{res, err}
	}()
	time.Sleep(delay / 3)
	sigAt := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// Once the server is draining, a new connection is refused.
	refused := false
	for !refused && time.Since(sigAt) < delay/2 {
		tr := &http.Transport{DisableKeepAlives: true}
		resp, err := (&http.Client{Transport: tr, Timeout: time.Second}).Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			time.Sleep(20 * time.Millisecond)
			continue
		}
		// Refused: no new connection, or one accepted in the instant the
		// listener closed and then closed unanswered.
		var op *net.OpError
		if !(errors.As(err, &op) && op.Op == "dial") && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("new request after SIGTERM: %v, want the connection refused", err)
		}
		refused = true
	}
	if !refused {
		t.Errorf("new requests still answered %s after SIGTERM, while a call was in flight", delay/2)
	}

	r := <-inflight
	if r.err != nil {
		t.Fatalf("in-flight add: %v; stderr:\n%s", r.err, p.stderr.String())
	}
	if r.res.IsError {
		t.Fatalf("in-flight add failed: %s", text(r.res))
	}
	id := addedID(t, r.res)
	if err := p.wait(t, 20*time.Second); err != nil {
		t.Fatalf("scopemem exited with %v after SIGTERM, want 0; stderr:\n%s", err, p.stderr.String())
	}
	t.Logf("exited %s after SIGTERM", time.Since(sigAt).Round(time.Millisecond))

	st, err := sqlite.Open(t.Context(), sqlite.Config{Path: db})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Get(t.Context(), alice, id); err != nil {
		t.Errorf("the add answered during the drain is not stored: %v", err)
	}
	if _, err := st.Get(t.Context(), alice, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of an unknown id = %v, want ErrNotFound", err)
	}
}

// postTool sends one tools/call request to /mcp without the MCP handshake
// (the transport is stateless) and returns the response status, or the
// transport error.
func postTool(ctx context.Context, hc *http.Client, url, tok, tool string, args map[string]any) (int, error) {
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": map[string]any{"name": tool, "arguments": args}})
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/mcp", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// TestClientDisconnectCancelsWork cancels HTTP requests whose add_memory
// waits on a stalled embedder: the stalled embedding requests end, and the
// goroutine count falls back to where it was before the calls.
func TestClientDisconnectCancelsWork(t *testing.T) {
	ollama := ollamatest.NewServer(t, ollamatest.Config{Dims: 16, Model: "nomic-embed-text"})
	a := newApp(t, func(c *app.Config) { c.Embedder = "ollama"; c.OllamaHost = ollama.URL })
	ts := httpServer(t, a)
	tok := token(t, "acme", "alice", nil, allPerms...)
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	t.Cleanup(hc.CloseIdleConnections)

	// Warm up every path once, so that lazily started goroutines count in
	// the baseline.
	if code, err := postTool(t.Context(), hc, ts.URL, tok, "add_memory", map[string]any{"content": "warm-up memory"}); err != nil || code != http.StatusOK {
		t.Fatalf("warm-up add: %d, %v", code, err)
	}
	base := settledGoroutines(0)

	ollama.SetMode(ollamatest.Stall)
	const calls = 8
	before := ollama.Requests()
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(t.Context())
	errs := make(chan error, calls)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := postTool(ctx, hc, ts.URL, tok, "add_memory", map[string]any{"content": distinctFact("abandoned", i)})
			errs <- err
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for ollama.Requests() == before {
		if time.Now().After(deadline) {
			t.Fatal("the adds never reached the embedder")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // let the other calls reach it too
	if n := runtime.NumGoroutine(); n <= base {
		t.Fatalf("%d goroutines with %d calls stalled, no more than the %d before: the count cannot show a leak", n, calls, base)
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("abandoned call ended with %v, want context.Canceled", err)
		}
	}

	if n := settledGoroutines(base); n > base {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("%d goroutines 10s after the clients went away, %d before the calls:\n%s", n, base, buf)
	}
	// Nothing was stored half-way, and the server still serves.
	ollama.SetMode(ollamatest.OK)
	c := connect(t, ts.URL, tok)
	ls := ok[scopesOut](t, c, "list_scopes", map[string]any{})
	total := 0
	for _, s := range ls.Scopes {
		total += s.Count
	}
	if total != 1 {
		t.Errorf("%d memories stored, want only the warm-up one", total)
	}
}

// settledGoroutines waits up to 10s for the goroutine count to fall to at
// most target (0: until it stops changing for a while) and returns it.
func settledGoroutines(target int) int {
	n, stable := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		m := runtime.NumGoroutine()
		if target > 0 && m <= target {
			return m
		}
		if m == n {
			stable++
			if target == 0 && stable >= 10 {
				return m
			}
		} else {
			n, stable = m, 0
		}
	}
	return runtime.NumGoroutine()
}

// TestPostgresConnectionsKilled ends the runtime role's connections with
// pg_terminate_backend again and again while four HTTP clients add. Each
// add either succeeds and is stored once with its vector, or fails with the
// "store unavailable, retry" tool error and is stored at most once (a
// commit can land before the connection dies); once the killing
// stops, the pool serves again without a restart.
func TestPostgresConnectionsKilled(t *testing.T) {
	d := pgtest.NewDatabase(t)
	a := newApp(t, func(c *app.Config) { c.DatabaseURL, c.MigrateURL = d.RuntimeURL, d.OwnerURL })
	ts := httpServer(t, a)
	tok := token(t, "acme", "alice", nil, allPerms...)

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, d.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())

	const clients, killFor, killEvery = 4, 3 * time.Second, 100 * time.Millisecond
	stop := make(chan struct{})
	killed := make(chan int, 1)
	go func() {
		n := 0
		defer func() { killed <- n }()
		t := time.NewTicker(killEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			var k int
			if err := admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1`, d.RuntimeRole).Scan(&k); err != nil {
				return
			}
			n += k
		}
	}()

	type outcome struct {
		content string
		id      string // empty: the add failed
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		wg       sync.WaitGroup
	)
	for i := range clients {
		c := connect(t, ts.URL, tok)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				content := distinctFact(fmt.Sprintf("client %d", i), j)
				res, err := tryCall(t.Context(), c, "add_memory", map[string]any{"content": content})
				if err != nil {
					t.Errorf("add: %v", err)
					return
				}
				o := outcome{content: content}
				if res.IsError {
					if msg := text(res); !strings.HasPrefix(msg, "store unavailable, retry") {
						t.Errorf("add failed with %q, want the store unavailable, retry error", msg)
					}
				} else {
					o.id = addedID(t, res)
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(killFor)
	close(stop)
	wg.Wait()
	nKilled := <-killed
	failed := 0
	for _, o := range outcomes {
		if o.id == "" {
			failed++
		}
	}
	t.Logf("%d adds, %d failed, %d connections terminated", len(outcomes), failed, nKilled)
	if nKilled == 0 {
		t.Fatal("no connection was terminated: the test proved nothing")
	}

	for _, o := range outcomes {
		var n, withVector int
		if err := admin.QueryRow(ctx, `SELECT count(*), count(embedding) FROM memories WHERE content = $1`, o.content).Scan(&n, &withVector); err != nil {
			t.Fatal(err)
		}
		switch {
		case withVector != n:
			t.Errorf("%q stored %d times, %d of them with a vector", o.content, n, withVector)
		case o.id != "" && n != 1:
			t.Errorf("acknowledged add %s (%q) stored %d times, want once", o.id, o.content, n)
		case o.id == "" && n > 1:
			// A failed add may have committed before its answer was lost
			// (the error says a retry is safe), but never twice.
			t.Errorf("failed add of %q is stored %d times, want at most once", o.content, n)
		}
	}

	// The pool recovers by itself.
	c := connect(t, ts.URL, tok)
	for i := range 10 {
		ok[addOut](t, c, "add_memory", map[string]any{"content": distinctFact("after the kills", i)})
	}
	ok[searchOut](t, c, "search_memory", map[string]any{"query": "code word"})
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory, unmounted when
// the test ends; it skips the test when mounting is not permitted (it needs
// root, which CI's test container has).
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mounting a tmpfs needs root: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestSQLiteDiskFull fills the file system under the SQLite file: writes
// fail with the refused-writes error saying the disk is full
// (store.ErrReadOnly from the store), reads keep working and return
// everything stored, writes work again once space is freed, and the file
// passes integrity_check.
func TestSQLiteDiskFull(t *testing.T) {
	dir := mountTmpfs(t, 4<<20)
	db := filepath.Join(dir, "m.db")
	a, err := app.New(t.Context(), app.Config{DBPath: db, Embedder: "builtin", JanitorInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			a.Close()
		}
	})
	ts := httpServer(t, a)
	tok := token(t, "acme", "alice", nil, allPerms...)
	c := connect(t, ts.URL, tok)
	var acked []string
	for i := range 20 {
		acked = append(acked, ok[addOut](t, c, "add_memory", map[string]any{"content": distinctFact("before", i)}).ID)
	}
	userScope, err := alice.Resolve("user", "")
	if err != nil {
		t.Fatal(err)
	}
	// writeFails adds until one fails (the file system may still take a
	// few pages) and checks the tool error and the store's own error.
	writeFails := func(what string) {
		t.Helper()
		for i := 0; ; i++ {
			if i == 200 {
				t.Fatalf("%s: 200 adds of 8 KiB all succeeded", what)
			}
			content := distinctFact(what, i) + strings.Repeat(fmt.Sprintf(" filler %s %d", what, i), 400)
			res := call(t, c, "add_memory", map[string]any{"content": content})
			if !res.IsError {
				acked = append(acked, addedID(t, res))
				continue
			}
			if msg := text(res); !strings.HasPrefix(msg, "the memory store refuses writes") || !strings.Contains(msg, "is full") {
				t.Errorf("%s: add failed with %q, want the refused-writes error saying the disk is full", what, msg)
			}
			vecs, err := a.Embedder.Embed(t.Context(), []string{content})
			if err != nil {
				t.Fatal(err)
			}
			_, err = a.Store.Add(t.Context(), alice, []store.NewMemory{{Scope: userScope, Content: content, Vector: vecs[0]}})
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("%s: store Add = %v, want ErrUnavailable", what, err)
			}
			t.Logf("%s: store error after %d more adds: %v", what, i, err)
			return
		}
	}
	// readsWork checks that search and list_scopes still see every
	// acknowledged memory.
	readsWork := func(what string) {
		t.Helper()
		ls := ok[scopesOut](t, c, "list_scopes", map[string]any{})
		total := 0
		for _, s := range ls.Scopes {
			total += s.Count
		}
		if total != len(acked) {
			t.Errorf("%s: list_scopes counts %d memories, %d were acknowledged", what, total, len(acked))
		}
		s := ok[searchOut](t, c, "search_memory", map[string]any{"query": distinctFact("before", 7)})
		if len(s.Results) == 0 || s.Results[0].ID != acked[7] {
			t.Errorf("%s: search = %v, want %s first", what, ids(s.Results), acked[7])
		}
	}

	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := filler.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill the disk: %v", err)
			}
			break
		}
	}
	filler.Close()
	writeFails("disk full")
	readsWork("disk full")
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	acked = append(acked, ok[addOut](t, c, "add_memory", map[string]any{"content": "written once space was freed"}).ID)

	for _, id := range acked {
		if _, err := a.Store.Get(t.Context(), alice, id); err != nil {
			t.Errorf("acknowledged memory %s: %v", id, err)
		}
	}
	closed = true
	if err := a.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	raw, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var integrity string
	if err := raw.QueryRow(`PRAGMA integrity_check`).Scan(&integrity); err != nil || integrity != "ok" {
		t.Errorf("integrity_check = %q, %v; want ok", integrity, err)
	}
	var rows int
	if err := raw.QueryRow(`SELECT count(*) FROM memories`).Scan(&rows); err != nil || rows != len(acked) {
		t.Errorf("%d memories in the file (%v), %d acknowledged", rows, err, len(acked))
	}
}

// TestSQLiteReadOnlyFile serves a SQLite file marked immutable (chattr +i:
// root writes to a file whatever its mode, not to an immutable one) in a
// writable directory: the server starts, reads return what is stored, and
// writes fail with the refused-writes error saying the file is read-only.
func TestSQLiteReadOnlyFile(t *testing.T) {
	db := filepath.Join(t.TempDir(), "m.db")
	a, err := app.New(t.Context(), app.Config{DBPath: db, Embedder: "builtin", JanitorInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	var acked []string
	func() {
		ts := httpServer(t, a)
		c := connect(t, ts.URL, token(t, "acme", "alice", nil, allPerms...))
		for i := range 10 {
			acked = append(acked, ok[addOut](t, c, "add_memory", map[string]any{"content": distinctFact("stored", i)}).ID)
		}
		ts.Close()
	}()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chattr", "+i", db).CombinedOutput(); err != nil {
		t.Skipf("chattr +i needs root and a file system with attributes: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("chattr", "-i", db).CombinedOutput(); err != nil {
			t.Errorf("chattr -i: %v: %s", err, out)
		}
	})
	if f, err := os.OpenFile(db, os.O_WRONLY, 0); err == nil {
		f.Close()
		t.Fatal("the immutable file opened for writing")
	}

	a, err = app.New(t.Context(), app.Config{DBPath: db, Embedder: "builtin", JanitorInterval: -1})
	if err != nil {
		t.Fatalf("start on a read-only file: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	ts := httpServer(t, a)
	c := connect(t, ts.URL, token(t, "acme", "alice", nil, allPerms...))
	s := ok[searchOut](t, c, "search_memory", map[string]any{"query": distinctFact("stored", 3)})
	if len(s.Results) == 0 || s.Results[0].ID != acked[3] {
		t.Errorf("search = %v, want %s first", ids(s.Results), acked[3])
	}
	ls := ok[scopesOut](t, c, "list_scopes", map[string]any{})
	total := 0
	for _, sc := range ls.Scopes {
		total += sc.Count
	}
	if total != len(acked) {
		t.Errorf("list_scopes counts %d memories, want %d", total, len(acked))
	}
	for _, call := range []struct {
		tool string
		args map[string]any
	}{
		{"add_memory", map[string]any{"content": "cannot be written"}},
		{"update_memory", map[string]any{"id": acked[0], "tags": []string{"x"}}},
		{"delete_memory", map[string]any{"id": acked[1]}},
	} {
		if msg := fails(t, c, call.tool, call.args); !strings.HasPrefix(msg, "the memory store refuses writes") || !strings.Contains(msg, "is read-only") {
			t.Errorf("%s on a read-only file failed with %q, want the refused-writes error saying the file is read-only", call.tool, msg)
		}
	}
	userScope, err := alice.Resolve("user", "")
	if err != nil {
		t.Fatal(err)
	}
	vecs, err := a.Embedder.Embed(t.Context(), []string{"cannot be written"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Store.Add(t.Context(), alice, []store.NewMemory{{Scope: userScope, Content: "cannot be written", Vector: vecs[0]}}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("store Add on a read-only file = %v, want ErrUnavailable", err)
	} else {
		t.Logf("store error: %v", err)
	}
	for _, id := range acked {
		if _, err := a.Store.Get(t.Context(), alice, id); err != nil {
			t.Errorf("Get %s after the failed writes: %v", id, err)
		}
	}
}

// TestStalledEmbedderBlocksNothingElse stalls the embedder under adds that
// wait on it, and checks on each backend that list_scopes, delete_memory,
// update_memory (tags only) and purge answer at once meanwhile.
func TestStalledEmbedderBlocksNothingElse(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ollama := ollamatest.NewServer(t, ollamatest.Config{Dims: 16, Model: "nomic-embed-text"})
			a := newApp(t, func(c *app.Config) {
				b.setup(t, c)
				c.Embedder, c.OllamaHost, c.EmbedTimeout = "ollama", ollama.URL, 30*time.Second
			})
			ts := httpServer(t, a)
			tok := token(t, "acme", "alice", nil, allPerms...)
			c := connect(t, ts.URL, tok)
			first := ok[addOut](t, c, "add_memory", map[string]any{"content": distinctFact("kept", 1)})
			second := ok[addOut](t, c, "add_memory", map[string]any{"content": distinctFact("kept", 2)})

			ollama.SetMode(ollamatest.Stall)
			before := ollama.Requests()
			ctx, cancel := context.WithCancel(t.Context())
			var wg sync.WaitGroup
			for i := range 3 {
				sc := connect(t, ts.URL, tok)
				wg.Add(1)
				go func() {
					defer wg.Done()
					tryCall(ctx, sc, "add_memory", map[string]any{"content": distinctFact("stalled", i)})
				}()
			}
			defer func() {
				cancel()
				wg.Wait()
			}()
			for deadline := time.Now().Add(10 * time.Second); ollama.Requests() == before; {
				if time.Now().After(deadline) {
					t.Fatal("the adds never reached the embedder")
				}
				time.Sleep(10 * time.Millisecond)
			}

			timed := func(tool string, args map[string]any) {
				t.Helper()
				start := time.Now()
				okRes(t, c, tool, args)
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("%s took %v while adds waited on a stalled embedder", tool, d)
				}
			}
			timed("list_scopes", map[string]any{})
			timed("update_memory", map[string]any{"id": second.ID, "tags": []string{"kept"}})
			timed("delete_memory", map[string]any{"id": first.ID})
			timed("purge", map[string]any{"scope": "user", "confirm": "user"})
		})
	}
}
