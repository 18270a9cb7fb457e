package app

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/scopemem/scopemem/scope"
)

// HTTPConfig configures the streamable HTTP transport.
type HTTPConfig struct {
	// Verifier resolves a bearer token into an identity. Required.
	Verifier scope.Verifier
	// MaxBodyBytes bounds one request body; default 1 MiB.
	MaxBodyBytes int64
	// Realm names the protected resource in WWW-Authenticate; default
	// "scopemem".
	Realm string
}

func (c HTTPConfig) withDefaults() HTTPConfig {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.Realm == "" {
		c.Realm = "scopemem"
	}
	return c
}

// HTTPHandler returns the HTTP routes: /mcp (streamable HTTP, bearer
// token required), /healthz and /readyz.
//
// The transport is stateless: the server keeps no per-session state, so
// replicas can sit behind any load balancer and a restart never strands a
// client. Clients of protocol revisions with sessions get a generated
// Mcp-Session-Id, which keys their session scope; clients of 2026-07-28,
// which has no sessions, name a session with the tools' session argument.
func (a *App) HTTPHandler(hc HTTPConfig) http.Handler {
	hc = hc.withDefaults()
	mcpHandler := server.NewStreamableHTTPServer(a.MCP,
		server.WithSessionIdManager(&optionalSessionIDs{}),
		server.WithDisableStreaming(true),
		server.WithStreamableHTTPLogger(a.log),
	)
	mux := http.NewServeMux()
	mux.Handle("/mcp", a.authenticate(hc, mcpHandler))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", a.ready)
	return mux
}

// authenticate verifies the bearer token and puts the identity in the
// request context. Without a valid token it answers 401 and the request
// never reaches MCP.
func (a *App) authenticate(hc HTTPConfig, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearerToken(r)
		if !ok {
			unauthorized(w, hc.Realm, "", "send Authorization: Bearer <token>")
			return
		}
		id, err := hc.Verifier(r.Context(), token)
		if err != nil {
			reason := "invalid token"
			if errors.Is(err, scope.ErrInvalidToken) {
				reason = err.Error()
			} else {
				a.log.Error("token verification failed", "err", err)
			}
			a.log.Info("rejected token", "remote", r.RemoteAddr, "reason", reason)
			unauthorized(w, hc.Realm, "invalid_token", reason)
			return
		}
		if sid := r.Header.Get(server.HeaderKeySessionID); sid != "" && validSessionKey(sid) {
			id.Session = sid
		}
		r.Body = http.MaxBytesReader(w, r.Body, hc.MaxBodyBytes)
		next.ServeHTTP(w, r.WithContext(scope.WithIdentity(r.Context(), id)))
	})
}

func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

func validSessionKey(s string) bool {
	if len(s) > 128 {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r > '~' || r == '/' || r == ':' {
			return false
		}
	}
	return true
}

func unauthorized(w http.ResponseWriter, realm, code, desc string) {
	v := `Bearer realm="` + realm + `"`
	if code != "" {
		v += `, error="` + code + `", error_description="` + strings.ReplaceAll(desc, `"`, `'`) + `"`
	}
	w.Header().Set("WWW-Authenticate", v)
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized", "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ready answers 200 when the store answers; it reveals nothing else.
func (a *App) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, _, err := a.Store.Embedder(ctx); err != nil {
		a.log.Warn("readiness check failed", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// NewHTTPServer returns an http.Server for addr with timeouts that stop a
// slow or silent client from holding a connection forever.
func (a *App) NewHTTPServer(addr string, hc HTTPConfig) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           a.HTTPHandler(hc),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}
