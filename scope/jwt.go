package scope

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Verifier checks a bearer credential and returns the identity it carries.
// Every rejection wraps [ErrInvalidToken]. A Verifier never sets
// Identity.Session: the transport does. [JWTVerifier.Verify] is a Verifier.
type Verifier func(ctx context.Context, token string) (Identity, error)

// MinSecretBytes is the shortest HS256 shared secret scopemem accepts.
// HS384 and HS512 need at least 48 and 64 bytes.
const MinSecretBytes = 32

// Defaults of [JWTConfig].
const (
	DefaultLeeway             = 30 * time.Second
	DefaultMaxTokenBytes      = 8 << 10
	DefaultJWKSRefresh        = time.Hour
	DefaultJWKSUnknownKIDWait = 10 * time.Second
	DefaultJWKSWaitMax        = 2 * time.Second
	DefaultJWKSHTTPTimeout    = 10 * time.Second
	DefaultTokenCacheSize     = 10000
)

// ClaimNames names the JWT claims an [Identity] is read from. An empty field
// means its default, given in parentheses.
type ClaimNames struct {
	Org         string // the org id; required ("org_id")
	User        string // the user id; required ("sub")
	Teams       string // team ids: a JSON array of strings, or one string separated by spaces or commas ("teams")
	Agent       string // the agent name; optional ("agent")
	Permissions string // a space-separated string or an array; "scp" is read when it is absent ("scope")
}

func (c ClaimNames) withDefaults() ClaimNames {
	def := ClaimNames{Org: "org_id", User: "sub", Teams: "teams", Agent: "agent", Permissions: "scope"}
	if c.Org == "" {
		c.Org = def.Org
	}
	if c.User == "" {
		c.User = def.User
	}
	if c.Teams == "" {
		c.Teams = def.Teams
	}
	if c.Agent == "" {
		c.Agent = def.Agent
	}
	if c.Permissions == "" {
		c.Permissions = def.Permissions
	}
	return c
}

// JWTConfig configures a [JWTVerifier]. At least one of Secret and JWKSURL
// must be set; with both, HS* tokens are checked with the secret and every
// other algorithm against the JWKS. The zero value of every other field
// means its default.
type JWTConfig struct {
	// Secret is the HS256 shared secret (see [LoadJWTSecretFile]). It must be
	// at least MinSecretBytes long.
	Secret []byte
	// JWKSURL is an http or https URL serving a JSON Web Key Set for RS*,
	// PS*, ES* and EdDSA tokens. Keys whose "use" is not "sig" are ignored.
	JWKSURL string
	// HTTPClient fetches the JWKS; nil means a client with
	// DefaultJWKSHTTPTimeout.
	HTTPClient *http.Client
	// JWKSRefresh is how often the key set is fetched in the background.
	// Default DefaultJWKSRefresh.
	JWKSRefresh time.Duration
	// JWKSUnknownKIDWait is the least time between two extra fetches caused
	// by tokens naming a key id not in the cached set (key rotation).
	// Default DefaultJWKSUnknownKIDWait.
	JWKSUnknownKIDWait time.Duration
	// JWKSWaitMax bounds how long one request may wait for such a fetch,
	// including the rate limit; when the limit would make it wait longer the
	// token is rejected at once. Default DefaultJWKSWaitMax.
	JWKSWaitMax time.Duration
	// Issuer, when set, must equal the token's "iss".
	Issuer string
	// Audience, when set, must be one of the token's "aud" values. A server
	// reachable from the internet should set it to its canonical URL.
	Audience string
	// Algorithms is the allowlist of "alg" values. Default: HS256 when Secret
	// is set, RS256, ES256 and EdDSA when JWKSURL is set. "none" is never
	// accepted.
	Algorithms []string
	// Leeway is the clock skew allowed when checking exp, nbf and iat.
	// Default DefaultLeeway.
	Leeway time.Duration
	// Claims names the claims the identity is read from.
	Claims ClaimNames
	// DefaultPermissions are granted when a token has neither the
	// permissions claim nor "scp". The default is none: such a token can
	// call nothing that needs a permission. A token whose claim is present
	// but empty gets no permissions either way.
	DefaultPermissions []Permission
	// MaxTokenBytes rejects longer tokens before parsing them. Default
	// DefaultMaxTokenBytes.
	MaxTokenBytes int
	// TokenCacheSize is how many verified HS* tokens are remembered, by
	// their exact text, until they expire: a client sends the same token
	// with every request, and a remembered one is not parsed and checked
	// again. Only tokens that passed every check are remembered, and only
	// until their exp (without the leeway): after that they are checked in
	// full again, and rejected as expired. Tokens verified with JWKS keys
	// are not remembered, so that a key removed from the set stops
	// verifying at once. Default DefaultTokenCacheSize; negative disables
	// the cache.
	TokenCacheSize int
	// Logger receives JWKS refresh failures (warn) and ignored permission
	// strings (debug). Nil discards them.
	Logger *slog.Logger
}

