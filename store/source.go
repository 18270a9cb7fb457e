package store

import "context"

type sourceKey struct{}

// WithSource returns ctx carrying the caller's network address (the HTTP
// server puts it there), which a store that audits its own writes
// ([WriteAuditor]) records with them.
func WithSource(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, sourceKey{}, addr)
}

// SourceFrom returns the address [WithSource] put in ctx, or "".
func SourceFrom(ctx context.Context) string {
	s, _ := ctx.Value(sourceKey{}).(string)
	return s
}

// WriteAuditor is an optional capability of a [Store] that records every
// write (Add, Update, Delete, Purge) in its audit log itself, inside the
// write's own transaction, with the caller's address from [SourceFrom]. A
// caller that audits writes (the HTTP server) leaves those writes to it,
// so that each is recorded once, and exactly when it is committed.
type WriteAuditor interface {
	// AuditsWrites reports whether the store records its writes.
	AuditsWrites() bool
}
