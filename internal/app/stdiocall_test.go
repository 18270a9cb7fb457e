package app

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mark3labs/mcp-go/mcp"
)

// toolResult is a tool result as tools.Register's handlers make it: the
// same JSON as text and as raw structured content.
func toolResult(text string) *mcp.CallToolResult {
	return &mcp.CallToolResult{
		Content:              []mcp.Content{mcp.NewTextContent(text)},
		StructuredContent:    json.RawMessage(text),
		RawStructuredContent: json.RawMessage(text),
	}
}

func TestAppendMessage(t *testing.T) {
	search := `{"results":[{"id":"0193c1f2-7d7e-7b7c-9d6e-1f2e3d4c5b6a","content":"the \"staging\" db is pluto \u003cnot mars\u003e \\ é 日本",` +
		`"scope":"user","score":1,"tags":["a","b"],"metadata":{"k":[1,2.5,null,true]},"created_by":"u","created_at":"2026-11-23T10:00:00Z","similarity":0.81}]}`
	withResultType := toolResult(`{"id":"x"}`)
	withResultType.ResultType = "complete"
	failed := mcp.NewToolResultError("scope team:x is not one of yours: <b> & \u2028")
	annotated := toolResult(`{}`)
	annotated.Content = []mcp.Content{mcp.TextContent{Type: "text", Text: "{}", Annotated: mcp.Annotated{Annotations: &mcp.Annotations{Priority: ptr(1.0)}}}}
	meta := toolResult(`{"a":1}`)
	meta.Meta = &mcp.Meta{AdditionalFields: map[string]any{"k": "v<>", "io.modelcontextprotocol/serverInfo": mcp.Implementation{Name: "scopemem", Version: "1"}}}
	meta.ResultType = "complete"
	metaToken := toolResult(`{}`)
	metaToken.Meta = &mcp.Meta{ProgressToken: "t"}
	two := toolResult(`{}`)
	two.Content = append(two.Content, mcp.NewTextContent("more"))
	otherText := toolResult(`{"a":"b"}`)
	otherText.Content = []mcp.Content{mcp.NewTextContent("a is b")}
	otherTextSpace := toolResult(`{"a": "b"}`)
	otherTextSpace.Content = []mcp.Content{mcp.NewTextContent("a is b")}
	otherTextDash := toolResult("{\"a\":\"b \u2014 c\u2019s\"}")
	otherTextDash.Content = []mcp.Content{mcp.NewTextContent("a is b")}
	otherTextSeparator := toolResult("{\"a\":\"b\u2029\"}")
	otherTextSeparator.Content = []mcp.Content{mcp.NewTextContent("a is b")}
	structured := &mcp.CallToolResult{Content: []mcp.Content{mcp.NewTextContent("{}")}, StructuredContent: map[string]any{"a": 1}}
	for _, tc := range []struct {
		name   string
		msg    mcp.JSONRPCMessage
		direct bool // written by appendToolResponse
	}{
		{"search result", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(42)), toolResult(search)), true},
		{"value result, float id", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(float64(7)), *toolResult(search)), true},
		{"string id", mcp.NewJSONRPCResultResponse(mcp.NewRequestId("a\"<b>"), toolResult(`{"id":"x","duplicate":false}`)), true},
		{"tool error", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(3)), failed), true},
		{"result type", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(3)), withResultType), true},
		{"control characters and invalid UTF-8", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(1)),
			&mcp.CallToolResult{Content: []mcp.Content{mcp.NewTextContent("a\x00\x01\b\f\n\r\t\x1f\x7f\xff\xc3(\u2029z")}}), true},
		{"raw content with white space", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(1)), toolResult(`{"a": [1, 2]}`)), false},
		{"raw content with HTML", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(1)), toolResult(`{"a":"<b>"}`)), false},
		{"raw content with U+2028", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(1)), toolResult("{\"a\":\"\u2028\"}")), false},
		{"raw content with dashes and curly quotes", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(1)), toolResult("{\"a\":\"it’s — €5 …\"}")), true},
		{"raw content with invalid UTF-8", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(1)), toolResult("{\"a\":\"\xff\"}")), false},
		{"raw content with escapes", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(1)), toolResult(`{"a":"\\\"\/\b\f\n\r\t\u00e9\"","b":[{"c":"\\"}]}`)), true},
		{"raw content and other text", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(1)), otherText), true},
		{"raw content with white space and other text", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(1)), otherTextSpace), false},
		{"raw content with dashes and other text", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(1)), otherTextDash), true},
		{"raw content with U+2029 and other text", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(1)), otherTextSeparator), false},
		{"annotated text", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(1)), annotated), false},
		{"result metadata", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(1)), meta), true},
		{"result progress token", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(1)), metaToken), true},
		{"two blocks", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(1)), two), false},
		{"structured content as a value", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(1)), structured), false},
		{"other result", mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(1)), mcp.EmptyResult{}), false},
		{"error", mcp.JSONRPCError{JSONRPC: mcp.JSONRPC_VERSION, ID: mcp.NewRequestId(int64(1)),
			Error: mcp.NewJSONRPCErrorDetails(mcp.INTERNAL_ERROR, "internal panic: <x>", nil)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := json.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := appendMessage(nil, tc.msg)
			if err != nil || string(got) != string(want) {
				t.Errorf("appendMessage = %s, %v\nwant %s", got, err, want)
			}
			var r *mcp.CallToolResult
			var id mcp.RequestId
			if resp, ok := tc.msg.(mcp.JSONRPCResponse); ok {
				id = resp.ID
				r, _ = resp.Result.(*mcp.CallToolResult)
				if v, ok := resp.Result.(mcp.CallToolResult); ok {
					r = &v
				}
			}
			if _, direct := appendToolResponse(nil, id, r); direct != tc.direct {
				t.Errorf("appendToolResponse reports %v, want %v", direct, tc.direct)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// FuzzCompactAndSafe checks compactAndSafe against json.Marshal: for
// valid JSON it reports true exactly when json.Marshal writes the JSON
// unchanged.
func FuzzCompactAndSafe(f *testing.F) {
	for _, s := range []string{`{}`, `{"a": 1}`, `{"a":"b c"}`, `["<"]`, "[\"\u2028\"]", "[\"\u2014\u20ac\"]", "[\"\xff\"]", `["\\\""]`, "[\n1]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return
		}
		m, err := json.Marshal(json.RawMessage(raw))
		if same := err == nil && bytes.Equal(m, raw); compactAndSafe(raw) != same {
			t.Errorf("compactAndSafe(%q) = %v; json.Marshal writes it as %q", raw, !same, m)
		}
	})
}

// FuzzAppendQuotedJSON checks appendQuotedJSON against json.Marshal: it
// reports true exactly for valid JSON in valid UTF-8 that json.Marshal
// writes unchanged, and then writes the string json.Marshal writes.
func FuzzAppendQuotedJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":"b c"}`, `{"a": 1}`, `{"a":"\"\\\/\u00e9"}`, `["<"]`, "[\"\u2028\"]", "[\"\u2029\"]", "[\"\u2014\u2019\"]", "[\"\xff\"]",
		`{"results":[{"id":"x","content":"the \"db\"","score":0.5,"tags":[]}]}`, `"\\`, `[1,"`, "[\"é日本\"]", "[\"\t\"]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return // never given: a tool's output is encoded JSON
		}
		got, ok := appendQuotedJSON(nil, raw)
		m, err := json.Marshal(json.RawMessage(raw))
		if same := err == nil && bytes.Equal(m, raw) && utf8.Valid(raw); ok != same {
			t.Fatalf("appendQuotedJSON(%q) reports %v; json.Marshal writes it as %q", raw, ok, m)
		}
		if want, _ := json.Marshal(string(raw)); ok && string(got) != string(want) {
			t.Errorf("appendQuotedJSON(%q) = %s, want %s", raw, got, want)
		}
	})
}

func TestReadStdioCallID(t *testing.T) {
	for _, tc := range []struct {
		line string
		id   string // "": not a tool call
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`, "1"},
		{`{"method":"tools/call","jsonrpc":"2.0","id":"a"}`, `"a"`},
		{`{"params":{"id":3},"method":"tools/call","id":7}`, "7"},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, ""},
		{`{"jsonrpc":"2.0","method":"tools/call","params":{}}`, ""},
		{`{"jsonrpc":"2.0","id":null,"method":"tools/call"}`, ""},
		{`{"jsonrpc":"2.0","id":1,"result":{}}`, ""},
		{`{"id":1,"id":2,"method":"tools/call"}`, ""},
		{`{"id":1,"method":"tools/call","id":2}`, ""},
		{`[1]`, ""},
		{`{"id":1,"meth`, ""},
		{`{"id":1,"method":"tools/call"`, ""},
		{`{}`, ""},
		{`"tools/call"`, ""},
		{`7`, ""},
		{` { "id" : 12 , "method" : "tools/call" } `, "12"},
		{`{"\u0069d":3,"method":"tools\/call"}`, "3"},
		{`{"params":{"a":"}{][\"","b":[1,{"id":9}]},"id":"x\"y","method":"tools/call"}`, `"x\"y"`},
		{`{"method":"tools/call","method":"tools/call","id":1}`, ""},
		{`{"method":1,"id":1}`, ""},
		{`{"id":{"a":1},"method":"tools/call"}`, `{"a":1}`},
	} {
		id, _, ok := readStdioCall([]byte(tc.line))
		if got := map[bool]string{true: string(id)}[ok]; got != tc.id {
			t.Errorf("readStdioCall(%s) = %q, %v; want %q", tc.line, id, ok, tc.id)
		}
	}
}

