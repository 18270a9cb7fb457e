package embed_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scopemem/scopemem/embed"
	"github.com/scopemem/scopemem/embed/ollamatest"
)

// closedPort returns the URL of a loopback port that was listened on and
// closed again: connecting to it is refused.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

// attemptClock records when each HTTP request was attempted, including
// those that never reach a server.
type attemptClock struct {
	mu    sync.Mutex
	times []time.Time
}

func (c *attemptClock) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.times = append(c.times, time.Now())
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

// gaps returns the time between consecutive attempts.
func (c *attemptClock) gaps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(c.times); i++ {
		out = append(out, c.times[i].Sub(c.times[i-1]))
	}
	return out
}

func (c *attemptClock) attempts() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.times)
}

// TestOllamaConnectionRefused checks that a closed port fails every call
// with ErrUnavailable (and no other sentinel) after the configured retries,
// with a message naming the address and saying how to start Ollama.
func TestOllamaConnectionRefused(t *testing.T) {
	tests := []struct {
		name         string
		maxRetries   int
		wantAttempts int
	}{
		{"default retries", 0, embed.DefaultOllamaRetries + 1},
		{"two retries", 2, 3},
		{"no retries", -1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := closedPort(t)
			clock := &attemptClock{}
			o := newOllama(t, fastRetries(embed.OllamaConfig{
				Host: host, MaxRetries: tt.maxRetries, HTTPClient: &http.Client{Transport: clock},
			}))
			for _, call := range []struct {
				name string
				do   func() error
			}{
				{"Embed", func() error { _, err := o.Embed(t.Context(), []string{"the API team deploys on Fridays"}); return err }},
				{"Probe", func() error { _, err := o.Probe(t.Context()); return err }},
			} {
				before := clock.attempts()
				err := call.do()
				if !errors.Is(err, embed.ErrUnavailable) {
					t.Fatalf("%s() = %v, want %v", call.name, err, embed.ErrUnavailable)
				}
				for _, other := range []error{embed.ErrModelNotFound, embed.ErrBadVector, embed.ErrInput, context.DeadlineExceeded} {
					if errors.Is(err, other) {
						t.Errorf("%s() error %q also matches %v", call.name, err, other)
					}
				}
				for _, want := range []string{"not reachable at " + host, "connection refused", "ollama serve", "OLLAMA_HOST"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("%s() error %q does not say %q", call.name, err, want)
					}
				}
				if got := clock.attempts() - before; got != tt.wantAttempts {
					t.Errorf("%s() made %d attempts, want %d", call.name, got, tt.wantAttempts)
				}
			}
		})
	}
}

// TestOllamaRetrySchedule measures when retries happen: each wait is 50-100%
// of RetryBackoff doubled per earlier retry, never more than
// MaxRetryBackoff, for refused connections and for HTTP 5xx alike, and the
// whole call takes no longer than the capped waits add up to.
func TestOllamaRetrySchedule(t *testing.T) {
	const (
		base       = 20 * time.Millisecond
		capped     = 160 * time.Millisecond
		retries    = 7
		lateSlack  = 300 * time.Millisecond // a loaded machine wakes timers late, never early
		totalSlack = 600 * time.Millisecond
	)
	// Nominal waits: 20, 40, 80, 160, then capped at 160. Without the cap
	// the 7th would be 1280ms, at least 640ms with jitter.
	nominal := []time.Duration{20, 40, 80, 160, 160, 160, 160}
	var capSum time.Duration
	for i := range nominal {
		nominal[i] *= time.Millisecond
		capSum += nominal[i]
	}
	tests := []struct {
		name string
		host func(t *testing.T) string
	}{
		{"connection refused", closedPort},
		{"HTTP 500", func(t *testing.T) string {
			return ollamatest.NewServer(t, ollamatest.Config{Mode: ollamatest.Status500}).URL
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &attemptClock{}
			o := newOllama(t, embed.OllamaConfig{
				Host: tt.host(t), MaxRetries: retries, RetryBackoff: base, MaxRetryBackoff: capped,
				HTTPClient: &http.Client{Transport: clock},
			})
			start := time.Now()
			_, err := o.Embed(t.Context(), []string{"hello"})
			total := time.Since(start)
			if !errors.Is(err, embed.ErrUnavailable) {
				t.Fatalf("Embed() = %v, want %v", err, embed.ErrUnavailable)
			}
			gaps := clock.gaps()
			if len(gaps) != retries {
				t.Fatalf("%d attempts, want %d", len(gaps)+1, retries+1)
			}
			for i, g := range gaps {
				if lo, hi := nominal[i]/2, nominal[i]+lateSlack; g < lo || g > hi {
					t.Errorf("wait before retry %d = %v, want %v..%v (nominal %v)", i+1, g, lo, nominal[i], nominal[i])
				}
			}
			// Growth: the 4th wait is at least twice the longest first one
			// could be.
			if gaps[3] < 2*base {
				t.Errorf("wait before retry 4 = %v, want at least %v: the backoff does not grow", gaps[3], 2*base)
			}
			if total > capSum+totalSlack {
				t.Errorf("Embed() took %v with %d retries, want at most %v (the capped waits) plus %v", total, retries, capSum, totalSlack)
			}
			t.Logf("waits %v, total %v", gaps, total)
		})
	}
}

