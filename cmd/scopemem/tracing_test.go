package main

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

func TestOTLPTracesURL(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces", true},
		{"https://otel.example.com/", "https://otel.example.com/v1/traces", true},
		{"https://otel.example.com/custom/traces", "https://otel.example.com/custom/traces", true},
		{"127.0.0.1:4318", "", false},
		{"grpc://collector:4317", "", false},
		{"http://user:pw@collector:4318", "", false},
		{"http://collector:4318?x=1", "", false},
	} {
		got, err := otlpTracesURL(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("otlpTracesURL(%q) = %q, %v; want %q, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestTracerProviderExports checks that --otlp-endpoint sends spans to the
// collector at /v1/traces, and that without it (nor OTEL_* variables)
// tracing stays off.
func TestTracerProviderExports(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	log := slog.New(slog.DiscardHandler)
	tp, stop, err := telemetryFlags{}.tracerProvider(t.Context(), log)
	if err != nil || tp != nil {
		t.Fatalf("tracing without an endpoint: %v, %v; want off", tp, err)
	}
	stop()

	var posts atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			posts.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	tp, stop, err = telemetryFlags{OTLPEndpoint: collector.URL}.tracerProvider(t.Context(), log)
	if err != nil || tp == nil {
		t.Fatalf("tracing with --otlp-endpoint: %v, %v", tp, err)
	}
	_, span := tp.Tracer("test").Start(t.Context(), "test span")
	span.End()
	stop() // flushes
	if posts.Load() == 0 {
		t.Error("no spans were posted to the collector's /v1/traces")
	}
}
