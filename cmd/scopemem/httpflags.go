package main

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/scopemem/scopemem/internal/app"
)

// httpSecurityFlags are serve's flags for a server reachable from the
// internet: the canonical URL, OAuth discovery, browser origins, limits
// and timeouts.
type httpSecurityFlags struct {
	PublicURL          string   `name:"public-url" env:"SCOPEMEM_PUBLIC_URL" help:"Canonical URL of the MCP endpoint as clients reach it (e.g. https://mem.example.com/mcp). Tokens must name it as their audience (RFC 8707). Required to listen on a non-loopback address." placeholder:"URL" group:"HTTP security"`
	AuthServers        []string `name:"auth-server" env:"SCOPEMEM_AUTH_SERVERS" sep:"," help:"OAuth authorization server (issuer URL) named in /.well-known/oauth-protected-resource; repeatable." placeholder:"URL" group:"HTTP security"`
	AllowedOrigins     []string `name:"allowed-origins" env:"SCOPEMEM_ALLOWED_ORIGINS" sep:"," help:"Browser origins (scheme://host[:port]) allowed to call /mcp; any other Origin gets 403. The public URL's origin is always allowed; requests without Origin pass." placeholder:"ORIGIN,..." group:"HTTP security"`
	ConformanceFixture bool     `name:"conformance-fixture" hidden:"" help:"Add the always-failing tool test_error_handling for the MCP conformance suite (e2e/conformance.sh). Never in production." group:"HTTP security"`
	NoAPIKeys          bool     `name:"no-api-keys" env:"SCOPEMEM_NO_API_KEYS" help:"Refuse API keys (smk_...); accept only JWTs." group:"HTTP security"`

	RateLimit         float64       `name:"rate-limit" env:"SCOPEMEM_RATE_LIMIT" default:"20" help:"Requests per second each user may make on average (0: unlimited)." group:"HTTP limits"`
	RateBurst         int           `name:"rate-burst" env:"SCOPEMEM_RATE_BURST" default:"40" help:"Burst of requests each user may make." group:"HTTP limits"`
	OrgRateLimit      float64       `name:"org-rate-limit" env:"SCOPEMEM_ORG_RATE_LIMIT" default:"200" help:"Requests per second each org may make on average (0: unlimited)." group:"HTTP limits"`
	OrgRateBurst      int           `name:"org-rate-burst" env:"SCOPEMEM_ORG_RATE_BURST" default:"400" help:"Burst of requests each org may make." group:"HTTP limits"`
	MaxMemoriesPerOrg int64         `name:"max-memories-per-org" env:"SCOPEMEM_MAX_MEMORIES_PER_ORG" default:"0" help:"Default quota of memories per org (0: unlimited)." group:"HTTP limits"`
	MaxBytesPerOrg    int64         `name:"max-bytes-per-org" env:"SCOPEMEM_MAX_BYTES_PER_ORG" default:"0" help:"Default quota of stored content bytes per org (0: unlimited)." group:"HTTP limits"`
	OrgLimits         string        `name:"org-limits" env:"SCOPEMEM_ORG_LIMITS" help:"JSON file of per-org quotas and rate limits, overriding the defaults above: {\"default\": {...}, \"orgs\": {\"acme\": {\"max_memories\": 100000, \"max_bytes\": 1073741824, \"principal\": {\"rate\": 50, \"burst\": 100}, \"org\": {\"rate\": 500}}}}." placeholder:"FILE" group:"HTTP limits"`
	AuthFailures      float64       `name:"auth-failures-per-minute" env:"SCOPEMEM_AUTH_FAILURES_PER_MINUTE" default:"30" help:"Failed logins allowed per source address and minute before it gets 429 (0: unlimited)." group:"HTTP limits"`
	MaxBodyBytes      int64         `name:"max-body-bytes" env:"SCOPEMEM_MAX_BODY_BYTES" default:"1048576" help:"Largest request body; larger ones get 413." group:"HTTP limits"`
	MaxHeaderBytes    int           `name:"max-header-bytes" env:"SCOPEMEM_MAX_HEADER_BYTES" default:"65536" help:"Largest request header block; larger ones get 431." group:"HTTP limits"`
	ReadHeaderTimeout time.Duration `name:"read-header-timeout" env:"SCOPEMEM_READ_HEADER_TIMEOUT" default:"10s" help:"Time a client has to send the request headers." group:"HTTP limits"`
	ReadTimeout       time.Duration `name:"read-timeout" env:"SCOPEMEM_READ_TIMEOUT" default:"60s" help:"Time a client has to send the whole request." group:"HTTP limits"`
	WriteTimeout      time.Duration `name:"write-timeout" env:"SCOPEMEM_WRITE_TIMEOUT" default:"2m" help:"Time to answer one request." group:"HTTP limits"`
	IdleTimeout       time.Duration `name:"idle-timeout" env:"SCOPEMEM_IDLE_TIMEOUT" default:"2m" help:"How long an idle keep-alive connection stays open." group:"HTTP limits"`
}

