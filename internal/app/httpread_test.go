package app

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

// unmarshalToolCall is what readToolCall stands for.
func unmarshalToolCall(body []byte) (toolCall, bool) {
	var call toolCall
	if json.Unmarshal(body, &call) != nil {
		return toolCall{}, false
	}
	return call, true
}

// unmarshalCallParams is what readCallParams stands for.
func unmarshalCallParams(params []byte) (name, metaVersion string, ok bool) {
	var p callParams
	if json.Unmarshal(params, &p) != nil {
		return "", "", false
	}
	if raw, found := p.Meta[mcp.MetaKeyProtocolVersion]; found && json.Unmarshal(raw, &metaVersion) != nil {
		metaVersion = ""
	}
	return p.Name, metaVersion, true
}

var httpReadSeeds = []string{
	`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search_memory","arguments":{"query":"deploy"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"x","version":"1"}}}}`,
	`{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"add_memory","arguments":{"content":"x"}}}`,
	`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
	`{"jsonrpc":"2.0","id":1,"result":{}}`,
	`{"id":1,"ID":2,"method":"tools/call"}`,
	`{"id":1,"id":2,"method":"tools/call","method":"ping"}`,
	`{"id":null,"method":null,"params":null}`,
	`{"method":5}`,
	`{"method":"tools\/call","params":{"name":"search_memory"}}`,
	`{"Method":"tools/call","PARAMS":{}}`,
	`{"paramſ":{"name":"x"}}`,
	`{"params":{"name":"a","Name":"b"}}`,
	`{"params":{"name":"a","name":"b"}}`,
	`{"params":{"name":"a","name":null}}`,
	`{"id":1,"method":"tools/call","method":null,"params":{},"params":{"name":"b"}}`,
	`{"params":{"name":"a","_meta":{"io.modelcontextprotocol/protocolVersion":"v"},"_meta":null}}`,
	`{"params":{"name":"a","_meta":{"io.modelcontextprotocol/protocolVersion":"v"},"_meta":{"x":1}}}`,
	`{"params":{"name":"a","_meta":{"io.modelcontextprotocol/protocolVersion":"v","io.modelcontextprotocol/protocolVersion":null}}}`,
	`{"params":{"name":"a","_meta":{"io.modelcontextprotocol\/protocolVersion":"2025-11-25"}}}`,
	`{"params":{"name":"a","_meta":{"io.modelcontextprotocol/protocolVersion":"x","io.modelcontextprotocol/protocolVersion":"y"}}}`,
	`{"params":{"name":"a","_meta":{"io.modelcontextprotocol/protocolVersion":5}}}`,
	`{"params":{"name":"a","_meta":{"io.modelcontextprotocol/protocolVersion":null}}}`,
	`{"params":{"name":"a","_meta":[1]}}`,
	`{"params":{"name":"a","_META":{}}}`,
	`{"params":{"name":"\u0061"}}`,
	"{\"params\":{\"name\":\"\xff\"}}",
	"{\"method\":\"\xfftools/call\"}",
	`{"params":[]}`,
	`[1,2]`,
	`null`,
	`{"id":1`,
	``,
}

// TestReadToolCall: the quick readings agree with json.Unmarshal on
// requests as clients send them and on the cases they hand over to it.
func TestReadToolCall(t *testing.T) {
	for _, body := range httpReadSeeds {
		checkHTTPRead(t, []byte(body))
	}
}

// FuzzReadToolCall: readToolCall and readCallParams decode whatever they
// are given as json.Unmarshal does.
func FuzzReadToolCall(f *testing.F) {
	for _, body := range httpReadSeeds {
		f.Add([]byte(body))
	}
	f.Fuzz(checkHTTPRead)
}

func checkHTTPRead(t *testing.T, body []byte) {
	t.Helper()
	got, gotOK := readToolCall(body)
	want, wantOK := unmarshalToolCall(body)
	if gotOK != wantOK || !bytes.Equal(got.ID, want.ID) || got.Method != want.Method || !bytes.Equal(got.Params, want.Params) {
		t.Fatalf("readToolCall(%q) = %+v, %v; json.Unmarshal: %+v, %v", body, got, gotOK, want, wantOK)
	}
	if !gotOK {
		return
	}
	name, version, ok := readCallParams(got.Params)
	wantName, wantVersion, wantOK2 := unmarshalCallParams(want.Params)
	if name != wantName || version != wantVersion || ok != wantOK2 {
		t.Fatalf("readCallParams(%q) = %q, %q, %v; json.Unmarshal: %q, %q, %v", got.Params, name, version, ok, wantName, wantVersion, wantOK2)
	}
}
