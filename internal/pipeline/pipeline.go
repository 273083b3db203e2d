// Package pipeline wires the analysis stages that `ndr serve` and `ndr
// replay` share, so that a replayed file and a live stream go through the
// same code: ingest.Conn batches -> features (Layer 1) and Layer 2's
// scorers (scoring/beacon, scoring/upload, fed the raw connections and
// advanced on Layer 1's watermark) -> correlation -> outputs (the store,
// JSON lines, watchers).
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
	"net/netip"
	"runtime"
	"slices"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/ndr-go/ndr/baseline"
	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/scoring"
	"github.com/ndr-go/ndr/scoring/beacon"
	"github.com/ndr-go/ndr/scoring/upload"
)

// SignalSink receives every signal Layer 1 and Layer 2's scorers emit.
// The slice is the callee's to keep.
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
	// Beacon and Upload configure Layer 2's scorers; nil takes their
	// DefaultConfig with Features.LocalNetworks.
	Beacon *beacon.Config
	Upload *upload.Config
	// OnBeaconScore, when set, sees every scored beacon pair (the quality
	// benchmark's ROC); see beacon.Options.OnScore.
	OnBeaconScore func(src, dst netip.Addr, port uint16, at int64, r *beacon.Result)
	// Serial runs Layer 1 and everything else on the caller's goroutine
	// one after the other. By default, with more than one CPU, Process
	// runs Layer 1 beside the rest (see Process); the outputs are the
	// same either way.
	Serial bool
}

// Analyzer runs Layer 1 and Layer 2 over batches of connections. Like the
// engines inside it, it belongs to one goroutine: Process, Flush and the
// Stats methods must not be called concurrently. Process may use a second
// goroutine internally; it has finished with it when Process returns.
type Analyzer struct {
	eng    *features.Engine
	corr   *scoring.Engine
	learn  *baseline.Learner
	beacon *beacon.Tracker
	upload *upload.Scorer
	outs   Outputs
	log    *slog.Logger

	parallel bool
	// windows, while a parallel Process runs, takes Layer 1's outputs to
	// the other goroutine; nil otherwise (window then runs them in line).
	windows chan *features.WindowOutput
}

