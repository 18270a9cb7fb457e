package embed

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// Defaults for [BatcherConfig].
const (
	DefaultBatchMaxTexts = 64
	DefaultBatchInFlight = 1
)

// BatcherConfig configures [NewBatcher]. The zero value of every field means
// its default.
type BatcherConfig struct {
	// MaxBatch is the most texts in one merged call; a batch is sent as soon
	// as it is full, even while InFlight calls are out. A single call with
	// more texts is sent alone. Default 64; 1 turns merging off (every
	// call's texts are sent as they come, at most InFlight at a time).
	MaxBatch int
	// InFlight is how many merged calls may be out to the wrapped embedder
	// at once. Calls that arrive while all are out gather into the next
	// batch, which is sent the moment one returns. Default 1, right for a
	// model server that works on one request at a time (an Ollama default):
	// each request then carries everything that arrived during the last.
	InFlight int
}

func (c BatcherConfig) withDefaults() BatcherConfig {
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultBatchMaxTexts
	}
	if c.InFlight <= 0 {
		c.InFlight = DefaultBatchInFlight
	}
	return c
}

// Batcher is an [Embedder] that merges concurrent calls into fewer calls of
// the embedder it wraps (micro-batching): calls that arrive while
// InFlight merged calls are out gather into one batch, sent the moment one
// of them returns, identical texts once, and the vectors are split back to
// their callers. With a model server, where one request of 32 texts costs
// little more than one of a single text, this multiplies throughput under
// concurrent load. A call that arrives while a slot is free is sent at
// once, so a lone caller never waits: batches form only while the model
// server is busy, and their window is exactly as long as it stays busy.
//
// A caller whose context ends gets its context's error at once; the merged
// call goes on for the others, and is cancelled only when every caller in it
// has gone. If the merged call fails because of one bad input (ErrInput or
// ErrBadVector), each caller's texts are retried alone, so that one caller's
// text cannot fail the others.
//
// Batcher is safe for concurrent use. It runs one goroutine, started by
// NewBatcher, plus one per merged call in flight; [Batcher.Close] stops
// them. A call that finds a slot free and nobody gathered makes its call
// on its own goroutine.
type Batcher struct {
	next Embedder
	cfg  BatcherConfig

	reqs     chan *batchReq
	freed    chan struct{} // a merged call returned
	closing  chan struct{}
	loopDone chan struct{}
	closeMu  sync.Once
	inflight sync.WaitGroup
	// direct guards closed for callers that make their call themselves
	// (see Embed): Close sets it before waiting for calls in flight.
	direct sync.RWMutex
	closed bool

	calls   atomic.Uint64 // merged calls made to next
	busy    atomic.Int64  // merged calls in flight
	waiting atomic.Int64  // callers gathered into the next batch
}

// batchReq is one caller's Embed call waiting in the batcher.
type batchReq struct {
	ctx   context.Context
	texts []string
	res   chan batchRes // buffered (1): the batcher never blocks on it
}

type batchRes struct {
	vecs [][]float32
	err  error
}

