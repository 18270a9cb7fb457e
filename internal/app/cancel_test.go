package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/scopemem/scopemem/embed/ollamatest"
	"github.com/scopemem/scopemem/internal/app"
)

// rawPost POSTs body to url's /mcp with tok, as the protocol version
// modern names (empty: a session-less call of an earlier version), and
// returns the status and the body of the answer.
func rawPost(ctx context.Context, url, tok, session string, modern bool, method, name string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/mcp", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	if modern {
		req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", method)
		if name != "" {
			req.Header.Set("Mcp-Name", name)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// modernMeta is the _meta of a 2026-07-28 request.
var modernMeta = map[string]any{
	"io.modelcontextprotocol/protocolVersion":    "2026-07-28",
	"io.modelcontextprotocol/clientInfo":         map[string]any{"name": "probe", "version": "1"},
	"io.modelcontextprotocol/clientCapabilities": map[string]any{},
}

// TestHTTPCancelOnlyOwnCalls sends notifications/cancelled naming the id
// of a call in flight (an add_memory held up by a slow embedder), from
// the caller itself and from a user of another org, over both protocol
// eras and without a session id. Only the caller's own notification may
// cancel its call: request ids are small counters every client repeats,
// so an id alone names a call of every tenant at once.
func TestHTTPCancelOnlyOwnCalls(t *testing.T) {
	ollama := ollamatest.NewServer(t, ollamatest.Config{Dims: 16, Model: "nomic-embed-text", Delay: 1500 * time.Millisecond})
	a := newApp(t, func(c *app.Config) { c.Embedder = "ollama"; c.OllamaHost = ollama.URL })
	ts := httpServer(t, a)
	alice := token(t, "acme", "alice", nil, allPerms...)
	mallory := token(t, "evil", "mallory", nil, allPerms...)
	const session = "mcp-session-0b6f5b2e-8a47-4b8e-9a39-3f7f0c1d2e3a"

	for _, tc := range []struct {
		name         string
		modern       bool
		session      string // the call's and the notification's
		canceller    string
		escaped      bool // the method's name written with an escape
		wantCanceled bool
	}{
		{"session-less, another org", false, "", mallory, false, false},
		{"session-less, the caller", false, "", alice, false, true},
		{"session, another org", false, session, mallory, false, false},
		{"session, the caller", false, session, alice, false, true},
		{"2026-07-28, another org", true, "", mallory, false, false},
		{"2026-07-28, the caller", true, "", alice, false, true},
		{"escaped method, another org", false, "", mallory, true, false},
		{"escaped method, the caller", false, "", alice, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			params := map[string]any{"name": "add_memory", "arguments": map[string]any{"content": "cancel probe " + tc.name}}
			note := map[string]any{"requestId": 7, "reason": "probe"}
			if tc.modern {
				params["_meta"] = modernMeta
				note["_meta"] = modernMeta
			}
			call, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params})
			cancel, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": note})
			if tc.escaped {
				cancel = bytes.Replace(cancel, []byte("/cancelled"), []byte(`\/\u0063ancelled`), 1)
			}

			type answer struct {
				status int
				body   []byte
				err    error
			}
			done := make(chan answer, 1)
			before := ollama.Requests()
			go func() {
				s, b, err := rawPost(t.Context(), ts.URL, alice, tc.session, tc.modern, "tools/call", "add_memory", call)
				done <- answer{s, b, err}
			}()
			for deadline := time.Now().Add(5 * time.Second); ollama.Requests() == before; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the add never reached the embedder")
				}
			}
			s, b, err := rawPost(t.Context(), ts.URL, tc.canceller, tc.session, tc.modern, "notifications/cancelled", "", cancel)
			if err != nil || s >= 300 {
				t.Fatalf("notifications/cancelled: %d %s, %v", s, b, err)
			}
			got := <-done
			if got.err != nil {
				t.Fatalf("the call: %v", got.err)
			}
			var resp struct {
				Result *struct {
					IsError bool `json:"isError"`
				} `json:"result"`
				Error *struct {
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(bytes.TrimPrefix(bytes.TrimSpace(got.body), []byte("event: message\ndata: ")), &resp); err != nil {
				t.Fatalf("the call's answer %q: %v", got.body, err)
			}
			stored := resp.Result != nil && !resp.Result.IsError
			if stored == tc.wantCanceled {
				t.Errorf("status %d, answer %s: want cancelled %v", got.status, got.body, tc.wantCanceled)
			}
		})
	}
}
