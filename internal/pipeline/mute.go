package pipeline

import (
	"context"
	"sync/atomic"

	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/scoring"
)

// Mute switches outputs off and on. A restarted server replays its spool
// through a fresh Analyzer to rebuild windows and pending correlations;
// while it replays batches whose outputs were stored before the restart,
// the outputs are muted so nothing is written twice.
type Mute struct{ on atomic.Bool }

// Set mutes (true) or unmutes the outputs.
func (m *Mute) Set(on bool) { m.on.Store(on) }

// Muted wraps every output of outs so that it drops what it gets while m is
// on.
func (m *Mute) Muted(outs Outputs) Outputs {
	out := Outputs{}
	if outs.Signals != nil {
		out.Signals = mutedSignals{m, outs.Signals}
	}
	if outs.Features != nil {
		out.Features = mutedFeatures{m, outs.Features}
	}
	for _, d := range outs.Detections {
		out.Detections = append(out.Detections, mutedDetections{m, d})
	}
	return out
}

type mutedSignals struct {
	m *Mute
	s SignalSink
}

func (x mutedSignals) AddSignals(ctx context.Context, sigs []features.Signal) error {
	if x.m.on.Load() {
		return nil
	}
	return x.s.AddSignals(ctx, sigs)
}

type mutedFeatures struct {
	m *Mute
	s FeatureSink
}

func (x mutedFeatures) AddFeatures(ctx context.Context, out *features.WindowOutput) error {
	if x.m.on.Load() {
		return nil
	}
	return x.s.AddFeatures(ctx, out)
}

type mutedDetections struct {
	m *Mute
	s scoring.Sink
}

func (x mutedDetections) Emit(ctx context.Context, ev scoring.Event) error {
	if x.m.on.Load() {
		return nil
	}
	return x.s.Emit(ctx, ev)
}