// config checks the flags against the listen address and returns the
// HTTP configuration (without a verifier).
func (f httpSecurityFlags) config(addr string) (app.HTTPConfig, error) {
	hc := app.HTTPConfig{
		AuthorizationServers: f.AuthServers, DisableAPIKeys: f.NoAPIKeys, ConformanceFixture: f.ConformanceFixture,
		MaxBodyBytes: f.MaxBodyBytes, MaxHeaderBytes: f.MaxHeaderBytes,
		ReadHeaderTimeout: f.ReadHeaderTimeout, ReadTimeout: f.ReadTimeout, WriteTimeout: f.WriteTimeout, IdleTimeout: f.IdleTimeout,
		AuthFailures: app.RateLimit{Rate: f.AuthFailures / 60, Burst: int(f.AuthFailures)},
	}
	if f.PublicURL != "" {
		u, err := app.NormalizePublicURL(f.PublicURL)
		if err != nil {
			return hc, err
		}
		hc.PublicURL = u
	}
	if err := checkListenAddr(addr, hc.PublicURL != ""); err != nil {
		return hc, err
	}
	for _, o := range f.AllowedOrigins {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o == "*" || o == "null" || !strings.Contains(o, "://") || strings.Count(o, "/") != 2 {
			return hc, fmt.Errorf("--allowed-origins %q: name each origin as scheme://host[:port] (no wildcard, no path)", o)
		}
		hc.AllowedOrigins = append(hc.AllowedOrigins, o)
	}
	if f.OrgLimits != "" {
		ol, err := app.LoadOrgLimits(f.OrgLimits)
		if err != nil {
			return hc, err
		}
		hc.OrgLimits = ol
	}
	d := &hc.OrgLimits.Default
	if d.MaxMemories == 0 {
		d.MaxMemories = f.MaxMemoriesPerOrg
	}
	if d.MaxBytes == 0 {
		d.MaxBytes = f.MaxBytesPerOrg
	}
	if d.Principal.Rate == 0 {
		d.Principal = app.RateLimit{Rate: f.RateLimit, Burst: f.RateBurst}
	}
	if d.Org.Rate == 0 {
		d.Org = app.RateLimit{Rate: f.OrgRateLimit, Burst: f.OrgRateBurst}
	}
	return hc, nil
}

// audience is the JWT audience: the public URL (RFC 8707), or
// --jwt-audience, which must then agree with it.
func (f httpSecurityFlags) audience(publicURL, jwtAudience string) (string, error) {
	switch {
	case publicURL == "":
		return jwtAudience, nil
	case jwtAudience == "" || jwtAudience == publicURL:
		return publicURL, nil
	}
	return "", fmt.Errorf("--jwt-audience %q differs from --public-url %q: tokens must be issued for this server's canonical URL (RFC 8707); drop --jwt-audience or make them equal", jwtAudience, publicURL)
}

// checkListenAddr refuses a non-loopback listen address unless the
// server has a public URL: a server meant for one machine must not be
// reachable from others by accident, and one meant for the internet
// needs its canonical URL for token audiences.
func checkListenAddr(addr string, public bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--http %q: want host:port, e.g. 127.0.0.1:8080", addr)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	if public {
		return nil
	}
	if host == "" {
		host = "every interface"
	}
	return fmt.Errorf("--http %q listens on %s, not only on loopback: set --public-url to the URL clients use (tokens are then checked for it as their audience), or listen on 127.0.0.1", addr, host)
}