// NewBatcher returns a micro-batching embedder in front of e, and starts its
// goroutine. Call Close when done with it.
func NewBatcher(e Embedder, cfg BatcherConfig) *Batcher {
	b := &Batcher{
		next:     e,
		cfg:      cfg.withDefaults(),
		reqs:     make(chan *batchReq),
		freed:    make(chan struct{}, 1),
		closing:  make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	go b.loop()
	return b
}

// Info returns the wrapped embedder's Info.
func (b *Batcher) Info() Info { return b.next.Info() }

// Calls returns how many calls the batcher has made to the wrapped
// embedder (merged batches, plus any retries of single callers).
func (b *Batcher) Calls() uint64 { return b.calls.Load() }

// Waiting returns how many calls are gathered for the next merged call,
// waiting for one in flight to return.
func (b *Batcher) Waiting() int { return int(b.waiting.Load()) }

// Embed queues texts to be embedded with other concurrent calls, and waits
// for its vectors. Errors: the wrapped embedder's; ErrInput for a blank or
// invalid text (checked before queueing); ErrClosed after Close; the
// context's error when ctx ends first.
func (b *Batcher) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if len(texts) == 0 {
		return [][]float32{}, nil
	}
	if err := checkTexts(texts); err != nil {
		return nil, err
	}
	r := &batchReq{ctx: ctx, texts: texts, res: make(chan batchRes, 1)}
	if ok, err := b.callDirect(r); ok || err != nil {
		if err != nil {
			return nil, err
		}
		res := <-r.res
		return res.vecs, res.err
	}
	select {
	case b.reqs <- r:
	case <-b.closing:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case res := <-r.res:
		return res.vecs, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close stops accepting calls, sends the batch being gathered, waits for
// every merged call in flight to return (each is bounded by the wrapped
// embedder's own timeouts, and cancelled as soon as all its callers have
// gone), and returns when no goroutine of the batcher is left. Later calls
// of Embed return ErrClosed. Close may be called more than once.
func (b *Batcher) Close() error {
	b.closeMu.Do(func() {
		b.direct.Lock()
		b.closed = true
		b.direct.Unlock()
		close(b.closing)
	})
	<-b.loopDone
	b.inflight.Wait()
	return nil
}

// callDirect makes r's call on the caller's goroutine when a slot is free
// and no caller is gathered for the next batch, and reports whether it
// did (r.res then holds the answer). A lone caller so costs no hand-over
// to the batcher's goroutines, each of which wakes another thread; it
// reaches the embedder exactly as through the loop, alone in its batch.
func (b *Batcher) callDirect(r *batchReq) (bool, error) {
	if b.waiting.Load() > 0 || !b.acquire() {
		return false, nil
	}
	b.direct.RLock()
	if b.closed {
		b.direct.RUnlock()
		b.release(false)
		return false, ErrClosed
	}
	b.inflight.Add(1)
	b.direct.RUnlock()
	defer b.inflight.Done()
	defer b.release(false)
	b.run(r.ctx, []*batchReq{r})
	return true, nil
}

// acquire takes a slot for a merged call, if one of InFlight is free.
func (b *Batcher) acquire() bool {
	for {
		n := b.busy.Load()
		if n >= int64(b.cfg.InFlight) {
			return false
		}
		if b.busy.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release frees a slot and wakes the loop, always, or (for a call made
// directly) only when callers are gathered for the next batch: the loop
// stores that count before it tries to take a slot, and release frees the
// slot before it loads the count, so either the loop finds the slot free
// or release sees the callers.
func (b *Batcher) release(always bool) {
	b.busy.Add(-1)
	if always || b.waiting.Load() > 0 {
		select { // wake the loop; a wake-up already pending will do
		case b.freed <- struct{}{}:
		default:
		}
	}
}

// loop gathers requests into batches. It exits when Close is called, after
// dispatching the batch it was gathering.
func (b *Batcher) loop() {
	defer close(b.loopDone)
	var (
		batch []*batchReq
		n     int // texts in batch
	)
	// flush sends the batch; its slot is taken (a full batch takes one
	// even when none is free).
	flush := func() {
		b.dispatch(batch)
		batch, n = nil, 0
		b.waiting.Store(0)
	}
	force := func() {
		b.busy.Add(1)
		flush()
	}
	for {
		select {
		case r := <-b.reqs:
			if n > 0 && n+len(r.texts) > b.cfg.MaxBatch {
				force()
			}
			batch = append(batch, r)
			n += len(r.texts)
			b.waiting.Store(int64(len(batch)))
			if n >= b.cfg.MaxBatch {
				force()
			} else if b.acquire() {
				flush()
			}
		case <-b.freed:
			if len(batch) > 0 && b.acquire() {
				flush()
			}
		case <-b.closing:
			if len(batch) > 0 {
				force()
			}
			return
		}
	}
}

// dispatch runs one merged call, whose slot is taken, in its own
// goroutine.
func (b *Batcher) dispatch(batch []*batchReq) {
	// The merged call outlives any single caller: it is cancelled only when
	// every caller's context has ended.
	ctx, cancel := context.WithCancel(context.Background())
	var live atomic.Int64
	live.Store(int64(len(batch)))
	stops := make([]func() bool, len(batch))
	for i, r := range batch {
		stops[i] = context.AfterFunc(r.ctx, func() {
			if live.Add(-1) == 0 {
				cancel()
			}
		})
	}
	b.inflight.Add(1)
	go func() {
		defer b.inflight.Done()
		defer b.release(true)
		defer cancel()
		defer func() {
			for _, stop := range stops {
				stop()
			}
		}()
		b.run(ctx, batch)
	}()
}

// run makes the merged call for batch and answers every caller.
func (b *Batcher) run(ctx context.Context, batch []*batchReq) {
	var (
		texts []string
		index = make(map[string]int)
		where = make([][]int, len(batch)) // for each caller, the index of each of its texts in texts
	)
	for i, r := range batch {
		where[i] = make([]int, len(r.texts))
		for j, t := range r.texts {
			k, ok := index[t]
			if !ok {
				k = len(texts)
				index[t] = k
				texts = append(texts, t)
			}
			where[i][j] = k
		}
	}
	vecs, err := b.call(ctx, texts)
	if err != nil {
		if len(batch) > 1 && (errors.Is(err, ErrInput) || errors.Is(err, ErrBadVector)) {
			// One caller's text may be to blame: give each its own call.
			for _, r := range batch {
				if r.ctx.Err() != nil {
					r.res <- batchRes{nil, r.ctx.Err()}
					continue
				}
				vs, err := b.call(r.ctx, r.texts)
				r.res <- batchRes{vs, err}
			}
			return
		}
		for _, r := range batch {
			r.res <- batchRes{nil, err}
		}
		return
	}
	used := make([]bool, len(vecs))
	for i, r := range batch {
		out := make([][]float32, len(r.texts))
		for j, k := range where[i] {
			if used[k] {
				// The same text for another caller: give each its own copy.
				out[j] = clone(vecs[k])
			} else {
				out[j] = vecs[k]
				used[k] = true
			}
		}
		r.res <- batchRes{out, nil}
	}
}

// call invokes the wrapped embedder and checks the count of vectors.
func (b *Batcher) call(ctx context.Context, texts []string) ([][]float32, error) {
	b.calls.Add(1)
	vecs, err := b.next.Embed(ctx, texts)
	if err != nil {
		return nil, err
	}
	if len(vecs) != len(texts) {
		return nil, errCount(len(vecs), len(texts))
	}
	return vecs, nil
}
