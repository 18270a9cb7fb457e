// Package store defines [Store], the only door to memories, and the errors
// every backend returns.
//
// # Isolation
//
// Every method takes the caller's [scope.Identity]. A backend filters every
// query by the identity's org and its visible scopes ([scope.Identity.Visible])
// with bound parameters; there is no query without the org. Writes (Update,
// Delete) only reach memories in scopes the identity may write
// ([scope.Identity.Writable]); a memory outside them is reported as
// [ErrNotFound], never as forbidden, so its existence is not revealed.
//
// # Vectors
//
// Vectors are float32 slices of the dimension recorded in the store's
// [EmbedderInfo]. Backends normalize them to unit length on write, so
// similarity is cosine.
//
// # Concurrency and context
//
// A Store is safe for concurrent use by many goroutines. Cancelling the
// context of a call abandons it; a write either completes or leaves nothing
// behind. The caller that opened a Store calls Close once, after every call
// has returned.
//
// # Errors
//
// [ErrNotFound], [ErrConflict], [ErrEmbedderMismatch], [ErrInvalid] and
// [ErrUnavailable] are sentinels; test them with errors.Is. Backends translate
// driver errors at their boundary: nothing outside store/ inspects a driver
// error.
//
// The contract every backend meets is the suite in store/storetest.
package store
