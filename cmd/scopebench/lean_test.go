package main

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestJSONFields checks the top-level scan against encoding/json on
// objects whose strings hold quotes, escapes, braces and brackets.
func TestJSONFields(t *testing.T) {
	tests := []string{
		`{}`,
		` { "a" : 1 , "b":"x" } `,
		`{"id":17,"result":{"content":[{"type":"text","text":"{\"results\":[{\"content\":\"a \\\"quoted\\\" } ] word\"}]}"}],"structuredContent":{"results":[{"content":"a \"quoted\" } ] word","tags":["x\\"]}]}}}`,
		`{"s":"\\\\","n":-1.5e-7,"t":true,"f":false,"z":null,"a":[[],{},[{"k":"]"}]]}`,
		`{"u":"\u00e9\u2028","e":"\\\"}"}`,
	}
	for _, in := range tests {
		var want map[string]json.RawMessage
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatalf("bad test input %s: %v", in, err)
		}
		got := map[string]json.RawMessage{}
		if !jsonFields([]byte(in), func(k, v []byte) bool {
			got[string(k)] = json.RawMessage(bytes.Clone(v))
			return true
		}) {
			t.Errorf("jsonFields(%s) = false, want true", in)
			continue
		}
		for k := range want {
			want[k] = bytes.TrimSpace(want[k])
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("jsonFields(%s) (-encoding/json +got):\n%s", in, diff)
		}
	}
	for _, in := range []string{`[1]`, `"x"`, `{"a":}`, `{"a":"unterminated}`, `{"a":1`} {
		if jsonFields([]byte(in), func(k, v []byte) bool { return true }) {
			t.Errorf("jsonFields(%s) = true, want false", in)
		}
	}
}

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