var (
	hmacAlgs       = []string{"HS256", "HS384", "HS512"}
	asymmetricAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

func (c JWTConfig) withDefaults() JWTConfig {
	if c.JWKSRefresh == 0 {
		c.JWKSRefresh = DefaultJWKSRefresh
	}
	if c.JWKSUnknownKIDWait == 0 {
		c.JWKSUnknownKIDWait = DefaultJWKSUnknownKIDWait
	}
	if c.JWKSWaitMax == 0 {
		c.JWKSWaitMax = DefaultJWKSWaitMax
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
	if c.MaxTokenBytes == 0 {
		c.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if c.TokenCacheSize == 0 {
		c.TokenCacheSize = DefaultTokenCacheSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: DefaultJWKSHTTPTimeout}
	}
	if len(c.Algorithms) == 0 {
		if c.Secret != nil {
			c.Algorithms = append(c.Algorithms, "HS256")
		}
		if c.JWKSURL != "" {
			c.Algorithms = append(c.Algorithms, "RS256", "ES256", "EdDSA")
		}
	}
	c.Claims = c.Claims.withDefaults()
	return c
}

// check reports the first problem with a config that has its defaults.
func (c JWTConfig) check() error {
	if c.Secret == nil && c.JWKSURL == "" {
		return errors.New("jwt: set a shared secret (--jwt-secret-file) or a JWKS URL (--jwks-url)")
	}
	for _, a := range c.Algorithms {
		switch {
		case strings.EqualFold(a, "none"):
			return errors.New(`jwt: algorithm "none" is never accepted; remove it from the allowlist`)
		case slices.Contains(hmacAlgs, a):
			if c.Secret == nil {
				return fmt.Errorf("jwt: algorithm %s needs a shared secret (--jwt-secret-file)", a)
			}
			if need := hmacMinBytes(a); len(c.Secret) < need {
				return fmt.Errorf("jwt: the shared secret is %d bytes; %s needs at least %d random bytes (e.g. openssl rand -base64 48)", len(c.Secret), a, need)
			}
		case slices.Contains(asymmetricAlgs, a):
			if c.JWKSURL == "" {
				return fmt.Errorf("jwt: algorithm %s needs a JWKS URL (--jwks-url)", a)
			}
		default:
			return fmt.Errorf("jwt: unknown algorithm %q; known: %s, %s", a, strings.Join(hmacAlgs, ", "), strings.Join(asymmetricAlgs, ", "))
		}
	}
	if c.Secret != nil && len(c.Secret) < MinSecretBytes {
		return fmt.Errorf("jwt: the shared secret is %d bytes; use at least %d random bytes (e.g. openssl rand -base64 48)", len(c.Secret), MinSecretBytes)
	}
	if c.JWKSURL != "" {
		u, err := url.Parse(c.JWKSURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("jwt: JWKS URL %q is not an http or https URL", c.JWKSURL)
		}
	}
	if c.Leeway < 0 || c.MaxTokenBytes < 0 || c.JWKSRefresh < 0 || c.JWKSUnknownKIDWait < 0 || c.JWKSWaitMax < 0 {
		return errors.New("jwt: leeway, token size and JWKS durations may not be negative")
	}
	for _, p := range c.DefaultPermissions {
		if !slices.Contains(AllPermissions, p) {
			return fmt.Errorf("jwt: unknown default permission %q", p)
		}
	}
	return nil
}

func hmacMinBytes(alg string) int {
	switch alg {
	case "HS384":
		return 48
	case "HS512":
		return 64
	}
	return MinSecretBytes
}

// JWTVerifier verifies bearer JWTs and turns their claims into an
// [Identity]. It is safe for concurrent use. With a JWKS URL it runs one
// background goroutine that refreshes the key set; it ends when the context
// given to [NewJWTVerifier] is done or [JWTVerifier.Close] is called.
type JWTVerifier struct {
	cfg    JWTConfig
	parser *jwt.Parser
	jwks   keyfunc.Keyfunc
	cancel context.CancelFunc
	log    *slog.Logger
	// verified remembers HS* tokens that passed every check; nil when
	// TokenCacheSize is negative.
	verified *lru.Cache[string, verifiedToken]
	// now is the clock of every time check; time.Now except in tests.
	now func() time.Time
}

// verifiedToken is a remembered token's identity and when it expires.
type verifiedToken struct {
	id  Identity
	exp time.Time
}

// NewJWTVerifier checks cfg and returns a verifier. With a JWKS URL it
// fetches the key set once before returning; a failed first fetch is logged,
// not fatal, and the set is fetched again when a token names a key id it
// does not know (at most once per JWKSUnknownKIDWait) and every JWKSRefresh.
// ctx bounds the background refresh, not only this call. The caller must
// call Close.
func NewJWTVerifier(ctx context.Context, cfg JWTConfig) (*JWTVerifier, error) {
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	v := &JWTVerifier{cfg: cfg, log: cfg.Logger, cancel: func() {}, now: time.Now}
	if cfg.TokenCacheSize > 0 {
		v.verified, _ = lru.New[string, verifiedToken](cfg.TokenCacheSize) // size > 0
	}
	opts := []jwt.ParserOption{
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
		jwt.WithValidMethods(cfg.Algorithms),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithStrictDecoding(),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	if cfg.JWKSURL == "" {
		return v, nil
	}
	if u, _ := url.Parse(cfg.JWKSURL); u.Scheme == "http" && !isLoopback(u.Hostname()) {
		v.log.WarnContext(ctx, "JWKS URL is plain http: signing keys can be replaced in transit; use https", "url", cfg.JWKSURL)
	}
	kctx, cancel := context.WithCancel(ctx)
	noErrFirst := true
	httpTimeout := cfg.HTTPClient.Timeout
	if httpTimeout <= 0 {
		httpTimeout = DefaultJWKSHTTPTimeout
	}
	k, err := keyfunc.NewDefaultOverrideCtx(kctx, []string{cfg.JWKSURL}, keyfunc.Override{
		Client:                    cfg.HTTPClient,
		HTTPTimeout:               httpTimeout,
		NoErrorReturnFirstHTTPReq: &noErrFirst,
		RateLimitWaitMax:          cfg.JWKSWaitMax,
		RefreshInterval:           cfg.JWKSRefresh,
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(cfg.JWKSUnknownKIDWait), 1),
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				v.log.WarnContext(ctx, "fetching the JWKS failed; tokens signed with keys not yet cached are rejected", "url", u, "err", err)
			}
		},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("jwt: JWKS %s: %w", cfg.JWKSURL, err)
	}
	// Only keys meant for signatures ("use" absent or "sig") verify tokens.
	k, err = keyfunc.New(keyfunc.Options{Ctx: kctx, Storage: k.Storage(), UseWhitelist: []jwkset.USE{jwkset.UseSig, ""}})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("jwt: JWKS %s: %w", cfg.JWKSURL, err)
	}
	v.jwks, v.cancel = k, cancel
	return v, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Close stops the background JWKS refresh. It does not wait for a fetch
// already under way, which ends with its HTTP timeout. Verify keeps working
// after Close, with the cached keys and the rate-limited fetch for an
// unknown key id (bounded by the request's context). Close may be called
// more than once.
func (v *JWTVerifier) Close() { v.cancel() }

// TokenError is why a token was rejected. Its message is meant for the
// client (an HTTP error_description or a log line) and never contains the
// token. It matches [ErrInvalidToken] with errors.Is, and the underlying
// golang-jwt error (such as jwt.ErrTokenExpired) when there is one.
type TokenError struct {
	Reason string // what was wrong, e.g. "token expired"
	Err    error  // the underlying cause, or nil
}

func (e *TokenError) Error() string { return ErrInvalidToken.Error() + ": " + e.Reason }

// Unwrap returns ErrInvalidToken and the cause.
func (e *TokenError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrInvalidToken}
	}
	return []error{ErrInvalidToken, e.Err}
}

