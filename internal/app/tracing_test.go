package app_test

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/scopemem/scopemem/internal/app"
)

// TestTracingSpans checks that one add_memory call yields a tool span with
// embedding and store spans as its children, and that no span carries the
// content or, unless asked, the tenant.
func TestTracingSpans(t *testing.T) {
	for _, tenants := range []bool{false, true} {
		name := "no tenants"
		if tenants {
			name = "tenants"
		}
		t.Run(name, func(t *testing.T) {
			exp := tracetest.NewInMemoryExporter()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
			t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
			a := newApp(t, func(c *app.Config) { c.TracerProvider = tp; c.TraceTenants = tenants })
			c := connect(t, httpServer(t, a).URL, token(t, "acme-traced", "alice-traced", nil, allPerms...))
			const content = "the heron nests by the TRACE-SECRET-5512 pond"
			ok[addOut](t, c, "add_memory", map[string]any{"content": content})

			spans := exp.GetSpans()
			var tool *tracetest.SpanStub
			for i := range spans {
				if spans[i].Name == "tools/call add_memory" {
					tool = &spans[i]
				}
			}
			if tool == nil {
				t.Fatalf("no span tools/call add_memory among %d spans", len(spans))
			}
			if tool.Status.Code == codes.Error {
				t.Errorf("tool span status = %v, want not an error", tool.Status)
			}
			children := map[string]int{}
			for _, s := range spans {
				if s.Parent.SpanID() == tool.SpanContext.SpanID() {
					children[s.Name]++
				}
			}
			if children["embed"] == 0 || children["store.add"] == 0 {
				t.Errorf("children of the tool span = %v, want embed and store.add among them", children)
			}
			attrs := map[string]string{}
			for _, s := range spans {
				for _, kv := range s.Attributes {
					v := kv.Value.Emit()
					if strings.Contains(v, "TRACE-SECRET") || strings.Contains(v, "heron") {
						t.Errorf("span %s attribute %s carries the content: %q", s.Name, kv.Key, v)
					}
					if s.Name == tool.Name {
						attrs[string(kv.Key)] = v
					}
				}
			}
			if attrs["gen_ai.tool.name"] != "add_memory" || attrs["scopemem.outcome"] != "ok" {
				t.Errorf("tool span attributes = %v, want gen_ai.tool.name add_memory and scopemem.outcome ok", attrs)
			}
			_, hasOrg := attrs["scopemem.org"]
			if hasOrg != tenants || (tenants && attrs["scopemem.org"] != "acme-traced") {
				t.Errorf("tool span attributes = %v with TraceTenants %v", attrs, tenants)
			}
		})
	}
}

// TestTracingToolError checks that a refused call is marked tool_error.
func TestTracingToolError(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	a := newApp(t, func(c *app.Config) { c.TracerProvider = tp })
	c := connect(t, httpServer(t, a).URL, token(t, "acme", "bob", nil, allPerms...))
	fails(t, c, "delete_memory", map[string]any{"id": "00000000-0000-0000-0000-000000000000"})
	for _, s := range exp.GetSpans() {
		if s.Name != "tools/call delete_memory" {
			continue
		}
		for _, kv := range s.Attributes {
			if kv.Key == "scopemem.outcome" && kv.Value.AsString() == "tool_error" {
				return
			}
		}
		t.Fatalf("tools/call delete_memory attributes = %v, want scopemem.outcome tool_error", s.Attributes)
	}
	t.Fatal("no span tools/call delete_memory")
}