func BenchmarkAppendSearchResponse(b *testing.B) {
	for _, tc := range []struct{ name, words string }{
		{"", "memory text "},
		// Prose as a model writes it: a dash and a curly apostrophe.
		{"/prose", "memory \u2014 it\u2019s "},
	} {
		hit := `{"id":"0193c1f2-7d7e-7b7c-9d6e-1f2e3d4c5b6a","content":"` + strings.Repeat(tc.words, 60) +
			`","scope":"user","score":0.0312,"tags":["a","b"],"created_by":"u","created_at":"2026-11-23T10:00:00Z","similarity":0.5}`
		text := `{"results":[` + strings.TrimSuffix(strings.Repeat(hit+",", 10), ",") + `]}`
		msg := mcp.NewJSONRPCResultResponse(mcp.NewRequestId(int64(42)), toolResult(text))
		b.Run("direct"+tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := appendMessage(nil, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("json.Marshal"+tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := json.Marshal(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzReadStdioCallID checks readStdioCall's id against a reference that reads line
// with encoding/json's decoder: the same answer for every line, and no
// panic on any.
func FuzzReadStdioCallID(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`,
		`{"params":{"a":"}{][\"","b":[1,{"id":9}]},"id":"x\"y","method":"tools/call"}`,
		`{"\u0069d":3,"method":"tools\/call"}`, `[1]`, `{"id":1,"meth`, ` { "id" : 1 , "method" : "tools/call" } `,
	} {
		f.Add([]byte(s))
	}
	reference := func(line []byte) (json.RawMessage, bool) {
		if !json.Valid(line) {
			return nil, false
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		if t, err := dec.Token(); err != nil || t != json.Delim('{') {
			return nil, false
		}
		var id json.RawMessage
		method := ""
		for dec.More() {
			t, err := dec.Token()
			if err != nil {
				return nil, false
			}
			switch key, _ := t.(string); key {
			case "id":
				if id != nil || dec.Decode(&id) != nil || string(id) == "null" {
					return nil, false
				}
			case "method":
				if method != "" || dec.Decode(&method) != nil || method != string(mcp.MethodToolsCall) {
					return nil, false
				}
			default:
				var skip json.RawMessage
				if dec.Decode(&skip) != nil {
					return nil, false
				}
			}
			if id != nil && method != "" {
				return id, true
			}
		}
		return nil, false
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		id, _, ok := readStdioCall(line)
		wantID, wantOK := reference(line)
		if ok != wantOK || !bytes.Equal(id, wantID) {
			t.Errorf("readStdioCall(%q) = %q, %v; the decoder reads %q, %v", line, id, ok, wantID, wantOK)
		}
	})
}
