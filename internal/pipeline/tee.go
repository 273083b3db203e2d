package pipeline

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/ndr-go/ndr/ingest"
)

// Storage durably stores batches; see ingest/server.Sink for the contract
// (done is called once, after the batch is stored or cannot be).
type Storage interface {
	Write(ctx context.Context, b *ingest.Batch, done func(error)) error
}

// Tee is the Sink behind `ndr serve` and `ndr replay`: each batch goes to
// storage (when there is one) and, in arrival order, to the analysis
// goroutine. A batch is reported done when it is stored and analysed, so
// the caller's batch memory is free to reuse only then.
//
// Analysis is bounded by a queue: a full queue blocks Write, which slows
// the senders just as a slow store does. Analysis errors are logged and
// counted but do not fail the batch: the connections are stored, and
// analysis output is derived from them.
type Tee struct {
	store   Storage
	an      *Analyzer
	log     *slog.Logger
	queue   chan teeItem
	slots   chan struct{}
	stopped chan struct{}
	once    sync.Once

	analysed, failures atomic.Uint64
	flushErr           error
}

type teeItem struct {
	b    *ingest.Batch
	done func(error)
}

// NewTee returns a Tee; store may be nil (replay --no-store). queueLen is
// the number of batches analysis may lag behind.
func NewTee(store Storage, an *Analyzer, queueLen int, log *slog.Logger) *Tee {
	return &Tee{
		store: store, an: an, log: log,
		queue: make(chan teeItem, queueLen), slots: make(chan struct{}, queueLen), stopped: make(chan struct{}),
	}
}

// Start runs the analysis goroutine until Shutdown.
func (t *Tee) Start(ctx context.Context) {
	go t.run(context.WithoutCancel(ctx))
}

func (t *Tee) run(ctx context.Context) {
	defer close(t.stopped)
	for it := range t.queue {
		if err := t.an.Process(ctx, it.b.Conns); err != nil {
			t.failures.Add(1)
			t.log.Error("analysis", "sensor", it.b.Sensor, "stream", it.b.Stream, "seq", it.b.Seq, "err", err)
		}
		t.analysed.Add(uint64(len(it.b.Conns)))
		<-t.slots
		it.done(nil)
	}
	if err := t.an.Flush(ctx); err != nil {
		t.failures.Add(1)
		t.flushErr = err
		t.log.Error("analysis flush", "err", err)
	}
}

// Write hands b to storage and analysis. It blocks while the analysis
// queue is full; a slot is reserved before storage sees the batch, so a
// batch storage accepted always reaches analysis.
func (t *Tee) Write(ctx context.Context, b *ingest.Batch, done func(error)) error {
	select {
	case t.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	var (
		pending atomic.Int32
		mu      sync.Mutex
		first   error
	)
	finish := func(err error) {
		if err != nil {
			mu.Lock()
			if first == nil {
				first = err
			}
			mu.Unlock()
		}
		if pending.Add(-1) == 0 {
			done(first)
		}
	}
	if t.store == nil {
		pending.Store(1)
	} else {
		pending.Store(2)
		if err := t.store.Write(ctx, b, finish); err != nil {
			<-t.slots
			return err
		}
	}
	t.queue <- teeItem{b: b, done: finish} // never blocks: a slot is held
	return nil
}

// Shutdown stops accepting, lets analysis finish what is queued, and
// flushes it (closing every window). Safe to repeat; call after the
// writers have stopped calling Write.
func (t *Tee) Shutdown(ctx context.Context) error {
	t.once.Do(func() { close(t.queue) })
	select {
	case <-t.stopped:
		return t.flushErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Analysed counts events analysed; Failures counts batches whose analysis
// reported an error.
func (t *Tee) Analysed() uint64 { return t.analysed.Load() }

// Failures counts analysis errors.
func (t *Tee) Failures() uint64 { return t.failures.Load() }
