package embed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/envconfig"
)

// Defaults for [OllamaConfig].
const (
	DefaultOllamaModel       = "nomic-embed-text"
	DefaultOllamaTimeout     = 30 * time.Second
	DefaultOllamaRetries     = 3
	DefaultOllamaConcurrency = 4
	DefaultOllamaBatchSize   = 64
	DefaultRetryBackoff      = 100 * time.Millisecond
	DefaultMaxRetryBackoff   = 2 * time.Second
)

// probeText is what [Ollama.Probe] embeds.
const probeText = "scopemem embedding probe"

// OllamaConfig configures [NewOllama]. The zero value of every field means
// its default.
type OllamaConfig struct {
	// Host is the Ollama server, e.g. "http://127.0.0.1:11434" or
	// "localhost:11434" (scheme and port are optional, as for OLLAMA_HOST).
	// Empty: the OLLAMA_HOST environment variable, read as the ollama
	// command does, else http://127.0.0.1:11434.
	Host string
	// Model is the embedding model. Default "nomic-embed-text".
	Model string
	// HTTPClient sends the requests. Default: a new client with no timeout
	// of its own (Timeout below bounds each request).
	HTTPClient *http.Client
	// Timeout bounds one HTTP request, from sending it to reading the whole
	// answer. Default 30s. A request that times out is not retried.
	Timeout time.Duration
	// MaxRetries is how many times a request is retried after a connection
	// error, HTTP 5xx or HTTP 429. Default 3; negative means never retry.
	// A retry whose wait would end past the context's deadline is not
	// made: the call fails at once with the last attempt's error.
	MaxRetries int
	// RetryBackoff is the delay before the first retry; it doubles for each
	// later one, with random jitter (each delay is 50-100% of the nominal
	// one). Default 100ms.
	RetryBackoff time.Duration
	// MaxRetryBackoff caps the delay between retries. Default 2s.
	MaxRetryBackoff time.Duration
	// MaxConcurrency bounds how many requests this embedder has in flight to
	// the server at once, across all calls. Default 4.
	MaxConcurrency int
	// BatchSize is the most texts sent in one /api/embed request; longer
	// calls are split. Default 64.
	BatchSize int
	// Dimensions is the expected vector size. 0: learned from the first
	// answer (call [Ollama.Probe] at start-up to learn it early).
	Dimensions int
	// Logger receives retry warnings and per-request debug lines. Default:
	// discard.
	Logger *slog.Logger
}