func reject(cause error, format string, args ...any) error {
	return &TokenError{Reason: fmt.Sprintf(format, args...), Err: cause}
}

// Verify checks the token's size, signature, algorithm, exp (required),
// nbf, iat, issuer and audience, then reads the identity from its claims
// and validates it. Every error wraps [ErrInvalidToken] (most are
// *[TokenError]). ctx bounds any JWKS fetch a new key id causes.
func (v *JWTVerifier) Verify(ctx context.Context, token string) (Identity, error) {
	switch {
	case token == "":
		return Identity{}, reject(nil, "no token")
	case len(token) > v.cfg.MaxTokenBytes:
		return Identity{}, reject(nil, "token is %d bytes, longer than the %d allowed", len(token), v.cfg.MaxTokenBytes)
	}
	if v.verified != nil {
		if e, ok := v.verified.Get(token); ok {
			if v.now().Before(e.exp) {
				return e.id, nil
			}
			v.verified.Remove(token)
		}
	}
	claims := jwt.MapClaims{}
	t, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		if _, ok := t.Method.(*jwt.SigningMethodHMAC); ok {
			if v.cfg.Secret == nil {
				return nil, errNoKey
			}
			return v.cfg.Secret, nil
		}
		if v.jwks == nil {
			return nil, errNoKey
		}
		if _, ok := t.Header["kid"]; !ok {
			return v.signingKeys(ctx)
		}
		return v.jwks.KeyfuncCtx(ctx)(t)
	})
	if err != nil {
		return Identity{}, v.explain(ctx, err, t, claims)
	}
	id, err := v.identity(ctx, claims)
	if err != nil {
		return Identity{}, err
	}
	v.remember(token, t, id)
	return id, nil
}

