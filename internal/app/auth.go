package app

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/scopemem/scopemem/scope"
	"github.com/scopemem/scopemem/store"
)

// NormalizePublicURL checks a canonical server URL (--public-url) and
// returns it in the form used as the token audience and the resource
// identifier: an absolute http or https URL without query or fragment,
// with the path /mcp when none is given and no trailing slash. Plain http
// is refused for any host but a loopback one.
func NormalizePublicURL(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "", fmt.Errorf("public URL %q: want an absolute https URL of the MCP endpoint, e.g. https://mem.example.com/mcp", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("public URL %q: must not carry a query, fragment or user info", s)
	}
	if u.Scheme == "http" && !isLoopbackName(u.Hostname()) {
		return "", fmt.Errorf("public URL %q: use https; plain http is accepted only for localhost", s)
	}
	u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	u.Path = strings.TrimRight(u.Path, "/")
	if u.Path == "" {
		u.Path = "/mcp"
	}
	return u.String(), nil
}

// protector is the HTTP layer between the network and MCP: Host and
// Origin checks, authentication, permission, rate limits and the body
// limit.
type protector struct {
	app   *App
	cfg   HTTPConfig
	guard *guard
	keys  *scope.APIKeyVerifier
	// calls answers tools/call requests without the transport; nil
	// sends every request to it.
	calls *httpCalls
	// inflight holds every request being served, by caller and id, for
	// the notifications/cancelled naming it (see protect).
	inflight inflight

	public       *url.URL // nil without PublicURL
	origins      []string // allowed origins, lower case
	scopesAll    []string
	metadataPath string // the RFC 9728 path of PublicURL, if any
}

const wellKnown = "/.well-known/oauth-protected-resource"

func (p *protector) init() {
	if p.cfg.PublicURL != "" {
		if u, err := url.Parse(p.cfg.PublicURL); err == nil && u.Host != "" {
			p.public = u
			p.origins = append(p.origins, strings.ToLower(u.Scheme+"://"+u.Host))
			p.metadataPath = wellKnown + u.Path
		}
	}
	for _, o := range p.cfg.AllowedOrigins {
		p.origins = append(p.origins, strings.ToLower(strings.TrimRight(o, "/")))
	}
	for _, perm := range scope.AllPermissions {
		p.scopesAll = append(p.scopesAll, string(perm))
	}
}

// metadataPaths are the paths the protected resource metadata is served
// at: the well-known path, the one for /mcp, and the one for the public
// URL's path.
func (p *protector) metadataPaths() []string {
	paths := []string{wellKnown, wellKnown + "/mcp"}
	if p.metadataPath != "" && !slices.Contains(paths, p.metadataPath) {
		paths = append(paths, p.metadataPath)
	}
	return paths
}

// resource is the resource identifier: the public URL, or this request's
// own /mcp URL.
func (p *protector) resource(r *http.Request) string {
	if p.public != nil {
		return p.public.String()
	}
	return requestBase(r) + "/mcp"
}

// metadataURL is where the protected resource metadata of the resource
// is served.
func (p *protector) metadataURL(r *http.Request) string {
	if p.public != nil {
		return p.public.Scheme + "://" + p.public.Host + p.metadataPath
	}
	return requestBase(r) + wellKnown + "/mcp"
}

func requestBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// metadata serves the OAuth 2.0 protected resource metadata (RFC 9728).
func (p *protector) metadata(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	writeJSON(w, http.StatusOK, map[string]any{
		"resource":                 p.resource(r),
		"authorization_servers":    nonNilStrings(p.cfg.AuthorizationServers),
		"scopes_supported":         p.scopesAll,
		"bearer_methods_supported": []string{"header"},
		"resource_name":            "scopemem",
	})
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// checkHost refuses requests that reached a loopback listener with a Host
// that is neither a loopback name nor the public URL's host: a page on a
// foreign site that rebinds its DNS name to 127.0.0.1 sends its own name.
func (p *protector) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		if ok && local != nil && isLoopbackAddr(local.String()) && !p.hostAllowed(r.Host) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "forbidden", "error_description": "Host header " + strconv.Quote(r.Host) + " is not this server's: requests to a local server must name localhost (or the --public-url host)"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (p *protector) hostAllowed(host string) bool {
	if p.public != nil && strings.EqualFold(host, p.public.Host) {
		return true
	}
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	return isLoopbackName(strings.Trim(h, "[]"))
}

func isLoopbackAddr(addr string) bool {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		h = addr
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

func isLoopbackName(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// originAllowed reports whether a browser Origin may call /mcp: one of
// the allowed origins, or the request's own origin (a page served by the
// host the request names; checkHost has already refused foreign Host
// names on a loopback listener, which is what DNS rebinding needs).
func (p *protector) originAllowed(origin string, r *http.Request) bool {
	o := strings.ToLower(origin)
	if slices.Contains(p.origins, o) {
		return true
	}
	host := strings.ToLower(r.Host)
	return host != "" && (o == "http://"+host || o == "https://"+host)
}

// cors answers a preflight from an allowed origin and decorates the
// response to one; it reports whether the request was answered.
func (p *protector) cors(w http.ResponseWriter, r *http.Request, origin string) bool {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", "Mcp-Session-Id, WWW-Authenticate, Retry-After")
	if r.Method != http.MethodOptions {
		return false
	}
	h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	return true
}

// protect checks, in order: the Origin (403), a credential in the URL
// (401), the bearer token (401, or 429 for an address with too many
// failures), that the identity holds some permission (403), the rate
// limits (429), the body size (413) and JSON-RPC batches (400). Only then
// does the request reach MCP, with the identity in its context.
func (p *protector) protect(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		source := sourceAddr(r)
		if origin := r.Header.Get("Origin"); origin != "" {
			if !p.originAllowed(origin, r) {
				p.app.log.InfoContext(r.Context(), "refused a foreign Origin", "origin", origin, "remote", source)
				writeJSON(w, http.StatusForbidden, map[string]string{"error": "forbidden", "error_description": "Origin " + strconv.Quote(origin) + " is not allowed (add it with --allowed-origins)"})
				return
			}
			if p.cors(w, r, origin) {
				return
			}
		}
		if credentialInURL(r.URL) {
			p.fail(w, r, source, now, "invalid_request", "credentials in the URL are refused: send them only in the Authorization header", "")
			return
		}
		if blocked, retry := p.guard.authFailureBlocked(source, now); blocked {
			tooMany(w, retry, "too many failed logins from this address")
			return
		}
		token, ok := bearerToken(r)
		if !ok {
			p.challenge(w, r, "", "send Authorization: Bearer <token>")
			return
		}
		id, err := p.verify(r, token)
		var unavailable *keyStoreError
		if errors.As(err, &unavailable) {
			// Not the credential's fault: no 401, no failed login counted
			// against the address.
			p.app.log.WarnContext(r.Context(), "API key lookup failed", "err", err, "remote", source)
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable",
				"error_description": "the API key could not be checked: the store did not answer; retry shortly"})
			return
		}
		if err != nil {
			reason := "invalid token"
			var te *scope.TokenError
			switch {
			case errors.As(err, &te):
				reason = te.Reason
			case errors.Is(err, scope.ErrInvalidToken):
				reason = err.Error()
			default:
				p.app.log.ErrorContext(r.Context(), "credential check failed", "err", err)
			}
			org := ""
			var kf *scope.KeyFailure
			if errors.As(err, &kf) {
				org = kf.Org
			}
			p.fail(w, r, source, now, "invalid_token", reason, org)
			return
		}
		if !slices.ContainsFunc(scope.AllPermissions, id.Has) {
			p.insufficientScope(w, r, scope.PermRead)
			return
		}
		if ok, retry, which := p.guard.rateLimit(id, now); !ok {
			tooMany(w, retry, "rate limit of "+which+" exceeded")
			return
		}
		var (
			body []byte
			call toolCall
		)
		if r.Method == http.MethodPost {
			var ok bool
			if body, ok = p.readBody(w, r); !ok {
				return
			}
			// A body that is not a request leaves call zero: not taken by
			// p.calls either.
			if call, ok = readToolCall(body); ok && call.Method != "" && !strings.HasPrefix(call.Method, "notifications/") {
				p.guard.countCall(id.Org)
			}
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		}
		sid := r.Header.Get(server.HeaderKeySessionID)
		from := caller{org: id.Org, user: id.User, agent: id.Agent, session: sid}
		if sid != "" && validSessionKey(sid) {
			id.Session = sid
		}
		ctx := store.WithSource(scope.WithIdentity(r.Context(), id), source)
		if body != nil {
			// Cancellation is answered here and never reaches mcp-go,
			// which keys the requests it runs by session id and request
			// id alone: a request without a session (2026-07-28 has
			// none) has the empty id, so that a notification from any
			// caller naming request 7 cancelled every tenant's request
			// 7 in flight. Here a notification cancels only the
			// requests of the same caller and Mcp-Session-Id.
			reqID, isRequest := requestID(&call)
			if call.Method == string(mcp.MethodNotificationCancelled) && !isRequest {
				if cancelled, ok := cancelledID(body); ok {
					p.inflight.cancel(from, cancelled)
				}
				w.WriteHeader(http.StatusAccepted)
				return
			}
			if isRequest {
				var done func()
				ctx, done = p.inflight.add(ctx, from, reqID)
				defer done()
			}
		}
		if body != nil && p.calls != nil && p.calls.serve(ctx, w, r, &call, body) {
			return
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// verify checks an API key (smk_ prefix) or a JWT.
func (p *protector) verify(r *http.Request, token string) (scope.Identity, error) {
	if strings.HasPrefix(token, scope.APIKeyPrefix) {
		if p.keys == nil {
			return scope.Identity{}, &scope.TokenError{Reason: "API keys are not accepted by this server"}
		}
		id, err := p.keys.Verify(r.Context(), token)
		if err != nil && !errors.Is(err, scope.ErrInvalidToken) && !errors.As(err, new(*scope.TokenError)) && !errors.As(err, new(*scope.KeyFailure)) {
			return id, &keyStoreError{err}
		}
		return id, err
	}
	if p.cfg.Verifier == nil {
		return scope.Identity{}, &scope.TokenError{Reason: "this server accepts only API keys (smk_live_...)"}
	}
	return p.cfg.Verifier(r.Context(), token)
}

// fail answers a failed login with 401, audits it (at most as often as
// the address's failed-login limit allows) and counts it against the
// address.
func (p *protector) fail(w http.ResponseWriter, r *http.Request, source string, now time.Time, code, reason, org string) {
	p.app.log.InfoContext(r.Context(), "rejected credentials", "remote", source, "reason", reason)
	if p.guard.authFailed(source, now) {
		p.guard.audit(r.Context(), store.AuditEvent{Org: org, Action: store.AuditAuthFailure, Source: source, Detail: reason})
	}
	p.challenge(w, r, code, reason)
}

// challenge answers 401 with the Bearer challenge of RFC 6750 and RFC 9728.
func (p *protector) challenge(w http.ResponseWriter, r *http.Request, code, desc string) {
	v := `Bearer resource_metadata="` + p.metadataURL(r) + `", realm="` + p.cfg.Realm + `"`
	if code != "" {
		v += `, error="` + code + `", error_description="` + headerSafe(desc) + `"`
	}
	w.Header().Set("WWW-Authenticate", v)
	body := map[string]string{"error": "unauthorized", "error_description": desc}
	if code != "" {
		body["error"] = code
	}
	writeJSON(w, http.StatusUnauthorized, body)
}

// insufficientScope answers 403 with error="insufficient_scope".
func (p *protector) insufficientScope(w http.ResponseWriter, r *http.Request, need scope.Permission) {
	desc := "the credential grants none of this server's permissions; it needs at least " + string(need)
	w.Header().Set("WWW-Authenticate", `Bearer resource_metadata="`+p.metadataURL(r)+`", realm="`+p.cfg.Realm+
		`", error="insufficient_scope", scope="`+string(need)+`", error_description="`+headerSafe(desc)+`"`)
	writeJSON(w, http.StatusForbidden, map[string]string{"error": "insufficient_scope", "error_description": desc})
}

// headerSafe keeps a description inside a quoted header parameter: RFC
// 6750 allows printable ASCII except '"' and '\'.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '"' || r == '\\':
			return '\''
		case r < 0x20 || r > 0x7e:
			return '?'
		}
		return r
	}, s)
}

