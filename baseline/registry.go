package baseline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ndr-go/ndr/features"
)

// Registry holds the current Snapshot. Readers Load it with one atomic
// read; a new version replaces it with Store. Safe for concurrent use.
type Registry struct {
	cur atomic.Pointer[Snapshot]
}

// Current is the current snapshot, or nil before the first.
func (r *Registry) Current() *Snapshot { return r.cur.Load() }

// Store makes s current unless the current one has a higher version; it
// reports whether s was installed.
func (r *Registry) Store(s *Snapshot) bool {
	for {
		old := r.cur.Load()
		if old != nil && s != nil && old.version > s.version {
			return false
		}
		if r.cur.CompareAndSwap(old, s) {
			return true
		}
	}
}

// Version is the current snapshot's version, 0 before the first.
func (r *Registry) Version() uint64 {
	if s := r.cur.Load(); s != nil {
		return s.version
	}
	return 0
}

// Prevalence is the current snapshot's count of internal hosts that
// contacted dst; ok is false before the first snapshot or for a
// destination the snapshot does not hold (see Snapshot.Prevalence).
func (r *Registry) Prevalence(dst netip.Addr) (internalHosts int, ok bool) {
	s := r.cur.Load()
	if s == nil {
		return 0, false
	}
	n, _, ok := s.Prevalence(dst)
	return n, ok
}

// SpikeWindows are the lengths of Layer 1's spike windows (the features
// config's connection_spike and outbound_spike window sizes).
type SpikeWindows struct {
	Connections      time.Duration
	BytesOutExternal time.Duration
}

// SpikeWindowsOf reads the spike window lengths from a features config.
func SpikeWindowsOf(cfg *features.Config) SpikeWindows {
	return SpikeWindows{
		Connections:      time.Duration(cfg.Signals.ConnectionSpike.Window.Size),
		BytesOutExternal: time.Duration(cfg.Signals.OutboundSpike.Window.Size),
	}
}

// SpikeBaselines is the features.Baselines of Layer 1's spike signals: it
// answers from whatever snapshot the registry holds at the moment of
// each Lookup, without locks or allocation.
type SpikeBaselines struct {
	reg *Registry
	win SpikeWindows
}

// NewSpikeBaselines returns the spike signals' view of reg.
func NewSpikeBaselines(reg *Registry, w SpikeWindows) *SpikeBaselines {
	return &SpikeBaselines{reg: reg, win: w}
}

var _ features.Baselines = (*SpikeBaselines)(nil)

// Lookup implements features.Baselines: metric "connections" per
// connection-spike window and "bytes_out_external" per outbound-spike
// window, for the window ending at at (µs); see Snapshot.WindowStats.
func (b *SpikeBaselines) Lookup(host netip.Addr, metric string, at int64) (mean, sd float64, ok bool) {
	s := b.reg.cur.Load()
	if s == nil {
		return 0, 0, false
	}
	switch metric {
	case features.BaselineConnections:
		return s.windowStats(host, Connections, at, b.win.Connections)
	case features.BaselineBytesOutExternal:
		return s.windowStats(host, BytesOutExternal, at, b.win.BytesOutExternal)
	}
	return 0, 0, false
}

// Source is where a Poller finds snapshots: the store implements it.
type Source interface {
	// LatestBaselineVersion is the newest stored version; ErrNoSnapshot
	// when there is none.
	LatestBaselineVersion(ctx context.Context) (uint64, error)
	// LoadBaseline reads one version.
	LoadBaseline(ctx context.Context, version uint64) (*Snapshot, error)
}