// remember keeps a verified HS* token's identity until the token's exp.
func (v *JWTVerifier) remember(token string, t *jwt.Token, id Identity) {
	if v.verified == nil {
		return
	}
	if _, ok := t.Method.(*jwt.SigningMethodHMAC); !ok {
		return
	}
	exp, err := t.Claims.GetExpirationTime()
	if err != nil || exp == nil || !v.now().Before(exp.Time) {
		return
	}
	// Callers share the remembered slices: clipped, an append copies them.
	id.Teams, id.Permissions = slices.Clip(id.Teams), slices.Clip(id.Permissions)
	v.verified.Add(token, verifiedToken{id: id, exp: exp.Time})
}

var errNoKey = errors.New("no key configured for this algorithm")

// signingKeys returns every cached JWKS key meant for signatures, for a
// token that names no kid. golang-jwt tries each, and only keys of the type
// the token's algorithm needs can verify it.
func (v *JWTVerifier) signingKeys(ctx context.Context) (jwt.VerificationKeySet, error) {
	jwks, err := v.jwks.Storage().KeyReadAll(ctx)
	if err != nil {
		return jwt.VerificationKeySet{}, err
	}
	var set jwt.VerificationKeySet
	for _, j := range jwks {
		if use := j.Marshal().USE; use != "" && use != jwkset.UseSig {
			continue
		}
		key := j.Key()
		if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
			key = pk.Public()
		}
		set.Keys = append(set.Keys, key)
	}
	return set, nil
}