func (c OllamaConfig) withDefaults() OllamaConfig {
	if c.Model == "" {
		c.Model = DefaultOllamaModel
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultOllamaTimeout
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultOllamaRetries
	} else if c.MaxRetries < 0 {
		c.MaxRetries = 0
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = DefaultRetryBackoff
	}
	if c.MaxRetryBackoff <= 0 {
		c.MaxRetryBackoff = DefaultMaxRetryBackoff
	}
	if c.MaxConcurrency <= 0 {
		c.MaxConcurrency = DefaultOllamaConcurrency
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultOllamaBatchSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Ollama embeds texts with an Ollama server's /api/embed endpoint. It is
// safe for concurrent use.
type Ollama struct {
	cfg    OllamaConfig
	client *api.Client
	where  string // the server URL with any password removed, for messages
	sem    chan struct{}
	dims   atomic.Int64
	// learnMu serializes learning the dimension from the first answer.
	learnMu sync.Mutex
}

// NewOllama returns an embedder for the Ollama server cfg names. It does not
// contact the server; call [Ollama.Probe] to check that the server is up and
// has the model. Errors: a Host that is not a URL, a negative Dimensions.
func NewOllama(cfg OllamaConfig) (*Ollama, error) {
	cfg = cfg.withDefaults()
	if cfg.Dimensions < 0 {
		return nil, fmt.Errorf("ollama dimensions %d: must be positive, or 0 to learn it from the server", cfg.Dimensions)
	}
	var base *url.URL
	if cfg.Host == "" {
		base = envconfig.Host()
	} else {
		var err error
		if base, err = parseHost(cfg.Host); err != nil {
			return nil, err
		}
	}
	o := &Ollama{
		cfg:    cfg,
		client: api.NewClient(base, cfg.HTTPClient),
		where:  base.Redacted(),
		sem:    make(chan struct{}, cfg.MaxConcurrency),
	}
	o.dims.Store(int64(cfg.Dimensions))
	return o, nil
}

// parseHost reads an Ollama address the way the ollama command reads
// OLLAMA_HOST: the scheme defaults to http and the port to 11434 (80 or 443
// when the scheme is given).
func parseHost(s string) (*url.URL, error) {
	s = strings.TrimSpace(s)
	scheme, rest, ok := strings.Cut(s, "://")
	port := "11434"
	switch {
	case !ok:
		scheme, rest = "http", s
	case scheme == "http":
		port = "80"
	case scheme == "https":
		port = "443"
	default:
		return nil, fmt.Errorf("ollama host %q: scheme must be http or https", redactHost(s))
	}
	hostport, path, _ := strings.Cut(rest, "/")
	userinfo, hostport, hasUser := strings.Cut(hostport, "@")
	if !hasUser {
		hostport, userinfo = userinfo, ""
	}
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		host, p = strings.Trim(hostport, "[]"), port
	}
	if host == "" {
		return nil, fmt.Errorf("ollama host %q: no host name; use e.g. http://127.0.0.1:11434", redactHost(s))
	}
	if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 {
		return nil, fmt.Errorf("ollama host %q: port %q is not a number in 1..65535", redactHost(s), p)
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, p)}
	if path != "" {
		u.Path = "/" + path
	}
	if hasUser {
		name, pass, hasPass := strings.Cut(userinfo, ":")
		if hasPass {
			u.User = url.UserPassword(name, pass)
		} else {
			u.User = url.User(name)
		}
	}
	return u, nil
}

// redactHost hides the password of an address that failed to parse.
func redactHost(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		scheme, rest = "", s
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if name, _, hasPass := strings.Cut(rest[:at], ":"); hasPass {
			rest = name + ":xxxxx" + rest[at:]
		}
	}
	if ok {
		return scheme + "://" + rest
	}
	return rest
}

// Info returns provider "ollama", the model, and the dimension (0 until it
// has been learned from the server when the config did not give it).
func (o *Ollama) Info() Info {
	return Info{Provider: "ollama", Model: o.cfg.Model, Dimensions: int(o.dims.Load())}
}

// Probe checks that the server is reachable and has the model by embedding
// one short text, and returns the embedder's Info with its dimension
// learned. Errors are those of [Ollama.Embed].
func (o *Ollama) Probe(ctx context.Context) (Info, error) {
	if _, err := o.Embed(ctx, []string{probeText}); err != nil {
		return Info{}, err
	}
	return o.Info(), nil
}