// NewAnalyzer builds the engines. alloc is the Arrow allocator (nil: Go's).
func NewAnalyzer(cfg Config, outs Outputs, log *slog.Logger, alloc memory.Allocator) (*Analyzer, error) {
	if alloc == nil {
		alloc = memory.NewGoAllocator()
	}
	a := &Analyzer{outs: outs, log: log, parallel: !cfg.Serial && runtime.GOMAXPROCS(0) > 1}
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
	if outs.Features == nil {
		eng.SkipRecords() // nobody reads the rows' Arrow records
	}
	if err := a.scorers(&cfg); err != nil {
		return nil, err
	}
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

// scorers builds Layer 2's beacon Tracker and upload Scorer. The upload
// scorer rates destinations by the Tracker's live prevalence; both read
// the baseline registry's snapshot when there is one.
func (a *Analyzer) scorers(cfg *Config) error {
	bc := beacon.DefaultConfig()
	if cfg.Beacon != nil {
		bc = *cfg.Beacon
	} else {
		bc.LocalNetworks = cfg.Features.LocalNetworks
	}
	bo := beacon.Options{Logger: a.log, OnScore: cfg.OnBeaconScore}
	if cfg.Baselines != nil {
		bo.Prevalence = registryPrevalence{cfg.Baselines}
	}
	var err error
	if a.beacon, err = beacon.NewTracker(bc, bo); err != nil {
		return fmt.Errorf("beacon: %w", err)
	}
	uc := upload.DefaultConfig()
	if cfg.Upload != nil {
		uc = *cfg.Upload
	} else {
		uc.LocalNetworks = cfg.Features.LocalNetworks
	}
	uo := upload.Options{Logger: a.log, Prevalence: a.beacon}
	if cfg.Baselines != nil {
		uo.Baseline = upload.FromRegistry(cfg.Baselines)
	}
	if a.upload, err = upload.NewScorer(uc, uo); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	return nil
}

// registryPrevalence is the baseline snapshot's destination prevalence,
// as the beacon Tracker asks for it.
type registryPrevalence struct{ reg *baseline.Registry }

func (p registryPrevalence) Sources(dst netip.Addr) (int, bool) { return p.reg.Prevalence(dst) }

// window is Layer 1's emitter. During a parallel Process it hands out to
// the other goroutine (keeping its records: the engine releases them when
// window returns); otherwise it handles out in line.
func (a *Analyzer) window(ctx context.Context, out *features.WindowOutput) error {
	if a.windows == nil {
		return a.handle(ctx, out)
	}
	if out.Hosts != nil {
		out.Hosts.Retain()
		out.Pairs.Retain()
	}
	a.windows <- out
	return nil
}

// handle advances Layer 2's scorers to the window's end (Layer 1's
// watermark: every connection before it has been added), stores rows and
// both layers' signals, then correlates them.
func (a *Analyzer) handle(ctx context.Context, out *features.WindowOutput) error {
	var errs []error
	l2, err := a.advanceScorers(ctx, out.End)
	if err != nil {
		errs = append(errs, err)
	}
	if a.outs.Features != nil {
		if err := a.outs.Features.AddFeatures(ctx, out); err != nil {
			errs = append(errs, fmt.Errorf("store features: %w", err))
		}
	}
	sigs := out.Signals
	if len(l2) > 0 {
		sigs = append(slices.Clip(out.Signals), l2...)
	}
	if a.outs.Signals != nil && len(sigs) > 0 {
		if err := a.outs.Signals.AddSignals(ctx, sigs); err != nil {
			errs = append(errs, fmt.Errorf("store signals: %w", err))
		}
	}
	if err := a.corr.Consume(ctx, sigs); err != nil {
		errs = append(errs, err)
	} else if err := a.corr.Advance(ctx, out.End); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// advanceScorers runs Layer 2's scorers up to wm (µs); the signals are
// the caller's.
func (a *Analyzer) advanceScorers(ctx context.Context, wm int64) ([]features.Signal, error) {
	bs, err := a.beacon.Advance(ctx, wm)
	if err != nil {
		return nil, fmt.Errorf("beacon: %w", err)
	}
	us, err := a.upload.Advance(ctx, wm)
	if err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	return append(bs, us...), nil
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

// Process analyses a batch of connections. The batch first feeds Layer 2's
// scorers, which only record here (Layer 1's windows advance them), and,
// with event-time learning, the Learner, which refits (over complete hours
// only) when event time has advanced enough. Then Layer 1 runs over it.
//
// In parallel (the default with more than one CPU), Layer 1 runs on the
// calling goroutine while another one feeds the scorers and the Learner
// and then handles Layer 1's outputs in order as they come. The outputs
// are the same as in serial, because the two share nothing but the
// baseline registry: when the Learner may install a snapshot during this
// batch (Learner.MayFit), Layer 1 waits until it has. conns is only read.
// One difference: in serial, an output's error stops Layer 1 at the
// connection that closed the window; in parallel Layer 1 goes on to the
// end of the batch. Either way the error is returned.
func (a *Analyzer) Process(ctx context.Context, conns []ingest.Conn) error {
	if !a.parallel {
		a.record(conns)
		return a.eng.Process(ctx, conns)
	}
	wait := a.learn != nil && a.learn.MayFit(conns)
	windows := make(chan *features.WindowOutput, 64)
	recorded := make(chan struct{})
	handled := make(chan error, 1)
	go func() {
		a.record(conns)
		close(recorded)
		var errs []error
		for out := range windows {
			if err := a.handle(ctx, out); err != nil {
				errs = append(errs, err)
			}
			if out.Hosts != nil {
				out.Hosts.Release()
				out.Pairs.Release()
			}
		}
		handled <- errors.Join(errs...)
	}()
	if wait {
		<-recorded
	}
	a.windows = windows
	err := a.eng.Process(ctx, conns)
	a.windows = nil
	close(windows)
	return errors.Join(err, <-handled)
}

// record feeds a batch to Layer 2's scorers and the Learner.
func (a *Analyzer) record(conns []ingest.Conn) {
	a.beacon.Add(conns)
	a.upload.Add(conns)
	if a.learn != nil {
		a.learn.Observe(conns)
	}
}

// LearnerStats are the event-time learner's counters (zero without one).
func (a *Analyzer) LearnerStats() baseline.LearnerStats {
	if a.learn == nil {
		return baseline.LearnerStats{}
	}
	return a.learn.Stats()
}

// Flush closes every open window, scores what Layer 2's scorers hold, and
// closes correlation, as at the end of input.
func (a *Analyzer) Flush(ctx context.Context) error {
	if err := a.eng.Flush(ctx); err != nil {
		return err
	}
	bs, err := a.beacon.Flush(ctx)
	if err != nil {
		return fmt.Errorf("beacon: %w", err)
	}
	us, err := a.upload.Flush(ctx)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	if sigs := append(bs, us...); len(sigs) > 0 {
		if a.outs.Signals != nil {
			if err := a.outs.Signals.AddSignals(ctx, sigs); err != nil {
				return fmt.Errorf("store signals: %w", err)
			}
		}
		if err := a.corr.Consume(ctx, sigs); err != nil {
			return err
		}
	}
	return a.corr.Flush(ctx)
}

// Stats are the two engines' counters.
func (a *Analyzer) Stats() (features.Stats, scoring.Stats) { return a.eng.Stats(), a.corr.Stats() }

// ScorerStats are Layer 2's scorers' counters, with the beacon Tracker's
// memory estimate.
func (a *Analyzer) ScorerStats() (beacon.Stats, upload.Stats) {
	return a.beacon.Stats(), a.upload.Stats()
}