// Poller keeps a Registry at the newest version in a Source: it asks for
// the latest version every interval and loads it when it is newer. This
// is how `ndr serve` picks up a retrain without a restart.
type Poller struct {
	reg      *Registry
	src      Source
	every    time.Duration
	log      *slog.Logger
	once     sync.Once
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// NewPoller returns a Poller; Start runs it.
func NewPoller(reg *Registry, src Source, every time.Duration, log *slog.Logger) (*Poller, error) {
	if every <= 0 {
		return nil, fmt.Errorf("baseline poller: interval %s: want > 0", every)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Poller{reg: reg, src: src, every: every, log: log.With("component", "baseline_poller"),
		stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Poll checks the source once and installs a newer version; it reports
// whether it did.
func (p *Poller) Poll(ctx context.Context) (bool, error) {
	v, err := p.src.LatestBaselineVersion(ctx)
	if errors.Is(err, ErrNoSnapshot) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("latest baseline version: %w", err)
	}
	if v <= p.reg.Version() {
		return false, nil
	}
	s, err := p.src.LoadBaseline(ctx, v)
	if err != nil {
		return false, fmt.Errorf("load baseline %d: %w", v, err)
	}
	if !p.reg.Store(s) {
		return false, nil
	}
	p.log.Info("baseline installed", "version", s.Version(), "hosts", s.Hosts(),
		"data_from", s.DataFrom(), "data_to", s.DataTo(), "fitted_at", s.FittedAt())
	return true, nil
}

// Start polls once now, then every interval until Shutdown. Errors are
// logged; the current snapshot stays.
func (p *Poller) Start(ctx context.Context) {
	p.once.Do(func() {
		go func() {
			defer close(p.done)
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			go func() {
				select {
				case <-p.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			t := time.NewTicker(p.every)
			defer t.Stop()
			for {
				if _, err := p.Poll(ctx); err != nil && ctx.Err() == nil {
					p.log.Warn("baseline poll", "err", err)
				}
				select {
				case <-t.C:
				case <-ctx.Done():
					return
				}
			}
		}()
	})
}

// Shutdown stops polling and waits for the goroutine. Safe to repeat and
// to call without Start.
func (p *Poller) Shutdown(ctx context.Context) error {
	p.stopOnce.Do(func() { close(p.stop) })
	p.once.Do(func() { close(p.done) })
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Scheduler runs a job every interval (the first run one interval after
// Start) until Shutdown: `ndr serve --retrain-every`. Runs never overlap;
// a failed run is logged and the next one comes on time.
type Scheduler struct {
	every    time.Duration
	job      func(ctx context.Context) error
	log      *slog.Logger
	once     sync.Once
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
	runs     atomic.Uint64
	fails    atomic.Uint64
}

// NewScheduler returns a Scheduler of job.
func NewScheduler(every time.Duration, job func(ctx context.Context) error, log *slog.Logger) (*Scheduler, error) {
	if every <= 0 {
		return nil, fmt.Errorf("baseline scheduler: interval %s: want > 0", every)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{every: every, job: job, log: log.With("component", "retrain_scheduler"),
		stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Start runs the schedule until Shutdown or ctx ends. Shutdown cancels a
// run in progress.
func (s *Scheduler) Start(ctx context.Context) {
	s.once.Do(func() {
		go func() {
			defer close(s.done)
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			go func() {
				select {
				case <-s.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			t := time.NewTicker(s.every)
			defer t.Stop()
			for {
				select {
				case <-t.C:
				case <-ctx.Done():
					return
				}
				s.runs.Add(1)
				if err := s.job(ctx); err != nil && ctx.Err() == nil {
					s.fails.Add(1)
					s.log.Error("scheduled retrain", "err", err)
				}
			}
		}()
	})
}

// Runs counts started runs; Failures the ones that returned an error.
func (s *Scheduler) Runs() uint64 { return s.runs.Load() }

// Failures: see Runs.
func (s *Scheduler) Failures() uint64 { return s.fails.Load() }

// Shutdown stops the schedule and waits for a run in progress to return.
// Safe to repeat and to call without Start.
func (s *Scheduler) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stop) })
	s.once.Do(func() { close(s.done) })
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
