package app

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/scopemem/scopemem/internal/jsonscan"
)

// readToolCall decodes body into call exactly as json.Unmarshal(body,
// &call) does, reporting whether that would fail, but reads only the
// members it keeps (id, method, params) and passes over the others
// without decoding them: it runs for every request of the streamable
// HTTP transport. A repeated member's last value counts, as there. What
// it cannot read that way (a body that is not an object, an escaped key,
// a key encoding/json would match only without regard to case, a method
// that is not a plain string) goes to json.Unmarshal. When it would
// fail, call is the zero value.
func readToolCall(body []byte) (call toolCall, ok bool) {
	if !json.Valid(body) {
		return toolCall{}, false
	}
	sure := true
	object := jsonscan.Fields(body, func(key, val []byte) bool {
		switch {
		case bytes.IndexByte(key, '\\') >= 0:
			sure = false
		case string(key) == "id":
			call.ID = val
		case string(key) == "params":
			call.Params = val
		case string(key) == "method":
			// null leaves the method as it was, as json.Unmarshal does.
			sure = plainString(val)
			if sure && val[0] == '"' {
				call.Method = string(val[1 : len(val)-1])
			}
		default:
			sure = !foldsTo(key, "id", "params", "method")
		}
		return sure
	})
	if !object || !sure {
		// json.Unmarshal fills in what it read before an error; a call
		// that fails is the zero value, whatever came before the error.
		call = toolCall{}
		if json.Unmarshal(body, &call) != nil {
			return toolCall{}, false
		}
	}
	return call, true
}

// readCallParams reads a tools/call request's params, as valid JSON, as
// json.Unmarshal into callParams does, and returns the tool's name and
// the protocol version its _meta carries (empty when absent or not a
// string); ok is false when json.Unmarshal would fail. Like readToolCall
// it decodes only those members, and leaves anything less plain to
// json.Unmarshal.
func readCallParams(params []byte) (name, metaVersion string, ok bool) {
	slow := func() (string, string, bool) {
		metaVersion = ""
		var p callParams
		if json.Unmarshal(params, &p) != nil {
			return "", "", false
		}
		if raw, found := p.Meta[mcp.MetaKeyProtocolVersion]; !found || json.Unmarshal(raw, &metaVersion) != nil {
			metaVersion = ""
		}
		return p.Name, metaVersion, true
	}
	// A repeated name counts by its last value, as in json.Unmarshal; a
	// repeated _meta does not (json.Unmarshal merges the objects, and a
	// null clears them), nor does a version repeated in one.
	metaSeen, sure := false, true
	object := jsonscan.Fields(params, func(key, val []byte) bool {
		switch {
		case bytes.IndexByte(key, '\\') >= 0:
			sure = false
		case string(key) == "name":
			sure = plainString(val)
			if sure && val[0] == '"' {
				name = string(val[1 : len(val)-1])
			}
		case string(key) == "_meta":
			// A _meta with an escape anywhere goes the slow way: its keys
			// are compared once unescaped.
			sure = !metaSeen && bytes.IndexByte(val, '\\') < 0 && (string(val) == "null" || metaVersionOf(val, &metaVersion))
			metaSeen = true
		default:
			sure = !foldsTo(key, "name", "_meta")
		}
		return sure
	})
	if !object || !sure {
		return slow()
	}
	return name, metaVersion, true
}

// metaVersionOf reads the protocol version in meta, a JSON object
// without escapes, into version (left as it is unless a string), as a
// map[string]json.RawMessage would hold it; false when meta is not an
// object or names the version twice.
func metaVersionOf(meta []byte, version *string) bool {
	seen, sure := false, true
	object := jsonscan.Fields(meta, func(k, v []byte) bool {
		if string(k) != mcp.MetaKeyProtocolVersion {
			return true
		}
		sure = !seen && utf8.Valid(v)
		seen = true
		if sure && v[0] == '"' {
			*version = string(v[1 : len(v)-1])
		}
		return sure
	})
	return object && sure
}

// plainString reports whether val, a valid JSON value, is null or a
// string without escapes, in UTF-8 (whose bytes between the quotes are
// its value).
func plainString(val []byte) bool {
	return string(val) == "null" || (len(val) >= 2 && val[0] == '"' && bytes.IndexByte(val, '\\') < 0 && utf8.Valid(val))
}

// foldsTo reports whether key is one of names without regard to case (as
// encoding/json also matches a struct field's name).
func foldsTo(key []byte, names ...string) bool {
	for _, n := range names {
		if bytes.EqualFold(key, []byte(n)) {
			return true
		}
	}
	return false
}
