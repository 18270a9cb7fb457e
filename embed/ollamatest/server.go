// Package ollamatest runs a fake Ollama server for tests and load
// generation. It speaks the /api/embed endpoint as Ollama does (request
// {"model", "input": [...]}, answer {"model", "embeddings": [[...]]}, errors
// as {"error": "..."} with Ollama's status codes), so that the real client
// code in package embed runs against it.
//
// Vectors are deterministic: the same text always gets the same vector (see
// [Vector]), and different texts get unrelated ones. The server can be made
// to fail in each of the ways a real one does (down, HTTP 500, model not
// found, wrong dimensions, NaN, stalled) and counts what it receives.
package ollamatest

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Mode is how the server answers /api/embed.
type Mode int

// Modes of answering.
const (
	// OK answers with one vector of Config.Dims values per input.
	OK Mode = iota
	// Down: nothing listens at the server's URL (connection refused).
	Down
	// Status500 answers HTTP 500 with an Ollama JSON error body.
	Status500
	// ModelNotFound answers HTTP 404 with Ollama's "model not found" body,
	// whatever the model asked for.
	ModelNotFound
	// WrongDims answers with vectors of Config.Dims+1 values.
	WrongDims
	// WrongCount answers with one vector fewer than inputs (none for one
	// input).
	WrongCount
	// NaN answers with a body whose first value is the literal NaN, as a
	// broken model server writing JSON without checking would.
	NaN
	// ZeroVector answers with all-zero vectors.
	ZeroVector
	// Stall accepts the request and never answers, until the client gives
	// up or the server is closed.
	Stall
)

// String returns the mode's name.
func (m Mode) String() string {
	switch m {
	case OK:
		return "ok"
	case Down:
		return "down"
	case Status500:
		return "500"
	case ModelNotFound:
		return "model-not-found"
	case WrongDims:
		return "wrong-dims"
	case WrongCount:
		return "wrong-count"
	case NaN:
		return "nan"
	case ZeroVector:
		return "zero-vector"
	case Stall:
		return "stall"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Config configures [NewServer]. The zero value is a healthy server with
// nomic-embed-text's 768 dimensions that answers at once.
type Config struct {
	// Dims is the vector size. Default 768.
	Dims int
	// Model is the only model the server has; asking for another one gets
	// a 404 "model not found". Empty: any model is accepted.
	Model string
	// Delay is added before each answer (also before failures), to mimic
	// model latency. It is cut short when the client gives up.
	Delay time.Duration
	// Mode is how requests are answered. [Server.SetMode] changes it later.
	// Down takes effect at start only: the server is never started.
	Mode Mode
	// FailFirst, when above 0, applies Mode to the first FailFirst requests
	// only and answers OK afterwards (to test retries).
	FailFirst int
}

// Server is a running fake Ollama server.
type Server struct {
	// URL is the server's base address, e.g. "http://127.0.0.1:40123",
	// ready for embed.OllamaConfig.Host.
	URL string

	cfg     Config
	srv     *httptest.Server
	closing chan struct{}

	mu          sync.Mutex
	mode        Mode
	requests    int
	inputs      int
	inFlight    int
	maxInFlight int
	batches     []int
}

// NewServer starts a fake Ollama server and closes it when the test ends.
// With Mode Down, URL names a loopback port that was free a moment ago and
// now has nothing listening.
func NewServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Dims <= 0 {
		cfg.Dims = 768
	}
	s := &Server{cfg: cfg, mode: cfg.Mode, closing: make(chan struct{})}
	if cfg.Mode == Down {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("ollamatest: reserve a port: %v", err)
		}
		s.URL = "http://" + l.Addr().String()
		l.Close()
		return s
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/embed", s.embed)
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	t.Cleanup(s.Close)
	return s
}

// Close stops the server, first releasing stalled requests. It is called
// when the test ends; calling it earlier takes the server down (later
// requests are refused).
func (s *Server) Close() {
	if s.srv == nil {
		return
	}
	s.mu.Lock()
	select {
	case <-s.closing:
	default:
		close(s.closing)
	}
	s.mu.Unlock()
	s.srv.Close()
}

// SetMode changes how later requests are answered (Down is not allowed
// here: use Close).
func (s *Server) SetMode(m Mode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = m
}

// Requests returns how many /api/embed requests arrived.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Inputs returns how many texts arrived, over all requests.
func (s *Server) Inputs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inputs
}

