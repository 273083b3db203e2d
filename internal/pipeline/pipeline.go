// Package pipeline wires the analysis stages that `ndr serve` and `ndr
// replay` share, so that a replayed file and a live stream go through the
// same code: ingest.Conn batches -> features (Layer 1) -> scoring
// (correlation, Layer 2) -> outputs (the store, JSON lines, watchers).
//
// It owns the goroutine that runs analysis and the hand-off between
// storage and analysis (Tee); the stages themselves live in features and
// scoring, and the outputs in internal/store and cmd.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/ndr-go/ndr/baseline"
	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/scoring"
)

// SignalSink receives every signal Layer 1 emits. The slice is the
// callee's to keep.
type SignalSink interface {
	AddSignals(ctx context.Context, sigs []features.Signal) error
}

// FeatureSink receives every closed window's feature rows. The records are
// released when AddFeatures returns; a sink that keeps them must Retain.
type FeatureSink interface {
	AddFeatures(ctx context.Context, out *features.WindowOutput) error
}

// Outputs are where analysis results go; nil members are skipped.
type Outputs struct {
	Signals    SignalSink
	Features   FeatureSink
	Detections []scoring.Sink
}

// Config configures an Analyzer.
type Config struct {
	Features features.Config
	Rules    []scoring.Rule
	Scoring  scoring.Options
	// Baselines, when set, gives Layer 1's spike signals the per-host
	// baselines of whatever snapshot the registry holds at each lookup
	// (lock-free; `ndr serve` swaps versions in from ClickHouse).
	Baselines *baseline.Registry
	// Learn, when set with Baselines, fits baselines in event time from
	// the analysed connections into Baselines (`ndr replay`). Its
	// LocalNetworks default to Features.LocalNetworks.
	Learn *baseline.LearnerConfig
}

// Analyzer runs Layer 1 and Layer 2 over batches of connections. Like the
// engines inside it, it belongs to one goroutine.
type Analyzer struct {
	eng   *features.Engine
	corr  *scoring.Engine
	learn *baseline.Learner
	outs  Outputs
	log   *slog.Logger
}

// NewAnalyzer builds the engines. alloc is the Arrow allocator (nil: Go's).
func NewAnalyzer(cfg Config, outs Outputs, log *slog.Logger, alloc memory.Allocator) (*Analyzer, error) {
	if alloc == nil {
		alloc = memory.NewGoAllocator()
	}
	a := &Analyzer{outs: outs, log: log}
	cfg.Scoring.Logger = log
	corr, err := scoring.NewEngine(cfg.Rules, scoring.SinkFunc(a.detection), cfg.Scoring)
	if err != nil {
		return nil, fmt.Errorf("correlation: %w", err)
	}
	a.corr = corr
	eng, err := features.NewEngine(cfg.Features, features.EmitterFunc(a.window), log, alloc)
	if err != nil {
		return nil, fmt.Errorf("features: %w", err)
	}
	a.eng = eng
	if cfg.Baselines != nil {
		eng.SetBaselines(baseline.NewSpikeBaselines(cfg.Baselines, baseline.SpikeWindowsOf(&cfg.Features)))
		if cfg.Learn != nil {
			lc := *cfg.Learn
			if lc.LocalNetworks == nil {
				lc.LocalNetworks = cfg.Features.LocalNetworks
			}
			if a.learn, err = baseline.NewLearner(lc, cfg.Baselines, log); err != nil {
				return nil, fmt.Errorf("baseline learner: %w", err)
			}
		}
	}
	return a, nil
}

// window is Layer 1's emitter: it stores rows and signals, then correlates.
func (a *Analyzer) window(ctx context.Context, out *features.WindowOutput) error {
	var errs []error
	if a.outs.Features != nil {
		if err := a.outs.Features.AddFeatures(ctx, out); err != nil {
			errs = append(errs, fmt.Errorf("store features: %w", err))
		}
	}
	if a.outs.Signals != nil && len(out.Signals) > 0 {
		if err := a.outs.Signals.AddSignals(ctx, out.Signals); err != nil {
			errs = append(errs, fmt.Errorf("store signals: %w", err))
		}
	}
	if err := a.corr.Emit(ctx, out); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (a *Analyzer) detection(ctx context.Context, ev scoring.Event) error {
	var errs []error
	for _, s := range a.outs.Detections {
		if err := s.Emit(ctx, ev); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Process analyses a batch of connections. With event-time learning the
// batch first feeds the Learner, which refits (over complete hours only)
// when event time has advanced enough.
func (a *Analyzer) Process(ctx context.Context, conns []ingest.Conn) error {
	if a.learn != nil {
		a.learn.Observe(conns)
	}
	return a.eng.Process(ctx, conns)
}

// LearnerStats are the event-time learner's counters (zero without one).
func (a *Analyzer) LearnerStats() baseline.LearnerStats {
	if a.learn == nil {
		return baseline.LearnerStats{}
	}
	return a.learn.Stats()
}

// Flush closes every open window and correlation, as at the end of input.
func (a *Analyzer) Flush(ctx context.Context) error {
	if err := a.eng.Flush(ctx); err != nil {
		return err
	}
	return a.corr.Flush(ctx)
}

// Stats are the two engines' counters.
func (a *Analyzer) Stats() (features.Stats, scoring.Stats) { return a.eng.Stats(), a.corr.Stats() }
