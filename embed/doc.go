// Package embed turns texts into vectors for scopemem's hybrid search.
//
// # Embedders
//
// [Embedder] is the small interface the wrappers here consume: Embed a
// batch of texts, and Info naming the provider, model and dimensions (a
// store records Info next to its vectors and refuses to mix two).
// Consumers elsewhere declare only the methods they call.
//
//   - [Ollama] calls an Ollama server's /api/embed through
//     github.com/ollama/ollama/api. Long calls are split at
//     OllamaConfig.BatchSize; at most MaxConcurrency requests are in flight
//     to the server at once; each request has its own Timeout; connection
//     errors, HTTP 5xx and 429 are retried MaxRetries times with exponential
//     backoff, jitter and a cap; every vector is checked and scaled to unit
//     length. Call [Ollama.Probe] at start-up to check that the server is up,
//     that it has the model, and to learn the dimension.
//   - [Builtin] needs nothing outside the binary, so that scopemem works on a
//     fresh machine. It is lexical, not semantic: it matches shared words
//     and spellings, never synonyms or paraphrases (see its doc). With it,
//     search quality rests mostly on the full-text half of hybrid search.
//   - [Fake] is for load tests and benchmarks only: deterministic vectors
//     with no meaning, after a configurable delay standing for a model.
//
// Two wrappers, both Embedders themselves, sit in front of either:
//
//   - [Cache] keeps recent vectors (LRU, keyed by model and SHA-256 of the
//     text), so that repeated queries skip the model, and never embeds the
//     same text twice within one call.
//   - [Batcher] merges concurrent calls arriving within a short window into
//     one call of the embedder behind it (micro-batching), which multiplies
//     throughput against a model server under concurrent load.
//
// A server builds them as Cache → Batcher → Ollama: cache hits return at
// once, and only misses wait for a batch.
//
// # Vectors
//
// Every vector returned is a fresh []float32 of Info().Dimensions values
// with unit length, owned by the caller. Embed returns one vector per text,
// in input order; an empty batch returns an empty result and no error.
//
// # Errors
//
// Errors wrap one of the sentinels, to be tested with errors.Is:
// [ErrUnavailable] (server down, too slow, or failing: retry later; the
// message names the URL and says to run `ollama serve`), [ErrModelNotFound]
// (the message gives the `ollama pull` command), [ErrBadVector] (the server
// answered with something that is not a usable embedding), [ErrInput] (a
// text that cannot be embedded: empty, blank, invalid UTF-8, or refused by
// the model), and [ErrClosed] (a closed Batcher). When the caller's context
// ends first the error wraps the context's error; a passed deadline also
// wraps ErrUnavailable, since the server did not answer in time. Error
// messages never contain the password of a host URL.
//
// # Concurrency and context
//
// Every type here is safe for concurrent use. Cancelling the context of an
// Embed call abandons it: the HTTP request is cancelled, a retry wait ends,
// and a Batcher caller returns at once while the merged call goes on for the
// other callers in it.
//
// # Goroutines
//
// Ollama starts a goroutine per request chunk of a call that spans several
// chunks; they end before Embed returns. Batcher runs one goroutine from
// [NewBatcher] until [Batcher.Close], plus one per merged call in flight;
// Close waits for all of them. Whoever calls NewBatcher calls Close.
//
// # Testing
//
// Package embed/ollamatest serves /api/embed like Ollama, with switches for
// each failure, for tests and for load generation against a fake model.
package embed
