package app

import (
	"encoding/json"
	"strings"
	"testing"
)

// classifyFull is the reference: decode the whole line.
func classifyFull(line []byte) (isRequest, isResponse bool) {
	var m message
	if json.Unmarshal(line, &m) != nil || len(m.ID) == 0 || string(m.ID) == "null" {
		return false, false
	}
	return m.Method != "", m.Method == ""
}

var classifyCases = []struct {
	name      string
	line      string
	req, resp bool
}{
	{"request, id first", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`, true, false},
	{"request, method first", `{"jsonrpc":"2.0","method":"tools/list","id":"a"}`, true, false},
	{"request, params first", `{"params":{"id":3,"result":1},"method":"ping","id":7}`, true, false},
	{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, false, false},
	{"notification with null id", `{"jsonrpc":"2.0","id":null,"method":"x"}`, false, false},
	{"response", `{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"hi"}]}}`, false, true},
	{"response, result first", `{"jsonrpc":"2.0","result":{},"id":5}`, false, true},
	{"error response", `{"jsonrpc":"2.0","id":"k","error":{"code":-32601,"message":"no"}}`, false, true},
	{"response with null id", `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse"}}`, false, false},
	{"not an object", `[1,2]`, false, false},
	{"garbage", `{"id":1,"resu`, false, false},
	// The prefix decides: a line whose id and "result" key are whole is a
	// response, whatever follows (the lines classified are mcp-go's own).
	{"cut after the result key", `{"id":1,"result":`, false, true},
	{"empty", ``, false, false},
	{"method not a string", `{"id":1,"method":3}`, false, false},
}

func TestClassify(t *testing.T) {
	for _, tc := range classifyCases {
		t.Run(tc.name, func(t *testing.T) {
			req, resp := classify([]byte(tc.line))
			if req != tc.req || resp != tc.resp {
				t.Errorf("classify(%s) = %v, %v; want %v, %v", tc.line, req, resp, tc.req, tc.resp)
			}
		})
	}
}

// FuzzClassify checks that reading only a message's first members always
// agrees with decoding the whole line, whenever the line is valid JSON.
func FuzzClassify(f *testing.F) {
	for _, tc := range classifyCases {
		f.Add(tc.line)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if !json.Valid([]byte(line)) {
			return
		}
		req, resp := classify([]byte(line))
		wreq, wresp := classifyFull([]byte(line))
		if req != wreq || resp != wresp {
			t.Errorf("classify(%s) = %v, %v; full decode says %v, %v", line, req, resp, wreq, wresp)
		}
	})
}

func BenchmarkClassifySearchResponse(b *testing.B) {
	hit := `{"id":"0193c1f2-7d7e-7b7c-9d6e-1f2e3d4c5b6a","scope":"user","score":0.0312,"content":"` + strings.Repeat("memory text ", 60) + `","created_at":"2026-11-23T10:00:00Z","tags":["a","b"]}`
	hits := strings.TrimSuffix(strings.Repeat(hit+",", 10), ",")
	line := []byte(`{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"` + strings.ReplaceAll(hits, `"`, `\"`) + `"}],"structuredContent":{"results":[` + hits + `]}}}`)
	for _, tc := range []struct {
		name string
		f    func([]byte) (bool, bool)
	}{{"prefix", classify}, {"full", classifyFull}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(line)))
			for b.Loop() {
				if _, resp := tc.f(line); !resp {
					b.Fatal("not a response")
				}
			}
		})
	}
}