// MaxInFlight returns the most requests the server was handling at once.
func (s *Server) MaxInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxInFlight
}

// Batches returns the number of texts in each request, in arrival order.
func (s *Server) Batches() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.batches...)
}

// embedRequest is the part of Ollama's EmbedRequest the fake reads.
type embedRequest struct {
	Model string `json:"model"`
	Input any    `json:"input"`
}

func (s *Server) embed(w http.ResponseWriter, r *http.Request) {
	var req embedRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var inputs []string
	switch in := req.Input.(type) {
	case string:
		inputs = []string{in}
	case []any:
		for _, v := range in {
			str, ok := v.(string)
			if !ok {
				writeError(w, http.StatusBadRequest, "invalid input type")
				return
			}
			inputs = append(inputs, str)
		}
	case nil:
	default:
		writeError(w, http.StatusBadRequest, "invalid input type")
		return
	}

	s.mu.Lock()
	s.requests++
	s.inputs += len(inputs)
	s.batches = append(s.batches, len(inputs))
	s.inFlight++
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
	mode := s.mode
	if s.cfg.FailFirst > 0 && s.requests > s.cfg.FailFirst {
		mode = OK
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}()

	if s.cfg.Delay > 0 {
		t := time.NewTimer(s.cfg.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		case <-s.closing:
			t.Stop()
			return
		}
	}

	if s.cfg.Model != "" && req.Model != s.cfg.Model && mode == OK {
		mode = ModelNotFound
	}
	switch mode {
	case Status500:
		writeError(w, http.StatusInternalServerError, "llama runner process has terminated: exit status 2")
		return
	case ModelNotFound:
		writeError(w, http.StatusNotFound, fmt.Sprintf("model %q not found, try pulling it first", req.Model))
		return
	case Stall:
		select {
		case <-r.Context().Done():
		case <-s.closing:
		}
		return
	}

	dims := s.cfg.Dims
	if mode == WrongDims {
		dims++
	}
	if mode == WrongCount && len(inputs) > 0 {
		inputs = inputs[:len(inputs)-1]
	}
	b := make([]byte, 0, 64+len(inputs)*dims*12)
	b = append(b, `{"model":`...)
	m, _ := json.Marshal(req.Model)
	b = append(b, m...)
	b = append(b, `,"embeddings":[`...)
	for i, in := range inputs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		for j, x := range Vector(in, dims) {
			if j > 0 {
				b = append(b, ',')
			}
			switch {
			case mode == NaN && i == 0 && j == 0:
				b = append(b, "NaN"...)
			case mode == ZeroVector:
				b = append(b, '0')
			default:
				b = strconv.AppendFloat(b, float64(x), 'g', -1, 32)
			}
		}
		b = append(b, ']')
	}
	b = append(b, "]}"...)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write(b)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// Vector returns the vector the server sends for text: dims values derived
// from a 64-bit FNV-1a hash of the text by a fixed pseudo-random sequence,
// scaled to unit length. Equal texts get equal vectors; different texts get
// nearly orthogonal ones.
func Vector(text string, dims int) []float32 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(text); i++ {
		h = (h ^ uint64(text[i])) * 1099511628211
	}
	v := make([]float32, dims)
	var sum float64
	for i := range v {
		// splitmix64
		h += 0x9e3779b97f4a7c15
		z := h
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		x := float64(z>>11)/float64(1<<53)*2 - 1
		v[i] = float32(x)
		sum += float64(v[i]) * float64(v[i])
	}
	inv := 1 / math.Sqrt(sum)
	for i := range v {
		v[i] = float32(float64(v[i]) * inv)
	}
	return v
}