// explain turns a golang-jwt error into a reason the client can act on.
func (v *JWTVerifier) explain(ctx context.Context, err error, t *jwt.Token, claims jwt.MapClaims) error {
	alg := ""
	if t != nil {
		alg, _ = t.Header["alg"].(string)
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return reject(err, "malformed token: want three base64url segments header.payload.signature with JSON header and payload")
	case alg != "" && !slices.Contains(v.cfg.Algorithms, alg):
		return reject(err, "signing algorithm %.20q is not allowed (allowed: %s)", alg, strings.Join(v.cfg.Algorithms, ", "))
	case errors.Is(err, jwkset.ErrKeyNotFound):
		kid, _ := t.Header["kid"].(string)
		return reject(err, "unknown signing key: kid %.64q is not in the JWKS", kid)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		switch {
		case ctx.Err() != nil:
			return reject(errors.Join(err, ctx.Err()), "request ended before the signing key was found")
		case alg == "":
			return reject(err, "the token header names no signing algorithm (alg)")
		case errors.Is(err, errNoKey):
			return reject(err, "no key is configured for signing algorithm %.20q", alg)
		case errors.Is(err, keyfunc.ErrKeyfunc):
			// Rate-limited refetch, a non-string kid, or a key whose alg or
			// use does not fit.
			kid, _ := t.Header["kid"].(string)
			return reject(err, "unknown signing key: kid %.64q is not usable for %s (a new key is fetched at most every %s)", kid, alg, v.cfg.JWKSUnknownKIDWait)
		}
		return reject(err, "unknown signing key")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return reject(err, "signature does not verify")
	case errors.Is(err, jwt.ErrTokenExpired):
		return reject(err, "token expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return reject(err, "token not valid yet (nbf is in the future)")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return reject(err, "token issued in the future (iat); check the issuer's clock")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		if _, ok := claims["exp"]; !ok {
			return reject(err, "missing exp claim: tokens must expire")
		}
		if _, ok := claims["aud"]; !ok && v.cfg.Audience != "" {
			return reject(err, "wrong audience: the token has no aud claim; want %q", v.cfg.Audience)
		}
		if _, ok := claims["iss"]; !ok && v.cfg.Issuer != "" {
			return reject(err, "wrong issuer: the token has no iss claim; want %q", v.cfg.Issuer)
		}
		return reject(err, "missing a required claim")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return reject(err, "wrong issuer: want %q", v.cfg.Issuer)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return reject(err, "wrong audience: want %q", v.cfg.Audience)
	case errors.Is(err, jwt.ErrInvalidType):
		return reject(err, "a registered claim (exp, nbf, iat, iss or aud) has the wrong JSON type")
	}
	return reject(err, "token rejected")
}

