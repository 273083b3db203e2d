package baseline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"time"
)

// HistoryQuery selects the history a retrain reads.
type HistoryQuery struct {
	// From and To bound the data window [From, To); whole hours.
	From, To time.Time
	// LocalNetworks decide which originators are internal hosts when the
	// sensor did not say (Zeek local_orig).
	LocalNetworks []netip.Prefix
}

// History is the aggregated history a retrain reads; the store implements
// it over ClickHouse's host-hour and destination aggregates, so raw
// connections never leave the database.
type History interface {
	// ReadHostHours calls fn once per internal host active in the window.
	// The argument is reused after fn returns.
	ReadHostHours(ctx context.Context, q HistoryQuery, fn func(*HostHours) error) error
	// ReadDestinations calls fn once per external destination contacted by an
	// internal host in the window.
	ReadDestinations(ctx context.Context, q HistoryQuery, fn func(Destination) error) error
}

// Sink stores snapshots; the store implements it.
type Sink interface {
	// NextBaselineVersion is one more than the newest stored version.
	NextBaselineVersion(ctx context.Context) (uint64, error)
	// SaveBaseline stores s as its version.
	SaveBaseline(ctx context.Context, s *Snapshot) error
}

// RetrainConfig configures Retrain.
type RetrainConfig struct {
	Params Params
	// Window is the history fitted: the whole hours before now.
	Window time.Duration
	// LocalNetworks: see HistoryQuery. Empty: only hosts a sensor
	// called local (`ndr retrain` defaults to features' local networks).
	LocalNetworks []netip.Prefix
	// Workers fit hosts in parallel; 0 means GOMAXPROCS.
	Workers int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// RetrainStats describe one retrain.
type RetrainStats struct {
	Version       uint64
	Hosts         int // hosts with a model
	InternalHosts int // hosts seen
	Destinations  int
	From, To      time.Time
	Read, Save    time.Duration // reading and fitting overlap; Read covers both
	Total         time.Duration
}

// Retrain is the periodic retraining job: it reads the last cfg.Window of
// whole hours from h, fits a Snapshot with the next version and saves it
// to sink. Hosts are fitted by cfg.Workers goroutines while h streams
// them.
func Retrain(ctx context.Context, h History, sink Sink, cfg RetrainConfig, log *slog.Logger) (*Snapshot, RetrainStats, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := time.Now
	if cfg.Now != nil {
		now = cfg.Now
	}
	var st RetrainStats
	start := now()
	if cfg.Window < time.Hour {
		return nil, st, fmt.Errorf("retrain window %s: want >= 1h", cfg.Window)
	}
	to := start.UTC().Truncate(time.Hour)
	from := to.Add(-cfg.Window.Truncate(time.Hour))
	st.From, st.To = from, to
	b, err := NewBuilder(cfg.Params, from, to)
	if err != nil {
		return nil, st, err
	}
	version, err := sink.NextBaselineVersion(ctx)
	if err != nil {
		return nil, st, fmt.Errorf("next baseline version: %w", err)
	}
	q := HistoryQuery{From: from, To: to, LocalNetworks: slices.Clone(cfg.LocalNetworks)}
	if err := Fit(ctx, b, h, q, cfg.Workers); err != nil {
		return nil, st, err
	}
	s, err := b.Build(version, start)
	if err != nil {
		return nil, st, err
	}
	st.Read = now().Sub(start)
	saveStart := now()
	if err := sink.SaveBaseline(ctx, s); err != nil {
		return nil, st, fmt.Errorf("save baseline %d: %w", version, err)
	}
	st.Save = now().Sub(saveStart)
	st.Total = now().Sub(start)
	st.Version, st.Hosts, st.InternalHosts, st.Destinations = version, s.Hosts(), s.InternalHosts(), s.Destinations()
	log.Info("baseline retrained", "version", version, "hosts", st.Hosts, "internal_hosts", st.InternalHosts,
		"destinations", st.Destinations, "from", from, "to", to, "took", st.Total)
	return s, st, nil
}

// Fit feeds b from h: destinations, then hosts, fitted by workers
// goroutines (GOMAXPROCS when 0) while h streams them.
func Fit(ctx context.Context, b *Builder, h History, q HistoryQuery, workers int) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if err := h.ReadDestinations(ctx, q, func(d Destination) error {
		b.AddDestination(d)
		return nil
	}); err != nil {
		return fmt.Errorf("read destinations: %w", err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan *HostHours, 2*workers)
	free := make(chan *HostHours, 3*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for hh := range work {
				if err := b.AddHost(hh); err != nil {
					cancel(err)
				}
				hh.Reset()
				select {
				case free <- hh:
				default:
				}
			}
		})
	}
	readErr := h.ReadHostHours(ctx, q, func(in *HostHours) error {
		var hh *HostHours
		select {
		case hh = <-free:
		default:
			hh = new(HostHours)
		}
		hh.Host = in.Host
		hh.Hours = append(hh.Hours, in.Hours...)
		for m := range in.Values {
			hh.Values[m] = append(hh.Values[m], in.Values[m]...)
		}
		hh.AdminMask = append(hh.AdminMask, in.AdminMask...)
		select {
		case work <- hh:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
	close(work)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("fit hosts: %w", err)
	}
	if readErr != nil {
		return fmt.Errorf("read host hours: %w", readErr)
	}
	return ctx.Err()
}
