package tools

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

// TestSearchOutputJSON checks that search results write themselves byte
// for byte as encoding/json writes them: clients compare the text block
// with structuredContent, and the output schema describes that encoding.
func TestSearchOutputJSON(t *testing.T) {
	at := time.Date(2026, 11, 23, 22, 8, 18, 123456789, time.UTC)
	tests := []struct {
		name string
		out  SearchMemoryOutput
	}{
		{"nil results", SearchMemoryOutput{}},
		{"no results", SearchMemoryOutput{Results: []SearchHit{}}},
		{"plain", SearchMemoryOutput{Results: []SearchHit{{
			ID: "0191c3a0-7f5e-7c4e-9d59-1a2b3c4d5e6f", Content: "the deploy runs on Fridays", Scope: "user",
			Score: 0.8333333333333334, Tags: []string{}, CreatedBy: "alice", CreatedAt: at, Similarity: 0.61234,
		}}}},
		{"escapes and unicode", SearchMemoryOutput{Results: []SearchHit{{
			ID: "x", Content: "quotes \" and \\ <b>&</b>\n\ttab \u2028 é 日本 \x00 \xff bad", Scope: "team:a&b",
			Score: 1, Tags: []string{"<x>", "naïve", ""}, CreatedBy: "bob\"", CreatedAt: at.Add(-123456789), Similarity: -0.5,
		}}}},
		{"floats at the format edges", SearchMemoryOutput{Results: []SearchHit{
			{ID: "a", Score: 1e-7, Similarity: -1e-9, Tags: nil, CreatedAt: time.Unix(0, 0).UTC()},
			{ID: "b", Score: 1e21, Similarity: 123456789.125, CreatedAt: time.Date(1999, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))},
			{ID: "c", Score: 0, Similarity: 1e-6, CreatedAt: at},
			{ID: "d", Score: 5e-324, Similarity: math.MaxFloat64, CreatedAt: at},
		}}},
		{"metadata", SearchMemoryOutput{Results: []SearchHit{{
			ID: "m", Content: "c", Scope: "org", Tags: []string{"t"}, CreatedAt: at,
			Metadata: map[string]any{"z": 1.5, "a": []any{"x", true, nil}, "html": "<&>", "nested": map[string]any{"k": "v"}},
		}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, wantErr := json.Marshal(tt.out)
			got, err := encodeOutput(tt.out)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("encodeOutput error = %v, json.Marshal error = %v", err, wantErr)
			}
			if string(got) != string(want) {
				t.Errorf("encodeOutput =\n%s\nwant (json.Marshal)\n%s", got, want)
			}
			if n := tt.out.jsonSize(); n < len(want) {
				t.Errorf("jsonSize = %d, below the %d bytes written: the buffer grows while written", n, len(want))
			}
		})
	}
}

// TestSearchOutputJSONErrors checks that values encoding/json refuses are
// refused too.
func TestSearchOutputJSONErrors(t *testing.T) {
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		out := SearchMemoryOutput{Results: []SearchHit{{ID: "x", Score: f}}}
		if _, err := encodeOutput(out); err == nil {
			t.Errorf("encodeOutput(score %v) = nil error, want one", f)
		}
	}
	out := SearchMemoryOutput{Results: []SearchHit{{ID: "x", CreatedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}}
	if _, err := encodeOutput(out); err == nil {
		t.Errorf("encodeOutput(year 10000) = nil error, want one")
	}
}
