package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/scopemem/scopemem/internal/app"
)

// telemetryFlags turn on OpenTelemetry traces, sent over OTLP/HTTP.
type telemetryFlags struct {
	OTLPEndpoint         string `name:"otlp-endpoint" env:"SCOPEMEM_OTLP_ENDPOINT" help:"Send OpenTelemetry traces over OTLP/HTTP to this collector URL (e.g. http://127.0.0.1:4318; /v1/traces is added when the URL has no path). Also on when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, configured by the standard OTEL_* variables. Off by default." placeholder:"URL" group:"Telemetry"`
	OTLPTenantAttributes bool   `name:"otlp-tenant-attributes" env:"SCOPEMEM_OTLP_TENANT_ATTRIBUTES" help:"Add the caller's org and user to tool call spans (off: spans carry no tenant ids)." group:"Telemetry"`
}

// otlpTracesURL returns the traces URL for the --otlp-endpoint value e.
func otlpTracesURL(e string) (string, error) {
	u, err := url.Parse(e)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("--otlp-endpoint %q: want the collector's OTLP/HTTP URL, http(s)://host:port[/path], e.g. http://127.0.0.1:4318", e)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String(), nil
}

// tracerProvider returns the tracer provider the flags and environment
// ask for, and a function that flushes and stops it; (nil, no-op, nil)
// when tracing is off.
func (f telemetryFlags) tracerProvider(ctx context.Context, log *slog.Logger) (trace.TracerProvider, func(), error) {
	var opts []otlptracehttp.Option
	switch {
	case f.OTLPEndpoint != "":
		u, err := otlpTracesURL(f.OTLPEndpoint)
		if err != nil {
			return nil, func() {}, err
		}
		opts = append(opts, otlptracehttp.WithEndpointURL(u))
	case os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "":
		return nil, func() {}, nil
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, func() {}, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "scopemem"), attribute.String("service.version", app.Version)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		return nil, func() {}, fmt.Errorf("OpenTelemetry resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	where := f.OTLPEndpoint
	if where == "" {
		where = "from OTEL_EXPORTER_OTLP_*"
	}
	log.Info("sending OpenTelemetry traces over OTLP/HTTP", "endpoint", redactURL(where), "tenant_attributes", f.OTLPTenantAttributes)
	return tp, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			log.Warn("flushing OpenTelemetry traces failed", "err", err)
		}
	}, nil
}

// redactURL drops anything after the host, where a collector URL may
// carry a credential.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return s
	}
	return u.Scheme + "://" + u.Host + strings.TrimSuffix(u.EscapedPath(), "/")
}
