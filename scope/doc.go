// Package scope resolves who is calling and decides what they may see.
//
// An [Identity] is resolved once per request from verified input: a JWT
// checked by a [Verifier], a hashed API key, or, on stdio, the agent config.
// It is carried in the request context ([WithIdentity], [FromContext]) and is
// the only source of the caller's org and user: nothing in tool arguments can
// widen it.
//
// # Visibility
//
// The scopes an identity can see, narrowest first, are session, agent, user,
// each of its teams, and org ([Identity.Visible]). Writing to team and org
// scopes needs [PermShare] ([Identity.CanWrite]). Purging needs [PermPurge],
// and an org admin ([PermAdmin]) may purge any scope of the org, one user's
// memories, or the whole org ([Identity.CanPurge]).
//
// # Errors
//
// Token problems wrap [ErrInvalidToken]; a caller that lacks a permission
// gets an error wrapping [ErrForbidden]; a scope string that cannot be parsed
// wraps [ErrBadScope]. Test them with errors.Is.
package scope