// TestOllamaRetriesStopAtTheDeadline checks that the caller's deadline
// bounds the retries: when the next wait would end past it, Embed returns
// at once, without waiting for the deadline, with the last attempt's error
// (why, and how to start Ollama), not a bare deadline error.
func TestOllamaRetriesStopAtTheDeadline(t *testing.T) {
	tests := []struct {
		name     string
		deadline time.Duration
		backoff  time.Duration
		// wantMax bounds how long Embed may take.
		wantMax time.Duration
	}{
		// The first wait (150-300ms) may or may not fit in 400ms; the
		// second (300-600ms) cannot.
		{"a few retries fit", 400 * time.Millisecond, 300 * time.Millisecond, 400 * time.Millisecond},
		// Not even the first wait fits: one attempt, then the error.
		{"no retry fits", 100 * time.Millisecond, 2 * time.Second, 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := closedPort(t)
			clock := &attemptClock{}
			o := newOllama(t, embed.OllamaConfig{
				Host: host, MaxRetries: 10, RetryBackoff: tt.backoff, MaxRetryBackoff: 10 * time.Second,
				HTTPClient: &http.Client{Transport: clock},
			})
			ctx, cancel := context.WithTimeout(t.Context(), tt.deadline)
			defer cancel()
			start := time.Now()
			_, err := o.Embed(ctx, []string{"hello"})
			took := time.Since(start)
			if !errors.Is(err, embed.ErrUnavailable) {
				t.Fatalf("Embed() = %v, want %v", err, embed.ErrUnavailable)
			}
			for _, want := range []string{"not reachable at " + host, "ollama serve"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Embed() error %q does not say %q", err, want)
				}
			}
			if took > tt.wantMax {
				t.Errorf("Embed() took %v, want at most %v", took, tt.wantMax)
			}
			if n := clock.attempts(); n < 1 || n > 3 {
				t.Errorf("%d attempts before a %v deadline with %v backoff, want 1 to 3", n, tt.deadline, tt.backoff)
			}
		})
	}
}

// TestOllamaDeadlineAfterRetries checks the error when the deadline passes
// during a request that follows failed attempts: it keeps the reason of
// the earlier failures and wraps both ErrUnavailable and the deadline.
func TestOllamaDeadlineAfterRetries(t *testing.T) {
	// Two HTTP 500s, then requests that stall until the client gives up.
	var mu sync.Mutex
	n := 0
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		n++
		stall := n > 2
		mu.Unlock()
		if stall {
			select {
			case <-r.Context().Done():
			case <-stop:
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(`{"error":"overloaded"}`))
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) }) // runs first: no handler outlives the test
	o := newOllama(t, fastRetries(embed.OllamaConfig{Host: srv.URL, MaxRetries: 5}))
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := o.Embed(ctx, []string{"hello"})
	for _, want := range []error{embed.ErrUnavailable, context.DeadlineExceeded} {
		if !errors.Is(err, want) {
			t.Errorf("Embed() = %v, want it to match %v", err, want)
		}
	}
	for _, want := range []string{"HTTP 500", "ollama serve"} {
		if err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("Embed() error %q does not say %q", err, want)
		}
	}
}
