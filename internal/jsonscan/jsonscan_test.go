package jsonscan

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestFields checks the top-level scan against encoding/json on
// objects whose strings hold quotes, escapes, braces and brackets.
func TestFields(t *testing.T) {
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
		if !Fields([]byte(in), func(k, v []byte) bool {
			got[string(k)] = json.RawMessage(bytes.Clone(v))
			return true
		}) {
			t.Errorf("Fields(%s) = false, want true", in)
			continue
		}
		for k := range want {
			want[k] = bytes.TrimSpace(want[k])
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Fields(%s) (-encoding/json +got):\n%s", in, diff)
		}
	}
	for _, in := range []string{`[1]`, `"x"`, `{"a":}`, `{"a":"unterminated}`, `{"a":1`} {
		if Fields([]byte(in), func(k, v []byte) bool { return true }) {
			t.Errorf("Fields(%s) = true, want false", in)
		}
	}
}

func TestKeyIs(t *testing.T) {
	tests := []struct {
		key, s string
		want   bool
	}{
		{`id`, "id", true},
		{`\u0069d`, "id", true},
		{`i\"d`, `i"d`, true},
		{`idx`, "id", false},
		{`\u0069`, "id", false},
		{`bad\`, "bad\\", false},
	}
	for _, tt := range tests {
		if got := KeyIs([]byte(tt.key), tt.s); got != tt.want {
			t.Errorf("KeyIs(%s, %q) = %v, want %v", tt.key, tt.s, got, tt.want)
		}
	}
	for _, tt := range []struct {
		val  string
		want bool
	}{{`"tools/call"`, true}, {`"tools\/call"`, true}, {`1`, false}, {`"tools"`, false}, {`null`, false}} {
		if got := StringIs([]byte(tt.val), "tools/call"); got != tt.want {
			t.Errorf("StringIs(%s) = %v, want %v", tt.val, got, tt.want)
		}
	}
}