// Embed embeds texts with the server, at most BatchSize texts per request,
// up to MaxConcurrency requests at once. Every returned vector is checked
// (count, dimension, finite, non-zero) and scaled to unit length. Errors
// wrap ErrInput, ErrUnavailable, ErrModelNotFound or ErrBadVector; when ctx
// ends first, the error wraps ctx.Err() (and ErrUnavailable too when its
// deadline passed while waiting for the server).
func (o *Ollama) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if len(texts) == 0 {
		return [][]float32{}, nil
	}
	if err := checkTexts(texts); err != nil {
		return nil, err
	}
	out := make([][]float32, len(texts))
	n := o.cfg.BatchSize
	if len(texts) <= n {
		if err := o.embedChunk(ctx, texts, out); err != nil {
			return nil, err
		}
		return out, nil
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for start := 0; start < len(texts); start += n {
		end := min(start+n, len(texts))
		wg.Go(func() {
			if err := o.embedChunk(ctx, texts[start:end], out[start:end]); err != nil {
				errOnce.Do(func() {
					firstErr = err
					cancel()
				})
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// embedChunk sends one request (with retries) and fills out.
func (o *Ollama) embedChunk(ctx context.Context, texts []string, out [][]float32) error {
	var prev error // the error the last failed attempt would return
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := o.sleep(ctx, attempt); errors.Is(err, errNoTimeLeft) {
				return fmt.Errorf("%w (no time left for another attempt before the deadline)", prev)
			} else if err != nil {
				return o.ctxError(ctx, err, prev, nil)
			}
		}
		vecs, err := o.send(ctx, texts)
		if err == nil {
			return o.accept(texts, vecs, out)
		}
		if ctx.Err() != nil {
			return o.ctxError(ctx, ctx.Err(), prev, err)
		}
		retry, final := o.classify(err, attempt+1)
		if !retry || attempt >= o.cfg.MaxRetries {
			return final
		}
		prev = final
		o.cfg.Logger.Warn("embedding request failed; retrying",
			"url", o.where, "model", o.cfg.Model, "attempt", attempt+1, "of", o.cfg.MaxRetries+1, "err", err)
	}
}

// send makes one request under the concurrency bound and the per-request
// timeout.
func (o *Ollama) send(ctx context.Context, texts []string) ([][]float32, error) {
	select {
	case o.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-o.sem }()

	rctx, cancel := context.WithTimeoutCause(ctx, o.cfg.Timeout, errRequestTimeout)
	defer cancel()
	start := time.Now()
	resp, err := o.client.Embed(rctx, &api.EmbedRequest{Model: o.cfg.Model, Input: texts})
	if err != nil {
		if ctx.Err() == nil && errors.Is(context.Cause(rctx), errRequestTimeout) {
			return nil, errRequestTimeout
		}
		return nil, err
	}
	o.cfg.Logger.Debug("embedded", "url", o.where, "model", o.cfg.Model, "texts", len(texts),
		"took", time.Since(start))
	return resp.Embeddings, nil
}

// errRequestTimeout marks a request cut by OllamaConfig.Timeout.
var errRequestTimeout = errors.New("request timed out")

// errNoTimeLeft: ctx's deadline comes before the next retry would start.
var errNoTimeLeft = errors.New("no time left before the deadline")

// sleep waits before retry number attempt (1-based): RetryBackoff doubled
// for each earlier retry, capped at MaxRetryBackoff, with jitter. When
// ctx's deadline comes before the wait ends it returns errNoTimeLeft at
// once: the retry could not run.
func (o *Ollama) sleep(ctx context.Context, attempt int) error {
	d := o.cfg.RetryBackoff
	for i := 1; i < attempt && d < o.cfg.MaxRetryBackoff; i++ {
		d *= 2
	}
	d = min(d, o.cfg.MaxRetryBackoff)
	d = d/2 + rand.N(d/2+1)
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= d {
		return errNoTimeLeft
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ctxError reports that the caller's context ended, after prev (the
// error of the last failed attempt, if any) and with cur (the error of the
// request the context cut, if any). A passed deadline also counts as the
// server being unavailable, since it did not answer in time.
func (o *Ollama) ctxError(ctx context.Context, ctxErr, prev, cur error) error {
	if errors.Is(ctxErr, context.DeadlineExceeded) {
		switch {
		case prev != nil:
			// prev wraps ErrUnavailable, and says why and what to do.
			return fmt.Errorf("%w; then the deadline passed: %w", prev, ctxErr)
		case cur != nil:
			return fmt.Errorf("ollama at %s did not answer before the deadline (last error: %v): %w: %w",
				o.where, cur, ErrUnavailable, ctxErr)
		}
		return fmt.Errorf("ollama at %s did not answer before the deadline: %w: %w", o.where, ErrUnavailable, ctxErr)
	}
	return fmt.Errorf("embedding cancelled: %w", ctxErr)
}

// classify decides whether err is worth retrying and builds the error to
// return if not (or if retries are exhausted).
func (o *Ollama) classify(err error, attempts int) (retry bool, final error) {
	var serr api.StatusError
	var aerr api.AuthorizationError
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.Is(err, errRequestTimeout):
		return false, fmt.Errorf("ollama at %s did not answer within %s (model %q): is it overloaded or stuck? "+
			"check `ollama ps`, or start it with `ollama serve`: %w", o.where, o.cfg.Timeout, o.cfg.Model, ErrUnavailable)
	case errors.As(err, &serr):
		msg := strings.TrimSpace(serr.ErrorMessage)
		switch {
		case serr.StatusCode == http.StatusNotFound:
			return false, fmt.Errorf("ollama at %s does not have the embedding model %q (server said: %s): "+
				"run `ollama pull %s`, or choose another model: %w", o.where, o.cfg.Model, msg, o.cfg.Model, ErrModelNotFound)
		case serr.StatusCode == http.StatusTooManyRequests || serr.StatusCode >= 500:
			return true, fmt.Errorf("ollama at %s failed %d time(s), last with HTTP %d (%s): "+
				"is Ollama running and healthy? start it with `ollama serve`, and see its log: %w",
				o.where, attempts, serr.StatusCode, msg, ErrUnavailable)
		case serr.StatusCode == http.StatusBadRequest || serr.StatusCode == http.StatusRequestEntityTooLarge:
			return false, fmt.Errorf("ollama at %s refused the input for model %q (HTTP %d: %s): "+
				"shorten the text, or check that the model is an embedding model: %w",
				o.where, o.cfg.Model, serr.StatusCode, msg, ErrInput)
		default:
			return false, fmt.Errorf("ollama at %s answered HTTP %d (%s): check that the address is an Ollama "+
				"server: %w", o.where, serr.StatusCode, msg, ErrUnavailable)
		}
	case errors.As(err, &aerr):
		return false, fmt.Errorf("ollama at %s refused the request (HTTP %d): check that the address is your "+
			"Ollama server: %w", o.where, aerr.StatusCode, ErrUnavailable)
	case errors.As(err, &syntaxErr), errors.As(err, &typeErr):
		return false, fmt.Errorf("ollama at %s sent an answer that is not a list of finite numbers (%v): "+
			"the model may be broken; try `ollama pull %s` again: %w", o.where, err, o.cfg.Model, ErrBadVector)
	case errors.Is(err, syscall.ECONNREFUSED):
		return true, fmt.Errorf("ollama is not reachable at %s: nothing listens there (connection refused, %d attempt(s)): "+
			"start Ollama with `ollama serve` (or the Ollama app), or set OLLAMA_HOST to the address it listens on: %w",
			o.where, attempts, ErrUnavailable)
	default:
		// Connection reset, EOF, DNS failures: the server is not there or
		// went away. Worth retrying.
		return true, fmt.Errorf("cannot reach ollama at %s after %d attempt(s) (%v): is Ollama running? "+
			"start it with `ollama serve`, or set OLLAMA_HOST to its address: %w", o.where, attempts, err, ErrUnavailable)
	}
}

// accept validates the server's vectors for texts, normalizes them, and
// copies them into out.
func (o *Ollama) accept(texts []string, vecs [][]float32, out [][]float32) error {
	if len(vecs) != len(texts) {
		return fmt.Errorf("ollama at %s returned %d vectors for %d texts (model %q): %w",
			o.where, len(vecs), len(texts), o.cfg.Model, ErrBadVector)
	}
	want := int(o.dims.Load())
	if want == 0 {
		var err error
		if want, err = o.learn(len(vecs[0])); err != nil {
			return err
		}
	}
	for i, v := range vecs {
		if len(v) != want {
			return fmt.Errorf("ollama at %s returned a vector of %d dimensions for text %d, want %d (model %q): "+
				"the model changed, or the configured dimensions are wrong: %w",
				o.where, len(v), i+1, want, o.cfg.Model, ErrBadVector)
		}
		if err := normalize(v); err != nil {
			return fmt.Errorf("ollama at %s, model %q, text %d: %w", o.where, o.cfg.Model, i+1, err)
		}
		out[i] = v
	}
	return nil
}

// learn records n as the dimension when none is known yet, and returns the
// dimension now in force.
func (o *Ollama) learn(n int) (int, error) {
	o.learnMu.Lock()
	defer o.learnMu.Unlock()
	if d := int(o.dims.Load()); d != 0 {
		return d, nil
	}
	if n == 0 {
		return 0, fmt.Errorf("ollama at %s returned an empty vector (model %q): is it an embedding model? %w",
			o.where, o.cfg.Model, ErrBadVector)
	}
	o.dims.Store(int64(n))
	o.cfg.Logger.Debug("learned embedding dimension", "model", o.cfg.Model, "dimensions", n)
	return n, nil
}
