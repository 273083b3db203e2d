package api

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ndr-go/ndr/internal/hunt"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
	"github.com/ndr-go/ndr/scoring"
)

// BroadcasterConfig bounds what watchers may cost.
type BroadcasterConfig struct {
	// Buffer is how many detections a watcher may lag behind before it is
	// dropped.
	Buffer int
	// MaxWatchers bounds concurrent watchers.
	MaxWatchers int
}

// DefaultBroadcasterConfig: detections are rare (a busy network raises a
// few per minute), so 256 buffered versions is minutes of slack.
func DefaultBroadcasterConfig() BroadcasterConfig {
	return BroadcasterConfig{Buffer: 256, MaxWatchers: 64}
}

// Broadcaster is a scoring.Sink that fans detection events out to
// watchers. Emit never blocks: a watcher whose buffer is full is dropped
// with ErrSlowWatcher. It is safe for concurrent use.
type Broadcaster struct {
	cfg BroadcasterConfig
	now func() time.Time

	mu       sync.Mutex
	watchers map[*Watcher]struct{}
	closed   bool

	delivered, dropped atomic.Uint64
}

// NewBroadcaster returns a broadcaster; now stamps detected_at (time.Now
// in production).
func NewBroadcaster(cfg BroadcasterConfig, now func() time.Time) *Broadcaster {
	if cfg.Buffer < 1 {
		cfg.Buffer = 1
	}
	if cfg.MaxWatchers < 1 {
		cfg.MaxWatchers = 1
	}
	return &Broadcaster{cfg: cfg, now: now, watchers: map[*Watcher]struct{}{}}
}

// Watcher is one subscription: detections matching its filter arrive on
// C until Done is closed; Err then says why.
type Watcher struct {
	b      *Broadcaster
	filter hunt.DetectionFilter
	c      chan *ndrv1.Detection
	done   chan struct{}
	err    error // set before done is closed
}

// C delivers matching detections in the order they were emitted. The
// messages are shared between watchers and must not be modified.
func (w *Watcher) C() <-chan *ndrv1.Detection { return w.c }

// Done is closed when the watch ends: dropped, closed, or the broadcaster
// shut down.
func (w *Watcher) Done() <-chan struct{} { return w.done }

// Err is why Done was closed: ErrSlowWatcher, ErrClosed, or nil after
// Close.
func (w *Watcher) Err() error {
	select {
	case <-w.done:
		return w.err
	default:
		return nil
	}
}

// Close ends the watch. Safe to repeat.
func (w *Watcher) Close() {
	w.b.mu.Lock()
	defer w.b.mu.Unlock()
	w.b.endLocked(w, nil)
}

// Watch registers a watcher for detections matching f (Limit and
// PageToken are ignored).
func (b *Broadcaster) Watch(f hunt.DetectionFilter) (*Watcher, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	if len(b.watchers) >= b.cfg.MaxWatchers {
		return nil, ErrTooManyWatchers
	}
	w := &Watcher{b: b, filter: f, c: make(chan *ndrv1.Detection, b.cfg.Buffer), done: make(chan struct{})}
	b.watchers[w] = struct{}{}
	return w, nil
}

// endLocked removes w and closes its Done with err, once.
func (b *Broadcaster) endLocked(w *Watcher, err error) {
	if _, ok := b.watchers[w]; !ok {
		return
	}
	delete(b.watchers, w)
	w.err = err
	close(w.done)
}

// Emit offers ev's detection to every matching watcher without waiting;
// it never fails. It is the sink `ndr serve` calls as it hands the
// detection to the store.
func (b *Broadcaster) Emit(_ context.Context, ev scoring.Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var msg *ndrv1.Detection // converted once, for the first watcher that wants it
	for w := range b.watchers {
		if !w.filter.Match(&ev.Detection) {
			continue
		}
		if msg == nil {
			msg = DetectionToProto(&ev.Detection, b.now())
		}
		select {
		case w.c <- msg:
			b.delivered.Add(1)
		default:
			b.dropped.Add(1)
			b.endLocked(w, ErrSlowWatcher)
		}
	}
	return nil
}

// Shutdown ends every watch with ErrClosed and refuses new ones. Safe to
// repeat.
func (b *Broadcaster) Shutdown(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for w := range b.watchers {
		b.endLocked(w, ErrClosed)
	}
	return nil
}

// BroadcastStats count watchers now, detections delivered to watchers and
// watchers dropped for falling behind.
type BroadcastStats struct {
	Watchers           int
	Delivered, Dropped uint64
}

// Stats returns the counters so far.
func (b *Broadcaster) Stats() BroadcastStats {
	b.mu.Lock()
	n := len(b.watchers)
	b.mu.Unlock()
	return BroadcastStats{Watchers: n, Delivered: b.delivered.Load(), Dropped: b.dropped.Load()}
}
