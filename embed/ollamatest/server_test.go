package ollamatest_test

import (
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/scopemem/scopemem/embed/ollamatest"
)

// TestWireFormat checks the raw HTTP answers against Ollama's /api/embed.
func TestWireFormat(t *testing.T) {
	tests := []struct {
		name       string
		cfg        ollamatest.Config
		body       string
		wantStatus int
		wantError  string // the "error" field; empty for a success
		wantVecs   int
	}{
		{"list input", ollamatest.Config{Dims: 4}, `{"model":"m","input":["a","b"]}`, 200, "", 2},
		{"string input", ollamatest.Config{Dims: 4}, `{"model":"m","input":"a"}`, 200, "", 1},
		{"bad input type", ollamatest.Config{Dims: 4}, `{"model":"m","input":[1]}`, 400, "invalid input type", 0},
		{"model not found", ollamatest.Config{Mode: ollamatest.ModelNotFound}, `{"model":"x","input":["a"]}`, 404,
			`model "x" not found, try pulling it first`, 0},
		{"other model", ollamatest.Config{Model: "nomic-embed-text"}, `{"model":"x","input":["a"]}`, 404,
			`model "x" not found, try pulling it first`, 0},
		{"500", ollamatest.Config{Mode: ollamatest.Status500}, `{"model":"m","input":["a"]}`, 500,
			"llama runner process has terminated: exit status 2", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ollamatest.NewServer(t, tt.cfg)
			resp, err := http.Post(s.URL+"/api/embed", "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			var got struct {
				Model      string      `json:"model"`
				Embeddings [][]float32 `json:"embeddings"`
				Error      string      `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatalf("decode answer: %v", err)
			}
			if got.Error != tt.wantError {
				t.Errorf("error = %q, want %q", got.Error, tt.wantError)
			}
			if len(got.Embeddings) != tt.wantVecs {
				t.Errorf("%d embeddings, want %d", len(got.Embeddings), tt.wantVecs)
			}
		})
	}
}

func TestVector(t *testing.T) {
	a, b, c := ollamatest.Vector("x", 256), ollamatest.Vector("x", 256), ollamatest.Vector("y", 256)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("Vector is not deterministic (-first +second):\n%s", diff)
	}
	var dot, n float64
	for i := range a {
		dot += float64(a[i]) * float64(c[i])
		n += float64(a[i]) * float64(a[i])
	}
	if math.Abs(n-1) > 1e-5 {
		t.Errorf("norm² = %v, want 1", n)
	}
	if math.Abs(dot) > 0.3 {
		t.Errorf("cosine of two texts' vectors = %v, want near 0", dot)
	}
}

func TestCounters(t *testing.T) {
	s := ollamatest.NewServer(t, ollamatest.Config{Dims: 2})
	for _, body := range []string{`{"model":"m","input":["a","b","c"]}`, `{"model":"m","input":["d"]}`} {
		resp, err := http.Post(s.URL+"/api/embed", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if s.Requests() != 2 || s.Inputs() != 4 || s.MaxInFlight() != 1 {
		t.Errorf("Requests, Inputs, MaxInFlight = %d, %d, %d; want 2, 4, 1", s.Requests(), s.Inputs(), s.MaxInFlight())
	}
	if diff := cmp.Diff([]int{3, 1}, s.Batches()); diff != "" {
		t.Errorf("Batches() (-want +got):\n%s", diff)
	}
}
