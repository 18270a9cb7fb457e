// Package tools defines scopemem's MCP tools: one file per tool, each with
// its input and output types, its schema, the permission it needs and its
// handler.
//
// A handler takes the caller's [scope.Identity] from the request context
// (put there by the transport after verifying a token, an API key or the
// stdio agent config) and never reads identity from tool arguments: input
// schemas forbid unknown properties, so an org_id or user_id argument is
// rejected. Handlers check arguments before calling the embedder or the
// store, so bad input changes nothing.
//
// Errors the model can act on (bad arguments, a missing permission, an
// unknown scope, a memory that is not found, an embedder that is down) come
// back as tool errors with a short message saying what to do. Any other
// error is logged once with its full chain and the model gets a generic
// message with a reference, never SQL, a DSN or a token.
package tools
