package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/scopemem/scopemem/scope"
)

// TokenCmd mints a development HS256 token.
type TokenCmd struct {
	SecretFile  string        `name:"secret-file" env:"SCOPEMEM_JWT_SECRET_FILE" required:"" help:"File holding the HS256 shared secret the server checks with." placeholder:"FILE"`
	Org         string        `required:"" help:"org_id claim."`
	User        string        `required:"" help:"sub claim."`
	Teams       []string      `sep:"," help:"teams claim, comma-separated."`
	Agent       string        `help:"agent claim."`
	Permissions []string      `sep:"," default:"memory:read,memory:write,memory:share,memory:purge" help:"Permissions (the scope claim)."`
	Issuer      string        `help:"iss claim (must match the server's --jwt-issuer)."`
	Audience    string        `help:"aud claim (must match the server's --jwt-audience)."`
	TTL         time.Duration `default:"1h" help:"Lifetime of the token."`
}

// Run prints the token on stdout. It is for development: production tokens
// come from an identity provider.
func (c *TokenCmd) Run() error {
	secret, err := scope.LoadJWTSecretFile(c.SecretFile)
	if err != nil {
		return err
	}
	perms, err := scope.ParsePermissions(strings.Join(c.Permissions, ","))
	if err != nil {
		return err
	}
	if c.TTL <= 0 {
		return errors.New("--ttl must be positive")
	}
	ps := make([]string, len(perms))
	for i, p := range perms {
		ps[i] = string(p)
	}
	now := time.Now()
	claims := map[string]any{
		"org_id": c.Org, "sub": c.User, "scope": strings.Join(ps, " "),
		"iat": now.Unix(), "exp": now.Add(c.TTL).Unix(),
	}
	if len(c.Teams) > 0 {
		claims["teams"] = c.Teams
	}
	if c.Agent != "" {
		claims["agent"] = c.Agent
	}
	if c.Issuer != "" {
		claims["iss"] = c.Issuer
	}
	if c.Audience != "" {
		claims["aud"] = c.Audience
	}
	tok, err := scope.MintHS256(secret, claims)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}