func tooMany(w http.ResponseWriter, retry time.Duration, desc string) {
	secs := int(math.Ceil(retry.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "rate_limited", "error_description": desc + "; retry after the time in Retry-After"})
}

// readBody reads the whole body within MaxBodyBytes; it answers 413 for a
// larger one and 400 for a batch or a body that could not be read.
func (p *protector) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	limit := p.cfg.MaxBodyBytes
	if r.ContentLength > limit {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "request_too_large", "error_description": fmt.Sprintf("the body is %d bytes; at most %d are accepted", r.ContentLength, limit)})
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "request_too_large", "error_description": fmt.Sprintf("the body is larger than the %d bytes accepted", limit)})
		return nil, false
	case err != nil:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad_request", "error_description": "the request body could not be read"})
		return nil, false
	}
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && t[0] == '[' {
		// JSON-RPC batches were removed from MCP in 2025-06-18; clients of
		// 2025-03-26 send one message per POST in practice. Refusing them
		// keeps one authenticated, rate-limited and audited call per
		// request.
		writeJSON(w, http.StatusBadRequest, map[string]any{"jsonrpc": "2.0", "id": nil,
			"error": map[string]any{"code": -32600, "message": "JSON-RPC batches are not supported: send one message per request"}})
		return nil, false
	}
	return body, true
}

// credentialInURL reports a query parameter that carries a credential:
// access_token (RFC 6750 section 2.3, which servers may refuse and we
// do), or any value shaped like an API key or a JWT.
func credentialInURL(u *url.URL) bool {
	for k, vs := range u.Query() {
		if strings.EqualFold(k, "access_token") || strings.EqualFold(k, "api_key") {
			return true
		}
		for _, v := range vs {
			if strings.HasPrefix(v, scope.APIKeyPrefix) || (strings.HasPrefix(v, "eyJ") && strings.Count(v, ".") == 2) {
				return true
			}
		}
	}
	return false
}

// sourceAddr is the caller's IP address as the connection shows it.
func sourceAddr(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
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

// keyStoreError is an API key that could not be checked because its
// record could not be read (the store failed or timed out): the request
// is answered 503, not 401.
type keyStoreError struct{ err error }

func (e *keyStoreError) Error() string { return "API key lookup: " + e.err.Error() }
func (e *keyStoreError) Unwrap() error { return e.err }