// identity reads the identity from verified claims.
func (v *JWTVerifier) identity(ctx context.Context, claims jwt.MapClaims) (Identity, error) {
	names := v.cfg.Claims
	var id Identity
	var err error
	if id.Org, err = idClaim(claims, names.Org, "org", true); err != nil {
		return Identity{}, err
	}
	if id.User, err = idClaim(claims, names.User, "user", true); err != nil {
		return Identity{}, err
	}
	if id.Agent, err = idClaim(claims, names.Agent, "agent", false); err != nil {
		return Identity{}, err
	}
	teams, _, err := listClaim(claims, names.Teams, "teams")
	if err != nil {
		return Identity{}, err
	}
	for _, team := range teams {
		if err := checkID(team); err != nil {
			return Identity{}, reject(nil, "teams claim %q: %v", names.Teams, err)
		}
		if !slices.Contains(id.Teams, team) {
			id.Teams = append(id.Teams, team)
		}
	}
	id.Permissions, err = v.permissions(ctx, claims)
	if err != nil {
		return Identity{}, err
	}
	if err := id.Validate(); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// idClaim reads a string id claim; what is "org", "user" or "agent".
func idClaim(claims jwt.MapClaims, name, what string, required bool) (string, error) {
	raw, ok := claims[name]
	if !ok || raw == nil {
		if required {
			return "", reject(nil, "missing %s claim %q", what, name)
		}
		return "", nil
	}
	s, ok := raw.(string)
	if !ok {
		return "", reject(nil, "%s claim %q must be a string", what, name)
	}
	if s == "" && required {
		return "", reject(nil, "%s claim %q is empty", what, name)
	}
	if err := checkID(s); err != nil {
		return "", reject(nil, "%s claim %q: %v", what, name, err)
	}
	return s, nil
}

// listClaim reads a claim that is an array of strings or one string of
// items separated by spaces or commas. present reports whether the claim
// exists.
func listClaim(claims jwt.MapClaims, name, what string) (items []string, present bool, err error) {
	raw, ok := claims[name]
	if !ok || raw == nil {
		return nil, false, nil
	}
	switch x := raw.(type) {
	case string:
		return strings.FieldsFunc(x, func(r rune) bool { return r == ' ' || r == ',' }), true, nil
	case []any:
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, true, reject(nil, "%s claim %q must be a string or an array of strings", what, name)
			}
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		return items, true, nil
	}
	return nil, true, reject(nil, "%s claim %q must be a string or an array of strings", what, name)
}

// permissions reads the permissions claim, falling back to "scp". Strings
// scopemem does not know (an identity provider's "openid", "profile") are
// ignored.
func (v *JWTVerifier) permissions(ctx context.Context, claims jwt.MapClaims) ([]Permission, error) {
	name := v.cfg.Claims.Permissions
	items, present, err := listClaim(claims, name, "permissions")
	if err == nil && !present && name != "scp" {
		name = "scp"
		items, present, err = listClaim(claims, name, "permissions")
	}
	if err != nil {
		return nil, err
	}
	if !present {
		return slices.Clone(v.cfg.DefaultPermissions), nil
	}
	var out []Permission
	var unknown []string
	for _, s := range items {
		p := Permission(s)
		switch {
		case !slices.Contains(AllPermissions, p):
			if len(unknown) < 16 {
				unknown = append(unknown, s)
			}
		case !slices.Contains(out, p):
			out = append(out, p)
		}
	}
	if len(unknown) > 0 {
		v.log.DebugContext(ctx, "ignoring permissions scopemem does not know", "claim", name, "values", unknown)
	}
	return out, nil
}

// LoadJWTSecretFile reads an HS256 shared secret from a file, dropping
// trailing newlines, and refuses one shorter than MinSecretBytes.
func LoadJWTSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("jwt secret file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10+1))
	if err != nil {
		return nil, fmt.Errorf("jwt secret file %s: %w", path, err)
	}
	if len(b) > 64<<10 {
		return nil, fmt.Errorf("jwt secret file %s is larger than 64 KiB; it should hold only the secret", path)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) < MinSecretBytes {
		return nil, fmt.Errorf("jwt secret file %s holds %d bytes; use at least %d random bytes (e.g. openssl rand -base64 48 > %s)", path, len(b), MinSecretBytes, path)
	}
	return b, nil
}

// MintHS256 signs claims with secret as an HS256 JWT. It is meant for
// development and tests (the scopemem token command); production tokens
// come from an identity provider. It sets no claims itself: include exp,
// and org_id and sub (or the configured claim names).
func MintHS256(secret []byte, claims map[string]any) (string, error) {
	if len(secret) < MinSecretBytes {
		return "", fmt.Errorf("jwt: the shared secret is %d bytes; use at least %d", len(secret), MinSecretBytes)
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claims)).SignedString(secret)
}
