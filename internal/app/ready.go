package app

import (
	"context"
	"sync"
	"time"

	"github.com/scopemem/scopemem/embed"
)

// readyProbeInterval is the least time between two real checks of the
// model server by /readyz: readiness checks come from load balancers and
// anyone who can reach the port, and must not become load on Ollama.
const readyProbeInterval = 10 * time.Second

// readyProbeTimeout bounds one check of the model server.
const readyProbeTimeout = 2 * time.Second

// embedderCheck tells whether the embedder can answer. The built-in and
// fake embedders always can; for Ollama it embeds one short text with a
// client of its own (no retries, short timeout, not through the cache) at
// most once per readyProbeInterval, and answers from the last result in
// between.
type embedderCheck struct {
	probe    func(context.Context) error // nil: always ready
	interval time.Duration

	mu   sync.Mutex
	at   time.Time // when the last probe started; zero before the first
	last error
}

// newEmbedderCheck returns the check for the embedder e serves with.
func newEmbedderCheck(cfg Config, e embed.Embedder) (*embedderCheck, error) {
	c := &embedderCheck{interval: readyProbeInterval}
	info := e.Info()
	if info.Provider != "ollama" {
		return c, nil
	}
	o, err := embed.NewOllama(embed.OllamaConfig{
		Host: cfg.OllamaHost, Model: info.Model, HTTPClient: cfg.HTTPClient,
		Timeout: readyProbeTimeout, MaxRetries: -1, MaxConcurrency: 1,
		Dimensions: info.Dimensions, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	c.probe = func(ctx context.Context) error {
		_, err := o.Probe(ctx)
		return err
	}
	return c, nil
}

// check returns nil when the embedder is ready. Concurrent callers while a
// probe runs wait for its result; a probe is not tied to the request that
// started it, so a client hanging up cannot record a failure.
func (c *embedderCheck) check(ctx context.Context) error {
	if c.probe == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < c.interval {
		return c.last
	}
	c.at = time.Now()
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readyProbeTimeout)
	defer cancel()
	c.last = c.probe(pctx)
	return c.last
}
