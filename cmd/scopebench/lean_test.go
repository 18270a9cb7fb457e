package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestLeanReader checks which lines the reader shortens and what it
// reads from them.
func TestLeanReader(t *testing.T) {
	add := `{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"{\"id\":\"m-1\",\"duplicate\":true}"}],"structuredContent":{"id":"m-1","duplicate":true}}}`
	search := `{"jsonrpc":"2.0","id":4,"result":{"content":[{"type":"text","text":"{\"results\":[]}"}],"structuredContent":{"results":[]}}}`
	toolErr := `{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"limit 0 is outside 1..100"}],"isError":true}}`
	other := `{"jsonrpc":"2.0","id":6,"result":{"tools":[]}}`
	notice := `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info"}}`
	input := strings.Join([]string{add, search, toolErr, other, notice}, "\n") + "\n"

	r := newLeanReader(strings.NewReader(input))
	addOut, searchOut, errOut := &callResult{structured: true}, &callResult{}, &callResult{}
	r.expect("3", addOut)
	r.expect("4", searchOut)
	r.expect("5", errOut)
	b, err := io.ReadAll(smallReads{r})
	if err != nil {
		t.Fatalf("ReadAll = %v", err)
	}
	want := strings.Join([]string{
		`{"jsonrpc":"2.0","id":3,"result":{"content":[]}}`,
		`{"jsonrpc":"2.0","id":4,"result":{"content":[]}}`,
		toolErr, other, notice,
	}, "\n") + "\n"
	if diff := cmp.Diff(want, string(b)); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	if !addOut.read || addOut.id != "m-1" || !addOut.duplicate {
		t.Errorf("add result = %+v, want read, id m-1, duplicate", *addOut)
	}
	if !searchOut.read || searchOut.id != "" {
		t.Errorf("search result = %+v, want read, no id", *searchOut)
	}
	if errOut.read {
		t.Errorf("tool error result = %+v, want left to mcp-go (not read)", *errOut)
	}
}

// smallReads reads at most 7 bytes at a time.
type smallReads struct{ r io.Reader }

func (o smallReads) Read(p []byte) (int, error) {
	if len(p) > 7 {
		p = p[:7]
	}
	return o.r.Read(p)
}

// TestLeanRoundTripper: over HTTP the JSON answer to a measured call is
// replaced by the stand-in after its id is read; a tool error, an event
// stream, an unmeasured call and an HTTP error reach the client whole.
func TestLeanRoundTripper(t *testing.T) {
	add := `{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"{\"id\":\"m-1\",\"duplicate\":false}"}],"structuredContent":{"id":"m-1","duplicate":false}}}`
	toolErr := `{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"limit 0 is outside 1..100"}],"isError":true}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/add":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, add)
		case "/error":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, toolErr)
		case "/stream":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: "+add+"\n\n")
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, add)
		}
	}))
	defer srv.Close()
	hc := &http.Client{Transport: leanRoundTripper{base: http.DefaultTransport}}
	tests := []struct {
		path     string
		measured bool
		want     string
		read     bool
	}{
		{"/add", true, `{"jsonrpc":"2.0","id":3,"result":{"content":[]}}`, true},
		{"/add", false, add, false},
		{"/error", true, toolErr, false},
		{"/stream", true, "data: " + add + "\n\n", false},
		{"/denied", true, add, false},
	}
	for _, tt := range tests {
		out := &callResult{structured: true}
		ctx := t.Context()
		if tt.measured {
			ctx = context.WithValue(ctx, leanKey{}, out)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if string(body) != tt.want {
			t.Errorf("%s (measured %v): body %s, want %s", tt.path, tt.measured, body, tt.want)
		}
		if out.read != tt.read || (tt.read && out.id != "m-1") {
			t.Errorf("%s (measured %v): result %+v, want read %v", tt.path, tt.measured, *out, tt.read)
		}
	}
}
